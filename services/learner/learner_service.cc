#include "services/learner/learner_service.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/metrics/metrics.h"
#include "common/util/sha256.h"
#include "services/learner/checkpoints.h"
#include "services/learner/trajectory_checks.h"

namespace cmdistill::learner {
namespace {

// Finishes a unary call and observes its latency first, so that a client that
// has its answer also finds the call counted (or, for a call finished
// elsewhere, at the end of the handler's scope).
class TimedFinish {
 public:
  TimedFinish(prometheus::Histogram* h, grpc::ServerUnaryReactor* reactor)
      : h_(h), reactor_(reactor), start_(absl::Now()) {}
  ~TimedFinish() {
    if (!observed_) Observe();
  }
  void Finish(const grpc::Status& s) {
    Observe();
    reactor_->Finish(s);
  }

 private:
  void Observe() {
    observed_ = true;
    h_->Observe(absl::ToDoubleSeconds(absl::Now() - start_));
  }
  prometheus::Histogram* h_;
  grpc::ServerUnaryReactor* reactor_;
  absl::Time start_;
  bool observed_ = false;
};

// Every outcome a submitted trajectory (or a step) can have: exported at 0
// from the start, so that dashboards and rate() alerts see the series.
constexpr const char* kOutcomeNames[] = {
    "unspecified",   "accepted",    "duplicate",
    "too_stale",     "invalid",     "unknown_lease",
    "stale_history", "step_failed", "checkpoint_failed"};

}  // namespace

// Streams one immutable snapshot in chunks; one write in flight, the next in
// OnWriteDone.
class LearnerServiceImpl::FetchReactor final
    : public grpc::ServerWriteReactor<v1::FetchPolicyResponse> {
 public:
  FetchReactor(std::shared_ptr<const Snapshot> snap, size_t chunk,
               prometheus::Histogram* latency)
      : snap_(std::move(snap)),
        chunk_(chunk),
        latency_(latency),
        start_(absl::Now()) {
    v1::PolicyHeader* h = msg_.mutable_header();
    h->set_policy_version(snap_->version);
    h->set_format("safetensors");
    h->set_total_bytes(snap_->bytes.size());
    h->set_num_chunks(
        static_cast<uint32_t>((snap_->bytes.size() + chunk_ - 1) / chunk_));
    h->set_sha256_hex(snap_->sha256_hex);
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Done(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    if (offset_ >= snap_->bytes.size()) {
      Done(grpc::Status::OK);
      return;
    }
    msg_.Clear();
    Next();
  }
  void OnDone() override { delete this; }

 private:
  // Observed before Finish, so that a client that has its answer also finds
  // the call counted.
  void Done(const grpc::Status& s) {
    latency_->Observe(absl::ToDoubleSeconds(absl::Now() - start_));
    Finish(s);
  }
  void Next() {
    const size_t n = std::min(chunk_, snap_->bytes.size() - offset_);
    msg_.set_offset(offset_);
    msg_.set_data(snap_->bytes.data() + offset_, n);
    offset_ += n;
    StartWrite(&msg_);
  }
  std::shared_ptr<const Snapshot> snap_;
  size_t chunk_;
  size_t offset_ = 0;
  prometheus::Histogram* latency_;
  absl::Time start_;
  v1::FetchPolicyResponse msg_;
};

absl::StatusOr<std::unique_ptr<LearnerServiceImpl>> LearnerServiceImpl::Create(
    std::vector<Prompt> prompts, model::LanguageModel* student,
    PolicyTrainer* trainer, std::shared_ptr<net::CallGate> gate,
    prometheus::Registry* registry, LearnerOptions options,
    StepObserver observer, const v1::LearnerCheckpoint* resume) {
  if (prompts.empty())
    return absl::InvalidArgumentError("the learner needs prompts");
  if (options.prompts_per_step == 0)
    return absl::InvalidArgumentError("prompts_per_step is 0");
  auto s = std::unique_ptr<LearnerServiceImpl>(new LearnerServiceImpl(
      std::move(prompts), student, trainer, std::move(gate), registry, options,
      std::move(observer)));
  if (resume != nullptr) {
    if (auto st = s->Restore(*resume); !st.ok()) return st;
  }
  if (auto st = s->Publish(); !st.ok()) return st;
  s->update_thread_ = std::thread([p = s.get()] { p->UpdateLoop(); });
  s->waiter_thread_ = std::thread([p = s.get()] { p->WaiterLoop(); });
  return s;
}

LearnerServiceImpl::LearnerServiceImpl(std::vector<Prompt> prompts,
                                       model::LanguageModel* student,
                                       PolicyTrainer* trainer,
                                       std::shared_ptr<net::CallGate> gate,
                                       prometheus::Registry* registry,
                                       LearnerOptions options,
                                       StepObserver observer)
    : prompts_(std::move(prompts)),
      student_(student),
      trainer_(trainer),
      gate_(std::move(gate)),
      options_(options),
      observer_(std::move(observer)),
      leases_(prompts_.size(), options.lease) {
  outcomes_ = &prometheus::BuildCounter()
                   .Name("cmdistill_learner_trajectories_total")
                   .Help("Submitted trajectories by outcome")
                   .Register(*registry);
  for (size_t i = 1; i < std::size(kOutcomeNames); ++i)  // not "unspecified"
    outcomes_->Add({{"outcome", kOutcomeNames[i]}});
  auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge()
                .Name(name)
                .Help(help)
                .Register(*registry)
                .Add({});
  };
  version_gauge_ =
      gauge("cmdistill_learner_policy_version", "Newest policy version");
  step_gauge_ = gauge("cmdistill_learner_step", "Update steps done");
  buffer_gauge_ =
      gauge("cmdistill_learner_buffer_trajectories", "Trajectories buffered");
  leases_gauge_ = gauge("cmdistill_learner_outstanding_leases",
                        "Prompt leases outstanding");
  live_actors_gauge_ =
      gauge("cmdistill_learner_live_actors",
            "Actors that asked for prompts within the lease duration");
  satisfaction_gauge_ =
      gauge("cmdistill_learner_constraint_satisfaction_ratio",
            "Share of the last step's trajectories within the budget");
  if (options_.has_lambda) {
    lambda_gauge_ = gauge("cmdistill_learner_lambda",
                          "Lagrange multiplier (methods that have one)");
    lambda_gauge_->Set(trainer_->lambda());
  }
  gauge("cmdistill_learner_budget",
        "The per-trajectory cost budget d (as normalised in the run file)")
      ->Set(options_.budget);
  reward_gauge_ = gauge("cmdistill_learner_task_reward",
                        "Mean task reward of the last step");
  kl_gauge_ =
      gauge("cmdistill_learner_token_kl", "Mean per-token KL of the last step");
  loss_gauge_ = gauge("cmdistill_learner_loss", "Loss of the last step");
  grad_norm_gauge_ = gauge("cmdistill_learner_grad_norm",
                           "Gradient norm of the last step (before clipping)");
  cost_gauge_ = gauge("cmdistill_learner_trajectory_cost",
                      "Mean per-trajectory cost of the last step (compare "
                      "with cmdistill_learner_budget)");
  lag_hist_ = &prometheus::BuildHistogram()
                   .Name("cmdistill_learner_policy_lag")
                   .Help("Policy versions between sampling and submission")
                   .Register(*registry)
                   .Add({}, metrics::LinearBuckets(0, 1, 8));
  step_seconds_ = &prometheus::BuildHistogram()
                       .Name("cmdistill_learner_step_seconds")
                       .Help("Time of one update step")
                       .Register(*registry)
                       .Add({}, metrics::LatencyBuckets());
  auto& rpc = prometheus::BuildHistogram()
                  .Name("cmdistill_learner_rpc_seconds")
                  .Help(
                      "Server-side latency of the learner's RPCs by method "
                      "(WaitForPolicy includes its long-poll, FetchPolicy "
                      "the whole stream)")
                  .Register(*registry);
  auto method = [&](const char* m) {
    return &rpc.Add({{"method", m}}, metrics::LatencyBuckets());
  };
  rpc_ = {method("LeasePrompts"),       method("ReturnLeases"),
          method("SubmitTrajectories"), method("WaitForPolicy"),
          method("FetchPolicy"),        method("GetStatus")};
  tokens_trained_ = &prometheus::BuildCounter()
                         .Name("cmdistill_learner_tokens_trained_total")
                         .Help("Completion tokens trained on")
                         .Register(*registry)
                         .Add({});
  prompts_trained_ =
      &prometheus::BuildCounter()
           .Name("cmdistill_learner_prompts_trained_total")
           .Help(
               "Prompt groups trained, all epochs (restored from the "
               "checkpoint at a resume, like the outcome counts)")
           .Register(*registry)
           .Add({});
  epoch_gauge_ = gauge("cmdistill_learner_epoch", "The epoch being leased");
  epoch_prompts_ = &prometheus::BuildGauge()
                        .Name("cmdistill_learner_epoch_prompts")
                        .Help(
                            "Prompts of the current epoch by state: "
                            "trained, leased, pending")
                        .Register(*registry);
  for (const char* state : {"trained", "leased", "pending"})
    epoch_prompts_->Add({{"state", state}});
}

void LearnerServiceImpl::CountOutcome(const char* name,
                                      const std::string& lease_id) {
  outcomes_->Add({{"outcome", name}}).Increment();
  // In the epoch its lease was issued in; text that names no epoch, or one
  // not begun, counts in the current epoch (after the last epoch the leases
  // point one past it: then the last).
  const uint64_t last = std::max<uint64_t>(leases_.options().epochs, 1) - 1;
  uint64_t epoch = std::min(leases_.epoch(), last);
  if (auto e = LeaseManager::LeaseEpoch(lease_id); e && *e <= epoch) epoch = *e;
  ++epochs_[epoch].trajectories[name];
}

void LearnerServiceImpl::RecordTrained(
    const std::vector<v1::Trajectory>& group) {
  const std::string& lease_id = group[0].lease().lease_id();
  const uint64_t epoch =
      LeaseManager::LeaseEpoch(lease_id).value_or(leases_.epoch());
  EpochLedger& e = epochs_[epoch];
  ++e.trained;
  const uint64_t prompt = group[0].lease().prompt_id();
  if (e.seen.size() < prompts_.size()) e.seen.resize(prompts_.size());
  if (prompt < e.seen.size() && !e.seen[prompt]) {
    e.seen[prompt] = true;
    ++e.unique;
  }
  for (const auto& t : group) seen_ids_.insert(t.trajectory_id());
  prompts_trained_->Increment();
}

// An epoch is finished once the leases have moved past it and none of its
// groups waits in the buffer: its trajectory and lease ids can no longer be
// needed to refuse a duplicate (a late submission for it is refused as an
// unknown lease of a finished epoch), so they are dropped and its ledger
// keeps counts only. This keeps memory and checkpoints flat over many epochs.
void LearnerServiceImpl::PruneFinishedEpochs() {
  uint64_t open = leases_.epoch();
  auto consider = [&](const std::string& lease_id) {
    if (auto e = LeaseManager::LeaseEpoch(lease_id)) open = std::min(open, *e);
  };
  for (const auto& [id, g] : partial_) consider(id);
  for (const auto& g : ready_) consider(g[0].lease().lease_id());
  if (open <= sealed_below_) return;
  sealed_below_ = open;
  auto finished = [&](const std::string& id) {
    const auto e = LeaseManager::LeaseEpoch(id);
    return e.has_value() && *e < open;
  };
  for (auto it = seen_ids_.begin(); it != seen_ids_.end();)
    it = finished(*it) ? seen_ids_.erase(it) : std::next(it);
  for (auto it = lease_prompt_.begin(); it != lease_prompt_.end();)
    it = finished(it->first) ? lease_prompt_.erase(it) : std::next(it);
  for (auto& [epoch, ledger] : epochs_) {
    if (epoch < open) std::vector<bool>().swap(ledger.seen);
  }
}

std::vector<v1::EpochStatus> LearnerServiceImpl::EpochStatusLocked() const {
  std::vector<v1::EpochStatus> out;
  const uint64_t current = leases_.epoch();
  std::map<uint64_t, EpochLedger> all = epochs_;
  if (!leases_.finished()) all[current];  // the open epoch, even if empty
  for (const auto& [epoch, ledger] : all) {
    v1::EpochStatus st;
    st.set_epoch(epoch);
    st.set_trained(ledger.trained);
    st.set_unique(ledger.unique);
    if (epoch == current && !leases_.finished()) {
      const uint64_t leased = leases_.outstanding();
      st.set_leased(leased);
      const uint64_t done = leases_.state().done_this_epoch;
      st.set_pending(prompts_.size() > done + leased
                         ? prompts_.size() - done - leased
                         : 0);
    }
    for (const auto& [name, n] : ledger.trajectories)
      (*st.mutable_trajectories())[name] = n;
    out.push_back(std::move(st));
  }
  return out;
}

void LearnerServiceImpl::UpdateEpochGauges() {
  const uint64_t current = leases_.epoch();
  epoch_gauge_->Set(static_cast<double>(current));
  const auto it = epochs_.find(current);
  const uint64_t leased = leases_.outstanding();
  const uint64_t done = leases_.state().done_this_epoch;
  epoch_prompts_->Add({{"state", "trained"}})
      .Set(it == epochs_.end() ? 0.0 : static_cast<double>(it->second.unique));
  epoch_prompts_->Add({{"state", "leased"}}).Set(static_cast<double>(leased));
  epoch_prompts_->Add({{"state", "pending"}})
      .Set(prompts_.size() > done + leased
               ? static_cast<double>(prompts_.size() - done - leased)
               : 0.0);
}

std::vector<v1::EpochStatus> LearnerServiceImpl::epoch_status() const {
  absl::MutexLock lock(&mu_);
  return EpochStatusLocked();
}

size_t LearnerServiceImpl::tracked_ids() const {
  absl::MutexLock lock(&mu_);
  return seen_ids_.size() + lease_prompt_.size();
}

LearnerServiceImpl::~LearnerServiceImpl() { Close(); }

void LearnerServiceImpl::Close() {
  if (closed_.exchange(true)) return;
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
  }
  if (update_thread_.joinable()) update_thread_.join();
  if (waiter_thread_.joinable()) waiter_thread_.join();
}

