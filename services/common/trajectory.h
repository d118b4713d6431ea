// A sampled completion as a trajectory: the one mapping from the model's
// GenerationResult to v1::Trajectory (the actor's rollouts and held-out
// evaluation build trajectories alike, so the reward service grades both the
// same way).
#ifndef CMDISTILL_SERVICES_COMMON_TRAJECTORY_H_
#define CMDISTILL_SERVICES_COMMON_TRAJECTORY_H_

#include <cstdint>

#include "absl/types/span.h"
#include "cmdistill/v1/trajectory.pb.h"
#include "common/model/types.h"

namespace cmdistill::services {

// Prompt, completion, behaviour log-probabilities and `finished`; with
// `with_support`, the student's top-K support (k, ids, log-probabilities).
void FillSample(absl::Span<const int32_t> prompt_ids,
                const model::GenerationResult& g, bool with_support,
                v1::Trajectory* t);

}  // namespace cmdistill::services

#endif  // CMDISTILL_SERVICES_COMMON_TRAJECTORY_H_
