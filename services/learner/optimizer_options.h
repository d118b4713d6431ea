// Optimizer options (torch-free, for option structs and the CLI).
#ifndef CMDISTILL_SERVICES_LEARNER_OPTIMIZER_OPTIONS_H_
#define CMDISTILL_SERVICES_LEARNER_OPTIMIZER_OPTIONS_H_

#include <cstdint>

namespace cmdistill::learner {

enum class Schedule { kConstant, kLinear, kCosine };

struct AdamWOptions {
  double lr = 1e-5, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 100;
  Schedule schedule = Schedule::kConstant;
  double grad_clip = 1.0;  // on the global gradient norm; 0 = off
};

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_OPTIMIZER_OPTIONS_H_
