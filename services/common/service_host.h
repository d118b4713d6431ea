// Runs one service process: gRPC server (health, TLS, token gate), /metrics
// endpoint, and SIGTERM/SIGINT -> drain -> exit 0. Every service subcommand is:
//
//   CMDISTILL_ASSIGN_OR_RETURN(auto host, ServiceHost::Create(options));
//   MyServiceImpl impl(host->gate_ptr(), host->registry());     // adapter +
//   backend CMDISTILL_RETURN_IF_ERROR(host->Start({&impl}));           //
//   prints the READY line host->WaitForShutdownSignal(); host->Shutdown([&] {
//   impl.Close(); });                      // health, gate, grace, wait
//
// The READY line on stdout ("READY name=<n> grpc_port=<p> metrics_port=<m>") is
// how a supervisor (`cmdistill local`, tests) learns the ports chosen for port
// 0.
#ifndef CMDISTILL_SERVICES_COMMON_SERVICE_HOST_H_
#define CMDISTILL_SERVICES_COMMON_SERVICE_HOST_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/metrics/http_exposer.h"
#include "common/metrics/metrics.h"
#include "common/net/server.h"
#include "common/process/signals.h"

namespace cmdistill::services {

struct ServiceHostOptions {
  std::string name;  // "teacher", "reward", "learner"
  net::ServerOptions server;
  std::string metrics_listen;   // empty: no /metrics endpoint
  std::string device = "none";  // for cmdistill_build_info: "cpu", "cuda", ...
  absl::Duration shutdown_grace = absl::Seconds(5);
};

class ServiceHost {
 public:
  // Installs the signal handlers and creates the registry and gate. Nothing
  // listens yet.
  static absl::StatusOr<std::unique_ptr<ServiceHost>> Create(
      ServiceHostOptions options);
  ~ServiceHost();

  std::shared_ptr<metrics::Registry> registry() const { return registry_; }
  std::shared_ptr<net::CallGate> gate_ptr() const { return gate_; }
  ShutdownSignal& signals() { return *signals_; }

  // Starts the gRPC server and the metrics endpoint, then prints the READY
  // line.
  absl::Status Start(const std::vector<grpc::Service*>& services);

  int grpc_port() const;
  int metrics_port() const;

  // Blocks until SIGTERM/SIGINT (or signals().Notify()); returns the signal
  // number.
  int WaitForShutdownSignal();

  // The shutdown order of STYLE.md; `before_shutdown` closes the service's
  // queues so that blocked handlers finish within the grace period. The metrics
  // endpoint stops last, so the final numbers can still be scraped while
  // draining. Idempotent.
  void Shutdown(const std::function<void()>& before_shutdown = {});

 private:
  explicit ServiceHost(ServiceHostOptions options)
      : options_(std::move(options)) {}

  ServiceHostOptions options_;
  std::unique_ptr<ShutdownSignal> signals_;
  std::shared_ptr<metrics::Registry> registry_;
  std::shared_ptr<net::CallGate> gate_;
  std::unique_ptr<net::GrpcServer> server_;
  std::unique_ptr<metrics::HttpExposer> exposer_;
};

}  // namespace cmdistill::services

#endif  // CMDISTILL_SERVICES_COMMON_SERVICE_HOST_H_
