// The learner's constrained policy update (DESIGN.md §5), behind a torch-free
// interface: GRPO advantages from the reward service's returns, the method's
// loss (common/rl/losses.h) with the student's CURRENT log-probabilities on the
// stored supports (term II's gradient goes through them), AdamW with warm-up
// and schedule, gradient clipping, and the λ controller.
//
// The student's log-probabilities follow the generation convention of
// language_model.h: log softmax(logits / temperature) over the whole
// vocabulary.
//
// Not thread-safe: one Step at a time (the learner's update loop).
#ifndef CMDISTILL_SERVICES_LEARNER_POLICY_TRAINER_H_
#define CMDISTILL_SERVICES_LEARNER_POLICY_TRAINER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmdistill/v1/trajectory.pb.h"
#include "common/model/language_model.h"
#include "common/rl/constraint.h"
#include "common/rl/lagrange.h"
#include "services/learner/optimizer_options.h"
#include "services/learner/trainer.h"

namespace cmdistill::learner {

struct TrainerOptions {
  rl::Method method = rl::Method::kCmdp;
  double clip_epsilon = 0.2;
  double kappa = 1.0;
  double fixed_lambda = 0.01;  // soft_lagrangian (the paper's GKD-GRPO λ)
  rl::LagrangeOptions lagrange;
  double budget = 0.35;  // d, for the λ update (mean cost_used vs d)
  // lagrangian as a chance constraint: λ moves with the step's share of
  // trajectories over the budget against violation_target, instead of with
  // the mean cost against d (constraint.lagrangian_constraint).
  bool lagrange_on_violation_rate = false;
  double violation_target = 0.05;
  bool std_normalization = true;
  double advantage_eps = 1e-6;
  double prob_floor = 1e-8;
  // The KL whose gradient the loss takes (gkd, the λ terms, term II): the
  // support KL when trajectories carry a support and the cost estimator is
  // support_kl; otherwise the sampled-token surrogate of rl::SampledKl with
  // this estimator's value (kSupportKl then reads as k1).
  rl::CostEstimator cost_estimator = rl::CostEstimator::kSupportKl;
  // cmdp's term II divides by every real token instead of the infeasible ones.
  bool term_two_over_all_tokens = false;
  double temperature = 1.0;  // the sampling temperature of the actors
  AdamWOptions optimizer;
  // Sequences per forward/backward pass; the gradients of a step's
  // micro-batches accumulate to exactly the whole batch's. 0 = one pass.
  int64_t micro_batch_sequences = 0;
};

// A step's checked trajectories (defined in policy_trainer.cc).
struct StepBatch;

class PolicyTrainer final : public Trainer {
 public:
  // `student` must outlive the trainer; its parameters are trained in place.
  static absl::StatusOr<std::unique_ptr<PolicyTrainer>> Create(
      model::LanguageModel* student, TrainerOptions options);
  ~PolicyTrainer() override;

  // One update from complete groups (each: the G trajectories of one prompt,
  // with their `evaluation` filled in by the reward service). INVALID_ARGUMENT
  // for inconsistent trajectories (lengths, supports, missing evaluations);
  // nothing is changed then.
  absl::StatusOr<StepStats> Step(
      const std::vector<std::vector<v1::Trajectory>>& groups) override;

  double lambda() const override;
  int64_t step() const;
  // A loud warning when the optimizer cannot represent updates of the
  // configured lr in the student's dtype (no master weights), else "".
  std::string PrecisionWarning() const;
  TrainerState SaveState() const override;
  absl::Status RestoreState(const TrainerState& state) override;
  int64_t vocab_size() const override;
  absl::StatusOr<std::string> SerializeWeights() const override;
  absl::Status SavePolicy(const std::string& dir,
                          const std::string& tokenizer_from) const override;

 private:
  struct Impl;
  explicit PolicyTrainer(std::unique_ptr<Impl> impl);
  // One micro-batch [c0, c1) of a step's checked trajectories: forward,
  // loss, backward.
  // Adds the micro-batch's diagnostic sums to `diag` (clip_fraction,
  // approx_kl, entropy and ratio_mean as sums over tokens, ratio_max a max).
  absl::StatusOr<double> MicroBatch(const StepBatch& batch, size_t c0,
                                    size_t c1, double* kl_sum,
                                    rl::StepDiagnostics* diag);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_POLICY_TRAINER_H_