absl::Status LearnerServiceImpl::Publish(
    const std::function<void()>& with_lock) {
  auto bytes = student_->SerializeWeights();
  if (!bytes.ok()) return bytes.status();
  auto snap = std::make_shared<Snapshot>();
  snap->bytes = *std::move(bytes);
  snap->sha256_hex = Sha256Hex(snap->bytes);
  absl::MutexLock lock(&mu_);
  // The new version and the bookkeeping of the step that made it change
  // together: whoever sees version N also sees step N's accounting.
  if (with_lock) with_lock();
  snap->version = snapshot_ ? version_ + 1 : (resumed_ ? version_ : 0);
  version_ = snap->version;
  snapshot_ = std::move(snap);
  version_gauge_->Set(static_cast<double>(version_));
  return absl::OkStatus();
}

absl::Status LearnerServiceImpl::Restore(const v1::LearnerCheckpoint& c) {
  if (c.num_prompts() != prompts_.size()) {
    return absl::InvalidArgumentError("checkpoint is of another data set");
  }
  TrainerState ts;
  ts.step = c.optimizer_step();
  ts.lagrange = {c.lambda(), c.lambda_integral(), c.lambda_previous_error(),
                 c.lambda_updates()};
  ts.moments.assign(c.optimizer_moments().begin(), c.optimizer_moments().end());
  ts.master_weights.assign(c.optimizer_master_weights().begin(),
                           c.optimizer_master_weights().end());
  if (auto s = trainer_->RestoreState(ts); !s.ok()) return s;
  LeaseState ls;
  ls.epoch = c.epoch();
  ls.cursor = c.cursor();
  ls.next_lease = c.next_lease();
  ls.requeued.assign(c.requeued().begin(), c.requeued().end());
  ls.done_this_epoch = c.done_this_epoch();
  ls.done_total = c.done_total();
  absl::MutexLock lock(&mu_);
  for (const v1::LeaseRecord& r : c.outstanding()) {
    Lease l;
    l.lease_id = r.lease_id();
    l.prompt_id = r.prompt_id();
    l.epoch = r.epoch();
    l.expiry = absl::FromUnixMillis(r.expiry_unix_ms());
    ls.outstanding.push_back(l);
    ls.received[r.lease_id()].assign(r.received().begin(), r.received().end());
    lease_prompt_[r.lease_id()] = r.prompt_id();
  }
  if (auto s = leases_.Restore(ls); !s.ok()) return s;
  buffered_ = 0;
  for (const auto& [id, g] : c.partial()) {
    partial_[id].assign(g.trajectories().begin(), g.trajectories().end());
    buffered_ += static_cast<size_t>(g.trajectories_size());
  }
  for (const auto& g : c.ready()) {
    ready_.emplace_back(g.trajectories().begin(), g.trajectories().end());
    buffered_ += static_cast<size_t>(g.trajectories_size());
  }
  seen_ids_.insert(c.trained_trajectory_ids().begin(),
                   c.trained_trajectory_ids().end());
  for (const v1::EpochLedgerRecord& r : c.epochs()) {
    EpochLedger& e = epochs_[r.epoch()];
    e.trained = r.trained();
    e.unique = r.unique();
    if (r.trained_prompts_size() > 0) e.seen.resize(prompts_.size());
    for (uint64_t p : r.trained_prompts())
      if (p < e.seen.size()) e.seen[p] = true;
    for (const auto& [name, n] : r.trajectories()) e.trajectories[name] = n;
  }
  if (c.epochs_size() == 0) {
    // Format 1: one list of every trained prompt; epochs trained in order,
    // so the k-th run of num_prompts groups is epoch k.
    for (size_t i = 0; i < static_cast<size_t>(c.trained_prompts_size()); ++i) {
      EpochLedger& e = epochs_[i / prompts_.size()];
      const uint64_t p = c.trained_prompts(static_cast<int>(i));
      ++e.trained;
      if (e.seen.size() < prompts_.size()) e.seen.resize(prompts_.size());
      if (p < e.seen.size() && !e.seen[p]) {
        e.seen[p] = true;
        ++e.unique;
      }
    }
  }
  // Counters continue from the checkpoint instead of restarting at 0.
  std::map<std::string, uint64_t> totals;
  uint64_t trained_total = 0;
  for (const auto& [epoch, e] : epochs_) {
    trained_total += e.trained;
    for (const auto& [name, n] : e.trajectories) totals[name] += n;
  }
  for (const auto& [name, n] : totals)
    outcomes_->Add({{"outcome", name}}).Increment(static_cast<double>(n));
  prompts_trained_->Increment(static_cast<double>(trained_total));
  PruneFinishedEpochs();
  step_ = c.step();
  version_ = c.policy_version();
  resumed_ = true;
  return absl::OkStatus();
}

