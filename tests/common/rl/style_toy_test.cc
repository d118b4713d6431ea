// The constraint's purpose on a two-style toy, through the project's own
// method mathematics (rl::PerTokenCosts, CheckBudget via ModifiedRewards,
// GroupAdvantages, MethodLoss): a teacher-foreign style that is MORE rewarding
// for the student is driven out by cmdp (and saute) and taken up by grpo.
//
// The toy: a completion is two tokens. At t = 0 the policy picks a style, A
// (the teacher's) or B (teacher-foreign); its logits over the 4-token
// vocabulary {A, B, right, wrong} are the only parameters. At t = 1 the student
// answers from a fixed distribution that depends on the style: right with
// probability 0.6 after A, 0.9 after B (B is the more rewarding style, as the
// embedded task's foreign style is for its student). The teacher prefers A at
// t = 0 and, after A, answers as the student does (KL 0.00 there); after B, a
// state it never saw, it puts its mass on {A, B}, so the state's reverse KL is
// 0.9 ln 90 + 0.1 ln 10 = 4.28 nats, over the budget d = 1 nat (sum
// normalisation): every B answer violates at its last token.
//
// Margins, from the ten seeds this test runs (recorded 2026-12-07; the shares
// are the exact B probability after 150 steps of 8 groups x 8 samples, plain
// SGD with step 1 on the logits; the warm start's B share is 0.08):
//   cmdp  B share 0.0021-0.0031 over the seeds, saute 0.0027-0.0044 (cmdp below
//   saute on every seed: φ adds the state's cost to the penalty), grpo
//   0.976-0.983. At 60 steps of step 0.5 grpo had reached only 0.38-0.52.
// The test asserts cmdp and saute < 0.02 and grpo > 0.9 on every seed.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard (not in ATen.h on 2.x)

