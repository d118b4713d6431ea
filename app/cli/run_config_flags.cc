#include "app/cli/run_config_flags.h"

#include "absl/strings/numbers.h"
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

bool ParseInt64(const FlagSet& flags, const std::string& name, int64_t* out,
                Io io) {
  if (!absl::SimpleAtoi(flags.Get(name), out)) {
    io.err << "--" << name << ": expected an integer, got '" << flags.Get(name)
           << "'\n";
    return false;
  }
  return true;
}

bool ParseDouble(const FlagSet& flags, const std::string& name, double* out,
                 Io io) {
  if (!absl::SimpleAtod(flags.Get(name), out)) {
    io.err << "--" << name << ": expected a number, got '" << flags.Get(name)
           << "'\n";
    return false;
  }
  return true;
}

}  // namespace cmdistill::cli
