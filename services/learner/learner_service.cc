#include "services/learner/learner_service.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/metrics/metrics.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "services/common/policy_wire.h"
#include "services/learner/checkpoints.h"

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

}  // namespace

// Every series the learner exports, registered (at 0) when it starts.
struct LearnerServiceImpl::Metrics {
  Metrics(prometheus::Registry& registry, bool has_lambda);
  prometheus::Gauge& Gauge(const char* name, const char* help);

  prometheus::Registry& r;
  prometheus::Family<prometheus::Counter>* outcomes;
  prometheus::Gauge *version, *step, *buffer, *leases, *live_actors,
      *satisfaction, *reward, *kl, *loss, *grad_norm, *cost, *epoch, *budget;
  // The last step's RL diagnostics (common/rl/diagnostics.h).
  prometheus::Gauge *clip_fraction, *approx_kl, *entropy, *ratio_mean,
      *ratio_max, *advantage_std, *groups_with_signal, *length;
  prometheus::Gauge *style_teacher, *style_foreign, *style_other;
  prometheus::Gauge* lambda = nullptr;  // methods with a λ only
  prometheus::Family<prometheus::Gauge>* epoch_prompts;
  prometheus::Histogram *lag, *step_seconds;
  // cmdistill_learner_rpc_seconds, one per method.
  prometheus::Histogram *lease_rpc, *return_rpc, *submit_rpc, *wait_rpc,
      *fetch_rpc, *status_rpc;
  prometheus::Counter *tokens_trained, *prompts_trained;

  prometheus::Counter& Outcome(const std::string& name) {
    return outcomes->Add({{"outcome", name}});
  }
};

