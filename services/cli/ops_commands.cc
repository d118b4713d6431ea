// Operator commands against running services: `cmdistill health` (the gRPC
// health check, for container health checks and exec probes; exit 0 when
// SERVING) and `cmdistill status` (the learner's progress and exactly-once
// ledger). TLS, client certificates and the token come from the run file
// when --config is given.
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "cmdistill/v1/learner.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "services/cli/commands.h"
#include "services/cli/flags.h"
#include "services/cli/run_config_flags.h"
#include "services/common/wiring.h"

namespace cmdistill::cli {
namespace {

int RunHealthCommand(const std::vector<std::string>& args, Io io) {
  FlagSet flags("cmdistill health", "--address HOST:PORT [--config FILE]",
                "Asks a learner, teacher or reward service for its gRPC health "
                "(grpc.health.v1).\nExit 0 when it answers SERVING, 1 "
                "otherwise (NOT_SERVING while it drains,\nor no answer). TLS "
                "and client certificates come from the run file's security\n"
                "section when --config is given.");
  AddRunConfigFlags(&flags, "YAML run file for TLS settings (optional)");
  flags.AddString("address", "HOST:PORT", "the service to check");
  flags.AddString("timeout", "SECONDS", "how long to wait for the answer", "3");
  if (auto code = ParseOrExit(&flags, args, io)) return *code;
  if (!flags.IsSet("address")) {
    io.err << "cmdistill health: --address HOST:PORT is required\n";
    return kExitUsage;
  }
  double timeout = 0;
  if (!ParseDouble(flags, "timeout", &timeout, io) || timeout <= 0) {
    io.err << "cmdistill health: --timeout must be a positive number\n";
    return kExitUsage;
  }
  auto config = LoadRunConfigOrReport(flags, io);
  if (!config) return kExitFailure;
  auto options = services::ChannelOptionsFor(*config, flags.Get("address"));
  if (!options.ok()) {
    return Fail(io, "health", options.status());
  }
  auto channel = net::MakeChannel(*options);
  if (!channel.ok()) {
    return Fail(io, "health", channel.status());
  }
  auto stub = grpc::health::v1::Health::NewStub(*channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(timeout)));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  const grpc::Status s = stub->Check(&ctx, req, &resp);
  if (!s.ok()) {
    io.err << "cmdistill health: " << flags.Get("address") << ": no answer ("
           << s.error_message() << ")\n";
    return kExitFailure;
  }
  const std::string name =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status());
  io.out << flags.Get("address") << ": " << name << "\n";
  return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING
             ? kExitOk
             : kExitFailure;
}

int RunStatusCommand(const std::vector<std::string>& args, Io io) {
  FlagSet flags(
      "cmdistill status", "--learner HOST:PORT [--config FILE] [--json]",
      "Asks a running learner for its step, policy version and the "
      "exactly-once ledger:\nper epoch, prompt groups trained and distinct "
      "prompts among them (equal when\nnone trained twice), prompts leased "
      "and pending, trajectories by outcome.\nThe counts survive learner "
      "restarts (they are restored from its checkpoint).");
  AddRunConfigFlags(&flags, "YAML run file for TLS and the token (optional)");
  flags.AddString("learner", "HOST:PORT",
                  "the learner (default: services.learner.address)");
  flags.AddBool("json", "print the GetStatus response as JSON");
  if (auto code = ParseOrExit(&flags, args, io)) return *code;
  auto config = LoadRunConfigOrReport(flags, io);
  if (!config) return kExitFailure;
  const std::string address = flags.IsSet("learner")
                                  ? flags.Get("learner")
                                  : config->services().learner().address();
  auto options = services::ChannelOptionsFor(*config, address);
  auto call = services::CallOptionsFor(*config);
  if (!options.ok() || !call.ok()) {
    return Fail(io, "status",
                (options.ok() ? call.status() : options.status()));
  }
  auto channel = net::MakeChannel(*options);
  if (!channel.ok()) {
    return Fail(io, "status", channel.status());
  }
  auto stub = v1::LearnerService::NewStub(*channel);
  v1::GetStatusResponse st;
  call->timeout = std::min(call->timeout, absl::Seconds(10));
  const grpc::Status s = net::CallWithRetry(*call, [&](grpc::ClientContext* c) {
    return stub->GetStatus(c, v1::GetStatusRequest(), &st);
  });
  if (!s.ok()) {
    io.err << "cmdistill status: " << address << ": " << s.error_message()
           << "\n";
    return kExitFailure;
  }
  if (flags.GetBool("json")) {
    std::string json;
    google::protobuf::util::JsonPrintOptions jo;
    jo.always_print_primitive_fields = true;
    (void)google::protobuf::util::MessageToJsonString(st, &json, jo);
    io.out << json << "\n";
    return kExitOk;
  }
  io.out << absl::StrFormat(
      "step %d, policy version %d, epoch %d, %s; %d prompts per epoch; %d "
      "trajectories buffered, %d leases outstanding\n",
      st.step(), st.policy_version(), st.epoch(),
      st.finished() ? "finished" : "training", st.num_prompts(),
      st.buffered_trajectories(), st.outstanding_leases());
  io.out << absl::StrFormat("%-6s %8s %8s %7s %8s  %s\n", "epoch", "trained",
                            "unique", "leased", "pending",
                            "trajectories by outcome");
  bool twice = false;
  for (const v1::EpochStatus& e : st.epochs()) {
    std::map<std::string, uint64_t> sorted(e.trajectories().begin(),
                                           e.trajectories().end());
    std::string outcomes;
    for (const auto& [name, n] : sorted)
      absl::StrAppend(&outcomes, outcomes.empty() ? "" : " ", name, "=", n);
    io.out << absl::StrFormat("%-6d %8d %8d %7d %8d  %s\n", e.epoch(),
                              e.trained(), e.unique(), e.leased(), e.pending(),
                              outcomes);
    twice = twice || e.trained() != e.unique();
  }
  io.out << (twice ? "WARNING: a prompt was trained twice in an epoch\n"
                   : "exactly once: no prompt trained twice in any epoch\n");
  return twice ? kExitFailure : kExitOk;
}

}  // namespace

void AddHealthCommands(std::vector<Command>* commands) {
  commands->push_back({"health",
                       "gRPC health check of a service (container probes)",
                       RunHealthCommand});
  commands->push_back({"status",
                       "a running learner's progress and exactly-once ledger",
                       RunStatusCommand});
}

}  // namespace cmdistill::cli
