#include "services/common/service_host.h"

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/metrics/process.h"
#include "common/status/status_macros.h"
#include "services/common/child_protocol.h"

namespace cmdistill::services {

absl::StatusOr<std::unique_ptr<ServiceHost>> ServiceHost::Create(
    ServiceHostOptions options) {
  auto host = std::unique_ptr<ServiceHost>(new ServiceHost(std::move(options)));
  CMDISTILL_ASSIGN_OR_RETURN(host->signals_, ShutdownSignal::Install());
  host->registry_ = metrics::NewRegistry();
  metrics::RegisterBuildInfo(host->registry_.get(), host->options_.name,
                             host->options_.device);
  host->gate_ =
      net::GrpcServer::MakeGate(host->options_.server, host->registry_.get());
  return host;
}

ServiceHost::~ServiceHost() { Shutdown(); }

absl::Status ServiceHost::Start(const std::vector<grpc::Service*>& services) {
  if (!options_.metrics_listen.empty()) {
    CMDISTILL_ASSIGN_OR_RETURN(
        exposer_,
        metrics::HttpExposer::Start(options_.metrics_listen, registry_));
  }
  CMDISTILL_ASSIGN_OR_RETURN(
      server_, net::GrpcServer::Start(options_.server, gate_, services));
  Announce(FormatReady({options_.name, grpc_port(), metrics_port()}));
  return absl::OkStatus();
}

int ServiceHost::grpc_port() const { return server_ ? server_->port() : 0; }
int ServiceHost::metrics_port() const {
  return exposer_ ? exposer_->port() : 0;
}

int ServiceHost::WaitForShutdownSignal() { return signals_->Wait(); }

void ServiceHost::Shutdown(const std::function<void()>& before_shutdown) {
  if (server_ != nullptr) {
    server_->Shutdown(options_.shutdown_grace, before_shutdown);
    server_.reset();
  }
  if (exposer_ != nullptr) {
    exposer_->Stop();
    exposer_.reset();
  }
}

}  // namespace cmdistill::services
