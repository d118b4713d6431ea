#include "common/net/server.h"

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/net/files.h"
#include "common/status/status_macros.h"

namespace cmdistill::net {

std::shared_ptr<CallGate> GrpcServer::MakeGate(const ServerOptions& options,
                                               prometheus::Registry* registry) {
  return std::make_shared<CallGate>(options.bearer_token, registry);
}

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(
    const ServerOptions& options, std::shared_ptr<CallGate> gate,
    const std::vector<grpc::Service*>& services) {
  if (options.listen_address.empty()) {
    return absl::InvalidArgumentError("server listen address is empty");
  }
  if (gate == nullptr)
    return absl::InvalidArgumentError("server needs a CallGate");
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (options.use_tls) {
    const ServerTlsOptions& t = options.tls;
    if (t.cert_file.empty() || t.key_file.empty()) {
      return absl::InvalidArgumentError(
          "TLS needs both a certificate and a key file");
    }
    grpc::SslServerCredentialsOptions ssl(
        t.require_client_certificate
            ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
            : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    CMDISTILL_ASSIGN_OR_RETURN(pair.cert_chain,
                               ReadSmallFile(t.cert_file, "TLS certificate"));
    CMDISTILL_ASSIGN_OR_RETURN(pair.private_key,
                               ReadSmallFile(t.key_file, "TLS private key"));
    ssl.pem_key_cert_pairs.push_back(std::move(pair));
    if (t.require_client_certificate) {
      if (t.client_ca_file.empty()) {
        return absl::InvalidArgumentError("mutual TLS needs a client CA file");
      }
      CMDISTILL_ASSIGN_OR_RETURN(
          ssl.pem_root_certs, ReadSmallFile(t.client_ca_file, "TLS client CA"));
    }
    creds = grpc::SslServerCredentials(ssl);
  } else {
    creds = grpc::InsecureServerCredentials();
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  auto server = std::unique_ptr<GrpcServer>(new GrpcServer());
  builder.AddListeningPort(options.listen_address, creds, &server->port_);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIME_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // gRPC sets SO_REUSEPORT by default, which lets a second server silently
  // share a port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Clients ping every keepalive period; allow that without a "too many pings"
  // GOAWAY.
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  for (grpc::Service* s : services) builder.RegisterService(s);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on '", options.listen_address,
                     "' (address in use, not local, or malformed)"));
  }
  server->gate_ = std::move(gate);
  server->listen_address_ = options.listen_address;
  server->SetServing(true);
  return server;
}

GrpcServer::~GrpcServer() { Shutdown(absl::ZeroDuration()); }

std::shared_ptr<grpc::Channel> GrpcServer::InProcessChannel() {
  grpc::ChannelArguments args;
  return server_->InProcessChannel(args);
}

void GrpcServer::SetServing(bool serving) {
  if (server_ == nullptr) return;
  if (auto* health = server_->GetHealthCheckService(); health != nullptr) {
    health->SetServingStatus(serving);
  }
}

void GrpcServer::Shutdown(absl::Duration grace,
                          const std::function<void()>& before_shutdown) {
  if (stopped_ || server_ == nullptr) return;
  stopped_ = true;
  SetServing(false);
  gate_->StartDraining();
  if (before_shutdown) before_shutdown();
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server_->Wait();
}

}  // namespace cmdistill::net
