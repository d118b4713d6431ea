// The actor's Policy backed by a LanguageModel (LibTorch at link time).
#ifndef CMDISTILL_SERVICES_ACTOR_MODEL_POLICY_H_
#define CMDISTILL_SERVICES_ACTOR_MODEL_POLICY_H_

#include <memory>
#include <string>
#include <vector>

#include "common/model/language_model.h"
#include "services/actor/policy.h"

namespace cmdistill::actor {

class ModelPolicy final : public Policy {
 public:
  // `model` must outlive this.
  explicit ModelPolicy(model::LanguageModel* model) : model_(model) {}
  int64_t vocab_size() const override;
  absl::Status LoadWeights(const std::string& bytes) override;
  absl::Status AdoptWeights(std::shared_ptr<const std::string> bytes) override;
  absl::StatusOr<std::vector<model::GenerationResult>> Generate(
      const std::vector<std::vector<int32_t>>& prompts,
      const model::SamplingOptions& options) override;

 private:
  model::LanguageModel* model_;
};

}  // namespace cmdistill::actor

#endif  // CMDISTILL_SERVICES_ACTOR_MODEL_POLICY_H_
