// `cmdistill actor`: the rollout actor service as a process — the run file ->
// options -> objects -> run rounds (announcing READY on stdout,
// services/common/child_protocol.h) until SIGTERM/SIGINT or the learner says
// training is finished -> drain in STYLE.md's order. Progress goes to `log`; a
// failure is returned as a Status naming what is wrong (the CLI prints it and
// picks the exit code), which has checked the paths and addresses given.
#ifndef CMDISTILL_SERVICES_ACTOR_ROLE_H_
#define CMDISTILL_SERVICES_ACTOR_ROLE_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "cmdistill/v1/config.pb.h"

namespace cmdistill::actor {

struct ActorRoleOptions {
  std::string learner, teacher, reward;  // addresses ("" teacher: none)
  std::string id = "actor";
  // Also write /metrics as Prometheus text here, every 2 s and at exit.
  std::string metrics_file;
};
absl::Status RunActorRole(const v1::RunConfig& config,
                          const ActorRoleOptions& options, std::ostream& log);

}  // namespace cmdistill::actor

#endif  // CMDISTILL_SERVICES_ACTOR_ROLE_H_
