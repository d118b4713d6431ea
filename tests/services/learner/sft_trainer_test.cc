// Supervised fine-tuning on a tiny model: the loss falls and the completion is
// learned (greedy generation reproduces it), Evaluate changes nothing, prompt
// tokens carry no loss, bad batches are refused without an update.
#include "services/learner/sft_trainer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard (not in ATen.h on 2.x)

#include "common/model/transformer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/model_configs.h"
#include "tests/testing/status_matchers.h"

namespace cmdistill::learner {
namespace {

using ::cmdistill::testing::StatusIs;

std::unique_ptr<model::LanguageModel> Tiny(uint64_t seed) {
  testing::TinyShape s;
  s.vocab = 16;
  auto m = model::LanguageModel::InitRandom(testing::TinyConfig(s), seed, "cpu",
                                            "float32");
  EXPECT_OK(m.status());
  return *std::move(m);
}

TEST(SftTrainer, LearnsACompletionByHeart) {
  auto m = Tiny(1);
  AdamWOptions o;
  o.lr = 1e-2;
  o.total_steps = 60;
  ASSERT_OK_AND_ASSIGN(auto trainer, SftTrainer::Create(m.get(), o));
  const std::vector<SftExample> batch = {{{1, 2}, {5, 7, 9, 3}},
                                         {{4}, {6, 6, 8, 3}}};
  ASSERT_OK_AND_ASSIGN(SftStats first, trainer->Evaluate(batch));
  EXPECT_EQ(first.tokens, 8);                    // completion tokens only
  EXPECT_NEAR(first.loss, std::log(16.0), 1.0);  // about uniform at init
  SftStats last;
  for (int i = 0; i < 60; ++i) {
    ASSERT_OK_AND_ASSIGN(last, trainer->Step(batch));
  }
  EXPECT_EQ(last.step, 60);
  EXPECT_LT(last.loss, 0.05);
  EXPECT_EQ(last.token_accuracy, 1.0);
  model::SamplingOptions so;
  so.temperature = 0;
  so.max_new_tokens = 4;
  ASSERT_OK_AND_ASSIGN(auto gen, m->Generate({{1, 2}, {4}}, so));
  EXPECT_EQ(gen[0].tokens, (std::vector<int32_t>{5, 7, 9, 3}));
  EXPECT_EQ(gen[1].tokens, (std::vector<int32_t>{6, 6, 8, 3}));
}

// The loss is the mean negative log-likelihood of the completion tokens under
// a plain forward of each whole sequence, prompts of different lengths
// batched together (the head runs over completion rows only).
TEST(SftTrainer, LossIsTheCompletionTokensMeanNllOfPlainForwards) {
  auto m = Tiny(3);
  AdamWOptions o;
  o.lr = 1e-2;
  ASSERT_OK_AND_ASSIGN(auto trainer, SftTrainer::Create(m.get(), o));
  const std::vector<SftExample> batch = {
      {{1, 2, 3, 4}, {5, 6}}, {{7}, {8, 9, 10}}, {{11, 12}, {13}}};
  ASSERT_OK_AND_ASSIGN(SftStats st, trainer->Evaluate(batch));
  at::NoGradGuard no_grad;
  double nll = 0, hits = 0;
  int n = 0;
  for (const SftExample& e : batch) {
    std::vector<int64_t> ids(e.prompt_ids.begin(), e.prompt_ids.end());
    ids.insert(ids.end(), e.completion_ids.begin(), e.completion_ids.end());
    const auto T = static_cast<int64_t>(ids.size());
    const at::Tensor lp = at::log_softmax(
        m->transformer()->Forward(at::tensor(ids, at::kLong).view({1, T}),
                                  at::arange(T, at::kLong).view({1, T}),
                                  at::ones({1, T}, at::kLong), nullptr)[0],
        -1);
    const auto P = static_cast<int64_t>(e.prompt_ids.size());
    for (int64_t t = P; t < T; ++t) {
      nll -= lp[t - 1][ids[t]].item<double>();
      hits += lp[t - 1].argmax().item<int64_t>() == ids[t] ? 1 : 0;
      ++n;
    }
  }
  EXPECT_EQ(st.tokens, n);
  EXPECT_NEAR(st.loss, nll / n, 1e-5);
  EXPECT_DOUBLE_EQ(st.token_accuracy, hits / n);
}

TEST(SftTrainer, EvaluateDoesNotChangeTheModel) {
  auto m = Tiny(2);
  AdamWOptions o;
  o.lr = 1e-2;
  ASSERT_OK_AND_ASSIGN(auto trainer, SftTrainer::Create(m.get(), o));
  const std::vector<SftExample> batch = {{{1, 2, 3}, {4, 5}}};
  ASSERT_OK_AND_ASSIGN(SftStats a, trainer->Evaluate(batch));
  ASSERT_OK_AND_ASSIGN(SftStats b, trainer->Evaluate(batch));
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(b.step, 0);
}

TEST(SftTrainer, BadBatchesAreRefusedWithoutAnUpdate) {
  auto m = Tiny(3);
  AdamWOptions o;
  o.lr = 1e-2;
  ASSERT_OK_AND_ASSIGN(auto trainer, SftTrainer::Create(m.get(), o));
  ASSERT_OK_AND_ASSIGN(std::string before, m->SerializeWeights());
  EXPECT_THAT(trainer->Step({}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(trainer->Step({{{}, {1}}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(trainer->Step({{{1}, {}}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(trainer->Step({{{1}, {99}}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(trainer->Step({{std::vector<int32_t>(70, 1), {2}}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(std::string after, m->SerializeWeights());
  EXPECT_EQ(before, after);
  AdamWOptions zero;
  zero.lr = 0;
  EXPECT_THAT(SftTrainer::Create(m.get(), zero),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace cmdistill::learner
