#include "services/actor/role.h"

#include <atomic>
#include <functional>
#include <memory>
#include <thread>

#include "absl/synchronization/notification.h"
#include "common/metrics/http_exposer.h"
#include "common/metrics/metrics.h"
#include "common/metrics/process.h"
#include "common/model/language_model.h"
#include "common/net/client.h"
#include "common/process/signals.h"
#include "common/status/status_macros.h"
#include "common/tokenizer/tokenizer.h"
#include "common/util/files.h"
#include "services/actor/actor.h"
#include "services/actor/model_policy.h"
#include "services/common/child_protocol.h"
#include "services/common/compute_threads.h"
#include "services/common/role_host.h"
#include "services/common/task_options.h"
#include "services/common/wiring.h"

namespace cmdistill::actor {
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
  ao.learner_horizon = absl::Seconds(config.actor().learner_horizon_seconds());
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
  services::SetRoleComputeThreads(config, "actor", log);
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
  if (exposer) {
    const absl::Duration stall = absl::Seconds(config.actor().stall_seconds());
    exposer->SetHealthCheck(
        [&a, stall] { return a.Health(absl::Now(), stall); });
  }
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
    const int signals_seen = signals->signal_count();
    // Ended by itself (not by a signal): the last values get their scrape.
    if (s.ok() && exposer && !stop.load())
      services::ServeFinalScrape(config, "actor", *signals, signals_seen, log);
  }
  if (exposer) exposer->SetHealthCheck(nullptr);  // `a` goes before `exposer`
  signals->Notify();  // release the watcher if we ended on our own
  watcher.join();
  log << "cmdistill actor: "
      << (!s.ok()            ? std::string(s.message())
          : a.learner_gone() ? "done (the learner stayed away past the horizon)"
                             : "done")
      << " after " << a.rounds() << " round(s), policy version "
      << a.policy_version() << "\n";
  return s;
}

}  // namespace cmdistill::actor
