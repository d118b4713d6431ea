// The learner's LibTorch TU: the update step on the student transformer.
#include "services/learner/policy_trainer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard (not in ATen.h on 2.x)

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/model/transformer.h"
#include "common/rl/losses.h"
#include "common/rl/trajectory_checks.h"
#include "common/status/status_macros.h"
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

// A step's trajectories, checked, with their group advantages, the batch
// statistics and the whole-step denominators (so that the micro-batches'
// losses sum to the loss of the whole batch: token-mean over real tokens,
// term II over infeasible tokens).
struct StepBatch {
  std::vector<const v1::Trajectory*> trajs;
  std::vector<double> advantages;
  StepStats stats;  // mean return, task reward, satisfaction, cost
  int64_t K = 0;    // support size (0: sampled tokens only)
  bool compute_kl = false;
  double total_tokens = 0, total_infeasible = 0;
};

namespace {

bool UsesKl(rl::Method m) {
  return m == rl::Method::kCmdp || m == rl::Method::kSoftLagrangian ||
         m == rl::Method::kLagrangian || m == rl::Method::kGkd;
}

// The wire contract (rl::ValidateTrajectory), then the method's needs of one
// trajectory: sampled and evaluated arrays complete, the teacher's scores for
// the KL methods, one support size per batch. Updates the batch's support
// size `K` (-1 until known) and whether every trajectory carries the
// teacher's scores.
absl::Status CheckForMethod(const v1::Trajectory& t, bool uses_kl,
                            int64_t vocab, int64_t* K,
                            bool* have_teacher_data) {
  const int64_t T = t.completion_ids_size();
  const auto& ev = t.evaluation();
  const std::string where = absl::StrCat("trajectory ", t.trajectory_id());
  rl::TrajectoryContract contract;
  contract.vocab_size = vocab;
  CMDISTILL_RETURN_IF_ERROR_ANNOTATED(rl::ValidateTrajectory(t, contract),
                                      where);
  if (t.behavior_logprobs_size() != T || ev.feasible_size() != T) {
    return absl::InvalidArgumentError(
        where +
        ": behavior_logprobs and evaluation.feasible must have one value "
        "per token");
  }
  const int64_t k = t.support().k();
  if (!uses_kl && T > 0) {
    // Reward-only methods: the teacher's scores, when the actors asked for
    // them, only feed the KL statistic.
    const bool complete = k > 0 ? t.teacher_support_logprobs_size() == T * k
                                : t.teacher_sampled_logprobs_size() == T;
    if (*K < 0) *K = k;
    *have_teacher_data = *have_teacher_data && complete && k == *K;
  }
  if (uses_kl && T > 0) {
    if (*K < 0) *K = k;
    if (k != *K)
      return absl::InvalidArgumentError(where +
                                        ": support sizes differ in a batch");
    if (k > 0 && t.teacher_support_logprobs_size() != T * k) {
      return absl::InvalidArgumentError(
          where + ": teacher_support_logprobs missing (the method needs T*K)");
    }
    if (k == 0 && t.teacher_sampled_logprobs_size() != T) {
      return absl::InvalidArgumentError(where +
                                        ": teacher_sampled_logprobs missing");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<StepBatch> CollectBatch(
    const std::vector<std::vector<v1::Trajectory>>& groups,
    const TrainerOptions& o, int64_t vocab) {
  const bool uses_kl = UsesKl(o.method);
  StepBatch b;
  int64_t K = -1, Tmax = 0;
  bool have_teacher_data = true;
  double cost_sum = 0;
  double styled = 0, teacher_style = 0, foreign_style = 0;
  for (const auto& group : groups) {
    std::vector<double> returns;
    for (const v1::Trajectory& t : group) {
      CMDISTILL_RETURN_IF_ERROR(
          CheckForMethod(t, uses_kl, vocab, &K, &have_teacher_data));
      const auto& ev = t.evaluation();
      returns.push_back(ev.trajectory_return());
      b.stats.mean_return += ev.trajectory_return();
      b.stats.mean_task_reward += ev.task_reward();
      b.stats.satisfaction += ev.constraint_satisfied() ? 1 : 0;
      cost_sum += ev.cost_used();
      if (ev.style() != v1::ANSWER_STYLE_UNSPECIFIED) {
        styled += 1;
        teacher_style += ev.style() == v1::ANSWER_STYLE_TEACHER ? 1 : 0;
        foreign_style += ev.style() == v1::ANSWER_STYLE_FOREIGN ? 1 : 0;
      }
      Tmax = std::max<int64_t>(Tmax, t.completion_ids_size());
      b.trajs.push_back(&t);
    }
    CMDISTILL_ASSIGN_OR_RETURN(
        auto adv,
        rl::GroupAdvantages(returns, o.std_normalization, o.advantage_eps));
    if (std::any_of(returns.begin(), returns.end(),
                    [&](double r) { return r != returns.front(); }))
      b.stats.diagnostics.groups_with_signal += 1;
    b.advantages.insert(b.advantages.end(), adv.begin(), adv.end());
  }
  if (b.trajs.empty()) return absl::InvalidArgumentError("no trajectories");
  const double n = static_cast<double>(b.trajs.size());
  b.stats.mean_return /= n;
  b.stats.mean_task_reward /= n;
  b.stats.satisfaction /= n;
  b.stats.mean_cost = cost_sum / n;
  b.stats.diagnostics.groups_with_signal /=
      static_cast<double>(std::max<size_t>(groups.size(), 1));
  {
    double mean = 0, var = 0;
    for (double a : b.advantages) mean += a;
    mean /= n;
    for (double a : b.advantages) var += (a - mean) * (a - mean);
    b.stats.diagnostics.advantage_std = std::sqrt(var / n);
  }
  b.K = std::max<int64_t>(K, 0);
  b.compute_kl = uses_kl || have_teacher_data;
  if (Tmax == 0)
    return absl::InvalidArgumentError("no completion tokens in the batch");
  if (styled > 0) {  // the embedded task: answers classified
    b.stats.diagnostics.teacher_style = teacher_style / styled;
    b.stats.diagnostics.foreign_style = foreign_style / styled;
  }
  for (const v1::Trajectory* t : b.trajs) {
    b.total_tokens += t->completion_ids_size();
    b.stats.diagnostics.length += t->completion_ids_size() / n;
    for (bool f : t->evaluation().feasible()) b.total_infeasible += f ? 0 : 1;
  }
  return b;
}

// Trajectories [c0, c1) as host arrays: inputs (prompt + completion[:-1],
// left-padded to W), and per completion position [B, Tmax] the row of its
// logits, the token, masks, behaviour and teacher log-probabilities, and the
// support [B, Tmax, K].
struct Packed {
  int64_t B = 0, W = 0, Tmax = 0, tokens = 0;
  std::vector<int64_t> ids, mask, pos, rows, comp, cmask, sup;
  std::vector<float> behav, infeas, tsampled, tsup, ttail;
  bool have_tail = false;
};

void PackSequence(const v1::Trajectory& t, int64_t b, int64_t K,
                  bool compute_kl, Packed* p) {
  const int64_t W = p->W, Tmax = p->Tmax;
  const int64_t P = t.prompt_ids_size(), T = t.completion_ids_size();
  const int64_t L = P + std::max<int64_t>(0, T - 1), pad = W - L;
  for (int64_t i = 0; i < L; ++i) {
    p->ids[b * W + pad + i] = i < P ? t.prompt_ids(i) : t.completion_ids(i - P);
    p->mask[b * W + pad + i] = 1;
    p->pos[b * W + pad + i] = i;
  }
  p->have_tail = p->have_tail && t.teacher_tail_logprobs_size() == T;
  for (int64_t i = 0; i < T; ++i) {
    const int64_t at = b * Tmax + i;
    p->rows[at] = pad + P - 1 + i;
    p->comp[at] = t.completion_ids(i);
    p->cmask[at] = 1;
    p->behav[at] = t.behavior_logprobs(i);
    p->infeas[at] = t.evaluation().feasible(i) ? 0.f : 1.f;
    if (t.teacher_sampled_logprobs_size() == T)
      p->tsampled[at] = t.teacher_sampled_logprobs(i);
    if (t.teacher_tail_logprobs_size() == T)
      p->ttail[at] = t.teacher_tail_logprobs(i);
    for (int64_t k = 0; k < K && compute_kl; ++k) {
      p->sup[at * K + k] = t.support().token_ids(i * K + k);
      p->tsup[at * K + k] = t.teacher_support_logprobs(i * K + k);
    }
  }
  p->tokens += T;
}

Packed Pack(const StepBatch& batch, size_t c0, size_t c1) {
  Packed p;
  p.B = static_cast<int64_t>(c1 - c0);
  for (size_t i = c0; i < c1; ++i) {
    const v1::Trajectory* t = batch.trajs[i];
    p.Tmax = std::max<int64_t>(p.Tmax, t->completion_ids_size());
    p.W = std::max<int64_t>(
        p.W, t->prompt_ids_size() + std::max(0, t->completion_ids_size() - 1));
  }
  const int64_t BW = p.B * p.W, BT = p.B * p.Tmax;
  const int64_t BTK = BT * std::max<int64_t>(batch.K, 1);
  p.ids.assign(BW, 0);
  p.mask.assign(BW, 0);
  p.pos.assign(BW, 0);
  p.rows.assign(BT, 0);
  p.comp.assign(BT, 0);
  p.cmask.assign(BT, 0);
  p.behav.assign(BT, 0.f);
  p.infeas.assign(BT, 0.f);
  p.tsampled.assign(BT, 0.f);
  p.ttail.assign(BT, 0.f);
  p.sup.assign(BTK, 0);
  p.tsup.assign(BTK, 0.f);
  p.have_tail = batch.K > 0;
  for (int64_t b = 0; b < p.B; ++b)
    PackSequence(*batch.trajs[c0 + b], b, batch.K, batch.compute_kl, &p);
  return p;
}

// Whether the KL is the support KL (the trajectories carry a support and the
// cost is support_kl).
bool UsesSupport(const TrainerOptions& o, int64_t K) {
  return K > 0 && o.cost_estimator == rl::CostEstimator::kSupportKl;
}

// The per-token KL the loss and the statistic use: the support KL when the
// trajectories carry a support and the cost is support_kl; otherwise the
// sampled-token surrogate whose gradient is the reverse KL's (score
// function), not a differentiable k1 (whose expected gradient is zero).
// `student_sup` [B, Tmax, K]: the student's log-probabilities on the stored
// support (used when UsesSupport).
absl::Status TokenKl(const TrainerOptions& o, const Packed& p, int64_t K,
                     const at::Tensor& student_sup, const at::Tensor& new_lp,
                     const c10::Device& dev, at::Tensor* kl) {
  auto F32 = [&](const std::vector<float>& v, std::vector<int64_t> shape) {
    return at::tensor(v, at::kFloat).view(shape).to(dev);
  };
  const int64_t B = p.B, Tmax = p.Tmax;
  if (UsesSupport(o, K)) {
    return rl::SupportKl(student_sup, F32(p.tsup, {B, Tmax, K}),
                         p.have_tail ? F32(p.ttail, {B, Tmax}) : at::Tensor(),
                         o.prob_floor, kl);
  }
  return rl::SampledKl(new_lp, F32(p.tsampled, {B, Tmax}), o.cost_estimator,
                       o.prob_floor, kl);
}

}  // namespace

// One micro-batch [c0, c1): forward, the method's loss, backward (gradients
// accumulate). Returns the loss; adds the KL over real tokens to `kl_sum`.
absl::StatusOr<double> PolicyTrainer::MicroBatch(const StepBatch& batch,
                                                 size_t c0, size_t c1,
                                                 double* kl_sum,
                                                 rl::StepDiagnostics* diag) {
  Impl& I = *impl_;
  const TrainerOptions& o = I.o;
  Packed p = Pack(batch, c0, c1);
  const int64_t B = p.B, W = p.W, Tmax = p.Tmax;
  const c10::Device dev = I.t->device();
  auto L64 = [&](std::vector<int64_t>& v, std::vector<int64_t> shape) {
    return at::tensor(v, at::kLong).view(shape).to(dev);
  };
  auto F32 = [&](std::vector<float>& v, std::vector<int64_t> shape) {
    return at::tensor(v, at::kFloat).view(shape).to(dev);
  };
  // The rows that predict completion tokens, taken before the head: the
  // prompt rows' logits ([B, W - Tmax, V], most of them with a real
  // vocabulary) are never computed.
  const at::Tensor hidden =
      I.t->Hidden(L64(p.ids, {B, W}), L64(p.pos, {B, W}), L64(p.mask, {B, W}),
                  nullptr);  // [B, W, hidden]
  const int64_t Hd = hidden.size(2);
  const at::Tensor row_idx = L64(p.rows, {B, Tmax, 1}).expand({B, Tmax, Hd});
  // The student's log-probabilities at the sampled token and, for the support
  // KL, at the stored support: [B, Tmax, 1 (+ K)], without [B, Tmax, V]
  // logits kept for backward (Transformer::LogProbsAt).
  const bool support = batch.compute_kl && UsesSupport(o, batch.K);
  at::Tensor ids = L64(p.comp, {B, Tmax}).unsqueeze(-1);
  if (support) ids = at::cat({ids, L64(p.sup, {B, Tmax, batch.K})}, -1);
  const int64_t J = ids.size(-1);
  const at::Tensor lps =
      I.t->LogProbsAt(hidden.gather(1, row_idx).reshape({B * Tmax, Hd}),
                      ids.reshape({B * Tmax, J}), o.temperature)
          .view({B, Tmax, J});
  const at::Tensor new_lp = lps.select(-1, 0);  // [B, Tmax]
  const at::Tensor student_sup =
      support ? lps.narrow(-1, 1, batch.K) : at::Tensor();
  const at::Tensor cmask_t = L64(p.cmask, {B, Tmax}).to(at::kFloat);
  const at::Tensor behav_t = F32(p.behav, {B, Tmax});
  const at::Tensor adv_t =
      at::tensor(std::vector<double>(batch.advantages.begin() + c0,
                                     batch.advantages.begin() + c1),
                 at::kDouble)
          .to(at::kFloat)
          .to(dev);
  const at::Tensor infeas_t = F32(p.infeas, {B, Tmax});
  {
    // Diagnostics from the values before this step's update (no gradient).
    at::NoGradGuard no_grad;
    const at::Tensor lp = new_lp.detach();
    const at::Tensor log_r = (lp - behav_t) * cmask_t;
    const at::Tensor r = log_r.exp();
    const at::Tensor a = adv_t.view({B, 1}).expand({B, Tmax});
    const double eps = o.clip_epsilon;
    const at::Tensor clipped = ((a > 0).logical_and(r > 1 + eps))
                                   .logical_or((a < 0).logical_and(r < 1 - eps))
                                   .to(at::kFloat) *
                               cmask_t;
    diag->clip_fraction += clipped.sum().item<double>();
    diag->approx_kl += (((r - 1) - log_r) * cmask_t).sum().item<double>();
    diag->entropy += (-lp * cmask_t).sum().item<double>();
    diag->ratio_mean += (r * cmask_t).sum().item<double>();
    // Padding has log_r = 0 (ratio 1), which never exceeds a real maximum
    // below 1 by much; take the max over real tokens only.
    const at::Tensor masked = r.masked_fill(cmask_t == 0, 0);
    diag->ratio_max = std::max(diag->ratio_max, masked.max().item<double>());
  }
  at::Tensor kl;
  if (batch.compute_kl) {
    CMDISTILL_RETURN_IF_ERROR(
        TokenKl(o, p, batch.K, student_sup, new_lp, dev, &kl));
    *kl_sum += (kl.detach() * cmask_t).sum().item<double>();
  }
  const bool uses_kl = UsesKl(o.method);
  rl::MethodLossInputs in{
      &new_lp, &behav_t, &adv_t, &cmask_t, uses_kl ? &kl : nullptr, &infeas_t};
  rl::MethodLossOptions mo;
  mo.method = o.method;
  mo.clip_epsilon = o.clip_epsilon;
  mo.kappa = o.kappa;
  mo.lambda = lambda();
  mo.aggregate_denominator = batch.total_tokens;
  mo.infeasible_denominator =
      o.term_two_over_all_tokens ? batch.total_tokens : batch.total_infeasible;
  at::Tensor loss;
  CMDISTILL_RETURN_IF_ERROR(rl::MethodLoss(in, mo, &loss));
  loss.backward();
  return loss.item<double>();
}

absl::StatusOr<StepStats> PolicyTrainer::Step(
    const std::vector<std::vector<v1::Trajectory>>& groups) {
  Impl& I = *impl_;
  const TrainerOptions& o = I.o;
  CMDISTILL_ASSIGN_OR_RETURN(auto batch,
                             CollectBatch(groups, o, I.t->config().vocab_size));
  StepStats st = batch.stats;
  const size_t n = batch.trajs.size();
  const size_t micro = o.micro_batch_sequences > 0
                           ? static_cast<size_t>(o.micro_batch_sequences)
                           : n;
  // Prompt and completion rows: what the step's forward and backward cover.
  int64_t step_rows = 0;
  for (const v1::Trajectory* t : batch.trajs)
    step_rows += t->prompt_ids_size() + t->completion_ids_size();
  const model::TunedThreadsScope threads =
      I.t->ThreadsFor(model::Transformer::kTrainStep, step_rows,
                      static_cast<double>(step_rows));
  try {
    for (at::Tensor& p : I.t->parameters()) p.mutable_grad() = at::Tensor();
    double kl_sum = 0;
    rl::StepDiagnostics diag;
    diag.ratio_mean = 0;
    diag.ratio_max = 0;
    for (size_t c0 = 0; c0 < n; c0 += micro) {
      const size_t c1 = std::min(n, c0 + micro);
      int64_t tokens = 0;
      for (size_t i = c0; i < c1; ++i)
        tokens += batch.trajs[i]->completion_ids_size();
      if (tokens == 0) continue;
      CMDISTILL_ASSIGN_OR_RETURN(auto loss,
                                 MicroBatch(batch, c0, c1, &kl_sum, &diag));
      st.loss += loss;
      st.tokens += tokens;
    }
    st.mean_token_kl = batch.total_tokens > 0 ? kl_sum / batch.total_tokens : 0;
    const double tok = std::max(batch.total_tokens, 1.0);
    st.diagnostics.clip_fraction = diag.clip_fraction / tok;
    st.diagnostics.approx_kl = diag.approx_kl / tok;
    st.diagnostics.entropy = diag.entropy / tok;
    st.diagnostics.ratio_mean = diag.ratio_mean / tok;
    st.diagnostics.ratio_max = diag.ratio_max;
    CMDISTILL_ASSIGN_OR_RETURN(auto info, I.adamw->Step());
    st.grad_norm = info.grad_norm;
    st.lr = info.lr;
    st.step = I.adamw->step();
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("LibTorch: ", e.what_without_backtrace()));
  }
  if (o.method == rl::Method::kLagrangian) {
    CMDISTILL_RETURN_IF_ERROR(
        I.lagrange
            .UpdateFromBatch(o.lagrange_on_violation_rate
                                 ? rl::LagrangeConstraint::kViolationRate
                                 : rl::LagrangeConstraint::kMeanCost,
                             st.mean_cost, st.satisfaction, o.budget,
                             o.violation_target)
            .status());
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
  CMDISTILL_RETURN_IF_ERROR(impl_->lagrange.Restore(s.lagrange));
  return impl_->adamw->Restore(s.moments, s.step, s.master_weights);
}

}  // namespace cmdistill::learner
