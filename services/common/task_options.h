// RunConfig -> options of the constraint mathematics and the task library: the
// one place where the run file's method, constraint, data and reward sections
// meet common/rl and common/tasks, so that the reward service, the learner and
// evaluation read them alike.
#ifndef CMDISTILL_SERVICES_COMMON_TASK_OPTIONS_H_
#define CMDISTILL_SERVICES_COMMON_TASK_OPTIONS_H_

#include "cmdistill/v1/config.pb.h"
#include "common/rl/constraint.h"
#include "common/rl/lagrange.h"
#include "common/tasks/answer.h"
#include "common/tasks/dataset.h"

namespace cmdistill::services {

rl::Method MethodFrom(v1::Method method);
rl::CostOptions CostOptionsFrom(const v1::RunConfig& config);
rl::RewardOptions RewardOptionsFrom(const v1::RunConfig& config);
rl::LagrangeOptions LagrangeOptionsFrom(const v1::RunConfig& config);
tasks::DatasetOptions DatasetOptionsFrom(const v1::RunConfig& config,
                                         bool test_split);
tasks::Strictness StrictnessFrom(const v1::RunConfig& config);

}  // namespace cmdistill::services

#endif  // CMDISTILL_SERVICES_COMMON_TASK_OPTIONS_H_
