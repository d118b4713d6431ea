// Entry points of the service subcommands. Each parses its flags and the run
// configuration; the services behind them are not part of this build yet, and
// the commands say so instead of pretending (exit code 3). Each later fills its
// Run* function with the wiring of services/common/service_host.h: config ->
// objects -> serve -> drain.
#include <string>
#include <vector>

#include "common/config/config.h"
#include "services/cli/commands.h"
#include "services/cli/flags.h"
#include "services/cli/run_config_flags.h"

namespace cmdistill::cli {
namespace {

struct ServiceSpec {
  std::string name;
  std::string summary;
  std::string usage;
  std::string description;
  std::vector<std::pair<std::string, std::string>> extra_flags;  // name, help
};

int RunService(const ServiceSpec& spec, const std::vector<std::string>& args,
               Io io) {
  FlagSet flags("cmdistill " + spec.name, spec.usage, spec.description);
  AddRunConfigFlags(&flags, "YAML run file (defaults when omitted)");
  for (const auto& [name, help] : spec.extra_flags) {
    flags.AddString(name, "VALUE", help);
  }
  if (auto code = ParseOrExit(&flags, args, io)) return *code;
  auto config = LoadRunConfigOrReport(flags, io);
  if (!config) return kExitFailure;
  io.err << "cmdistill " << spec.name
         << ": not yet available in this build. The run "
         << "configuration is valid (method "
         << config::MethodName(config->method()) << "), but the " << spec.name
         << " service itself has not been implemented yet; "
         << "nothing was started.\n";
  return kExitNotAvailable;
}

std::vector<ServiceSpec> Specs() {
  return {
      {"learner",
       "train the student; lease prompts; serve policy weights; checkpoint",
       "--config FILE [--set KEY=VALUE]...",
       "Runs the learner service: owns the student and optimizer, hands out "
       "prompt leases,\n"
       "takes scored trajectories, applies constrained policy updates and "
       "publishes policy\n"
       "versions.",
       {{"resume",
         "auto, never, or a checkpoint folder (overrides training.resume)"}}},
      {"actor",
       "rollout worker: generate, get scores and rewards, submit",
       "--config FILE [--learner ADDR] [--teacher ADDR] [--reward ADDR]",
       "Runs one rollout actor. Addresses default to services.*.address of the "
       "run file.",
       {{"learner", "learner address (host:port or dns:///name:port)"},
        {"teacher", "teacher address"},
        {"reward", "reward service address"}}},
      {"teacher",
       "score completions with the frozen teacher (dynamic batching)",
       "--config FILE [--model DIR]",
       "Runs the teacher-scoring service on a Hugging Face model folder.",
       {{"model", "teacher model folder (overrides teacher.path)"}}},
      {"reward",
       "grade answers and apply the constraint transform",
       "--config FILE",
       "Runs the reward/constraint service.",
       {}},
      {"local",
       "run the whole pipeline as local processes on loopback (the main job)",
       "--config FILE",
       "Launches learner, teacher, reward and actors as child processes.",
       {}},
  };
}

}  // namespace

void AddServiceCommands(std::vector<Command>* commands) {
  for (const ServiceSpec& spec : Specs()) {
    commands->push_back({spec.name, spec.summary,
                         [spec](const std::vector<std::string>& args, Io io) {
                           return RunService(spec, args, io);
                         }});
  }
}

}  // namespace cmdistill::cli
