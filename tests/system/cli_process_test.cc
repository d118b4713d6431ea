// The real cmdistill binary as a user runs it: exit codes and messages.
#include <signal.h>

#include <cstdio>
#include <fstream>

#include "cmdistill/v1/reward.grpc.pb.h"
#include "cmdistill/v1/teacher.grpc.pb.h"
#include "common/net/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill {
namespace {

using ::cmdistill::testing::CmdistillBinary;
using ::cmdistill::testing::RunProcess;
using ::testing::HasSubstr;

TEST(CliProcess, ExitCodes) {
  const absl::Duration t = absl::Seconds(30);
  auto help = RunProcess({CmdistillBinary(), "--help"}, t);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("learner"));
  auto unknown = RunProcess({CmdistillBinary(), "trian"}, t);
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("unknown subcommand 'trian'"));
  auto bad_flag =
      RunProcess({CmdistillBinary(), "config", "print", "--bogus"}, t);
  EXPECT_EQ(bad_flag.exit_code, 2);
  EXPECT_THAT(bad_flag.err, HasSubstr("unknown flag --bogus"));
  auto local = RunProcess({CmdistillBinary(), "local"}, t);
  EXPECT_EQ(local.exit_code, 2);
  EXPECT_THAT(local.err, HasSubstr("--config FILE is required"));
}

TEST(CliProcess, ConfigValidateNamesKeyAndLine) {
  cmdistill::testing::TempDir dir;
  const std::string f =
      dir.Write("run.yaml", "method: cmdp\nconstraint:\n  budget: lots\n");
  auto r = RunProcess({CmdistillBinary(), "config", "validate", "--config", f},
                      absl::Seconds(30));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(
      r.err,
      HasSubstr(f + ":3:11: constraint.budget: expected a finite number"));
  const std::string ok = dir.Write("ok.yaml", "method: cmdp\n");
  auto p = RunProcess({CmdistillBinary(), "config", "print", "--config", ok,
                       "--set", "constraint.budget=0.25"},
                      absl::Seconds(30));
  EXPECT_EQ(p.exit_code, 0) << p.err;
  EXPECT_THAT(p.out, HasSubstr("budget: 0.25"));
}

TEST(CliProcess, GradeReadsJsonlAndKeepsLinesAligned) {
  const std::string in =
      "{\"response\": \"so 9 * 2 = 18\\n#### 18\", \"gold\": \"18\"}\n"
      "not json\n"
      "{\"response\": \"The answer is \\\\boxed{\\\\frac{1}{2}}\", \"gold\": "
      "\"0.5\"}\n"
      "{\"response\": \"#### 7\", \"gold\": 8}\n";
  auto r = RunProcess({CmdistillBinary(), "grade"}, absl::Seconds(30), in);
  EXPECT_EQ(r.exit_code, 1);  // one malformed line
  EXPECT_EQ(
      r.out,
      "{\"correct\":true,\"extracted\":\"18\"}\n"
      "{\"correct\":false,\"error\":\"not a JSON object\",\"extracted\":\"\"}\n"
      "{\"correct\":true,\"extracted\":\"\\\\frac{1}{2}\"}\n"
      "{\"correct\":false,\"extracted\":\"7\"}\n");
  EXPECT_THAT(r.err, HasSubstr("line 2: not a JSON object"));
}

TEST(CliProcess, DatagenWritesTheTask) {
  cmdistill::testing::TempDir dir;
  auto r = RunProcess({CmdistillBinary(), "datagen", "--out", dir.File("task"),
                       "--train", "40", "--test", "10", "--seed", "3"},
                      absl::Seconds(30));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto count = [](const std::string& path) {
    std::ifstream in(path);
    int n = 0;
    for (std::string line; std::getline(in, line);) n += !line.empty();
    return n;
  };
  EXPECT_EQ(count(dir.File("task/train.jsonl")), 40);
  EXPECT_EQ(count(dir.File("task/test.jsonl")), 10);
  auto bad = RunProcess(
      {CmdistillBinary(), "datagen", "--out", dir.File("x"), "--ops", "pow"},
      absl::Seconds(30));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("unknown operation 'pow'"));
}

