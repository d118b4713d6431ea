// The learner gRPC service: the adapter between the learner's RPCs and its
// domain — prompt leases and submitted trajectories (TrajectoryBuffer),
// published policy versions and long-polls (PolicyStore), the update loop
// (complete groups -> Trainer::Step -> new version), checkpoints
// (checkpoints.h) — plus the learner's metrics. Torch-free: the policy is
// reached through the Trainer interface (trainer.h).
//
// Threads: gRPC reactors never block; one update thread trains; the policy
// store's thread finishes long-polls. The buffer and the step counters are
// under mu_ (taken before the store's own lock).
#ifndef CMDISTILL_SERVICES_LEARNER_LEARNER_SERVICE_H_
#define CMDISTILL_SERVICES_LEARNER_LEARNER_SERVICE_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "cmdistill/v1/checkpoint.pb.h"
#include "cmdistill/v1/learner.grpc.pb.h"
#include "common/net/call_gate.h"
#include "prometheus/registry.h"
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
};

// Called after each update (from the update thread): step statistics and the
// new version.
using StepObserver =
    std::function<void(const StepStats&, uint64_t policy_version)>;

// FetchPolicy is served raw (ByteBuffers) so that chunks alias the snapshot
// instead of being copied into protobuf messages (services/common/policy_wire).
class LearnerServiceImpl final
    : public v1::LearnerService::WithRawCallbackMethod_FetchPolicy<
          v1::LearnerService::CallbackService> {
 public:
  // `trainer` must outlive the service.
  static absl::StatusOr<std::unique_ptr<LearnerServiceImpl>> Create(
      std::vector<Prompt> prompts, Trainer* trainer,
      std::shared_ptr<net::CallGate> gate, prometheus::Registry* registry,
      LearnerOptions options, StepObserver observer = {},
      const v1::LearnerCheckpoint* resume = nullptr);
  ~LearnerServiceImpl() override;

  grpc::ServerUnaryReactor* LeasePrompts(
      grpc::CallbackServerContext* ctx, const v1::LeasePromptsRequest* req,
      v1::LeasePromptsResponse* resp) override;
  grpc::ServerUnaryReactor* ReturnLeases(
      grpc::CallbackServerContext* ctx, const v1::ReturnLeasesRequest* req,
      v1::ReturnLeasesResponse* resp) override;
  grpc::ServerUnaryReactor* SubmitTrajectories(
      grpc::CallbackServerContext* ctx,
      const v1::SubmitTrajectoriesRequest* req,
      v1::SubmitTrajectoriesResponse* resp) override;
  grpc::ServerUnaryReactor* WaitForPolicy(
      grpc::CallbackServerContext* ctx, const v1::WaitForPolicyRequest* req,
      v1::WaitForPolicyResponse* resp) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* FetchPolicy(
      grpc::CallbackServerContext* ctx,
      const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx,
                                      const v1::GetStatusRequest* req,
                                      v1::GetStatusResponse* resp) override;

  // Blocks until training is finished (max_steps or data exhausted) or Close().
  void WaitUntilFinished();
  // Stops the update and waiter threads; pending long-polls are answered.
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
  // The exactly-once ledger, one entry per epoch begun (restored from the
  // checkpoint across restarts); what GetStatus reports.
  std::vector<v1::EpochStatus> epoch_status() const;
  // Trajectory ids and lease ids held for duplicate detection: those of
  // unfinished epochs only (flat over a long run).
  size_t tracked_ids() const;

 private:
  struct Metrics;
  class FetchReactor;

  LearnerServiceImpl(std::vector<Prompt> prompts, Trainer* trainer,
                     std::shared_ptr<net::CallGate> gate,
                     prometheus::Registry* registry, LearnerOptions options,
                     StepObserver observer);
  absl::Status Restore(const v1::LearnerCheckpoint& c) ABSL_LOCKS_EXCLUDED(mu_);
  // Serialises the weights, then (under mu_) runs `with_lock` and publishes
  // them as the next policy version.
  absl::Status Publish(const std::function<void()>& with_lock = {})
      ABSL_LOCKS_EXCLUDED(mu_);
  void UpdateLoop();
  // Waits for enough complete groups; empty when training is over.
  std::vector<std::vector<v1::Trajectory>> NextBatch() ABSL_LOCKS_EXCLUDED(mu_);
  // Publishes a step's result and its bookkeeping; false when training ends.
  bool FinishStep(const std::vector<std::vector<v1::Trajectory>>& groups,
                  const StepStats& stats) ABSL_LOCKS_EXCLUDED(mu_);
  void Finished() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the checkpoint, then Finished(): see the definition.
  void FinishDurably() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountLiveActors(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateBufferGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Trainer* trainer_;
  std::shared_ptr<net::CallGate> gate_;
  LearnerOptions options_;
  StepObserver observer_;
  std::unique_ptr<Metrics> m_;

  mutable absl::Mutex mu_;
  TrajectoryBuffer buffer_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<PolicyStore> store_;  // set once in Create
  uint64_t resumed_version_ = 0;
  int64_t step_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_checkpoint_ ABSL_GUARDED_BY(mu_);  // FinishDurably's
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  StepStats last_ ABSL_GUARDED_BY(mu_);
  // Actor id -> its last LeasePrompts call; entries older than the lease
  // duration are dropped (such an actor would have lost its leases anyway).
  std::map<std::string, absl::Time> actor_seen_ ABSL_GUARDED_BY(mu_);

  std::thread update_thread_;
  std::atomic<bool> closed_{false};
};

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_LEARNER_SERVICE_H_
