#include "services/learner/learner.h"

#include <algorithm>
#include <utility>

#include "common/status/status_macros.h"
#include "services/learner/checkpoints.h"

namespace cmdistill::learner {
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

absl::StatusOr<std::unique_ptr<Learner>> Learner::Create(
    std::vector<Prompt> prompts, Trainer* trainer,
    prometheus::Registry* registry, LearnerOptions options,
    StepObserver observer, const v1::LearnerCheckpoint* resume) {
  if (prompts.empty())
    return absl::InvalidArgumentError("the learner needs prompts");
  if (options.prompts_per_step == 0)
    return absl::InvalidArgumentError("prompts_per_step is 0");
  auto l = std::unique_ptr<Learner>(new Learner(
      std::move(prompts), trainer, registry, options, std::move(observer)));
  if (resume != nullptr) CMDISTILL_RETURN_IF_ERROR(l->Restore(*resume));
  Learner* p = l.get();
  l->store_ = std::make_unique<PolicyStore>(
      l->resumed_version_, options.max_long_poll, [p] {
        absl::MutexLock lock(&p->mu_);
        p->CountLiveActors(absl::Now());  // actors that went quiet drop out
      });
  CMDISTILL_RETURN_IF_ERROR(l->Publish());
  l->update_thread_ = std::thread([p] { p->UpdateLoop(); });
  return l;
}

Learner::Learner(std::vector<Prompt> prompts, Trainer* trainer,
                 prometheus::Registry* registry, LearnerOptions options,
                 StepObserver observer)
    : trainer_(trainer),
      options_(options),
      observer_(std::move(observer)),
      m_(std::make_unique<LearnerMetrics>(*registry, options.has_lambda)),
      buffer_(std::move(prompts),
              BufferOptionsOf(options, trainer->vocab_size())) {
  if (m_->lambda != nullptr) m_->lambda->Set(trainer_->lambda());
  m_->budget->Set(options_.budget);
}

Learner::~Learner() { Close(); }

void Learner::Close() {
  if (closed_.exchange(true)) return;
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
  }
  if (update_thread_.joinable()) update_thread_.join();
  if (store_) store_->Close();
}

absl::Status Learner::Restore(const v1::LearnerCheckpoint& c) {
  absl::MutexLock lock(&mu_);
  CMDISTILL_RETURN_IF_ERROR(buffer_.Restore(c));
  CMDISTILL_RETURN_IF_ERROR(trainer_->RestoreState(TrainerStateOf(c)));
  // Counters continue from the checkpoint instead of restarting at 0.
  for (const auto& [name, n] : buffer_.OutcomeTotals())
    m_->Outcome(name).Increment(static_cast<double>(n));
  m_->prompts_trained->Increment(static_cast<double>(buffer_.TrainedTotal()));
  step_ = c.step();
  resumed_version_ = c.policy_version();
  for (const auto& [id, ms] : c.actors_last_seen_unix_ms())
    actor_last_[id] = absl::FromUnixMillis(ms);
  return absl::OkStatus();
}

v1::LearnerCheckpoint Learner::CaptureState() const {
  v1::LearnerCheckpoint c;
  SetTrainerState(trainer_->SaveState(), &c);
  absl::MutexLock lock(&mu_);
  buffer_.Capture(&c);
  c.set_step(step_);
  c.set_policy_version(store_->version());
  for (const auto& [id, seen] : actor_last_)
    (*c.mutable_actors_last_seen_unix_ms())[id] = absl::ToUnixMillis(seen);
  return c;
}

absl::Status Learner::SaveCheckpoint() {
  if (options_.checkpoint_dir.empty()) return absl::OkStatus();
  return WriteCheckpoint(options_.checkpoint_dir, CaptureState(), *trainer_,
                         options_.tokenizer_from, options_.keep_checkpoints);
}

