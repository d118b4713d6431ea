#include "app/tools/ops.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cmdistill/v1/learner.grpc.pb.h"
#include "common/net/client.h"
#include "common/status/grpc_status.h"
#include "common/status/status_macros.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "services/common/wiring.h"

namespace cmdistill::tools {

absl::StatusOr<std::string> QueryHealth(const v1::RunConfig& config,
                                        const std::string& address,
                                        absl::Duration timeout) {
  CMDISTILL_ASSIGN_OR_RETURN(auto options,
                             services::ChannelOptionsFor(config, address));
  CMDISTILL_ASSIGN_OR_RETURN(auto channel, net::MakeChannel(options));
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  const grpc::Status s = stub->Check(&ctx, req, &resp);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat(address, ": no answer (", s.error_message(), ")"));
  }
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
      resp.status());
}

absl::StatusOr<v1::GetStatusResponse> QueryLearnerStatus(
    const v1::RunConfig& config, const std::string& address) {
  CMDISTILL_ASSIGN_OR_RETURN(auto options,
                             services::ChannelOptionsFor(config, address));
  CMDISTILL_ASSIGN_OR_RETURN(auto call, services::CallOptionsFor(config));
  CMDISTILL_ASSIGN_OR_RETURN(auto channel, net::MakeChannel(options));
  auto stub = v1::LearnerService::NewStub(channel);
  v1::GetStatusResponse st;
  call.timeout = std::min(call.timeout, absl::Seconds(10));
  const grpc::Status s = net::CallWithRetry(call, [&](grpc::ClientContext* c) {
    return stub->GetStatus(c, v1::GetStatusRequest(), &st);
  });
  CMDISTILL_RETURN_IF_ERROR_ANNOTATED(FromGrpcStatus(s), address);
  return st;
}

std::string FormatLearnerStatus(const v1::GetStatusResponse& st, bool* twice) {
  std::string out = absl::StrFormat(
      "step %d, policy version %d, epoch %d, %s; %d prompts per epoch; %d "
      "trajectories buffered, %d leases outstanding\n",
      st.step(), st.policy_version(), st.epoch(),
      st.finished() ? "finished" : "training", st.num_prompts(),
      st.buffered_trajectories(), st.outstanding_leases());
  absl::StrAppend(&out, absl::StrFormat("%-6s %8s %8s %7s %8s  %s\n", "epoch",
                                        "trained", "unique", "leased",
                                        "pending", "trajectories by outcome"));
  *twice = false;
  for (const v1::EpochStatus& e : st.epochs()) {
    std::map<std::string, uint64_t> sorted(e.trajectories().begin(),
                                           e.trajectories().end());
    std::string outcomes;
    for (const auto& [name, n] : sorted)
      absl::StrAppend(&outcomes, outcomes.empty() ? "" : " ", name, "=", n);
    absl::StrAppend(&out, absl::StrFormat("%-6d %8d %8d %7d %8d  %s\n",
                                          e.epoch(), e.trained(), e.unique(),
                                          e.leased(), e.pending(), outcomes));
    *twice = *twice || e.trained() != e.unique();
  }
  absl::StrAppend(&out,
                  *twice ? "WARNING: a prompt was trained twice in an epoch\n"
                         : "exactly once: no prompt trained twice in any "
                           "epoch\n");
  return out;
}

}  // namespace cmdistill::tools
