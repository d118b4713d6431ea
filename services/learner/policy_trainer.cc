// The learner's LibTorch TU: the update step on the student transformer.
#include "services/learner/policy_trainer.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/model/transformer.h"
#include "common/rl/losses.h"
#include "services/learner/adamw.h"

namespace cmdistill::learner {

struct PolicyTrainer::Impl {
  model::LanguageModel* student;
  model::Transformer* t;
  TrainerOptions o;
  std::unique_ptr<AdamW> adamw;
  rl::LagrangeController lagrange{rl::LagrangeOptions{}};
};

PolicyTrainer::PolicyTrainer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
PolicyTrainer::~PolicyTrainer() = default;

absl::StatusOr<std::unique_ptr<PolicyTrainer>> PolicyTrainer::Create(
    model::LanguageModel* student, TrainerOptions options) {
  if (student == nullptr) return absl::InvalidArgumentError("no student");
  if (!(options.optimizer.lr > 0) || !(options.temperature > 0)) {
    return absl::InvalidArgumentError("lr and temperature must be > 0");
  }
  auto impl = std::make_unique<Impl>();
  impl->student = student;
  impl->t = student->transformer();
  impl->o = options;
  impl->lagrange = rl::LagrangeController(options.lagrange);
  impl->t->SetRequiresGrad(true);
  impl->adamw =
      std::make_unique<AdamW>(impl->t->parameters(), options.optimizer);
  return std::unique_ptr<PolicyTrainer>(new PolicyTrainer(std::move(impl)));
}

double PolicyTrainer::lambda() const {
  return impl_->o.method == rl::Method::kSoftLagrangian
             ? impl_->o.fixed_lambda
             : impl_->lagrange.lambda();
}
int64_t PolicyTrainer::step() const { return impl_->adamw->step(); }
std::string PolicyTrainer::PrecisionWarning() const {
  return impl_->adamw->PrecisionWarning();
}
int64_t PolicyTrainer::vocab_size() const {
  return impl_->student->config().vocab_size;
}
absl::StatusOr<std::string> PolicyTrainer::SerializeWeights() const {
  return impl_->student->SerializeWeights();
}
absl::Status PolicyTrainer::SavePolicy(
    const std::string& dir, const std::string& tokenizer_from) const {
  checkpoint::WriteOptions wo;
  wo.copy_tokenizer_from = tokenizer_from;
  return impl_->student->Save(dir, wo);
}

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
  bool have_teacher_data = true;
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
      if (!uses_kl && T > 0) {
        // Reward-only methods: the teacher's scores, when the actors asked
        // for them, only feed the KL statistic.
        const int64_t k = t.support().k();
        const bool complete =
            k > 0 ? t.support().token_ids_size() == T * k &&
                        t.teacher_support_logprobs_size() == T * k
                  : t.teacher_sampled_logprobs_size() == T;
        if (K < 0) K = k;
        have_teacher_data = have_teacher_data && complete && k == K;
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
  const bool compute_kl = uses_kl || have_teacher_data;
  if (Tmax == 0)
    return absl::InvalidArgumentError("no completion tokens in the batch");

  // Whole-step denominators, so that the micro-batches' losses sum to the
  // loss of the whole batch (token-mean over real tokens; term II over
  // infeasible tokens).
  double total_tokens = 0, total_infeasible = 0;
  for (const v1::Trajectory* t : trajs) {
    total_tokens += t->completion_ids_size();
    for (bool f : t->evaluation().feasible()) total_infeasible += f ? 0 : 1;
  }
  const size_t micro = o.micro_batch_sequences > 0
                           ? static_cast<size_t>(o.micro_batch_sequences)
                           : trajs.size();
  double kl_sum = 0;
  try {
    for (at::Tensor& p : I.t->parameters()) p.mutable_grad() = at::Tensor();
    double loss_sum = 0;
    for (size_t c0 = 0; c0 < trajs.size(); c0 += micro) {
      const size_t c1 = std::min(trajs.size(), c0 + micro);
      const int64_t B = static_cast<int64_t>(c1 - c0);
      int64_t Tmax = 0;
      for (size_t i = c0; i < c1; ++i)
        Tmax = std::max<int64_t>(Tmax, trajs[i]->completion_ids_size());
      if (Tmax == 0) continue;
      // ---- inputs: prompt + completion[:-1], left-padded
      int64_t W = 0;
      for (size_t i = c0; i < c1; ++i) {
        const v1::Trajectory* t = trajs[i];
        W = std::max<int64_t>(W, t->prompt_ids_size() +
                                     std::max(0, t->completion_ids_size() - 1));
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
        const v1::Trajectory& t = *trajs[c0 + b];
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
          for (int64_t k = 0; k < K && compute_kl; ++k) {
            sup[(b * Tmax + i) * K + k] = t.support().token_ids(i * K + k);
            tsup[(b * Tmax + i) * K + k] =
                t.teacher_support_logprobs(i * K + k);
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
          at::tensor(std::vector<double>(advantages.begin() + c0,
                                         advantages.begin() + c1),
                     at::kDouble)
              .to(at::kFloat)
              .to(dev);
      const at::Tensor infeas_t = F32(infeas, {B, Tmax});
      at::Tensor kl;
      if (compute_kl) {
        if (K > 0 && o.cost_estimator == rl::CostEstimator::kSupportKl) {
          const at::Tensor sup_t = L64(sup, {B, Tmax, K});
          const at::Tensor student_sup = lp.gather(-1, sup_t);
          auto s =
              rl::SupportKl(student_sup, F32(tsup, {B, Tmax, K}),
                            have_tail ? F32(ttail, {B, Tmax}) : at::Tensor(),
                            o.prob_floor, &kl);
          if (!s.ok()) return s;
        } else {
          // No support, or a sampled-token cost configured: the surrogate
          // whose gradient is the reverse KL's (score function), not a
          // differentiable k1 (whose expected gradient is zero).
          auto s = rl::SampledKl(new_lp, F32(tsampled, {B, Tmax}),
                                 o.cost_estimator, o.prob_floor, &kl);
          if (!s.ok()) return s;
        }
        kl_sum += (kl.detach() * cmask_t).sum().item<double>();
      }
      rl::MethodLossInputs in{
          &new_lp,  &behav_t, &adv_t, &cmask_t, uses_kl ? &kl : nullptr,
          &infeas_t};
      rl::MethodLossOptions mo;
      mo.method = o.method;
      mo.clip_epsilon = o.clip_epsilon;
      mo.kappa = o.kappa;
      mo.lambda = lambda();
      mo.aggregate_denominator = total_tokens;
      mo.infeasible_denominator =
          o.term_two_over_all_tokens ? total_tokens : total_infeasible;
      at::Tensor loss;
      if (auto s = rl::MethodLoss(in, mo, &loss); !s.ok()) return s;
      loss.backward();
      loss_sum += loss.item<double>();
    }
    st.loss = loss_sum;
    st.mean_token_kl = total_tokens > 0 ? kl_sum / total_tokens : 0;
    auto info = I.adamw->Step();
    if (!info.ok()) return info.status();
    st.grad_norm = info->grad_norm;
    st.lr = info->lr;
    st.step = I.adamw->step();
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
  s.step = impl_->adamw->step();
  s.lagrange = impl_->lagrange.state();
  s.moments = impl_->adamw->SaveMoments();
  s.master_weights = impl_->adamw->SaveMasterWeights();
  return s;
}

absl::Status PolicyTrainer::RestoreState(const TrainerState& s) {
  if (auto st = impl_->lagrange.Restore(s.lagrange); !st.ok()) return st;
  return impl_->adamw->Restore(s.moments, s.step, s.master_weights);
}

}  // namespace cmdistill::learner