prometheus::Gauge& LearnerServiceImpl::Metrics::Gauge(const char* name,
                                                      const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

LearnerServiceImpl::Metrics::Metrics(prometheus::Registry& registry,
                                     bool has_lambda)
    : r(registry) {
  outcomes = &prometheus::BuildCounter()
                  .Name("cmdistill_learner_trajectories_total")
                  .Help("Submitted trajectories by outcome")
                  .Register(r);
  for (const std::string& name : AllOutcomeNames()) Outcome(name);
  version = &Gauge("cmdistill_learner_policy_version", "Newest policy version");
  step = &Gauge("cmdistill_learner_step", "Update steps done");
  buffer =
      &Gauge("cmdistill_learner_buffer_trajectories", "Trajectories buffered");
  leases = &Gauge("cmdistill_learner_outstanding_leases",
                  "Prompt leases outstanding");
  live_actors = &Gauge("cmdistill_learner_live_actors",
                       "Actors that asked for prompts within the lease "
                       "duration");
  satisfaction = &Gauge("cmdistill_learner_constraint_satisfaction_ratio",
                        "Share of the last step's trajectories within the "
                        "budget");
  if (has_lambda) {
    lambda = &Gauge("cmdistill_learner_lambda",
                    "Lagrange multiplier (methods that have one)");
  }
  reward = &Gauge("cmdistill_learner_task_reward",
                  "Mean task reward of the last step");
  kl = &Gauge("cmdistill_learner_token_kl",
              "Mean per-token KL of the last step");
  loss = &Gauge("cmdistill_learner_loss", "Loss of the last step");
  grad_norm = &Gauge("cmdistill_learner_grad_norm",
                     "Gradient norm of the last step (before clipping)");
  cost = &Gauge("cmdistill_learner_trajectory_cost",
                "Mean per-trajectory cost of the last step (compare with "
                "cmdistill_learner_budget)");
  clip_fraction = &Gauge("cmdistill_learner_clip_fraction_ratio",
                         "Share of the last step's tokens whose PPO ratio "
                         "was clipped");
  approx_kl = &Gauge("cmdistill_learner_approx_kl",
                     "KL(behaviour || current) per token before the last "
                     "update, k3 estimate (nats)");
  entropy = &Gauge("cmdistill_learner_entropy_nats",
                   "Mean -log pi(a_t) of the last step's tokens (sampled "
                   "entropy estimate)");
  auto& ratio = prometheus::BuildGauge()
                    .Name("cmdistill_learner_ratio")
                    .Help(
                        "PPO ratio pi_theta/pi_behaviour over the last "
                        "step's tokens")
                    .Register(r);
  ratio_mean = &ratio.Add({{"stat", "mean"}});
  ratio_max = &ratio.Add({{"stat", "max"}});
  advantage_std = &Gauge("cmdistill_learner_advantage_std",
                         "Standard deviation of the last step's advantages");
  groups_with_signal = &Gauge("cmdistill_learner_groups_with_signal_ratio",
                              "Share of the last step's groups whose "
                              "returns are not all equal");
  length = &Gauge("cmdistill_learner_completion_length_tokens",
                  "Mean completion length of the last step's trajectories");
  auto& style = prometheus::BuildGauge()
                    .Name("cmdistill_learner_style_ratio")
                    .Help(
                        "Share of the last step's answers per style (embedded "
                        "synthetic task only; 0 elsewhere)")
                    .Register(r);
  style_teacher = &style.Add({{"style", "teacher"}});
  style_foreign = &style.Add({{"style", "foreign"}});
  style_other = &style.Add({{"style", "other"}});
  lag = &prometheus::BuildHistogram()
             .Name("cmdistill_learner_policy_lag")
             .Help("Policy versions between sampling and submission")
             .Register(r)
             .Add({}, metrics::LinearBuckets(0, 1, 8));
  step_seconds = &prometheus::BuildHistogram()
                      .Name("cmdistill_learner_step_seconds")
                      .Help("Time of one update step")
                      .Register(r)
                      .Add({}, metrics::LatencyBuckets());
  auto& rpc = prometheus::BuildHistogram()
                  .Name("cmdistill_learner_rpc_seconds")
                  .Help(
                      "Server-side latency of the learner's RPCs by method "
                      "(WaitForPolicy includes its long-poll, FetchPolicy "
                      "the whole stream)")
                  .Register(r);
  auto method = [&](const char* m) {
    return &rpc.Add({{"method", m}}, metrics::LatencyBuckets());
  };
  lease_rpc = method("LeasePrompts");
  return_rpc = method("ReturnLeases");
  submit_rpc = method("SubmitTrajectories");
  wait_rpc = method("WaitForPolicy");
  fetch_rpc = method("FetchPolicy");
  status_rpc = method("GetStatus");
  tokens_trained = &prometheus::BuildCounter()
                        .Name("cmdistill_learner_tokens_trained_total")
                        .Help("Completion tokens trained on")
                        .Register(r)
                        .Add({});
  prompts_trained =
      &prometheus::BuildCounter()
           .Name("cmdistill_learner_prompts_trained_total")
           .Help(
               "Prompt groups trained, all epochs (restored from the "
               "checkpoint at a resume, like the outcome counts)")
           .Register(r)
           .Add({});
  epoch = &Gauge("cmdistill_learner_epoch", "The epoch being leased");
  epoch_prompts = &prometheus::BuildGauge()
                       .Name("cmdistill_learner_epoch_prompts")
                       .Help(
                           "Prompts of the current epoch by state: "
                           "trained, leased, pending")
                       .Register(r);
  for (const char* state : {"trained", "leased", "pending"})
    epoch_prompts->Add({{"state", state}});
  budget = &Gauge(
      "cmdistill_learner_budget",
      "The per-trajectory cost budget d (as normalised in the run file)");
}

// Streams one immutable snapshot in chunks; one write in flight, the next in
// OnWriteDone. Each chunk's data is a slice of the snapshot (no copy); the
// slices hold the snapshot alive until gRPC has sent them.
class LearnerServiceImpl::FetchReactor final
    : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  FetchReactor(std::shared_ptr<const PolicySnapshot> snap, size_t chunk,
               prometheus::Histogram* latency)
      : snap_(std::move(snap)),
        chunk_(chunk),
        latency_(latency),
        start_(absl::Now()) {
    header_.set_policy_version(snap_->version);
    header_.set_format("safetensors");
    header_.set_total_bytes(snap_->bytes.size());
    header_.set_num_chunks(
        static_cast<uint32_t>((snap_->bytes.size() + chunk_ - 1) / chunk_));
    header_.set_sha256_hex(snap_->sha256_hex);
    header_.set_xxh3_128_hex(snap_->xxh3_hex);
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
    msg_ = policy_wire::EncodeChunk(
        offset_ == 0 ? &header_ : nullptr, offset_,
        std::string_view(snap_->bytes).substr(offset_, n), snap_);
    offset_ += n;
    StartWrite(&msg_);
  }
  std::shared_ptr<const PolicySnapshot> snap_;
  size_t chunk_;
  size_t offset_ = 0;
  prometheus::Histogram* latency_;
  absl::Time start_;
  v1::PolicyHeader header_;
  grpc::ByteBuffer msg_;
};

