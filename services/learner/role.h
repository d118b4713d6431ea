// `cmdistill learner`: the learner service as a process — the run file ->
// options -> objects -> serve (announcing READY on stdout,
// services/common/child_protocol.h) until SIGTERM/SIGINT or the end of
// training, with its STEP and FINISHED lines -> drain in STYLE.md's order.
// Progress goes to `log`; a failure is returned as a Status naming what is
// wrong (the CLI prints it and picks the exit code), which has checked the
// paths and addresses given.
#ifndef CMDISTILL_SERVICES_LEARNER_ROLE_H_
#define CMDISTILL_SERVICES_LEARNER_ROLE_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "cmdistill/v1/config.pb.h"

namespace cmdistill::learner {

// Trains on data.train_path from student.path (or the checkpoint `resume`
// names: "auto", "never" or a folder), writes <output_dir>/final.
absl::Status RunLearnerRole(const v1::RunConfig& config,
                            const std::string& resume, std::ostream& log);

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_ROLE_H_
