// Entry points of the service subcommands. Each parses its flags and the run
// configuration, then wires the service with services/common/service_host.h:
// config -> objects -> serve -> drain.
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "common/config/config.h"
#include "common/metrics/metrics.h"
#include "common/metrics/process.h"
#include "common/net/client.h"
#include "common/tasks/dataset.h"
#include "common/tokenizer/tokenizer.h"
#include "services/actor/actor.h"
#include "services/actor/model_policy.h"
#include "services/cli/commands.h"
#include "services/cli/flags.h"
#include "services/cli/run_config_flags.h"
#include "services/common/child_protocol.h"
#include "services/common/service_host.h"
#include "services/common/task_options.h"
#include "services/common/wiring.h"
#include "services/learner/checkpoints.h"
#include "services/learner/learner_service.h"
#include "services/learner/policy_trainer.h"
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
  RunFn run;
};

// Serves `services` on `endpoint` until SIGTERM/SIGINT, then drains (STYLE.md
// order).
int Serve(
    const std::string& name, const std::string& device,
    const v1::RunConfig& config, const v1::EndpointConfig& endpoint, Io io,
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
  ho.device = device;
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
      "teacher", (*scorer)->info().device, config, config.services().teacher(),
      io,
      [&](services::ServiceHost& host) -> std::vector<grpc::Service*> {
        service = std::make_unique<teacher::TeacherServiceImpl>(
            scorer->get(), host.gate_ptr(), host.registry().get(), o);
        return {service.get()};
      },
      [&] { service->Close(); });
}

std::string DTypeName(v1::ModelDType d) {
  return d == v1::MODEL_D_TYPE_BFLOAT16 ? "bfloat16" : "float32";
}