v1::LearnerCheckpoint LearnerServiceImpl::CaptureState() const {
  v1::LearnerCheckpoint c;
  const TrainerState ts = trainer_->SaveState();
  c.set_optimizer_step(ts.step);
  for (const std::string& m : ts.moments) c.add_optimizer_moments(m);
  for (const std::string& m : ts.master_weights)
    c.add_optimizer_master_weights(m);
  c.set_lambda(ts.lagrange.lambda);
  c.set_lambda_integral(ts.lagrange.integral);
  c.set_lambda_previous_error(ts.lagrange.previous_error);
  c.set_lambda_updates(ts.lagrange.updates);
  absl::MutexLock lock(&mu_);
  c.set_num_prompts(prompts_.size());
  c.set_step(step_);
  c.set_policy_version(version_);
  const LeaseState& ls = leases_.state();
  c.set_epoch(ls.epoch);
  c.set_cursor(ls.cursor);
  c.set_next_lease(ls.next_lease);
  for (uint64_t p : ls.requeued) c.add_requeued(p);
  for (const Lease& l : ls.outstanding) {
    v1::LeaseRecord* r = c.add_outstanding();
    r->set_lease_id(l.lease_id);
    r->set_prompt_id(l.prompt_id);
    r->set_epoch(l.epoch);
    r->set_expiry_unix_ms(absl::ToUnixMillis(l.expiry));
    auto it = ls.received.find(l.lease_id);
    if (it != ls.received.end())
      r->mutable_received()->Add(it->second.begin(), it->second.end());
  }
  c.set_done_this_epoch(ls.done_this_epoch);
  c.set_done_total(ls.done_total);
  for (const auto& [id, g] : partial_) {
    auto& out = (*c.mutable_partial())[id];
    for (const auto& t : g) *out.add_trajectories() = t;
  }
  for (const auto& g : ready_) {
    auto* out = c.add_ready();
    for (const auto& t : g) *out->add_trajectories() = t;
  }
  c.set_format_version(2);
  for (const std::string& id : seen_ids_) c.add_trained_trajectory_ids(id);
  for (const auto& [epoch, e] : epochs_) {
    v1::EpochLedgerRecord* r = c.add_epochs();
    r->set_epoch(epoch);
    r->set_trained(e.trained);
    r->set_unique(e.unique);
    for (size_t p = 0; p < e.seen.size(); ++p)
      if (e.seen[p]) r->add_trained_prompts(p);
    for (const auto& [name, n] : e.trajectories)
      (*r->mutable_trajectories())[name] = n;
  }
  return c;
}

