// The wire contract of a trajectory (common/rl/trajectory_checks.h): every
// violation is INVALID_ARGUMENT, names its field and carries its label.
#include "common/rl/trajectory_checks.h"

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "common/status/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cmdistill::rl {
namespace {

using ::testing::HasSubstr;

// T = 3 tokens, K = 2, every array present and consistent.
v1::Trajectory Good() {
  v1::Trajectory t;
  for (int id : {1, 2}) t.add_prompt_ids(id);
  for (int id : {5, 6, 7}) t.add_completion_ids(id);
  t.mutable_support()->set_k(2);
  for (int id : {5, 9, 6, 9, 8, 7}) t.mutable_support()->add_token_ids(id);
  for (int i = 0; i < 3; ++i) {
    t.add_behavior_logprobs(-0.5f);
    t.add_teacher_sampled_logprobs(-0.7f);
    t.add_teacher_tail_logprobs(-3.0f);
    t.mutable_evaluation()->add_feasible(true);
    t.mutable_evaluation()->add_costs(0.1f);
    t.mutable_evaluation()->add_modified_rewards(0.0f);
  }
  for (int i = 0; i < 6; ++i) {
    t.add_student_support_logprobs(-1.0f);
    t.add_teacher_support_logprobs(-1.2f);
  }
  t.mutable_evaluation()->set_trajectory_return(1.0f);
  return t;
}

TrajectoryContract Vocab(int64_t v) {
  TrajectoryContract c;
  c.vocab_size = v;
  return c;
}

TEST(TrajectoryChecks, AConsistentTrajectoryPassesAndAbsentArraysAreAllowed) {
  EXPECT_TRUE(ValidateTrajectory(Good(), Vocab(10)).ok());
  v1::Trajectory bare;  // a prompt and tokens, nothing scored yet
  bare.add_prompt_ids(1);
  bare.add_completion_ids(2);
  EXPECT_TRUE(ValidateTrajectory(bare, Vocab(10)).ok());
  // No vocabulary: ids are not checked against one.
  v1::Trajectory big = Good();
  big.set_completion_ids(0, 12345);
  big.mutable_support()->set_token_ids(0, 12345);
  EXPECT_TRUE(ValidateTrajectory(big, TrajectoryContract{}).ok());
}

TEST(TrajectoryChecks, EachViolationNamesItsFieldAndLabel) {
  struct Case {
    std::function<void(v1::Trajectory*)> spoil;
    const char* label;
    const char* message;
  };
  const std::vector<Case> cases = {
      {[](v1::Trajectory* t) { t->clear_prompt_ids(); }, "empty",
       "prompt_ids is empty"},
      {[](v1::Trajectory* t) { t->mutable_support()->add_token_ids(5); },
       "length_mismatch", "support.token_ids has 7 ids, expected T*K = 6"},
      {[](v1::Trajectory* t) { t->set_prompt_ids(1, -1); },
       "token_out_of_vocab", "prompt_ids[1]: token id -1 is outside"},
      {[](v1::Trajectory* t) { t->set_completion_ids(2, 10); },
       "token_out_of_vocab", "completion_ids[2]: token id 10 is outside"},
      {[](v1::Trajectory* t) { t->mutable_support()->set_token_ids(3, 10); },
       "token_out_of_vocab", "support.token_ids[3]: token id 10"},
      {[](v1::Trajectory* t) { t->mutable_support()->set_token_ids(5, 9); },
       "support_without_token",
       "support.token_ids row 2 does not contain the sampled token"},
      {[](v1::Trajectory* t) { t->add_behavior_logprobs(-1); },
       "length_mismatch", "behavior_logprobs has 4 values, expected 3 (T)"},
      {[](v1::Trajectory* t) {
         t->mutable_teacher_support_logprobs()->RemoveLast();
       },
       "length_mismatch",
       "teacher_support_logprobs has 5 values, expected 6 (T*K)"},
      {[](v1::Trajectory* t) { t->add_student_support_logprobs(-1); },
       "length_mismatch", "student_support_logprobs has 7 values"},
      {[](v1::Trajectory* t) { t->add_teacher_tail_logprobs(-1); },
       "length_mismatch", "teacher_tail_logprobs has 4 values"},
      {[](v1::Trajectory* t) { t->add_teacher_sampled_logprobs(-1); },
       "length_mismatch", "teacher_sampled_logprobs has 4 values"},
      {[](v1::Trajectory* t) { t->mutable_evaluation()->add_feasible(true); },
       "length_mismatch", "evaluation.feasible has 4 values"},
      {[](v1::Trajectory* t) { t->mutable_evaluation()->add_costs(0); },
       "length_mismatch", "evaluation.costs has 4 values"},
      {[](v1::Trajectory* t) {
         t->mutable_evaluation()->add_modified_rewards(0);
       },
       "length_mismatch", "evaluation.modified_rewards has 4 values"},
      {[](v1::Trajectory* t) { t->set_behavior_logprobs(1, std::nanf("")); },
       "not_a_log_probability", "behavior_logprobs[1] = nan"},
      {[](v1::Trajectory* t) { t->set_behavior_logprobs(0, 0.5f); },
       "not_a_log_probability", "behavior_logprobs[0] = 0.5"},
      {[](v1::Trajectory* t) { t->set_student_support_logprobs(1, INFINITY); },
       "not_a_log_probability", "student_support_logprobs[1] = inf"},
      {[](v1::Trajectory* t) {
         t->set_teacher_support_logprobs(5, std::nanf(""));
       },
       "not_a_log_probability", "teacher_support_logprobs[5]"},
      {[](v1::Trajectory* t) { t->set_teacher_tail_logprobs(2, -INFINITY); },
       "not_a_log_probability", "teacher_tail_logprobs[2] = -inf"},
      {[](v1::Trajectory* t) { t->set_teacher_sampled_logprobs(0, 1.0f); },
       "not_a_log_probability", "teacher_sampled_logprobs[0]"},
      {[](v1::Trajectory* t) {
         t->mutable_evaluation()->set_trajectory_return(std::nanf(""));
       },
       "not_finite", "evaluation.trajectory_return = nan is not finite"},
  };
  for (const Case& c : cases) {
    v1::Trajectory t = Good();
    c.spoil(&t);
    const absl::Status s = ValidateTrajectory(t, Vocab(10));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(s.message(), HasSubstr(c.message));
    EXPECT_EQ(TrajectoryViolation(s), c.label) << c.message;
  }
}

TEST(TrajectoryChecks, RoundingAboveZeroIsALogProbabilityAndLabelsOnlyOurs) {
  v1::Trajectory t = Good();
  t.set_behavior_logprobs(0, 5e-5f);  // float32 rounding of log(1)
  EXPECT_TRUE(ValidateTrajectory(t, Vocab(10)).ok());
  EXPECT_EQ(TrajectoryViolation(absl::InvalidArgumentError("other")), "");
  EXPECT_EQ(TrajectoryViolation(absl::OkStatus()), "");
  // The label survives a caller's annotation (the trainer prefixes the id).
  t.clear_prompt_ids();
  EXPECT_EQ(TrajectoryViolation(
                Annotate(ValidateTrajectory(t, Vocab(10)), "trajectory x/0")),
            "empty");
}

TEST(TrajectoryChecks, ThePromptIsOptionalWhereTheContractSaysSo) {
  v1::Trajectory t = Good();
  t.clear_prompt_ids();
  TrajectoryContract c = Vocab(10);
  c.require_prompt = false;
  EXPECT_TRUE(ValidateTrajectory(t, c).ok());
}

TEST(TrajectoryChecks, TokensAloneAsTheTeacherSeesThem) {
  const v1::Trajectory t = Good();
  EXPECT_TRUE(
      ValidateTokens(t.prompt_ids(), t.completion_ids(), t.support(), Vocab(10))
          .ok());
  v1::TokenSupport none;  // k = 0: sampled tokens only
  EXPECT_TRUE(
      ValidateTokens(t.prompt_ids(), t.completion_ids(), none, Vocab(10)).ok());
  const absl::Status s =
      ValidateTokens(t.prompt_ids(), t.completion_ids(), none, Vocab(7));
  EXPECT_EQ(TrajectoryViolation(s), "token_out_of_vocab");
  EXPECT_THAT(s.message(), HasSubstr("completion_ids[2]: token id 7"));
}

}  // namespace
}  // namespace cmdistill::rl
