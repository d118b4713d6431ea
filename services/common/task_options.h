// RunConfig -> options of the constraint mathematics and the task library: the
// one place where the run file's method, constraint, data and reward sections
// meet common/rl and common/tasks, so that the reward service, the learner and
// evaluation read them alike.
#ifndef CMDISTILL_SERVICES_COMMON_TASK_OPTIONS_H_
#define CMDISTILL_SERVICES_COMMON_TASK_OPTIONS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cmdistill/v1/config.pb.h"
#include "common/rl/constraint.h"
#include "common/rl/lagrange.h"
#include "common/tasks/answer.h"
#include "common/tasks/dataset.h"
#include "common/tokenizer/tokenizer.h"

namespace cmdistill::services {

rl::Method MethodFrom(v1::Method method);
rl::CostOptions CostOptionsFrom(const v1::RunConfig& config);
rl::RewardOptions RewardOptionsFrom(const v1::RunConfig& config);
rl::LagrangeOptions LagrangeOptionsFrom(const v1::RunConfig& config);
tasks::DatasetOptions DatasetOptionsFrom(const v1::RunConfig& config,
                                         bool test_split);
tasks::Strictness StrictnessFrom(const v1::RunConfig& config);
// "bfloat16" or "float32": the dtype name the model library takes.
std::string DTypeName(v1::ModelDType dtype);

// A question in the run file's data.prompt_template, and encoded as every
// role encodes prompts (the tokenizer's special tokens added, as Hugging
// Face's tokenizer(text) does): training, SFT and evaluation see the same
// ids. INVALID_ARGUMENT for a prompt that encodes to nothing.
std::string PromptText(const v1::RunConfig& config, std::string_view question);
absl::StatusOr<std::vector<int32_t>> EncodePrompt(
    const v1::RunConfig& config, const tokenizer::Tokenizer& tokenizer,
    std::string_view question);

// The token ids that end a completion: the model's eos ids, the tokenizer's
// eos, and each of generation.stop_strings, which must be one token of the
// tokenizer (an added token such as "<|im_end|>"); INVALID_ARGUMENT naming a
// stop string that is not.
absl::StatusOr<std::vector<int32_t>> StopTokenIds(
    const v1::RunConfig& config, const std::vector<int64_t>& model_eos_ids,
    const tokenizer::Tokenizer& tokenizer);

}  // namespace cmdistill::services

#endif  // CMDISTILL_SERVICES_COMMON_TASK_OPTIONS_H_
