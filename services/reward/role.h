// `cmdistill reward`: the reward/constraint service as a process — the run file
// -> options -> objects -> serve (announcing READY on stdout,
// services/common/child_protocol.h) until SIGTERM/SIGINT -> drain in STYLE.md's
// order. Progress goes to `log`; a failure is returned as a Status naming what
// is wrong (the CLI prints it and picks the exit code), which has checked the
// paths and addresses given.
#ifndef CMDISTILL_SERVICES_REWARD_ROLE_H_
#define CMDISTILL_SERVICES_REWARD_ROLE_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "cmdistill/v1/config.pb.h"

namespace cmdistill::reward {

// Grades and applies the constraint transform (tokenizer of
// reward.tokenizer_path, else student.path; without one, trajectories must
// carry their completion text).
absl::Status RunRewardRole(const v1::RunConfig& config, std::ostream& log);

}  // namespace cmdistill::reward

#endif  // CMDISTILL_SERVICES_REWARD_ROLE_H_