namespace {

BufferOptions BufferOptionsOf(const LearnerOptions& o, int64_t vocab_size) {
  BufferOptions b;
  b.lease = o.lease;
  b.capacity = o.buffer_capacity;
  b.max_policy_lag = o.max_policy_lag;
  b.vocab_size = vocab_size;
  return b;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LearnerServiceImpl>> LearnerServiceImpl::Create(
    std::vector<Prompt> prompts, Trainer* trainer,
    std::shared_ptr<net::CallGate> gate, prometheus::Registry* registry,
    LearnerOptions options, StepObserver observer,
    const v1::LearnerCheckpoint* resume) {
  if (prompts.empty())
    return absl::InvalidArgumentError("the learner needs prompts");
  if (options.prompts_per_step == 0)
    return absl::InvalidArgumentError("prompts_per_step is 0");
  auto s = std::unique_ptr<LearnerServiceImpl>(
      new LearnerServiceImpl(std::move(prompts), trainer, std::move(gate),
                             registry, options, std::move(observer)));
  if (resume != nullptr) {
    if (auto st = s->Restore(*resume); !st.ok()) return st;
  }
  LearnerServiceImpl* p = s.get();
  s->store_ = std::make_unique<PolicyStore>(
      s->resumed_version_, options.max_long_poll, [p] {
        absl::MutexLock lock(&p->mu_);
        p->CountLiveActors(absl::Now());  // actors that went quiet drop out
      });
  if (auto st = s->Publish(); !st.ok()) return st;
  s->update_thread_ = std::thread([p] { p->UpdateLoop(); });
  return s;
}

LearnerServiceImpl::LearnerServiceImpl(std::vector<Prompt> prompts,
                                       Trainer* trainer,
                                       std::shared_ptr<net::CallGate> gate,
                                       prometheus::Registry* registry,
                                       LearnerOptions options,
                                       StepObserver observer)
    : trainer_(trainer),
      gate_(std::move(gate)),
      options_(options),
      observer_(std::move(observer)),
      m_(std::make_unique<Metrics>(*registry, options.has_lambda)),
      buffer_(std::move(prompts),
              BufferOptionsOf(options, trainer->vocab_size())) {
  if (m_->lambda != nullptr) m_->lambda->Set(trainer_->lambda());
  m_->budget->Set(options_.budget);
}

std::vector<v1::EpochStatus> LearnerServiceImpl::epoch_status() const {
  absl::MutexLock lock(&mu_);
  return buffer_.EpochStatus();
}

size_t LearnerServiceImpl::tracked_ids() const {
  absl::MutexLock lock(&mu_);
  return buffer_.tracked_ids();
}

LearnerServiceImpl::~LearnerServiceImpl() { Close(); }

void LearnerServiceImpl::Close() {
  if (closed_.exchange(true)) return;
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
  }
  if (update_thread_.joinable()) update_thread_.join();
  if (store_) store_->Close();
}

absl::Status LearnerServiceImpl::Publish(
    const std::function<void()>& with_lock) {
  auto bytes = trainer_->SerializeWeights();
  if (!bytes.ok()) return bytes.status();
  // Hashed here, outside mu_ (seconds for a large model).
  auto snap = PolicyStore::Prepare(*std::move(bytes));
  absl::MutexLock lock(&mu_);
  // The new version and the bookkeeping of the step that made it change
  // together: whoever sees version N also sees step N's accounting.
  if (with_lock) with_lock();
  const uint64_t version = store_->Publish(std::move(snap));
  m_->version->Set(static_cast<double>(version));
  return absl::OkStatus();
}

absl::Status LearnerServiceImpl::Restore(const v1::LearnerCheckpoint& c) {
  absl::MutexLock lock(&mu_);
  if (auto s = buffer_.Restore(c); !s.ok()) return s;
  TrainerState ts;
  ts.step = c.optimizer_step();
  ts.lagrange = {c.lambda(), c.lambda_integral(), c.lambda_previous_error(),
                 c.lambda_updates()};
  ts.moments.assign(c.optimizer_moments().begin(), c.optimizer_moments().end());
  ts.master_weights.assign(c.optimizer_master_weights().begin(),
                           c.optimizer_master_weights().end());
  if (auto s = trainer_->RestoreState(ts); !s.ok()) return s;
  // Counters continue from the checkpoint instead of restarting at 0.
  for (const auto& [name, n] : buffer_.OutcomeTotals())
    m_->Outcome(name).Increment(static_cast<double>(n));
  m_->prompts_trained->Increment(static_cast<double>(buffer_.TrainedTotal()));
  step_ = c.step();
  resumed_version_ = c.policy_version();
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
  buffer_.Capture(&c);
  c.set_step(step_);
  c.set_policy_version(store_->version());
  return c;
}

absl::Status LearnerServiceImpl::SaveCheckpoint() {
  if (options_.checkpoint_dir.empty()) return absl::OkStatus();
  return WriteCheckpoint(options_.checkpoint_dir, CaptureState(), *trainer_,
                         options_.tokenizer_from, options_.keep_checkpoints);
}

uint64_t LearnerServiceImpl::policy_version() const {
  return store_->version();
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

void LearnerServiceImpl::UpdateBufferGauges() {
  m_->buffer->Set(static_cast<double>(buffer_.buffered()));
  m_->leases->Set(static_cast<double>(buffer_.leases().outstanding()));
  const TrajectoryBuffer::EpochPrompts e = buffer_.CurrentEpoch();
  m_->epoch->Set(static_cast<double>(e.epoch));
  m_->epoch_prompts->Add({{"state", "trained"}})
      .Set(static_cast<double>(e.trained));
  m_->epoch_prompts->Add({{"state", "leased"}})
      .Set(static_cast<double>(e.leased));
  m_->epoch_prompts->Add({{"state", "pending"}})
      .Set(static_cast<double>(e.pending));
}

grpc::ServerUnaryReactor* LearnerServiceImpl::LeasePrompts(
    grpc::CallbackServerContext* ctx, const v1::LeasePromptsRequest* req,
    v1::LeasePromptsResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  TimedFinish timed(m_->lease_rpc, reactor);
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
  resp->set_policy_version(store_->version());
  if (buffer_.full()) {  // no new work while the buffer is full
    timed.Finish(grpc::Status::OK);
    return reactor;
  }
  auto leases = buffer_.Acquire(
      std::min(req->max_prompts(), options_.max_lease_prompts), absl::Now());
  if (!leases.ok()) {
    timed.Finish(grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                              std::string(leases.status().message())));
    return reactor;
  }
  for (const Lease& l : *leases) {
    const Prompt& p = buffer_.prompts()[l.prompt_id];
    v1::PromptLease* out = resp->add_leases();
    out->mutable_lease()->set_lease_id(l.lease_id);
    out->mutable_lease()->set_prompt_id(l.prompt_id);
    out->mutable_lease()->set_epoch(l.epoch);
    out->mutable_prompt_ids()->Add(p.ids.begin(), p.ids.end());
    out->set_prompt_text(p.text);
    out->set_gold_answer(p.gold);
    out->set_samples(options_.lease.samples_per_prompt);
    out->set_lease_expiry_unix_ms(absl::ToUnixMillis(l.expiry));
  }
  UpdateBufferGauges();
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
  m_->live_actors->Set(static_cast<double>(actor_seen_.size()));
}

grpc::ServerUnaryReactor* LearnerServiceImpl::ReturnLeases(
    grpc::CallbackServerContext* ctx, const v1::ReturnLeasesRequest* req,
    v1::ReturnLeasesResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  TimedFinish timed(m_->return_rpc, reactor);
  if (gate_->Reject(ctx, reactor)) return reactor;
  absl::MutexLock lock(&mu_);
  resp->set_returned(buffer_.Return(std::vector<std::string>(
      req->lease_ids().begin(), req->lease_ids().end())));
  UpdateBufferGauges();
  timed.Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* LearnerServiceImpl::SubmitTrajectories(
    grpc::CallbackServerContext* ctx, const v1::SubmitTrajectoriesRequest* req,
    v1::SubmitTrajectoriesResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  TimedFinish timed(m_->submit_rpc, reactor);
  if (gate_->Reject(ctx, reactor)) return reactor;
  absl::MutexLock lock(&mu_);
  if (!buffer_.Fits(static_cast<size_t>(req->trajectories_size()))) {
    timed.Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                              "trajectory buffer is full; back off and retry"));
    return reactor;
  }
  const absl::Time now = absl::Now();
  const uint64_t version = store_->version();
  for (const v1::Trajectory& t : req->trajectories()) {
    const Submitted r = buffer_.Submit(t, version, now);
    if (r.lag) m_->lag->Observe(static_cast<double>(*r.lag));
    m_->Outcome(OutcomeName(r.outcome)).Increment();
    resp->add_outcomes(r.outcome);
    resp->add_reasons(r.reason);
  }
  resp->set_policy_version(version);
  UpdateBufferGauges();
  timed.Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* LearnerServiceImpl::WaitForPolicy(
    grpc::CallbackServerContext* ctx, const v1::WaitForPolicyRequest* req,
    v1::WaitForPolicyResponse* resp) {
  const absl::Time arrived = absl::Now();
  auto* reactor = ctx->DefaultReactor();
  if (gate_->Reject(ctx, reactor)) return reactor;
  prometheus::Histogram* latency = m_->wait_rpc;
  store_->Wait(req->after_version(), absl::Milliseconds(req->max_wait_ms()),
               [=](const PolicyStore::Answer& a) {
                 resp->set_policy_version(a.version);
                 resp->set_size_bytes(a.size_bytes);
                 resp->set_sha256_hex(a.sha256_hex);
                 latency->Observe(absl::ToDoubleSeconds(absl::Now() - arrived));
                 reactor->Finish(grpc::Status::OK);
               });
  return reactor;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* LearnerServiceImpl::FetchPolicy(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request) {
  std::shared_ptr<const PolicySnapshot> snap;
  grpc::Status refusal = gate_->Admit(*ctx);
  v1::FetchPolicyRequest req;
  if (refusal.ok()) {
    grpc::ByteBuffer copy(*request);  // Deserialize consumes its buffer
    refusal = grpc::SerializationTraits<v1::FetchPolicyRequest>::Deserialize(
        &copy, &req);
    if (!refusal.ok()) {
      refusal = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                             "FetchPolicyRequest does not parse");
    }
  }
  if (refusal.ok()) {
    snap = store_->Newest();
    if (req.policy_version() != 0 && req.policy_version() != snap->version) {
      refusal = grpc::Status(
          grpc::StatusCode::NOT_FOUND,
          absl::StrCat("policy version ", req.policy_version(),
                       " is not kept; the newest is ", snap->version));
    }
  }
  if (!refusal.ok()) {
    class Refused final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
     public:
      explicit Refused(const grpc::Status& s) { Finish(s); }
      void OnDone() override { delete this; }
    };
    return new Refused(refusal);
  }
  return new FetchReactor(std::move(snap), options_.chunk_bytes, m_->fetch_rpc);
}

