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

}  // namespace cmdistill::rl

#endif  // CMDISTILL_COMMON_RL_STATS_H_
