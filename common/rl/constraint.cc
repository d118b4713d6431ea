#include "common/rl/constraint.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"

namespace cmdistill::rl {
namespace {

// Log-probabilities may exceed 0 by float rounding; more than this is a caller
// bug.
constexpr double kLogProbSlack = 1e-4;

absl::Status CheckLogProbs(absl::Span<const float> v, const char* name) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i]) || v[i] > kLogProbSlack) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, "[", i, "] = ", v[i],
                       " is not a log-probability (finite and <= 0)"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSize(absl::Span<const float> v, size_t expected,
                       const char* name) {
  if (v.size() != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " has ", v.size(), " values, expected ", expected));
  }
  return CheckLogProbs(v, name);
}

}  // namespace

bool UsesBudgetInReward(Method m) {
  return m == Method::kCmdp || m == Method::kSaute || m == Method::kWeakestLink;
}

bool NeedsTeacher(Method m) { return m != Method::kGrpo; }

double LumpedReverseKl(absl::Span<const float> student,
                       absl::Span<const float> teacher,
                       double teacher_tail_logprob, double prob_floor) {
  const double log_floor = std::log(prob_floor);
  double kl = 0, p_support = 0, q_support = 0;
  for (size_t k = 0; k < student.size(); ++k) {
    const double s = std::min<double>(student[k], 0.0);
    const double p = std::exp(s);
    const double log_q =
        std::max<double>(std::min<double>(teacher[k], 0.0), log_floor);
    p_support += p;
    q_support += std::exp(std::min<double>(teacher[k], 0.0));
    kl += p * (s - log_q);
  }
  const double p_tail = 1.0 - p_support;
  // Below ~1e-9 the tail is rounding noise of a full-vocabulary support: it
  // contributes 0.
  if (p_tail > 1e-9) {
    const double q_tail = std::isnan(teacher_tail_logprob)
                              ? 1.0 - q_support
                              : std::exp(teacher_tail_logprob);
    const double log_q_tail = std::log(std::max(q_tail, prob_floor));
    kl += p_tail * (std::log(p_tail) - log_q_tail);
  }
  // The lumped KL is a KL between two distributions on K+1 outcomes: never
  // negative up to rounding; clamp the rounding away.
  return std::max(kl, 0.0);
}

absl::StatusOr<std::vector<double>> PerTokenCosts(const TokenLogProbs& lp,
                                                  const CostOptions& options) {
  if (lp.num_tokens < 0)
    return absl::InvalidArgumentError("negative token count");
  if (!(options.prob_floor > 0 && options.prob_floor < 1)) {
    return absl::InvalidArgumentError("prob_floor must be in (0, 1)");
  }
  const size_t T = static_cast<size_t>(lp.num_tokens);
  std::vector<double> costs(T, 0.0);
  const double log_floor = std::log(options.prob_floor);
  switch (options.estimator) {
    case CostEstimator::kSupportKl: {
      if (lp.support_k <= 0) {
        return absl::InvalidArgumentError(
            "support_kl needs a support (K >= 1)");
      }
      const size_t K = static_cast<size_t>(lp.support_k);
      CMDISTILL_RETURN_IF_ERROR(
          CheckSize(lp.student_support, T * K, "student_support"));
      CMDISTILL_RETURN_IF_ERROR(
          CheckSize(lp.teacher_support, T * K, "teacher_support"));
      const bool has_tail = !lp.teacher_tail.empty();
      if (has_tail) {
        CMDISTILL_RETURN_IF_ERROR(
            CheckSize(lp.teacher_tail, T, "teacher_tail"));
      }
      for (size_t t = 0; t < T; ++t) {
        costs[t] =
            LumpedReverseKl(lp.student_support.subspan(t * K, K),
                            lp.teacher_support.subspan(t * K, K),
                            has_tail ? lp.teacher_tail[t]
                                     : std::numeric_limits<double>::quiet_NaN(),
                            options.prob_floor);
      }
      return costs;
    }
    case CostEstimator::kK1:
    case CostEstimator::kK3: {
      CMDISTILL_RETURN_IF_ERROR(
          CheckSize(lp.student_sampled, T, "student_sampled"));
      CMDISTILL_RETURN_IF_ERROR(
          CheckSize(lp.teacher_sampled, T, "teacher_sampled"));
      for (size_t t = 0; t < T; ++t) {
        const double log_p = std::min<double>(lp.student_sampled[t], 0.0);
        const double log_q = std::max<double>(
            std::min<double>(lp.teacher_sampled[t], 0.0), log_floor);
        if (options.estimator == CostEstimator::kK1) {
          costs[t] = log_p - log_q;
        } else {
          const double log_r = log_q - log_p;  // r = µ(a)/π(a)
          costs[t] = std::expm1(log_r) - log_r;
        }
      }
      return costs;
    }
  }
  return absl::InvalidArgumentError("unknown cost estimator");
}

