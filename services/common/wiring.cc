#include "services/common/wiring.h"

#include "absl/strings/str_cat.h"
#include "common/net/files.h"
#include "common/status/status_macros.h"

namespace cmdistill::services {
namespace {

absl::StatusOr<std::string> Token(const v1::RunConfig& config) {
  if (config.security().token_file().empty()) return std::string();
  return net::ReadTokenFile(config.security().token_file());
}

}  // namespace

absl::StatusOr<net::ServerOptions> ServerOptionsFor(
    const v1::RunConfig& config, const v1::EndpointConfig& endpoint) {
  net::ServerOptions o;
  o.listen_address =
      endpoint.listen().empty() ? "127.0.0.1:0" : endpoint.listen();
  const auto& sec = config.security();
  o.use_tls = sec.tls();
  o.tls.cert_file = sec.server().cert_file();
  o.tls.key_file = sec.server().key_file();
  o.tls.client_ca_file = sec.server().ca_file();
  o.tls.require_client_certificate = sec.require_client_certificate();
  CMDISTILL_ASSIGN_OR_RETURN(o.bearer_token, Token(config));
  o.max_message_bytes = static_cast<int>(config.services().max_message_mib())
                        << 20;
  o.keepalive_time = absl::Seconds(config.services().keepalive_seconds());
  return o;
}

absl::StatusOr<net::ChannelOptions> ChannelOptionsFor(
    const v1::RunConfig& config, const std::string& address) {
  if (address.empty())
    return absl::InvalidArgumentError("no address to connect to");
  net::ChannelOptions o;
  o.target = address;
  const auto& sec = config.security();
  o.use_tls = sec.tls();
  o.ca_file = sec.client().ca_file();
  o.cert_file = sec.client().cert_file();
  o.key_file = sec.client().key_file();
  o.server_name_override = sec.client().server_name_override();
  o.max_message_bytes = static_cast<int>(config.services().max_message_mib())
                        << 20;
  o.keepalive_time = absl::Seconds(config.services().keepalive_seconds());
  return o;
}

absl::StatusOr<net::CallOptions> CallOptionsFor(const v1::RunConfig& config) {
  net::CallOptions o;
  o.timeout = absl::Seconds(config.services().rpc_deadline_seconds());
  CMDISTILL_ASSIGN_OR_RETURN(o.bearer_token, Token(config));
  o.retry.initial_backoff =
      absl::Seconds(config.actor().retry_initial_backoff_seconds());
  o.retry.max_backoff =
      absl::Seconds(config.actor().retry_max_backoff_seconds());
  return o;
}

}  // namespace cmdistill::services