TEST(CliProcess, InitModelScoreGenerateAndTokenize) {
  cmdistill::testing::TempDir dir;
  const std::string cfg = dir.Write(
      "config.json",
      R"({"model_type": "llama", "vocab_size": 260, "hidden_size": 32, "intermediate_size": 64,
          "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 64})");
  const std::string model = dir.File("model");
  auto init = RunProcess({CmdistillBinary(), "init-model", "--config", cfg,
                          "--out", model, "--seed", "1"},
                         absl::Seconds(60));
  ASSERT_EQ(init.exit_code, 0) << init.err;
  EXPECT_THAT(init.out, HasSubstr("-parameter llama model"));
  // score: len(ids) - 1 log-probabilities, each a real log-probability.
  auto score = RunProcess(
      {CmdistillBinary(), "score", "--model", model, "--device", "cpu"},
      absl::Seconds(60), "{\"ids\": [5, 6, 7, 8]}\n{\"ids\": [1, 300]}\n");
  EXPECT_EQ(score.exit_code, 1);  // the second line is out of the vocabulary
  const size_t nl = score.out.find('\n');
  ASSERT_NE(nl, std::string::npos);
  const auto first = nlohmann::json::parse(score.out.substr(0, nl));
  ASSERT_EQ(first["logprobs"].size(), 3u);
  for (const auto& v : first["logprobs"]) {
    EXPECT_LT(v.get<double>(), 0.0);
    EXPECT_GT(v.get<double>(), -20.0);
  }
  EXPECT_THAT(score.out, HasSubstr("outside the vocabulary"));
  // generate: deterministic by seed.
  std::vector<std::string> gen = {CmdistillBinary(),
                                  "generate",
                                  "--model",
                                  model,
                                  "--prompt",
                                  "Question: 1+1?",
                                  "--max-new-tokens",
                                  "5",
                                  "--json",
                                  "--seed",
                                  "7"};
  auto g1 = RunProcess(gen, absl::Seconds(60));
  auto g2 = RunProcess(gen, absl::Seconds(60));
  ASSERT_EQ(g1.exit_code, 0) << g1.err;
  EXPECT_EQ(g1.out, g2.out);
  EXPECT_EQ(nlohmann::json::parse(g1.out)["ids"].size(), 5u);
  // tokenize with the generated byte-level tokenizer: encode and decode back.
  auto enc = RunProcess({CmdistillBinary(), "tokenize", "--tokenizer", model},
                        absl::Seconds(30), "\"héllo\"\n");
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  EXPECT_EQ(nlohmann::json::parse(enc.out).size(), 6u);  // one id per byte
  auto dec = RunProcess(
      {CmdistillBinary(), "tokenize", "--tokenizer", model, "--decode"},
      absl::Seconds(30), enc.out + "[1, 99999]\n");
  EXPECT_EQ(dec.exit_code, 1);
  EXPECT_EQ(dec.out.substr(0, dec.out.find('\n')), "\"héllo\"");
  auto missing =
      RunProcess({CmdistillBinary(), "score", "--model", dir.File("nope")},
                 absl::Seconds(30));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("nope"));
}

// The real `cmdistill teacher` and `cmdistill reward` processes: READY line
// with the ports chosen for port 0, GetInfo over TCP, /metrics, and SIGTERM ->
// drain -> exit 0.
TEST(CliProcess, TeacherAndRewardServeThenStopOnSigterm) {
  cmdistill::testing::TempDir dir;
  const std::string cfg = dir.Write(
      "config.json",
      R"({"model_type": "qwen2", "vocab_size": 300, "hidden_size": 32, "intermediate_size": 64,
          "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 64})");
  const std::string model = dir.File("model");
  ASSERT_EQ(RunProcess({CmdistillBinary(), "init-model", "--config", cfg,
                        "--out", model},
                       absl::Seconds(60))
                .exit_code,
            0);
  const std::string run = dir.Write(
      "run.yaml",
      "student: {path: \"" + model + "\"}\nteacher: {path: \"" + model +
          "\", device: cpu}\nservices:\n  teacher: {listen: \"127.0.0.1:0\", "
          "metrics_listen: \"127.0.0.1:0\"}\n  reward: {listen: "
          "\"127.0.0.1:0\"}\n");
  for (const char* role : {"teacher", "reward"}) {
    cmdistill::testing::Subprocess child(
        {CmdistillBinary(), role, "--config", run});
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    ASSERT_OK_AND_ASSIGN(std::string ready, child.ReadLine(deadline));
    ASSERT_THAT(ready, HasSubstr(std::string("READY name=") + role));
    int port = 0, metrics_port = 0;
    std::sscanf(ready.c_str() + ready.find("grpc_port="),
                "grpc_port=%d metrics_port=%d", &port, &metrics_port);
    ASSERT_GT(port, 0);
    net::ChannelOptions co;
    co.target = "127.0.0.1:" + std::to_string(port);
    auto channel = *net::MakeChannel(co);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    if (std::string(role) == "teacher") {
      v1::GetTeacherInfoResponse info;
      ASSERT_TRUE(
          v1::TeacherService::NewStub(channel)->GetInfo(&ctx, {}, &info).ok());
      EXPECT_EQ(info.vocab_size(), 300u);
      EXPECT_EQ(info.tokenizer_fingerprint().size(), 64u);
      ASSERT_GT(metrics_port, 0);
      ASSERT_OK_AND_ASSIGN(std::string body, cmdistill::testing::HttpGet(
                                                 metrics_port, "/metrics"));
      EXPECT_THAT(body, HasSubstr("cmdistill_teacher_queue_capacity 256"));
    } else {
      v1::GetRewardInfoResponse info;
      ASSERT_TRUE(
          v1::RewardService::NewStub(channel)->GetInfo(&ctx, {}, &info).ok());
      EXPECT_EQ(info.method(), "cmdp");
      EXPECT_EQ(info.cost_normalization(), "per_max_len");
      EXPECT_EQ(info.tokenizer_fingerprint().size(), 64u);
    }
    channel.reset();
    child.Signal(SIGTERM);
    ASSERT_OK_AND_ASSIGN(int code, child.Wait(deadline));
    EXPECT_EQ(code, 0) << child.Stderr();
    EXPECT_THAT(child.Stderr(), HasSubstr("stopped"));
  }
}

}  // namespace
}  // namespace cmdistill
