// The learner's update step in-process, with generation from the same model: a
// tiny random model learns a task by RL (reward 1 when the completion starts
// with a chosen token), and the method changes what is learned (cmdp keeps the
// student near the teacher, grpo does not).
#include "services/learner/policy_trainer.h"

#include <cmath>

#include "common/model/language_model.h"
#include "common/rl/constraint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/model_configs.h"
#include "tests/testing/status_matchers.h"

namespace cmdistill::learner {
namespace {

using ::cmdistill::testing::StatusIs;

constexpr int kTarget = 7, kG = 8, kPrompts = 4, kNew = 3;

checkpoint::ModelConfig Tiny() {
  testing::TinyShape s;
  s.vocab = 24;
  return testing::TinyConfig(s);
}

struct Round {
  double mean_reward = 0, satisfaction = 0;
};

// One RL round's data: sample G completions for each prompt, score them with
// the teacher (when there is one), compute rewards with the constraint library.
Round MakeGroups(model::LanguageModel& student, model::LanguageModel* teacher,
                 rl::Method method, int round,
                 std::vector<std::vector<v1::Trajectory>>* out) {
  std::vector<std::vector<int32_t>> prompts;
  for (int p = 0; p < kPrompts; ++p) {
    for (int g = 0; g < kG; ++g) prompts.push_back({1 + (round + p) % 5, 2});
  }
  model::SamplingOptions so;
  so.max_new_tokens = kNew;
  so.seed = static_cast<uint64_t>(round);
  so.support_k = 1000;  // the whole vocabulary: exact KL
  auto gen = student.Generate(prompts, so);
  EXPECT_OK(gen.status());
  std::vector<model::ScoreInput> inputs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    inputs.push_back({prompts[i], (*gen)[i].tokens, (*gen)[i].support_k,
                      (*gen)[i].support_ids});
  }
  std::vector<model::SequenceScore> scores;
  if (teacher != nullptr) scores = *teacher->Score(inputs, {});
  rl::RewardOptions ro;
  ro.method = method;
  ro.penalty = 1;
  ro.budget = {0.1, rl::CostNormalization::kPerMaxLen, kNew};
  std::vector<std::vector<v1::Trajectory>> groups(kPrompts);
  Round r;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& g = (*gen)[i];
    v1::Trajectory t;
    t.set_trajectory_id("t" + std::to_string(i));
    t.mutable_prompt_ids()->Add(prompts[i].begin(), prompts[i].end());
    t.mutable_completion_ids()->Add(g.tokens.begin(), g.tokens.end());
    t.mutable_behavior_logprobs()->Add(g.logprobs.begin(), g.logprobs.end());
    t.mutable_support()->set_k(static_cast<uint32_t>(g.support_k));
    t.mutable_support()->mutable_token_ids()->Add(g.support_ids.begin(),
                                                  g.support_ids.end());
    t.mutable_student_support_logprobs()->Add(g.support_logprobs.begin(),
                                              g.support_logprobs.end());
    std::vector<double> costs(g.tokens.size(), 0.0);
    if (teacher != nullptr) {
      const auto& s = scores[i];
      t.mutable_teacher_support_logprobs()->Add(s.support_logprobs.begin(),
                                                s.support_logprobs.end());
      rl::TokenLogProbs lp;
      lp.num_tokens = static_cast<int>(g.tokens.size());
      lp.support_k = static_cast<int>(g.support_k);
      lp.student_support = g.support_logprobs;
      lp.teacher_support = s.support_logprobs;
      costs = *rl::PerTokenCosts(lp, {});
    }
    const double reward =
        !g.tokens.empty() && g.tokens[0] == kTarget ? 1.0 : 0.0;
    auto out = rl::ModifiedRewards(reward, costs, {}, ro);
    EXPECT_OK(out.status());
    auto* ev = t.mutable_evaluation();
    ev->set_task_reward(static_cast<float>(reward));
    ev->set_trajectory_return(static_cast<float>(out->trajectory_return));
    for (bool f : out->check.feasible) ev->add_feasible(f);
    ev->set_constraint_satisfied(out->check.satisfied);
    ev->set_cost_used(static_cast<float>(out->check.cost_used));
    r.mean_reward += reward / prompts.size();
    r.satisfaction += (out->check.satisfied ? 1.0 : 0.0) / prompts.size();
    groups[i / kG].push_back(std::move(t));
  }
  *out = std::move(groups);
  return r;
}

