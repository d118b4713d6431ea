// The hand-written AdamW: parity with LibTorch's own torch::optim::AdamW in
// float32, float32 master weights for bfloat16 parameters at the paper's lr
// 1e-5 (without them most bf16 weights never move), exact save/restore, the
// precision warning and the one-reduction gradient norm.
#include "services/learner/adamw.h"

#include <torch/optim/adamw.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace cmdistill::learner {
namespace {

using ::cmdistill::testing::StatusIs;

// Deterministic host-made normal values (no dependence on LibTorch's RNG).
at::Tensor Normal(std::mt19937* rng, std::vector<int64_t> shape, double std) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::normal_distribution<float> dist(0.f, static_cast<float>(std));
  std::vector<float> v(n);
  for (float& x : v) x = dist(*rng);
  return at::tensor(v, at::kFloat).view(shape);
}

double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kFloat) - b.to(at::kFloat)).abs().max().item<double>();
}

double ShareUnchanged(const at::Tensor& now, const at::Tensor& before) {
  return (now.to(at::kFloat) == before.to(at::kFloat))
      .to(at::kFloat)
      .mean()
      .item<double>();
}

TEST(AdamW, MatchesLibTorchAdamWInFloat32) {
  for (double wd : {0.0, 0.1}) {
    std::mt19937 rng(7);
    const std::vector<std::vector<int64_t>> shapes = {{16, 8}, {8}, {3, 5, 2}};
    std::vector<at::Tensor> ours, theirs;
    for (const auto& s : shapes) {
      at::Tensor init = Normal(&rng, s, 0.5);
      ours.push_back(init.clone().set_requires_grad(true));
      theirs.push_back(init.clone().set_requires_grad(true));
    }
    AdamWOptions o;
    o.lr = 1e-2;
    o.beta1 = 0.8;
    o.beta2 = 0.95;
    o.eps = 1e-6;
    o.weight_decay = wd;
    o.grad_clip = 0;  // LibTorch's optimizer does not clip
    AdamW mine(ours, o);
    torch::optim::AdamW ref(theirs, torch::optim::AdamWOptions(o.lr)
                                        .betas({o.beta1, o.beta2})
                                        .eps(o.eps)
                                        .weight_decay(wd)
                                        .amsgrad(false));
    for (int step = 1; step <= 6; ++step) {
      for (size_t i = 0; i < shapes.size(); ++i) {
        at::Tensor g = Normal(&rng, shapes[i], 1.0);
        ours[i].mutable_grad() = g.clone();
        theirs[i].mutable_grad() = g.clone();
      }
      ASSERT_OK_AND_ASSIGN(AdamW::StepInfo info, mine.Step());
      EXPECT_DOUBLE_EQ(info.lr, o.lr);
      ref.step();
      for (size_t i = 0; i < shapes.size(); ++i) {
        EXPECT_LE(MaxAbsDiff(ours[i], theirs[i]), 1e-6)
            << "wd " << wd << " step " << step << " param " << i;
      }
    }
    // And the run went somewhere: the parameters are not where they started.
    EXPECT_GT(MaxAbsDiff(ours[0], Normal(&rng, shapes[0], 0.5)), 1e-3);
  }
}

