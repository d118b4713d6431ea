// RunConfig -> options of the net library. The only place that knows how the
// security and services sections of the run file map onto servers and channels.
#ifndef CMDISTILL_SERVICES_COMMON_WIRING_H_
#define CMDISTILL_SERVICES_COMMON_WIRING_H_

#include "absl/status/statusor.h"
#include "cmdistill/v1/config.pb.h"
#include "common/net/client.h"
#include "common/net/server.h"
#include "common/tokenizer/fingerprint.h"

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

// The tokenizer check (common/tokenizer/fingerprint.h), where services look.
using tokenizer::CheckSameTokenizer;

}  // namespace cmdistill::services

#endif  // CMDISTILL_SERVICES_COMMON_WIRING_H_