// ... and train on it.
Round RunRound(model::LanguageModel& student, model::LanguageModel* teacher,
               PolicyTrainer& trainer, rl::Method method, int round) {
  std::vector<std::vector<v1::Trajectory>> groups;
  const Round r = MakeGroups(student, teacher, method, round, &groups);
  auto st = trainer.Step(groups);
  EXPECT_OK(st.status());
  return r;
}

TEST(PolicyTrainer, ATinyModelLearnsTheTaskByRl) {
  auto student = *model::LanguageModel::InitRandom(Tiny(), 1, "cpu", "float32");
  TrainerOptions o;
  o.method = rl::Method::kGrpo;
  o.optimizer.lr = 3e-2;
  o.optimizer.total_steps = 40;
  auto trainer = *PolicyTrainer::Create(student.get(), o);
  const Round first =
      RunRound(*student, nullptr, *trainer, rl::Method::kGrpo, 0);
  EXPECT_LT(first.mean_reward, 0.3);  // chance is 1/24
  Round last;
  for (int i = 1; i < 40; ++i)
    last = RunRound(*student, nullptr, *trainer, rl::Method::kGrpo, i);
  RecordProperty("first_reward", std::to_string(first.mean_reward));
  RecordProperty("last_reward", std::to_string(last.mean_reward));
  EXPECT_GT(last.mean_reward, 0.9);
  EXPECT_EQ(trainer->step(), 40);
}

TEST(PolicyTrainer, ABfloat16StudentLearnsToo) {
  // dtype bfloat16 (on the CPU here): the forward pass runs in bf16, AdamW
  // keeps float32 moments and applies the update in float32 before rounding.
  auto student =
      *model::LanguageModel::InitRandom(Tiny(), 1, "cpu", "bfloat16");
  ASSERT_EQ(student->dtype_name(), "bfloat16");
  TrainerOptions o;
  o.method = rl::Method::kGrpo;
  o.optimizer.lr = 3e-2;
  o.optimizer.total_steps = 40;
  auto trainer = *PolicyTrainer::Create(student.get(), o);
  const Round first =
      RunRound(*student, nullptr, *trainer, rl::Method::kGrpo, 0);
  Round last;
  for (int i = 1; i < 40; ++i)
    last = RunRound(*student, nullptr, *trainer, rl::Method::kGrpo, i);
  RecordProperty("bf16_first_reward", std::to_string(first.mean_reward));
  RecordProperty("bf16_last_reward", std::to_string(last.mean_reward));
  EXPECT_LT(first.mean_reward, 0.3);
  EXPECT_GT(last.mean_reward, 0.9);
  ASSERT_OK_AND_ASSIGN(std::string weights, student->SerializeWeights());
  EXPECT_FALSE(weights.empty());
}

TEST(PolicyTrainer, TheConstraintBinds) {
  // The teacher is another random model: it does not favour the target token.
  auto teacher = *model::LanguageModel::InitRandom(Tiny(), 2, "cpu", "float32");
  double satisfaction[2];
  int k = 0;
  for (rl::Method m : {rl::Method::kGrpo, rl::Method::kCmdp}) {
    auto student =
        *model::LanguageModel::InitRandom(Tiny(), 1, "cpu", "float32");
    TrainerOptions o;
    o.method = m;
    o.optimizer.lr = 3e-2;
    o.optimizer.total_steps = 40;
    o.kappa = 1.0;
    auto trainer = *PolicyTrainer::Create(student.get(), o);
    double sat = 0;
    for (int i = 0; i < 40; ++i) {
      const Round r = RunRound(*student, teacher.get(), *trainer, m, i);
      if (i >= 30) sat += r.satisfaction / 10;
    }
    satisfaction[k++] = sat;
  }
  RecordProperty("grpo_satisfaction", std::to_string(satisfaction[0]));
  RecordProperty("cmdp_satisfaction", std::to_string(satisfaction[1]));
  EXPECT_GT(satisfaction[1], satisfaction[0] + 0.2)
      << "grpo " << satisfaction[0] << " vs cmdp " << satisfaction[1];
}