absl::Status LearnerServiceImpl::SaveCheckpoint() {
  if (options_.checkpoint_dir.empty()) return absl::OkStatus();
  return WriteCheckpoint(options_.checkpoint_dir, CaptureState(), *student_,
                         options_.tokenizer_from, options_.keep_checkpoints);
}

uint64_t LearnerServiceImpl::policy_version() const {
  absl::MutexLock lock(&mu_);
  return version_;
}

int64_t LearnerServiceImpl::step() const {
  absl::MutexLock lock(&mu_);
  return step_;
}

void LearnerServiceImpl::WaitUntilFinished() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](LearnerServiceImpl* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
        return s->finished_ || s->closing_;
      },
      this));
}

grpc::ServerUnaryReactor* LearnerServiceImpl::LeasePrompts(
    grpc::CallbackServerContext* ctx, const v1::LeasePromptsRequest* req,
    v1::LeasePromptsResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  TimedFinish timed(rpc_.lease, reactor);
  if (gate_->Reject(ctx, reactor)) return reactor;
  if (req->max_prompts() == 0) {
    timed.Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "max_prompts must be > 0"));
    return reactor;
  }
  absl::MutexLock lock(&mu_);
  if (!req->actor_id().empty()) actor_seen_[req->actor_id()] = absl::Now();
  CountLiveActors(absl::Now());
  if (finished_) {
    timed.Finish(
        grpc::Status(grpc::StatusCode::OUT_OF_RANGE, "training is finished"));
    return reactor;
  }
  if (buffered_ >= options_.buffer_capacity) {
    resp->set_policy_version(version_);  // no new work while the buffer is full
    timed.Finish(grpc::Status::OK);
    return reactor;
  }
  auto leases = leases_.Acquire(
      std::min(req->max_prompts(), options_.max_lease_prompts), absl::Now());
  if (!leases.ok()) {
    timed.Finish(grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                              "training data exhausted"));
    return reactor;
  }
  for (const Lease& l : *leases) {
    const Prompt& p = prompts_[l.prompt_id];
    v1::PromptLease* out = resp->add_leases();
    out->mutable_lease()->set_lease_id(l.lease_id);
    out->mutable_lease()->set_prompt_id(l.prompt_id);
    out->mutable_lease()->set_epoch(l.epoch);
    out->mutable_prompt_ids()->Add(p.ids.begin(), p.ids.end());
    out->set_prompt_text(p.text);
    out->set_gold_answer(p.gold);
    out->set_samples(options_.lease.samples_per_prompt);
    out->set_lease_expiry_unix_ms(absl::ToUnixMillis(l.expiry));
    lease_prompt_[l.lease_id] = l.prompt_id;
  }
  resp->set_policy_version(version_);
  leases_gauge_->Set(static_cast<double>(leases_.outstanding()));
  UpdateEpochGauges();
  timed.Finish(grpc::Status::OK);
  return reactor;
}

