// The learner gRPC service: prompt leases, trajectory submission (idempotent,
// per-item outcomes), the update loop (complete groups -> PolicyTrainer step ->
// new policy version), policy announcements (long-poll) and chunked weight
// snapshots. Torch-free (the student and trainer are used through their
// torch-free interfaces).
//
// Threads: gRPC reactors never block; one update thread trains; one waiter
// thread finishes WaitForPolicy long-polls. All shared state is under mu_.
#ifndef CMDISTILL_SERVICES_LEARNER_LEARNER_SERVICE_H_
#define CMDISTILL_SERVICES_LEARNER_LEARNER_SERVICE_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "cmdistill/v1/checkpoint.pb.h"
#include "cmdistill/v1/learner.grpc.pb.h"
#include "common/model/language_model.h"
#include "common/net/call_gate.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "services/learner/lease_manager.h"
#include "services/learner/policy_trainer.h"

namespace cmdistill::learner {

struct Prompt {
  std::vector<int32_t> ids;
  std::string text;
  std::string gold;
};

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

class LearnerServiceImpl final : public v1::LearnerService::CallbackService {
 public:
  // `student` and `trainer` must outlive the service.
  static absl::StatusOr<std::unique_ptr<LearnerServiceImpl>> Create(
      std::vector<Prompt> prompts, model::LanguageModel* student,
      PolicyTrainer* trainer, std::shared_ptr<net::CallGate> gate,
      prometheus::Registry* registry, LearnerOptions options,
      StepObserver observer = {},
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
  grpc::ServerWriteReactor<v1::FetchPolicyResponse>* FetchPolicy(
      grpc::CallbackServerContext* ctx,
      const v1::FetchPolicyRequest* req) override;
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
  struct Snapshot {
    uint64_t version;
    std::string bytes;
    std::string sha256_hex;
  };
  struct Waiter {
    grpc::ServerUnaryReactor* reactor;
    v1::WaitForPolicyResponse* resp;
    uint64_t after;
    absl::Time until;
    absl::Time arrived;
  };
  // RPC latency handles, one per method (cmdistill_learner_rpc_seconds).
  struct RpcLatency {
    prometheus::Histogram *lease, *return_leases, *submit, *wait, *fetch,
        *status;
  };
  class FetchReactor;

  LearnerServiceImpl(std::vector<Prompt> prompts, model::LanguageModel* student,
                     PolicyTrainer* trainer,
                     std::shared_ptr<net::CallGate> gate,
                     prometheus::Registry* registry, LearnerOptions options,
                     StepObserver observer);
  // Serialises the weights, then (under mu_) runs `with_lock` and installs the
  // snapshot as the next policy version.
  absl::Status Publish(const std::function<void()>& with_lock = {})
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Restore(const v1::LearnerCheckpoint& c) ABSL_LOCKS_EXCLUDED(mu_);
  void UpdateLoop();
  void WaiterLoop();
  std::string Validate(const v1::Trajectory& t) const;

  std::vector<Prompt> prompts_;
  model::LanguageModel* student_;
  PolicyTrainer* trainer_;
  std::shared_ptr<net::CallGate> gate_;
  LearnerOptions options_;
  StepObserver observer_;

  mutable absl::Mutex mu_;
  LeaseManager leases_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<v1::Trajectory>> partial_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> lease_prompt_ ABSL_GUARDED_BY(mu_);
  std::deque<std::vector<v1::Trajectory>> ready_ ABSL_GUARDED_BY(mu_);
  size_t buffered_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  bool resumed_ ABSL_GUARDED_BY(mu_) = false;
  int64_t step_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  StepStats last_ ABSL_GUARDED_BY(mu_);
  // Per epoch: groups trained, distinct prompts among them (a bitmap while
  // the epoch is open), trajectories by outcome.
  struct EpochLedger {
    uint64_t trained = 0, unique = 0;
    std::vector<bool> seen;
    std::map<std::string, uint64_t> trajectories;
  };
  std::map<uint64_t, EpochLedger> epochs_ ABSL_GUARDED_BY(mu_);
  // Epochs below this are finished and trained: their ids are dropped.
  uint64_t sealed_below_ ABSL_GUARDED_BY(mu_) = 0;
  void CountOutcome(const char* name, const std::string& lease_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordTrained(const std::vector<v1::Trajectory>& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PruneFinishedEpochs() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateEpochGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<v1::EpochStatus> EpochStatusLocked() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> seen_ids_
      ABSL_GUARDED_BY(mu_);  // trajectory ids of trained groups
  // Actor id -> its last LeasePrompts call; entries older than the lease
  // duration are dropped (such an actor would have lost its leases anyway).
  std::map<std::string, absl::Time> actor_seen_ ABSL_GUARDED_BY(mu_);
  void CountLiveActors(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::thread update_thread_, waiter_thread_;
  std::atomic<bool> closed_{false};

  prometheus::Family<prometheus::Counter>* outcomes_;
  prometheus::Gauge *version_gauge_, *step_gauge_, *buffer_gauge_,
      *leases_gauge_, *satisfaction_gauge_, *reward_gauge_, *kl_gauge_,
      *loss_gauge_ = nullptr, *grad_norm_gauge_ = nullptr,
      *cost_gauge_ = nullptr, *live_actors_gauge_;
  prometheus::Gauge* lambda_gauge_ = nullptr;  // methods with a λ only
  prometheus::Histogram *lag_hist_, *step_seconds_;
  RpcLatency rpc_;
  prometheus::Counter* tokens_trained_;
  prometheus::Counter* prompts_trained_;
  prometheus::Gauge* epoch_gauge_;
  prometheus::Family<prometheus::Gauge>* epoch_prompts_;
};

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_LEARNER_SERVICE_H_
