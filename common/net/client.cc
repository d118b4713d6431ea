#include "common/net/client.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "common/net/call_gate.h"
#include "common/net/files.h"
#include "common/status/status_macros.h"

namespace cmdistill::net {

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(
    const ChannelOptions& options) {
  if (options.target.empty())
    return absl::InvalidArgumentError("channel target is empty");
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options.use_tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.ca_file.empty()) {
      CMDISTILL_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                                 ReadSmallFile(options.ca_file, "TLS CA"));
    }
    if (options.cert_file.empty() != options.key_file.empty()) {
      return absl::InvalidArgumentError(
          "mutual TLS needs both a client certificate and a client key file");
    }
    if (!options.cert_file.empty()) {
      CMDISTILL_ASSIGN_OR_RETURN(
          ssl.pem_cert_chain,
          ReadSmallFile(options.cert_file, "TLS client certificate"));
      CMDISTILL_ASSIGN_OR_RETURN(
          ssl.pem_private_key,
          ReadSmallFile(options.key_file, "TLS client key"));
    }
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  if (options.round_robin) args.SetLoadBalancingPolicyName("round_robin");
  if (!options.server_name_override.empty()) {
    args.SetSslTargetNameOverride(options.server_name_override);
  }
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  args.SetInt(
      GRPC_ARG_KEEPALIVE_TIME_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  args.SetInt(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(
                  absl::ToInt64Milliseconds(options.max_reconnect_backoff)));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(
      GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.min_connect_timeout)));
  return grpc::CreateCustomChannel(options.target, creds, args);
}

bool IsRetryable(grpc::StatusCode code) {
  return code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
         code == grpc::StatusCode::UNAVAILABLE;
}

void PrepareContext(grpc::ClientContext* ctx, absl::Time deadline,
                    const std::string& bearer_token) {
  ctx->set_deadline(absl::ToChronoTime(deadline));
  if (!bearer_token.empty()) {
    ctx->AddMetadata(kAuthorizationHeader,
                     absl::StrCat("Bearer ", bearer_token));
  }
}

absl::Duration BackoffFor(const RetryPolicy& policy, int attempt) {
  const double factor =
      std::pow(std::max(policy.multiplier, 1.0), std::max(attempt - 1, 0));
  const absl::Duration d = policy.initial_backoff * factor;
  return std::min(d, policy.max_backoff);
}

grpc::Status CallWithRetry(
    const CallOptions& options,
    const std::function<grpc::Status(grpc::ClientContext*)>& attempt,
    int* attempts_out) {
  thread_local absl::BitGen rng;
  const absl::Time deadline = absl::Now() + options.timeout;
  grpc::Status status;
  grpc::Status previous;  // the last retryable failure, for the give-up message
  int n = 0;
  for (;;) {
    ++n;
    grpc::ClientContext ctx;
    PrepareContext(&ctx, deadline, options.bearer_token);
    status = attempt(&ctx);
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
        !previous.ok()) {
      // The overall deadline ran out during a retry: say why we were
      // retrying, not just that time is up.
      status =
          grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                       absl::StrCat("gave up after ", n,
                                    " attempt(s) at the deadline; last error: ",
                                    previous.error_message()));
      break;
    }
    if (status.ok() || !IsRetryable(status.error_code())) break;
    previous = status;
    if (options.retry.max_attempts > 0 && n >= options.retry.max_attempts)
      break;
    const double j = std::clamp(options.retry.jitter, 0.0, 1.0);
    const absl::Duration wait =
        BackoffFor(options.retry, n) * absl::Uniform(rng, 1.0 - j, 1.0 + j);
    if (absl::Now() + wait >= deadline) {
      status =
          grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                       absl::StrCat("gave up after ", n,
                                    " attempt(s) at the deadline; last error: ",
                                    status.error_message()));
      break;
    }
    absl::SleepFor(wait);
  }
  if (attempts_out != nullptr) *attempts_out = n;
  return status;
}

}  // namespace cmdistill::net
