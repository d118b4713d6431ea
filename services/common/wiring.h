// RunConfig -> options of the net library. The only place that knows how the
// security and services sections of the run file map onto servers and channels.
#ifndef CMDISTILL_SERVICES_COMMON_WIRING_H_
#define CMDISTILL_SERVICES_COMMON_WIRING_H_

#include "absl/status/statusor.h"
#include "cmdistill/v1/config.pb.h"
#include "common/net/client.h"
#include "common/net/server.h"

namespace cmdistill::services {

// Server options for one endpoint (listen address, TLS, token from
// security.token_file).
absl::StatusOr<net::ServerOptions> ServerOptionsFor(
    const v1::RunConfig& config, const v1::EndpointConfig& endpoint);

// Channel options to reach `endpoint.address` (TLS per security.client,
// keepalive).
absl::StatusOr<net::ChannelOptions> ChannelOptionsFor(
    const v1::RunConfig& config, const std::string& address);

// Per-call options: deadline, bearer token, backoff.
absl::StatusOr<net::CallOptions> CallOptionsFor(const v1::RunConfig& config);

// Teacher and student must share the tokenizer (DESIGN.md §4):
// FAILED_PRECONDITION naming the peer when both fingerprints are known and
// differ. An empty fingerprint (a peer that has no tokenizer file) is accepted.
absl::Status CheckSameTokenizer(const std::string& ours,
                                const std::string& theirs,
                                const std::string& peer);

}  // namespace cmdistill::services

#endif  // CMDISTILL_SERVICES_COMMON_WIRING_H_
