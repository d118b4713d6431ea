// The only LibTorch TU of common/rl.
#include "common/rl/losses.h"

#include <ATen/ATen.h>

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"

namespace cmdistill::rl {
namespace {

absl::Status CheckFinite(const at::Tensor& t, const char* name) {
  if (!t.defined())
    return absl::InvalidArgumentError(absl::StrCat(name, " is missing"));
  if (!at::isfinite(t.detach()).all().item<bool>()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " has NaN or Inf values"));
  }
  return absl::OkStatus();
}

absl::Status CheckShape(const at::Tensor& t, at::IntArrayRef shape,
                        const char* name) {
  if (t.sizes() != shape) {
    std::string got, want;
    for (auto d : t.sizes()) absl::StrAppend(&got, got.empty() ? "" : ",", d);
    for (auto d : shape) absl::StrAppend(&want, want.empty() ? "" : ",", d);
    return absl::InvalidArgumentError(
        absl::StrCat(name, " has shape [", got, "], expected [", want, "]"));
  }
  return CheckFinite(t, name);
}

template <typename F>
absl::Status Guard(F&& f) {
  try {
    return f();
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("LibTorch: ", e.what_without_backtrace()));
  }
}

at::Tensor Aggregate(const at::Tensor& values, const at::Tensor& mask,
                     Aggregation agg, double denominator) {
  const at::Tensor m = mask.to(values.scalar_type());
  if (agg == Aggregation::kTokenMean) {
    return denominator > 0 ? (values * m).sum() / denominator
                           : (values * m).sum() / m.sum().clamp_min(1.0);
  }
  const at::Tensor per_seq = (values * m).sum(1) / m.sum(1).clamp_min(1.0);
  const at::Tensor has_tokens = (m.sum(1) > 0).to(values.scalar_type());
  return denominator > 0
             ? (per_seq * has_tokens).sum() / denominator
             : (per_seq * has_tokens).sum() / has_tokens.sum().clamp_min(1.0);
}

}  // namespace

absl::Status MaskedMean(const at::Tensor& values, const at::Tensor& mask,
                        Aggregation agg, at::Tensor* out, double denominator) {
  return Guard([&]() -> absl::Status {
    CMDISTILL_RETURN_IF_ERROR(CheckFinite(values, "values"));
    CMDISTILL_RETURN_IF_ERROR(CheckShape(mask, values.sizes(), "mask"));
    *out = Aggregate(values, mask, agg, denominator);
    return absl::OkStatus();
  });
}

absl::Status PpoClipLoss(const at::Tensor& new_logprobs,
                         const at::Tensor& behavior_logprobs,
                         const at::Tensor& advantages, const at::Tensor& mask,
                         double clip_epsilon, Aggregation agg, at::Tensor* out,
                         double denominator) {
  return Guard([&]() -> absl::Status {
    CMDISTILL_RETURN_IF_ERROR(CheckFinite(new_logprobs, "new_logprobs"));
    if (new_logprobs.dim() != 2) {
      return absl::InvalidArgumentError("new_logprobs must be [B, T]");
    }
    CMDISTILL_RETURN_IF_ERROR(CheckShape(
        behavior_logprobs, new_logprobs.sizes(), "behavior_logprobs"));
    CMDISTILL_RETURN_IF_ERROR(CheckShape(mask, new_logprobs.sizes(), "mask"));
    CMDISTILL_RETURN_IF_ERROR(
        CheckShape(advantages, {new_logprobs.size(0)}, "advantages"));
    if (!(clip_epsilon > 0 && clip_epsilon < 1)) {
      return absl::InvalidArgumentError("clip_epsilon must be in (0, 1)");
    }
    const at::Tensor ratio = at::exp(new_logprobs - behavior_logprobs.detach());
    const at::Tensor adv =
        advantages.detach().to(new_logprobs.scalar_type()).unsqueeze(1);
    const at::Tensor unclipped = ratio * adv;
    const at::Tensor clipped =
        at::clamp(ratio, 1.0 - clip_epsilon, 1.0 + clip_epsilon) * adv;
    *out = -Aggregate(at::min(unclipped, clipped), mask, agg, denominator);
    return absl::OkStatus();
  });
}

