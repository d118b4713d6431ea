#include "services/pipeline/roles.h"

#include <atomic>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/checkpoint/hf_checkpoint.h"
#include "common/config/config.h"
#include "common/metrics/metrics.h"
#include "common/metrics/process.h"
#include "common/model/language_model.h"
#include "common/net/client.h"
#include "common/process/signals.h"
#include "common/status/status_macros.h"
#include "common/tasks/dataset.h"
#include "common/tokenizer/tokenizer.h"
#include "common/util/files.h"
#include "services/actor/actor.h"
#include "services/actor/model_policy.h"
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

namespace cmdistill::pipeline {
namespace {

// A ServiceHost for `name` on `endpoint` of the run file.
absl::StatusOr<std::unique_ptr<services::ServiceHost>> MakeHost(
    const std::string& name, const std::string& device,
    const v1::RunConfig& config, const v1::EndpointConfig& endpoint,
    std::string* listen_address = nullptr) {
  CMDISTILL_ASSIGN_OR_RETURN(auto server,
                             services::ServerOptionsFor(config, endpoint));
  if (listen_address != nullptr) *listen_address = server.listen_address;
  services::ServiceHostOptions ho;
  ho.name = name;
  ho.server = server;
  ho.metrics_listen = endpoint.metrics_listen();
  ho.device = device;
  ho.shutdown_grace = absl::Seconds(config.services().shutdown_grace_seconds());
  return services::ServiceHost::Create(ho);
}

// Serves what `make` builds until SIGTERM/SIGINT, then drains (STYLE.md
// order): `before_shutdown` runs after the server stops taking calls.
absl::Status Serve(
    const std::string& name, const std::string& device,
    const v1::RunConfig& config, const v1::EndpointConfig& endpoint,
    std::ostream& log,
    const std::function<std::vector<grpc::Service*>(services::ServiceHost&)>&
        make,
    const std::function<void()>& before_shutdown) {
  std::string address;
  CMDISTILL_ASSIGN_OR_RETURN(
      auto host, MakeHost(name, device, config, endpoint, &address));
  CMDISTILL_RETURN_IF_ERROR(host->Start(make(*host)));
  log << "cmdistill " << name << ": serving on " << address << " (port "
      << host->grpc_port() << "), metrics port " << host->metrics_port()
      << "\n";
  const int sig = host->WaitForShutdownSignal();
  log << "cmdistill " << name << ": signal " << sig << ", draining\n";
  host->Shutdown(before_shutdown);
  log << "cmdistill " << name << ": stopped\n";
  return absl::OkStatus();
}

// ------------------------------------------------------------ learner

// The training prompts: each question in the run file's template, encoded.
absl::StatusOr<std::vector<learner::Prompt>> LoadPrompts(
    const v1::RunConfig& config, const tokenizer::Tokenizer& tok,
    std::ostream& log) {
  CMDISTILL_ASSIGN_OR_RETURN(
      auto data, tasks::LoadJsonl(config.data().train_path(),
                                  services::DatasetOptionsFrom(
                                      config, /*test_split=*/false)));
  if (data.skipped > 0) {
    log << "cmdistill learner: skipped " << data.skipped
        << " malformed line(s)\n";
  }
  std::vector<learner::Prompt> prompts;
  for (const auto& e : data.examples) {
    learner::Prompt p;
    p.text = services::PromptText(config, e.question);
    auto ids = services::EncodePrompt(config, tok, e.question);
    if (!ids.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot encode the prompt of line ", e.line));
    }
    p.ids = *std::move(ids);
    p.gold = e.gold;
    prompts.push_back(std::move(p));
  }
  return prompts;
}

// The checkpoint to resume from: "auto" (the newest valid one, if any),
// "never", or a checkpoint folder.
absl::StatusOr<std::optional<learner::FoundCheckpoint>> FindResume(
    const std::string& resume, const std::string& checkpoint_dir,
    size_t num_prompts, std::ostream& log) {
  for (const std::string& d : learner::RemoveStaleTemporaries(checkpoint_dir)) {
    log << "cmdistill learner: removed " << d
        << " (a checkpoint write that a killed learner left unfinished)\n";
  }
  if (resume == "never") return std::nullopt;
  if (resume == "auto") {
    std::vector<std::string> skipped;
    auto f =
        learner::FindLatestCheckpoint(checkpoint_dir, num_prompts, &skipped);
    for (const auto& why : skipped)
      log << "cmdistill learner: skipping corrupt checkpoint: " << why << "\n";
    if (!f.ok()) return std::nullopt;
    return *std::move(f);
  }
  auto f = learner::ReadCheckpoint(resume, num_prompts);
  CMDISTILL_RETURN_IF_ERROR_ANNOTATED(f.status(), "cannot resume from ",
                                      resume);
  return *std::move(f);
}

learner::TrainerOptions TrainerOptionsFrom(const v1::RunConfig& config) {
  const auto& tr = config.training();
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
  to.lagrange_on_violation_rate = config.constraint().lagrangian_constraint() ==
                                  v1::LAGRANGIAN_CONSTRAINT_VIOLATION_RATE;
  to.violation_target = config.constraint().violation_target();
  to.std_normalization = tr.advantage_std_normalization();
  to.advantage_eps = tr.advantage_eps();
  to.prob_floor = config.constraint().prob_floor();
  to.temperature = config.generation().temperature() > 0
                       ? config.generation().temperature()
                       : 1.0;
  to.optimizer = learner::AdamWOptionsFrom(config.optimizer(), tr.max_steps());
  to.micro_batch_sequences = tr.micro_batch_sequences();
  return to;
}

learner::LearnerOptions LearnerOptionsFrom(const v1::RunConfig& config,
                                           const std::string& checkpoint_dir) {
  const auto& tr = config.training();
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
  const rl::Method m = services::MethodFrom(config.method());
  lo.has_lambda =
      m == rl::Method::kLagrangian || m == rl::Method::kSoftLagrangian;
  return lo;
}

// The STEP line of one update.
void AnnounceStep(const learner::StepStats& s, uint64_t version) {
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
  l.diagnostics = s.diagnostics;
  l.tokens = s.tokens;
  services::Announce(services::FormatStep(l));
}

// Blocks until training is finished (and lingered linger_seconds so that
// every actor hears it) or a signal came; true for the former.
bool ServeUntilFinished(services::ServiceHost& host, learner::Learner& learner,
                        absl::Duration linger) {
  std::atomic<bool> stopping{false};
  std::thread finisher([&] {
    learner.WaitUntilFinished();
    const absl::Time until = absl::Now() + linger;
    while (!stopping.load() && absl::Now() < until)
      absl::SleepFor(absl::Milliseconds(50));
    host.signals().Notify();
  });
  const int sig = host.WaitForShutdownSignal();
  stopping.store(true);
  learner.Close();
  finisher.join();
  return sig == ShutdownSignal::kNotified;
}

// <output_dir>/final, with the sampling settings in generation_config.json.
absl::Status SaveFinalModel(const v1::RunConfig& config,
                            const model::LanguageModel& student,
                            const std::string& final_dir) {
  checkpoint::WriteOptions wo;
  wo.copy_tokenizer_from = config.student().path();
  const auto& gen = config.generation();
  // float32 in the run file: written as the decimal the user typed.
  auto decimal = [](float x) { return std::round(x * 1e6) / 1e6; };
  wo.generation = {decimal(gen.temperature()), decimal(gen.top_p()),
                   static_cast<int64_t>(gen.top_k()),
                   static_cast<int64_t>(gen.max_new_tokens())};
  CMDISTILL_RETURN_IF_ERROR_ANNOTATED(student.Save(final_dir, wo), "saving ",
                                      final_dir);
  return absl::OkStatus();
}

// Exactly-once, from outside: groups trained and distinct prompts among
// them, in total and per epoch, restored across resumes.
void AnnounceFinished(const learner::Learner& learner,
                      const std::string& final_dir, bool complete) {
  services::FinishedLine f;
  f.step = learner.step();
  f.model = final_dir;
  f.complete = complete;
  for (const v1::EpochStatus& e : learner.epoch_status()) {
    f.prompts += e.trained();
    f.unique += e.unique();
    f.epochs.emplace_back(e.trained(), e.unique());
  }
  services::Announce(services::FormatFinished(f));
}

}  // namespace

absl::Status RunTeacherRole(const v1::RunConfig& config,
                            const std::string& model_dir, std::ostream& log) {
  const auto& tc = config.teacher_service();
  CMDISTILL_ASSIGN_OR_RETURN(
      auto scorer,
      teacher::MakeModelScorer(model_dir, config.teacher().device(),
                               services::DTypeName(config.teacher().dtype()),
                               tc.max_batch_tokens()));
  teacher::TeacherServiceOptions o;
  o.max_batch_tokens = tc.max_batch_tokens();
  o.batch_timeout = absl::Milliseconds(tc.batch_timeout_ms());
  o.queue_capacity = tc.queue_capacity();
  o.max_request_sequences = tc.max_request_sequences();
  o.max_request_tokens = tc.max_request_tokens();
  std::unique_ptr<teacher::TeacherServiceImpl> service;
  return Serve(
      "teacher", scorer->info().device, config, config.services().teacher(),
      log,
      [&](services::ServiceHost& host) -> std::vector<grpc::Service*> {
        service = std::make_unique<teacher::TeacherServiceImpl>(
            scorer.get(), host.gate_ptr(), host.registry().get(), o);
        return {service.get()};
      },
      [&] { service->Close(); });
}

absl::Status RunRewardRole(const v1::RunConfig& config, std::ostream& log) {
  std::string tok_path = config.reward().tokenizer_path();
  if (tok_path.empty()) tok_path = config.student().path();
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (!tok_path.empty()) {
    CMDISTILL_ASSIGN_OR_RETURN(tok, tokenizer::Tokenizer::Load(tok_path));
  } else {
    log << "cmdistill reward: no tokenizer (reward.tokenizer_path / "
           "student.path): trajectories must carry completion_text\n";
  }
  reward::EvaluatorOptions eo = services::EvaluatorOptionsFrom(config);
  if (!config.student().path().empty()) {
    // The models' vocabulary bounds token ids (it may exceed the tokenizer's).
    const std::string path = config.student().path() + "/config.json";
    if (auto text = util::ReadFile(path); text.ok()) {
      auto mc = checkpoint::ParseModelConfig(*text, path);
      if (mc.ok()) eo.vocab_size = mc->vocab_size;
    }
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
      "reward", "none", config, config.services().reward(), log,
      [&](services::ServiceHost& host) -> std::vector<grpc::Service*> {
        service = std::make_unique<reward::RewardServiceImpl>(
            &evaluator, host.gate_ptr(), host.registry().get(), o);
        return {service.get()};
      },
      [&] { service->Close(); });
}

absl::Status RunLearnerRole(const v1::RunConfig& config,
                            const std::string& resume, std::ostream& log) {
  const auto& tr = config.training();
  CMDISTILL_ASSIGN_OR_RETURN(
      auto tok, tokenizer::Tokenizer::Load(config.student().path()));
  CMDISTILL_ASSIGN_OR_RETURN(auto prompts, LoadPrompts(config, *tok, log));
  const std::string checkpoint_dir = tr.checkpoint_dir().empty()
                                         ? config.output_dir() + "/checkpoints"
                                         : tr.checkpoint_dir();
  CMDISTILL_ASSIGN_OR_RETURN(
      auto found, FindResume(resume, checkpoint_dir, prompts.size(), log));
  if (found) {
    log << "cmdistill learner: resuming from " << found->dir << " (step "
        << found->state.step() << ", policy version "
        << found->state.policy_version() << ")\n";
  }
  CMDISTILL_ASSIGN_OR_RETURN(
      auto student, model::LanguageModel::Load(
                        found ? found->dir : config.student().path(),
                        config.student().device(),
                        services::DTypeName(config.student().dtype())));
  CMDISTILL_ASSIGN_OR_RETURN(
      auto trainer, learner::PolicyTrainer::Create(student.get(),
                                                   TrainerOptionsFrom(config)));
  if (const std::string w = trainer->PrecisionWarning(); !w.empty())
    log << "cmdistill learner: " << w << "\n";
  CMDISTILL_ASSIGN_OR_RETURN(auto host,
                             MakeHost("learner", student->device_name(), config,
                                      config.services().learner()));
  CMDISTILL_ASSIGN_OR_RETURN(
      auto learner,
      learner::Learner::Create(std::move(prompts), trainer.get(),
                               host->registry().get(),
                               LearnerOptionsFrom(config, checkpoint_dir),
                               AnnounceStep, found ? &found->state : nullptr));
  learner::LearnerServiceImpl service(learner.get(), host->gate_ptr());
  CMDISTILL_RETURN_IF_ERROR(host->Start({&service}));
  const bool done =
      ServeUntilFinished(*host, *learner, absl::Seconds(tr.linger_seconds()));
  // The final checkpoint and the final model are both tried; FINISHED is
  // announced when the final model is written. A finished run's checkpoint
  // was written before the actors were told (written again only if that
  // failed); a stopped one's is written now.
  absl::Status checkpointed = done && learner->final_checkpoint().ok()
                                  ? absl::OkStatus()
                                  : learner->SaveCheckpoint();
  checkpointed = Annotate(checkpointed, "final checkpoint");
  const std::string final_dir = config.output_dir() + "/final";
  const absl::Status saved = SaveFinalModel(config, *student, final_dir);
  if (saved.ok()) AnnounceFinished(*learner, final_dir, done);
  host->Shutdown();
  if (!saved.ok() && !checkpointed.ok())
    log << "cmdistill learner: " << checkpointed.message() << "\n";
  return saved.ok() ? checkpointed : saved;
}

// ------------------------------------------------------------ actor

namespace {

actor::ActorOptions ActorOptionsFrom(const v1::RunConfig& config,
                                     const ActorRoleOptions& r) {
  actor::ActorOptions ao;
  ao.actor_id = r.id;
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
  // A reward-only method still asks a configured teacher: its scores feed the
  // constraint-satisfaction and KL metrics (and nothing else).
  ao.needs_teacher = rl::NeedsTeacher(services::MethodFrom(config.method())) ||
                     !r.teacher.empty();
  return ao;
}

// Writes the registry as Prometheus text to `path` every 2 s and once more
// when stopped, so the last counts survive the process (a scrape races the
// actor's exit at the end of training). Nothing when `path` is empty.
class MetricsFile {
 public:
  MetricsFile(std::string path, prometheus::Registry* registry)
      : path_(std::move(path)), registry_(registry) {
    if (path_.empty()) return;
    thread_ = std::thread([this] {
      while (!done_.WaitForNotificationWithTimeout(absl::Seconds(2))) Dump();
    });
  }
  ~MetricsFile() {
    if (path_.empty()) return;
    done_.Notify();
    thread_.join();
    Dump();
  }

