#include "services/learner/trajectory_buffer.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/rl/trajectory_checks.h"
#include "common/status/status_macros.h"
#include "services/learner/lease_manager.h"

namespace cmdistill::learner {
namespace {

// Indexed by v1::SubmitOutcome.
constexpr const char* kOutcomeNames[] = {
    "unspecified", "accepted",      "duplicate",    "too_stale",
    "invalid",     "unknown_lease", "stale_history"};

// The wire contract (rl::ValidateTrajectory), then the learner's own needs:
// the id the lease implies, and a trajectory sampled (behaviour
// log-probabilities) and evaluated (per-token feasibility). "" when trainable.
std::string SubmissionProblem(const v1::Trajectory& t, int64_t vocab_size) {
  rl::TrajectoryContract contract;
  contract.vocab_size = vocab_size;
  if (absl::Status s = rl::ValidateTrajectory(t, contract); !s.ok())
    return std::string(s.message());
  if (t.trajectory_id() !=
      LeaseManager::TrajectoryId(t.lease().lease_id(), t.sample_index())) {
    return "trajectory_id must be <lease_id>/<sample_index>";
  }
  const int T = t.completion_ids_size();
  if (t.behavior_logprobs_size() != T)
    return "behavior_logprobs must have one value per token";
  if (t.evaluation().feasible_size() != T)
    return "evaluation.feasible must have one value per token";
  return "";
}

}  // namespace

const char* OutcomeName(v1::SubmitOutcome o) {
  const auto i = static_cast<size_t>(o);
  return i < std::size(kOutcomeNames) ? kOutcomeNames[i] : "unspecified";
}

std::vector<std::string> AllOutcomeNames() {
  std::vector<std::string> out(std::begin(kOutcomeNames) + 1,
                               std::end(kOutcomeNames));
  out.push_back("step_failed");
  out.push_back("checkpoint_failed");
  return out;
}

TrajectoryBuffer::TrajectoryBuffer(std::vector<Prompt> prompts,
                                   BufferOptions options)
    : prompts_(std::move(prompts)),
      options_(options),
      leases_(prompts_.size(), options.lease) {}

absl::StatusOr<std::vector<Lease>> TrajectoryBuffer::Acquire(
    uint32_t max_prompts, absl::Time now) {
  auto leases = leases_.Acquire(max_prompts, now);
  if (!leases.ok()) return absl::OutOfRangeError("training data exhausted");
  for (const Lease& l : *leases) lease_prompt_[l.lease_id] = l.prompt_id;
  return leases;
}

uint32_t TrajectoryBuffer::Return(const std::vector<std::string>& lease_ids) {
  uint32_t n = 0;
  for (const std::string& id : lease_ids) {
    DropPartial(id);
    n += leases_.Return(id) ? 1 : 0;
  }
  return n;
}

void TrajectoryBuffer::DropPartial(const std::string& lease_id) {
  auto it = partial_.find(lease_id);
  if (it == partial_.end()) return;
  buffered_ -= it->second.size();
  partial_.erase(it);
}

// The checks in order; ACCEPTED when the trajectory may go to the leases.
v1::SubmitOutcome TrajectoryBuffer::Check(const v1::Trajectory& t,
                                          uint64_t version,
                                          std::string* reason) {
  const std::string& lease_id = t.lease().lease_id();
  if (seen_ids_.count(t.trajectory_id())) return v1::SUBMIT_OUTCOME_DUPLICATE;
  const auto leased = lease_prompt_.find(lease_id);
  if (leased == lease_prompt_.end()) {
    if (auto e = LeaseManager::LeaseEpoch(lease_id); e && *e < sealed_below_)
      *reason = absl::StrCat("epoch ", *e, " is finished");
    return v1::SUBMIT_OUTCOME_UNKNOWN_LEASE;
  }
  if (*reason = SubmissionProblem(t, options_.vocab_size); !reason->empty())
    return v1::SUBMIT_OUTCOME_INVALID;
  const Prompt& p = prompts_[leased->second];
  if (!std::equal(p.ids.begin(), p.ids.end(), t.prompt_ids().begin(),
                  t.prompt_ids().end())) {
    *reason = "prompt_ids differ from the leased prompt";
    return v1::SUBMIT_OUTCOME_INVALID;
  }
  if (t.policy_version() > version) {
    *reason = absl::StrCat("policy_version ", t.policy_version(),
                           " is newer than the learner's (", version,
                           "): generated before it restarted from a "
                           "checkpoint");
    return v1::SUBMIT_OUTCOME_STALE_HISTORY;
  }
  if (t.policy_version() + options_.max_policy_lag < version) {
    // The group can no longer be trained as a whole: the prompt is leased
    // again.
    DropPartial(lease_id);
    leases_.Abandon(lease_id);
    return v1::SUBMIT_OUTCOME_TOO_STALE;
  }
  return v1::SUBMIT_OUTCOME_ACCEPTED;
}

Submitted TrajectoryBuffer::Accept(const v1::Trajectory& t, uint64_t version,
                                   absl::Time now) {
  const std::string& lease_id = t.lease().lease_id();
  Submitted r;
  r.outcome = v1::SUBMIT_OUTCOME_ACCEPTED;
  switch (leases_.Submit(lease_id, t.sample_index(), now)) {
    case SubmitResult::kDuplicate:
      r.outcome = v1::SUBMIT_OUTCOME_DUPLICATE;
      return r;
    case SubmitResult::kUnknownLease:
      r.outcome = v1::SUBMIT_OUTCOME_UNKNOWN_LEASE;
      return r;
    case SubmitResult::kInvalid:
      r.outcome = v1::SUBMIT_OUTCOME_INVALID;
      r.reason = "sample_index outside [0, G)";
      return r;
    case SubmitResult::kAccepted:
      partial_[lease_id].push_back(t);
      break;
    case SubmitResult::kGroupComplete: {
      std::vector<v1::Trajectory> group = std::move(partial_[lease_id]);
      partial_.erase(lease_id);
      group.push_back(t);
      ready_.push_back(std::move(group));
      break;
    }
  }
  ++buffered_;
  r.lag = version - t.policy_version();
  return r;
}

Submitted TrajectoryBuffer::Submit(const v1::Trajectory& t,
                                   uint64_t policy_version, absl::Time now) {
  Submitted r;
  r.outcome = Check(t, policy_version, &r.reason);
  if (r.outcome == v1::SUBMIT_OUTCOME_ACCEPTED)
    r = Accept(t, policy_version, now);
  CountOutcome(OutcomeName(r.outcome), t.lease().lease_id());
  return r;
}

// In the epoch its lease was issued in; text that names no epoch, or one not
// begun, counts in the current epoch (after the last epoch the leases point
// one past it: then the last).
void TrajectoryBuffer::CountOutcome(const std::string& name,
                                    const std::string& lease_id) {
  const uint64_t last = std::max<uint64_t>(leases_.options().epochs, 1) - 1;
  uint64_t epoch = std::min(leases_.epoch(), last);
  if (auto e = LeaseManager::LeaseEpoch(lease_id); e && *e <= epoch) epoch = *e;
  ++epochs_[epoch].trajectories[name];
}

std::vector<std::vector<v1::Trajectory>> TrajectoryBuffer::TakeReady(size_t n) {
  std::vector<std::vector<v1::Trajectory>> groups;
  while (!ready_.empty() && groups.size() < n) {
    buffered_ -= ready_.front().size();
    groups.push_back(std::move(ready_.front()));
    ready_.pop_front();
  }
  return groups;
}

void TrajectoryBuffer::RecordTrained(
    const std::vector<std::vector<v1::Trajectory>>& groups) {
  for (const auto& g : groups) RecordGroup(g);
  PruneFinishedEpochs();
}

void TrajectoryBuffer::RecordGroup(const std::vector<v1::Trajectory>& group) {
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
}

// An epoch is finished once the leases have moved past it and none of its
// groups waits in the buffer: its trajectory and lease ids can no longer be
// needed to refuse a duplicate (a late submission for it is refused as an
// unknown lease of a finished epoch), so they are dropped and its ledger
// keeps counts only. This keeps memory and checkpoints flat over many epochs.
void TrajectoryBuffer::PruneFinishedEpochs() {
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

TrajectoryBuffer::EpochPrompts TrajectoryBuffer::CurrentEpoch() const {
  EpochPrompts p;
  p.epoch = leases_.epoch();
  const auto it = epochs_.find(p.epoch);
  p.trained = it == epochs_.end() ? 0 : it->second.unique;
  p.leased = leases_.outstanding();
  const uint64_t done = leases_.state().done_this_epoch;
  p.pending =
      prompts_.size() > done + p.leased ? prompts_.size() - done - p.leased : 0;
  return p;
}

std::vector<v1::EpochStatus> TrajectoryBuffer::EpochStatus() const {
  std::vector<v1::EpochStatus> out;
  std::map<uint64_t, EpochLedger> all = epochs_;
  if (!leases_.finished()) all[leases_.epoch()];  // the open epoch, even empty
  const EpochPrompts open = CurrentEpoch();
  for (const auto& [epoch, ledger] : all) {
    v1::EpochStatus st;
    st.set_epoch(epoch);
    st.set_trained(ledger.trained);
    st.set_unique(ledger.unique);
    if (epoch == open.epoch && !leases_.finished()) {
      st.set_leased(open.leased);
      st.set_pending(open.pending);
    }
    for (const auto& [name, n] : ledger.trajectories)
      (*st.mutable_trajectories())[name] = n;
    out.push_back(std::move(st));
  }
  return out;
}

std::map<std::string, uint64_t> TrajectoryBuffer::OutcomeTotals() const {
  std::map<std::string, uint64_t> totals;
  for (const auto& [epoch, e] : epochs_)
    for (const auto& [name, n] : e.trajectories) totals[name] += n;
  return totals;
}

uint64_t TrajectoryBuffer::TrainedTotal() const {
  uint64_t n = 0;
  for (const auto& [epoch, e] : epochs_) n += e.trained;
  return n;
}

void TrajectoryBuffer::Capture(v1::LearnerCheckpoint* c) const {
  c->set_num_prompts(prompts_.size());
  const LeaseState& ls = leases_.state();
  c->set_epoch(ls.epoch);
  c->set_cursor(ls.cursor);
  c->set_next_lease(ls.next_lease);
  for (uint64_t p : ls.requeued) c->add_requeued(p);
  for (const Lease& l : ls.outstanding) {
    v1::LeaseRecord* r = c->add_outstanding();
    r->set_lease_id(l.lease_id);
    r->set_prompt_id(l.prompt_id);
    r->set_epoch(l.epoch);
    r->set_expiry_unix_ms(absl::ToUnixMillis(l.expiry));
    auto it = ls.received.find(l.lease_id);
    if (it != ls.received.end())
      r->mutable_received()->Add(it->second.begin(), it->second.end());
  }
  c->set_done_this_epoch(ls.done_this_epoch);
  c->set_done_total(ls.done_total);
  for (const auto& [id, g] : partial_) {
    auto& out = (*c->mutable_partial())[id];
    for (const auto& t : g) *out.add_trajectories() = t;
  }
  for (const auto& g : ready_) {
    auto* out = c->add_ready();
    for (const auto& t : g) *out->add_trajectories() = t;
  }
  c->set_format_version(2);
  for (const std::string& id : seen_ids_) c->add_trained_trajectory_ids(id);
  for (const auto& [epoch, e] : epochs_) {
    v1::EpochLedgerRecord* r = c->add_epochs();
    r->set_epoch(epoch);
    r->set_trained(e.trained);
    r->set_unique(e.unique);
    for (size_t p = 0; p < e.seen.size(); ++p)
      if (e.seen[p]) r->add_trained_prompts(p);
    for (const auto& [name, n] : e.trajectories)
      (*r->mutable_trajectories())[name] = n;
  }
}

absl::Status TrajectoryBuffer::Restore(const v1::LearnerCheckpoint& c) {
  if (c.num_prompts() != prompts_.size()) {
    return absl::InvalidArgumentError("checkpoint is of another data set");
  }
  LeaseState ls;
  ls.epoch = c.epoch();
  ls.cursor = c.cursor();
  ls.next_lease = c.next_lease();
  ls.requeued.assign(c.requeued().begin(), c.requeued().end());
  ls.done_this_epoch = c.done_this_epoch();
  ls.done_total = c.done_total();
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
  CMDISTILL_RETURN_IF_ERROR(leases_.Restore(ls));
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
  RestoreLedger(c);
  PruneFinishedEpochs();
  return absl::OkStatus();
}

void TrajectoryBuffer::RestoreLedger(const v1::LearnerCheckpoint& c) {
  for (const v1::EpochLedgerRecord& r : c.epochs()) {
    EpochLedger& e = epochs_[r.epoch()];
    e.trained = r.trained();
    e.unique = r.unique();
    if (r.trained_prompts_size() > 0) e.seen.resize(prompts_.size());
    for (uint64_t p : r.trained_prompts())
      if (p < e.seen.size()) e.seen[p] = true;
    for (const auto& [name, n] : r.trajectories()) e.trajectories[name] = n;
  }
  if (c.epochs_size() > 0) return;
  // Format 1: one list of every trained prompt; epochs trained in order, so
  // the k-th run of num_prompts groups is epoch k.
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

}  // namespace cmdistill::learner