int RunLearner(const v1::RunConfig& config, const FlagSet& flags, Io io) {
  const auto& tr = config.training();
  if (config.student().path().empty() || config.data().train_path().empty()) {
    io.err
        << "cmdistill learner: student.path and data.train_path are required\n";
    return kExitUsage;
  }
  auto tok = tokenizer::Tokenizer::Load(config.student().path());
  if (!tok.ok()) {
    io.err << "cmdistill learner: " << tok.status().message() << "\n";
    return kExitFailure;
  }
  auto data = tasks::LoadJsonl(
      config.data().train_path(),
      services::DatasetOptionsFrom(config, /*test_split=*/false));
  if (!data.ok()) {
    io.err << "cmdistill learner: " << data.status().message() << "\n";
    return kExitFailure;
  }
  if (data->skipped > 0) {
    io.err << "cmdistill learner: skipped " << data->skipped
           << " malformed line(s)\n";
  }
  std::vector<learner::Prompt> prompts;
  for (const auto& e : data->examples) {
    learner::Prompt p;
    p.text = tasks::ApplyTemplate(config.data().prompt_template(), e.question);
    auto ids = (*tok)->Encode(p.text, /*add_special_tokens=*/true);
    if (!ids.ok() || ids->empty()) {
      io.err << "cmdistill learner: cannot encode the prompt of line " << e.line
             << "\n";
      return kExitFailure;
    }
    p.ids = *std::move(ids);
    p.gold = e.gold;
    prompts.push_back(std::move(p));
  }
  // Resume: "auto" (the newest valid checkpoint, if any), "never", or a
  // checkpoint folder.
  const std::string resume =
      flags.IsSet("resume") ? flags.Get("resume") : tr.resume();
  const std::string checkpoint_dir = tr.checkpoint_dir().empty()
                                         ? config.output_dir() + "/checkpoints"
                                         : tr.checkpoint_dir();
  std::optional<learner::FoundCheckpoint> found;
  for (const std::string& d : learner::RemoveStaleTemporaries(checkpoint_dir)) {
    io.err << "cmdistill learner: removed " << d
           << " (a checkpoint write that a killed learner left unfinished)\n";
  }
  if (resume == "auto") {
    std::vector<std::string> skipped;
    auto f =
        learner::FindLatestCheckpoint(checkpoint_dir, prompts.size(), &skipped);
    for (const auto& why : skipped) {
      io.err << "cmdistill learner: skipping corrupt checkpoint: " << why
             << "\n";
    }
    if (f.ok()) found = *std::move(f);
  } else if (resume != "never") {
    auto f = learner::ReadCheckpoint(resume, prompts.size());
    if (!f.ok()) {
      io.err << "cmdistill learner: cannot resume from " << resume << ": "
             << f.status().message() << "\n";
      return kExitFailure;
    }
    found = *std::move(f);
  }
  const std::string weights = found ? found->dir : config.student().path();
  if (found) {
    io.err << "cmdistill learner: resuming from " << found->dir << " (step "
           << found->state.step() << ", policy version "
           << found->state.policy_version() << ")\n";
  }
  auto student = model::LanguageModel::Load(
      weights, config.student().device(), DTypeName(config.student().dtype()));
  if (!student.ok()) {
    io.err << "cmdistill learner: " << student.status().message() << "\n";
    return kExitFailure;
  }
  learner::TrainerOptions to;
  to.method = services::MethodFrom(config.method());
  to.clip_epsilon = tr.clip_epsilon();
  to.kappa = config.constraint().kappa();
  to.fixed_lambda = config.constraint().soft_lambda();
  to.cost_estimator = services::CostOptionsFrom(config).estimator;
  to.term_two_over_all_tokens = config.constraint().term_two_denominator() ==
                                v1::TERM_TWO_DENOMINATOR_ALL_TOKENS;
  to.lagrange = services::LagrangeOptionsFrom(config);
  to.budget = config.constraint().budget();
  to.std_normalization = tr.advantage_std_normalization();
  to.advantage_eps = tr.advantage_eps();
  to.prob_floor = config.constraint().prob_floor();
  to.temperature = config.generation().temperature() > 0
                       ? config.generation().temperature()
                       : 1.0;
  const auto& op = config.optimizer();
  to.optimizer = learner::AdamWOptionsFrom(op, tr.max_steps());
  to.micro_batch_sequences = config.training().micro_batch_sequences();
  auto trainer = learner::PolicyTrainer::Create(student->get(), to);
  if (!trainer.ok()) {
    io.err << "cmdistill learner: " << trainer.status().message() << "\n";
    return kExitFailure;
  }
  if (const std::string w = (*trainer)->PrecisionWarning(); !w.empty())
    io.err << "cmdistill learner: " << w << "\n";
  learner::LearnerOptions lo;
  lo.lease.lease_duration = absl::Seconds(tr.lease_seconds());
  lo.lease.samples_per_prompt = config.generation().samples_per_prompt();
  lo.lease.epochs = tr.epochs();
  lo.lease.seed = config.data().shuffle_seed();
  lo.prompts_per_step = tr.prompts_per_step();
  lo.max_policy_lag = tr.max_policy_lag();
  lo.buffer_capacity = tr.trajectory_buffer_capacity();
  lo.max_steps = tr.max_steps();
  lo.checkpoint_dir = checkpoint_dir;
  lo.checkpoint_every = tr.checkpoint_every_steps();
  lo.keep_checkpoints = static_cast<int>(tr.keep_checkpoints());
  lo.tokenizer_from = config.student().path();
  lo.budget = config.constraint().budget();
  lo.has_lambda = to.method == rl::Method::kLagrangian ||
                  to.method == rl::Method::kSoftLagrangian;
  std::unique_ptr<learner::LearnerServiceImpl> service;
  auto observer = [](const learner::StepStats& s, uint64_t version) {
    services::StepLine l;
    l.step = s.step;
    l.version = version;
    l.reward = s.mean_task_reward;
    l.ret = s.mean_return;
    l.satisfaction = s.satisfaction;
    l.cost = s.mean_cost;
    l.kl = s.mean_token_kl;
    l.lambda = s.lambda;
    l.loss = s.loss;
    l.tokens = s.tokens;
    services::Announce(services::FormatStep(l));
  };
  const std::string final_dir = config.output_dir() + "/final";
  auto server = services::ServerOptionsFor(config, config.services().learner());
  if (!server.ok()) {
    io.err << "cmdistill learner: " << server.status().message() << "\n";
    return kExitFailure;
  }
  services::ServiceHostOptions ho;
  ho.name = "learner";
  ho.server = *server;
  ho.metrics_listen = config.services().learner().metrics_listen();
  ho.device = (*student)->device_name();
  ho.shutdown_grace = absl::Seconds(config.services().shutdown_grace_seconds());
  auto host = services::ServiceHost::Create(ho);
  if (!host.ok()) {
    io.err << "cmdistill learner: " << host.status().message() << "\n";
    return kExitFailure;
  }
  auto svc = learner::LearnerServiceImpl::Create(
      std::move(prompts), trainer->get(), (*host)->gate_ptr(),
      (*host)->registry().get(), lo, observer, found ? &found->state : nullptr);
  if (!svc.ok()) {
    io.err << "cmdistill learner: " << svc.status().message() << "\n";
    return kExitFailure;
  }
  service = *std::move(svc);
  if (auto s = (*host)->Start({service.get()}); !s.ok()) {
    io.err << "cmdistill learner: " << s.message() << "\n";
    return kExitFailure;
  }
  // Wait for the end of training or a signal, whichever first.
  std::atomic<bool> stopping{false};
  std::thread finisher([&] {
    service->WaitUntilFinished();
    // Keep answering "finished" for a while so every actor hears it, then stop.
    const absl::Time until = absl::Now() + absl::Seconds(tr.linger_seconds());
    while (!stopping.load() && absl::Now() < until)
      absl::SleepFor(absl::Milliseconds(50));
    (*host)->signals().Notify();
  });
  const int sig = (*host)->WaitForShutdownSignal();
  const bool done = sig == ShutdownSignal::kNotified;
  stopping.store(true);
  service->Close();
  finisher.join();
  int rc = kExitOk;
  if (auto s = service->SaveCheckpoint(); !s.ok()) {
    io.err << "cmdistill learner: final checkpoint: " << s.message() << "\n";
    rc = kExitFailure;
  }
  checkpoint::WriteOptions wo;
  wo.copy_tokenizer_from = config.student().path();
  const auto& gen = config.generation();
  // float32 in the run file: written as the decimal the user typed.
  auto decimal = [](float x) { return std::round(x * 1e6) / 1e6; };
  wo.generation = {decimal(gen.temperature()), decimal(gen.top_p()),
                   static_cast<int64_t>(gen.top_k()),
                   static_cast<int64_t>(gen.max_new_tokens())};
  if (auto s = (*student)->Save(final_dir, wo); !s.ok()) {
    io.err << "cmdistill learner: saving " << final_dir << ": " << s.message()
           << "\n";
    rc = kExitFailure;
  } else {
    // Exactly-once, from outside: groups trained and distinct prompts among
    // them, in total and per epoch (trained/unique), restored across resumes.
    services::FinishedLine f;
    f.step = service->step();
    f.model = final_dir;
    f.complete = done;
    for (const v1::EpochStatus& e : service->epoch_status()) {
      f.prompts += e.trained();
      f.unique += e.unique();
      f.epochs.emplace_back(e.trained(), e.unique());
    }
    services::Announce(services::FormatFinished(f));
  }
  (*host)->Shutdown();
  return rc;
}

