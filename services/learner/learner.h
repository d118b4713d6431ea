// The learner's domain and its update loop, torch- and gRPC-free: prompt
// leases and submitted trajectories (TrajectoryBuffer), the published policy
// versions and their long-polls (PolicyStore), the update thread (complete
// groups -> Trainer::Step -> new version), checkpoints (checkpoints.h) and the
// durable end of a run. The gRPC adapter (learner_service.h) maps RPCs onto
// it; tests drive it directly (tests/learner/learner_test.cc).
//
// Threads: one update thread trains; the policy store's thread finishes
// long-polls; callers (the RPC handlers) never block on a step. The buffer and
// the step counters are under mu_ (taken before the store's own lock); no
// lock is held while the trainer steps or a checkpoint is written.
#ifndef CMDISTILL_SERVICES_LEARNER_LEARNER_H_
#define CMDISTILL_SERVICES_LEARNER_LEARNER_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cmdistill/v1/checkpoint.pb.h"
#include "cmdistill/v1/learner.pb.h"
#include "prometheus/registry.h"
#include "services/learner/learner_metrics.h"
#include "services/learner/lease_manager.h"
#include "services/learner/policy_store.h"
#include "services/learner/trainer.h"
#include "services/learner/trajectory_buffer.h"

namespace cmdistill::learner {

struct LearnerOptions {
  LeaseOptions lease;
  uint32_t prompts_per_step = 8;
  uint32_t max_policy_lag = 2;
  size_t buffer_capacity =
      4096;  // trajectories held (partial groups + ready groups)
  int64_t max_steps = 100;
  absl::Duration max_long_poll = absl::Seconds(30);
  uint32_t max_lease_prompts = 64;
  size_t chunk_bytes = 1 << 20;
  // Checkpoints (none when checkpoint_dir is empty): every `checkpoint_every`
  // steps (0 = only when SaveCheckpoint is called, e.g. at shutdown), keeping
  // the newest `keep_checkpoints`.
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;
  int keep_checkpoints = 3;
  std::string
      tokenizer_from;  // folder whose tokenizer files go into each checkpoint
  // Exported as gauges: the budget d (a dashboard's target line) and, only for
  // the methods that have one, λ.
  double budget = 0.35;
  bool has_lambda = false;
  // Told of a failed checkpoint write (one line); none = not told.
  std::function<void(const std::string&)> log;
};

// Called after each update (from the update thread): step statistics and the
// new version.
using StepObserver =
    std::function<void(const StepStats& stats, uint64_t policy_version)>;

class Learner {
 public:
  // Restores `resume` when given, publishes version 0 (or the resumed one) and
  // starts the update thread. `trainer` and `registry` must outlive it.
  static absl::StatusOr<std::unique_ptr<Learner>> Create(
      std::vector<Prompt> prompts, Trainer* trainer,
      prometheus::Registry* registry, LearnerOptions options,
      StepObserver observer = {},
      const v1::LearnerCheckpoint* resume = nullptr);
  ~Learner();
  Learner(const Learner&) = delete;
  Learner& operator=(const Learner&) = delete;

  // What the RPCs do, on their messages. Lease: INVALID_ARGUMENT for
  // max_prompts 0, OUT_OF_RANGE once training is finished or the data is
  // exhausted; OK with no leases while the buffer is full.
  absl::Status Lease(const v1::LeasePromptsRequest& req,
                     v1::LeasePromptsResponse* resp);
  void ReturnLeases(const v1::ReturnLeasesRequest& req,
                    v1::ReturnLeasesResponse* resp);
  // RESOURCE_EXHAUSTED (nothing taken) when the batch does not fit the
  // buffer; otherwise one outcome and reason per trajectory.
  absl::Status Submit(const v1::SubmitTrajectoriesRequest& req,
                      v1::SubmitTrajectoriesResponse* resp);
  void Status(v1::GetStatusResponse* resp) const;

  // The published versions: long-polls (WaitForPolicy) and snapshots
  // (FetchPolicy).
  PolicyStore& store() { return *store_; }
  LearnerMetrics& metrics() { return *m_; }
  const LearnerOptions& options() const { return options_; }