void LearnerServiceImpl::CountLiveActors(absl::Time now) {
  for (auto it = actor_seen_.begin(); it != actor_seen_.end();) {
    if (now - it->second > options_.lease.lease_duration) {
      it = actor_seen_.erase(it);
    } else {
      ++it;
    }
  }
  live_actors_gauge_->Set(static_cast<double>(actor_seen_.size()));
}

grpc::ServerUnaryReactor* LearnerServiceImpl::ReturnLeases(
    grpc::CallbackServerContext* ctx, const v1::ReturnLeasesRequest* req,
    v1::ReturnLeasesResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  TimedFinish timed(rpc_.return_leases, reactor);
  if (gate_->Reject(ctx, reactor)) return reactor;
  absl::MutexLock lock(&mu_);
  uint32_t n = 0;
  for (const std::string& id : req->lease_ids()) {
    auto it = partial_.find(id);
    if (it != partial_.end()) {
      buffered_ -= it->second.size();
      partial_.erase(it);
    }
    n += leases_.Return(id) ? 1 : 0;
  }
  resp->set_returned(n);
  leases_gauge_->Set(static_cast<double>(leases_.outstanding()));
  UpdateEpochGauges();
  timed.Finish(grpc::Status::OK);
  return reactor;
}

std::string LearnerServiceImpl::Validate(const v1::Trajectory& t) const {
  return CheckTrajectory(t, student_->config().vocab_size);
}

