// Client-side gRPC helpers: channels (TLS, keepalive, round-robin over DNS
// names), per-call deadlines and the bearer token, and retry with capped
// exponential backoff and jitter.
//
// Retry rule (DESIGN.md §6, STYLE.md): only RESOURCE_EXHAUSTED and UNAVAILABLE
// are retried, only inside the caller's own deadline, and only for calls the
// .proto documents as idempotent or safe to retry.
#ifndef CMDISTILL_COMMON_NET_CLIENT_H_
#define CMDISTILL_COMMON_NET_CLIENT_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace cmdistill::net {

struct ChannelOptions {
  // "host:port", or "dns:///name:port" to resolve every address behind a
  // (headless) DNS name and spread calls over them round-robin.
  std::string target;
  bool use_tls = false;
  std::string ca_file;  // PEM roots to verify the server; empty = system roots
  std::string cert_file, key_file;   // client certificate for mutual TLS
  std::string server_name_override;  // expected name in the server certificate
  bool round_robin = true;
  int max_message_bytes = 64 << 20;
  absl::Duration keepalive_time = absl::Seconds(20);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  // Reconnect quickly after a peer restarts (gRPC's default backoff grows to
  // 120 s).
  absl::Duration max_reconnect_backoff = absl::Seconds(5);
  // The least time one connection attempt (TCP + HTTP/2 SETTINGS exchange)
  // gets before it is abandoned. gRPC core reads it from
  // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS; setting that to 100 ms (as this code
  // once did) made every peer more than ~100 ms of handshake away unreachable
  // until the backoff had grown past its round trip.
  absl::Duration min_connect_timeout = absl::Seconds(20);
};

// INVALID_ARGUMENT for an empty target or half a client key pair; file errors
// name the file.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(
    const ChannelOptions& options);

struct RetryPolicy {
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  double multiplier = 2.0;
  double jitter =
      0.2;  // each backoff is scaled by a uniform factor in [1 - j, 1 + j]
  int max_attempts = 0;  // 0 = as many as fit before the deadline
};

struct CallOptions {
  absl::Duration timeout = absl::Seconds(30);  // overall, across all attempts
  std::string bearer_token;  // sent as "authorization: Bearer <token>"
  RetryPolicy retry;
};

bool IsRetryable(grpc::StatusCode code);

// Sets the deadline and the bearer token on a fresh context.
void PrepareContext(grpc::ClientContext* ctx, absl::Time deadline,
                    const std::string& bearer_token);

// Backoff before attempt `attempt` (1-based: the wait after the first failure
// is attempt 1), without jitter: min(max_backoff, initial *
// multiplier^(attempt-1)).
absl::Duration BackoffFor(const RetryPolicy& policy, int attempt);

// Calls `attempt(ctx)` with a fresh, prepared context until it returns a status
// that is not retryable, max_attempts is reached, or the overall deadline would
// pass during the next backoff. Returns the last status; DEADLINE_EXCEEDED when
// the deadline cut the retries short. `attempts_out`, if given, receives the
// number of attempts made. Blocking.
grpc::Status CallWithRetry(
    const CallOptions& options,
    const std::function<grpc::Status(grpc::ClientContext*)>& attempt,
    int* attempts_out = nullptr);

}  // namespace cmdistill::net

#endif  // CMDISTILL_COMMON_NET_CLIENT_H_
