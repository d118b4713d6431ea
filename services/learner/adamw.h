// AdamW with linear warm-up, a constant / linear / cosine schedule and global
// gradient-norm clipping, written out over LibTorch tensors (moments in
// float32 whatever the parameters' dtype). Shared by the policy update and
// supervised fine-tuning. LibTorch-facing: include only from trainer TUs.
#ifndef CMDISTILL_SERVICES_LEARNER_ADAMW_H_
#define CMDISTILL_SERVICES_LEARNER_ADAMW_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/learner/optimizer_options.h"

namespace cmdistill::learner {

class AdamW {
 public:
  struct StepInfo {
    double grad_norm = 0;  // before clipping
    double lr = 0;
  };

  AdamW(std::vector<at::Tensor> params, AdamWOptions options);

  // The learning rate of update number `step` (1-based).
  double LearningRate(int64_t step) const;
  // Clips, updates every parameter with a gradient, clears the gradients.
  // INTERNAL (nothing changed, gradients cleared) when the gradient norm is
  // not finite.
  absl::StatusOr<StepInfo> Step();
  int64_t step() const { return step_; }

  // m then v per parameter, raw float32 bytes.
  std::vector<std::string> SaveMoments() const;
  // INVALID_ARGUMENT when the moments do not match the parameters.
  absl::Status Restore(const std::vector<std::string>& moments, int64_t step);

 private:
  std::vector<at::Tensor> params_, m_, v_;
  AdamWOptions o_;
  int64_t step_ = 0;
};

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_ADAMW_H_
