// The contract of a trajectory on the wire, checked in one place by every
// service that receives one: the teacher (the tokens it scores), the reward
// service (what it grades and costs) and the learner (what it trains on).
// Each keeps only its own policy on top (the teacher's length limits, the
// reward's estimator needs, the learner's leases and method needs).
#ifndef CMDISTILL_COMMON_RL_TRAJECTORY_CHECKS_H_
#define CMDISTILL_COMMON_RL_TRAJECTORY_CHECKS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "cmdistill/v1/common.pb.h"
#include "cmdistill/v1/trajectory.pb.h"

namespace cmdistill::rl {

struct TrajectoryContract {
  // > 0: every token id (prompt, completion, support) lies in [0, vocab_size).
  int64_t vocab_size = 0;
  // The prompt is not empty.
  bool require_prompt = true;
};

// The tokens: prompt (non-empty when required), completion, and the support
// ([T * K] ids, each row holding the token sampled at its position: the
// actor's support always does, and the support-KL estimators rely on it).
absl::Status ValidateTokens(absl::Span<const int32_t> prompt_ids,
                            absl::Span<const int32_t> completion_ids,
                            const v1::TokenSupport& support,
                            const TrajectoryContract& contract);

// The tokens, then every per-token array either absent or of its length (T,
// or T * K for the support's log-probabilities), every log-probability finite
// and <= 0 (up to rounding), and the evaluation's return finite.
// INVALID_ARGUMENT naming the field (and index) on the first violation.
absl::Status ValidateTrajectory(const v1::Trajectory& t,
                                const TrajectoryContract& contract);

// The kind of violation behind a status returned above, as a metric label:
// "empty", "length_mismatch", "token_out_of_vocab", "support_without_token",
// "not_a_log_probability", "not_finite"; "" for any other status.
std::string TrajectoryViolation(const absl::Status& status);

}  // namespace cmdistill::rl

#endif  // CMDISTILL_COMMON_RL_TRAJECTORY_CHECKS_H_
