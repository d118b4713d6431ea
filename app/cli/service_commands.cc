// The service subcommands: flags and the run file, the checks of what the
// role needs, then the role itself (services/<service>/role.h).
#include <unistd.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "app/cli/commands.h"
#include "app/cli/flags.h"
#include "app/cli/run_config_flags.h"
#include "common/rl/constraint.h"
#include "services/actor/role.h"
#include "services/common/task_options.h"
#include "services/learner/role.h"
#include "services/reward/role.h"
#include "services/teacher/role.h"

namespace cmdistill::cli {
namespace {

using RunFn = std::function<int(const v1::RunConfig&, const FlagSet&, Io)>;

struct ServiceSpec {
  std::string name;
  std::string summary;
  std::string usage;
  std::string description;
  std::vector<std::pair<std::string, std::string>> extra_flags;  // name, help
  RunFn run;
};

// The role's outcome as the subcommand's exit code.
int Failed(const std::string& name, const absl::Status& s, Io io) {
  return s.ok() ? kExitOk : Fail(io, name, s);
}

int RunTeacher(const v1::RunConfig& config, const FlagSet& flags, Io io) {
  const std::string dir =
      flags.IsSet("model") ? flags.Get("model") : config.teacher().path();
  if (dir.empty()) {
    io.err
        << "cmdistill teacher: no model (give --model DIR or teacher.path)\n";
    return kExitUsage;
  }
  return Failed("teacher", teacher::RunTeacherRole(config, dir, io.err), io);
}

int RunLearner(const v1::RunConfig& config, const FlagSet& flags, Io io) {
  if (config.student().path().empty() || config.data().train_path().empty()) {
    io.err
        << "cmdistill learner: student.path and data.train_path are required\n";
    return kExitUsage;
  }
  const std::string resume =
      flags.IsSet("resume") ? flags.Get("resume") : config.training().resume();
  return Failed("learner", learner::RunLearnerRole(config, resume, io.err), io);
}

// Unique per process: two actors of one run never share an id (nor a
// sampling seed) unless told to.
std::string DefaultActorId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return absl::StrCat("actor-", host[0] != '\0' ? host : "local", "-",
                      getpid());
}

int RunActor(const v1::RunConfig& config, const FlagSet& flags, Io io) {
  auto flag_or = [&](const char* name, const std::string& fallback) {
    return flags.IsSet(name) ? flags.Get(name) : fallback;
  };
  actor::ActorRoleOptions o;
  o.learner = flag_or("learner", config.services().learner().address());
  o.teacher = flag_or("teacher", config.services().teacher().address());
  o.reward = flag_or("reward", config.services().reward().address());
  o.id = flag_or("id", DefaultActorId());
  o.metrics_file = flag_or("metrics-file", "");
  const bool needs_teacher =
      rl::NeedsTeacher(services::MethodFrom(config.method()));
  if (o.learner.empty() || o.reward.empty() ||
      (needs_teacher && o.teacher.empty())) {
    io.err << "cmdistill actor: learner, reward (and, for this method, "
              "teacher) addresses are "
              "required (--learner/--teacher/--reward or services.*.address)\n";
    return kExitUsage;
  }
  if (config.student().path().empty()) {
    io.err << "cmdistill actor: student.path is required (architecture and "
              "tokenizer)\n";
    return kExitUsage;
  }
  return Failed("actor", actor::RunActorRole(config, o, io.err), io);
}

int RunReward(const v1::RunConfig& config, const FlagSet&, Io io) {
  return Failed("reward", reward::RunRewardRole(config, io.err), io);
}

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
  return spec.run(*config, flags, io);
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
         "auto, never, or a checkpoint folder (overrides training.resume)"}},
       RunLearner},
      {"actor",
       "rollout worker: generate, get scores and rewards, submit",
       "--config FILE [--learner ADDR] [--teacher ADDR] [--reward ADDR] "
       "[--id NAME] [--metrics-file FILE]",
       "Runs one rollout actor. Addresses default to services.*.address of the "
       "run file.",
       {{"learner", "learner address (host:port or dns:///name:port)"},
        {"teacher", "teacher address"},
        {"reward", "reward service address"},
        {"id",
         "actor id: logs, its sampling seed, and whom a finishing learner "
         "waits for; a stable one (the pod name) lets a restarted actor be "
         "recognised (default: actor-<host>-<pid>)"},
        {"metrics-file",
         "also write /metrics as Prometheus text to this file (every 2 s and "
         "at exit)"}},
       RunActor},
      {"teacher",
       "score completions with the frozen teacher (dynamic batching)",
       "--config FILE [--model DIR]",
       "Runs the teacher-scoring service on a Hugging Face model folder.",
       {{"model", "teacher model folder (overrides teacher.path)"}},
       RunTeacher},
      {"reward",
       "grade answers and apply the constraint transform",
       "--config FILE",
       "Runs the reward/constraint service (completions decoded with the "
       "tokenizer of\n"
       "reward.tokenizer_path, or of student.path).",
       {},
       RunReward},
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
