// `cmdistill local` as a library: the embedded default prepared (or the run
// file's own data and models checked), teacher and student evaluated, the
// four roles run as processes on loopback (app/local/supervisor.h),
// the trained student evaluated and given its model card, the results
// written under <output_dir>/eval and metrics/eval.prom. Optionally a local
// Prometheus scrapes every child (monitor.h).
#ifndef CMDISTILL_SERVICES_PIPELINE_LOCAL_H_
#define CMDISTILL_SERVICES_PIPELINE_LOCAL_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "app/eval/evaluation.h"
#include "app/local/supervisor.h"
#include "cmdistill/v1/config.pb.h"

namespace cmdistill::workflows {

struct LocalOptions {
  bool resume = false;  // continue from the newest checkpoint
  bool monitor = false;
  int monitor_port = 9090;             // 0: a free one
  std::string binary;                  // the cmdistill executable (children)
  std::ostream* status_out = nullptr;  // the live status line, when a TTY
};

struct LocalResult {
  v1::RunConfig config;  // as resolved (paths under output_dir)
  std::vector<eval::EvalReport> reports;  // teacher, before, after
  std::string table;                      // the reports as Markdown
  local::DistillResult run;
  std::string eval_dir;
  size_t problems = 0;
  double seconds = 0;                       // the whole job
  std::string monitor_url, monitor_reopen;  // "" without --monitor
  // eval.final_selection best_validation: the candidates and the choice
  // ("" for last).
  std::string selection, selection_table;
};

// CANCELLED when a signal stopped it (children stopped cleanly).
absl::StatusOr<LocalResult> RunLocal(v1::RunConfig config,
                                     const LocalOptions& options,
                                     std::ostream& log);

// The table, the run's figures and where everything is (what `local`
// prints at the end).
std::string LocalSummary(const LocalResult& r);

}  // namespace cmdistill::workflows

#endif  // CMDISTILL_SERVICES_PIPELINE_LOCAL_H_
