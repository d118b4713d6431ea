// Differentiable losses of the learner (DESIGN.md §5), in LibTorch. The header
// only forward-declares at::Tensor so that including it does not pull LibTorch
// into a TU; the learner's backend TU, which has LibTorch anyway, calls these.
//
// Shapes: B sequences, T positions (padded), K support size.
//   mask [B, T] (1 = completion token, 0 = padding), float.
// Aggregation: kTokenMean averages over all real tokens of the batch (the
// default, DESIGN.md); kSequenceMean averages each sequence over its tokens,
// then over sequences.
//
// Every function refuses non-finite inputs and mismatched shapes with
// INVALID_ARGUMENT and leaves `*out` untouched then; LibTorch exceptions are
// caught here.
#ifndef CMDISTILL_COMMON_RL_LOSSES_H_
#define CMDISTILL_COMMON_RL_LOSSES_H_

#include "absl/status/status.h"
#include "common/rl/constraint.h"

namespace at {
class Tensor;
}  // namespace at

namespace cmdistill::rl {

enum class Aggregation { kTokenMean, kSequenceMean };

// Masked mean of `values` [B, T] -> scalar.
// Micro-batching: a `denominator` > 0 replaces the batch's own count (real
// tokens for kTokenMean, sequences with tokens for kSequenceMean), so that the
// losses of a step's micro-batches, each divided by the whole step's count,
// sum to the loss of the whole batch.
absl::Status MaskedMean(const at::Tensor& values, const at::Tensor& mask,
                        Aggregation agg, at::Tensor* out,
                        double denominator = 0);

// Term I: PPO-clipped surrogate, as a loss to minimise:
//   ratio_t = exp(new_logprobs - behavior_logprobs)              [B, T]
//   loss    = -agg(min(ratio_t A_b, clip(ratio_t, 1-ε, 1+ε) A_b))
// advantages [B]; gradient flows through new_logprobs only.
absl::Status PpoClipLoss(const at::Tensor& new_logprobs,
                         const at::Tensor& behavior_logprobs,
                         const at::Tensor& advantages, const at::Tensor& mask,
                         double clip_epsilon, Aggregation agg, at::Tensor* out,
                         double denominator = 0);

// Per-position lumped reverse KL [B, T] with gradient through the student:
// student_support [B, T, K] (current log π_θ on the stored support),
// teacher_support [B, T, K] and teacher_tail [B, T] (log µ of the tail; pass an
// undefined tensor to derive it as 1 - Σ µ(support)). Matches
// rl::LumpedReverseKl.
absl::Status SupportKl(const at::Tensor& student_support,
                       const at::Tensor& teacher_support,
                       const at::Tensor& teacher_tail, double prob_floor,
                       at::Tensor* out);

// The per-position reverse KL from the sampled token alone, [B, T], for when
// no support was recorded or a sampled-token cost is configured. Its value is
// the estimator's (k1: log π(a) − log µ(a); k3: (r − 1) − log r with r =
// µ(a)/π(a); kSupportKl reads as k1); its gradient is the score-function
// estimate of ∇ KL(π‖µ) at that position, (log π(a) − log µ(a)) ∇ log π(a),
// unbiased for tokens sampled from π. (A differentiable k1 has gradient
// ∇ log π(a), zero in expectation: a KL loss built on it learns nothing.)
// new_logprobs [B, T] carries the gradient; teacher_sampled [B, T] is
// detached and floored at log(prob_floor).
absl::Status SampledKl(const at::Tensor& new_logprobs,
                       const at::Tensor& teacher_sampled,
                       CostEstimator estimator, double prob_floor,
                       at::Tensor* out);

// Term II of cmdp: κ · mean over infeasible real tokens of kl [B, T] (0 when
// there are none; `denominator` > 0: the whole step's infeasible-token count,
// or its real-token count for the all-tokens variant).
absl::Status InfeasibleKlLoss(const at::Tensor& kl,
                              const at::Tensor& infeasible,
                              const at::Tensor& mask, double kappa,
                              at::Tensor* out, double denominator = 0);

struct MethodLossInputs {
  const at::Tensor* new_logprobs = nullptr;       // [B, T]
  const at::Tensor* behavior_logprobs = nullptr;  // [B, T]
  const at::Tensor* advantages = nullptr;         // [B]
  const at::Tensor* mask = nullptr;               // [B, T]
  const at::Tensor* kl =
      nullptr;  // [B, T] from SupportKl; unused by grpo/saute
  const at::Tensor* infeasible = nullptr;  // [B, T] (cmdp term II)
};

struct MethodLossOptions {
  Method method = Method::kCmdp;
  double clip_epsilon = 0.2;
  double kappa = 1.0;  // cmdp term II weight
  double lambda =
      0.0;  // soft_lagrangian (fixed) / lagrangian (current controller value)
  Aggregation aggregation = Aggregation::kTokenMean;
  // Micro-batching (see MaskedMean): the whole step's real-token (or
  // sequence) count and infeasible-token count; 0 = this batch's own.
  double aggregate_denominator = 0;
  double infeasible_denominator = 0;
};

// The whole loss of one method: cmdp = I + κ·II; saute, grpo, weakest_link = I;
// soft_lagrangian, lagrangian = I + λ·mean KL; gkd = mean KL.
absl::Status MethodLoss(const MethodLossInputs& in,
                        const MethodLossOptions& options, at::Tensor* out);

}  // namespace cmdistill::rl

#endif  // CMDISTILL_COMMON_RL_LOSSES_H_