 private:
  void Dump() {
    // Best effort: the next dump writes it again.
    (void)util::WriteFileAtomically(path_, metrics::Serialize(*registry_));
  }
  const std::string path_;
  prometheus::Registry* registry_;
  absl::Notification done_;
  std::thread thread_;
};

}  // namespace

absl::Status RunActorRole(const v1::RunConfig& config,
                          const ActorRoleOptions& r, std::ostream& log) {
  CMDISTILL_ASSIGN_OR_RETURN(
      auto tok, tokenizer::Tokenizer::Load(config.student().path()));
  CMDISTILL_ASSIGN_OR_RETURN(
      auto policy, model::LanguageModel::Load(
                       config.student().path(), config.student().device(),
                       services::DTypeName(config.student().dtype())));
  CMDISTILL_ASSIGN_OR_RETURN(auto call, services::CallOptionsFor(config));
  actor::ActorOptions ao = ActorOptionsFrom(config, r);
  CMDISTILL_ASSIGN_OR_RETURN(
      ao.sampling.stop_token_ids,
      services::StopTokenIds(config, policy->config().eos_token_ids, *tok));
  ao.tokenizer_fingerprint = tok->fingerprint();
  ao.call = call;
  auto channel = [&](const std::string& a) -> std::shared_ptr<grpc::Channel> {
    auto o = services::ChannelOptionsFor(config, a);
    if (!o.ok()) return nullptr;
    auto c = net::MakeChannel(*o);
    return c.ok() ? *c : nullptr;
  };
  CMDISTILL_ASSIGN_OR_RETURN(auto signals, ShutdownSignal::Install());
  auto registry = metrics::NewRegistry();
  metrics::RegisterBuildInfo(registry.get(), "actor", policy->device_name());
  std::unique_ptr<metrics::HttpExposer> exposer;
  if (!config.services().actor_metrics_listen().empty()) {
    CMDISTILL_ASSIGN_OR_RETURN(
        exposer, metrics::HttpExposer::Start(
                     config.services().actor_metrics_listen(), registry));
  }
  actor::ModelPolicy seam(policy.get());
  actor::Actor a(ao, &seam, channel(r.learner),
                 ao.needs_teacher ? channel(r.teacher) : nullptr,
                 channel(r.reward), registry.get());
  std::atomic<bool> stop{false};
  std::thread watcher([&] {
    signals->Wait();
    stop.store(true);
  });
  absl::Status s;
  {
    MetricsFile dump(r.metrics_file, registry.get());
    services::Announce(
        services::FormatReady({"actor", 0, exposer ? exposer->port() : 0}));
    s = a.Run(stop);
  }
  signals->Notify();  // release the watcher if we ended on our own
  watcher.join();
  log << "cmdistill actor: " << (s.ok() ? "done" : std::string(s.message()))
      << " after " << a.rounds() << " round(s), policy version "
      << a.policy_version() << "\n";
  return s;
}

}  // namespace cmdistill::pipeline
