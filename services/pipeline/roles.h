// The four service processes as functions: what `cmdistill teacher|reward|
// learner|actor` run once their flags are parsed. Each builds its objects from
// the run file, serves (announcing READY / STEP / FINISHED on stdout, see
// services/common/child_protocol.h) until SIGTERM/SIGINT — the learner also
// until training ends — then drains in STYLE.md's order. Progress goes to
// `log`; a failure is returned as a Status naming what is wrong (the caller
// prints it and picks the exit code). The caller has checked that the paths
// and addresses the role needs are given.
#ifndef CMDISTILL_SERVICES_PIPELINE_ROLES_H_
#define CMDISTILL_SERVICES_PIPELINE_ROLES_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "cmdistill/v1/config.pb.h"

namespace cmdistill::pipeline {

// Scores with the model in `model_dir` (a Hugging Face folder).
absl::Status RunTeacherRole(const v1::RunConfig& config,
                            const std::string& model_dir, std::ostream& log);

// Grades and applies the constraint transform (tokenizer of
// reward.tokenizer_path, else student.path; without one, trajectories must
// carry their completion text).
absl::Status RunRewardRole(const v1::RunConfig& config, std::ostream& log);

// Trains on data.train_path from student.path (or the checkpoint `resume`
// names: "auto", "never" or a folder), writes <output_dir>/final.
absl::Status RunLearnerRole(const v1::RunConfig& config,
                            const std::string& resume, std::ostream& log);

struct ActorRoleOptions {
  std::string learner, teacher, reward;  // addresses ("" teacher: none)
  std::string id = "actor";
  // Also write /metrics as Prometheus text here, every 2 s and at exit.
  std::string metrics_file;
};
absl::Status RunActorRole(const v1::RunConfig& config,
                          const ActorRoleOptions& options, std::ostream& log);

}  // namespace cmdistill::pipeline

#endif  // CMDISTILL_SERVICES_PIPELINE_ROLES_H_
