// The learner's LibTorch TU: the update step on the student transformer.
#include "services/learner/policy_trainer.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/model/transformer.h"
#include "common/rl/losses.h"

namespace cmdistill::learner {

struct PolicyTrainer::Impl {
  model::LanguageModel* student;
  model::Transformer* t;
  TrainerOptions o;
  std::vector<at::Tensor> params, m, v;
  int64_t step = 0;
  rl::LagrangeController lagrange{rl::LagrangeOptions{}};

  double LearningRate(int64_t s) const {
    if (o.warmup_steps > 0 && s <= o.warmup_steps) {
      return o.lr * static_cast<double>(s) /
             static_cast<double>(o.warmup_steps);
    }
    const double span = static_cast<double>(
        std::max<int64_t>(1, o.total_steps - o.warmup_steps));
    const double p =
        std::min(1.0, static_cast<double>(s - o.warmup_steps) / span);
    switch (o.schedule) {
      case Schedule::kLinear:
        return o.lr * (1 - p);
      case Schedule::kCosine:
        return o.lr * 0.5 * (1 + std::cos(M_PI * p));
      default:
        return o.lr;
    }
  }
};

PolicyTrainer::PolicyTrainer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
PolicyTrainer::~PolicyTrainer() = default;

absl::StatusOr<std::unique_ptr<PolicyTrainer>> PolicyTrainer::Create(
    model::LanguageModel* student, TrainerOptions options) {
  if (student == nullptr) return absl::InvalidArgumentError("no student");
  if (!(options.lr > 0) || !(options.temperature > 0)) {
    return absl::InvalidArgumentError("lr and temperature must be > 0");
  }
  auto impl = std::make_unique<Impl>();
  impl->student = student;
  impl->t = student->transformer();
  impl->o = options;
  impl->lagrange = rl::LagrangeController(options.lagrange);
  impl->t->SetRequiresGrad(true);
  impl->params = impl->t->parameters();
  for (const at::Tensor& p : impl->params) {
    impl->m.push_back(at::zeros_like(p, at::TensorOptions().dtype(at::kFloat)));
    impl->v.push_back(at::zeros_like(p, at::TensorOptions().dtype(at::kFloat)));
  }
  return std::unique_ptr<PolicyTrainer>(new PolicyTrainer(std::move(impl)));
}

double PolicyTrainer::lambda() const {
  return impl_->o.method == rl::Method::kSoftLagrangian
             ? impl_->o.fixed_lambda
             : impl_->lagrange.lambda();
}
int64_t PolicyTrainer::step() const { return impl_->step; }

absl::StatusOr<StepStats> PolicyTrainer::Step(
    const std::vector<std::vector<v1::Trajectory>>& groups) {
  Impl& I = *impl_;
  const TrainerOptions& o = I.o;
  const bool uses_kl = o.method == rl::Method::kCmdp ||
                       o.method == rl::Method::kSoftLagrangian ||
                       o.method == rl::Method::kLagrangian ||
                       o.method == rl::Method::kGkd;
  // ---- validate and collect
  std::vector<const v1::Trajectory*> trajs;
  std::vector<double> advantages;
  StepStats st;
  int64_t K = -1, Tmax = 0;
  double cost_sum = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    std::vector<double> returns;
    for (const v1::Trajectory& t : groups[g]) {
      const int64_t T = t.completion_ids_size();
      const auto& ev = t.evaluation();
      const std::string where = absl::StrCat("trajectory ", t.trajectory_id());
      if (t.prompt_ids_size() == 0)
        return absl::InvalidArgumentError(where + ": empty prompt");
      if (t.behavior_logprobs_size() != T || ev.feasible_size() != T) {
        return absl::InvalidArgumentError(
            where +
            ": behavior_logprobs and evaluation.feasible must have one value "
            "per token");
      }
      if (uses_kl && T > 0) {
        const int64_t k = t.support().k();
        if (K < 0) K = k;
        if (k != K)
          return absl::InvalidArgumentError(
              where + ": support sizes differ in a batch");
        if (k > 0 && (t.support().token_ids_size() != T * k ||
                      t.teacher_support_logprobs_size() != T * k)) {
          return absl::InvalidArgumentError(
              where + ": support arrays must have T*K values");
        }
        if (k == 0 && t.teacher_sampled_logprobs_size() != T) {
          return absl::InvalidArgumentError(
              where + ": teacher_sampled_logprobs missing");
        }
      }
      for (int i = 0; i < T; ++i) {
        if (t.completion_ids(i) < 0 ||
            t.completion_ids(i) >= I.t->config().vocab_size) {
          return absl::InvalidArgumentError(
              where + ": token id outside the vocabulary");
        }
      }
      if (!std::isfinite(ev.trajectory_return())) {
        return absl::InvalidArgumentError(where + ": non-finite return");
      }
      returns.push_back(ev.trajectory_return());
      st.mean_return += ev.trajectory_return();
      st.mean_task_reward += ev.task_reward();
      st.satisfaction += ev.constraint_satisfied() ? 1 : 0;
      cost_sum += ev.cost_used();
      Tmax = std::max(Tmax, T);
      trajs.push_back(&t);
    }
    auto adv =
        rl::GroupAdvantages(returns, o.std_normalization, o.advantage_eps);
    if (!adv.ok()) return adv.status();
    advantages.insert(advantages.end(), adv->begin(), adv->end());
  }
  if (trajs.empty()) return absl::InvalidArgumentError("no trajectories");
  const double n = static_cast<double>(trajs.size());
  st.mean_return /= n;
  st.mean_task_reward /= n;
  st.satisfaction /= n;
  st.mean_cost = cost_sum / n;
  if (K < 0) K = 0;
  if (Tmax == 0)
    return absl::InvalidArgumentError("no completion tokens in the batch");