absl::Status SupportKl(const at::Tensor& student_support,
                       const at::Tensor& teacher_support,
                       const at::Tensor& teacher_tail, double prob_floor,
                       at::Tensor* out) {
  return Guard([&]() -> absl::Status {
    CMDISTILL_RETURN_IF_ERROR(CheckFinite(student_support, "student_support"));
    if (student_support.dim() != 3) {
      return absl::InvalidArgumentError("student_support must be [B, T, K]");
    }
    CMDISTILL_RETURN_IF_ERROR(CheckShape(
        teacher_support, student_support.sizes(), "teacher_support"));
    if (teacher_tail.defined()) {
      CMDISTILL_RETURN_IF_ERROR(CheckShape(
          teacher_tail, {student_support.size(0), student_support.size(1)},
          "teacher_tail"));
    }
    if (!(prob_floor > 0 && prob_floor < 1)) {
      return absl::InvalidArgumentError("prob_floor must be in (0, 1)");
    }
    const double log_floor = std::log(prob_floor);
    const at::Tensor s = student_support.clamp_max(0.0);
    const at::Tensor t = teacher_support.detach().clamp_max(0.0);
    const at::Tensor p = at::exp(s);
    at::Tensor kl = (p * (s - t.clamp_min(log_floor))).sum(-1);
    // Tail: p_tail log(p_tail / q_tail). p_tail is clamped away from 0 for the
    // log; where it is below 1e-9 (a full-vocabulary support) the term is
    // zeroed, as in LumpedReverseKl.
    const at::Tensor p_tail = (1.0 - p.sum(-1)).clamp_min(0.0);
    const at::Tensor q_tail = teacher_tail.defined()
                                  ? at::exp(teacher_tail.detach())
                                  : (1.0 - at::exp(t).sum(-1)).clamp_min(0.0);
    const at::Tensor live = (p_tail > 1e-9).to(kl.scalar_type());
    const at::Tensor safe_p = p_tail.clamp_min(1e-9);
    const at::Tensor tail_term =
        live * safe_p *
        (at::log(safe_p) - at::log(q_tail.clamp_min(prob_floor)));
    *out = kl + tail_term;
    return absl::OkStatus();
  });
}

absl::Status SampledKl(const at::Tensor& new_logprobs,
                       const at::Tensor& teacher_sampled,
                       CostEstimator estimator, double prob_floor,
                       at::Tensor* out) {
  return Guard([&]() -> absl::Status {
    CMDISTILL_RETURN_IF_ERROR(CheckFinite(new_logprobs, "new_logprobs"));
    if (new_logprobs.dim() != 2) {
      return absl::InvalidArgumentError("new_logprobs must be [B, T]");
    }
    CMDISTILL_RETURN_IF_ERROR(
        CheckShape(teacher_sampled, new_logprobs.sizes(), "teacher_sampled"));
    if (!(prob_floor > 0 && prob_floor < 1)) {
      return absl::InvalidArgumentError("prob_floor must be in (0, 1)");
    }
    const at::Tensor log_p = new_logprobs.clamp_max(0.0);
    const at::Tensor log_q =
        teacher_sampled.detach().clamp_max(0.0).clamp_min(std::log(prob_floor));
    const at::Tensor k1 = (log_p - log_q).detach();
    at::Tensor value = k1;
    if (estimator == CostEstimator::kK3) {
      const at::Tensor log_r = -k1;
      value = at::expm1(log_r) - log_r;
    }
    // value + (log π − sg(log π)) · sg(k1): the value is the estimate, the
    // gradient k1 · ∇ log π.
    *out = value + (log_p - log_p.detach()) * k1;
    return absl::OkStatus();
  });
}