TEST(AdamW, GradientNormIsTheGlobalNormAndClipsToIt) {
  std::mt19937 rng(3);
  at::Tensor a = Normal(&rng, {4, 4}, 1).set_requires_grad(true);
  at::Tensor b = Normal(&rng, {5}, 1).set_requires_grad(true);
  at::Tensor none = Normal(&rng, {2}, 1).set_requires_grad(true);  // no grad
  const at::Tensor ga = Normal(&rng, {4, 4}, 2), gb = Normal(&rng, {5}, 2);
  a.mutable_grad() = ga;
  b.mutable_grad() = gb;
  double want = 0;
  for (const at::Tensor& g : {ga, gb}) want += g.pow(2).sum().item<double>();
  want = std::sqrt(want);
  AdamWOptions o;
  o.lr = 1e-3;
  o.grad_clip = want / 2;
  AdamW opt({a, b, none}, o);
  ASSERT_OK_AND_ASSIGN(AdamW::StepInfo info, opt.Step());
  EXPECT_NEAR(info.grad_norm, want, 1e-5 * want);
  EXPECT_FALSE(a.grad().defined());  // cleared
  // A non-finite gradient changes nothing and is refused.
  const at::Tensor before = a.detach().clone();
  a.mutable_grad() = at::full({4, 4}, NAN);
  EXPECT_THAT(opt.Step(), StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(MaxAbsDiff(a, before), 0.0);
  EXPECT_EQ(opt.step(), 1);
}

struct Bf16Run {
  std::vector<double> share_unchanged;  // after 1 step and after all steps
  double moved_ratio = 0;  // |bf16 - start| / |fp32 run - start|, Frobenius
  double master_vs_fp32 = 0;
  double copy_vs_master = 0;
};

// 60 AdamW steps at lr 1e-5 on HF-initialised weights (std 0.02), once in
// float32 and once in bfloat16 with the same (bf16-exact) gradients.
Bf16Run RunBf16(bool master_weights, int steps = 60) {
  std::mt19937 rng(11);
  const at::Tensor start = Normal(&rng, {64, 64}, 0.02).to(at::kBFloat16);
  at::Tensor p32 = start.to(at::kFloat).clone().set_requires_grad(true);
  at::Tensor p16 = start.clone().set_requires_grad(true);
  AdamWOptions o;
  o.lr = 1e-5;
  o.grad_clip = 0;
  o.master_weights = master_weights;
  AdamW a32({p32}, o), a16({p16}, o);
  Bf16Run r;
  // A steady direction with 10% noise, so that Adam moves each weight by about
  // lr per step (6e-4 in all, several bf16 ulps at |w| ~ 0.02).
  const at::Tensor base = Normal(&rng, {64, 64}, 1e-2);
  for (int s = 1; s <= steps; ++s) {
    const at::Tensor g =
        (base + Normal(&rng, {64, 64}, 1e-3)).to(at::kBFloat16);
    p32.mutable_grad() = g.to(at::kFloat);
    p16.mutable_grad() = g.clone();
    EXPECT_OK(a32.Step().status());
    EXPECT_OK(a16.Step().status());
    if (s == 1) r.share_unchanged.push_back(ShareUnchanged(p16, start));
  }
  r.share_unchanged.push_back(ShareUnchanged(p16, start));
  const at::Tensor s32 = start.to(at::kFloat);
  r.moved_ratio = (p16.detach().to(at::kFloat) - s32).norm().item<double>() /
                  (p32.detach() - s32).norm().item<double>();
  if (a16.master(0).defined()) {
    r.master_vs_fp32 = MaxAbsDiff(a16.master(0), p32.detach());
    r.copy_vs_master =
        MaxAbsDiff(p16.detach(), a16.master(0).to(at::kBFloat16));
  }
  return r;
}

TEST(AdamW, Bfloat16AtLr1e5FollowsTheFloat32RunWithMasterWeights) {
  const Bf16Run without = RunBf16(/*master_weights=*/false);
  const Bf16Run with = RunBf16(/*master_weights=*/true);
  RecordProperty("unchanged_after_1_step_without",
                 std::to_string(without.share_unchanged[0]));
  RecordProperty("unchanged_after_60_steps_without",
                 std::to_string(without.share_unchanged[1]));
  RecordProperty("unchanged_after_60_steps_with",
                 std::to_string(with.share_unchanged[1]));
  RecordProperty("moved_ratio_without", std::to_string(without.moved_ratio));
  RecordProperty("moved_ratio_with", std::to_string(with.moved_ratio));
  // Without master weights each step rounds back: most weights never move and
  // the model travels a fraction of the float32 run's distance.
  EXPECT_GT(without.share_unchanged[0], 0.7);
  EXPECT_GT(without.share_unchanged[1], 0.5);
  EXPECT_LT(without.moved_ratio, 0.5);
  // With them the float32 master IS the float32 run, and the bf16 copy is its
  // rounding: after 60 steps (6e-4 of travel) most weights have moved.
  EXPECT_LE(with.master_vs_fp32, 1e-7);
  EXPECT_EQ(with.copy_vs_master, 0.0);
  EXPECT_LT(with.share_unchanged[1], 0.3);
  EXPECT_NEAR(with.moved_ratio, 1.0, 0.1);
}

TEST(AdamW, PrecisionWarningWhenLowPrecisionHasNoMasterWeights) {
  std::mt19937 rng(5);
  const at::Tensor w = Normal(&rng, {32, 32}, 0.02).to(at::kBFloat16);
  AdamWOptions o;
  o.lr = 1e-5;
  o.master_weights = false;
  AdamW bare({w.clone()}, o);
  EXPECT_GT(bare.UnrepresentableUpdateShare(1e-5), 0.7);
  EXPECT_LT(bare.UnrepresentableUpdateShare(1e-1), 0.01);
  EXPECT_THAT(bare.PrecisionWarning(), ::testing::HasSubstr("lr 1e-05"));
  o.master_weights = true;
  AdamW mastered({w.clone()}, o);
  EXPECT_TRUE(mastered.has_master_weights());
  EXPECT_EQ(mastered.UnrepresentableUpdateShare(1e-5), 0.0);
  EXPECT_EQ(mastered.PrecisionWarning(), "");
  // float32 weights never warn.
  AdamW f32({Normal(&rng, {8}, 0.02)}, o);
  EXPECT_FALSE(f32.has_master_weights());
  EXPECT_EQ(f32.PrecisionWarning(), "");
}

TEST(AdamW, SaveAndRestoreContinueExactlyWithMasterWeights) {
  std::mt19937 rng(9);
  const at::Tensor start = Normal(&rng, {16, 16}, 0.02).to(at::kBFloat16);
  AdamWOptions o;
  o.lr = 1e-5;
  o.grad_clip = 0;
  std::vector<at::Tensor> grads;
  for (int s = 0; s < 8; ++s)
    grads.push_back(Normal(&rng, {16, 16}, 1e-2).to(at::kBFloat16));
  at::Tensor pa = start.clone().set_requires_grad(true);
  AdamW a({pa}, o);
  for (int s = 0; s < 5; ++s) {
    pa.mutable_grad() = grads[s].clone();
    ASSERT_OK(a.Step().status());
  }
  // A resumed optimizer on the checkpoint's (rounded) weights.
  auto resume = [&](bool with_masters) {
    at::Tensor pb = pa.detach().clone().set_requires_grad(true);
    AdamW b({pb}, o);
    EXPECT_OK(b.Restore(
        a.SaveMoments(), a.step(),
        with_masters ? a.SaveMasterWeights() : std::vector<std::string>{}));
    for (int s = 5; s < 8; ++s) {
      pb.mutable_grad() = grads[s].clone();
      EXPECT_OK(b.Step().status());
    }
    return std::make_pair(pb, b.master(0).clone());
  };
  auto [exact, exact_master] = resume(true);
  auto [lossy, lossy_master] = resume(false);
  for (int s = 5; s < 8; ++s) {
    pa.mutable_grad() = grads[s].clone();
    ASSERT_OK(a.Step().status());
  }
  EXPECT_EQ(MaxAbsDiff(exact, pa), 0.0);
  EXPECT_EQ(MaxAbsDiff(exact_master, a.master(0)), 0.0);
  // Without the masters the sub-ulp progress of 5 steps is lost.
  EXPECT_GT(MaxAbsDiff(lossy_master, a.master(0)), 0.0);
  // Bad state is refused, naming what is wrong, and changes nothing.
  at::Tensor pc = start.clone().set_requires_grad(true);
  AdamW c({pc}, o);
  std::vector<std::string> masters = a.SaveMasterWeights();
  masters[0].pop_back();
  EXPECT_THAT(c.Restore(a.SaveMoments(), a.step(), masters),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("master weights")));
  EXPECT_EQ(c.step(), 0);
  EXPECT_EQ(MaxAbsDiff(c.master(0), start), 0.0);
}

}  // namespace
}  // namespace cmdistill::learner