  try {
    const int64_t B = static_cast<int64_t>(trajs.size());
    // ---- inputs: prompt + completion[:-1], left-padded
    int64_t W = 0;
    for (auto* t : trajs) {
      W = std::max<int64_t>(
          W, t->prompt_ids_size() + std::max(0, t->completion_ids_size() - 1));
    }
    std::vector<int64_t> ids(B * W, 0), mask(B * W, 0), pos(B * W, 0),
        rows(B * Tmax, 0), comp(B * Tmax, 0), cmask(B * Tmax, 0);
    std::vector<float> behav(B * Tmax, 0.f), infeas(B * Tmax, 0.f),
        tsampled(B * Tmax, 0.f);
    std::vector<int64_t> sup(B * Tmax * std::max<int64_t>(K, 1), 0);
    std::vector<float> tsup(B * Tmax * std::max<int64_t>(K, 1), 0.f),
        ttail(B * Tmax, 0.f);
    bool have_tail = K > 0;
    for (int64_t b = 0; b < B; ++b) {
      const v1::Trajectory& t = *trajs[b];
      const int64_t P = t.prompt_ids_size(), T = t.completion_ids_size();
      const int64_t L = P + std::max<int64_t>(0, T - 1), pad = W - L;
      for (int64_t i = 0; i < L; ++i) {
        ids[b * W + pad + i] =
            i < P ? t.prompt_ids(i) : t.completion_ids(i - P);
        mask[b * W + pad + i] = 1;
        pos[b * W + pad + i] = i;
      }
      have_tail = have_tail && t.teacher_tail_logprobs_size() == T;
      for (int64_t i = 0; i < T; ++i) {
        rows[b * Tmax + i] = pad + P - 1 + i;
        comp[b * Tmax + i] = t.completion_ids(i);
        cmask[b * Tmax + i] = 1;
        behav[b * Tmax + i] = t.behavior_logprobs(i);
        infeas[b * Tmax + i] = t.evaluation().feasible(i) ? 0.f : 1.f;
        if (t.teacher_sampled_logprobs_size() == T)
          tsampled[b * Tmax + i] = t.teacher_sampled_logprobs(i);
        if (t.teacher_tail_logprobs_size() == T)
          ttail[b * Tmax + i] = t.teacher_tail_logprobs(i);
        for (int64_t k = 0; k < K && uses_kl; ++k) {
          sup[(b * Tmax + i) * K + k] = t.support().token_ids(i * K + k);
          tsup[(b * Tmax + i) * K + k] = t.teacher_support_logprobs(i * K + k);
        }
      }
      st.tokens += T;
    }
    const c10::Device dev = I.t->device();
    auto L64 = [&](std::vector<int64_t>& v, std::vector<int64_t> shape) {
      return at::tensor(v, at::kLong).view(shape).to(dev);
    };
    auto F32 = [&](std::vector<float>& v, std::vector<int64_t> shape) {
      return at::tensor(v, at::kFloat).view(shape).to(dev);
    };
    const at::Tensor logits =
        I.t->Forward(L64(ids, {B, W}), L64(pos, {B, W}), L64(mask, {B, W}),
                     nullptr);  // [B, W, V]
    const int64_t V = logits.size(2);
    const at::Tensor row_idx = L64(rows, {B, Tmax, 1}).expand({B, Tmax, V});
    const at::Tensor lp =
        at::log_softmax(logits.gather(1, row_idx) / o.temperature, -1);
    const at::Tensor comp_t = L64(comp, {B, Tmax});
    const at::Tensor new_lp =
        lp.gather(-1, comp_t.unsqueeze(-1)).squeeze(-1);  // [B, Tmax]
    const at::Tensor cmask_t = L64(cmask, {B, Tmax}).to(at::kFloat);
    const at::Tensor behav_t = F32(behav, {B, Tmax});
    const at::Tensor adv_t =
        at::tensor(advantages, at::kDouble).to(at::kFloat).to(dev);
    const at::Tensor infeas_t = F32(infeas, {B, Tmax});
    at::Tensor kl;
    if (uses_kl) {
      if (K > 0) {
        const at::Tensor sup_t = L64(sup, {B, Tmax, K});
        const at::Tensor student_sup = lp.gather(-1, sup_t);
        auto s = rl::SupportKl(student_sup, F32(tsup, {B, Tmax, K}),
                               have_tail ? F32(ttail, {B, Tmax}) : at::Tensor(),
                               o.prob_floor, &kl);
        if (!s.ok()) return s;
      } else {
        kl = new_lp -
             F32(tsampled, {B, Tmax}).clamp_min(std::log(o.prob_floor));  // k1
      }
      st.mean_token_kl =
          ((kl.detach() * cmask_t).sum() / cmask_t.sum().clamp_min(1.0))
              .item<double>();
    }
    rl::MethodLossInputs in{
        &new_lp,  &behav_t, &adv_t, &cmask_t, uses_kl ? &kl : nullptr,
        &infeas_t};
    rl::MethodLossOptions mo;
    mo.method = o.method;
    mo.clip_epsilon = o.clip_epsilon;
    mo.kappa = o.kappa;
    mo.lambda = lambda();
    at::Tensor loss;
    if (auto s = rl::MethodLoss(in, mo, &loss); !s.ok()) return s;
    for (at::Tensor& p : I.params) p.mutable_grad() = at::Tensor();
    loss.backward();
    st.loss = loss.item<double>();
    // ---- clip, AdamW
    double sq = 0;
    for (const at::Tensor& p : I.params) {
      if (p.grad().defined())
        sq += p.grad().to(at::kFloat).pow(2).sum().item<double>();
    }
    st.grad_norm = std::sqrt(sq);
    if (!std::isfinite(st.grad_norm)) {
      return absl::InternalError("non-finite gradient; the update was skipped");
    }
    const double clip = o.grad_clip > 0 && st.grad_norm > o.grad_clip
                            ? o.grad_clip / st.grad_norm
                            : 1.0;
    ++I.step;
    st.step = I.step;
    st.lr = I.LearningRate(I.step);
    const double bc1 = 1 - std::pow(o.beta1, static_cast<double>(I.step));
    const double bc2 = 1 - std::pow(o.beta2, static_cast<double>(I.step));
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < I.params.size(); ++i) {
      at::Tensor& p = I.params[i];
      if (!p.grad().defined()) continue;
      const at::Tensor g = p.grad().to(at::kFloat) * clip;
      I.m[i].mul_(o.beta1).add_(g, 1 - o.beta1);
      I.v[i].mul_(o.beta2).addcmul_(g, g, 1 - o.beta2);
      const at::Tensor update =
          (I.m[i] / bc1) / ((I.v[i] / bc2).sqrt() + o.eps);
      at::Tensor pf = p.to(at::kFloat);
      pf.mul_(1 - st.lr * o.weight_decay).sub_(update, st.lr);
      p.copy_(pf);
      p.mutable_grad() = at::Tensor();
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("LibTorch: ", e.what_without_backtrace()));
  }
  if (o.method == rl::Method::kLagrangian) {
    auto l = I.lagrange.Update(st.mean_cost, o.budget);
    if (!l.ok()) return l.status();
  }
  st.lambda = lambda();
  return st;
}

