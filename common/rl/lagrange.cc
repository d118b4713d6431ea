#include "common/rl/lagrange.h"

#include <algorithm>
#include <cmath>

namespace cmdistill::rl {

LagrangeController::LagrangeController(const LagrangeOptions& options)
    : options_(options) {
  state_.lambda = std::clamp(options.lambda_init, 0.0, options.lambda_max);
  state_.integral = state_.lambda;
}

absl::StatusOr<double> LagrangeController::Update(double mean_cost,
                                                  double budget) {
  if (!std::isfinite(mean_cost) || !std::isfinite(budget)) {
    return absl::InvalidArgumentError(
        "lambda update needs a finite mean cost and budget");
  }
  const double e = mean_cost - budget;
  state_.integral =
      std::clamp(state_.integral + options_.lr * e, 0.0, options_.lambda_max);
  const double derivative =
      state_.updates > 0 ? std::max(0.0, e - state_.previous_error) : 0.0;
  state_.lambda =
      std::clamp(state_.integral + options_.kp * e + options_.kd * derivative,
                 0.0, options_.lambda_max);
  state_.previous_error = e;
  ++state_.updates;
  return state_.lambda;
}

absl::StatusOr<double> LagrangeController::UpdateFromBatch(
    LagrangeConstraint constraint, double mean_cost, double satisfaction,
    double budget, double violation_target) {
  if (constraint == LagrangeConstraint::kMeanCost)
    return Update(mean_cost, budget);
  if (!(satisfaction >= 0 && satisfaction <= 1)) {
    return absl::InvalidArgumentError(
        "lambda update needs a satisfaction share in [0, 1]");
  }
  return Update(1.0 - satisfaction, violation_target);
}

absl::Status LagrangeController::Restore(const LagrangeState& state) {
  if (!std::isfinite(state.lambda) || !std::isfinite(state.integral) ||
      !std::isfinite(state.previous_error) || state.lambda < 0 ||
      state.integral < 0 || state.updates < 0) {
    return absl::InvalidArgumentError("corrupt lambda controller state");
  }
  state_ = state;
  return absl::OkStatus();
}

}  // namespace cmdistill::rl
