// `cmdistill health`: the gRPC health check of one service, for container
// health checks and exec probes (TLS and the run file's client settings
// when --config is given). Exit 0 when SERVING, 1 otherwise.
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
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
    io.err << "cmdistill health: " << options.status().message() << "\n";
    return kExitFailure;
  }
  auto channel = net::MakeChannel(*options);
  if (!channel.ok()) {
    io.err << "cmdistill health: " << channel.status().message() << "\n";
    return kExitFailure;
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

}  // namespace

void AddHealthCommands(std::vector<Command>* commands) {
  commands->push_back({"health",
                       "gRPC health check of a service (container probes)",
                       RunHealthCommand});
}

}  // namespace cmdistill::cli
