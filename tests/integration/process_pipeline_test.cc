// The pipeline as separate processes, exactly as a deployment runs it:
// `cmdistill teacher`, `reward` and `learner` on 127.0.0.1:0 (ports read from
// their READY lines) and two `cmdistill actor` processes; training runs to
// max_steps, the learner writes the final model and every process exits 0.
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill {
namespace {

using ::cmdistill::testing::CmdistillBinary;
using ::cmdistill::testing::RunProcess;
using ::cmdistill::testing::Subprocess;
using ::testing::HasSubstr;

int PortOf(const std::string& ready) {
  int port = 0;
  std::sscanf(ready.c_str() + ready.find("grpc_port="), "grpc_port=%d", &port);
  return port;
}

TEST(ProcessPipeline, FourRolesAsProcessesTrainAndExitCleanly) {
  testing::TempDir dir;
  const std::string B = CmdistillBinary();
  const absl::Duration t = absl::Seconds(60);
  ASSERT_EQ(RunProcess({B, "datagen", "--out", dir.File("data"), "--train",
                        "12", "--test", "2"},
                       t)
                .exit_code,
            0);
  const std::string cfg = dir.Write(
      "config.json",
      R"({"model_type": "llama", "vocab_size": 260, "hidden_size": 32, "intermediate_size": 64,
          "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 512})");
  ASSERT_EQ(
      RunProcess(
          {B, "init-model", "--config", cfg, "--out", dir.File("student")}, t)
          .exit_code,
      0);
  ASSERT_EQ(RunProcess({B, "init-model", "--config", cfg, "--out",
                        dir.File("teacher"), "--seed", "2"},
                       t)
                .exit_code,
            0);
  const std::string run = dir.Write(
      "run.yaml",
      "output_dir: " + dir.File("run") +
          "\nstudent: {path: " + dir.File("student") +
          ", device: cpu}\nteacher: {path: " + dir.File("teacher") +
          ", device: cpu}\ndata: {train_path: " + dir.File("data/train.jsonl") +
          "}\ngeneration: {max_new_tokens: 6, samples_per_prompt: 4}\n"
          "training: {prompts_per_step: 2, max_steps: 4}\noptimizer: {lr: "
          "1e-3}\n"
          "reward: {answer_strictness: last_number}\n");
  std::vector<std::unique_ptr<Subprocess>> services;
  std::vector<int> ports;
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  for (const char* role : {"teacher", "reward", "learner"}) {
    services.push_back(std::make_unique<Subprocess>(
        std::vector<std::string>{B, role, "--config", run}));
    ASSERT_OK_AND_ASSIGN(std::string ready,
                         services.back()->ReadLine(deadline));
    ASSERT_THAT(ready, HasSubstr(std::string("READY name=") + role))
        << services.back()->Stderr();
    ports.push_back(PortOf(ready));
  }
  auto addr = [](int p) { return "127.0.0.1:" + std::to_string(p); };
  std::vector<std::unique_ptr<Subprocess>> actors;
  for (int a = 0; a < 2; ++a) {
    actors.push_back(std::make_unique<Subprocess>(std::vector<std::string>{
        B, "actor", "--config", run, "--teacher", addr(ports[0]), "--reward",
        addr(ports[1]), "--learner", addr(ports[2]), "--id",
        "a" + std::to_string(a)}));
  }
  // The learner reports each step, then FINISHED, and exits by itself.
  int steps = 0;
  std::string line;
  for (;;) {
    auto l = services[2]->ReadLine(deadline);
    ASSERT_OK(l.status()) << services[2]->Stderr();
    if (l->rfind("STEP ", 0) == 0) ++steps;
    if (l->rfind("FINISHED ", 0) == 0) {
      line = *l;
      break;
    }
  }
  EXPECT_EQ(steps, 4);
  EXPECT_THAT(line, HasSubstr("step=4"));
  EXPECT_THAT(line, HasSubstr("complete=1"));
  ASSERT_OK_AND_ASSIGN(int learner_code, services[2]->Wait(deadline));
  EXPECT_EQ(learner_code, 0) << services[2]->Stderr();
  for (auto& a : actors) {
    ASSERT_OK_AND_ASSIGN(int code, a->Wait(deadline));
    EXPECT_EQ(code, 0) << a->Stderr();
  }
  for (int i = 0; i < 2; ++i) {
    services[i]->Signal(SIGTERM);
    ASSERT_OK_AND_ASSIGN(int code, services[i]->Wait(deadline));
    EXPECT_EQ(code, 0) << services[i]->Stderr();
  }
  // The final model is an ordinary Hugging Face folder the CLI can load.
  EXPECT_TRUE(std::ifstream(dir.File("run/final/model.safetensors")).good());
  auto score = RunProcess(
      {B, "score", "--model", dir.File("run/final"), "--device", "cpu"}, t,
      "{\"ids\": [1, 2, 3]}\n");
  EXPECT_EQ(score.exit_code, 0) << score.err;
}

}  // namespace
}  // namespace cmdistill