// Mean exact per-token KL(student ‖ teacher) of the student's own samples, and
// one gkd step on them with no support: only the teacher's log-probability of
// each sampled token reaches the trainer (support K = 0, the sampled-KL path).
double GkdRoundWithoutSupport(model::LanguageModel& student,
                              model::LanguageModel& teacher,
                              PolicyTrainer& trainer, int round) {
  std::vector<std::vector<int32_t>> prompts;
  for (int p = 0; p < kPrompts * kG; ++p) prompts.push_back({1 + p % 5, 2});
  model::SamplingOptions so;
  so.max_new_tokens = kNew;
  so.seed = static_cast<uint64_t>(round);
  so.support_k = 1000;  // for measuring the exact KL only
  auto gen = *student.Generate(prompts, so);
  std::vector<model::ScoreInput> inputs;
  for (size_t i = 0; i < prompts.size(); ++i)
    inputs.push_back(
        {prompts[i], gen[i].tokens, gen[i].support_k, gen[i].support_ids});
  auto scores = *teacher.Score(inputs, {});
  double kl = 0, tokens = 0;
  std::vector<std::vector<v1::Trajectory>> groups(kPrompts);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& g = gen[i];
    rl::TokenLogProbs lp;
    lp.num_tokens = static_cast<int>(g.tokens.size());
    lp.support_k = static_cast<int>(g.support_k);
    lp.student_support = g.support_logprobs;
    lp.teacher_support = scores[i].support_logprobs;
    auto costs = rl::PerTokenCosts(lp, {});
    EXPECT_OK(costs.status());
    if (!costs.ok()) return 0;
    for (double c : *costs) kl += c, tokens += 1;
    v1::Trajectory t;
    t.set_trajectory_id("t" + std::to_string(i));
    t.mutable_prompt_ids()->Add(prompts[i].begin(), prompts[i].end());
    t.mutable_completion_ids()->Add(g.tokens.begin(), g.tokens.end());
    t.mutable_behavior_logprobs()->Add(g.logprobs.begin(), g.logprobs.end());
    t.mutable_teacher_sampled_logprobs()->Add(
        scores[i].sampled_logprobs.begin(), scores[i].sampled_logprobs.end());
    auto* ev = t.mutable_evaluation();
    for (size_t k = 0; k < g.tokens.size(); ++k) ev->add_feasible(true);
    ev->set_constraint_satisfied(true);
    groups[i / kG].push_back(std::move(t));
  }
  EXPECT_OK(trainer.Step(groups).status());
  return kl / tokens;
}

TEST(PolicyTrainer, GkdLearnsFromSampledTokensAlone) {
  // Before the sampled-KL surrogate, K = 0 fell back to a differentiable k1
  // whose expected gradient is zero: this student did not move towards the
  // teacher. Now the exact KL falls.
  auto teacher = *model::LanguageModel::InitRandom(Tiny(), 2, "cpu", "float32");
  auto student = *model::LanguageModel::InitRandom(Tiny(), 1, "cpu", "float32");
  TrainerOptions o;
  o.method = rl::Method::kGkd;
  o.optimizer.lr = 3e-2;
  o.optimizer.total_steps = 30;
  auto trainer = *PolicyTrainer::Create(student.get(), o);
  double first = 0, last = 0;
  for (int i = 0; i < 30; ++i) {
    const double kl = GkdRoundWithoutSupport(*student, *teacher, *trainer, i);
    if (i < 3) first += kl / 3;
    if (i >= 27) last += kl / 3;
  }
  RecordProperty("kl_first", std::to_string(first));
  RecordProperty("kl_last", std::to_string(last));
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}

