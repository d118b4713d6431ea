// Entry points of the service subcommands. Each parses its flags and the run
// configuration; the services behind them are not part of this build yet, and
// the commands say so instead of pretending (exit code 3). Each later fills its
// Run* function with the wiring of services/common/service_host.h: config ->
// objects -> serve -> drain.
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "common/config/config.h"
#include "common/tokenizer/tokenizer.h"
#include "services/cli/commands.h"
#include "services/cli/flags.h"
#include "services/cli/run_config_flags.h"
#include "services/common/service_host.h"
#include "services/common/task_options.h"
#include "services/common/wiring.h"
#include "services/reward/evaluator.h"
#include "services/reward/reward_service.h"
#include "services/teacher/model_scorer.h"
#include "services/teacher/teacher_service.h"

namespace cmdistill::cli {
namespace {

using RunFn = std::function<int(const v1::RunConfig&, const FlagSet&, Io)>;

struct ServiceSpec {
  std::string name;
  std::string summary;
  std::string usage;
  std::string description;
  std::vector<std::pair<std::string, std::string>> extra_flags;  // name, help
  RunFn run;  // empty: not yet available in this build
};

// Serves `services` on `endpoint` until SIGTERM/SIGINT, then drains (STYLE.md
// order).
int Serve(
    const std::string& name, const v1::RunConfig& config,
    const v1::EndpointConfig& endpoint, Io io,
    const std::function<std::vector<grpc::Service*>(services::ServiceHost&)>&
        make,
    const std::function<void()>& before_shutdown) {
  auto server = services::ServerOptionsFor(config, endpoint);
  if (!server.ok()) {
    io.err << "cmdistill " << name << ": " << server.status().message() << "\n";
    return kExitFailure;
  }
  services::ServiceHostOptions ho;
  ho.name = name;
  ho.server = *server;
  ho.metrics_listen = endpoint.metrics_listen();
  ho.shutdown_grace = absl::Seconds(config.services().shutdown_grace_seconds());
  auto host = services::ServiceHost::Create(ho);
  if (!host.ok()) {
    io.err << "cmdistill " << name << ": " << host.status().message() << "\n";
    return kExitFailure;
  }
  std::vector<grpc::Service*> svc = make(**host);
  if (auto s = (*host)->Start(svc); !s.ok()) {
    io.err << "cmdistill " << name << ": " << s.message() << "\n";
    return kExitFailure;
  }
  io.err << "cmdistill " << name << ": serving on " << ho.server.listen_address
         << " (port " << (*host)->grpc_port() << "), metrics port "
         << (*host)->metrics_port() << "\n";
  const int sig = (*host)->WaitForShutdownSignal();
  io.err << "cmdistill " << name << ": signal " << sig << ", draining\n";
  (*host)->Shutdown(before_shutdown);
  io.err << "cmdistill " << name << ": stopped\n";
  return kExitOk;
}

int RunTeacher(const v1::RunConfig& config, const FlagSet& flags, Io io) {
  const std::string dir =
      flags.IsSet("model") ? flags.Get("model") : config.teacher().path();
  if (dir.empty()) {
    io.err
        << "cmdistill teacher: no model (give --model DIR or teacher.path)\n";
    return kExitUsage;
  }
  const auto& tc = config.teacher_service();
  auto scorer = teacher::MakeModelScorer(
      dir, config.teacher().device(),
      config.teacher().dtype() == v1::MODEL_D_TYPE_BFLOAT16 ? "bfloat16"
                                                            : "float32",
      tc.max_batch_tokens());
  if (!scorer.ok()) {
    io.err << "cmdistill teacher: " << scorer.status().message() << "\n";
    return kExitFailure;
  }
  teacher::TeacherServiceOptions o;
  o.max_batch_tokens = tc.max_batch_tokens();
  o.batch_timeout = absl::Milliseconds(tc.batch_timeout_ms());
  o.queue_capacity = tc.queue_capacity();
  o.max_request_sequences = tc.max_request_sequences();
  o.max_request_tokens = tc.max_request_tokens();
  std::unique_ptr<teacher::TeacherServiceImpl> service;
  return Serve(
      "teacher", config, config.services().teacher(), io,
      [&](services::ServiceHost& host) -> std::vector<grpc::Service*> {
        service = std::make_unique<teacher::TeacherServiceImpl>(
            scorer->get(), host.gate_ptr(), host.registry().get(), o);
        return {service.get()};
      },
      [&] { service->Close(); });
}

int RunReward(const v1::RunConfig& config, const FlagSet&, Io io) {
  std::string tok_path = config.reward().tokenizer_path();
  if (tok_path.empty()) tok_path = config.student().path();
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (!tok_path.empty()) {
    auto t = tokenizer::Tokenizer::Load(tok_path);
    if (!t.ok()) {
      io.err << "cmdistill reward: " << t.status().message() << "\n";
      return kExitFailure;
    }
    tok = *std::move(t);
  } else {
    io.err << "cmdistill reward: no tokenizer (reward.tokenizer_path / "
              "student.path): "
              "trajectories must carry completion_text\n";
  }
  reward::EvaluatorOptions eo;
  eo.reward = services::RewardOptionsFrom(config);
  eo.cost = services::CostOptionsFrom(config);
  eo.strictness = services::StrictnessFrom(config);
  reward::Evaluator evaluator(tok.get(), eo);
  reward::RewardServiceOptions o;
  o.queue_capacity = config.reward().queue_capacity();
  o.workers = static_cast<int>(config.reward().workers());
  o.max_request_trajectories = config.reward().max_request_trajectories();
  o.rolling_window = config.reward().rolling_window();
  o.method_name = config::MethodName(config.method());
  o.normalization_name = config::EnumShortName(
      *v1::CostNormalization_descriptor()->FindValueByNumber(
          config.constraint().cost_normalization()));
  o.estimator_name =
      config::EnumShortName(*v1::CostEstimator_descriptor()->FindValueByNumber(
          config.constraint().cost_estimator()));
  o.tokenizer_fingerprint = tok ? tok->fingerprint() : "";
  std::unique_ptr<reward::RewardServiceImpl> service;
  return Serve(
      "reward", config, config.services().reward(), io,
      [&](services::ServiceHost& host) -> std::vector<grpc::Service*> {
        service = std::make_unique<reward::RewardServiceImpl>(
            &evaluator, host.gate_ptr(), host.registry().get(), o);
        return {service.get()};
      },
      [&] { service->Close(); });
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
  if (spec.run) return spec.run(*config, flags, io);
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
         "auto, never, or a checkpoint folder (overrides training.resume)"}},
       nullptr},
      {"actor",
       "rollout worker: generate, get scores and rewards, submit",
       "--config FILE [--learner ADDR] [--teacher ADDR] [--reward ADDR]",
       "Runs one rollout actor. Addresses default to services.*.address of the "
       "run file.",
       {{"learner", "learner address (host:port or dns:///name:port)"},
        {"teacher", "teacher address"},
        {"reward", "reward service address"}},
       nullptr},
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
      {"local",
       "run the whole pipeline as local processes on loopback (the main job)",
       "--config FILE",
       "Launches learner, teacher, reward and actors as child processes.",
       {},
       nullptr},
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