absl::Status InfeasibleKlLoss(const at::Tensor& kl,
                              const at::Tensor& infeasible,
                              const at::Tensor& mask, double kappa,
                              at::Tensor* out, double denominator) {
  return Guard([&]() -> absl::Status {
    CMDISTILL_RETURN_IF_ERROR(CheckFinite(kl, "kl"));
    CMDISTILL_RETURN_IF_ERROR(CheckShape(infeasible, kl.sizes(), "infeasible"));
    CMDISTILL_RETURN_IF_ERROR(CheckShape(mask, kl.sizes(), "mask"));
    const at::Tensor m =
        (infeasible.to(kl.scalar_type()) * mask.to(kl.scalar_type()));
    *out = denominator > 0 ? kappa * (kl * m).sum() / denominator
                           : kappa * (kl * m).sum() / m.sum().clamp_min(1.0);
    return absl::OkStatus();
  });
}

absl::Status MethodLoss(const MethodLossInputs& in, const MethodLossOptions& o,
                        at::Tensor* out) {
  return Guard([&]() -> absl::Status {
    auto need = [](const at::Tensor* t, const char* name) -> absl::Status {
      if (t == nullptr)
        return absl::InvalidArgumentError(absl::StrCat(name, " is missing"));
      return absl::OkStatus();
    };
    CMDISTILL_RETURN_IF_ERROR(need(in.mask, "mask"));
    at::Tensor policy;
    if (o.method != Method::kGkd) {
      CMDISTILL_RETURN_IF_ERROR(need(in.new_logprobs, "new_logprobs"));
      CMDISTILL_RETURN_IF_ERROR(
          need(in.behavior_logprobs, "behavior_logprobs"));
      CMDISTILL_RETURN_IF_ERROR(need(in.advantages, "advantages"));
      CMDISTILL_RETURN_IF_ERROR(PpoClipLoss(
          *in.new_logprobs, *in.behavior_logprobs, *in.advantages, *in.mask,
          o.clip_epsilon, o.aggregation, &policy, o.aggregate_denominator));
    }
    switch (o.method) {
      case Method::kSaute:
      case Method::kGrpo:
      case Method::kWeakestLink:
        *out = policy;
        return absl::OkStatus();
      case Method::kCmdp: {
        CMDISTILL_RETURN_IF_ERROR(need(in.kl, "kl"));
        CMDISTILL_RETURN_IF_ERROR(need(in.infeasible, "infeasible"));
        at::Tensor term2;
        CMDISTILL_RETURN_IF_ERROR(InfeasibleKlLoss(*in.kl, *in.infeasible,
                                                   *in.mask, o.kappa, &term2,
                                                   o.infeasible_denominator));
        *out = policy + term2;
        return absl::OkStatus();
      }
      case Method::kSoftLagrangian:
      case Method::kLagrangian: {
        CMDISTILL_RETURN_IF_ERROR(need(in.kl, "kl"));
        if (!std::isfinite(o.lambda) || o.lambda < 0) {
          return absl::InvalidArgumentError("lambda must be finite and >= 0");
        }
        at::Tensor mean_kl;
        CMDISTILL_RETURN_IF_ERROR(MaskedMean(*in.kl, *in.mask, o.aggregation,
                                             &mean_kl,
                                             o.aggregate_denominator));
        *out = policy + o.lambda * mean_kl;
        return absl::OkStatus();
      }
      case Method::kGkd: {
        CMDISTILL_RETURN_IF_ERROR(need(in.kl, "kl"));
        CMDISTILL_RETURN_IF_ERROR(MaskedMean(*in.kl, *in.mask, o.aggregation,
                                             out, o.aggregate_denominator));
        return absl::OkStatus();
      }
    }
    return absl::InvalidArgumentError("unknown method");
  });
}

}  // namespace cmdistill::rl
