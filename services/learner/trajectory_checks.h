// The learner's shape and value checks of a submitted trajectory
// (torch-free): what SubmitTrajectories refuses as INVALID, and why.
#ifndef CMDISTILL_SERVICES_LEARNER_TRAJECTORY_CHECKS_H_
#define CMDISTILL_SERVICES_LEARNER_TRAJECTORY_CHECKS_H_

#include <cstdint>
#include <string>

#include "cmdistill/v1/trajectory.pb.h"

namespace cmdistill::learner {

// "" when `t` can be trained on by a policy with `vocab_size` tokens;
// otherwise the reason (one line, for the actor and the logs).
std::string CheckTrajectory(const v1::Trajectory& t, int64_t vocab_size);

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_TRAJECTORY_CHECKS_H_
