#include "services/learner/adamw.h"

#include <cmath>
#include <cstring>

namespace cmdistill::learner {

AdamW::AdamW(std::vector<at::Tensor> params, AdamWOptions options)
    : params_(std::move(params)), o_(options) {
  for (const at::Tensor& p : params_) {
    m_.push_back(at::zeros_like(p, at::TensorOptions().dtype(at::kFloat)));
    v_.push_back(at::zeros_like(p, at::TensorOptions().dtype(at::kFloat)));
  }
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
  double sq = 0;
  for (const at::Tensor& p : params_) {
    if (p.grad().defined())
      sq += p.grad().to(at::kFloat).pow(2).sum().item<double>();
  }
  info.grad_norm = std::sqrt(sq);
  at::NoGradGuard no_grad;
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
    const at::Tensor g = p.grad().to(at::kFloat) * clip;
    m_[i].mul_(o_.beta1).add_(g, 1 - o_.beta1);
    v_[i].mul_(o_.beta2).addcmul_(g, g, 1 - o_.beta2);
    const at::Tensor update = (m_[i] / bc1) / ((v_[i] / bc2).sqrt() + o_.eps);
    at::Tensor pf = p.to(at::kFloat);
    pf.mul_(1 - info.lr * o_.weight_decay).sub_(update, info.lr);
    p.copy_(pf);
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

absl::Status AdamW::Restore(const std::vector<std::string>& moments,
                            int64_t step) {
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
  for (size_t i = 0; i < params_.size(); ++i) {
    for (int j = 0; j < 2; ++j) {
      at::Tensor& t = j == 0 ? m_[i] : v_[i];
      const std::string& bytes = moments[2 * i + j];
      at::Tensor host = at::empty(t.sizes(), at::kFloat);
      std::memcpy(host.data_ptr(), bytes.data(), bytes.size());
      t.copy_(host);
    }
  }
  step_ = step;
  return absl::OkStatus();
}

}  // namespace cmdistill::learner
