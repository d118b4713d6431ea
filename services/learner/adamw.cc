#include "services/learner/adamw.h"

#include <ATen/core/grad_mode.h>  // at::NoGradGuard (not in ATen.h on 2.x)

#include <cmath>
#include <cstring>

#include "absl/strings/str_format.h"

namespace cmdistill::learner {
namespace {

bool LowPrecision(const at::Tensor& p) {
  return p.scalar_type() == at::kBFloat16 || p.scalar_type() == at::kHalf;
}

// Explicit mantissa bits of a low-precision dtype.
int MantissaBits(at::ScalarType t) { return t == at::kHalf ? 10 : 7; }

at::Tensor HostBytesToFloat(const std::string& bytes, at::IntArrayRef sizes) {
  at::Tensor host = at::empty(sizes, at::kFloat);
  std::memcpy(host.data_ptr(), bytes.data(), bytes.size());
  return host;
}

}  // namespace

AdamW::AdamW(std::vector<at::Tensor> params, AdamWOptions options)
    : params_(std::move(params)), o_(options) {
  at::NoGradGuard no_grad;
  for (const at::Tensor& p : params_) {
    m_.push_back(at::zeros_like(p, at::TensorOptions().dtype(at::kFloat)));
    v_.push_back(at::zeros_like(p, at::TensorOptions().dtype(at::kFloat)));
    master_.push_back(o_.master_weights && LowPrecision(p)
                          ? p.detach().to(at::kFloat).clone()
                          : at::Tensor());
  }
}

bool AdamW::has_master_weights() const {
  for (const at::Tensor& m : master_)
    if (m.defined()) return true;
  return false;
}

double AdamW::LearningRate(int64_t s) const {
  if (o_.warmup_steps > 0 && s <= o_.warmup_steps) {
    return o_.lr * static_cast<double>(s) /
           static_cast<double>(o_.warmup_steps);
  }
  const double span = static_cast<double>(
      std::max<int64_t>(1, o_.total_steps - o_.warmup_steps));
  const double p =
      std::min(1.0, static_cast<double>(s - o_.warmup_steps) / span);
  switch (o_.schedule) {
    case Schedule::kLinear:
      return o_.lr * (1 - p);
    case Schedule::kCosine:
      return o_.lr * 0.5 * (1 + std::cos(M_PI * p));
    default:
      return o_.lr;
  }
}

absl::StatusOr<AdamW::StepInfo> AdamW::Step() {
  StepInfo info;
  at::NoGradGuard no_grad;
  // The global norm as one reduction on the device and one host copy: a
  // per-parameter .item() would stall a GPU once per tensor.
  std::vector<at::Tensor> norms;
  for (const at::Tensor& p : params_) {
    if (p.grad().defined()) norms.push_back(p.grad().to(at::kFloat).norm());
  }
  info.grad_norm = norms.empty() ? 0.0 : at::stack(norms).norm().item<double>();
  if (!std::isfinite(info.grad_norm)) {
    for (at::Tensor& p : params_) p.mutable_grad() = at::Tensor();
    return absl::InternalError("non-finite gradient; the update was skipped");
  }
  const double clip = o_.grad_clip > 0 && info.grad_norm > o_.grad_clip
                          ? o_.grad_clip / info.grad_norm
                          : 1.0;
  ++step_;
  info.lr = LearningRate(step_);
  const double bc1 = 1 - std::pow(o_.beta1, static_cast<double>(step_));
  const double bc2 = 1 - std::pow(o_.beta2, static_cast<double>(step_));
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i];
    if (!p.grad().defined()) continue;
    // LibTorch's own AdamW arithmetic, with two temporaries per parameter:
    // p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps), after decoupled decay.
    at::Tensor g = p.grad().to(at::kFloat);  // no copy for float32 gradients
    if (clip != 1.0) g = g * clip;
    m_[i].mul_(o_.beta1).add_(g, 1 - o_.beta1);
    v_[i].mul_(o_.beta2).addcmul_(g, g, 1 - o_.beta2);
    const at::Tensor denom = (v_[i].sqrt() / std::sqrt(bc2)).add_(o_.eps);
    const double step_size = info.lr / bc1;
    const double decay = 1 - info.lr * o_.weight_decay;
    auto apply = [&](at::Tensor& w) {
      if (decay != 1.0) w.mul_(decay);
      w.addcdiv_(m_[i], denom, -step_size);
    };
    if (master_[i].defined()) {
      apply(master_[i]);
      p.copy_(master_[i]);  // rounds to the parameter's dtype
    } else if (p.scalar_type() == at::kFloat) {
      apply(p);
    } else {  // low precision without master weights: rounded every step
      at::Tensor pf = p.to(at::kFloat);
      apply(pf);
      p.copy_(pf);
    }
    p.mutable_grad() = at::Tensor();
  }
  return info;
}

