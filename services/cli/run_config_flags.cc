#include "services/cli/run_config_flags.h"

#include "common/config/config.h"

namespace cmdistill::cli {

void AddRunConfigFlags(FlagSet* flags, const std::string& config_help) {
  flags->AddString("config", "FILE", config_help);
  flags->AddRepeated("set", "KEY=VALUE",
                     "override one key, e.g. --set optimizer.lr=2e-5");
}

std::optional<int> ParseOrExit(FlagSet* flags,
                               const std::vector<std::string>& args, Io io) {
  if (auto s = flags->Parse(args); !s.ok()) {
    io.err << s.message() << "\n";
    return kExitUsage;
  }
  if (flags->help_requested()) {
    io.out << flags->Help();
    return kExitOk;
  }
  return std::nullopt;
}

std::optional<v1::RunConfig> LoadRunConfigOrReport(const FlagSet& flags,
                                                   Io io) {
  auto config =
      flags.IsSet("config")
          ? config::LoadRunConfig(flags.Get("config"), flags.GetAll("set"))
          : config::LoadRunConfigFromString("", "(defaults)",
                                            flags.GetAll("set"));
  if (!config.ok()) {
    io.err << config.status().message() << "\n";
    return std::nullopt;
  }
  return *std::move(config);
}

}  // namespace cmdistill::cli
