// What every service role does around its own objects: a ServiceHost on the
// run file's endpoint (gRPC server, /metrics, signals), and serving until
// SIGTERM/SIGINT, then draining in STYLE.md's order. Each service's role
// (services/<service>/role.h) builds its objects and calls these.
#ifndef CMDISTILL_SERVICES_COMMON_ROLE_HOST_H_
#define CMDISTILL_SERVICES_COMMON_ROLE_HOST_H_

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmdistill/v1/config.pb.h"
#include "services/common/service_host.h"

namespace cmdistill::services {

// A ServiceHost for `name` on `endpoint` of the run file; its listen address
// in `listen_address` when given.
absl::StatusOr<std::unique_ptr<ServiceHost>> MakeRoleHost(
    const std::string& name, const std::string& device,
    const v1::RunConfig& config, const v1::EndpointConfig& endpoint,
    std::string* listen_address = nullptr);

// Serves what `make` builds until SIGTERM/SIGINT, then drains (STYLE.md
// order): `before_shutdown` runs after the server stops taking calls.
absl::Status ServeRole(
    const std::string& name, const std::string& device,
    const v1::RunConfig& config, const v1::EndpointConfig& endpoint,
    std::ostream& log,
    const std::function<std::vector<grpc::Service*>(ServiceHost&)>& make,
    const std::function<void()>& before_shutdown);

// A role that ended by itself (the learner after FINISHED, an actor told so)
// keeps serving /metrics for services.final_scrape_seconds, so that its last
// values reach Prometheus however short the run; a SIGTERM/SIGINT beyond the
// `signals_seen` counted when the role ended (ShutdownSignal::signal_count())
// ends the wait, or prevents it. Nothing when the setting is 0.
void ServeFinalScrape(const v1::RunConfig& config, const std::string& name,
                      ShutdownSignal& signals, int signals_seen,
                      std::ostream& log);

}  // namespace cmdistill::services

#endif  // CMDISTILL_SERVICES_COMMON_ROLE_HOST_H_
