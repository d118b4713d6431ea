// The reward/constraint computation for one trajectory, torch-free: grade the
// answer (task reward), compute per-token costs, check the budget, apply the
// method's reward transform. All of the mathematics is common/rl's and
// common/tasks'; this adds validation and the mapping to and from the wire
// messages. Deterministic; thread-safe (const).
#ifndef CMDISTILL_SERVICES_REWARD_EVALUATOR_H_
#define CMDISTILL_SERVICES_REWARD_EVALUATOR_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "cmdistill/v1/trajectory.pb.h"
#include "common/rl/constraint.h"
#include "common/tasks/answer.h"
#include "common/tokenizer/tokenizer.h"

namespace cmdistill::reward {

struct EvaluatorOptions {
  rl::RewardOptions reward;
  rl::CostOptions cost;
  tasks::Strictness strictness = tasks::Strictness::kStrict;
  // Token ids must be below this (the models' vocabulary, which may exceed the
  // tokenizer's: padded embeddings); 0 = the tokenizer's size. Ids with no
  // token decode to nothing.
  int64_t vocab_size = 0;
  // Classify each answer's style (tasks::ClassifyStyle) into
  // TrajectoryEvaluation.style: only for the embedded synthetic task.
  bool classify_styles = false;
};

class Evaluator {
 public:
  // `tokenizer` (not owned, may be null: then every trajectory must carry
  // completion_text) decodes completions for grading and bounds token ids.
  Evaluator(const tokenizer::Tokenizer* tokenizer, EvaluatorOptions options);

  // INVALID_ARGUMENT (naming the field) for mismatched array lengths,
  // non-finite or positive log-probabilities, token ids outside the vocabulary,
  // a support without the sampled token, or missing teacher scores for a method
  // that needs them. Verifier problems are not errors: reward 0 and
  // `verifier_failure` set.
  absl::StatusOr<v1::TrajectoryEvaluation> Evaluate(
      const v1::Trajectory& t) const;

  const EvaluatorOptions& options() const { return options_; }

 private:
  const tokenizer::Tokenizer* tokenizer_;
  EvaluatorOptions options_;
};

}  // namespace cmdistill::reward

#endif  // CMDISTILL_SERVICES_REWARD_EVALUATOR_H_
