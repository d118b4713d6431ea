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
};

// The metrics of success over a held-out set: final-answer correctness (FAC),
// constraint satisfaction rate (CSR), mean per-token KL and completion length,
// each with its 95% CI. `have_teacher` false leaves csr and kl at n = 0 (the
// student alone is evaluable).
struct SuccessMetrics {
  Estimate correctness, satisfaction, mean_kl, length;
};
SuccessMetrics Summarize(absl::Span<const EvalRecord> records,
                         bool have_teacher);

}  // namespace cmdistill::rl

#endif  // CMDISTILL_COMMON_RL_STATS_H_
