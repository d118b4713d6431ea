// The reward/constraint gRPC service (callback API). An Evaluate call is
// checked for size in the reactor, then queued (full: RESOURCE_EXHAUSTED) for a
// small worker pool that evaluates every trajectory with the Evaluator and
// finishes the call. A malformed trajectory fails the whole call with
// INVALID_ARGUMENT naming its index (nothing is partially applied: the service
// is stateless). Metrics: rolling constraint-satisfaction ratio, costs,
// violations, task reward, verifier failures by kind, latency, refusals by
// reason.
#ifndef CMDISTILL_SERVICES_REWARD_REWARD_SERVICE_H_
#define CMDISTILL_SERVICES_REWARD_REWARD_SERVICE_H_

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "cmdistill/v1/reward.grpc.pb.h"
#include "common/net/call_gate.h"
#include "common/queue/bounded_queue.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "services/reward/evaluator.h"

namespace cmdistill::reward {

struct RewardServiceOptions {
  size_t queue_capacity = 256;
  int workers = 2;
  int64_t max_request_trajectories = 1024;
  size_t rolling_window = 1024;
  std::string method_name, normalization_name, estimator_name,
      tokenizer_fingerprint;
};

class RewardServiceImpl final : public v1::RewardService::CallbackService {
 public:
  // `evaluator` must outlive the service.
  RewardServiceImpl(const Evaluator* evaluator,
                    std::shared_ptr<net::CallGate> gate,
                    prometheus::Registry* registry,
                    RewardServiceOptions options);
  ~RewardServiceImpl() override;

  grpc::ServerUnaryReactor* Evaluate(grpc::CallbackServerContext* ctx,
                                     const v1::EvaluateRequest* req,
                                     v1::EvaluateResponse* resp) override;
  grpc::ServerUnaryReactor* GetInfo(grpc::CallbackServerContext* ctx,
                                    const v1::GetRewardInfoRequest* req,
                                    v1::GetRewardInfoResponse* resp) override;

  // Stops taking calls, finishes the queued ones, joins the workers.
  // Idempotent.
  void Close();
  // The satisfaction ratio over the last `rolling_window` trajectories (NaN
  // before any).
  double satisfaction_ratio() const;

 private:
  struct Work {
    grpc::CallbackServerContext* ctx;
    grpc::ServerUnaryReactor* reactor;
    const v1::EvaluateRequest* req;
    v1::EvaluateResponse* resp;
    absl::Time arrived;
  };
  void WorkerLoop();
  void Process(const Work& w);
  void Record(const v1::TrajectoryEvaluation& ev);

  const Evaluator* evaluator_;
  std::shared_ptr<net::CallGate> gate_;
  RewardServiceOptions options_;
  BoundedQueue<Work> queue_;
  std::vector<std::thread> workers_;
  std::atomic<bool> closed_{false};

  mutable absl::Mutex window_mu_;
  std::deque<bool> window_ ABSL_GUARDED_BY(window_mu_);
  int64_t window_satisfied_ ABSL_GUARDED_BY(window_mu_) = 0;

  prometheus::Family<prometheus::Counter>* refused_;
  prometheus::Gauge* satisfaction_;
  prometheus::Gauge* queue_depth_;
  prometheus::Histogram* cost_;
  prometheus::Counter* violations_;
  prometheus::Counter* evaluated_;
  prometheus::Counter* correct_;
  prometheus::Family<prometheus::Counter>* verifier_failures_;
  prometheus::Histogram* latency_;
  prometheus::Counter* shed_;
};

}  // namespace cmdistill::reward

#endif  // CMDISTILL_SERVICES_REWARD_REWARD_SERVICE_H_
