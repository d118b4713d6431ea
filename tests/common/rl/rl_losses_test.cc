// Losses in LibTorch: hand-worked PPO values and gradients, the support KL
// against the double-precision reference, and term II's gradient against finite
// differences.
#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common/rl/constraint.h"
#include "common/rl/losses.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace cmdistill::rl {
namespace {

using ::cmdistill::testing::StatusIs;
using ::testing::HasSubstr;

at::Tensor T(std::vector<double> v, std::vector<int64_t> shape) {
  return at::tensor(v, at::kDouble).reshape(shape);
}

TEST(PpoClip, HandWorkedValuesAndGradient) {
  // ratios (1.5, 0.5), ε = 0.2.
  // A = +1: min(1.5, 1.2) = 1.2, min(0.5, 0.8) = 0.5 -> loss = -(1.2 + 0.5) / 2
  // = -0.85 A = -1: min(-1.5, -1.2) = -1.5, min(-0.5, -0.8) = -0.8 -> loss
  // = 1.15
  const at::Tensor behavior = T({-1, -1}, {1, 2});
  const at::Tensor mask = at::ones({1, 2}, at::kDouble);
  at::Tensor new_lp =
      (behavior + T({std::log(1.5), std::log(0.5)}, {1, 2})).detach();
  new_lp.requires_grad_(true);
  at::Tensor loss;
  ASSERT_OK(PpoClipLoss(new_lp, behavior, T({1}, {1}), mask, 0.2,
                        Aggregation::kTokenMean, &loss));
  EXPECT_NEAR(loss.item<double>(), -0.85, 1e-12);
  loss.backward();
  // The clipped token has no gradient; d(-ratio/2)/d logp = -ratio/2 = -0.25
  // for the other.
  EXPECT_NEAR(new_lp.grad()[0][0].item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(new_lp.grad()[0][1].item<double>(), -0.25, 1e-12);
  ASSERT_OK(PpoClipLoss(new_lp, behavior, T({-1}, {1}), mask, 0.2,
                        Aggregation::kTokenMean, &loss));
  EXPECT_NEAR(loss.item<double>(), 1.15, 1e-12);
}

TEST(Aggregation, TokenMeanAndSequenceMean) {
  // values ((1, 2, pad), (3, pad, pad)): token mean 6/3 = 2; sequence mean (1.5
  // + 3)/2 = 2.25
  const at::Tensor v = T({1, 2, 9, 3, 9, 9}, {2, 3});
  const at::Tensor m = T({1, 1, 0, 1, 0, 0}, {2, 3});
  at::Tensor out;
  ASSERT_OK(MaskedMean(v, m, Aggregation::kTokenMean, &out));
  EXPECT_NEAR(out.item<double>(), 2.0, 1e-12);
  ASSERT_OK(MaskedMean(v, m, Aggregation::kSequenceMean, &out));
  EXPECT_NEAR(out.item<double>(), 2.25, 1e-12);
}

TEST(SupportKl, MatchesTheReferenceImplementation) {
  at::manual_seed(1);
  const int64_t B = 2, Tn = 4, V = 7;
  for (int64_t K : {int64_t{2}, int64_t{5}, V}) {
    const at::Tensor s_full =
        at::log_softmax(at::randn({B, Tn, V}, at::kDouble) * 2, -1);
    const at::Tensor t_full =
        at::log_softmax(at::randn({B, Tn, V}, at::kDouble) * 2, -1);
    const at::Tensor ids = std::get<1>(s_full.topk(K, -1));
    const at::Tensor s = s_full.gather(-1, ids), t = t_full.gather(-1, ids);
    at::Tensor kl;
    ASSERT_OK(SupportKl(s, t, at::Tensor(), 1e-8, &kl));
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t i = 0; i < Tn; ++i) {
        std::vector<float> sv, tv;
        for (int64_t k = 0; k < K; ++k) {
          sv.push_back(static_cast<float>(s[b][i][k].item<double>()));
          tv.push_back(static_cast<float>(t[b][i][k].item<double>()));
        }
        const double ref = LumpedReverseKl(
            sv, tv, std::numeric_limits<double>::quiet_NaN(), 1e-8);
        EXPECT_NEAR(kl[b][i].item<double>(), ref, 1e-5) << "K=" << K;
      }
    }
  }
}

