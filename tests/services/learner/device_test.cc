// Generation, scoring and the learner's update step on the test device
// (CMDISTILL_TEST_DEVICE: "cpu" by default, "cuda" under scripts/gpu-check.sh),
// in float32 and bfloat16, against the same weights in float32 on the CPU
// (whose logits model_test checks against an independent PyTorch
// implementation). Tolerances per dtype: tests/testing/device.h.
#include "tests/testing/device.h"

#include <cmath>
#include <string>
#include <vector>

#include "common/model/language_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/learner/policy_trainer.h"
#include "services/learner/sft_trainer.h"
#include "tests/testing/model_configs.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill {
namespace {

checkpoint::ModelConfig Shape() {
  testing::TinyShape s;
  s.type = "qwen2";
  s.vocab = 40;
  s.hidden = 64;
  s.intermediate = 128;
  s.layers = 2;
  s.heads = 4;
  s.kv_heads = 2;
  s.head_dim = 16;
  s.bias = true;
  return testing::TinyConfig(s);
}

double RelErr(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

class DeviceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto ref = model::LanguageModel::InitRandom(Shape(), 3, "cpu", "float32");
    ASSERT_OK(ref.status());
    ASSERT_OK((*ref)->Save(dir_.File("m")));
    cpu_ = *std::move(ref);
  }
  std::unique_ptr<model::LanguageModel> OnDevice() {
    auto m = model::LanguageModel::Load(dir_.File("m"), testing::TestDevice(),
                                        dtype());
    EXPECT_OK(m.status());
    return m.ok() ? *std::move(m) : nullptr;
  }
  const std::string& dtype() const { return GetParam(); }

  testing::TempDir dir_;
  std::unique_ptr<model::LanguageModel> cpu_;
};

TEST_P(DeviceTest, GenerationAndScoringMatchFloat32OnTheCpu) {
  auto dev = OnDevice();
  ASSERT_NE(dev, nullptr);
  EXPECT_EQ(dev->dtype_name(), dtype());
  const std::vector<std::vector<int32_t>> prompts = {
      {1, 2, 3}, {4, 5, 6, 7, 8}, {9}};
  model::SamplingOptions o;
  o.max_new_tokens = 12;
  o.temperature = 1.0;
  o.seed = 5;
  o.support_k = 8;
  ASSERT_OK_AND_ASSIGN(auto gen, dev->Generate(prompts, o));
  ASSERT_EQ(gen.size(), prompts.size());
  std::vector<model::ScoreInput> inputs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_EQ(gen[i].tokens.size(), 12u);
    ASSERT_EQ(gen[i].support_ids.size(), 12u * 8);
    inputs.push_back(
        {prompts[i], gen[i].tokens, gen[i].support_k, gen[i].support_ids});
  }
  // The behaviour log-probabilities the device reports while sampling are
  // what float32 on the CPU assigns to the same tokens, and so is its scoring.
  ASSERT_OK_AND_ASSIGN(auto cpu_scores, cpu_->Score(inputs, {}));
  ASSERT_OK_AND_ASSIGN(auto dev_scores, dev->Score(inputs, {}));
  const double tol = testing::RelTolerance(dtype());
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_LT(RelErr(gen[i].logprobs, cpu_scores[i].sampled_logprobs), tol)
        << i;
    EXPECT_LT(
        RelErr(dev_scores[i].sampled_logprobs, cpu_scores[i].sampled_logprobs),
        tol)
        << i;
    EXPECT_LT(
        RelErr(dev_scores[i].support_logprobs, cpu_scores[i].support_logprobs),
        tol)
        << i;
  }
  // Greedy decoding is deterministic on the device.
  o.temperature = 0;
  ASSERT_OK_AND_ASSIGN(auto g1, dev->Generate(prompts, o));
  ASSERT_OK_AND_ASSIGN(auto g2, dev->Generate(prompts, o));
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(g1[i].tokens, g2[i].tokens);
}

