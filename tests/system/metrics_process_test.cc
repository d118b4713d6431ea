// /metrics of real `cmdistill` service processes, scraped over HTTP: every
// known label value exported at 0 from the start, the budget equal to the run
// file's d, λ only for methods that have one, the learner's RPC latency
// histograms counting the calls made, build info and process metrics, and
// teacher batch histograms sized to the configured limits.
#include <signal.h>

#include <cstdio>
#include <map>
#include <string>

#include "absl/time/clock.h"
#include "cmdistill/v1/learner.grpc.pb.h"
#include "common/net/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill {
namespace {

using ::cmdistill::testing::CmdistillBinary;
using ::cmdistill::testing::RunProcess;
using ::testing::HasSubstr;
using Metrics = std::map<std::string, double>;

// The value of the one series whose key starts with `name{` and contains
// every label of `labels` ("k=\"v\""); NaN when none, or several, match.
double Series(const Metrics& m, const std::string& name,
              const std::vector<std::string>& labels = {}) {
  double found = std::nan("");
  int hits = 0;
  for (const auto& [key, v] : m) {
    if (key != name && key.rfind(name + "{", 0) != 0) continue;
    bool all = true;
    for (const auto& l : labels) all = all && key.find(l) != std::string::npos;
    if (!all) continue;
    found = v;
    ++hits;
  }
  return hits == 1 ? found : std::nan("");
}

bool HasFamily(const Metrics& m, const std::string& name) {
  for (const auto& [key, v] : m) {
    if (key == name || key.rfind(name + "{", 0) == 0) return true;
  }
  return false;
}

class MetricsProcessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    const std::string cfg = dir_->Write(
        "config.json",
        R"({"model_type": "qwen2", "vocab_size": 300, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 64})");
    model_ = dir_->File("model");
    ASSERT_EQ(RunProcess({CmdistillBinary(), "init-model", "--config", cfg,
                          "--out", model_},
                         absl::Seconds(60))
                  .exit_code,
              0);
    data_ = dir_->Write("train.jsonl",
                        "{\"question\": \"What is 1 plus 1?\", \"answer\": "
                        "\"1+1=2\\n#### 2\"}\n"
                        "{\"question\": \"What is 2 plus 3?\", \"answer\": "
                        "\"2+3=5\\n#### 5\"}\n");
  }
  static void TearDownTestSuite() { delete dir_; }

  std::string RunFile(const std::string& method) {
    return dir_->Write(
        "run-" + method + ".yaml",
        "method: " + method + "\noutput_dir: \"" + dir_->File("out-" + method) +
            "\"\nstudent: {path: \"" + model_ +
            "\", device: cpu}\nteacher: {path: \"" + model_ +
            "\", device: cpu}\ndata: {train_path: \"" + data_ +
            "\"}\nconstraint: {budget: 0.27, lambda_init: 0.3}\n"
            "teacher_service: {max_batch_tokens: 1000, max_request_tokens: "
            "3000, max_request_sequences: 64}\n"
            "services:\n"
            "  learner: {listen: \"127.0.0.1:0\", metrics_listen: "
            "\"127.0.0.1:0\"}\n"
            "  teacher: {listen: \"127.0.0.1:0\", metrics_listen: "
            "\"127.0.0.1:0\"}\n"
            "  reward: {listen: \"127.0.0.1:0\", metrics_listen: "
            "\"127.0.0.1:0\"}\n");
  }

  // Starts `role`, reads its READY line; returns the ports.
  static std::pair<int, int> Start(testing::Subprocess* child) {
    auto ready = child->ReadLine(absl::Now() + absl::Seconds(60));
    EXPECT_OK(ready.status()) << child->Stderr();
    if (!ready.ok()) return {0, 0};
    int port = 0, metrics_port = 0;
    std::sscanf(ready->c_str() + ready->find("grpc_port="),
                "grpc_port=%d metrics_port=%d", &port, &metrics_port);
    return {port, metrics_port};
  }

  static Metrics Scrape(int port) {
    auto body = testing::HttpGet(port, "/metrics");
    EXPECT_OK(body.status());
    if (!body.ok()) return {};
    auto m = testing::ParsePrometheusText(*body);
    EXPECT_OK(m.status()) << *body;
    return m.ok() ? *m : Metrics{};
  }

  static void Stop(testing::Subprocess* child) {
    child->Signal(SIGTERM);
    auto code = child->Wait(absl::Now() + absl::Seconds(60));
    ASSERT_OK(code.status());
    EXPECT_EQ(*code, 0) << child->Stderr();
  }

  static void ExpectProcessMetrics(const Metrics& m, const std::string& role) {
    EXPECT_EQ(Series(m, "cmdistill_build_info",
                     {"role=\"" + role + "\"", "version=\"0.1.0\""}),
              1)
        << role;
    EXPECT_GT(Series(m, "process_resident_memory_bytes"), 1e6) << role;
    EXPECT_GT(Series(m, "process_open_fds"), 2) << role;
    EXPECT_GT(Series(m, "process_max_fds"), 0) << role;
    EXPECT_GT(Series(m, "process_cpu_seconds_total"), 0) << role;
    const double now = absl::ToUnixSeconds(absl::Now());
    const double start = Series(m, "process_start_time_seconds");
    EXPECT_GT(start, now - 600) << role;
    EXPECT_LT(start, now + 5) << role;
  }

  static testing::TempDir* dir_;
  static std::string model_, data_;
};

