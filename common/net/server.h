// Runs a gRPC server for one cmdistill service: listening address (port 0 =
// pick a free one), the standard health service, optional TLS / mutual TLS from
// PEM files, the bearer-token CallGate, and the shutdown order of STYLE.md.
//
// Lifetime: the registered services must outlive the GrpcServer. Thread-safe
// after Start.
#ifndef CMDISTILL_COMMON_NET_SERVER_H_
#define CMDISTILL_COMMON_NET_SERVER_H_

#include <grpcpp/channel.h>
#include <grpcpp/server.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/net/call_gate.h"

namespace grpc {
class Service;
class CallbackGenericService;
}  // namespace grpc

namespace cmdistill::net {

struct ServerTlsOptions {
  std::string cert_file;  // PEM server certificate (chain)
  std::string key_file;   // PEM private key
  std::string
      client_ca_file;  // PEM CA for client certificates; required for mTLS
  bool require_client_certificate = false;  // mutual TLS
};

struct ServerOptions {
  std::string listen_address = "127.0.0.1:0";
  bool use_tls = false;
  ServerTlsOptions tls;
  std::string bearer_token;  // empty: no token
  int max_message_bytes = 64 << 20;
  absl::Duration keepalive_time = absl::Seconds(20);
  absl::Duration keepalive_timeout = absl::Seconds(10);
};

class GrpcServer {
 public:
  // Builds the gate first so that services can be constructed with it:
  //   auto gate = GrpcServer::MakeGate(options, registry);
  //   MyService service(gate);
  //   auto server = GrpcServer::Start(options, gate, {&service});
  static std::shared_ptr<CallGate> MakeGate(const ServerOptions& options,
                                            prometheus::Registry* registry);

  // Binds and starts. INVALID_ARGUMENT for bad options, NOT_FOUND etc. for
  // unreadable PEM files (the path named), UNAVAILABLE when the address cannot
  // be bound. Health status of every service starts as SERVING.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(
      const ServerOptions& options, std::shared_ptr<CallGate> gate,
      const std::vector<grpc::Service*>& services);

  ~GrpcServer();  // Shutdown(zero grace) if not done yet.

  int port() const { return port_; }
  const std::string& listen_address() const { return listen_address_; }
  CallGate& gate() { return *gate_; }

  // A channel that reaches this server without the network (tests, same-process
  // clients).
  std::shared_ptr<grpc::Channel> InProcessChannel();

  // Health of the whole server (the "" service of grpc.health.v1).
  void SetServing(bool serving);

  // Graceful stop, in this order: health NOT_SERVING -> the gate refuses new
  // calls with UNAVAILABLE -> grpc Shutdown(now + grace) (in-flight calls get
  // `grace` to finish, then are cancelled) -> Wait(). `before_shutdown` runs
  // between the gate and Shutdown (e.g. close the service's queues so blocked
  // handlers finish). Idempotent; blocks until stopped, which can take the
  // whole grace period while clients stay connected (gRPC waits for them to
  // leave after its GOAWAY) even when no call is in flight.
  void Shutdown(absl::Duration grace,
                const std::function<void()>& before_shutdown = {});

 private:
  GrpcServer() = default;

  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<CallGate> gate_;
  std::string listen_address_;
  int port_ = 0;
  bool stopped_ = false;
};

}  // namespace cmdistill::net

#endif  // CMDISTILL_COMMON_NET_SERVER_H_
