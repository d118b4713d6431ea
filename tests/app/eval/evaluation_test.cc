// Held-out evaluation on tiny models with answers known by construction: a
// model taught to answer "#### 7" is correct exactly where the gold is 7; a
// teacher identical to the student gives zero KL and full satisfaction; the
// budget decides satisfaction; without a teacher only correctness and length.
#include "app/eval/evaluation.h"

#include <cmath>

#include "common/config/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/learner/sft_trainer.h"
#include "tests/testing/model_configs.h"
#include "tests/testing/status_matchers.h"

namespace cmdistill::eval {
namespace {

using ::testing::HasSubstr;

class EvaluationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(
        tok_, tokenizer::Tokenizer::FromJson(
                  tokenizer::MakeByteLevelTokenizerJson({}, {"<|endoftext|>"}),
                  R"({"eos_token": "<|endoftext|>"})", "test"));
    config_ = config::DefaultRunConfig();
    config_.mutable_data()->set_prompt_template("Q: {question}\nA:");
    config_.mutable_generation()->set_max_new_tokens(8);
    config_.mutable_generation()->set_support_k(0);
    config_.mutable_eval()->set_temperature(0);
    config_.mutable_constraint()->set_budget(1e9);
  }

  std::unique_ptr<model::LanguageModel> Model(uint64_t seed) {
    testing::TinyShape s;
    s.vocab = 320;
    s.max_positions = 128;
    checkpoint::ModelConfig c = testing::TinyConfig(s);
    c.eos_token_ids = {256};
    auto m = model::LanguageModel::InitRandom(c, seed, "cpu", "float32");
    EXPECT_OK(m.status());
    return *std::move(m);
  }

  // Teaches `m` to answer every question with " #### 7" + eos.
  void TeachSeven(model::LanguageModel* m) {
    learner::AdamWOptions o;
    o.lr = 1e-2;
    o.total_steps = 80;
    auto trainer = learner::SftTrainer::Create(m, o);
    ASSERT_OK(trainer.status());
    std::vector<learner::SftExample> batch;
    for (const char* q : {"two", "nine", "four"}) {
      learner::SftExample x;
      x.prompt_ids = *tok_->Encode(
          tasks::ApplyTemplate(config_.data().prompt_template(), q));
      x.completion_ids = *tok_->Encode(" #### 7");
      x.completion_ids.push_back(256);
      batch.push_back(x);
    }
    for (int i = 0; i < 80; ++i) ASSERT_OK((*trainer)->Step(batch).status());
  }

  std::vector<tasks::Example> Examples() {
    return {{"two", "", "7", 1}, {"nine", "", "8", 2}, {"four", "", "7", 3}};
  }

  std::unique_ptr<tokenizer::Tokenizer> tok_;
  v1::RunConfig config_;
};

TEST_F(EvaluationTest, CorrectExactlyWhereTheGoldMatches) {
  auto student = Model(1);
  TeachSeven(student.get());
  ASSERT_OK_AND_ASSIGN(EvalReport r, Evaluate("s", student.get(), nullptr,
                                              *tok_, Examples(), config_));
  ASSERT_EQ(r.items.size(), 3u);
  EXPECT_EQ(r.items[0].completion, " #### 7");
  EXPECT_TRUE(r.items[0].record.correct);
  EXPECT_FALSE(r.items[1].record.correct);
  EXPECT_TRUE(r.items[2].record.correct);
  EXPECT_EQ(r.items[0].extracted_answer, "7");
  EXPECT_NEAR(r.metrics.correctness.value, 2.0 / 3.0, 1e-12);
  EXPECT_EQ(r.metrics.correctness.n, 3);
  // " #### 7" is 7 byte tokens, then eos.
  EXPECT_EQ(r.items[0].record.length, 8);
  EXPECT_NEAR(r.metrics.length.value, 8.0, 1e-12);
  // No teacher: neither satisfaction nor KL is measured.
  EXPECT_EQ(r.metrics.satisfaction.n, 0);
  EXPECT_EQ(r.metrics.mean_kl.n, 0);
  EXPECT_EQ(FormatEstimate(r.metrics.mean_kl), "—");
  const std::string table = MarkdownTable({r}, config_);
  EXPECT_THAT(table, HasSubstr("| s | 0.667 ["));
  EXPECT_THAT(ReportJson(r, true), HasSubstr("\"completion\": \" #### 7\""));
}

TEST_F(EvaluationTest, AnIdenticalTeacherGivesZeroKlAndFullSatisfaction) {
  auto student = Model(2);
  auto teacher = Model(2);
  config_.mutable_constraint()->set_budget(1e-4);  // float rounding only
  ASSERT_OK_AND_ASSIGN(EvalReport r, Evaluate("s", student.get(), teacher.get(),
                                              *tok_, Examples(), config_));
  for (const EvalItem& it : r.items) {
    EXPECT_NEAR(it.record.mean_token_kl, 0.0, 1e-5);
    EXPECT_TRUE(it.record.satisfied);
  }
  EXPECT_EQ(r.metrics.satisfaction.value, 1.0);
  EXPECT_EQ(r.metrics.satisfaction.n, 3);
}

TEST_F(EvaluationTest, TheBudgetDecidesSatisfactionAgainstADifferentTeacher) {
  auto student = Model(3);
  auto teacher = Model(4);
  ASSERT_OK_AND_ASSIGN(
      EvalReport loose,
      Evaluate("s", student.get(), teacher.get(), *tok_, Examples(), config_));
  double kl_sum = 0;
  for (const EvalItem& it : loose.items) {
    EXPECT_GT(it.record.mean_token_kl, 1e-4);  // two random models differ
    EXPECT_TRUE(it.record.satisfied);          // d = 1e9
    kl_sum += it.record.mean_token_kl;
  }
  EXPECT_NEAR(loose.metrics.mean_kl.value, kl_sum / 3, 1e-9);
  config_.mutable_constraint()->set_budget(0);
  ASSERT_OK_AND_ASSIGN(
      EvalReport tight,
      Evaluate("s", student.get(), teacher.get(), *tok_, Examples(), config_));
  EXPECT_EQ(tight.metrics.satisfaction.value, 0.0);
  // Satisfaction does not change what the student generates.
  EXPECT_EQ(tight.items[1].completion, loose.items[1].completion);
}

TEST_F(EvaluationTest, BadInputIsRefused) {
  auto student = Model(5);
  EXPECT_THAT(Evaluate("s", student.get(), nullptr, *tok_, {}, config_),
              testing::StatusIs(absl::StatusCode::kInvalidArgument));
  config_.mutable_generation()->add_stop_strings("not a token");
  EXPECT_THAT(Evaluate("s", student.get(), nullptr, *tok_, Examples(), config_),
              testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("not a single token")));
}

}  // namespace
}  // namespace cmdistill::eval
