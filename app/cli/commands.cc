#include "app/cli/commands.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/util/suggest.h"

namespace cmdistill::cli {

int Fail(Io io, const std::string& command, const absl::Status& status) {
  io.err << "cmdistill " << command << ": " << status.message() << "\n";
  return absl::IsCancelled(status) ? 130 : kExitFailure;
}
namespace {

constexpr char kVersion[] = "0.1.0";

void PrintUsage(std::ostream& os) {
  os << "cmdistill " << kVersion
     << " — budget-constrained LLM distillation as a distributed actor-learner "
        "service\n\n"
        "usage: cmdistill <subcommand> [flags]\n\nsubcommands:\n";
  for (const Command& c : Commands()) {
    std::string name = "  " + c.name;
    name.resize(std::max<size_t>(name.size() + 2, 14), ' ');
    os << name << c.summary << "\n";
  }
  os << "\n`cmdistill <subcommand> --help` describes one subcommand.\n";
}

}  // namespace

const std::vector<Command>& Commands() {
  static const auto* commands = [] {
    auto* c = new std::vector<Command>();
    AddServiceCommands(c);
    AddPipelineCommands(c);
    AddTaskCommands(c);
    AddModelCommands(c);
    AddBenchCommands(c);
    AddConfigCommands(c);
    AddHealthCommands(c);
    return c;
  }();
  return *commands;
}

int RunCli(const std::vector<std::string>& argv, Io io) {
  if (argv.size() < 2) {
    PrintUsage(io.err);
    return kExitUsage;
  }
  const std::string& sub = argv[1];
  if (sub == "--help" || sub == "-h" || sub == "help") {
    if (sub == "help" && argv.size() > 2) {
      return RunCli({argv[0], argv[2], "--help"}, io);
    }
    PrintUsage(io.out);
    return kExitOk;
  }
  if (sub == "--version" || sub == "version") {
    io.out << "cmdistill " << kVersion << "\n";
    return kExitOk;
  }
  const std::vector<std::string> args(argv.begin() + 2, argv.end());
  for (const Command& c : Commands()) {
    if (c.name == sub) return c.run(args, io);
  }
  std::vector<std::string> names;
  for (const Command& c : Commands()) names.push_back(c.name);
  const std::string best = ClosestMatch(sub, names, 2);
  io.err << "cmdistill: unknown subcommand '" << sub << "'"
         << (best.empty() ? "" : absl::StrCat(" (did you mean '", best, "'?)"))
         << "; run `cmdistill --help` for the list\n";
  return kExitUsage;
}

}  // namespace cmdistill::cli
