// Costs, budgets and modified rewards of one trajectory (DESIGN.md §5).
// Torch-free, exact (double precision), thread-compatible (pure functions).
//
// Conventions, fixed here and used by the reward service, the learner and
// evaluation:
//  - Positions t = 0..T-1 are completion tokens; the task reward R is given at
//  t = T-1.
//  - A support is the student's top-K tokens at each position (K may equal the
//  vocabulary),
//    always containing the sampled token; everything outside it is lumped into
//    one "tail" outcome. The lumped reverse KL is a lower bound of the full KL,
//    exact when K = V.
//  - Teacher probabilities are floored at `prob_floor` before the log.
//  - Feasibility is checked BEFORE the current step and is absorbing:
//      feasible_t = feasible_{t-1} and (running quantity over i < t) <= d.
//    `first_violation` is the first t whose own cost pushes the running
//    quantity over d (so feasible_{t+1..} are false); a trajectory satisfies
//    the constraint iff there is none.
//  - cmdp's penalty φ_t is the raw per-token cost c_t (before normalisation).
//
// Every function refuses NaN/Inf or positive log-probabilities and mismatched
// sizes with INVALID_ARGUMENT naming the array and position; nothing non-finite
// is ever produced.
#ifndef CMDISTILL_COMMON_RL_CONSTRAINT_H_
#define CMDISTILL_COMMON_RL_CONSTRAINT_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace cmdistill::rl {

enum class Method {
  kCmdp,
  kSaute,
  kGrpo,
  kSoftLagrangian,
  kLagrangian,
  kGkd,
  kWeakestLink
};
enum class CostEstimator { kSupportKl, kK1, kK3 };
enum class CostNormalization { kSum, kPerMaxLen, kPrefixMean };
// Where the infeasibility penalty of cmdp / saute / weakest_link lands.
//  kPerToken: r̂_t = −(n + φ_t) on every token after the gate closed (the
//    paper's equation, DESIGN.md §5): the penalty grows with the number of
//    tokens written after the violation.
//  kTerminal: once, at the last token: −(n + mean of φ_t over the tokens
//    after the gate closed). The same order of preference (any feasible
//    trajectory above any infeasible one, a larger per-token overshoot worse),
//    but independent of how long the answer goes on after the violation.
enum class PenaltyPlacement { kPerToken, kTerminal };

// True for the methods whose advantage sees a budget-dependent reward.
bool UsesBudgetInReward(Method m);
// True for the methods that need teacher scores at all (all but grpo).
bool NeedsTeacher(Method m);

// Per-position log-probabilities of one trajectory. Spans of floats, as they
// arrive packed on the wire. Shapes: support arrays [T * K] row-major, sampled
// arrays [T].
struct TokenLogProbs {
  int num_tokens = 0;                       // T
  int support_k = 0;                        // K (0 allowed for k1/k3)
  absl::Span<const float> student_support;  // log π(v|s_t), v in support
  absl::Span<const float> teacher_support;  // log µ(v|s_t)
  absl::Span<const float>
      teacher_tail;  // [T] log µ(outside support|s_t); may be empty
  absl::Span<const float> student_sampled;  // [T] log π(a_t|s_t)
  absl::Span<const float> teacher_sampled;  // [T] log µ(a_t|s_t)
};

struct CostOptions {
  CostEstimator estimator = CostEstimator::kSupportKl;
  double prob_floor = 1e-8;
};

// Lumped reverse KL at one position from K student and teacher support
// log-probabilities. `teacher_tail_logprob` NaN = derive the teacher tail as 1
// - Σ µ(support).
double LumpedReverseKl(absl::Span<const float> student,
                       absl::Span<const float> teacher,
                       double teacher_tail_logprob, double prob_floor);

// Raw per-token costs c_t (before normalisation), length T.
absl::StatusOr<std::vector<double>> PerTokenCosts(const TokenLogProbs& lp,
                                                  const CostOptions& options);

struct BudgetOptions {
  double budget = 0.35;  // d
  CostNormalization normalization = CostNormalization::kPerMaxLen;
  int max_new_tokens = 1;  // for kPerMaxLen
};

struct BudgetCheck {
  std::vector<double>
      costs;  // normalised c_t (kPerMaxLen divides; others as given)
  std::vector<bool> feasible;  // [T], before each step, absorbing
  double cost_used = 0;  // Σ c_t, or the final prefix mean for kPrefixMean
  int first_violation = -1;
  bool satisfied = true;
};

absl::StatusOr<BudgetCheck> CheckBudget(absl::Span<const double> raw_costs,
                                        const BudgetOptions& options);

struct RewardOptions {
  Method method = Method::kCmdp;
  double penalty = 20;  // n
  BudgetOptions budget;
  PenaltyPlacement placement = PenaltyPlacement::kPerToken;
  // false (the paper): the task reward is lost once the gate closed (the
  // absorbing state pays only penalties); true: R is still paid at the last
  // token of an infeasible trajectory, beside the penalty.
  bool keep_task_reward_when_infeasible = false;
  // weakest_link's gate, in nats per token of teacher NLL −log µ(a_t): closed
  // from the first prefix whose mean NLL exceeds it. Its own unit: the NLL is
  // KL + the student's entropy, so the KL budget d does not fit it.
  double weakest_link_threshold = 1.5;
};

struct TrajectoryRewards {
  double task_reward = 0;
  std::vector<double> raw_costs;  // c_t before normalisation
  BudgetCheck check;              // the KL constraint (for every method: CSR)
  // [T] the method's own reward gate, before each step: check.feasible for
  // cmdp and saute (and the reward-only methods, which ignore it), the
  // teacher-NLL gate for weakest_link. What the reward service reports as
  // `feasible` and the learner's term II reads.
  std::vector<bool> gate;
  std::vector<double> modified_rewards;  // r̂_t for the method
  double trajectory_return = 0;  // Σ r̂_t (R alone for an empty completion)
};

// Applies the method's reward transform. `teacher_sampled` is needed by
// kWeakestLink (its gate is the prefix mean of the teacher NLL -log µ(a_t),
// compared with weakest_link_threshold; its immediate term φ_t is that NLL);
// others may pass an empty span. φ_t is c_t for cmdp, 0 for saute.
absl::StatusOr<TrajectoryRewards> ModifiedRewards(
    double task_reward, absl::Span<const double> raw_costs,
    absl::Span<const float> teacher_sampled, const RewardOptions& options);

// GRPO group-relative advantages: (return_i - mean) / (std + eps), std the
// sample standard deviation (n - 1, as torch.std); without std division just
// return_i - mean. A group of one gets 0. INVALID_ARGUMENT on non-finite
// returns.
absl::StatusOr<std::vector<double>> GroupAdvantages(
    absl::Span<const double> returns, bool std_normalization, double eps);

}  // namespace cmdistill::rl

#endif  // CMDISTILL_COMMON_RL_CONSTRAINT_H_
