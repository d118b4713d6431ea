// The admission check every cmdistill RPC handler runs first: the shared bearer
// token (when configured) and the draining state of a server that is shutting
// down.
//
// Why not an AuthMetadataProcessor: gRPC 1.51 supports those only on TLS
// credentials, and the token must also work on plaintext links; one mechanism
// for both keeps it testable. The standard health service is deliberately not
// gated (probes carry no token; it reveals only SERVING / NOT_SERVING).
//
// Thread-safe. Use in a callback-API handler:
//   auto* reactor = ctx->DefaultReactor();
//   if (gate_->Reject(ctx, reactor)) return reactor;
#ifndef CMDISTILL_COMMON_NET_CALL_GATE_H_
#define CMDISTILL_COMMON_NET_CALL_GATE_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include <atomic>
#include <memory>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace cmdistill::net {

inline constexpr char kAuthorizationHeader[] = "authorization";

class CallGate {
 public:
  // `bearer_token` empty = no token required. `registry` may be null (no
  // metrics).
  CallGate(std::string bearer_token, prometheus::Registry* registry);

  // OK, or UNAUTHENTICATED (token missing or wrong), or UNAVAILABLE (draining).
  grpc::Status Admit(const grpc::ServerContextBase& ctx) const;

  // Finishes `reactor` with the refusal and returns true when the call is not
  // admitted.
  bool Reject(const grpc::CallbackServerContext* ctx,
              grpc::ServerUnaryReactor* reactor) const;

  // From now on every call is refused with UNAVAILABLE (the first step of
  // shutdown).
  void StartDraining() { draining_.store(true); }
  bool draining() const { return draining_.load(); }

 private:
  const std::string expected_header_;  // "Bearer <token>", or empty
  std::atomic<bool> draining_{false};
  prometheus::Counter* unauthenticated_ = nullptr;
  prometheus::Counter* draining_refused_ = nullptr;
};

}  // namespace cmdistill::net

#endif  // CMDISTILL_COMMON_NET_CALL_GATE_H_
