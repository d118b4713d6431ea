// Estimates with 95% confidence intervals for the metrics of success (DESIGN.md
// §5): final- answer correctness and constraint satisfaction (proportions,
// Wilson score interval), mean per-token KL and completion length (means,
// Student-t interval).
#ifndef CMDISTILL_COMMON_RL_STATS_H_
#define CMDISTILL_COMMON_RL_STATS_H_

#include <cstdint>

#include "absl/types/span.h"

namespace cmdistill::rl {

struct Estimate {
  double value = 0;  // the point estimate
  double low = 0;    // 95% interval
  double high = 0;
  int64_t n = 0;
};

// Wilson score interval; n = 0 gives {0, 0, 1}.
Estimate ProportionEstimate(int64_t successes, int64_t n);

// Mean with a t-interval (sample sd, n-1 degrees of freedom). With n = 1 the
// interval is unknown and given as [-inf, inf]; n = 0 gives all zeros.
Estimate MeanEstimate(absl::Span<const double> values);

// MeanEstimate with the interval clamped to [lo, hi] (a mean of proportions
// across a few seeds: the t-interval of df = 2 can reach past [0, 1]).
Estimate ClampedMeanEstimate(absl::Span<const double> values, double lo,
                             double hi);

// A paired difference over the same units (problems): mean of a_i − b_i with
// its t-interval, clamped to [-1, 1] (differences of proportions).
// INVALID_ARGUMENT-free: sizes must match (checked by the caller); n = 0 gives
// zeros.
Estimate PairedDifference(absl::Span<const double> a,
                          absl::Span<const double> b);

// Two-sided 97.5% quantile of Student's t with `df` degrees of freedom (df >=
// 1).
double StudentT975(int64_t df);

// One evaluated completion.
struct EvalRecord {
  bool correct = false;
  bool satisfied = false;  // Σ c_t within d at the configured normalisation
  double mean_token_kl =
      0;               // mean per-token KL of the completion (teacher needed)
  int64_t length = 0;  // completion tokens
  // The held-out problem it answers (-1: unknown). With several samples per
  // problem, the proportions are estimated per problem first (samples of one
  // problem are not independent).
  int64_t problem = -1;
  // Problems that share their arithmetic (the synthetic task's "cell": the
  // same start, operations and operands under other names) are not
  // independent either: when set (>= 0) on every record, intervals are over
  // clusters instead of problems.
  int64_t cluster = -1;
  // Where the reasoning can be checked exactly (the synthetic task,
  // common/tasks/reasoning.h): the answer's style (0 teacher, 1 foreign,
  // 2 other) and whether it is correct with a valid scratchpad in the
  // teacher's style.
  bool checkable = false;
  int style = 2;
  bool reasoning_success = false;
};

// The metrics of success over a held-out set: final-answer correctness (FAC),
// constraint satisfaction rate (CSR), mean per-token KL and completion length,
// each with its 95% CI. `have_teacher` false leaves csr and kl at n = 0 (the
// student alone is evaluable). One record per problem: Wilson intervals over
// records. Several per problem (sampled evaluation): FAC and CSR are the mean
// of the per-problem shares, with a t-interval over problems clamped to
// [0, 1]; n counts records.
//
// Where records are checkable: the reasoning success rate (correct, valid
// scratchpad, teacher's style) and the teacher- and foreign-style shares, over
// the checkable records (n = 0 when none is, e.g. GSM8K).
// Clusters (EvalRecord::cluster) replace problems as the units of the
// intervals when every record has one.
struct SuccessMetrics {
  Estimate correctness, satisfaction, mean_kl, length;
  Estimate reasoning, teacher_style, foreign_style;
};
SuccessMetrics Summarize(absl::Span<const EvalRecord> records,
                         bool have_teacher);

}  // namespace cmdistill::rl

#endif  // CMDISTILL_COMMON_RL_STATS_H_