TEST(PolicyTrainer, MicroBatchesGiveTheWholeBatchUpdate) {
  auto teacher = *model::LanguageModel::InitRandom(Tiny(), 2, "cpu", "float32");
  for (rl::Method m : {rl::Method::kCmdp, rl::Method::kLagrangian}) {
    auto whole = *model::LanguageModel::InitRandom(Tiny(), 1, "cpu", "float32");
    auto micro = *model::LanguageModel::InitRandom(Tiny(), 1, "cpu", "float32");
    std::vector<std::vector<v1::Trajectory>> groups;
    MakeGroups(*whole, teacher.get(), m, 0, &groups);
    TrainerOptions o;
    o.method = m;
    o.optimizer.lr = 1e-2;
    o.optimizer.grad_clip = 0;
    auto t_whole = *PolicyTrainer::Create(whole.get(), o);
    o.micro_batch_sequences = 3;  // 32 sequences: 10 passes of 3 and one of 2
    auto t_micro = *PolicyTrainer::Create(micro.get(), o);
    ASSERT_OK_AND_ASSIGN(StepStats a, t_whole->Step(groups));
    ASSERT_OK_AND_ASSIGN(StepStats b, t_micro->Step(groups));
    EXPECT_NEAR(a.loss, b.loss, 1e-5);
    EXPECT_NEAR(a.grad_norm, b.grad_norm, 1e-4 * a.grad_norm);
    EXPECT_NEAR(a.mean_token_kl, b.mean_token_kl, 1e-6);
    EXPECT_GT(a.grad_norm, 0);
    // Not classified (no style on any trajectory): no shares.
    EXPECT_EQ(a.diagnostics.foreign_style, -1);
    // The updated models agree.
    std::vector<std::vector<int32_t>> probe = {{1, 2, 7, 3, 9}, {4, 2, 5}};
    ASSERT_OK_AND_ASSIGN(auto lw, whole->TokenLogprobs(probe));
    ASSERT_OK_AND_ASSIGN(auto lm, micro->TokenLogprobs(probe));
    for (size_t i = 0; i < probe.size(); ++i) {
      for (size_t j = 0; j < lw[i].size(); ++j) {
        EXPECT_NEAR(lw[i][j], lm[i][j], 1e-4);
      }
    }
  }
}

// The step's style shares count only the classified answers: of 32, 24 are
// classified — 16 teacher, 8 foreign — so 2/3 and 1/3.
TEST(PolicyTrainer, StyleSharesCountTheClassifiedAnswers) {
  auto teacher = *model::LanguageModel::InitRandom(Tiny(), 2, "cpu", "float32");
  auto student = *model::LanguageModel::InitRandom(Tiny(), 1, "cpu", "float32");
  std::vector<std::vector<v1::Trajectory>> groups;
  MakeGroups(*student, teacher.get(), rl::Method::kCmdp, 0, &groups);
  int i = 0;
  for (auto& g : groups) {
    for (v1::Trajectory& t : g) {
      const int k = i++ % 4;  // unclassified, teacher, teacher, foreign
      t.mutable_evaluation()->set_style(k == 0   ? v1::ANSWER_STYLE_UNSPECIFIED
                                        : k == 3 ? v1::ANSWER_STYLE_FOREIGN
                                                 : v1::ANSWER_STYLE_TEACHER);
    }
  }
  ASSERT_EQ(i, 32);
  TrainerOptions o;
  o.method = rl::Method::kCmdp;
  auto trainer = *PolicyTrainer::Create(student.get(), o);
  ASSERT_OK_AND_ASSIGN(StepStats st, trainer->Step(groups));
  EXPECT_DOUBLE_EQ(st.diagnostics.teacher_style, 16.0 / 24);
  EXPECT_DOUBLE_EQ(st.diagnostics.foreign_style, 8.0 / 24);
}

TEST(PolicyTrainer, BadBatchesAreRefusedAndStateRestores) {
  auto student = *model::LanguageModel::InitRandom(Tiny(), 1, "cpu", "float32");
  TrainerOptions o;
  o.method = rl::Method::kGrpo;
  auto trainer = *PolicyTrainer::Create(student.get(), o);
  v1::Trajectory t;
  t.add_prompt_ids(1);
  t.add_completion_ids(3);
  EXPECT_THAT(trainer->Step({{t}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  t.add_behavior_logprobs(-1.0f);
  t.mutable_evaluation()->add_feasible(true);
  t.set_completion_ids(0, 99);
  EXPECT_THAT(trainer->Step({{t}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(trainer->step(), 0);
  const TrainerState s = trainer->SaveState();
  EXPECT_OK(trainer->RestoreState(s));
  TrainerState bad = s;
  bad.moments.pop_back();
  EXPECT_THAT(trainer->RestoreState(bad),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace cmdistill::learner
