// `cmdistill teacher`: the teacher-scoring service as a process — the run file
// -> options -> objects -> serve (announcing READY on stdout,
// services/common/child_protocol.h) until SIGTERM/SIGINT -> drain in STYLE.md's
// order. Progress goes to `log`; a failure is returned as a Status naming what
// is wrong (the CLI prints it and picks the exit code), which has checked the
// paths and addresses given.
#ifndef CMDISTILL_SERVICES_TEACHER_ROLE_H_
#define CMDISTILL_SERVICES_TEACHER_ROLE_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "cmdistill/v1/config.pb.h"

namespace cmdistill::teacher {

// Scores with the model in `model_dir` (a Hugging Face folder).
absl::Status RunTeacherRole(const v1::RunConfig& config,
                            const std::string& model_dir, std::ostream& log);

}  // namespace cmdistill::teacher

#endif  // CMDISTILL_SERVICES_TEACHER_ROLE_H_
