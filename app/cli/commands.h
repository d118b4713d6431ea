// Subcommand dispatch of the cmdistill binary.
//
// Exit codes: 0 success; 1 the command failed (bad config, file, peer...); 2
// usage error (unknown subcommand or flag, missing argument); 130 `local` or
// `experiment` interrupted (Ctrl-C).
#ifndef CMDISTILL_SERVICES_CLI_COMMANDS_H_
#define CMDISTILL_SERVICES_CLI_COMMANDS_H_

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace cmdistill::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct Io {
  std::ostream& out;
  std::ostream& err;
};

struct Command {
  std::string name;
  std::string summary;
  // args: everything after the subcommand name.
  std::function<int(const std::vector<std::string>& args, Io io)> run;
};

// The one way a subcommand reports a failed Status: "cmdistill <command>:
// <message>" on stderr; returns the exit code (1, or 130 when a signal
// CANCELLED the work).
int Fail(Io io, const std::string& command, const absl::Status& status);

// All subcommands, in the order `cmdistill --help` lists them.
const std::vector<Command>& Commands();

// Entry point: argv[0] is the program name.
int RunCli(const std::vector<std::string>& argv, Io io);

// Registration helpers implemented by the command files.
void AddConfigCommands(std::vector<Command>* commands);
void AddServiceCommands(std::vector<Command>* commands);
void AddTaskCommands(std::vector<Command>* commands);
void AddModelCommands(std::vector<Command>* commands);
void AddPipelineCommands(std::vector<Command>* commands);
void AddBenchCommands(std::vector<Command>* commands);
void AddHealthCommands(std::vector<Command>* commands);

}  // namespace cmdistill::cli

#endif  // CMDISTILL_SERVICES_CLI_COMMANDS_H_
