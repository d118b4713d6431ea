#include "services/reward/evaluator.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/rl/trajectory_checks.h"
#include "common/status/status_macros.h"
#include "common/tasks/reasoning.h"

namespace cmdistill::reward {
namespace {

template <typename R>
absl::Status SizeIs(const R& field, int64_t want, const char* name) {
  if (static_cast<int64_t>(field.size()) != want) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " has ", field.size(), " values, expected ", want));
  }
  return absl::OkStatus();
}

}  // namespace

Evaluator::Evaluator(const tokenizer::Tokenizer* tokenizer,
                     EvaluatorOptions options)
    : tokenizer_(tokenizer), options_(options) {}

// Long on purpose: the reward service's contract in one place and in order
// (checks, decode, grade, per-token costs, budget, the method's transform),
// each step reading the previous one's values.
absl::StatusOr<v1::TrajectoryEvaluation> Evaluator::Evaluate(
    const v1::Trajectory& t) const {
  const int64_t T = t.completion_ids_size();
  const int64_t K = t.support().k();
  const rl::Method method = options_.reward.method;
  const bool has_teacher = t.teacher_support_logprobs_size() > 0 ||
                           t.teacher_sampled_logprobs_size() > 0;
  const bool need_teacher = rl::NeedsTeacher(method);
  // The wire contract (shapes, vocabulary, log-probabilities), then what the
  // configured method and estimator read. The prompt is not graded: it may be
  // absent.
  rl::TrajectoryContract contract;
  contract.require_prompt = false;
  if (options_.vocab_size > 0) {
    contract.vocab_size = options_.vocab_size;
  } else if (tokenizer_ != nullptr) {
    contract.vocab_size = tokenizer_->vocab_size();
  }
  CMDISTILL_RETURN_IF_ERROR(rl::ValidateTrajectory(t, contract));
  if (need_teacher && !has_teacher && T > 0) {
    return absl::InvalidArgumentError(
        "teacher scores are missing (the method needs them)");
  }
  const bool support_kl =
      options_.cost.estimator == rl::CostEstimator::kSupportKl;
  // The arrays the configured estimator reads must be present.
  if (has_teacher || need_teacher) {
    if (support_kl) {
      if (K <= 0 && T > 0)
        return absl::InvalidArgumentError(
            "support_kl needs a support (k >= 1)");
      CMDISTILL_RETURN_IF_ERROR(SizeIs(t.student_support_logprobs(), T * K,
                                       "student_support_logprobs"));
      CMDISTILL_RETURN_IF_ERROR(SizeIs(t.teacher_support_logprobs(), T * K,
                                       "teacher_support_logprobs"));
    } else {
      CMDISTILL_RETURN_IF_ERROR(
          SizeIs(t.behavior_logprobs(), T, "behavior_logprobs"));
      CMDISTILL_RETURN_IF_ERROR(
          SizeIs(t.teacher_sampled_logprobs(), T, "teacher_sampled_logprobs"));
    }
    if (method == rl::Method::kWeakestLink) {
      CMDISTILL_RETURN_IF_ERROR(
          SizeIs(t.teacher_sampled_logprobs(), T, "teacher_sampled_logprobs"));
    }
  }
  // Costs (zeros when a method without teacher sends no teacher scores).
  std::vector<double> costs(static_cast<size_t>(T), 0.0);
  if (has_teacher || need_teacher) {
    rl::TokenLogProbs lp;
    lp.num_tokens = static_cast<int>(T);
    lp.support_k = static_cast<int>(K);
    lp.student_support = t.student_support_logprobs();
    lp.teacher_support = t.teacher_support_logprobs();
    lp.teacher_tail = t.teacher_tail_logprobs();
    lp.student_sampled = t.behavior_logprobs();
    lp.teacher_sampled = t.teacher_sampled_logprobs();
    CMDISTILL_ASSIGN_OR_RETURN(auto c, rl::PerTokenCosts(lp, options_.cost));
    costs = std::move(c);
  }
  // Task reward: grade the completion text. Verifier problems give 0 and a
  // flag.
  v1::TrajectoryEvaluation ev;
  double reward = 0;
  std::string text;
  bool decoded = true;
  if (!t.completion_text().empty() || tokenizer_ == nullptr) {
    text = t.completion_text();
  } else {
    auto d = tokenizer_->Decode(std::vector<int32_t>(t.completion_ids().begin(),
                                                     t.completion_ids().end()),
                                /*skip_special_tokens=*/true);
    if (d.ok()) {
      text = *std::move(d);
    } else {
      decoded = false;
    }
  }
  if (!decoded) {
    ev.set_verifier_failure(v1::VERIFIER_FAILURE_DECODE);
  } else {
    const tasks::Grade g =
        tasks::GradeResponse(text, t.gold_answer(), options_.strictness);
    ev.set_extracted_answer(g.extracted);
    if (g.failure == tasks::GradeFailure::kNoAnswer) {
      ev.set_verifier_failure(v1::VERIFIER_FAILURE_NO_ANSWER);
    } else if (g.failure == tasks::GradeFailure::kTooLong) {
      ev.set_verifier_failure(v1::VERIFIER_FAILURE_TIMEOUT);
    }
    reward = g.correct ? 1.0 : 0.0;
    if (options_.classify_styles) {
      switch (tasks::ClassifyStyle(text)) {
        case tasks::AnswerStyle::kTeacher:
          ev.set_style(v1::ANSWER_STYLE_TEACHER);
          break;
        case tasks::AnswerStyle::kForeign:
          ev.set_style(v1::ANSWER_STYLE_FOREIGN);
          break;
        case tasks::AnswerStyle::kOther:
          ev.set_style(v1::ANSWER_STYLE_OTHER);
          break;
      }
    }
  }
  CMDISTILL_ASSIGN_OR_RETURN(
      auto out, rl::ModifiedRewards(reward, costs, t.teacher_sampled_logprobs(),
                                    options_.reward));
  ev.set_task_reward(static_cast<float>(reward));
  for (double c : out.check.costs) ev.add_costs(static_cast<float>(c));
  for (bool f : out.gate) ev.add_feasible(f);  // the method's own gate
  for (double r : out.modified_rewards)
    ev.add_modified_rewards(static_cast<float>(r));
  ev.set_trajectory_return(static_cast<float>(out.trajectory_return));
  ev.set_cost_used(static_cast<float>(out.check.cost_used));
  ev.set_first_violation_index(out.check.first_violation);
  ev.set_constraint_satisfied(out.check.satisfied);
  return ev;
}

}  // namespace cmdistill::reward
