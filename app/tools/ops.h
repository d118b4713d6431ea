// What `cmdistill health` and `cmdistill status` ask a running service, and
// how the learner's exactly-once ledger reads.
#ifndef CMDISTILL_SERVICES_PIPELINE_OPS_H_
#define CMDISTILL_SERVICES_PIPELINE_OPS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cmdistill/v1/config.pb.h"
#include "cmdistill/v1/learner.pb.h"

namespace cmdistill::tools {

// The service's grpc.health.v1 answer ("SERVING", "NOT_SERVING", ...), with
// the run file's TLS settings. UNAVAILABLE / DEADLINE_EXCEEDED naming the
// address when it does not answer.
absl::StatusOr<std::string> QueryHealth(const v1::RunConfig& config,
                                        const std::string& address,
                                        absl::Duration timeout);

// The learner's GetStatus (token and TLS from the run file, retried within
// 10 s).
absl::StatusOr<v1::GetStatusResponse> QueryLearnerStatus(
    const v1::RunConfig& config, const std::string& address);

// The status as a table: one line of totals, one per epoch (trained, unique,
// leased, pending, trajectories by outcome), and the exactly-once verdict;
// `twice` tells whether a prompt was trained twice in an epoch.
std::string FormatLearnerStatus(const v1::GetStatusResponse& st, bool* twice);

}  // namespace cmdistill::tools

#endif  // CMDISTILL_SERVICES_PIPELINE_OPS_H_