absl::Status Learner::SaveCheckpointCounted() {
  absl::Status s = SaveCheckpoint();
  if (s.ok()) {
    if (!options_.checkpoint_dir.empty())
      m_->last_checkpoint->Set(
          absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
    return s;
  }
  m_->Outcome("checkpoint_failed").Increment();
  m_->checkpoint_failures->Increment();
  if (options_.log) {
    options_.log(
        absl::StrCat("checkpoint failed: ", s.message(),
                     " (training goes on; the newest good checkpoint stays)"));
  }
  return s;
}

absl::Status Learner::Publish(const std::function<void()>& with_lock) {
  CMDISTILL_ASSIGN_OR_RETURN(std::string bytes, trainer_->SerializeWeights());
  // Hashed here, outside mu_ (seconds for a large model).
  auto snap = PolicyStore::Prepare(std::move(bytes));
  absl::MutexLock lock(&mu_);
  // The new version and the bookkeeping of the step that made it change
  // together: whoever sees version N also sees step N's accounting.
  if (with_lock) with_lock();
  const uint64_t version = store_->Publish(std::move(snap));
  m_->version->Set(static_cast<double>(version));
  return absl::OkStatus();
}

// ------------------------------------------------------------ the RPCs' work

absl::Status Learner::Lease(const v1::LeasePromptsRequest& req,
                            v1::LeasePromptsResponse* resp) {
  if (req.max_prompts() == 0)
    return absl::InvalidArgumentError("max_prompts must be > 0");
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();  // after the lock: leases last their time
  if (!req.actor_id().empty()) actor_last_[req.actor_id()] = now;
  CountLiveActors(now);
  if (finished_) {
    told_finished_.insert(req.actor_id());
    return absl::OutOfRangeError("training is finished");
  }
  resp->set_policy_version(store_->version());
  if (buffer_.full()) return absl::OkStatus();  // no new work while full
  auto leases = buffer_.Acquire(
      std::min(req.max_prompts(), options_.max_lease_prompts), now);
  if (!leases.ok()) {  // every epoch's prompts are done: the actor stops too
    told_finished_.insert(req.actor_id());
    return absl::OutOfRangeError(std::string(leases.status().message()));
  }
  for (const learner::Lease& l : *leases) {
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
  m_->RecordBuffer(buffer_);
  return absl::OkStatus();
}

void Learner::CountLiveActors(absl::Time now) {
  // Live: asked within a lease (an actor away longer has lost its leases).
  int live = 0;
  for (const auto& [id, seen] : actor_last_)
    live += now - seen <= options_.lease.lease_duration;
  m_->live_actors->Set(live);
}

void Learner::ReturnLeases(const v1::ReturnLeasesRequest& req,
                           v1::ReturnLeasesResponse* resp) {
  absl::MutexLock lock(&mu_);
  resp->set_returned(buffer_.Return(std::vector<std::string>(
      req.lease_ids().begin(), req.lease_ids().end())));
  m_->RecordBuffer(buffer_);
}

absl::Status Learner::Submit(const v1::SubmitTrajectoriesRequest& req,
                             v1::SubmitTrajectoriesResponse* resp) {
  absl::MutexLock lock(&mu_);
  if (!buffer_.Fits(static_cast<size_t>(req.trajectories_size()))) {
    return absl::ResourceExhaustedError(
        "trajectory buffer is full; back off and retry");
  }
  const absl::Time now = absl::Now();
  const uint64_t version = store_->version();
  for (const v1::Trajectory& t : req.trajectories()) {
    const Submitted r = buffer_.Submit(t, version, now);
    if (r.lag) m_->lag->Observe(static_cast<double>(*r.lag));
    m_->Outcome(OutcomeName(r.outcome)).Increment();
    resp->add_outcomes(r.outcome);
    resp->add_reasons(r.reason);
  }
  resp->set_policy_version(version);
  m_->RecordBuffer(buffer_);
  return absl::OkStatus();
}

void Learner::Status(v1::GetStatusResponse* resp) const {
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
}

// ------------------------------------------------------------ observers

uint64_t Learner::policy_version() const { return store_->version(); }

int64_t Learner::step() const {
  absl::MutexLock lock(&mu_);
  return step_;
}

bool Learner::finished() const {
  absl::MutexLock lock(&mu_);
  return finished_;
}

std::vector<v1::EpochStatus> Learner::epoch_status() const {
  absl::MutexLock lock(&mu_);
  return buffer_.EpochStatus();
}

size_t Learner::tracked_ids() const {
  absl::MutexLock lock(&mu_);
  return buffer_.tracked_ids();
}

absl::Status Learner::final_checkpoint() const {
  absl::MutexLock lock(&mu_);
  return final_checkpoint_;
}

bool Learner::EveryRecentActorHeard(absl::Duration window,
                                    std::vector<std::string>* unheard) const {
  absl::MutexLock lock(&mu_);
  if (!finished_) return false;
  bool all = true;
  for (const auto& [id, seen] : actor_last_) {
    if (seen < finished_at_ - window || told_finished_.count(id)) continue;
    all = false;
    if (unheard != nullptr) unheard->push_back(id);
  }
  return all;
}

bool Learner::trained_here() const {
  absl::MutexLock lock(&mu_);
  return steps_here_ > 0;
}

void Learner::WaitUntilFinished() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](Learner* l) ABSL_EXCLUSIVE_LOCKS_REQUIRED(l->mu_) {
        return l->finished_ || l->closing_;
      },
      this));
}