grpc::ServerUnaryReactor* LearnerServiceImpl::GetStatus(
    grpc::CallbackServerContext* ctx, const v1::GetStatusRequest*,
    v1::GetStatusResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  TimedFinish timed(m_->status_rpc, reactor);
  if (gate_->Reject(ctx, reactor)) return reactor;
  absl::MutexLock lock(&mu_);
  resp->set_step(static_cast<uint64_t>(step_));
  resp->set_policy_version(store_->version());
  resp->set_epoch(buffer_.leases().epoch());
  resp->set_buffered_trajectories(static_cast<uint32_t>(buffer_.buffered()));
  resp->set_outstanding_leases(
      static_cast<uint32_t>(buffer_.leases().outstanding()));
  resp->set_finished(finished_);
  resp->set_lambda(last_.lambda);
  resp->set_constraint_satisfaction_ratio(last_.satisfaction);
  resp->set_num_prompts(buffer_.prompts().size());
  for (auto& e : buffer_.EpochStatus()) *resp->add_epochs() = std::move(e);
  timed.Finish(grpc::Status::OK);
  return reactor;
}

void LearnerServiceImpl::Finished() {
  finished_ = true;
  store_->Finish();
}

// "Finished" is what makes actors exit, so the state it describes is made
// durable first: a learner killed after announcing it but before its final
// checkpoint would resume at an older step with no actor left to train the
// rest, and wait for ever (seen once in the chaos test).
void LearnerServiceImpl::FinishDurably() {
  mu_.Unlock();
  absl::Status saved = SaveCheckpoint();
  if (!saved.ok()) m_->Outcome("checkpoint_failed").Increment();
  mu_.Lock();
  final_checkpoint_ = std::move(saved);
  Finished();
}

