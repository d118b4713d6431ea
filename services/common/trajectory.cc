#include "services/common/trajectory.h"

namespace cmdistill::services {

void FillSample(absl::Span<const int32_t> prompt_ids,
                const model::GenerationResult& g, bool with_support,
                v1::Trajectory* t) {
  t->mutable_prompt_ids()->Add(prompt_ids.begin(), prompt_ids.end());
  t->mutable_completion_ids()->Add(g.tokens.begin(), g.tokens.end());
  t->mutable_behavior_logprobs()->Add(g.logprobs.begin(), g.logprobs.end());
  t->set_finished(g.finished);
  if (!with_support) return;
  t->mutable_support()->set_k(static_cast<uint32_t>(g.support_k));
  t->mutable_support()->mutable_token_ids()->Add(g.support_ids.begin(),
                                                 g.support_ids.end());
  t->mutable_student_support_logprobs()->Add(g.support_logprobs.begin(),
                                             g.support_logprobs.end());
}

}  // namespace cmdistill::services