// Term II = κ · mean over infeasible tokens of KL_t(θ), with the student's
// support log-probabilities computed from logits: autograd against central
// finite differences.
TEST(TermII, GradientMatchesFiniteDifferences) {
  at::manual_seed(2);
  const int64_t B = 2, Tn = 3, V = 6, K = 3;
  const at::Tensor logits0 = at::randn({B, Tn, V}, at::kDouble);
  const at::Tensor ids = std::get<1>(logits0.topk(K, -1));
  const at::Tensor teacher_full =
      at::log_softmax(at::randn({B, Tn, V}, at::kDouble), -1);
  const at::Tensor teacher = teacher_full.gather(-1, ids);
  const at::Tensor infeasible = T({0, 1, 1, 0, 0, 1}, {B, Tn});
  const at::Tensor mask = T({1, 1, 1, 1, 1, 0}, {B, Tn});
  auto loss_of = [&](const at::Tensor& logits) {
    at::Tensor kl, loss;
    EXPECT_OK(SupportKl(at::log_softmax(logits, -1).gather(-1, ids), teacher,
                        at::Tensor(), 1e-8, &kl));
    EXPECT_OK(InfeasibleKlLoss(kl, infeasible, mask, 0.7, &loss));
    return loss;
  };
  at::Tensor logits = logits0.clone().requires_grad_(true);
  at::Tensor loss = loss_of(logits);
  loss.backward();
  const at::Tensor grad = logits.grad();
  EXPECT_GT(grad.abs().sum().item<double>(),
            1e-3);  // there is a gradient to check
  const double h = 1e-6;
  at::Tensor flat = logits0.clone().reshape({-1});
  for (int64_t i = 0; i < flat.numel(); ++i) {
    at::Tensor plus = flat.clone(), minus = flat.clone();
    plus[i] += h;
    minus[i] -= h;
    const double fd = (loss_of(plus.reshape({B, Tn, V})).item<double>() -
                       loss_of(minus.reshape({B, Tn, V})).item<double>()) /
                      (2 * h);
    EXPECT_NEAR(grad.reshape({-1})[i].item<double>(), fd, 1e-6)
        << "logit " << i;
  }
  // Only infeasible real tokens contribute: position (1, 2) is infeasible but
  // padding.
  EXPECT_EQ(grad[1][2].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(grad[0][0].abs().sum().item<double>(), 0.0);
}

TEST(SampledKl, ExpectedGradientIsTheReverseKlGradient) {
  // One position, V = 5: enumerate every token a with weight π(a) (the
  // expectation over sampling) and compare the surrogate's gradient with the
  // exact ∇_θ KL(π_θ ‖ µ).
  at::manual_seed(4);
  const int64_t V = 5;
  const at::Tensor logits0 = at::randn({V}, at::kDouble);
  const at::Tensor log_mu = at::log_softmax(at::randn({V}, at::kDouble), -1);
  at::Tensor exact_logits = logits0.clone().requires_grad_(true);
  const at::Tensor log_pi = at::log_softmax(exact_logits, -1);
  (at::exp(log_pi) * (log_pi - log_mu)).sum().backward();
  const at::Tensor exact = exact_logits.grad().clone();
  ASSERT_GT(exact.abs().sum().item<double>(), 1e-3);

  for (CostEstimator e :
       {CostEstimator::kK1, CostEstimator::kK3, CostEstimator::kSupportKl}) {
    at::Tensor logits = logits0.clone().requires_grad_(true);
    const at::Tensor lp =
        at::log_softmax(logits, -1).view({1, V});  // [B=1,T=V]
    at::Tensor kl;
    ASSERT_OK(SampledKl(lp, log_mu.view({1, V}), e, 1e-8, &kl));
    const at::Tensor weight = at::exp(lp.detach());
    (weight * kl).sum().backward();
    EXPECT_TRUE(at::allclose(logits.grad(), exact, 1e-9, 1e-12))
        << static_cast<int>(e) << ": " << logits.grad() << " vs " << exact;
    // Values: k1 = log π − log µ, k3 = (r − 1) − log r.
    const double k1 = (lp[0][2] - log_mu[2]).item<double>();
    const double want = e == CostEstimator::kK3 ? std::expm1(-k1) + k1 : k1;
    EXPECT_NEAR(kl[0][2].item<double>(), want, 1e-12);
  }
  // The old fallback, a differentiable k1, has expected gradient 0: a KL loss
  // on it learns nothing.
  at::Tensor logits = logits0.clone().requires_grad_(true);
  const at::Tensor lp = at::log_softmax(logits, -1);
  (at::exp(lp.detach()) * (lp - log_mu)).sum().backward();
  EXPECT_LT(logits.grad().abs().max().item<double>(), 1e-12);
  // Bad input is refused.
  at::Tensor out;
  EXPECT_THAT(SampledKl(T({0.1, -1}, {1, 2}).log(), T({-1, -1}, {1, 2}),
                        CostEstimator::kK1, 1e-8, &out),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(SampledKl(T({-1, -1}, {1, 2}), T({-1}, {1, 1}),
                        CostEstimator::kK1, 1e-8, &out),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("teacher_sampled")));
}

TEST(TermII, AllTokensDenominator) {
  // kl (1, 2, 3, 4), infeasible (0, 1, 1, 0), all real: the infeasible mean is
  // (2 + 3) / 2 = 2.5; over all 4 tokens (2 + 3) / 4 = 1.25.
  const at::Tensor kl = T({1, 2, 3, 4}, {1, 4});
  const at::Tensor inf = T({0, 1, 1, 0}, {1, 4});
  const at::Tensor mask = T({1, 1, 1, 1}, {1, 4});
  at::Tensor a, b;
  ASSERT_OK(InfeasibleKlLoss(kl, inf, mask, 1.0, &a));
  ASSERT_OK(InfeasibleKlLoss(kl, inf, mask, 1.0, &b, /*denominator=*/4));
  EXPECT_DOUBLE_EQ(a.item<double>(), 2.5);
  EXPECT_DOUBLE_EQ(b.item<double>(), 1.25);
}

TEST(MethodLoss, ComposesTheTermsOfEachMethod) {
  const at::Tensor behavior = T({-1, -1}, {1, 2});
  const at::Tensor new_lp =
      behavior + T({std::log(1.5), std::log(0.5)}, {1, 2});
  const at::Tensor adv = T({1}, {1});
  const at::Tensor mask = at::ones({1, 2}, at::kDouble);
  const at::Tensor kl = T({0.2, 0.4}, {1, 2});
  const at::Tensor infeasible = T({0, 1}, {1, 2});
  MethodLossInputs in{&new_lp, &behavior, &adv, &mask, &kl, &infeasible};
  auto value = [&](Method m, double lambda) {
    MethodLossOptions o;
    o.method = m;
    o.kappa = 2.0;
    o.lambda = lambda;
    at::Tensor out;
    EXPECT_OK(MethodLoss(in, o, &out));
    return out.item<double>();
  };
  EXPECT_NEAR(value(Method::kGrpo, 0), -0.85, 1e-12);
  EXPECT_NEAR(value(Method::kSaute, 0), -0.85, 1e-12);
  EXPECT_NEAR(value(Method::kCmdp, 0), -0.85 + 2.0 * 0.4,
              1e-12);  // κ · KL(infeasible)
  EXPECT_NEAR(value(Method::kSoftLagrangian, 0.5), -0.85 + 0.5 * 0.3,
              1e-12);  // λ · mean KL
  EXPECT_NEAR(value(Method::kGkd, 0), 0.3, 1e-12);
  MethodLossOptions bad;
  bad.method = Method::kLagrangian;
  bad.lambda = -1;
  at::Tensor out;
  EXPECT_THAT(MethodLoss(in, bad, &out),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(Losses, NonFiniteInputsAndWrongShapesAreRefused) {
  at::Tensor out;
  const at::Tensor mask = at::ones({1, 2}, at::kDouble);
  EXPECT_THAT(
      PpoClipLoss(T({NAN, -1}, {1, 2}), T({-1, -1}, {1, 2}), T({1}, {1}), mask,
                  0.2, Aggregation::kTokenMean, &out),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("new_logprobs")));
  EXPECT_THAT(
      PpoClipLoss(T({-1, -1}, {1, 2}), T({-1, -1}, {1, 2}), T({1, 2}, {2}),
                  mask, 0.2, Aggregation::kTokenMean, &out),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("advantages has shape")));
  EXPECT_THAT(SupportKl(T({-1, INFINITY}, {1, 1, 2}), T({-1, -1}, {1, 1, 2}),
                        at::Tensor(), 1e-8, &out),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(out.defined());
}

}  // namespace
}  // namespace cmdistill::rl
