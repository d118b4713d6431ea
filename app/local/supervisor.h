// The `local` supervisor's core: runs one constrained-distillation training as
// separate processes on loopback — teacher and reward services, the learner,
// N actors — with the same binary and flags a cluster deployment uses, and
// watches them: progress from the learner's STEP lines, /metrics scraped to
// files at the end, children stopped in order on Ctrl-C, and a child that dies
// named with its exit status and last lines.
#ifndef CMDISTILL_SERVICES_PIPELINE_SUPERVISOR_H_
#define CMDISTILL_SERVICES_PIPELINE_SUPERVISOR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmdistill/v1/config.pb.h"
#include "common/process/signals.h"
#include "common/rl/diagnostics.h"

namespace cmdistill::local {

// One learner update as the learner reported it.
struct StepRecord {
  int64_t step = 0;
  double reward = 0, satisfaction = 0, cost = 0, kl = 0, lambda = 0, loss = 0;
  int64_t tokens = 0;
  double seconds = 0;  // since training started
  rl::StepDiagnostics diagnostics;
  // The learner's step time broken down (the STEP line's wait, update,
  // publish, checkpoint).
  double wait_s = 0, update_s = 0, publish_s = 0, checkpoint_s = 0;
};

struct DistillResult {
  std::vector<StepRecord> steps;
  std::string final_model;  // <output_dir>/final
  std::string run_file;     // the resolved run file every child read
  std::string logs_dir;     // one log per child
  std::string metrics_dir;  // /metrics of every service at the end
  std::string curve_csv;    // the STEP records as CSV
  double seconds = 0;
};

struct DistillOptions {
  std::string binary;  // the cmdistill executable
  int actors = 2;
  int teachers = 1;
  ShutdownSignal* signals = nullptr;  // Ctrl-C / SIGTERM stop the run
  std::string label = "distill";
  // When set, one line "RUNNING name=pid ..." once every child has started
  // (for scripts and tests that watch the run).
  std::ostream* status_out = nullptr;
  // When set, called from the supervising loop with every running child's
  // /metrics port whenever that set changes (`local --monitor` keeps its
  // Prometheus targets file with it).
  std::function<void(const std::map<std::string, int>&)> on_metrics_targets;
};

// CANCELLED when a signal stopped the run (children stopped cleanly);
// ABORTED naming the child, its exit status and its last lines when one
// failed; the other children are stopped in both cases.
absl::StatusOr<DistillResult> RunDistillation(const v1::RunConfig& config,
                                              const DistillOptions& options,
                                              std::ostream& progress);

}  // namespace cmdistill::local

#endif  // CMDISTILL_SERVICES_PIPELINE_SUPERVISOR_H_
