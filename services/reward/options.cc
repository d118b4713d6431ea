#include "services/reward/options.h"

#include "services/common/task_options.h"

namespace cmdistill::reward {

EvaluatorOptions EvaluatorOptionsFrom(const v1::RunConfig& config) {
  EvaluatorOptions eo;
  eo.reward = services::RewardOptionsFrom(config);
  eo.cost = services::CostOptionsFrom(config);
  eo.strictness = services::StrictnessFrom(config);
  // The generator's data (local.datagen) is the only data with a known style.
  eo.classify_styles = config.has_local() && config.local().has_datagen();
  return eo;
}

}  // namespace cmdistill::reward
