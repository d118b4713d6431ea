// Supervised fine-tuning (teacher pre-training and the student's warm start of
// the embedded default): next-token cross-entropy on the completion tokens of
// (prompt, completion) pairs, AdamW with warm-up and schedule. Torch-free
// interface; the model is trained in place.
//
// Not thread-safe: one call at a time.
#ifndef CMDISTILL_SERVICES_LEARNER_SFT_TRAINER_H_
#define CMDISTILL_SERVICES_LEARNER_SFT_TRAINER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/language_model.h"
#include "services/learner/optimizer_options.h"

namespace cmdistill::learner {

struct SftExample {
  std::vector<int32_t> prompt_ids;      // at least one token
  std::vector<int32_t> completion_ids;  // at least one token (eos included)
};

struct SftStats {
  int64_t step = 0;
  double loss = 0;            // mean token cross-entropy (nats)
  double token_accuracy = 0;  // share of completion tokens predicted (argmax)
  double grad_norm = 0;
  double lr = 0;
  int64_t tokens = 0;  // completion tokens in the batch
};

class SftTrainer {
 public:
  // `model` must outlive the trainer.
  static absl::StatusOr<std::unique_ptr<SftTrainer>> Create(
      model::LanguageModel* model, AdamWOptions options);
  ~SftTrainer();

  // One optimizer step on the batch. INVALID_ARGUMENT for empty prompts or
  // completions, ids outside the vocabulary, sequences longer than the model
  // allows; nothing changes then.
  absl::StatusOr<SftStats> Step(const std::vector<SftExample>& batch);
  // A loud warning when the optimizer cannot represent updates of the
  // configured lr in the model's dtype (no master weights), else "".
  std::string PrecisionWarning() const;
  // The same statistics without an update (held-out loss).
  absl::StatusOr<SftStats> Evaluate(const std::vector<SftExample>& batch);

 private:
  struct Impl;
  explicit SftTrainer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_SFT_TRAINER_H_
