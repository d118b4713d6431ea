// Prompt leases and the exactly-once accounting of the learner (DESIGN.md §6),
// torch-free.
//
// Every prompt of every epoch is, at any time, in exactly one state: pending
// (waiting to be leased), leased (under one outstanding lease with an expiry),
// or done (its group of G trajectories was accepted for training). A lease that
// expires before its group is complete is re-issued under a new lease id; the
// old id becomes unknown, so late submissions for it are refused and nothing is
// trained twice. Trajectory ids are "<lease_id>/<sample_index>".
//
// Not thread-safe: the learner service serialises calls under its own lock.
#ifndef CMDISTILL_SERVICES_LEARNER_LEASE_MANAGER_H_
#define CMDISTILL_SERVICES_LEARNER_LEASE_MANAGER_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace cmdistill::learner {

struct LeaseOptions {
  absl::Duration lease_duration = absl::Seconds(120);
  uint32_t samples_per_prompt = 8;  // G
  uint64_t epochs = 1;
  uint64_t seed = 0;  // order of prompts within each epoch
};

struct Lease {
  std::string lease_id;
  uint64_t prompt_id = 0;
  uint64_t epoch = 0;
  absl::Time expiry;
};

enum class SubmitResult {
  kAccepted,
  kGroupComplete,
  kDuplicate,
  kUnknownLease,
  kInvalid
};

// Everything needed to continue after a restart.
struct LeaseState {
  uint64_t epoch = 0;
  uint64_t cursor = 0;      // next position in the epoch's order
  uint64_t next_lease = 0;  // counter behind lease ids
  std::vector<uint64_t>
      requeued;  // prompts of expired/returned leases, waiting
  std::vector<Lease> outstanding;
  std::map<std::string, std::vector<uint32_t>>
      received;  // lease id -> sample indices
  uint64_t done_this_epoch = 0;
  uint64_t done_total = 0;
};

class LeaseManager {
 public:
  // Lease ids are "e<epoch>-l<counter>-<incarnation>", the incarnation random
  // per LeaseManager: a learner that resumes from an older checkpoint never
  // reissues an id that its lost history handed out.
  LeaseManager(uint64_t num_prompts, LeaseOptions options);

  // Up to `max_prompts` new leases at time `now`; expired leases are re-issued
  // first. Empty when everything left is leased. OUT_OF_RANGE once every epoch
  // is done.
  absl::StatusOr<std::vector<Lease>> Acquire(uint32_t max_prompts,
                                             absl::Time now);

  // Accounts for one trajectory. kGroupComplete when it completes its lease's
  // group (the prompt is then done for this epoch).
  SubmitResult Submit(const std::string& lease_id, uint32_t sample_index,
                      absl::Time now);

  // Gives a lease back (an actor stopping cleanly): its prompt is leased again
  // first. Returns false for an unknown lease.
  bool Return(const std::string& lease_id);

  // Makes a lease's prompt pending again (e.g. one of its samples was too stale
  // to train on).
  void Abandon(const std::string& lease_id);

  // Expired leases whose prompts went back to pending (called by Acquire too).
  int ExpireLeases(absl::Time now);

  bool finished() const;
  uint64_t num_prompts() const { return num_prompts_; }
  uint64_t epoch() const { return state_.epoch; }
  uint64_t done_total() const { return state_.done_total; }
  size_t outstanding() const { return state_.outstanding.size(); }
  const LeaseOptions& options() const { return options_; }

  const LeaseState& state() const { return state_; }
  const std::string& incarnation() const { return incarnation_; }
  // INVALID_ARGUMENT for a state that does not fit this data set.
  absl::Status Restore(const LeaseState& state);

  static std::string TrajectoryId(const std::string& lease_id,
                                  uint32_t sample_index);
  // The epoch a lease id ("e<epoch>-l...") or trajectory id was issued in;
  // nullopt for text of another shape.
  static std::optional<uint64_t> LeaseEpoch(const std::string& id);

 private:
  uint64_t PromptAt(uint64_t epoch, uint64_t position) const;
  Lease* FindLease(const std::string& lease_id);

  uint64_t num_prompts_;
  LeaseOptions options_;
  LeaseState state_;
  std::string incarnation_;  // 8 hex digits, new each construction
  mutable uint64_t order_epoch_ = UINT64_MAX;
  mutable std::vector<uint64_t> order_;
};

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_LEASE_MANAGER_H_