// ------------------------------------------------------------ the update loop

// "Finished" is what makes actors exit, so the state it describes is made
// durable first: a learner killed after announcing it but before its final
// checkpoint would resume at an older step with no actor left to train the
// rest, and wait for ever (seen once in the chaos test).
void Learner::Finish(bool durably) {
  absl::Status saved;
  if (durably) saved = SaveCheckpointCounted();
  absl::MutexLock lock(&mu_);
  if (durably) final_checkpoint_ = std::move(saved);
  finished_ = true;
  finished_at_ = absl::Now();
  store_->Finish();
}

Learner::Next Learner::NextBatch(
    std::vector<std::vector<v1::Trajectory>>* groups) {
  absl::MutexLock lock(&mu_);
  if (step_ >= options_.max_steps)  // e.g. resumed from the last checkpoint
    return Next::kFinish;
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closing_ || buffer_.ready_groups() >= options_.prompts_per_step ||
           (buffer_.leases().finished() && buffer_.ready_groups() > 0) ||
           buffer_.drained();
  };
  mu_.Await(absl::Condition(&ready));
  if (closing_) return Next::kStop;
  // Data exhausted and everything trained.
  if (buffer_.ready_groups() == 0) return Next::kFinishDurably;
  *groups = buffer_.TakeReady(options_.prompts_per_step);
  m_->buffer->Set(static_cast<double>(buffer_.buffered()));
  return Next::kStep;
}

Learner::Next Learner::FinishStep(
    const std::vector<std::vector<v1::Trajectory>>& groups, StepStats stats,
    bool* checkpoint) {
  const absl::Time publishing = absl::Now();
  absl::Status published = Publish([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++step_;
    ++steps_here_;
    last_ = stats;
    buffer_.RecordTrained(groups);
    m_->prompts_trained->Increment(static_cast<double>(groups.size()));
    m_->RecordBuffer(buffer_);
  });
  if (!published.ok()) return Next::kStep;
  stats.publish_seconds = absl::ToDoubleSeconds(absl::Now() - publishing);
  m_->phase_seconds[0]->Observe(stats.wait_seconds);
  m_->phase_seconds[1]->Observe(stats.update_seconds);
  m_->phase_seconds[2]->Observe(stats.publish_seconds);
  absl::MutexLock lock(&mu_);
  m_->RecordStep(stats, step_);
  if (observer_) observer_(stats, store_->version());
  if (step_ >= options_.max_steps) return Next::kFinishDurably;
  *checkpoint =
      options_.checkpoint_every > 0 && step_ % options_.checkpoint_every == 0;
  return Next::kStep;
}

void Learner::UpdateLoop() {
  double checkpoint_seconds = 0;  // after the last step, for the next one
  for (;;) {
    std::vector<std::vector<v1::Trajectory>> groups;
    const absl::Time waiting = absl::Now();
    Next next = NextBatch(&groups);
    if (next == Next::kStep) {
      const absl::Time start = absl::Now();
      auto stats = trainer_->Step(groups);
      const absl::Time updated = absl::Now();
      m_->step_seconds->Observe(absl::ToDoubleSeconds(updated - start));
      if (!stats.ok()) {
        // A bug or a NaN: the batch is dropped and counted, the run goes on.
        m_->Outcome("step_failed").Increment();
        continue;
      }
      stats->wait_seconds = absl::ToDoubleSeconds(start - waiting);
      stats->checkpoint_seconds = checkpoint_seconds;
      checkpoint_seconds = 0;
      stats->update_seconds = absl::ToDoubleSeconds(updated - start);
      bool checkpoint = false;
      next = FinishStep(groups, *stats, &checkpoint);
      if (checkpoint) {
        const absl::Time saving = absl::Now();
        (void)SaveCheckpointCounted();
        checkpoint_seconds = absl::ToDoubleSeconds(absl::Now() - saving);
        m_->phase_seconds[3]->Observe(checkpoint_seconds);
      }
      if (next == Next::kStep) continue;
    }
    if (next != Next::kStop) Finish(next == Next::kFinishDurably);
    return;
  }
}

}  // namespace cmdistill::learner
