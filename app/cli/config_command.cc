// `cmdistill config print|validate`.
#include <string>
#include <vector>

#include "app/cli/commands.h"
#include "app/cli/flags.h"
#include "app/cli/run_config_flags.h"
#include "common/config/config.h"

namespace cmdistill::cli {
namespace {

int RunConfig(const std::vector<std::string>& args, Io io) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    (args.empty() ? io.err : io.out)
        << "usage: cmdistill config <print|validate> [--config FILE] [--set "
           "KEY=VALUE]...\n\n"
           "  print     print the fully resolved run configuration (defaults + "
           "file + --set)\n"
           "  validate  check a run file; prints every problem with its key "
           "path and line\n";
    return args.empty() ? kExitUsage : kExitOk;
  }
  const std::string action = args[0];
  if (action != "print" && action != "validate") {
    io.err << "cmdistill config: unknown action '" << action
           << "' (expected print or validate)\n";
    return kExitUsage;
  }
  FlagSet flags("cmdistill config " + action,
                "[--config FILE] [--set KEY=VALUE]...",
                action == "print" ? "Prints the fully resolved run "
                                    "configuration as YAML: every key, with "
                                    "the\nschema defaults filled in. Without "
                                    "--config, prints the defaults."
                                  : "Checks a run file: unknown keys, wrong "
                                    "types and out-of-range values "
                                    "are\nreported with their key path and "
                                    "file line. Exit 0 when valid.");
  AddRunConfigFlags(&flags, "YAML run file");
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (auto code = ParseOrExit(&flags, rest, io)) return *code;
  if (action == "validate" && !flags.IsSet("config")) {
    io.err << "cmdistill config validate: --config FILE is required\n";
    return kExitUsage;
  }
  auto config = LoadRunConfigOrReport(flags, io);
  if (!config) return kExitFailure;
  if (action == "print") {
    io.out << config::ToYaml(*config);
  } else {
    io.out << flags.Get("config") << ": valid (method "
           << config::MethodName(config->method()) << ")\n";
  }
  return kExitOk;
}

}  // namespace

void AddConfigCommands(std::vector<Command>* commands) {
  commands->push_back(
      {"config", "print or validate a run configuration", RunConfig});
}

}  // namespace cmdistill::cli