testing::TempDir* MetricsProcessTest::dir_ = nullptr;
std::string MetricsProcessTest::model_;
std::string MetricsProcessTest::data_;

TEST_F(MetricsProcessTest, TeacherAndRewardExportEverySeriesFromTheStart) {
  const std::string run = RunFile("cmdp");
  {
    testing::Subprocess teacher(
        {CmdistillBinary(), "teacher", "--config", run});
    auto [port, mport] = Start(&teacher);
    ASSERT_GT(mport, 0);
    const Metrics m = Scrape(mport);
    for (const char* r : {"empty", "oversized", "length_mismatch", "too_long",
                          "token_out_of_vocab", "support_without_token"}) {
      EXPECT_EQ(Series(m, "cmdistill_teacher_refused_total",
                       {"reason=\"" + std::string(r) + "\""}),
                0)
          << r;
    }
    // Batch histograms end at the configured limits (1000 tokens per batch,
    // requests of up to 3000 tokens and 64 sequences), not at 2^20.
    EXPECT_EQ(
        Series(m, "cmdistill_teacher_batch_tokens_bucket", {"le=\"4096\""}), 0);
    EXPECT_TRUE(std::isnan(
        Series(m, "cmdistill_teacher_batch_tokens_bucket", {"le=\"8192\""})));
    EXPECT_EQ(
        Series(m, "cmdistill_teacher_batch_sequences_bucket", {"le=\"1024\""}),
        0);
    EXPECT_TRUE(std::isnan(Series(m, "cmdistill_teacher_batch_sequences_bucket",
                                  {"le=\"2048\""})));
    EXPECT_EQ(Series(m, "cmdistill_build_info", {"device=\"cpu\""}), 1);
    ExpectProcessMetrics(m, "teacher");
    Stop(&teacher);
  }
  {
    testing::Subprocess reward({CmdistillBinary(), "reward", "--config", run});
    auto [port, mport] = Start(&reward);
    ASSERT_GT(mport, 0);
    const Metrics m = Scrape(mport);
    EXPECT_DOUBLE_EQ(Series(m, "cmdistill_reward_budget"), 0.27);
    for (const char* k : {"no_answer", "timeout", "decode"}) {
      EXPECT_EQ(Series(m, "cmdistill_reward_verifier_failures_total",
                       {"kind=\"" + std::string(k) + "\""}),
                0)
          << k;
    }
    for (const char* r : {"empty", "oversized", "invalid_trajectory"}) {
      EXPECT_EQ(Series(m, "cmdistill_reward_refused_total",
                       {"reason=\"" + std::string(r) + "\""}),
                0)
          << r;
    }
    EXPECT_EQ(Series(m, "cmdistill_build_info", {"device=\"none\""}), 1);
    ExpectProcessMetrics(m, "reward");
    Stop(&reward);
  }
}