TrainerState PolicyTrainer::SaveState() const {
  TrainerState s;
  s.step = impl_->step;
  s.lagrange = impl_->lagrange.state();
  for (size_t i = 0; i < impl_->params.size(); ++i) {
    for (const at::Tensor* t : {&impl_->m[i], &impl_->v[i]}) {
      const at::Tensor c = t->to(at::kCPU).contiguous();
      s.moments.emplace_back(static_cast<const char*>(c.data_ptr()),
                             c.nbytes());
    }
  }
  return s;
}

absl::Status PolicyTrainer::RestoreState(const TrainerState& s) {
  if (s.moments.size() != 2 * impl_->params.size()) {
    return absl::InvalidArgumentError(
        "optimizer state does not match the model's parameters");
  }
  for (size_t i = 0; i < impl_->params.size(); ++i) {
    for (int j = 0; j < 2; ++j) {
      at::Tensor& t = j == 0 ? impl_->m[i] : impl_->v[i];
      const std::string& bytes = s.moments[2 * i + j];
      if (bytes.size() != t.nbytes()) {
        return absl::InvalidArgumentError(
            "optimizer state has a tensor of the wrong size");
      }
      at::Tensor host = at::empty(t.sizes(), at::kFloat);
      std::memcpy(host.data_ptr(), bytes.data(), bytes.size());
      t.copy_(host);
    }
  }
  if (auto st = impl_->lagrange.Restore(s.lagrange); !st.ok()) return st;
  impl_->step = s.step;
  return absl::OkStatus();
}

}  // namespace cmdistill::learner
