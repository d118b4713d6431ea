// Scorer backed by a Hugging Face model folder (common/model's LanguageModel).
#ifndef CMDISTILL_SERVICES_TEACHER_MODEL_SCORER_H_
#define CMDISTILL_SERVICES_TEACHER_MODEL_SCORER_H_

#include <memory>
#include <string>

#include "common/model/language_model.h"
#include "services/teacher/scorer.h"

namespace cmdistill::teacher {

// Loads the model (and, when present, its tokenizer.json for the fingerprint).
absl::StatusOr<std::unique_ptr<Scorer>> MakeModelScorer(
    const std::string& model_dir, const std::string& device,
    const std::string& dtype, int64_t max_batch_tokens);
// Wraps an already-loaded model (tests, benchmarks); `fingerprint` may be "".
std::unique_ptr<Scorer> MakeModelScorer(
    std::unique_ptr<model::LanguageModel> model, const std::string& model_id,
    const std::string& fingerprint, int64_t max_batch_tokens);

}  // namespace cmdistill::teacher

#endif  // CMDISTILL_SERVICES_TEACHER_MODEL_SCORER_H_
