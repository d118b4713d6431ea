// Held-out evaluation with the metrics of success (DESIGN.md §5): final-answer
// correctness, constraint satisfaction at the configured budget and
// normalisation, mean per-token KL to the teacher, completion length — each
// with a 95% confidence interval. Without a teacher only correctness and
// length are measured (the student alone is evaluable).
//
// Grading and the constraint go through the reward service's Evaluator, so
// evaluation, the reward service and the learner read a trajectory alike.
// Torch-free (models through their facade).
#ifndef CMDISTILL_SERVICES_EVAL_EVALUATION_H_
#define CMDISTILL_SERVICES_EVAL_EVALUATION_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmdistill/v1/config.pb.h"
#include "common/model/language_model.h"
#include "common/rl/stats.h"
#include "common/tasks/dataset.h"
#include "common/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace cmdistill::eval {

struct EvalItem {
  int64_t example = 0;  // index into the evaluated examples
  int sample = 0;
  std::string completion;
  std::string extracted_answer;
  std::string gold;
  rl::EvalRecord record;  // record.checkable: the fields below are set
  std::string style;      // "teacher", "foreign", "other" (reasoning.h)
  bool valid = false;     // a valid scratchpad
  std::string why;        // why not valid
};

struct EvalReport {
  std::string name;  // what was evaluated ("teacher", "student (after)")
  bool have_teacher = false;
  rl::SuccessMetrics metrics;
  std::vector<EvalItem> items;
  double seconds = 0;
};

struct EvalRunOptions {
  // Examples per progress report, and the report itself (done, total).
  std::function<void(int64_t, int64_t)> progress;
};

// Evaluates `student` on `examples` with the run file's data template,
// generation limits, constraint and `eval` section. `teacher` may be null.
// Student and teacher must share a tokenizer (the caller checks fingerprints).
absl::StatusOr<EvalReport> Evaluate(const std::string& name,
                                    model::LanguageModel* student,
                                    model::LanguageModel* teacher,
                                    const tokenizer::Tokenizer& tokenizer,
                                    const std::vector<tasks::Example>& examples,
                                    const v1::RunConfig& config,
                                    const EvalRunOptions& run = {});

// {"value", "low", "high", "n"} (an infinite bound as null).
nlohmann::json EstimateToJson(const rl::Estimate& e);
// {"correctness", "constraint_satisfaction", "mean_token_kl", "length"} and,
// where the reasoning was checkable, "reasoning_success",
// "teacher_style_share" and "foreign_style_share".
nlohmann::json MetricsToJson(const rl::SuccessMetrics& m);
// {"name", "have_teacher", "seconds", "metrics": MetricsToJson, "items": [...]}
// (items left out when `with_items` is false).
nlohmann::json ReportToJson(const EvalReport& report, bool with_items);
// ReportToJson as indented text.
std::string ReportJson(const EvalReport& report, bool with_items);

// One Markdown table, a row per report: FAC, CSR, KL, length, reasoning
// success and the foreign style's share, each "v [lo, hi]" ("—" where not
// measured).
std::string MarkdownTable(const std::vector<EvalReport>& reports,
                          const v1::RunConfig& config);
// Its parts: the header (with the budget) and one row.
std::string MarkdownHeader(const std::string& first_column,
                           const v1::RunConfig& config);
std::string MarkdownRow(const std::string& name, const rl::SuccessMetrics& m);

// The reports as Prometheus text (for <output_dir>/metrics/eval.prom):
// cmdistill_eval_{correctness,constraint_satisfaction}_ratio,
// cmdistill_eval_token_kl, cmdistill_eval_length_tokens and
// cmdistill_eval_problems, labelled model="<name, spaces as _>" and
// estimate="value|low|high"; metrics a report did not measure are left out.
std::string ReportsToPrometheus(const std::vector<EvalReport>& reports);

// "0.412 [0.35, 0.48]" (or "—" when not measured).
std::string FormatEstimate(const rl::Estimate& e, int precision = 3);

}  // namespace cmdistill::eval

#endif  // CMDISTILL_SERVICES_EVAL_EVALUATION_H_
