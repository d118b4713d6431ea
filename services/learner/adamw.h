// AdamW with linear warm-up, a constant / linear / cosine schedule and global
// gradient-norm clipping, written out over LibTorch tensors. Shared by the
// policy update and supervised fine-tuning. LibTorch-facing: include only from
// trainer TUs.
//
// Mixed precision: the moments are float32 whatever the parameters' dtype, and
// a low-precision parameter (bfloat16, float16) gets a float32 master copy
// (options.master_weights, on by default). The update is applied to the master
// and the parameter receives its rounded copy, so updates below half an ulp of
// the low-precision weight accumulate instead of being lost (FSDP's
// MixedPrecision, DeepSpeed's and Megatron's fp32 master weights).
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
  // Clips, updates every parameter with a gradient, clears the gradients. One
  // device-to-host copy per call (the global gradient norm). INTERNAL (nothing
  // changed, gradients cleared) when the gradient norm is not finite.
  absl::StatusOr<StepInfo> Step();
  int64_t step() const { return step_; }

  // m then v per parameter, raw float32 bytes.
  std::vector<std::string> SaveMoments() const;
  // One entry per parameter: the float32 master weights (raw bytes) of a
  // parameter that has them, "" for the others.
  std::vector<std::string> SaveMasterWeights() const;
  // INVALID_ARGUMENT when the moments or master weights do not match the
  // parameters; nothing is changed then. Empty `masters` (a checkpoint written
  // without them) re-initialises the masters from the parameters.
  absl::Status Restore(const std::vector<std::string>& moments, int64_t step,
                       const std::vector<std::string>& masters = {});

  // The master copy of parameter i (undefined when it has none).
  const at::Tensor& master(size_t i) const { return master_[i]; }
  bool has_master_weights() const;

  // The share of the elements of low-precision parameters WITHOUT master
  // weights that an update of size `lr` cannot change (lr below half an ulp
  // of the weight; an Adam step moves each element by about lr). 0 when every
  // low-precision parameter has master weights.
  double UnrepresentableUpdateShare(double lr) const;
  // A loud warning when UnrepresentableUpdateShare(options.lr) exceeds 10%,
  // else "".
  std::string PrecisionWarning() const;

 private:
  std::vector<at::Tensor> params_, m_, v_, master_;
  AdamWOptions o_;
  int64_t step_ = 0;
};

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_ADAMW_H_