std::vector<std::string> AdamW::SaveMoments() const {
  std::vector<std::string> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (const at::Tensor* t : {&m_[i], &v_[i]}) {
      const at::Tensor c = t->to(at::kCPU).contiguous();
      out.emplace_back(static_cast<const char*>(c.data_ptr()), c.nbytes());
    }
  }
  return out;
}

std::vector<std::string> AdamW::SaveMasterWeights() const {
  std::vector<std::string> out;
  for (const at::Tensor& m : master_) {
    if (!m.defined()) {
      out.emplace_back();
      continue;
    }
    const at::Tensor c = m.to(at::kCPU).contiguous();
    out.emplace_back(static_cast<const char*>(c.data_ptr()), c.nbytes());
  }
  return out;
}

absl::Status AdamW::Restore(const std::vector<std::string>& moments,
                            int64_t step,
                            const std::vector<std::string>& masters) {
  if (moments.size() != 2 * params_.size()) {
    return absl::InvalidArgumentError(
        "optimizer state does not match the model's parameters");
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    for (int j = 0; j < 2; ++j) {
      if (moments[2 * i + j].size() != (j == 0 ? m_[i] : v_[i]).nbytes()) {
        return absl::InvalidArgumentError(
            "optimizer state has a tensor of the wrong size");
      }
    }
  }
  if (!masters.empty()) {
    if (masters.size() != params_.size()) {
      return absl::InvalidArgumentError(
          "master weights do not match the model's parameters");
    }
    for (size_t i = 0; i < params_.size(); ++i) {
      const size_t want = master_[i].defined() ? master_[i].nbytes() : 0;
      if (masters[i].size() != want) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "master weights of parameter %d have %d bytes, expected %d", i,
            masters[i].size(), want));
      }
    }
  }
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (int j = 0; j < 2; ++j) {
      at::Tensor& t = j == 0 ? m_[i] : v_[i];
      t.copy_(HostBytesToFloat(moments[2 * i + j], t.sizes()));
    }
    if (!master_[i].defined()) continue;
    if (masters.empty()) {
      master_[i].copy_(params_[i].detach().to(at::kFloat));
    } else {
      master_[i].copy_(HostBytesToFloat(masters[i], master_[i].sizes()));
    }
  }
  step_ = step;
  return absl::OkStatus();
}

double AdamW::UnrepresentableUpdateShare(double lr) const {
  at::NoGradGuard no_grad;
  double stuck = 0, total = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const at::Tensor& p = params_[i];
    if (!LowPrecision(p) || master_[i].defined()) continue;
    // half ulp of w = 2^(floor(log2 |w|) - mantissa bits - 1); zeros always
    // move.
    const at::Tensor a = p.detach().to(at::kFloat).abs();
    const at::Tensor half_ulp = at::pow(
        2.0, at::floor(at::log2(a)) -
                 static_cast<double>(MantissaBits(p.scalar_type()) + 1));
    stuck += ((a > 0) & (half_ulp > lr)).sum().item<double>();
    total += static_cast<double>(p.numel());
  }
  return total > 0 ? stuck / total : 0.0;
}

std::string AdamW::PrecisionWarning() const {
  const double share = UnrepresentableUpdateShare(o_.lr);
  if (share <= 0.1) return "";
  return absl::StrFormat(
      "WARNING: lr %g is below half an ulp of %.0f%% of the low-precision "
      "weights and there are no float32 master weights "
      "(optimizer.master_weights: false): those weights will not change. Turn "
      "master weights on or train in float32.",
      o_.lr, 100 * share);
}

}  // namespace cmdistill::learner