grpc::ServerUnaryReactor* LearnerServiceImpl::SubmitTrajectories(
    grpc::CallbackServerContext* ctx, const v1::SubmitTrajectoriesRequest* req,
    v1::SubmitTrajectoriesResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  TimedFinish timed(rpc_.submit, reactor);
  if (gate_->Reject(ctx, reactor)) return reactor;
  absl::MutexLock lock(&mu_);
  if (buffered_ + static_cast<size_t>(req->trajectories_size()) >
      options_.buffer_capacity) {
    timed.Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                              "trajectory buffer is full; back off and retry"));
    return reactor;
  }
  const absl::Time now = absl::Now();
  for (const v1::Trajectory& t : req->trajectories()) {
    v1::SubmitOutcome outcome = v1::SUBMIT_OUTCOME_ACCEPTED;
    std::string reason;
    const std::string& lease_id = t.lease().lease_id();
    if (seen_ids_.count(t.trajectory_id())) {
      outcome = v1::SUBMIT_OUTCOME_DUPLICATE;
    } else if (!lease_prompt_.count(lease_id)) {
      outcome = v1::SUBMIT_OUTCOME_UNKNOWN_LEASE;
      if (auto e = LeaseManager::LeaseEpoch(lease_id); e && *e < sealed_below_)
        reason = absl::StrCat("epoch ", *e, " is finished");
    } else if (reason = Validate(t); !reason.empty()) {
      outcome = v1::SUBMIT_OUTCOME_INVALID;
    } else if (const Prompt& p = prompts_[lease_prompt_[lease_id]];
               !std::equal(p.ids.begin(), p.ids.end(), t.prompt_ids().begin(),
                           t.prompt_ids().end())) {
      outcome = v1::SUBMIT_OUTCOME_INVALID;
      reason = "prompt_ids differ from the leased prompt";
    } else if (t.policy_version() + options_.max_policy_lag < version_ ||
               t.policy_version() > version_) {
      outcome = t.policy_version() > version_ ? v1::SUBMIT_OUTCOME_STALE_HISTORY
                                              : v1::SUBMIT_OUTCOME_TOO_STALE;
      if (outcome == v1::SUBMIT_OUTCOME_STALE_HISTORY) {
        reason = absl::StrCat("policy_version ", t.policy_version(),
                              " is newer than the learner's (", version_,
                              "): generated before it restarted from a "
                              "checkpoint");
      }
      if (outcome == v1::SUBMIT_OUTCOME_TOO_STALE) {
        // The group can no longer be trained as a whole: the prompt is leased
        // again.
        auto it = partial_.find(lease_id);
        if (it != partial_.end()) {
          buffered_ -= it->second.size();
          partial_.erase(it);
        }
        leases_.Abandon(lease_id);
      }
    } else {
      switch (leases_.Submit(lease_id, t.sample_index(), now)) {
        case SubmitResult::kDuplicate:
          outcome = v1::SUBMIT_OUTCOME_DUPLICATE;
          break;
        case SubmitResult::kUnknownLease:
          outcome = v1::SUBMIT_OUTCOME_UNKNOWN_LEASE;
          break;
        case SubmitResult::kInvalid:
          outcome = v1::SUBMIT_OUTCOME_INVALID;
          reason = "sample_index outside [0, G)";
          break;
        case SubmitResult::kAccepted:
          partial_[lease_id].push_back(t);
          ++buffered_;
          lag_hist_->Observe(
              static_cast<double>(version_ - t.policy_version()));
          break;
        case SubmitResult::kGroupComplete: {
          std::vector<v1::Trajectory> group = std::move(partial_[lease_id]);
          partial_.erase(lease_id);
          group.push_back(t);
          ++buffered_;
          lag_hist_->Observe(
              static_cast<double>(version_ - t.policy_version()));
          ready_.push_back(std::move(group));
          break;
        }
      }
    }
    CountOutcome(kOutcomeNames[outcome], lease_id);
    resp->add_outcomes(outcome);
    resp->add_reasons(reason);
  }
  resp->set_policy_version(version_);
  buffer_gauge_->Set(static_cast<double>(buffered_));
  leases_gauge_->Set(static_cast<double>(leases_.outstanding()));
  UpdateEpochGauges();
  timed.Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* LearnerServiceImpl::WaitForPolicy(
    grpc::CallbackServerContext* ctx, const v1::WaitForPolicyRequest* req,
    v1::WaitForPolicyResponse* resp) {
  const absl::Time arrived = absl::Now();
  auto* reactor = ctx->DefaultReactor();
  if (gate_->Reject(ctx, reactor)) return reactor;
  absl::MutexLock lock(&mu_);
  if (version_ > req->after_version() || req->max_wait_ms() == 0 || finished_ ||
      closing_) {
    resp->set_policy_version(version_);
    resp->set_size_bytes(snapshot_->bytes.size());
    resp->set_sha256_hex(snapshot_->sha256_hex);
    rpc_.wait->Observe(absl::ToDoubleSeconds(absl::Now() - arrived));
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  const absl::Duration wait =
      std::min(absl::Milliseconds(req->max_wait_ms()), options_.max_long_poll);
  waiters_.push_back(
      {reactor, resp, req->after_version(), arrived + wait, arrived});
  return reactor;
}

grpc::ServerWriteReactor<v1::FetchPolicyResponse>*
LearnerServiceImpl::FetchPolicy(grpc::CallbackServerContext* ctx,
                                const v1::FetchPolicyRequest* req) {
  std::shared_ptr<const Snapshot> snap;
  grpc::Status refusal = gate_->Admit(*ctx);
  if (refusal.ok()) {
    absl::MutexLock lock(&mu_);
    snap = snapshot_;
    if (req->policy_version() != 0 && req->policy_version() != snap->version) {
      refusal = grpc::Status(
          grpc::StatusCode::NOT_FOUND,
          absl::StrCat("policy version ", req->policy_version(),
                       " is not kept; the newest is ", snap->version));
    }
  }
  if (!refusal.ok()) {
    class Refused final
        : public grpc::ServerWriteReactor<v1::FetchPolicyResponse> {
     public:
      explicit Refused(const grpc::Status& s) { Finish(s); }
      void OnDone() override { delete this; }
    };
    return new Refused(refusal);
  }
  return new FetchReactor(std::move(snap), options_.chunk_bytes, rpc_.fetch);
}

grpc::ServerUnaryReactor* LearnerServiceImpl::GetStatus(
    grpc::CallbackServerContext* ctx, const v1::GetStatusRequest*,
    v1::GetStatusResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  TimedFinish timed(rpc_.status, reactor);
  if (gate_->Reject(ctx, reactor)) return reactor;
  absl::MutexLock lock(&mu_);
  resp->set_step(static_cast<uint64_t>(step_));
  resp->set_policy_version(version_);
  resp->set_epoch(leases_.epoch());
  resp->set_buffered_trajectories(static_cast<uint32_t>(buffered_));
  resp->set_outstanding_leases(static_cast<uint32_t>(leases_.outstanding()));
  resp->set_finished(finished_);
  resp->set_lambda(last_.lambda);
  resp->set_constraint_satisfaction_ratio(last_.satisfaction);
  resp->set_num_prompts(prompts_.size());
  for (auto& e : EpochStatusLocked()) *resp->add_epochs() = std::move(e);
  timed.Finish(grpc::Status::OK);
  return reactor;
}

void LearnerServiceImpl::UpdateLoop() {
  for (;;) {
    std::vector<std::vector<v1::Trajectory>> groups;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return closing_ || ready_.size() >= options_.prompts_per_step ||
               (leases_.finished() && !ready_.empty()) ||
               (leases_.finished() && ready_.empty() && partial_.empty());
      };
      if (step_ >=
          options_.max_steps) {  // e.g. resumed from the last checkpoint
        finished_ = true;
        return;
      }
      mu_.Await(absl::Condition(&ready));
      if (closing_) return;
      if (ready_.empty()) {  // data exhausted and everything trained
        finished_ = true;
        return;
      }
      while (!ready_.empty() && groups.size() < options_.prompts_per_step) {
        buffered_ -= ready_.front().size();
        groups.push_back(std::move(ready_.front()));
        ready_.pop_front();
      }
      buffer_gauge_->Set(static_cast<double>(buffered_));
    }
    const absl::Time start = absl::Now();
    auto stats = trainer_->Step(groups);
    step_seconds_->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    if (!stats.ok()) {
      outcomes_->Add({{"outcome", "step_failed"}}).Increment();
      continue;  // a bug or a NaN: the batch is dropped and counted, the run
                 // goes on
    }
    absl::Status published = Publish([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      ++step_;
      last_ = *stats;
      for (const auto& g : groups) RecordTrained(g);
      PruneFinishedEpochs();
      UpdateEpochGauges();
    });
    if (!published.ok()) continue;
    absl::MutexLock lock(&mu_);
    step_gauge_->Set(static_cast<double>(step_));
    satisfaction_gauge_->Set(stats->satisfaction);
    if (lambda_gauge_ != nullptr) lambda_gauge_->Set(stats->lambda);
    reward_gauge_->Set(stats->mean_task_reward);
    kl_gauge_->Set(stats->mean_token_kl);
    loss_gauge_->Set(stats->loss);
    grad_norm_gauge_->Set(stats->grad_norm);
    cost_gauge_->Set(stats->mean_cost);
    tokens_trained_->Increment(static_cast<double>(stats->tokens));
    if (observer_) observer_(*stats, version_);
    const bool checkpoint =
        options_.checkpoint_every > 0 && step_ % options_.checkpoint_every == 0;
    if (step_ >= options_.max_steps) {
      finished_ = true;
      return;
    }
    if (checkpoint) {
      mu_.Unlock();
      if (auto s = SaveCheckpoint(); !s.ok())
        outcomes_->Add({{"outcome", "checkpoint_failed"}}).Increment();
      mu_.Lock();
    }
  }
}

