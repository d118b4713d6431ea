// The pipeline as separate processes, exactly as a deployment runs it:
// `cmdistill teacher`, `reward` and `learner` on 127.0.0.1:0 (ports read from
// their READY lines) and two `cmdistill actor` processes; training runs to
// max_steps, the learner writes the final model and every process exits 0.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/net/http_get.h"
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

using ::cmdistill::testing::PortOf;

// A synthetic task and random student/teacher folders in `dir`.
void MakeTaskAndModels(const testing::TempDir& dir, int train) {
  ASSERT_OK(testing::MakeTinyTaskAndModels(dir, train));
}

TEST(ProcessPipeline, FourRolesAsProcessesTrainAndExitCleanly) {
  testing::TempDir dir;
  const std::string B = CmdistillBinary();
  const absl::Duration t = absl::Seconds(60);
  MakeTaskAndModels(dir, 12);
  if (HasFatalFailure()) return;
  const std::string run = dir.Write(
      "run.yaml",
      "output_dir: " + dir.File("run") +
          "\nstudent: {path: " + dir.File("student") +
          ", device: cpu}\nteacher: {path: " + dir.File("teacher") +
          ", device: cpu}\ndata: {train_path: " + dir.File("data/train.jsonl") +
          "}\ngeneration: {max_new_tokens: 6, samples_per_prompt: 4}\n"
          "training: {prompts_per_step: 2, max_steps: 4, linger_seconds: 5}\n"
          "optimizer: {lr: 1e-3}\n"
          "reward: {answer_strictness: last_number}\n"
          // Learner and actors keep /metrics up after they end, until a
          // signal: the run's last values can be scraped.
          "services: {final_scrape_seconds: 60, actor_metrics_listen: "
          "\"127.0.0.1:0\", learner: {metrics_listen: \"127.0.0.1:0\"}}\n");
  std::vector<std::unique_ptr<Subprocess>> services;
  std::vector<int> ports;
  int learner_metrics_port = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  for (const char* role : {"teacher", "reward", "learner"}) {
    services.push_back(std::make_unique<Subprocess>(
        std::vector<std::string>{B, role, "--config", run}));
    ASSERT_OK_AND_ASSIGN(std::string ready,
                         services.back()->ReadLine(deadline));
    ASSERT_THAT(ready, HasSubstr(std::string("READY name=") + role))
        << services.back()->Stderr();
    ports.push_back(PortOf(ready));
    learner_metrics_port = PortOf(ready, "metrics_port");  // the last: learner
  }
  auto addr = [](int p) { return "127.0.0.1:" + std::to_string(p); };
  std::vector<std::unique_ptr<Subprocess>> actors;
  std::vector<int> actor_metrics;
  for (int a = 0; a < 2; ++a) {
    actors.push_back(std::make_unique<Subprocess>(std::vector<std::string>{
        B, "actor", "--config", run, "--teacher", addr(ports[0]), "--reward",
        addr(ports[1]), "--learner", addr(ports[2]), "--id",
        "a" + std::to_string(a)}));
    ASSERT_OK_AND_ASSIGN(std::string ready, actors.back()->ReadLine(deadline));
    ASSERT_THAT(ready, HasSubstr("READY name=actor"))
        << actors.back()->Stderr();
    actor_metrics.push_back(PortOf(ready, "metrics_port"));
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
  // After FINISHED the learner still serves its final values (the window),
  // and the actors, told "finished", theirs: then a SIGTERM ends each wait.
  ASSERT_OK_AND_ASSIGN(std::string learner_metrics,
                       net::HttpGet(learner_metrics_port, "/metrics"));
  EXPECT_THAT(learner_metrics, HasSubstr("cmdistill_learner_step 4"));
  // 4 steps x 2 prompts x 4 samples trained: the actors' final counts (at
  // least those) stay readable after the learner finished.
  double generated = 0;
  while (absl::Now() < deadline) {
    generated = 0;
    for (int port : actor_metrics) {
      auto m = net::HttpGet(port, "/metrics");
      ASSERT_OK(m.status()) << "an actor stopped serving its final values";
      generated += (*testing::ParsePrometheusText(
          *m))["cmdistill_actor_trajectories_total"];
    }
    if (generated >= 32) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_GE(generated, 32);
  services[2]->Signal(SIGTERM);
  ASSERT_OK_AND_ASSIGN(int learner_code, services[2]->Wait(deadline));
  EXPECT_EQ(learner_code, 0) << services[2]->Stderr();
  EXPECT_THAT(services[2]->Stderr(),
              HasSubstr("serving /metrics 60 s more for the final scrape"));
  for (auto& a : actors) {
    a->Signal(SIGTERM);
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
  // A learner started again on the finished run (a Job's pod restarted after
  // the end) says so, trains nothing and exits 0 — at once once the actors
  // its checkpoint saw have had their linger (here they are gone: <= 5 s).
  Subprocess again({B, "learner", "--config", run});
  int again_steps = 0;
  for (;;) {
    auto l = again.ReadLine(deadline);
    if (!l.ok()) break;
    if (l->rfind("STEP ", 0) == 0) ++again_steps;
  }
  ASSERT_OK_AND_ASSIGN(int again_code, again.Wait(deadline));
  EXPECT_EQ(again_code, 0) << again.Stderr();
  EXPECT_EQ(again_steps, 0);
  EXPECT_THAT(again.Stderr(), HasSubstr("run already finished at step 4"));
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<struct sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<struct sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// Kill one actor, then the learner, mid-run (SIGKILL) and restart the learner
// with
// --resume auto on the same address: it continues from the checkpointed step
// and policy version, the surviving actor reconnects by itself and takes over
// the dead actor's expired leases, and every prompt is trained exactly once.
TEST(ProcessPipeline, KilledLearnerResumesAndNothingIsTrainedTwice) {
  testing::TempDir dir;
  const std::string B = CmdistillBinary();
  MakeTaskAndModels(dir, 16);
  if (HasFatalFailure()) return;
  const int port = FreePort();
  const std::string run = dir.Write(
      "run.yaml",
      "output_dir: " + dir.File("run") +
          "\nstudent: {path: " + dir.File("student") +
          ", device: cpu}\nteacher: {path: " + dir.File("teacher") +
          ", device: cpu}\ndata: {train_path: " + dir.File("data/train.jsonl") +
          "}\ngeneration: {max_new_tokens: 6, samples_per_prompt: 2}\n"
          "training: {prompts_per_step: 2, max_steps: 8, "
          "checkpoint_every_steps: 2, "
          // The killed actor never hears "finished": the learner waits for
          // it at most this long.
          "lease_seconds: 2, linger_seconds: 3}\n"
          "optimizer: {lr: 1e-3}\nreward: {answer_strictness: last_number}\n"
          // It stays up a little after the end, so that the `cmdistill
          // status` started at its first resumed step still finds it.
          "services:\n  final_scrape_seconds: 5\n  learner: {listen: "
          "\"127.0.0.1:" +
          std::to_string(port) + "\"}\n");
  const absl::Time deadline = absl::Now() + absl::Seconds(150);
  std::vector<std::unique_ptr<Subprocess>> services;
  std::vector<int> ports;
  for (const char* role : {"teacher", "reward"}) {
    services.push_back(std::make_unique<Subprocess>(
        std::vector<std::string>{B, role, "--config", run}));
    ASSERT_OK_AND_ASSIGN(std::string ready,
                         services.back()->ReadLine(deadline));
    ports.push_back(PortOf(ready));
  }
  auto addr = [](int p) { return "127.0.0.1:" + std::to_string(p); };
  auto learner = std::make_unique<Subprocess>(
      std::vector<std::string>{B, "learner", "--config", run});
  ASSERT_OK_AND_ASSIGN(std::string ready, learner->ReadLine(deadline));
  ASSERT_EQ(PortOf(ready), port);
  std::vector<std::unique_ptr<Subprocess>> actors;
  for (int a = 0; a < 2; ++a) {
    actors.push_back(std::make_unique<Subprocess>(std::vector<std::string>{
        B, "actor", "--config", run, "--teacher", addr(ports[0]), "--reward",
        addr(ports[1]), "--learner", addr(port), "--id",
        "a" + std::to_string(a), "--set",
        "services.rpc_deadline_seconds=120"}));
  }
  // Wait until the step-2 checkpoint exists (it is written before step 3
  // trains), then kill the learner hard. One actor dies earlier: its leases
  // expire (2 s) and are re-issued to the other.
  for (;;) {
    ASSERT_OK_AND_ASSIGN(std::string l, learner->ReadLine(deadline));
    if (l.rfind("STEP step=1 ", 0) == 0) actors[1]->Signal(SIGKILL);
    if (l.rfind("STEP step=3 ", 0) == 0) break;
  }
  learner->Signal(SIGKILL);
  ASSERT_OK_AND_ASSIGN(int killed, learner->Wait(deadline));
  EXPECT_EQ(killed, -SIGKILL);
  // Restart on the same address; it resumes from the newest valid checkpoint.
  learner = std::make_unique<Subprocess>(std::vector<std::string>{
      B, "learner", "--config", run, "--resume", "auto"});
  auto again = learner->ReadLine(deadline);
  if (!again.ok()) (void)learner->Wait(deadline);
  ASSERT_TRUE(again.ok()) << learner->Stderr();
  ready = *again;
  ASSERT_EQ(PortOf(ready), port) << learner->Stderr();
  std::vector<int> steps;
  std::string finished;
  testing::RunResult status;
  for (;;) {
    auto l = learner->ReadLine(deadline);
    ASSERT_OK(l.status()) << learner->Stderr();
    if (l->rfind("STEP step=", 0) == 0) {
      steps.push_back(std::atoi(l->c_str() + 10));
      // The ledger from outside, while it trains: the groups trained before
      // the kill are there (restored from the checkpoint), none twice.
      if (steps.size() == 1)
        status = RunProcess({B, "status", "--config", run, "--learner",
                             "127.0.0.1:" + std::to_string(port), "--json"},
                            absl::Seconds(30));
    }
    if (l->rfind("FINISHED ", 0) == 0) {
      finished = *l;
      break;
    }
  }
  ASSERT_FALSE(steps.empty());
  EXPECT_GE(steps.front(),
            3);  // continued after a checkpoint, not from scratch
  EXPECT_EQ(steps.back(), 8);
  EXPECT_THAT(finished, HasSubstr("step=8"));
  // 8 steps x 2 prompts: 16 prompts, each trained exactly once across the kill.
  EXPECT_THAT(finished, HasSubstr("prompts=16 unique=16 epochs=16/16"));
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("\"numPrompts\":\"16\""));
  // step 3's checkpoint (2 prompts per step) and the first resumed step.
  EXPECT_THAT(status.out,
              ::testing::ContainsRegex("\"trained\":\"([6-9]|1[0-6])\""));
  EXPECT_THAT(learner->Stderr(), HasSubstr("resuming from"));
  ASSERT_OK_AND_ASSIGN(int code, learner->Wait(deadline));
  EXPECT_EQ(code, 0);
  ASSERT_OK_AND_ASSIGN(int c0, actors[0]->Wait(deadline));
  EXPECT_EQ(c0, 0) << actors[0]->Stderr();
  ASSERT_OK_AND_ASSIGN(int c1, actors[1]->Wait(deadline));
  EXPECT_EQ(c1, -SIGKILL);
  for (auto& s : services) s->Signal(SIGTERM);
}

}  // namespace
}  // namespace cmdistill