int RunActor(const v1::RunConfig& config, const FlagSet& flags, Io io) {
  const std::string learner_addr = flags.IsSet("learner")
                                       ? flags.Get("learner")
                                       : config.services().learner().address();
  const std::string teacher_addr = flags.IsSet("teacher")
                                       ? flags.Get("teacher")
                                       : config.services().teacher().address();
  const std::string reward_addr = flags.IsSet("reward")
                                      ? flags.Get("reward")
                                      : config.services().reward().address();
  const bool needs_teacher =
      rl::NeedsTeacher(services::MethodFrom(config.method()));
  if (learner_addr.empty() || reward_addr.empty() ||
      (needs_teacher && teacher_addr.empty())) {
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
  auto tok = tokenizer::Tokenizer::Load(config.student().path());
  if (!tok.ok()) {
    io.err << "cmdistill actor: " << tok.status().message() << "\n";
    return kExitFailure;
  }
  auto policy = model::LanguageModel::Load(config.student().path(),
                                           config.student().device(),
                                           DTypeName(config.student().dtype()));
  if (!policy.ok()) {
    io.err << "cmdistill actor: " << policy.status().message() << "\n";
    return kExitFailure;
  }
  auto channel = [&](const std::string& a) -> std::shared_ptr<grpc::Channel> {
    auto o = services::ChannelOptionsFor(config, a);
    if (!o.ok()) return nullptr;
    auto c = net::MakeChannel(*o);
    return c.ok() ? *c : nullptr;
  };
  auto call = services::CallOptionsFor(config);
  if (!call.ok()) {
    io.err << "cmdistill actor: " << call.status().message() << "\n";
    return kExitFailure;
  }
  actor::ActorOptions ao;
  ao.actor_id = flags.IsSet("id") ? flags.Get("id") : "actor";
  ao.prompts_per_lease = config.actor().prompts_per_lease();
  const auto& g = config.generation();
  ao.sampling.temperature = g.temperature();
  ao.sampling.top_p = g.top_p();
  ao.sampling.top_k = g.top_k();
  ao.sampling.max_new_tokens = g.max_new_tokens();
  ao.sampling.support_k =
      g.support_k() == 0 ? (int64_t{1} << 40) : g.support_k();
  ao.sampling.seed =
      config.seed() * 7919 + std::hash<std::string>()(ao.actor_id);
  auto stops =
      services::StopTokenIds(config, (*policy)->config().eos_token_ids, **tok);
  if (!stops.ok()) {
    io.err << "cmdistill actor: " << stops.status().message() << "\n";
    return kExitFailure;
  }
  ao.sampling.stop_token_ids = *stops;
  // A reward-only method still asks a configured teacher: its scores feed the
  // constraint-satisfaction and KL metrics (and nothing else).
  ao.needs_teacher = needs_teacher || !teacher_addr.empty();
  ao.tokenizer_fingerprint = (*tok)->fingerprint();
  ao.call = *call;
  auto signals = ShutdownSignal::Install();
  if (!signals.ok()) {
    io.err << "cmdistill actor: " << signals.status().message() << "\n";
    return kExitFailure;
  }
  auto registry = metrics::NewRegistry();
  metrics::RegisterBuildInfo(registry.get(), "actor", (*policy)->device_name());
  std::unique_ptr<metrics::HttpExposer> exposer;
  if (!config.services().actor_metrics_listen().empty()) {
    auto e = metrics::HttpExposer::Start(
        config.services().actor_metrics_listen(), registry);
    if (!e.ok()) {
      io.err << "cmdistill actor: " << e.status().message() << "\n";
      return kExitFailure;
    }
    exposer = *std::move(e);
  }
  actor::ModelPolicy seam(policy->get());
  actor::Actor a(ao, &seam, channel(learner_addr),
                 ao.needs_teacher ? channel(teacher_addr) : nullptr,
                 channel(reward_addr), registry.get());
  std::atomic<bool> stop{false};
  std::thread watcher([&] {
    (*signals)->Wait();
    stop.store(true);
  });
  // --metrics-file: the registry as Prometheus text, rewritten every 2 s and
  // once more at exit, so the last counts survive the process (a scrape
  // races the actor's exit at the end of training).
  const std::string metrics_file =
      flags.IsSet("metrics-file") ? flags.Get("metrics-file") : "";
  absl::Notification run_done;
  auto dump_metrics = [&] {
    if (metrics_file.empty()) return;
    const std::string tmp = metrics_file + ".actor.tmp";
    {
      std::ofstream f(tmp, std::ios::trunc);
      f << metrics::Serialize(*registry);
      if (!f.good()) return;
    }
    std::error_code ec;
    std::filesystem::rename(tmp, metrics_file, ec);
  };
  std::thread dumper([&] {
    if (metrics_file.empty()) return;
    while (!run_done.WaitForNotificationWithTimeout(absl::Seconds(2)))
      dump_metrics();
  });
  services::Announce(
      services::FormatReady({"actor", 0, exposer ? exposer->port() : 0}));
  const absl::Status s = a.Run(stop);
  run_done.Notify();
  dumper.join();
  dump_metrics();
  (*signals)->Notify();  // release the watcher if we ended on our own
  watcher.join();
  io.err << "cmdistill actor: " << (s.ok() ? "done" : std::string(s.message()))
         << " after " << a.rounds() << " round(s), policy version "
         << a.policy_version() << "\n";
  return s.ok() ? kExitOk : kExitFailure;
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
  if (!config.student().path().empty()) {
    // The models' vocabulary bounds token ids (it may exceed the tokenizer's).
    std::ifstream in(config.student().path() + "/config.json");
    std::string text((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    auto mc = checkpoint::ParseModelConfig(
        text, config.student().path() + "/config.json");
    if (mc.ok()) eo.vocab_size = mc->vocab_size;
  }
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
      "reward", "none", config, config.services().reward(), io,
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
        {"id", "actor id for logs (default: actor)"},
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
