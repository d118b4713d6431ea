// The constraint mathematics on hand-worked examples (values written out below)
// and properties over random distributions.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "common/rl/constraint.h"
#include "common/rl/lagrange.h"
#include "common/rl/stats.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace cmdistill::rl {
namespace {

using ::cmdistill::testing::StatusIs;
using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr double kTol = 1e-6;
const double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<float> Logs(std::vector<double> p) {
  std::vector<float> out;
  for (double x : p) out.push_back(static_cast<float>(std::log(x)));
  return out;
}

TEST(LumpedKl, FullSupportIsTheExactKl) {
  // p = (0.5, 0.3, 0.2), q = (0.25, 0.25, 0.5):
  // KL = 0.5 ln 2 + 0.3 ln 1.2 + 0.2 ln 0.4 = 0.346574 + 0.054697 - 0.183258 =
  // 0.218013
  const auto s = Logs({0.5, 0.3, 0.2});
  const auto t = Logs({0.25, 0.25, 0.5});
  EXPECT_THAT(LumpedReverseKl(s, t, kNaN, 1e-8), DoubleNear(0.2180128, kTol));
}

TEST(LumpedKl, TailIsLumpedIntoOneOutcome) {
  // Support {first token}: p = (0.5 | tail 0.5), q = (0.25 | tail 0.75):
  // KL = 0.5 ln 2 + 0.5 ln(0.5 / 0.75) = 0.346574 - 0.202733 = 0.143841 (<
  // 0.218013)
  EXPECT_THAT(LumpedReverseKl(Logs({0.5}), Logs({0.25}), kNaN, 1e-8),
              DoubleNear(0.1438410, kTol));
  // The teacher's tail may be given explicitly (the teacher service computes
  // it).
  EXPECT_THAT(LumpedReverseKl(Logs({0.5}), Logs({0.25}), std::log(0.75), 1e-8),
              DoubleNear(0.1438410, kTol));
}

TEST(LumpedKl, TeacherProbabilitiesAreFloored) {
  // q(a) = 1e-30 floored to 1e-8: KL = 1 * (0 - ln 1e-8) = 18.420681
  EXPECT_THAT(LumpedReverseKl(Logs({1.0}), Logs({1e-30}), kNaN, 1e-8),
              DoubleNear(18.420681, 1e-5));
}

// Random distributions: the lumped KL equals the full KL when K = V and never
// exceeds it when the support is the student's top-K, K < V.
TEST(LumpedKl, PropertyEqualsFullKlAtKEqualsVAndLowerBoundBelow) {
  std::mt19937 rng(7);
  std::gamma_distribution<double> gamma(0.3, 1.0);
  for (int trial = 0; trial < 300; ++trial) {
    const int V = 2 + trial % 60;
    std::vector<double> p(V), q(V);
    double sp = 0, sq = 0;
    for (int v = 0; v < V; ++v) {
      p[v] = gamma(rng) + 1e-6;
      q[v] = gamma(rng) + 1e-6;
      sp += p[v];
      sq += q[v];
    }
    double full = 0;
    for (int v = 0; v < V; ++v) {
      p[v] /= sp;
      q[v] /= sq;
    }
    for (int v = 0; v < V; ++v)
      full += p[v] * (std::log(p[v]) - std::log(q[v]));
    std::vector<int> order(V);
    for (int v = 0; v < V; ++v) order[v] = v;
    std::sort(order.begin(), order.end(),
              [&](int a, int b) { return p[a] > p[b]; });
    for (int K = 1; K <= V; ++K) {
      std::vector<double> ps, qs;
      for (int k = 0; k < K; ++k) {
        ps.push_back(p[order[k]]);
        qs.push_back(q[order[k]]);
      }
      const double lumped = LumpedReverseKl(Logs(ps), Logs(qs), kNaN, 1e-12);
      if (K == V) {
        EXPECT_NEAR(lumped, full, 1e-5 * std::max(1.0, full)) << "V=" << V;
      } else {
        EXPECT_LE(lumped, full + 1e-5 * std::max(1.0, full))
            << "V=" << V << " K=" << K;
      }
    }
  }
}

TEST(Costs, SampledTokenEstimators) {
  // π(a) = 0.5, µ(a) = 0.25: k1 = ln 2 = 0.693147; r = 0.5, k3 = (0.5 - 1) - ln
  // 0.5 = 0.193147
  const auto student = Logs({0.5, 0.5});
  const auto teacher = Logs({0.25, 0.5});
  TokenLogProbs lp;
  lp.num_tokens = 2;
  lp.student_sampled = student;
  lp.teacher_sampled = teacher;
  ASSERT_OK_AND_ASSIGN(auto k1, PerTokenCosts(lp, {CostEstimator::kK1, 1e-8}));
  EXPECT_THAT(k1,
              ElementsAre(DoubleNear(0.693147, kTol), DoubleNear(0.0, kTol)));
  ASSERT_OK_AND_ASSIGN(auto k3, PerTokenCosts(lp, {CostEstimator::kK3, 1e-8}));
  EXPECT_THAT(k3,
              ElementsAre(DoubleNear(0.193147, kTol), DoubleNear(0.0, kTol)));
}

TEST(Costs, SupportKlPerPosition) {
  // Two positions, K = 3 (the whole vocabulary).
  std::vector<float> s = Logs({0.5, 0.3, 0.2, 1.0 / 3, 1.0 / 3, 1.0 / 3});
  std::vector<float> t = Logs({0.25, 0.25, 0.5, 1.0 / 3, 1.0 / 3, 1.0 / 3});
  TokenLogProbs lp;
  lp.num_tokens = 2;
  lp.support_k = 3;
  lp.student_support = s;
  lp.teacher_support = t;
  ASSERT_OK_AND_ASSIGN(auto c, PerTokenCosts(lp, {}));
  EXPECT_THAT(c,
              ElementsAre(DoubleNear(0.2180128, kTol), DoubleNear(0.0, kTol)));
}

TEST(Costs, NonFiniteAndMalformedInputsAreRefused) {
  std::vector<float> s = {std::nanf(""), -1.f};
  std::vector<float> t = {-1.f, -1.f};
  TokenLogProbs lp;
  lp.num_tokens = 2;
  lp.support_k = 1;
  lp.student_support = s;
  lp.teacher_support = t;
  EXPECT_THAT(PerTokenCosts(lp, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("student_support[0]")));
  s[0] = std::numeric_limits<float>::infinity();
  EXPECT_THAT(PerTokenCosts(lp, {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  s[0] = 0.5f;  // log-probability above 0
  EXPECT_THAT(PerTokenCosts(lp, {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  s[0] = -1.f;
  lp.support_k = 2;  // sizes no longer match
  EXPECT_THAT(
      PerTokenCosts(lp, {}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 4")));
  EXPECT_THAT(
      CheckBudget(std::vector<double>{0.1, kNaN}, {}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cost[1]")));
  EXPECT_THAT(GroupAdvantages(std::vector<double>{1, kNaN}, true, 1e-6),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ModifiedRewards(kNaN, {}, {}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(Budget, SumNormalisationCheckedBeforeEachStep) {
  // d = 0.35, c = (0.1, 0.2, 0.3, 0.1): running sums 0.1, 0.3, 0.6 > d at t =
  // 2, so t = 3 is the first infeasible step.
  ASSERT_OK_AND_ASSIGN(auto b,
                       CheckBudget(std::vector<double>{0.1, 0.2, 0.3, 0.1},
                                   {0.35, CostNormalization::kSum, 1}));
  EXPECT_THAT(b.feasible, ElementsAre(true, true, true, false));
  EXPECT_EQ(b.first_violation, 2);
  EXPECT_FALSE(b.satisfied);
  EXPECT_NEAR(b.cost_used, 0.7, 1e-12);
}

TEST(Budget, PerMaxLenDividesByMaxNewTokens) {
  // c / 2 = (0.25, 0.5, 0.75, 0.25): sums 0.25, 0.75, 1.5, 1.75 <= d = 1.75
  // (exactly).
  ASSERT_OK_AND_ASSIGN(auto b,
                       CheckBudget(std::vector<double>{0.5, 1.0, 1.5, 0.5},
                                   {1.75, CostNormalization::kPerMaxLen, 2}));
  EXPECT_THAT(b.costs, ElementsAre(0.25, 0.5, 0.75, 0.25));
  EXPECT_THAT(b.feasible, ElementsAre(true, true, true, true));
  EXPECT_TRUE(b.satisfied);
  EXPECT_EQ(b.first_violation, -1);
  EXPECT_EQ(b.cost_used, 1.75);
}

TEST(Budget, PrefixMeanViolatesWhenRunningMeanExceedsBudget) {
  // d = 1: (1, 0, 2, 0) has prefix means 1, 0.5, 1, 0.75: satisfied.
  ASSERT_OK_AND_ASSIGN(auto ok,
                       CheckBudget(std::vector<double>{1, 0, 2, 0},
                                   {1.0, CostNormalization::kPrefixMean, 1}));
  EXPECT_TRUE(ok.satisfied);
  EXPECT_EQ(ok.cost_used, 0.75);
  // (1, 0, 3, 0): means 1, 0.5, 4/3 > 1 at t = 2.
  ASSERT_OK_AND_ASSIGN(auto bad,
                       CheckBudget(std::vector<double>{1, 0, 3, 0},
                                   {1.0, CostNormalization::kPrefixMean, 1}));
  EXPECT_THAT(bad.feasible, ElementsAre(true, true, true, false));
  EXPECT_EQ(bad.first_violation, 2);
}

TEST(Budget, InfeasibilityIsAbsorbing) {
  // k1 costs can be negative: the running sum drops back under d, the steps
  // stay infeasible.
  ASSERT_OK_AND_ASSIGN(auto b,
                       CheckBudget(std::vector<double>{0.5, -1.0, 0.1, 0.0},
                                   {0.4, CostNormalization::kSum, 1}));
  EXPECT_THAT(b.feasible, ElementsAre(true, false, false, false));
  EXPECT_EQ(b.first_violation, 0);
  EXPECT_FALSE(b.satisfied);
}

RewardOptions Opts(Method m, double d) {
  RewardOptions o;
  o.method = m;
  o.penalty = 20;
  o.budget = {d, CostNormalization::kSum, 1};
  return o;
}

TEST(ModifiedRewards, EveryMethodOnOneViolatingTrajectory) {
  // R = 1, c = (0.1, 0.2, 0.3, 0.1), d = 0.35: only the last step is
  // infeasible.
  const std::vector<double> c = {0.1, 0.2, 0.3, 0.1};
  struct Case {
    Method m;
    std::vector<double> r;
    double ret;
  };
  const std::vector<Case> cases = {
      {Method::kCmdp, {0, 0, 0, -20.1}, -20.1},  // -(n + φ_t), φ_t = c_t = 0.1
      {Method::kSaute, {0, 0, 0, -20}, -20},
      {Method::kGrpo, {0, 0, 0, 1}, 1},
      {Method::kSoftLagrangian, {0, 0, 0, 1}, 1},
      {Method::kLagrangian, {0, 0, 0, 1}, 1},
      {Method::kGkd, {0, 0, 0, 0}, 0},
  };
  for (const Case& k : cases) {
    ASSERT_OK_AND_ASSIGN(auto out,
                         ModifiedRewards(1.0, c, {}, Opts(k.m, 0.35)));
    ASSERT_EQ(out.modified_rewards.size(), 4u);
    for (int t = 0; t < 4; ++t) {
      EXPECT_NEAR(out.modified_rewards[t], k.r[t], 1e-12)
          << static_cast<int>(k.m) << " t=" << t;
    }
    EXPECT_NEAR(out.trajectory_return, k.ret, 1e-12);
    EXPECT_EQ(out.check.first_violation,
              2);  // the KL constraint is reported for every method
    EXPECT_FALSE(out.check.satisfied);
  }
}

TEST(ModifiedRewards, CmdpEarlyViolationPenalisesEveryLaterStep) {
  // c = (0.5, 0.1, 0.1), d = 0.35: violated at t = 0, so t = 1, 2 are penalised
  // and R is lost.
  ASSERT_OK_AND_ASSIGN(
      auto out, ModifiedRewards(1.0, std::vector<double>{0.5, 0.1, 0.1}, {},
                                Opts(Method::kCmdp, 0.35)));
  EXPECT_THAT(out.modified_rewards, ElementsAre(0.0, DoubleNear(-20.1, 1e-12),
                                                DoubleNear(-20.1, 1e-12)));
  EXPECT_NEAR(out.trajectory_return, -40.2, 1e-12);
  // Feasible throughout: the task reward at the last token.
  ASSERT_OK_AND_ASSIGN(
      auto ok, ModifiedRewards(1.0, std::vector<double>{0.1, 0.1, 0.1}, {},
                               Opts(Method::kCmdp, 0.35)));
  EXPECT_THAT(ok.modified_rewards, ElementsAre(0.0, 0.0, 1.0));
  EXPECT_TRUE(ok.check.satisfied);
}

TEST(ModifiedRewards, WeakestLinkGatesOnTeacherNllWithItsOwnThreshold) {
  // KL within d = 1, but the teacher NLL (0.1, 2.0, 0.1, 0.1) has prefix means
  // 0.1, 1.05 > τ = 1 at t = 1: steps 2 and 3 get -(n + NLL_t) = -20.1.
  const std::vector<float> teacher = {-0.1f, -2.0f, -0.1f, -0.1f};
  RewardOptions o = Opts(Method::kWeakestLink, 1.0);
  o.weakest_link_threshold = 1.0;
  ASSERT_OK_AND_ASSIGN(
      auto out, ModifiedRewards(1.0, std::vector<double>{0.1, 0.1, 0.1, 0.1},
                                teacher, o));
  EXPECT_THAT(
      out.modified_rewards,
      ElementsAre(0.0, 0.0, DoubleNear(-20.1, 1e-6), DoubleNear(-20.1, 1e-6)));
  EXPECT_THAT(out.gate, ElementsAre(true, true, false, false));  // its own gate
  EXPECT_TRUE(out.check.satisfied);  // the KL constraint itself holds
  EXPECT_THAT(out.check.feasible, ElementsAre(true, true, true, true));
  // The threshold is its own knob, not d: with τ = 1.1 nothing closes (max
  // prefix mean 1.05) although d = 1 would have.
  o.weakest_link_threshold = 1.1;
  ASSERT_OK_AND_ASSIGN(
      auto open, ModifiedRewards(1.0, std::vector<double>{0.1, 0.1, 0.1, 0.1},
                                 teacher, o));
  EXPECT_THAT(open.modified_rewards, ElementsAre(0.0, 0.0, 0.0, 1.0));
  EXPECT_THAT(ModifiedRewards(1.0, std::vector<double>{0.1}, {},
                              Opts(Method::kWeakestLink, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("teacher_sampled")));
}

TEST(ModifiedRewards, TerminalPlacementPaysOnceWithTheMeanOvershoot) {
  // c = (0.5, 0.1, 0.3), d = 0.35, n = 20: violated at t = 0, gate closed at
  // t = 1, 2. Terminal: -(20 + mean(0.1, 0.3)) = -20.2 at the last token.
  RewardOptions o = Opts(Method::kCmdp, 0.35);
  o.placement = PenaltyPlacement::kTerminal;
  const std::vector<double> c = {0.5, 0.1, 0.3};
  ASSERT_OK_AND_ASSIGN(auto out, ModifiedRewards(1.0, c, {}, o));
  EXPECT_THAT(out.modified_rewards,
              ElementsAre(0.0, 0.0, DoubleNear(-20.2, 1e-12)));
  EXPECT_NEAR(out.trajectory_return, -20.2, 1e-12);
  // Per token (the paper): -(20.1) and -(20.3), summed -40.4: twice the
  // penalty for one more token written after the violation.
  ASSERT_OK_AND_ASSIGN(auto per,
                       ModifiedRewards(1.0, c, {}, Opts(Method::kCmdp, 0.35)));
  EXPECT_NEAR(per.trajectory_return, -40.4, 1e-12);
  // A longer tail after the same violation costs the same at the terminal:
  // (0.5, 0.1, 0.3, 0.2, 0.2) -> -(20 + 0.8/4) = -20.2.
  ASSERT_OK_AND_ASSIGN(
      auto longer,
      ModifiedRewards(1.0, std::vector<double>{0.5, 0.1, 0.3, 0.2, 0.2}, {},
                      o));
  EXPECT_NEAR(longer.trajectory_return, -20.2, 1e-12);
  // saute has no φ: -20 once.
  o.method = Method::kSaute;
  ASSERT_OK_AND_ASSIGN(auto saute, ModifiedRewards(1.0, c, {}, o));
  EXPECT_THAT(saute.modified_rewards, ElementsAre(0.0, 0.0, -20.0));
  // Feasible trajectories are unchanged by the placement.
  o.method = Method::kCmdp;
  ASSERT_OK_AND_ASSIGN(
      auto ok, ModifiedRewards(1.0, std::vector<double>{0.1, 0.1, 0.1}, {}, o));
  EXPECT_THAT(ok.modified_rewards, ElementsAre(0.0, 0.0, 1.0));
}

TEST(ModifiedRewards, TaskRewardCanSurviveInfeasibility) {
  // c = (0.5, 0.1, 0.1), d = 0.35, R = 1: the paper drops R (absorbing).
  const std::vector<double> c = {0.5, 0.1, 0.1};
  RewardOptions o = Opts(Method::kCmdp, 0.35);
  o.keep_task_reward_when_infeasible = true;
  ASSERT_OK_AND_ASSIGN(auto per, ModifiedRewards(1.0, c, {}, o));
  EXPECT_THAT(per.modified_rewards,
              ElementsAre(0.0, DoubleNear(-20.1, 1e-12),
                          DoubleNear(-19.1, 1e-12)));  // -20.1 + R
  o.placement = PenaltyPlacement::kTerminal;
  ASSERT_OK_AND_ASSIGN(auto term, ModifiedRewards(1.0, c, {}, o));
  EXPECT_THAT(term.modified_rewards,
              ElementsAre(0.0, 0.0, DoubleNear(1.0 - 20.1, 1e-12)));
  // A wrong answer gets the penalty alone.
  ASSERT_OK_AND_ASSIGN(auto wrong, ModifiedRewards(0.0, c, {}, o));
  EXPECT_NEAR(wrong.trajectory_return, -20.1, 1e-12);
  // Without it (the default), correct and wrong infeasible answers are equal.
  o.keep_task_reward_when_infeasible = false;
  ASSERT_OK_AND_ASSIGN(auto dropped, ModifiedRewards(1.0, c, {}, o));
  EXPECT_NEAR(dropped.trajectory_return, -20.1, 1e-12);
}

TEST(ModifiedRewards, ALastTokenViolationLosesTheTaskReward) {
  // c = (0.1, 0.1, 0.3), d = 0.35: Σ reaches 0.5 at the last token. The gate
  // (before each step) never closes, but the trajectory violates the
  // constraint (CSR counts it): R must not be paid as to a feasible one.
  const std::vector<double> c = {0.1, 0.1, 0.3};
  ASSERT_OK_AND_ASSIGN(auto out,
                       ModifiedRewards(1.0, c, {}, Opts(Method::kCmdp, 0.35)));
  EXPECT_FALSE(out.check.satisfied);
  EXPECT_EQ(out.check.first_violation, 2);
  EXPECT_THAT(out.gate, ElementsAre(true, true, true));
  // -(n + φ_2) = -(20 + 0.3) on the last token, R lost.
  EXPECT_THAT(out.modified_rewards,
              ElementsAre(0.0, 0.0, DoubleNear(-20.3, 1e-12)));
  ASSERT_OK_AND_ASSIGN(auto saute,
                       ModifiedRewards(1.0, c, {}, Opts(Method::kSaute, 0.35)));
  EXPECT_THAT(saute.modified_rewards, ElementsAre(0.0, 0.0, -20.0));
  RewardOptions o = Opts(Method::kCmdp, 0.35);
  o.placement = PenaltyPlacement::kTerminal;
  ASSERT_OK_AND_ASSIGN(auto term, ModifiedRewards(1.0, c, {}, o));
  EXPECT_THAT(term.modified_rewards,
              ElementsAre(0.0, 0.0, DoubleNear(-20.3, 1e-12)));
  o.keep_task_reward_when_infeasible = true;
  ASSERT_OK_AND_ASSIGN(auto kept, ModifiedRewards(1.0, c, {}, o));
  EXPECT_NEAR(kept.trajectory_return, 1.0 - 20.3, 1e-12);
  // One step short of the violation: feasible, R paid.
  ASSERT_OK_AND_ASSIGN(
      auto ok, ModifiedRewards(1.0, std::vector<double>{0.1, 0.1, 0.15}, {},
                               Opts(Method::kCmdp, 0.35)));
  EXPECT_TRUE(ok.check.satisfied);
  EXPECT_THAT(ok.modified_rewards, ElementsAre(0.0, 0.0, 1.0));
  // grpo ignores the constraint but reports it.
  ASSERT_OK_AND_ASSIGN(auto grpo,
                       ModifiedRewards(1.0, c, {}, Opts(Method::kGrpo, 0.35)));
  EXPECT_THAT(grpo.modified_rewards, ElementsAre(0.0, 0.0, 1.0));
  EXPECT_FALSE(grpo.check.satisfied);
}

TEST(ModifiedRewards, WeakestLinkLastTokenClosesItsGate) {
  // Teacher NLL (0.1, 0.1, 3.1): prefix means 0.1, 0.1, 1.1 > τ = 1 only at
  // the last token: R lost, -(n + 3.1) there.
  RewardOptions o = Opts(Method::kWeakestLink, 10.0);
  o.weakest_link_threshold = 1.0;
  ASSERT_OK_AND_ASSIGN(
      auto out, ModifiedRewards(1.0, std::vector<double>{0.1, 0.1, 0.1},
                                std::vector<float>{-0.1f, -0.1f, -3.1f}, o));
  EXPECT_THAT(out.modified_rewards,
              ElementsAre(0.0, 0.0, DoubleNear(-23.1, 1e-6)));
  EXPECT_TRUE(out.check.satisfied);  // the KL constraint itself holds
}

TEST(ModifiedRewards, EmptyCompletionKeepsTaskReward) {
  ASSERT_OK_AND_ASSIGN(auto out,
                       ModifiedRewards(1.0, {}, {}, Opts(Method::kCmdp, 0.35)));
  EXPECT_EQ(out.trajectory_return, 1.0);
  EXPECT_TRUE(out.check.satisfied);
}

TEST(Advantages, GroupNormalisation) {
  // returns (1, 0, 0, 1): mean 0.5, sample sd sqrt(1/3) = 0.577350 -> ±0.866025
  ASSERT_OK_AND_ASSIGN(
      auto a, GroupAdvantages(std::vector<double>{1, 0, 0, 1}, true, 0));
  EXPECT_THAT(
      a, ElementsAre(DoubleNear(0.866025, kTol), DoubleNear(-0.866025, kTol),
                     DoubleNear(-0.866025, kTol), DoubleNear(0.866025, kTol)));
  ASSERT_OK_AND_ASSIGN(
      auto b, GroupAdvantages(std::vector<double>{1, 0, 0, 1}, false, 0));
  EXPECT_THAT(b, ElementsAre(0.5, -0.5, -0.5, 0.5));
  ASSERT_OK_AND_ASSIGN(
      auto same, GroupAdvantages(std::vector<double>{3, 3, 3}, true, 1e-6));
  EXPECT_THAT(same, ElementsAre(0.0, 0.0, 0.0));
  ASSERT_OK_AND_ASSIGN(auto one,
                       GroupAdvantages(std::vector<double>{5}, true, 1e-6));
  EXPECT_THAT(one, ElementsAre(0.0));
}

TEST(Advantages, ZeroMeanPerGroupOnRandomReturns) {
  std::mt19937 rng(3);
  std::normal_distribution<double> n(0, 10);
  for (int trial = 0; trial < 100; ++trial) {
    std::vector<double> r(2 + trial % 15);
    for (double& x : r) x = n(rng);
    for (bool norm : {true, false}) {
      ASSERT_OK_AND_ASSIGN(auto a, GroupAdvantages(r, norm, 1e-6));
      double sum = 0;
      for (double x : a) sum += x;
      EXPECT_NEAR(sum, 0, 1e-9);
    }
  }
}

TEST(Lagrange, RisesWhileOverBudgetAndFallsToZeroBelow) {
  LagrangeController c(
      {/*lambda_init=*/0, /*lr=*/0.5, /*lambda_max=*/100, 0, 0});
  double prev = c.lambda();
  for (int i = 0; i < 5; ++i) {  // mean cost 1 > d = 0.5: +0.25 per step
    ASSERT_OK_AND_ASSIGN(double l, c.Update(1.0, 0.5));
    EXPECT_NEAR(l, prev + 0.25, 1e-12);
    prev = l;
  }
  for (int i = 0; i < 20; ++i) ASSERT_OK(c.Update(0.0, 0.5).status());
  EXPECT_EQ(c.lambda(), 0.0);  // projected: never negative
  EXPECT_THAT(c.Update(kNaN, 0.5),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(c.lambda(), 0.0);
}

TEST(Lagrange, ChanceConstraintFollowsTheViolationRateNotTheMeanCost) {
  // A batch whose mean cost 0.2 is below d = 0.35 while 30% of its
  // trajectories are over d: the mean-cost λ falls (to 0), the chance
  // constraint's λ rises by η (0.3 - 0.05) = 0.5 * 0.25 = 0.125 per step.
  LagrangeController mean({0, 0.5, 100, 0, 0}), chance({0, 0.5, 100, 0, 0});
  for (int i = 1; i <= 4; ++i) {
    ASSERT_OK_AND_ASSIGN(
        double lm, mean.UpdateFromBatch(LagrangeConstraint::kMeanCost, 0.2, 0.7,
                                        0.35, 0.05));
    ASSERT_OK_AND_ASSIGN(
        double lc, chance.UpdateFromBatch(LagrangeConstraint::kViolationRate,
                                          0.2, 0.7, 0.35, 0.05));
    EXPECT_EQ(lm, 0.0);
    EXPECT_NEAR(lc, 0.125 * i, 1e-12);
  }
  // At 2% violations (below the 5% target) it comes down by 0.015 a step.
  ASSERT_OK_AND_ASSIGN(
      double down, chance.UpdateFromBatch(LagrangeConstraint::kViolationRate,
                                          0.9, 0.98, 0.35, 0.05));
  EXPECT_NEAR(down, 0.5 - 0.015, 1e-12);
  EXPECT_THAT(chance.UpdateFromBatch(LagrangeConstraint::kViolationRate, 0.2,
                                     1.5, 0.35, 0.05),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_NEAR(chance.lambda(), 0.485, 1e-12);  // unchanged by the refusal
}

TEST(Stats, ClusteredByArithmeticCell) {
  // Four problems in two cells, one greedy answer each: the units are the
  // cells (shares 1 and 0), not four independent problems.
  std::vector<EvalRecord> r(4);
  for (int i = 0; i < 4; ++i) {
    r[i].problem = i;
    r[i].cluster = i < 2 ? 7 : 9;
    r[i].correct = i < 2;
    r[i].checkable = true;
    r[i].style = i == 3 ? 1 : 0;
    r[i].reasoning_success = i == 0;
  }
  const SuccessMetrics m = Summarize(r, false);
  EXPECT_EQ(m.correctness.value, 0.5);
  EXPECT_EQ(m.correctness.n, 4);
  // t-interval over 2 cells (df 1) of shares {1, 0}: the whole [0, 1].
  EXPECT_EQ(m.correctness.low, 0.0);
  EXPECT_EQ(m.correctness.high, 1.0);
  // Shares of the answers: reasoning 1/4, teacher style 3/4, foreign 1/4.
  EXPECT_NEAR(m.reasoning.value, 0.25, 1e-12);
  EXPECT_NEAR(m.teacher_style.value, 0.75, 1e-12);
  EXPECT_NEAR(m.foreign_style.value, 0.25, 1e-12);
  // Without cells: Wilson over the four problems, and no reasoning figures
  // where nothing was checkable.
  for (auto& x : r) {
    x.cluster = -1;
    x.checkable = false;
  }
  const SuccessMetrics w = Summarize(r, false);
  EXPECT_EQ(w.correctness.value, 0.5);
  EXPECT_GT(w.correctness.low, 0.0);
  EXPECT_EQ(w.reasoning.n, 0);
}

TEST(Stats, UnequalCellsKeepTheShareOfAnswers) {
  // Cells of 3, 1, 2 and 2 answers with 3, 0, 1 and 2 correct: the share is
  // 6/8 = 0.75 (not the mean of the cells' shares, 0.625). Residuals
  // S_c − p·n_c = 0.75, −0.75, −0.5, 0.5: Σ² = 1.625, × 4/3 -> se =
  // sqrt(2.1667) / 8 = 0.18400; t(3) = 3.1824 -> [0.1645, 1 (clamped)].
  const int sizes[4] = {3, 1, 2, 2}, correct[4] = {3, 0, 1, 2};
  std::vector<EvalRecord> r;
  for (int c = 0; c < 4; ++c) {
    for (int i = 0; i < sizes[c]; ++i) {
      EvalRecord x;
      x.problem = static_cast<int64_t>(r.size());
      x.cluster = c;
      x.correct = i < correct[c];
      r.push_back(x);
    }
  }
  const SuccessMetrics m = Summarize(r, false);
  EXPECT_DOUBLE_EQ(m.correctness.value, 0.75);
  EXPECT_EQ(m.correctness.n, 8);
  EXPECT_NEAR(m.correctness.low, 0.1645, 2e-4);
  EXPECT_EQ(m.correctness.high, 1.0);
}

TEST(Lagrange, PidTermsAndExactRestore) {
  LagrangeController a({0.1, 0.1, 10, 1.0, 2.0});
  ASSERT_OK(
      a.Update(0.6, 0.5).status());  // e = 0.1: I = 0.11, λ = 0.11 + 0.1 = 0.21
  EXPECT_NEAR(a.lambda(), 0.21, 1e-12);
  ASSERT_OK(a.Update(0.8, 0.5)
                .status());  // e = 0.3: I = 0.14, λ = 0.14 + 0.3 + 2*0.2 = 0.84
  EXPECT_NEAR(a.lambda(), 0.84, 1e-12);
  LagrangeController b({0.1, 0.1, 10, 1.0, 2.0});
  ASSERT_OK(b.Restore(a.state()));
  ASSERT_OK_AND_ASSIGN(double la, a.Update(0.7, 0.5));
  ASSERT_OK_AND_ASSIGN(double lb, b.Update(0.7, 0.5));
  EXPECT_EQ(la, lb);
  LagrangeState bad = a.state();
  bad.lambda = -1;
  EXPECT_THAT(b.Restore(bad), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(Stats, WilsonAndStudentIntervals) {
  // 8 of 10: Wilson 95% interval (0.4902, 0.9433).
  const Estimate p = ProportionEstimate(8, 10);
  EXPECT_EQ(p.value, 0.8);
  EXPECT_NEAR(p.low, 0.4902, 1e-4);
  EXPECT_NEAR(p.high, 0.9433, 1e-4);
  // (1..5): mean 3, se 0.707107, t(4) = 2.776 -> (1.0371, 4.9629).
  const Estimate m = MeanEstimate(std::vector<double>{1, 2, 3, 4, 5});
  EXPECT_EQ(m.value, 3);
  EXPECT_NEAR(m.low, 1.0371, 1e-3);
  EXPECT_NEAR(m.high, 4.9629, 1e-3);
  EXPECT_NEAR(StudentT975(1000), 1.9623, 1e-3);
  EXPECT_EQ(ProportionEstimate(0, 0).n, 0);
}

TEST(Stats, SampledEvaluationIsEstimatedPerProblem) {
  // 3 problems x 2 samples: correct (1,1), (1,0), (0,0) -> per-problem 1, .5, 0
  // -> mean 0.5, sd 0.5, half-width t(2) 4.302653 * 0.5/sqrt(3) = 1.242 ->
  // clamped to [0, 1]. Wilson over 6 records would have claimed [0.19, 0.81].
  std::vector<EvalRecord> r;
  const int correct[6] = {1, 1, 1, 0, 0, 0};
  for (int i = 0; i < 6; ++i) {
    EvalRecord x;
    x.correct = correct[i];
    x.satisfied = true;
    x.problem = i / 2;
    r.push_back(x);
  }
  const SuccessMetrics m = Summarize(r, true);
  EXPECT_DOUBLE_EQ(m.correctness.value, 0.5);
  EXPECT_EQ(m.correctness.low, 0.0);
  EXPECT_EQ(m.correctness.high, 1.0);
  EXPECT_EQ(m.correctness.n, 6);
  EXPECT_DOUBLE_EQ(m.satisfaction.value, 1.0);
  // One record per problem: the Wilson interval, as before.
  r.resize(3);
  for (int i = 0; i < 3; ++i) r[i].problem = i;
  r[2].correct = false;  // (1, 1, 0)
  const SuccessMetrics g = Summarize(r, true);
  EXPECT_NEAR(g.correctness.value, 2.0 / 3, 1e-12);
  EXPECT_EQ(g.correctness.low, ProportionEstimate(2, 3).low);
}

TEST(Stats, ClampedAcrossSeedsAndPairedDifferences) {
  // CSR over 3 seeds (0.9, 1.0, 0.6): t-interval [0.0, 1.53]-ish -> <= 1.
  const Estimate e =
      ClampedMeanEstimate(std::vector<double>{0.9, 1.0, 0.6}, 0, 1);
  EXPECT_NEAR(e.value, 2.5 / 3, 1e-12);
  EXPECT_EQ(e.high, 1.0);
  EXPECT_GE(e.low, 0.0);
  EXPECT_LT(e.low, e.value);
  // Paired: a - b = (1, 0, 1, 0, 1) -> mean 0.6, sd 0.5477, half 2.776 *
  // 0.5477/sqrt(5) = 0.680 -> [-0.08, 1] (clamped above at 1).
  const Estimate d = PairedDifference(std::vector<double>{1, 1, 1, 0, 1},
                                      std::vector<double>{0, 1, 0, 0, 0});
  EXPECT_NEAR(d.value, 0.6, 1e-12);
  EXPECT_NEAR(d.low, 0.6 - StudentT975(4) * std::sqrt(0.3 / 5), 1e-12);
  EXPECT_EQ(d.high, 1.0);
  EXPECT_EQ(d.n, 5);
}

TEST(Stats, SummarizeEvaluation) {
  const std::vector<EvalRecord> r = {{true, true, 0.1, 10},
                                     {false, true, 0.3, 20},
                                     {true, false, 0.5, 30},
                                     {true, true, 0.3, 40}};
  const SuccessMetrics m = Summarize(r, true);
  EXPECT_EQ(m.correctness.value, 0.75);
  EXPECT_EQ(m.correctness.n, 4);
  EXPECT_EQ(m.satisfaction.value, 0.75);
  EXPECT_NEAR(m.mean_kl.value, 0.3, 1e-12);
  EXPECT_EQ(m.length.value, 25);
  EXPECT_LT(m.length.low, 25);
  const SuccessMetrics alone = Summarize(r, false);
  EXPECT_EQ(alone.correctness.value, 0.75);
  EXPECT_EQ(alone.satisfaction.n, 0);
  EXPECT_EQ(alone.mean_kl.n, 0);
}

}  // namespace
}  // namespace cmdistill::rl
