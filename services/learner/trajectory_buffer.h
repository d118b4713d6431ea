// The learner's data-side domain, torch- and gRPC-free: prompt leases
// (LeaseManager), submitted trajectories grouped per lease until a group of G
// is complete, duplicate and staleness checks, complete groups ready for a
// step, and the per-epoch exactly-once ledger — plus their checkpoint mapping.
//
// Not thread-safe: the learner service calls it under its own mutex.
#ifndef CMDISTILL_SERVICES_LEARNER_TRAJECTORY_BUFFER_H_
#define CMDISTILL_SERVICES_LEARNER_TRAJECTORY_BUFFER_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cmdistill/v1/checkpoint.pb.h"
#include "cmdistill/v1/learner.pb.h"
#include "services/learner/lease_manager.h"

namespace cmdistill::learner {

struct Prompt {
  std::vector<int32_t> ids;
  std::string text;
  std::string gold;
};

struct BufferOptions {
  LeaseOptions lease;
  size_t capacity = 4096;  // trajectories held (partial + ready groups)
  uint32_t max_policy_lag = 2;
  int64_t vocab_size =
      0;  // of the policy: ids outside are INVALID (0: not checked)
};

// What one submitted trajectory came to.
struct Submitted {
  v1::SubmitOutcome outcome = v1::SUBMIT_OUTCOME_UNSPECIFIED;
  std::string reason;           // "" or one line for the actor
  std::optional<uint64_t> lag;  // policy versions behind, when buffered
};

// The name an outcome is counted under (metrics, ledger): "accepted", ...
const char* OutcomeName(v1::SubmitOutcome o);
// Every outcome name, "unspecified" excluded, plus the step outcomes
// "step_failed" and "checkpoint_failed".
std::vector<std::string> AllOutcomeNames();

class TrajectoryBuffer {
 public:
  // `prompts` must not be empty.
  TrajectoryBuffer(std::vector<Prompt> prompts, BufferOptions options);

  const std::vector<Prompt>& prompts() const { return prompts_; }
  const LeaseManager& leases() const { return leases_; }
  size_t buffered() const { return buffered_; }
  bool full() const { return buffered_ >= options_.capacity; }
  // Whether `n` more trajectories fit.
  bool Fits(size_t n) const { return buffered_ + n <= options_.capacity; }

  // Up to `max_prompts` new leases (OUT_OF_RANGE once the data is exhausted).
  absl::StatusOr<std::vector<Lease>> Acquire(uint32_t max_prompts,
                                             absl::Time now);
  // Gives leases back (their partial groups are dropped); how many were out.
  uint32_t Return(const std::vector<std::string>& lease_ids);
  // One trajectory against the policy's newest version: buffered, completed
  // into a ready group, or refused with a reason. Counted in the ledger.
  Submitted Submit(const v1::Trajectory& t, uint64_t policy_version,
                   absl::Time now);
  // Counts a step-side outcome ("step_failed", ...) in the current epoch.
  void CountOutcome(const std::string& name, const std::string& lease_id);

  // Complete groups waiting for a step.
  size_t ready_groups() const { return ready_.size(); }
  // True once every lease is done and nothing is buffered: training is over.
  bool drained() const {
    return leases_.finished() && ready_.empty() && partial_.empty();
  }
  // Removes and returns up to `n` complete groups, oldest first.
  std::vector<std::vector<v1::Trajectory>> TakeReady(size_t n);
  // Records groups as trained (ledger, duplicate ids) and drops the ids of
  // epochs that can no longer see a duplicate.
  void RecordTrained(const std::vector<std::vector<v1::Trajectory>>& groups);

  // The ledger, one entry per epoch begun (the open one included).
  std::vector<v1::EpochStatus> EpochStatus() const;
  // The open epoch's prompts: trained (distinct), leased, pending.
  struct EpochPrompts {
    uint64_t epoch = 0, trained = 0, leased = 0, pending = 0;
  };
  EpochPrompts CurrentEpoch() const;
  // Totals over every epoch (for counters that continue across restarts).
  std::map<std::string, uint64_t> OutcomeTotals() const;
  uint64_t TrainedTotal() const;
  // Trajectory and lease ids held for duplicate detection.
  size_t tracked_ids() const { return seen_ids_.size() + lease_prompt_.size(); }

  // Checkpoint mapping: leases, buffered groups, trained ids, ledger.
  void Capture(v1::LearnerCheckpoint* c) const;
  // INVALID_ARGUMENT for a checkpoint of another data set.
  absl::Status Restore(const v1::LearnerCheckpoint& c);

 private:
  struct EpochLedger {
    uint64_t trained = 0, unique = 0;
    std::vector<bool> seen;  // distinct prompts while the epoch is open
    std::map<std::string, uint64_t> trajectories;  // by outcome
  };
  v1::SubmitOutcome Check(const v1::Trajectory& t, uint64_t version,
                          std::string* reason);
  Submitted Accept(const v1::Trajectory& t, uint64_t version, absl::Time now);
  void DropPartial(const std::string& lease_id);
  void RecordGroup(const std::vector<v1::Trajectory>& group);
  void PruneFinishedEpochs();
  void RestoreLedger(const v1::LearnerCheckpoint& c);

  std::vector<Prompt> prompts_;
  BufferOptions options_;
  LeaseManager leases_;
  std::map<std::string, std::vector<v1::Trajectory>> partial_;
  std::map<std::string, uint64_t> lease_prompt_;
  std::deque<std::vector<v1::Trajectory>> ready_;
  size_t buffered_ = 0;
  std::set<std::string> seen_ids_;  // trajectory ids of trained groups
  std::map<uint64_t, EpochLedger> epochs_;
  // Epochs below this are finished and trained: their ids are dropped.
  uint64_t sealed_below_ = 0;
};

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_TRAJECTORY_BUFFER_H_
