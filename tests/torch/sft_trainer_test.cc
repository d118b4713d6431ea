// Supervised fine-tuning on a tiny model: the loss falls and the completion is
// learned (greedy generation reproduces it), Evaluate changes nothing, prompt
// tokens carry no loss, bad batches are refused without an update.
#include "services/learner/sft_trainer.h"

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
