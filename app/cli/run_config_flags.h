// The flag handling every run-file-driven subcommand shares.
#ifndef CMDISTILL_SERVICES_CLI_RUN_CONFIG_FLAGS_H_
#define CMDISTILL_SERVICES_CLI_RUN_CONFIG_FLAGS_H_

#include <optional>
#include <string>
#include <vector>

#include "app/cli/commands.h"
#include "app/cli/flags.h"
#include "cmdistill/v1/config.pb.h"

namespace cmdistill::cli {

// --config FILE and --set KEY=VALUE (repeatable).
void AddRunConfigFlags(FlagSet* flags, const std::string& config_help);

// Parses `args`. Returns the exit code when the command should stop now (usage
// error -> kExitUsage with the message on stderr; --help -> kExitOk with the
// help on stdout).
std::optional<int> ParseOrExit(FlagSet* flags,
                               const std::vector<std::string>& args, Io io);

// Loads the run file (or the defaults without --config) with the --set
// overrides. On error prints every problem and returns nullopt; the caller
// exits with kExitFailure.
std::optional<v1::RunConfig> LoadRunConfigOrReport(const FlagSet& flags, Io io);

// Numeric flag values; false (with the flag named on stderr) when the text is
// not a number.
bool ParseInt64(const FlagSet& flags, const std::string& name, int64_t* out,
                Io io);
bool ParseDouble(const FlagSet& flags, const std::string& name, double* out,
                 Io io);

}  // namespace cmdistill::cli

#endif  // CMDISTILL_SERVICES_CLI_RUN_CONFIG_FLAGS_H_
