// The whole actor-learner pipeline in one process, over real gRPC on
// 127.0.0.1:0: a learner, a teacher, a reward service and two actor threads
// with tiny models. Training runs to the end of the data; every prompt is
// trained exactly once, policy versions advance, and the actors pick up new
// policies.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard (not in ATen.h on 2.x)

#include <cstdio>

#include "common/metrics/metrics.h"
#include "common/model/language_model.h"
#include "common/model/transformer.h"
#include "common/net/client.h"
#include "common/net/server.h"
#include "common/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/actor/actor.h"
#include "services/learner/learner.h"
#include "services/reward/evaluator.h"
#include "services/teacher/teacher_service.h"
#include "tests/testing/model_configs.h"
#include "tests/testing/pipeline_fixture.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill {
namespace {

// Per-token KL budget (per_max_len) of the constraint test below.
constexpr double kBindingBudget = 0.2;
// ... and one that leaves the rewarded token within reach (it costs about
// 1 nat per token against this teacher; grpo drifts to 2.6-4.7; the whole
// answer, its last token's state included, must fit: see below).
constexpr double kRoomyBudget = 4.0;

checkpoint::ModelConfig Tiny() {
  testing::TinyShape s;
  s.vocab = 257;  // the byte-level tokenizer: 256 bytes + <|endoftext|>
  return testing::TinyConfig(s);
}

// The tokenizer of the tests: 256 byte tokens + <|endoftext|>.
std::unique_ptr<tokenizer::Tokenizer> ByteTokenizer() {
  return *tokenizer::Tokenizer::FromJson(
      tokenizer::MakeByteLevelTokenizerJson({}, {"<|endoftext|>"}), "",
      "bytes");
}

// n prompts "Q<i>:" with gold answer i mod 10.
std::vector<learner::Prompt> QPrompts(const tokenizer::Tokenizer& tok, int n) {
  std::vector<learner::Prompt> prompts;
  for (int i = 0; i < n; ++i) {
    learner::Prompt p;
    p.text = "Q" + std::to_string(i) + ":";
    p.ids = *tok.Encode(p.text);
    p.gold = std::to_string(i % 10);
    prompts.push_back(p);
  }
  return prompts;
}

// The options every test's actors share; each test changes what it tests.
actor::ActorOptions BaseActor(const tokenizer::Tokenizer& tok, int a) {
  actor::ActorOptions ao;
  ao.actor_id = "actor-" + std::to_string(a);
  ao.prompts_per_lease = 1;
  ao.sampling.max_new_tokens = 4;
  ao.sampling.support_k = 1000;  // whole vocabulary
  ao.sampling.seed = static_cast<uint64_t>(a);
  ao.tokenizer_fingerprint = tok.fingerprint();
  ao.call.timeout = absl::Seconds(30);
  ao.call.retry.initial_backoff = absl::Milliseconds(5);
  ao.idle_wait = absl::Milliseconds(100);
  return ao;
}

// A cmdp pipeline over `prompts` (G samples each, 2 prompts a step) with the
// byte tokenizer's tiny models.
testing::PipelineSpec CmdpSpec(std::vector<learner::Prompt> prompts, int G) {
  testing::PipelineSpec spec;
  spec.prompts = std::move(prompts);
  spec.student = *model::LanguageModel::InitRandom(Tiny(), 1, "cpu", "float32");
  spec.trainer.method = rl::Method::kCmdp;
  spec.trainer.optimizer.lr = 1e-2;
  spec.learner.lease.samples_per_prompt = G;
  spec.learner.prompts_per_step = 2;
  spec.learner.max_steps = 1000;  // ends with the data
  spec.reward.reward.method = rl::Method::kCmdp;
  spec.reward.reward.budget = {0.35, rl::CostNormalization::kPerMaxLen, 4};
  spec.teacher_config = Tiny();
  return spec;
}

TEST(Pipeline, TrainsEveryPromptExactlyOnceWithTwoActors) {
  auto tok = ByteTokenizer();
  constexpr int kPrompts = 12, kG = 4;
  testing::PipelineSpec spec = CmdpSpec(QPrompts(*tok, kPrompts), kG);
  spec.learner.lease.epochs = 1;
  spec.reward.strictness = tasks::Strictness::kLastNumber;
  testing::InProcessPipeline p(tok.get(), std::move(spec));
  // Two actors, each with its own copy of the policy.
  for (int a = 0; a < 2; ++a) p.AddActor(BaseActor(*tok, a), 50 + a, Tiny());
  p.RunAll();
  p.WaitUntilFinished();
  for (const auto& r : p.results()) EXPECT_OK(r);
  // Exactly once: every prompt trained, none twice.
  const std::vector<v1::EpochStatus> epochs = p.learner().epoch_status();
  ASSERT_EQ(epochs.size(), 1u);
  EXPECT_EQ(epochs[0].trained(), static_cast<uint64_t>(kPrompts));
  EXPECT_EQ(epochs[0].unique(), static_cast<uint64_t>(kPrompts));
  EXPECT_EQ(p.learner().step(), kPrompts / 2);
  EXPECT_EQ(p.learner().policy_version(), static_cast<uint64_t>(kPrompts / 2));
  EXPECT_GT(p.actor(0).rounds() + p.actor(1).rounds(), 0);
  EXPECT_GT(std::max(p.actor(0).policy_version(), p.actor(1).policy_version()),
            0u);
  auto m =
      *testing::ParsePrometheusText(metrics::Serialize(p.learner_registry()));
  EXPECT_EQ(m["cmdistill_learner_trajectories_total{outcome=\"accepted\"}"],
            kPrompts * kG);
  EXPECT_EQ(m["cmdistill_learner_step"], kPrompts / 2);
}

TEST(Pipeline, ActorsJoinAndLeaveMidRunAndEveryPromptTrainsOnce) {
  // The pull model makes scaling free: 1 actor, then 3 more join, then 2 of
  // them leave (cleanly: their unfinished leases go back) — every prompt of
  // the epoch is still trained exactly once, and the learner counted 4 actors.
  auto tok = ByteTokenizer();
  constexpr int kPrompts = 24, kG = 2;
  testing::PipelineSpec spec = CmdpSpec(QPrompts(*tok, kPrompts), kG);
  absl::Mutex mu;
  int steps = 0;
  spec.observer = [&](const learner::StepStats&, uint64_t) {
    absl::MutexLock l(&mu);
    ++steps;
  };
  auto wait_for_step = [&](int n) {
    absl::MutexLock l(&mu);
    auto reached = [&]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return steps >= n; };
    return mu.AwaitWithTimeout(absl::Condition(&reached), absl::Minutes(2));
  };
  testing::InProcessPipeline p(tok.get(), std::move(spec));  // 12 steps
  constexpr int kActors = 4;
  for (int a = 0; a < kActors; ++a) {
    actor::ActorOptions ao = BaseActor(*tok, a);
    ao.idle_wait = absl::Milliseconds(20);
    p.AddActor(ao, 50 + a, Tiny());
  }
  p.Run(0);
  ASSERT_TRUE(wait_for_step(2));
  for (int a = 1; a < kActors; ++a) p.Run(a);
  ASSERT_TRUE(wait_for_step(6));
  p.Leave(1);  // two leave mid-run
  p.Leave(2);
  p.WaitUntilFinished();
  for (const auto& r : p.results()) EXPECT_OK(r);
  const std::vector<v1::EpochStatus> epochs = p.learner().epoch_status();
  ASSERT_EQ(epochs.size(), 1u);
  EXPECT_EQ(epochs[0].trained(), static_cast<uint64_t>(kPrompts));
  EXPECT_EQ(epochs[0].unique(), static_cast<uint64_t>(kPrompts));
  EXPECT_EQ(p.learner().step(), kPrompts / 2);
  auto m =
      *testing::ParsePrometheusText(metrics::Serialize(p.learner_registry()));
  EXPECT_EQ(m["cmdistill_learner_live_actors"], kActors);
  EXPECT_EQ(m["cmdistill_learner_trajectories_total{outcome=\"duplicate\"}"],
            0);
}

