// Every series the learner exports (cmdistill_learner_*), registered at 0
// when it starts: the domain's (outcomes, versions, steps, the buffer, the
// last step's statistics) and the gRPC adapter's latencies. docs/metrics.md
// lists them.
#ifndef CMDISTILL_SERVICES_LEARNER_LEARNER_METRICS_H_
#define CMDISTILL_SERVICES_LEARNER_LEARNER_METRICS_H_

#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "services/learner/trainer.h"

namespace cmdistill::learner {

class TrajectoryBuffer;

class LearnerMetrics {
 public:
  LearnerMetrics(prometheus::Registry& registry, bool has_lambda);

  prometheus::Counter& Outcome(const std::string& name) {
    return outcomes->Add({{"outcome", name}});
  }
  // The last step's statistics (the gauges) and its tokens (the counter).
  void RecordStep(const StepStats& stats, int64_t step);
  // The buffer's, the leases' and the current epoch's gauges.
  void RecordBuffer(const TrajectoryBuffer& buffer);

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
  // cmdistill_learner_step_phase_seconds by phase: wait, update, publish,
  // checkpoint (in that order).
  prometheus::Histogram* phase_seconds[4];
  // cmdistill_learner_rpc_seconds, one per method.
  prometheus::Histogram *lease_rpc, *return_rpc, *submit_rpc, *wait_rpc,
      *fetch_rpc, *status_rpc;
  prometheus::Counter *tokens_trained, *prompts_trained;
  // Checkpoint writes that failed (a full disk, a read-only volume), and when
  // the newest good one was written.
  prometheus::Counter* checkpoint_failures;
  prometheus::Gauge* last_checkpoint;

 private:
  prometheus::Gauge& Gauge(const char* name, const char* help);
};

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_LEARNER_METRICS_H_
