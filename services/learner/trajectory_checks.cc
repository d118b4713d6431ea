#include "services/learner/trajectory_checks.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "services/learner/lease_manager.h"

namespace cmdistill::learner {

std::string CheckTrajectory(const v1::Trajectory& t, int64_t vocab_size) {
  const int64_t T = t.completion_ids_size();
  const int64_t V = vocab_size;
  if (t.trajectory_id() !=
      LeaseManager::TrajectoryId(t.lease().lease_id(), t.sample_index())) {
    return "trajectory_id must be <lease_id>/<sample_index>";
  }
  for (int32_t id : t.completion_ids()) {
    if (id < 0 || id >= V)
      return absl::StrCat("token id ", id, " outside the vocabulary");
  }
  if (t.behavior_logprobs_size() != T)
    return "behavior_logprobs must have one value per token";
  for (float x : t.behavior_logprobs()) {
    if (!std::isfinite(x) || x > 1e-4f)
      return "behavior_logprobs has a NaN/Inf or positive value";
  }
  const int64_t K = t.support().k();
  if (t.support().token_ids_size() != T * K) return "support must have T*K ids";
  for (const auto* a :
       {&t.student_support_logprobs(), &t.teacher_support_logprobs()}) {
    if (a->size() != 0 && a->size() != T * K)
      return "support log-probabilities must have T*K values";
    for (float x : *a) {
      if (!std::isfinite(x)) return "support log-probabilities have NaN/Inf";
    }
  }
  const auto& ev = t.evaluation();
  if (ev.feasible_size() != T)
    return "evaluation.feasible must have one value per token";
  if (!std::isfinite(ev.trajectory_return()))
    return "evaluation.trajectory_return is not finite";
  return "";
}

}  // namespace cmdistill::learner