  // Blocks until training is finished (max_steps or data exhausted) or Close().
  void WaitUntilFinished();
  // After the finish: whether every actor that asked for work within `window`
  // before it has since been told "finished" (so the learner may stop
  // lingering). The actors' last requests are kept in checkpoints, so a
  // learner resumed at the end waits for those of its previous incarnation.
  // `unheard` (optional) gets the ids still waited for.
  bool EveryRecentActorHeard(absl::Duration window,
                             std::vector<std::string>* unheard = nullptr) const;
  // Whether this incarnation trained any step (false: resumed finished).
  bool trained_here() const;
  // Stops the update thread and the store's; pending long-polls are answered.
  // Idempotent.
  void Close();

  // Writes a checkpoint now (from the update thread between steps, or after
  // Close()).
  absl::Status SaveCheckpoint();
  // Whether the checkpoint written when training finished (before actors
  // were told) succeeded; OK too when it finished on a restored state.
  absl::Status final_checkpoint() const;
  // Everything a checkpoint holds except the weights.
  v1::LearnerCheckpoint CaptureState() const;

  uint64_t policy_version() const;
  int64_t step() const;
  bool finished() const;
  // The exactly-once ledger, one entry per epoch begun (restored from the
  // checkpoint across restarts); what GetStatus reports.
  std::vector<v1::EpochStatus> epoch_status() const;
  // Trajectory ids and lease ids held for duplicate detection: those of
  // unfinished epochs only (flat over a long run).
  size_t tracked_ids() const;

 private:
  // What the update loop does next.
  enum class Next { kStep, kFinish, kFinishDurably, kStop };

  Learner(std::vector<Prompt> prompts, Trainer* trainer,
          prometheus::Registry* registry, LearnerOptions options,
          StepObserver observer);
  absl::Status Restore(const v1::LearnerCheckpoint& c) ABSL_LOCKS_EXCLUDED(mu_);
  // Serialises the weights, then (under mu_) runs `with_lock` and publishes
  // them as the next policy version.
  absl::Status Publish(const std::function<void()>& with_lock = {})
      ABSL_LOCKS_EXCLUDED(mu_);
  void UpdateLoop();
  // Waits for enough complete groups (taken into `groups` for kStep) or for
  // the end of training.
  Next NextBatch(std::vector<std::vector<v1::Trajectory>>* groups)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Publishes a step's result and its bookkeeping: kFinishDurably when it
  // reached max_steps, otherwise kStep (also when the weights could not be
  // serialised: that step is not published and the loop goes on). Sets
  // `checkpoint` when one is due.
  // `stats` gets the publish time.
  Next FinishStep(const std::vector<std::vector<v1::Trajectory>>& groups,
                  StepStats stats, bool* checkpoint) ABSL_LOCKS_EXCLUDED(mu_);
  // Saves a checkpoint (counting a failure) with no lock held.
  absl::Status SaveCheckpointCounted() ABSL_LOCKS_EXCLUDED(mu_);
  // Marks training finished (actors are told); `durably`: after writing the
  // checkpoint of the state it describes.
  void Finish(bool durably) ABSL_LOCKS_EXCLUDED(mu_);
  void CountLiveActors(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Trainer* trainer_;
  LearnerOptions options_;
  StepObserver observer_;
  std::unique_ptr<LearnerMetrics> m_;

  mutable absl::Mutex mu_;
  TrajectoryBuffer buffer_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<PolicyStore> store_;  // set once in Create
  uint64_t resumed_version_ = 0;
  int64_t step_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_checkpoint_ ABSL_GUARDED_BY(mu_);  // Finish(durably)'s
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  StepStats last_ ABSL_GUARDED_BY(mu_);
  // Every actor's last LeasePrompts call (kept in checkpoints; live: within
  // the lease duration), and those told "finished" (OUT_OF_RANGE: finished,
  // or every epoch's prompts done).
  std::map<std::string, absl::Time> actor_last_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> told_finished_ ABSL_GUARDED_BY(mu_);
  absl::Time finished_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  int64_t steps_here_ ABSL_GUARDED_BY(mu_) = 0;

  std::thread update_thread_;
  std::atomic<bool> closed_{false};
};

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_LEARNER_H_
