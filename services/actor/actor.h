// The rollout actor: keeps the newest policy, leases prompts, samples G
// completions per prompt with the KV cache (behaviour log-probabilities and the
// student support recorded), asks the teacher and the reward service, submits
// scored trajectories. Torch-free (the policy behind policy.h).
//
// Every call has a deadline; RESOURCE_EXHAUSTED/UNAVAILABLE are retried with
// backoff inside it, and a round that fails is abandoned (its leases expire and
// are re-issued by the learner), so an actor survives restarts of any peer. The
// policy is swapped only between rounds.
#ifndef CMDISTILL_SERVICES_ACTOR_ACTOR_H_
#define CMDISTILL_SERVICES_ACTOR_ACTOR_H_

#include <grpcpp/channel.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cmdistill/v1/learner.grpc.pb.h"
#include "cmdistill/v1/reward.grpc.pb.h"
#include "cmdistill/v1/teacher.grpc.pb.h"
#include "common/net/client.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "services/actor/policy.h"

namespace cmdistill::actor {

struct ActorOptions {
  std::string actor_id = "actor";
  uint32_t prompts_per_lease = 2;
  model::SamplingOptions sampling;  // seed: the actor's base seed
  // Ask the teacher for scores: the method needs them, or they feed the
  // constraint metrics of a reward-only method.
  bool needs_teacher = true;
  std::string tokenizer_fingerprint;  // checked against the teacher's at start
                                      // ("" = skip)
  net::CallOptions call;
  absl::Duration idle_wait = absl::Milliseconds(500);
  int64_t max_rounds = 0;  // 0 = until the learner says training is finished
  // The learner, having answered before, has not answered for this long
  // (UNAVAILABLE or a deadline on every call since): the run is taken as ended
  // and Run() returns OK. Zero = wait forever.
  absl::Duration learner_horizon = absl::ZeroDuration();
};

class Actor {
 public:
  // `policy` must outlive the actor; `teacher` may be null when !needs_teacher.
  Actor(ActorOptions options, Policy* policy,
        std::shared_ptr<grpc::Channel> learner,
        std::shared_ptr<grpc::Channel> teacher,
        std::shared_ptr<grpc::Channel> reward, prometheus::Registry* registry);

  // Checks the teacher (vocabulary, tokenizer), retrying with capped backoff
  // while it is unreachable, then runs rounds until the learner reports
  // OUT_OF_RANGE (training finished; returns OK), the learner has not answered
  // for `learner_horizon` (the run ended while this actor was away; OK, and
  // learner_gone() is true), `stop` becomes true (OK; the
  // leases of a round cut short are returned), or a non-retryable error
  // (FAILED_PRECONDITION for a tokenizer mismatch, INVALID_ARGUMENT for a
  // refused request). Blocks the calling thread.
  absl::Status Run(const std::atomic<bool>& stop);

  // Fetches and loads the newest policy if it differs from the one held (or
  // always, with `force`: benchmarks). DATA_LOSS when the snapshot fails its
  // size or checksum check (nothing is loaded then).
  absl::Status SyncPolicy(bool force = false);
  uint64_t policy_version() const { return version_; }
  int64_t rounds() const { return rounds_; }
  // Run() ended because the learner stayed away past the horizon.
  bool learner_gone() const { return learner_gone_; }
  // The liveness of Run()'s loop, for /healthz: "" while it has made progress
  // (a phase of a round, a retry, an idle wait) within `stall` before `now`;
  // otherwise why not. A zero `stall` never reports a stall.
  std::string Health(absl::Time now, absl::Duration stall) const;

