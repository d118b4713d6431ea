// `cmdistill experiment` as a library: every method variant trained from the
// same warm start over seeds (each run as `local` runs it), evaluated, and
// the comparison written — runs.csv, results.json, summary.md (mean over
// seeds with a clamped t-interval; each method paired against cmdp on the
// same problems) and, with matplotlib, tradeoff.png and curves.png.
// BuildReport is pure (unit-tested); RunExperiment does the work.
#ifndef CMDISTILL_SERVICES_PIPELINE_EXPERIMENT_H_
#define CMDISTILL_SERVICES_PIPELINE_EXPERIMENT_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "app/eval/evaluation.h"
#include "cmdistill/v1/config.pb.h"
#include "common/process/signals.h"
#include "nlohmann/json.hpp"

namespace cmdistill::workflows {

// A method variant: "METHOD" or "METHOD@KEY=VALUE[@KEY=VALUE...]" (run-file
// overrides for that row only: a λ sweep, an ablation of the penalty).
struct Variant {
  std::string label, method;
  std::vector<std::string> overrides;  // "method=METHOD" first
};
Variant ParseVariant(const std::string& spec);

// One trained and evaluated run.
struct RunRow {
  std::string method;  // the variant's label
  int seed = 0;
  eval::EvalReport report;                  // greedy
  std::optional<eval::EvalReport> sampled;  // sampled, when configured
  std::string curve_csv;
  double train_seconds = 0;
};

struct ExperimentReport {
  std::string runs_csv;    // one line per run
  nlohmann::json results;  // everything, for plots and tools
  std::string summary_md;  // the tables a person reads
};

// The comparison of `rows` (variants in `variants` order) against the
// `reference` evaluations, on `problems` held-out problems, `seeds` seeds per
// variant.
ExperimentReport BuildReport(const v1::RunConfig& resolved,
                             const std::vector<Variant>& variants,
                             const std::vector<eval::EvalReport>& reference,
                             const std::vector<RunRow>& rows, size_t problems,
                             int64_t seeds);

struct ExperimentOptions {
  std::vector<Variant> variants;
  int64_t seeds = 3;
  bool reuse = false;  // keep runs already trained to max_steps
  std::string binary;  // the cmdistill executable (children)
  ShutdownSignal* signals = nullptr;
  // The run file with these extra overrides (the caller's --set and smoke
  // sizes applied): INVALID_ARGUMENT naming a bad one.
  std::function<absl::StatusOr<v1::RunConfig>(const std::vector<std::string>&)>
      load;
};

struct ExperimentResult {
  std::string dir;  // <output_dir>/experiment
  ExperimentReport report;
  bool plotted = false;  // tradeoff.png and curves.png were made
};

// Prepares, evaluates the references, trains and evaluates every variant ×
// seed, writes the report into <output_dir>/experiment/ and plots it.
// CANCELLED when a signal stopped it.
absl::StatusOr<ExperimentResult> RunExperiment(const ExperimentOptions& o,
                                               std::ostream& log);

}  // namespace cmdistill::workflows

#endif  // CMDISTILL_SERVICES_PIPELINE_EXPERIMENT_H_
