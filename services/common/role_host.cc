#include "services/common/role_host.h"

#include "absl/time/clock.h"
#include "common/status/status_macros.h"
#include "services/common/wiring.h"

namespace cmdistill::services {

absl::StatusOr<std::unique_ptr<ServiceHost>> MakeRoleHost(
    const std::string& name, const std::string& device,
    const v1::RunConfig& config, const v1::EndpointConfig& endpoint,
    std::string* listen_address) {
  CMDISTILL_ASSIGN_OR_RETURN(auto server, ServerOptionsFor(config, endpoint));
  if (listen_address != nullptr) *listen_address = server.listen_address;
  ServiceHostOptions ho;
  ho.name = name;
  ho.server = server;
  ho.metrics_listen = endpoint.metrics_listen();
  ho.device = device;
  ho.shutdown_grace = absl::Seconds(config.services().shutdown_grace_seconds());
  return ServiceHost::Create(ho);
}

absl::Status ServeRole(
    const std::string& name, const std::string& device,
    const v1::RunConfig& config, const v1::EndpointConfig& endpoint,
    std::ostream& log,
    const std::function<std::vector<grpc::Service*>(ServiceHost&)>& make,
    const std::function<void()>& before_shutdown) {
  std::string address;
  CMDISTILL_ASSIGN_OR_RETURN(
      auto host, MakeRoleHost(name, device, config, endpoint, &address));
  CMDISTILL_RETURN_IF_ERROR(host->Start(make(*host)));
  log << "cmdistill " << name << ": serving on " << address << " (port "
      << host->grpc_port() << "), metrics port " << host->metrics_port()
      << "\n";
  const int sig = host->WaitForShutdownSignal();
  log << "cmdistill " << name << ": signal " << sig << ", draining\n";
  host->Shutdown(before_shutdown);
  log << "cmdistill " << name << ": stopped\n";
  return absl::OkStatus();
}

void ServeFinalScrape(const v1::RunConfig& config, const std::string& name,
                      ShutdownSignal& signals, int signals_seen,
                      std::ostream& log) {
  const double seconds = config.services().final_scrape_seconds();
  if (seconds <= 0 || signals.signal_count() != signals_seen) return;
  log << "cmdistill " << name << ": serving /metrics " << seconds
      << " s more for the final scrape\n";
  const absl::Time until = absl::Now() + absl::Seconds(seconds);
  while (absl::Now() < until && signals.signal_count() == signals_seen)
    absl::SleepFor(absl::Milliseconds(100));
}

}  // namespace cmdistill::services