TEST(Pipeline, AnActorOutlastsATeacherThatStartsLate) {
  // The actor starts while nothing listens on the teacher's address; it must
  // keep retrying its start-up check (counted in its RPC metrics) and train
  // once the teacher comes up, instead of exiting (found by the chaos harness:
  // a teacher gone for 30 s ended a fresh actor).
  auto tok = ByteTokenizer();
  testing::PipelineSpec spec = CmdpSpec(QPrompts(*tok, 4), 2);
  spec.learner.max_steps = 2;
  spec.serve_teacher = false;  // served below, late
  testing::InProcessPipeline p(tok.get(), std::move(spec));
  // A free port for the teacher, with nothing on it yet.
  int port = 0;
  {
    auto probe_registry = metrics::NewRegistry();
    auto probe_gate = net::GrpcServer::MakeGate({}, probe_registry.get());
    teacher::TeacherServiceImpl probe_service(p.teacher_scorer(), probe_gate,
                                              probe_registry.get(), {});
    auto probe = net::GrpcServer::Start(net::ServerOptions{}, probe_gate,
                                        {&probe_service});
    ASSERT_OK(probe.status());
    port = (*probe)->port();
    (*probe)->Shutdown(absl::ZeroDuration(), [&] { probe_service.Close(); });
  }
  actor::ActorOptions ao;
  ao.prompts_per_lease = 1;
  ao.sampling.max_new_tokens = 4;
  ao.sampling.support_k = 1000;
  ao.tokenizer_fingerprint = tok->fingerprint();
  ao.call.timeout = absl::Seconds(1);  // each start-up check gives up fast
  ao.call.retry.initial_backoff = absl::Milliseconds(5);
  ao.call.retry.max_backoff = absl::Milliseconds(50);
  ao.idle_wait = absl::Milliseconds(50);
  net::ChannelOptions co;
  co.target = "127.0.0.1:" + std::to_string(port);
  actor::Actor& a = *p.AddActor(ao, 9, Tiny(), *net::MakeChannel(co));
  p.Run(0);
  // Wait (bounded) until two start-up checks have failed.
  const std::string checks =
      "cmdistill_actor_rpc_seconds_count{method=\"GetInfo\",peer=\"teacher\"}";
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  double failed = 0;
  while (absl::Now() < give_up) {
    auto m =
        testing::ParsePrometheusText(metrics::Serialize(p.actor_registry()));
    failed = m.ok() ? (*m)[checks] : 0;
    if (failed >= 2) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_GE(failed, 2) << "the actor did not retry its start-up check";
  // Now the teacher comes up on that address; the actor trains to the end.
  net::ServerOptions so;
  so.listen_address = "127.0.0.1:" + std::to_string(port);
  auto teacher_server =
      net::GrpcServer::Start(so, p.teacher_gate(), {&p.teacher_service()});
  ASSERT_OK(teacher_server.status()) << "port " << port << " was taken";
  p.WaitUntilFinished();
  EXPECT_OK(p.results()[0]);
  EXPECT_EQ(p.learner().step(), 2);
  EXPECT_GT(a.rounds(), 0);
  p.Stop();
  (*teacher_server)->Shutdown(absl::Seconds(2), [&] {
    p.teacher_service().Close();
  });
}

// `n` prompts "Q0:".."Q7:" whose gold answer is always "7".
std::vector<learner::Prompt> SevenPrompts(const tokenizer::Tokenizer& tok,
                                          int n) {
  std::vector<learner::Prompt> prompts;
  for (int i = 0; i < n; ++i) {
    learner::Prompt p;
    p.text = "Q" + std::to_string(i % 8) + ":";
    p.ids = *tok.Encode(p.text);
    p.gold = "7";
    prompts.push_back(p);
  }
  return prompts;
}

// A random tiny student with '7' made somewhat likely: a constant direction in
// the residual stream, read out by the '7' row of lm_head.
std::unique_ptr<model::LanguageModel> StudentLeaningToSeven(
    const tokenizer::Tokenizer& tok) {
  const int32_t seven = tok.TokenToId("7");
  auto student = *model::LanguageModel::InitRandom(Tiny(), 1, "cpu", "float32");
  at::NoGradGuard no_grad;
  for (const auto& [name, t] : student->transformer()->named_parameters()) {
    if (name == "model.embed_tokens.weight") t.select(1, 0).fill_(1.0);
    if (name == "lm_head.weight") t.select(0, seven).select(0, 0).fill_(0.75);
  }
  return student;
}

// Learning through the whole distributed loop: every prompt's gold answer is
// "7" and the reward service grades the last number of the one-token
// completion. The student starts with '7' made somewhat likely (about one
// completion in five), then learns by RL with two actors.
TEST(Pipeline, TheStudentLearnsThroughTheServices) {
  auto tok = ByteTokenizer();
  testing::PipelineSpec spec;
  spec.prompts = SevenPrompts(*tok, 240);
  spec.student = StudentLeaningToSeven(*tok);
  spec.trainer.method = rl::Method::kGrpo;
  spec.trainer.optimizer.lr = 5e-2;
  spec.trainer.optimizer.total_steps = 60;
  spec.learner.lease.samples_per_prompt = 8;
  spec.learner.prompts_per_step = 4;
  spec.learner.max_steps = 60;
  spec.learner.max_policy_lag = 1;
  std::vector<double> rewards;
  spec.observer = [&](const learner::StepStats& s, uint64_t) {
    rewards.push_back(s.mean_task_reward);
  };
  spec.reward.reward.method = rl::Method::kGrpo;
  spec.reward.strictness = tasks::Strictness::kLastNumber;
  spec.serve_teacher = false;  // grpo
  spec.teacher_config = Tiny();
  testing::InProcessPipeline p(tok.get(), std::move(spec));
  for (int a = 0; a < 2; ++a) {
    actor::ActorOptions ao = BaseActor(*tok, a);
    ao.sampling.max_new_tokens = 1;  // the answer is the one token
    ao.sampling.support_k = 0;
    ao.sampling.seed = static_cast<uint64_t>(a + 1);
    ao.tokenizer_fingerprint.clear();
    ao.needs_teacher = false;  // grpo
    p.AddActor(ao, 9, Tiny());
  }
  p.RunAll();
  p.WaitUntilFinished();
  for (const auto& r : p.results()) EXPECT_OK(r);
  ASSERT_EQ(rewards.size(), 60u);
  const double first = (rewards[0] + rewards[1] + rewards[2]) / 3;
  const double last = (rewards[57] + rewards[58] + rewards[59]) / 3;
  RecordProperty("first_reward", std::to_string(first));
  RecordProperty("last_reward", std::to_string(last));
  // On an idle machine the last steps reach > 0.9; under load (ctest -j2
  // beside other heavy tests) the actors' interleaving makes more samples
  // stale, and 20 loaded runs, of this code and of the code before it, ended
  // at 0.78-1.0 from a start of 0.15-0.25.
  EXPECT_LT(first, 0.5);
  EXPECT_GT(last, 0.7);
  EXPECT_GT(last, first + 0.4);
}

// The constraint binds through the running services: the same student, teacher,
// seed and steps, trained once with grpo and once with cmdp. The reward
// favours a '7' as the last number of a three-token completion; the teacher
// (another random model) does not. grpo learns '7' without regard to the
// teacher and every completion leaves the budget; cmdp pulls its KL down to the
// budget (here giving up the reward: the penalty outweighs it).
struct ConstraintRun {
  std::vector<double> satisfaction, reward, kl;
};

ConstraintRun TrainThroughServices(rl::Method method,
                                   double budget = kBindingBudget,
                                   uint64_t actor_seed = 1) {
  auto tok = ByteTokenizer();
  constexpr int kNew = 3, kSteps = 40;
  testing::PipelineSpec spec;
  spec.prompts = SevenPrompts(*tok, 400);
  spec.student = StudentLeaningToSeven(*tok);
  spec.trainer.method = method;
  spec.trainer.optimizer.lr = 3e-2;
  spec.trainer.optimizer.total_steps = kSteps;
  spec.trainer.kappa = 5.0;  // term II pulls infeasible tokens back firmly
  spec.learner.lease.samples_per_prompt = 8;
  spec.learner.prompts_per_step = 4;
  spec.learner.max_steps = kSteps;
  spec.learner.max_policy_lag = 1;
  ConstraintRun run;
  spec.observer = [&](const learner::StepStats& s, uint64_t) {
    run.satisfaction.push_back(s.satisfaction);
    run.reward.push_back(s.mean_task_reward);
    run.kl.push_back(s.mean_token_kl);
  };
  spec.reward.reward.method = method;
  spec.reward.reward.penalty = 1;
  spec.reward.reward.budget = {budget, rl::CostNormalization::kPerMaxLen, kNew};
  spec.reward.strictness = tasks::Strictness::kLastNumber;
  spec.teacher_config = Tiny();
  testing::InProcessPipeline p(tok.get(), std::move(spec));
  for (int a = 0; a < 2; ++a) {
    actor::ActorOptions ao = BaseActor(*tok, a);
    ao.sampling.max_new_tokens = kNew;
    ao.sampling.support_k = 1000;  // whole vocabulary: exact KL
    ao.sampling.seed = actor_seed + static_cast<uint64_t>(a);
    ao.needs_teacher = true;  // grpo too: the teacher's scores feed the CSR
    p.AddActor(ao, 9, Tiny());
  }
  p.RunAll();
  p.WaitUntilFinished();
  for (const auto& r : p.results()) EXPECT_OK(r);
  return run;
}

double MeanOfLast(const std::vector<double>& v, size_t n) {
  double s = 0;
  for (size_t i = v.size() - n; i < v.size(); ++i) s += v[i];
  return s / static_cast<double>(n);
}

TEST(Pipeline, TheConstraintBindsThroughTheServices) {
  const ConstraintRun grpo = TrainThroughServices(rl::Method::kGrpo);
  const ConstraintRun cmdp = TrainThroughServices(rl::Method::kCmdp);
  ASSERT_EQ(grpo.satisfaction.size(), 40u);
  ASSERT_EQ(cmdp.satisfaction.size(), 40u);
  // Over the whole run: the batch CSR of the last 20 steps alone swings
  // between 0 and 1 (cmdp settles at the budget's edge, and which side
  // depends on the actors' interleaving — under a loaded machine, ctest -j2,
  // 3 of 8 runs ended all-infeasible). Over 18 loaded runs: grpo 0.000-0.005,
  // cmdp 0.32-0.67.
  const double g = MeanOfLast(grpo.satisfaction, 40);
  const double c = MeanOfLast(cmdp.satisfaction, 40);
  RecordProperty("grpo_satisfaction", std::to_string(g));
  RecordProperty("cmdp_satisfaction", std::to_string(c));
  EXPECT_GT(c, g + 0.1) << "grpo " << g << " vs cmdp " << c;
  // Reward-only training drifts from the teacher: its per-token KL ends about
  // 10-30x cmdp's (2.6-4.7 vs 0.06-0.39 over 18 loaded runs). How much of the
  // task it learns in 40 steps depends on the interleaving (final reward
  // 0.11-1.0 under load, > 0.9 on an idle machine), so that is not asserted
  // here; TheStudentLearnsThroughTheServices asserts learning.
  EXPECT_GT(MeanOfLast(grpo.kl, 10), 2.0);
  EXPECT_LT(MeanOfLast(cmdp.kl, 10), 0.2 * MeanOfLast(grpo.kl, 10));
}

TEST(Pipeline, CmdpGainsRewardThatDistillationAloneDoesNot) {
  // The same services and warm start: gkd only imitates the teacher (which
  // does not favour the rewarded token), cmdp also follows the task reward
  // within the budget. Rewards of the training batches (sampled, T = 1).
  const ConstraintRun gkd =
      TrainThroughServices(rl::Method::kGkd, kRoomyBudget);
  // cmdp twice (actor seeds 1 and 3): one run's outcome depends on the
  // actors' interleaving, and 1 in about 17 loaded runs of one seed ended at
  // 0.01 (2026-12-07); the assertion is on their mean.
  const ConstraintRun cmdp =
      TrainThroughServices(rl::Method::kCmdp, kRoomyBudget);
  const ConstraintRun cmdp2 =
      TrainThroughServices(rl::Method::kCmdp, kRoomyBudget, 3);
  ASSERT_EQ(gkd.reward.size(), 40u);
  ASSERT_EQ(cmdp.reward.size(), 40u);
  ASSERT_EQ(cmdp2.reward.size(), 40u);
  const double warm = (cmdp.reward[0] + gkd.reward[0]) / 2;
  const double g = MeanOfLast(gkd.reward, 20);
  const double c1 = MeanOfLast(cmdp.reward, 20),
               c2 = MeanOfLast(cmdp2.reward, 20);
  const double c = (c1 + c2) / 2;
  std::printf("reward: warm %.3f gkd %.3f cmdp %.3f (%.3f, %.3f)\n", warm, g, c,
              c1, c2);
  RecordProperty("gkd_reward", std::to_string(g));
  RecordProperty("cmdp_reward", std::to_string(c));
  // 14 runs on a loaded machine (an experiment beside them): gkd 0.000 every
  // time, cmdp 0.25-1.00 (12 of 14 above 0.75), the warm start 0.41-0.47.
  // (The budget was 2.5 until the last-token gate: an answer whose last
  // token's state pushes it over d now loses R, as CSR counts it, and at 2.5
  // cmdp ended at 0.00-0.45 in 3 loaded runs.) How far cmdp rises above
  // the warm start depends on the actors' interleaving under load (as grpo's
  // does, above), so the margin is asserted against gkd only.
  EXPECT_GT(c, g + 0.05) << "gkd " << g << " vs cmdp " << c;
}

}  // namespace
}  // namespace cmdistill