absl::Status LearnerServiceImpl::final_checkpoint() const {
  absl::MutexLock lock(&mu_);
  return final_checkpoint_;
}

std::vector<std::vector<v1::Trajectory>> LearnerServiceImpl::NextBatch() {
  absl::MutexLock lock(&mu_);
  if (step_ >= options_.max_steps) {  // e.g. resumed from the last checkpoint
    Finished();
    return {};
  }
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closing_ || buffer_.ready_groups() >= options_.prompts_per_step ||
           (buffer_.leases().finished() && buffer_.ready_groups() > 0) ||
           buffer_.drained();
  };
  mu_.Await(absl::Condition(&ready));
  if (closing_) return {};
  if (buffer_.ready_groups() == 0) {  // data exhausted and everything trained
    FinishDurably();
    return {};
  }
  auto groups = buffer_.TakeReady(options_.prompts_per_step);
  m_->buffer->Set(static_cast<double>(buffer_.buffered()));
  return groups;
}

bool LearnerServiceImpl::FinishStep(
    const std::vector<std::vector<v1::Trajectory>>& groups,
    const StepStats& stats) {
  absl::Status published = Publish([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++step_;
    last_ = stats;
    buffer_.RecordTrained(groups);
    m_->prompts_trained->Increment(static_cast<double>(groups.size()));
    UpdateBufferGauges();
  });
  if (!published.ok()) return true;
  absl::MutexLock lock(&mu_);
  m_->step->Set(static_cast<double>(step_));
  m_->satisfaction->Set(stats.satisfaction);
  if (m_->lambda != nullptr) m_->lambda->Set(stats.lambda);
  m_->reward->Set(stats.mean_task_reward);
  m_->kl->Set(stats.mean_token_kl);
  m_->loss->Set(stats.loss);
  m_->grad_norm->Set(stats.grad_norm);
  m_->cost->Set(stats.mean_cost);
  const rl::StepDiagnostics& d = stats.diagnostics;
  m_->clip_fraction->Set(d.clip_fraction);
  m_->approx_kl->Set(d.approx_kl);
  m_->entropy->Set(d.entropy);
  m_->ratio_mean->Set(d.ratio_mean);
  m_->ratio_max->Set(d.ratio_max);
  m_->advantage_std->Set(d.advantage_std);
  m_->groups_with_signal->Set(d.groups_with_signal);
  m_->length->Set(d.length);
  if (d.teacher_style >= 0) {
    m_->style_teacher->Set(d.teacher_style);
    m_->style_foreign->Set(d.foreign_style);
    m_->style_other->Set(1.0 - d.teacher_style - d.foreign_style);
  }
  m_->tokens_trained->Increment(static_cast<double>(stats.tokens));
  if (observer_) observer_(stats, store_->version());
  if (step_ >= options_.max_steps) {
    FinishDurably();
    return false;
  }
  const bool checkpoint =
      options_.checkpoint_every > 0 && step_ % options_.checkpoint_every == 0;
  if (checkpoint) {
    mu_.Unlock();
    if (auto s = SaveCheckpoint(); !s.ok())
      m_->Outcome("checkpoint_failed").Increment();
    mu_.Lock();
  }
  return true;
}

void LearnerServiceImpl::UpdateLoop() {
  for (;;) {
    const auto groups = NextBatch();
    if (groups.empty()) return;
    const absl::Time start = absl::Now();
    auto stats = trainer_->Step(groups);
    m_->step_seconds->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    if (!stats.ok()) {
      // A bug or a NaN: the batch is dropped and counted, the run goes on.
      m_->Outcome("step_failed").Increment();
      continue;
    }
    if (!FinishStep(groups, *stats)) return;
  }
}

}  // namespace cmdistill::learner