TEST_F(MetricsProcessTest, LearnerCountsItsRpcsAndExportsLambdaOnlyWhereItIs) {
  for (const std::string method : {"cmdp", "lagrangian"}) {
    testing::Subprocess learner(
        {CmdistillBinary(), "learner", "--config", RunFile(method)});
    auto [port, mport] = Start(&learner);
    ASSERT_GT(port, 0);
    ASSERT_GT(mport, 0);
    const Metrics before = Scrape(mport);
    for (const char* o :
         {"accepted", "duplicate", "too_stale", "invalid", "unknown_lease",
          "step_failed", "checkpoint_failed"}) {
      EXPECT_EQ(Series(before, "cmdistill_learner_trajectories_total",
                       {"outcome=\"" + std::string(o) + "\""}),
                0)
          << o;
    }
    EXPECT_DOUBLE_EQ(Series(before, "cmdistill_learner_budget"), 0.27);
    if (method == "cmdp") {
      EXPECT_FALSE(HasFamily(before, "cmdistill_learner_lambda"));
    } else {
      EXPECT_DOUBLE_EQ(Series(before, "cmdistill_learner_lambda"), 0.3);
    }
    EXPECT_EQ(Series(before, "cmdistill_learner_rpc_seconds_count",
                     {"method=\"GetStatus\""}),
              0);
    ExpectProcessMetrics(before, "learner");
    // Calls: 3 GetStatus, 1 LeasePrompts, 2 WaitForPolicy, 1 FetchPolicy.
    net::ChannelOptions co;
    co.target = "127.0.0.1:" + std::to_string(port);
    auto channel = *net::MakeChannel(co);
    auto stub = v1::LearnerService::NewStub(channel);
    auto deadline = [] {
      return absl::ToChronoTime(absl::Now() + absl::Seconds(20));
    };
    for (int i = 0; i < 3; ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(deadline());
      v1::GetStatusResponse r;
      ASSERT_TRUE(stub->GetStatus(&ctx, {}, &r).ok());
    }
    {
      grpc::ClientContext ctx;
      ctx.set_deadline(deadline());
      v1::LeasePromptsRequest req;
      req.set_max_prompts(1);
      v1::LeasePromptsResponse r;
      ASSERT_TRUE(stub->LeasePrompts(&ctx, req, &r).ok());
      EXPECT_EQ(r.leases_size(), 1);
    }
    for (int i = 0; i < 2; ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(deadline());
      v1::WaitForPolicyRequest req;  // max_wait_ms 0: answers at once
      v1::WaitForPolicyResponse r;
      ASSERT_TRUE(stub->WaitForPolicy(&ctx, req, &r).ok());
    }
    {
      grpc::ClientContext ctx;
      ctx.set_deadline(deadline());
      auto reader = stub->FetchPolicy(&ctx, {});
      v1::FetchPolicyResponse chunk;
      while (reader->Read(&chunk)) {
      }
      ASSERT_TRUE(reader->Finish().ok());
    }
    const Metrics after = Scrape(mport);
    const std::map<std::string, double> want = {{"GetStatus", 3},
                                                {"LeasePrompts", 1},
                                                {"WaitForPolicy", 2},
                                                {"FetchPolicy", 1},
                                                {"SubmitTrajectories", 0}};
    for (const auto& [m, n] : want) {
      EXPECT_EQ(Series(after, "cmdistill_learner_rpc_seconds_count",
                       {"method=\"" + m + "\""}),
                n)
          << method << " " << m;
    }
    EXPECT_GT(Series(after, "cmdistill_learner_rpc_seconds_sum",
                     {"method=\"FetchPolicy\""}),
              0);
    stub.reset();
    channel.reset();
    Stop(&learner);
  }
}

}  // namespace
}  // namespace cmdistill
