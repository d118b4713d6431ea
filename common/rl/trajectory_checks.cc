#include "common/rl/trajectory_checks.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"

namespace cmdistill::rl {
namespace {

// The status payload that carries the violation's label.
constexpr char kViolationUrl[] = "type.cmdistill.dev/trajectory_violation";

// Log-probabilities computed in float32 may round to just above 0.
constexpr float kLogProbSlack = 1e-4f;

absl::Status Violation(const char* label, std::string message) {
  absl::Status s = absl::InvalidArgumentError(std::move(message));
  s.SetPayload(kViolationUrl, absl::Cord(label));
  return s;
}

absl::Status IdsInVocabulary(absl::Span<const int32_t> ids, const char* field,
                             int64_t vocab_size) {
  if (vocab_size <= 0) return absl::OkStatus();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      return Violation(
          "token_out_of_vocab",
          absl::StrCat(field, "[", i, "]: token id ", ids[i],
                       " is outside the vocabulary [0, ", vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

// Absent, or `want` values ("T" or "T*K" says which length).
template <typename R>
absl::Status AbsentOrSized(const R& field, int64_t want, const char* name,
                           const char* what) {
  const int64_t n = field.size();
  if (n != 0 && n != want) {
    return Violation("length_mismatch",
                     absl::StrCat(name, " has ", n, " values, expected ", want,
                                  " (", what, ") or none"));
  }
  return absl::OkStatus();
}

absl::Status LogProbabilities(absl::Span<const float> v, const char* name) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i]) || v[i] > kLogProbSlack) {
      return Violation(
          "not_a_log_probability",
          absl::StrCat(name, "[", i, "] = ", v[i],
                       " is not a log-probability (NaN, Inf or > 0)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateTokens(absl::Span<const int32_t> prompt_ids,
                            absl::Span<const int32_t> completion_ids,
                            const v1::TokenSupport& support,
                            const TrajectoryContract& contract) {
  if (contract.require_prompt && prompt_ids.empty())
    return Violation("empty", "prompt_ids is empty");
  const int64_t T = completion_ids.size();
  const int64_t K = support.k();
  if (support.token_ids_size() != T * K) {
    return Violation(
        "length_mismatch",
        absl::StrCat("support.token_ids has ", support.token_ids_size(),
                     " ids, expected T*K = ", T * K));
  }
  CMDISTILL_RETURN_IF_ERROR(
      IdsInVocabulary(prompt_ids, "prompt_ids", contract.vocab_size));
  CMDISTILL_RETURN_IF_ERROR(
      IdsInVocabulary(completion_ids, "completion_ids", contract.vocab_size));
  CMDISTILL_RETURN_IF_ERROR(IdsInVocabulary(
      support.token_ids(), "support.token_ids", contract.vocab_size));
  for (int64_t t = 0; t < T && K > 0; ++t) {
    const int32_t* row = support.token_ids().data() + t * K;
    if (std::find(row, row + K, completion_ids[t]) == row + K) {
      return Violation(
          "support_without_token",
          absl::StrCat("support.token_ids row ", t,
                       " does not contain the sampled token (completion_ids[",
                       t, "] = ", completion_ids[t], ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTrajectory(const v1::Trajectory& t,
                                const TrajectoryContract& contract) {
  CMDISTILL_RETURN_IF_ERROR(ValidateTokens(t.prompt_ids(), t.completion_ids(),
                                           t.support(), contract));
  const int64_t T = t.completion_ids_size();
  const int64_t TK = T * static_cast<int64_t>(t.support().k());
  CMDISTILL_RETURN_IF_ERROR(
      AbsentOrSized(t.behavior_logprobs(), T, "behavior_logprobs", "T"));
  CMDISTILL_RETURN_IF_ERROR(AbsentOrSized(t.student_support_logprobs(), TK,
                                          "student_support_logprobs", "T*K"));
  CMDISTILL_RETURN_IF_ERROR(AbsentOrSized(t.teacher_support_logprobs(), TK,
                                          "teacher_support_logprobs", "T*K"));
  CMDISTILL_RETURN_IF_ERROR(AbsentOrSized(t.teacher_tail_logprobs(), T,
                                          "teacher_tail_logprobs", "T"));
  CMDISTILL_RETURN_IF_ERROR(AbsentOrSized(t.teacher_sampled_logprobs(), T,
                                          "teacher_sampled_logprobs", "T"));
  const v1::TrajectoryEvaluation& ev = t.evaluation();
  CMDISTILL_RETURN_IF_ERROR(
      AbsentOrSized(ev.feasible(), T, "evaluation.feasible", "T"));
  CMDISTILL_RETURN_IF_ERROR(
      AbsentOrSized(ev.costs(), T, "evaluation.costs", "T"));
  CMDISTILL_RETURN_IF_ERROR(AbsentOrSized(ev.modified_rewards(), T,
                                          "evaluation.modified_rewards", "T"));
  CMDISTILL_RETURN_IF_ERROR(
      LogProbabilities(t.behavior_logprobs(), "behavior_logprobs"));
  CMDISTILL_RETURN_IF_ERROR(LogProbabilities(t.student_support_logprobs(),
                                             "student_support_logprobs"));
  CMDISTILL_RETURN_IF_ERROR(LogProbabilities(t.teacher_support_logprobs(),
                                             "teacher_support_logprobs"));
  CMDISTILL_RETURN_IF_ERROR(
      LogProbabilities(t.teacher_tail_logprobs(), "teacher_tail_logprobs"));
  CMDISTILL_RETURN_IF_ERROR(LogProbabilities(t.teacher_sampled_logprobs(),
                                             "teacher_sampled_logprobs"));
  if (!std::isfinite(ev.trajectory_return())) {
    return Violation("not_finite",
                     absl::StrCat("evaluation.trajectory_return = ",
                                  ev.trajectory_return(), " is not finite"));
  }
  return absl::OkStatus();
}

std::string TrajectoryViolation(const absl::Status& status) {
  const auto label = status.GetPayload(kViolationUrl);
  return label ? std::string(*label) : std::string();
}

}  // namespace cmdistill::rl
