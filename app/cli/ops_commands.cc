// Operator commands against running services: `cmdistill health` (the gRPC
// health check, for container health checks and exec probes; exit 0 when
// SERVING) and `cmdistill status` (the learner's progress and exactly-once
// ledger). TLS, client certificates and the token come from the run file
// when --config is given.

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "app/cli/commands.h"
#include "app/cli/flags.h"
#include "app/cli/run_config_flags.h"
#include "app/tools/ops.h"
#include "common/net/http_get.h"
#include "google/protobuf/util/json_util.h"

namespace cmdistill::cli {
namespace {

int RunHealthCommand(const std::vector<std::string>& args, Io io) {
  FlagSet flags("cmdistill health",
                "--address HOST:PORT [--config FILE] | --http-port PORT",
                "Asks a learner, teacher or reward service for its gRPC health "
                "(grpc.health.v1).\nExit 0 when it answers SERVING, 1 "
                "otherwise (NOT_SERVING while it drains,\nor no answer). TLS "
                "and client certificates come from the run file's security\n"
                "section when --config is given. With --http-port, asks "
                "GET /healthz on\n127.0.0.1:PORT instead (an actor's metrics "
                "port: 503 when its loop is stuck).");
  AddRunConfigFlags(&flags, "YAML run file for TLS settings (optional)");
  flags.AddString("address", "HOST:PORT", "the service to check");
  flags.AddString("http-port", "PORT",
                  "check GET /healthz on 127.0.0.1:PORT (actors)");
  flags.AddString("timeout", "SECONDS", "how long to wait for the answer", "3");
  if (auto code = ParseOrExit(&flags, args, io)) return *code;
  if (flags.IsSet("http-port")) {
    int port = 0;
    if (!absl::SimpleAtoi(flags.Get("http-port"), &port) || port <= 0 ||
        port > 65535) {
      io.err << "cmdistill health: --http-port must be a port number\n";
      return kExitUsage;
    }
    auto body = net::HttpGet(port, "/healthz");
    if (!body.ok()) return Fail(io, "health", body.status());
    io.out << "127.0.0.1:" << port << "/healthz: " << *body;
    return kExitOk;
  }
  if (!flags.IsSet("address")) {
    io.err << "cmdistill health: --address HOST:PORT or --http-port PORT is "
              "required\n";
    return kExitUsage;
  }
  double timeout = 0;
  if (!ParseDouble(flags, "timeout", &timeout, io) || timeout <= 0) {
    io.err << "cmdistill health: --timeout must be a positive number\n";
    return kExitUsage;
  }
  auto config = LoadRunConfigOrReport(flags, io);
  if (!config) return kExitFailure;
  auto answer =
      tools::QueryHealth(*config, flags.Get("address"), absl::Seconds(timeout));
  if (!answer.ok()) return Fail(io, "health", answer.status());
  io.out << flags.Get("address") << ": " << *answer << "\n";
  return *answer == "SERVING" ? kExitOk : kExitFailure;
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
  auto st = tools::QueryLearnerStatus(*config, address);
  if (!st.ok()) return Fail(io, "status", st.status());
  if (flags.GetBool("json")) {
    std::string json;
    google::protobuf::util::JsonPrintOptions jo;
    jo.always_print_primitive_fields = true;
    (void)google::protobuf::util::MessageToJsonString(*st, &json, jo);
    io.out << json << "\n";
    return kExitOk;
  }
  bool twice = false;
  io.out << tools::FormatLearnerStatus(*st, &twice);
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