// A batch of groups with varied returns, from the CPU model's own samples.
std::vector<std::vector<v1::Trajectory>> Groups(model::LanguageModel& m) {
  std::vector<std::vector<v1::Trajectory>> groups(2);
  for (int g = 0; g < 2; ++g) {
    std::vector<std::vector<int32_t>> prompts(4, {1 + g, 2, 3});
    model::SamplingOptions o;
    o.max_new_tokens = 6;
    o.seed = static_cast<uint64_t>(g + 1);
    o.support_k = 40;  // the whole vocabulary
    auto gen = *m.Generate(prompts, o);
    for (int i = 0; i < 4; ++i) {
      v1::Trajectory t;
      t.set_trajectory_id("l" + std::to_string(g) + "/" + std::to_string(i));
      t.mutable_prompt_ids()->Add(prompts[i].begin(), prompts[i].end());
      t.mutable_completion_ids()->Add(gen[i].tokens.begin(),
                                      gen[i].tokens.end());
      t.mutable_behavior_logprobs()->Add(gen[i].logprobs.begin(),
                                         gen[i].logprobs.end());
      t.mutable_support()->set_k(static_cast<uint32_t>(gen[i].support_k));
      t.mutable_support()->mutable_token_ids()->Add(gen[i].support_ids.begin(),
                                                    gen[i].support_ids.end());
      // A "teacher" that is the behaviour distribution shifted: non-zero KL.
      for (float lp : gen[i].support_logprobs)
        t.add_teacher_support_logprobs(lp - 0.1f);
      auto* ev = t.mutable_evaluation();
      for (size_t k = 0; k < gen[i].tokens.size(); ++k)
        ev->add_feasible(k < 3 || i % 2 == 0);
      ev->set_trajectory_return(static_cast<float>(i) - 1.5f);
      ev->set_task_reward(i == 3 ? 1.f : 0.f);
      ev->set_constraint_satisfied(i % 2 == 0);
      groups[g].push_back(t);
    }
  }
  return groups;
}

TEST_P(DeviceTest, ALearnerUpdateStepMatchesFloat32OnTheCpu) {
  auto dev = OnDevice();
  ASSERT_NE(dev, nullptr);
  const auto groups = Groups(*cpu_);
  learner::TrainerOptions o;
  o.method = rl::Method::kCmdp;
  o.optimizer.lr = 1e-3;
  o.optimizer.grad_clip = 0;
  ASSERT_OK_AND_ASSIGN(auto t_cpu,
                       learner::PolicyTrainer::Create(cpu_.get(), o));
  ASSERT_OK_AND_ASSIGN(auto t_dev,
                       learner::PolicyTrainer::Create(dev.get(), o));
  EXPECT_EQ(t_dev->PrecisionWarning(), "");  // master weights for bf16
  ASSERT_OK_AND_ASSIGN(learner::StepStats a, t_cpu->Step(groups));
  ASSERT_OK_AND_ASSIGN(learner::StepStats b, t_dev->Step(groups));
  const double tol = testing::RelTolerance(dtype());
  EXPECT_GT(std::abs(a.loss), 0);
  EXPECT_NEAR(b.loss, a.loss, tol * std::max(1.0, std::abs(a.loss)) * 4);
  EXPECT_NEAR(b.grad_norm, a.grad_norm, tol * a.grad_norm * 4);
  EXPECT_NEAR(b.mean_token_kl, a.mean_token_kl,
              tol * std::max(1.0, a.mean_token_kl) * 4);
  EXPECT_EQ(b.tokens, a.tokens);
  // The updated models still agree (scored on the same tokens).
  std::vector<std::vector<int32_t>> probe = {{1, 2, 7, 3, 9, 11}, {4, 2, 5}};
  ASSERT_OK_AND_ASSIGN(auto la, cpu_->TokenLogprobs(probe));
  ASSERT_OK_AND_ASSIGN(auto lb, dev->TokenLogprobs(probe));
  for (size_t i = 0; i < probe.size(); ++i)
    EXPECT_LT(RelErr(lb[i], la[i]), tol) << i;
  // And an SFT step on the device lowers its loss on the batch it saw.
  std::vector<learner::SftExample> batch = {{{1, 2, 3}, {7, 7, 7, 8}},
                                            {{4, 5}, {9, 9, 10}}};
  learner::AdamWOptions so;
  so.lr = 1e-2;
  ASSERT_OK_AND_ASSIGN(auto sft, learner::SftTrainer::Create(dev.get(), so));
  ASSERT_OK_AND_ASSIGN(learner::SftStats s0, sft->Evaluate(batch));
  for (int i = 0; i < 10; ++i) ASSERT_OK(sft->Step(batch).status());
  ASSERT_OK_AND_ASSIGN(learner::SftStats s1, sft->Evaluate(batch));
  EXPECT_LT(s1.loss, s0.loss * 0.9);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, DeviceTest,
                         ::testing::Values("float32", "bfloat16"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace cmdistill