void LearnerServiceImpl::WaiterLoop() {
  for (;;) {
    std::vector<Waiter> due;
    uint64_t version = 0;
    size_t size = 0;
    std::string sha;
    bool stop = false;
    {
      absl::MutexLock lock(&mu_);
      absl::Time next = absl::Now() + absl::Milliseconds(200);
      for (const Waiter& w : waiters_) next = std::min(next, w.until);
      const uint64_t seen = version_;
      auto wake = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return closing_ || finished_ || version_ != seen;
      };
      mu_.AwaitWithDeadline(absl::Condition(&wake), next);
      const absl::Time now = absl::Now();
      version = version_;
      size = snapshot_->bytes.size();
      sha = snapshot_->sha256_hex;
      CountLiveActors(now);  // actors that went quiet drop out
      stop = closing_;
      for (auto it = waiters_.begin(); it != waiters_.end();) {
        if (stop || finished_ || version_ > it->after || it->until <= now) {
          due.push_back(*it);
          it = waiters_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (Waiter& w : due) {
      w.resp->set_policy_version(version);
      w.resp->set_size_bytes(size);
      w.resp->set_sha256_hex(sha);
      rpc_.wait->Observe(absl::ToDoubleSeconds(absl::Now() - w.arrived));
      w.reactor->Finish(grpc::Status::OK);
    }
    if (stop) return;
    {
      // Once training is finished WaitForPolicy answers at once; no one is left
      // to wait.
      absl::MutexLock lock(&mu_);
      if (finished_ && waiters_.empty()) return;
    }
  }
}

}  // namespace cmdistill::learner