 private:
  absl::Status CheckTeacher();
  // True (and logged) when the learner has not answered for the horizon; it
  // is asked once more (GetStatus) before the actor gives up on it.
  bool LearnerPastHorizon();
  // One round; OUT_OF_RANGE when training is finished. Its phases: lease
  // prompts (or, with none, wait for a new policy), sample G per prompt,
  // give the leases back when stopping, have the teacher score, have the
  // reward service evaluate, submit.
  absl::Status Round(const std::atomic<bool>& stop);
  absl::Status Lease(v1::LeasePromptsResponse* leases);
  void IdleWait();
  absl::StatusOr<std::vector<v1::Trajectory>> Sample(
      const v1::LeasePromptsResponse& leases);
  void ReturnLeases(const v1::LeasePromptsResponse& leases);
  absl::Status ScoreWithTeacher(std::vector<v1::Trajectory>* trajs);
  // A round's phases (cmdistill_actor_round_phase_seconds{phase}).
  enum Phase {
    kSync,
    kLease,
    kSampling,
    kTeacher,
    kReward,
    kSubmit,
    kIdle,
    kNumPhases
  };
  static constexpr const char* kPhaseName[kNumPhases] = {
      "sync", "lease", "sampling", "teacher", "reward", "submit", "idle"};
  struct RoundTimes {
    double seconds[kNumPhases] = {};
    absl::Time start = absl::Now(), last = start;
    void Lap(Phase p);  // the time since the last lap goes to `p`
  };
  // Observes a completed round's phases and its whole (start to last lap).
  void ObserveRound(const RoundTimes& times);
  absl::Status EvaluateAndSubmit(std::vector<v1::Trajectory>* trajs,
                                 RoundTimes* times);
  enum Rpc {
    kWaitForPolicy,
    kFetchPolicy,
    kLeasePrompts,
    kSubmitTrajectories,
    kReturnLeases,
    kTeacherGetInfo,
    kTeacherScore,
    kRewardEvaluate,
    kNumRpcs
  };
  static constexpr const char* kRpcPeer[kNumRpcs] = {
      "learner", "learner", "learner", "learner",
      "learner", "teacher", "teacher", "reward"};
  static constexpr const char* kRpcName[kNumRpcs] = {
      "WaitForPolicy", "FetchPolicy", "LeasePrompts", "SubmitTrajectories",
      "ReturnLeases",  "GetInfo",     "Score",        "Evaluate"};
  // Counts the outcome and observes the latency since `start`.
  void Count(Rpc rpc, const grpc::Status& s, absl::Time start);
  // `attempt(ClientContext*)` under the actor's retry policy, counted as
  // `rpc` (outcome after retries, latency including them).
  template <typename Attempt>
  grpc::Status Call(Rpc rpc, Attempt&& attempt);

  ActorOptions o_;
  Policy* policy_;
  std::shared_ptr<grpc::Channel> learner_channel_;  // FetchPolicy, raw
  std::unique_ptr<v1::LearnerService::Stub> learner_;
  std::unique_ptr<v1::TeacherService::Stub> teacher_;
  std::unique_ptr<v1::RewardService::Stub> reward_;
  uint64_t version_ = 0;
  bool have_policy_ = false;
  std::string policy_sha256_;  // digest of the policy held
  int64_t rounds_ = 0;
  // The learner's last answer (any code but UNAVAILABLE / DEADLINE_EXCEEDED);
  // none yet: the horizon does not run (a learner that is slow to start is
  // not an ended run).
  std::optional<absl::Time> learner_seen_;
  bool learner_gone_ = false;
  // When Run()'s loop last moved (unix ns): read by Health() on another thread.
  std::atomic<int64_t> progress_ns_{absl::ToUnixNanos(absl::Now())};
  void Progress() { progress_ns_.store(absl::ToUnixNanos(absl::Now())); }
  // Policy snapshots: received into whichever of the two the policy does not
  // hold (it may keep the last one it adopted); reused between versions.
  std::shared_ptr<std::string> receive_buffers_[2];

  prometheus::Family<prometheus::Counter>* rpcs_;
  prometheus::Family<prometheus::Counter>* retries_;
  int attempts_ = 1;  // of the last CallWithRetry, read by Count()
  prometheus::Counter *tokens_, *trajectories_;
  prometheus::Gauge* version_gauge_;
  prometheus::Histogram* latency_[kNumRpcs];
  prometheus::Histogram* phase_seconds_[kNumPhases];
  prometheus::Histogram* round_seconds_;
};

}  // namespace cmdistill::actor

#endif  // CMDISTILL_SERVICES_ACTOR_ACTOR_H_