absl::StatusOr<BudgetCheck> CheckBudget(absl::Span<const double> raw_costs,
                                        const BudgetOptions& options) {
  if (!std::isfinite(options.budget) || options.budget < 0) {
    return absl::InvalidArgumentError("budget must be finite and >= 0");
  }
  if (options.normalization == CostNormalization::kPerMaxLen &&
      options.max_new_tokens < 1) {
    return absl::InvalidArgumentError("per_max_len needs max_new_tokens >= 1");
  }
  BudgetCheck out;
  const size_t T = raw_costs.size();
  out.costs.resize(T);
  out.feasible.resize(T);
  const double scale = options.normalization == CostNormalization::kPerMaxLen
                           ? 1.0 / options.max_new_tokens
                           : 1.0;
  double running = 0;  // Σ_{i<t} c_i
  bool feasible = true;
  for (size_t t = 0; t < T; ++t) {
    if (!std::isfinite(raw_costs[t])) {
      return absl::InvalidArgumentError(
          absl::StrCat("cost[", t, "] is not finite"));
    }
    out.feasible[t] = feasible;
    const double c = raw_costs[t] * scale;
    out.costs[t] = c;
    running += c;
    const double through_t =
        options.normalization == CostNormalization::kPrefixMean
            ? running / static_cast<double>(t + 1)
            : running;
    if (feasible && through_t > options.budget) {
      feasible = false;
      out.first_violation = static_cast<int>(t);
    }
  }
  out.cost_used =
      options.normalization == CostNormalization::kPrefixMean && T > 0
          ? running / static_cast<double>(T)
          : running;
  out.satisfied = out.first_violation < 0;
  return out;
}

absl::StatusOr<TrajectoryRewards> ModifiedRewards(
    double task_reward, absl::Span<const double> raw_costs,
    absl::Span<const float> teacher_sampled, const RewardOptions& options) {
  if (!std::isfinite(task_reward))
    return absl::InvalidArgumentError("task reward not finite");
  if (!std::isfinite(options.penalty) || options.penalty < 0) {
    return absl::InvalidArgumentError("penalty must be finite and >= 0");
  }
  TrajectoryRewards out;
  out.task_reward = task_reward;
  out.raw_costs.assign(raw_costs.begin(), raw_costs.end());
  CMDISTILL_ASSIGN_OR_RETURN(auto check,
                             CheckBudget(raw_costs, options.budget));
  out.check = std::move(check);
  const size_t T = raw_costs.size();
  out.modified_rewards.assign(T, 0.0);
  if (T == 0) {
    out.trajectory_return = options.method == Method::kGkd ? 0.0 : task_reward;
    return out;
  }
  std::vector<bool> gate = out.check.feasible;
  // Whether the gate is closed once the trajectory has ended: the gate is
  // checked before each step, so a violation by the last token closes it only
  // after T - 1. Such a trajectory violates the constraint (CSR counts it), so
  // it must not earn R as a feasible one would.
  bool violated = out.check.first_violation >= 0;
  std::vector<double> phi(T, 0.0);  // the immediate term after the gate closed
  if (options.method == Method::kCmdp) phi = out.raw_costs;
  if (options.method == Method::kWeakestLink) {
    CMDISTILL_RETURN_IF_ERROR(CheckSize(teacher_sampled, T, "teacher_sampled"));
    if (!std::isfinite(options.weakest_link_threshold) ||
        options.weakest_link_threshold < 0) {
      return absl::InvalidArgumentError(
          "weakest_link_threshold must be finite and >= 0");
    }
    for (size_t t = 0; t < T; ++t)
      phi[t] = -static_cast<double>(teacher_sampled[t]);
    BudgetOptions prefix = options.budget;
    prefix.normalization = CostNormalization::kPrefixMean;
    prefix.budget = options.weakest_link_threshold;
    CMDISTILL_ASSIGN_OR_RETURN(auto nll_check, CheckBudget(phi, prefix));
    gate = nll_check.feasible;
    violated = nll_check.first_violation >= 0;
  }
  const bool infeasible = UsesBudgetInReward(options.method) && violated;
  // The penalised tokens: those after the gate closed and, for a violation by
  // the last token, that token (so every infeasible trajectory pays n).
  std::vector<bool> penalised(T, false);
  for (size_t t = 0; t < T; ++t) penalised[t] = !gate[t];
  if (infeasible) penalised[T - 1] = true;
  const double n = options.penalty;
  if (options.method == Method::kGkd) {
    // No task reward at all: pure distillation.
  } else if (!infeasible) {
    out.modified_rewards[T - 1] = task_reward;
  } else if (options.placement == PenaltyPlacement::kPerToken) {
    for (size_t t = 0; t < T; ++t) {
      out.modified_rewards[t] = penalised[t] ? -(n + phi[t]) : 0.0;
    }
    if (options.keep_task_reward_when_infeasible)
      out.modified_rewards[T - 1] += task_reward;
  } else {  // kTerminal
    double phi_sum = 0, closed = 0;
    for (size_t t = 0; t < T; ++t) {
      if (penalised[t]) {
        phi_sum += phi[t];
        closed += 1;
      }
    }
    out.modified_rewards[T - 1] =
        (options.keep_task_reward_when_infeasible ? task_reward : 0.0) -
        (n + phi_sum / closed);
  }
  for (double v : out.modified_rewards) out.trajectory_return += v;
  out.gate = std::move(gate);
  return out;
}

absl::StatusOr<std::vector<double>> GroupAdvantages(
    absl::Span<const double> returns, bool std_normalization, double eps) {
  const size_t n = returns.size();
  std::vector<double> adv(n, 0.0);
  double mean = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(returns[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("return[", i, "] is not finite"));
    }
    mean += returns[i];
  }
  if (n < 2) return adv;
  mean /= static_cast<double>(n);
  double var = 0;
  for (double r : returns) var += (r - mean) * (r - mean);
  const double sd = std::sqrt(var / static_cast<double>(n - 1));
  for (size_t i = 0; i < n; ++i) {
    adv[i] = returns[i] - mean;
    if (std_normalization) adv[i] /= sd + eps;
  }
  return adv;
}

}  // namespace cmdistill::rl
