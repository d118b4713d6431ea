// The reward/constraint evaluator's options as the run file sets them (reward,
// cost, strictness, style classification): read by the reward role and by
// held-out evaluation alike.
#ifndef CMDISTILL_SERVICES_REWARD_OPTIONS_H_
#define CMDISTILL_SERVICES_REWARD_OPTIONS_H_

#include "cmdistill/v1/config.pb.h"
#include "services/reward/evaluator.h"

namespace cmdistill::reward {

// vocab_size is left 0 for the caller.
EvaluatorOptions EvaluatorOptionsFrom(const v1::RunConfig& config);

}  // namespace cmdistill::reward

#endif  // CMDISTILL_SERVICES_REWARD_OPTIONS_H_
