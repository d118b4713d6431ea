// The multiplier λ of the `lagrangian` method: projected dual ascent,
// optionally with the proportional and derivative terms of a PID controller
// (Stooke et al., 2020). State can be saved and restored exactly (learner
// checkpoints).
//
//   e_k  = mean_cost_k - d
//   I_k  = clip(I_{k-1} + η e_k, 0, λ_max)        (I_0 = λ_init: pure dual
//   ascent when λ_k  = clip(I_k + Kp e_k + Kd max(0, e_k - e_{k-1}), 0, λ_max)
//   Kp = Kd = 0)
#ifndef CMDISTILL_COMMON_RL_LAGRANGE_H_
#define CMDISTILL_COMMON_RL_LAGRANGE_H_

#include <cstdint>

#include "absl/status/statusor.h"

namespace cmdistill::rl {

struct LagrangeOptions {
  double lambda_init = 0.1;
  double lr = 0.01;  // η
  double lambda_max = 100;
  double kp = 0;
  double kd = 0;
};

// What λ constrains: the batch's mean cost against d (the expected-cost
// constraint), or the batch's share of trajectories over the budget against a
// target (a chance constraint: what CSR measures).
enum class LagrangeConstraint { kMeanCost, kViolationRate };

struct LagrangeState {
  double lambda = 0;
  double integral = 0;
  double previous_error = 0;
  int64_t updates = 0;
};

class LagrangeController {
 public:
  explicit LagrangeController(const LagrangeOptions& options);

  // One update from the mean cost of a batch; returns the new λ.
  // INVALID_ARGUMENT (state unchanged) for a non-finite mean cost or budget.
  absl::StatusOr<double> Update(double mean_cost, double budget);
  // One update from a training batch: Update(mean_cost, budget) for
  // kMeanCost, Update(1 - satisfaction, violation_target) for
  // kViolationRate. INVALID_ARGUMENT (state unchanged) for a satisfaction
  // outside [0, 1] or non-finite inputs.
  absl::StatusOr<double> UpdateFromBatch(LagrangeConstraint constraint,
                                         double mean_cost, double satisfaction,
                                         double budget,
                                         double violation_target);

  double lambda() const { return state_.lambda; }
  const LagrangeState& state() const { return state_; }
  // INVALID_ARGUMENT for non-finite or negative values.
  absl::Status Restore(const LagrangeState& state);

 private:
  LagrangeOptions options_;
  LagrangeState state_;
};

}  // namespace cmdistill::rl

#endif  // CMDISTILL_COMMON_RL_LAGRANGE_H_
