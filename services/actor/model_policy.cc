#include "services/actor/model_policy.h"

#include <utility>

namespace cmdistill::actor {

int64_t ModelPolicy::vocab_size() const { return model_->config().vocab_size; }

absl::Status ModelPolicy::LoadWeights(const std::string& bytes) {
  return model_->LoadWeights(bytes);
}

absl::Status ModelPolicy::AdoptWeights(
    std::shared_ptr<const std::string> bytes) {
  return model_->AdoptWeights(std::move(bytes));
}

absl::StatusOr<std::vector<model::GenerationResult>> ModelPolicy::Generate(
    const std::vector<std::vector<int32_t>>& prompts,
    const model::SamplingOptions& options) {
  return model_->Generate(prompts, options);
}

}  // namespace cmdistill::actor
