#include "services/reward/evaluator.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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
  if (need_teacher && !has_teacher && T > 0) {
    return absl::InvalidArgumentError(
        "teacher scores are missing (the method needs them)");
  }
  if (tokenizer_ != nullptr || options_.vocab_size > 0) {
    const int64_t V = options_.vocab_size > 0 ? options_.vocab_size
                                              : tokenizer_->vocab_size();
    for (const auto* ids : {&t.completion_ids(), &t.support().token_ids()}) {
      for (int32_t id : *ids) {
        if (id < 0 || id >= V) {
          return absl::InvalidArgumentError(absl::StrCat(
              "token id ", id, " is outside the vocabulary [0, ", V, ")"));
        }
      }
    }
  }
  const bool support_kl =
      options_.cost.estimator == rl::CostEstimator::kSupportKl;
  // The arrays the configured estimator reads must be complete.
  if (has_teacher || need_teacher) {
    if (support_kl) {
      if (K <= 0 && T > 0)
        return absl::InvalidArgumentError(
            "support_kl needs a support (k >= 1)");
      CMDISTILL_RETURN_IF_ERROR(
          SizeIs(t.support().token_ids(), T * K, "support.token_ids"));
      CMDISTILL_RETURN_IF_ERROR(SizeIs(t.student_support_logprobs(), T * K,
                                       "student_support_logprobs"));
      CMDISTILL_RETURN_IF_ERROR(SizeIs(t.teacher_support_logprobs(), T * K,
                                       "teacher_support_logprobs"));
      if (t.teacher_tail_logprobs_size() != 0) {
        CMDISTILL_RETURN_IF_ERROR(
            SizeIs(t.teacher_tail_logprobs(), T, "teacher_tail_logprobs"));
      }
      for (int64_t i = 0; i < T; ++i) {
        const auto* row = t.support().token_ids().data() + i * K;
        if (std::find(row, row + K, t.completion_ids(static_cast<int>(i))) ==
            row + K) {
          return absl::InvalidArgumentError(absl::StrCat(
              "support row ", i, " does not contain the sampled token"));
        }
      }
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
  for (float x : t.behavior_logprobs()) {
    if (!std::isfinite(x) || x > 1e-4f) {
      return absl::InvalidArgumentError(
          "behavior_logprobs has a non-finite or positive value");
    }
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