#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "common/rl/constraint.h"
#include "common/rl/losses.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace cmdistill::rl {
namespace {

constexpr int kV = 4;  // A, B, right, wrong
constexpr int kA = 0, kB = 1, kRight = 2, kWrong = 3;

// Fixed log-distributions over the vocabulary.
std::array<float, kV> Log(std::array<double, kV> p) {
  std::array<float, kV> out{};
  for (int i = 0; i < kV; ++i) out[i] = static_cast<float>(std::log(p[i]));
  return out;
}
const std::array<float, kV> kStudentAfterA = Log({0.005, 0.005, 0.6, 0.39});
const std::array<float, kV> kStudentAfterB = Log({0.0005, 0.0005, 0.9, 0.099});
const std::array<float, kV> kTeacherFirst = Log({0.97, 0.01, 0.01, 0.01});
const std::array<float, kV> kTeacherAfterA = kStudentAfterA;
const std::array<float, kV> kTeacherAfterB = Log({0.49, 0.49, 0.01, 0.01});

struct ToyResult {
  double foreign_share = 0;  // π(B) after training
  double expected_reward = 0;
};

ToyResult TrainToy(Method method, uint32_t seed, int steps) {
  at::Tensor logits =
      at::log(at::tensor({0.9, 0.08, 0.01, 0.01}, at::kDouble)).detach();
  logits.requires_grad_(true);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  constexpr int kGroups = 8, kG = 8, kT = 2;
  RewardOptions ro;
  ro.method = method;
  ro.penalty = 1;
  ro.budget.budget = 1.0;
  ro.budget.normalization = CostNormalization::kSum;
  ro.budget.max_new_tokens = kT;
  for (int step = 0; step < steps; ++step) {
    const at::Tensor logp0 = at::log_softmax(logits.detach(), 0);
    std::array<float, kV> student_first{};
    for (int v = 0; v < kV; ++v)
      student_first[v] = static_cast<float>(logp0[v].item<double>());
    std::vector<int64_t> styles;
    std::vector<double> advantages;
    std::vector<float> infeasible;
    std::vector<float> student_support, teacher_support;
    for (int g = 0; g < kGroups; ++g) {
      std::vector<double> returns;
      for (int i = 0; i < kG; ++i) {
        // Sample the style from π, the answer from the style's fixed table.
        double u = unit(rng), acc = 0;
        int style = kV - 1;
        for (int v = 0; v < kV; ++v) {
          acc += std::exp(student_first[v]);
          if (u < acc) {
            style = v;
            break;
          }
        }
        const bool foreign = style == kB;
        const auto& s1 = foreign ? kStudentAfterB : kStudentAfterA;
        const auto& m1 = foreign ? kTeacherAfterB : kTeacherAfterA;
        u = unit(rng);
        const int answer =
            u < std::exp(s1[kRight]) ? kRight : kWrong;  // right / wrong only
        std::vector<float> ss(student_first.begin(), student_first.end());
        ss.insert(ss.end(), s1.begin(), s1.end());
        std::vector<float> ts(kTeacherFirst.begin(), kTeacherFirst.end());
        ts.insert(ts.end(), m1.begin(), m1.end());
        const std::vector<float> student_sampled = {student_first[style],
                                                    s1[answer]};
        const std::vector<float> teacher_sampled = {kTeacherFirst[style],
                                                    m1[answer]};
        TokenLogProbs lp;
        lp.num_tokens = kT;
        lp.support_k = kV;
        lp.student_support = ss;
        lp.teacher_support = ts;
        lp.student_sampled = student_sampled;
        lp.teacher_sampled = teacher_sampled;
        auto costs = PerTokenCosts(lp, CostOptions{});
        EXPECT_TRUE(costs.ok()) << costs.status();
        auto rewards = ModifiedRewards(answer == kRight ? 1.0 : 0.0, *costs,
                                       teacher_sampled, ro);
        EXPECT_TRUE(rewards.ok()) << rewards.status();
        returns.push_back(rewards->trajectory_return);
        styles.push_back(style);
        for (int t = 0; t < kT; ++t)
          infeasible.push_back(rewards->gate[t] ? 0.0f : 1.0f);
        student_support.insert(student_support.end(), ss.begin(), ss.end());
        teacher_support.insert(teacher_support.end(), ts.begin(), ts.end());
      }
      auto adv = GroupAdvantages(returns, /*std_normalization=*/true, 1e-6);
      EXPECT_TRUE(adv.ok()) << adv.status();
      advantages.insert(advantages.end(), adv->begin(), adv->end());
    }
    const int64_t B = kGroups * kG;
    // Current log-probabilities with the gradient through the t = 0 logits;
    // the t = 1 answer tables are fixed.
    const at::Tensor lp0 = at::log_softmax(logits, 0);
    const at::Tensor style_idx = at::tensor(styles, at::kLong);
    const at::Tensor new0 = lp0.index_select(0, style_idx).unsqueeze(1);
    const at::Tensor new_lp =
        at::cat({new0, at::zeros({B, 1}, at::kDouble)}, 1);
    const at::Tensor behavior = new_lp.detach();
    const at::Tensor mask = at::ones({B, kT}, at::kDouble);
    const at::Tensor adv = at::tensor(advantages, at::kDouble);
    const at::Tensor inf =
        at::tensor(infeasible, at::kFloat).reshape({B, kT}).to(at::kDouble);
    // Term II's KL at the visited states: t = 0 through the logits, t = 1
    // fixed (its tables carry no parameters).
    const at::Tensor ts =
        at::tensor(teacher_support, at::kFloat).reshape({B, kT, kV});
    const at::Tensor ss_fixed =
        at::tensor(student_support, at::kFloat).reshape({B, kT, kV});
    const at::Tensor ss =
        at::cat({lp0.unsqueeze(0).expand({B, kV}).unsqueeze(1),
                 ss_fixed.narrow(1, 1, 1).to(at::kDouble)},
                1);
    at::Tensor kl;
    EXPECT_OK(SupportKl(ss, ts.to(at::kDouble), at::Tensor(), 1e-8, &kl));
    MethodLossInputs in;
    in.new_logprobs = &new_lp;
    in.behavior_logprobs = &behavior;
    in.advantages = &adv;
    in.mask = &mask;
    in.kl = &kl;
    in.infeasible = &inf;
    MethodLossOptions mo;
    mo.method = method;
    at::Tensor loss;
    EXPECT_OK(MethodLoss(in, mo, &loss));
    loss.backward();
    {
      at::NoGradGuard no_grad;
      logits.sub_(1.0 * logits.grad());
      logits.grad().zero_();
    }
  }
  const at::Tensor p = at::softmax(logits.detach(), 0);
  ToyResult r;
  r.foreign_share = p[kB].item<double>();
  r.expected_reward = p[kA].item<double>() * 0.6 + p[kB].item<double>() * 0.9;
  return r;
}

TEST(StyleToy, ForeignStateCostIsOverTheBudget) {
  // 0.9 ln(0.9/0.49) ... the t = 1 state after B, by hand: the student's table
  // against the teacher's.
  const double kl = LumpedReverseKl(kStudentAfterB, kTeacherAfterB, NAN, 1e-8);
  EXPECT_GT(kl, 3.5);
  EXPECT_LT(LumpedReverseKl(kStudentAfterA, kTeacherAfterA, NAN, 1e-8), 1e-6);
}

TEST(StyleToy, CmdpDrivesOutTheForeignStyleAndGrpoTakesItUp) {
  constexpr int kSteps = 150;
  for (uint32_t seed = 0; seed < 10; ++seed) {
    const ToyResult cmdp = TrainToy(Method::kCmdp, seed, kSteps);
    const ToyResult saute = TrainToy(Method::kSaute, seed, kSteps);
    const ToyResult grpo = TrainToy(Method::kGrpo, seed, kSteps);
    std::printf("seed %u: B share cmdp %.4f saute %.4f grpo %.4f\n", seed,
                cmdp.foreign_share, saute.foreign_share, grpo.foreign_share);
    EXPECT_LT(cmdp.foreign_share, 0.02) << "seed " << seed;
    EXPECT_LT(saute.foreign_share, 0.02) << "seed " << seed;
    EXPECT_GT(grpo.foreign_share, 0.9) << "seed " << seed;
    EXPECT_LT(cmdp.foreign_share, saute.foreign_share) << "seed " << seed;
    // grpo's reason: B is the more rewarding style.
    EXPECT_GT(grpo.expected_reward, cmdp.expected_reward) << "seed " << seed;
  }
}

}  // namespace
}  // namespace cmdistill::rl
