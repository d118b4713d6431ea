// Optimizer options (torch-free, for option structs and the CLI).
#ifndef CMDISTILL_SERVICES_LEARNER_OPTIMIZER_OPTIONS_H_
#define CMDISTILL_SERVICES_LEARNER_OPTIMIZER_OPTIONS_H_

#include <cstdint>

#include "cmdistill/v1/config.pb.h"

namespace cmdistill::learner {

enum class Schedule { kConstant, kLinear, kCosine };

struct AdamWOptions {
  double lr = 1e-5, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 100;
  Schedule schedule = Schedule::kConstant;
  double grad_clip = 1.0;  // on the global gradient norm; 0 = off
  // float32 master copies of bfloat16/float16 parameters (adamw.h).
  bool master_weights = true;
};

inline Schedule ScheduleFrom(v1::LrSchedule s) {
  switch (s) {
    case v1::LR_SCHEDULE_COSINE:
      return Schedule::kCosine;
    case v1::LR_SCHEDULE_LINEAR:
      return Schedule::kLinear;
    default:
      return Schedule::kConstant;
  }
}

// The run file's optimizer section, for `total_steps` updates.
inline AdamWOptions AdamWOptionsFrom(const v1::OptimizerConfig& op,
                                     int64_t total_steps) {
  AdamWOptions o;
  o.lr = op.lr();
  o.beta1 = op.beta1();
  o.beta2 = op.beta2();
  o.eps = op.eps();
  o.weight_decay = op.weight_decay();
  o.warmup_steps = op.warmup_steps();
  o.total_steps = total_steps;
  o.schedule = ScheduleFrom(op.schedule());
  o.grad_clip = op.grad_clip();
  o.master_weights = op.master_weights();
  return o;
}

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_OPTIMIZER_OPTIONS_H_
