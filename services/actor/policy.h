// What the actor needs of the policy it samples from: its vocabulary, loading
// a snapshot the learner published, and batched sampling. The seam between
// the actor's protocol work and the model: ModelPolicy (model_policy.h) is the
// LanguageModel behind it; the actor's tests use a fake and link no LibTorch.
#ifndef CMDISTILL_SERVICES_ACTOR_POLICY_H_
#define CMDISTILL_SERVICES_ACTOR_POLICY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/types.h"

namespace cmdistill::actor {

class Policy {
 public:
  virtual ~Policy() = default;
  virtual int64_t vocab_size() const = 0;
  // A policy snapshot (the bytes FetchPolicy streams; checked by the caller).
  virtual absl::Status LoadWeights(const std::string& bytes) = 0;
  // The same snapshot, which the policy may keep (and use in place instead of
  // copying): the caller does not change `bytes` while anyone holds it.
  virtual absl::Status AdoptWeights(std::shared_ptr<const std::string> bytes) {
    return LoadWeights(*bytes);
  }
  // One GenerationResult per prompt, under language_model.h's conventions.
  virtual absl::StatusOr<std::vector<model::GenerationResult>> Generate(
      const std::vector<std::vector<int32_t>>& prompts,
      const model::SamplingOptions& options) = 0;
};

}  // namespace cmdistill::actor

#endif  // CMDISTILL_SERVICES_ACTOR_POLICY_H_
