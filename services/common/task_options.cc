#include "services/common/task_options.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"

namespace cmdistill::services {

rl::Method MethodFrom(v1::Method method) {
  switch (method) {
    case v1::METHOD_SAUTE:
      return rl::Method::kSaute;
    case v1::METHOD_GRPO:
      return rl::Method::kGrpo;
    case v1::METHOD_SOFT_LAGRANGIAN:
      return rl::Method::kSoftLagrangian;
    case v1::METHOD_LAGRANGIAN:
      return rl::Method::kLagrangian;
    case v1::METHOD_GKD:
      return rl::Method::kGkd;
    case v1::METHOD_WEAKEST_LINK:
      return rl::Method::kWeakestLink;
    default:  // validation refuses METHOD_UNSPECIFIED
      return rl::Method::kCmdp;
  }
}

rl::CostOptions CostOptionsFrom(const v1::RunConfig& config) {
  rl::CostOptions o;
  switch (config.constraint().cost_estimator()) {
    case v1::COST_ESTIMATOR_K1:
      o.estimator = rl::CostEstimator::kK1;
      break;
    case v1::COST_ESTIMATOR_K3:
      o.estimator = rl::CostEstimator::kK3;
      break;
    default:
      o.estimator = rl::CostEstimator::kSupportKl;
  }
  o.prob_floor = config.constraint().prob_floor();
  return o;
}

rl::RewardOptions RewardOptionsFrom(const v1::RunConfig& config) {
  rl::RewardOptions o;
  o.method = MethodFrom(config.method());
  o.penalty = config.constraint().penalty();
  o.placement =
      config.constraint().penalty_placement() == v1::PENALTY_PLACEMENT_TERMINAL
          ? rl::PenaltyPlacement::kTerminal
          : rl::PenaltyPlacement::kPerToken;
  o.keep_task_reward_when_infeasible =
      config.constraint().keep_task_reward_when_infeasible();
  o.weakest_link_threshold = config.constraint().weakest_link_threshold();
  o.budget.budget = config.constraint().budget();
  o.budget.max_new_tokens =
      static_cast<int>(config.generation().max_new_tokens());
  switch (config.constraint().cost_normalization()) {
    case v1::COST_NORMALIZATION_SUM:
      o.budget.normalization = rl::CostNormalization::kSum;
      break;
    case v1::COST_NORMALIZATION_PREFIX_MEAN:
      o.budget.normalization = rl::CostNormalization::kPrefixMean;
      break;
    default:
      o.budget.normalization = rl::CostNormalization::kPerMaxLen;
  }
  return o;
}

rl::LagrangeOptions LagrangeOptionsFrom(const v1::RunConfig& config) {
  const auto& c = config.constraint();
  return {c.lambda_init(), c.lambda_lr(), c.lambda_max(), c.pid_kp(),
          c.pid_kd()};
}

tasks::DatasetOptions DatasetOptionsFrom(const v1::RunConfig& config,
                                         bool test_split) {
  tasks::DatasetOptions o;
  const auto& d = config.data();
  switch (d.format()) {
    case v1::DATA_FORMAT_MATH:
      o.format = tasks::DataFormat::kMath;
      break;
    case v1::DATA_FORMAT_GENERIC:
      o.format = tasks::DataFormat::kGeneric;
      break;
    default:
      o.format = tasks::DataFormat::kGsm8k;
  }
  o.question_field = d.question_field();
  o.answer_field = d.answer_field();
  o.malformed = d.malformed_lines() == v1::MALFORMED_LINES_SKIP
                    ? tasks::MalformedLines::kSkip
                    : tasks::MalformedLines::kFail;
  o.max_examples = test_split ? d.max_test_examples() : d.max_train_examples();
  return o;
}

tasks::Strictness StrictnessFrom(const v1::RunConfig& config) {
  return config.reward().answer_strictness() ==
                 v1::ANSWER_STRICTNESS_LAST_NUMBER
             ? tasks::Strictness::kLastNumber
             : tasks::Strictness::kStrict;
}

absl::StatusOr<std::vector<int32_t>> StopTokenIds(
    const v1::RunConfig& config, const std::vector<int64_t>& model_eos_ids,
    const tokenizer::Tokenizer& tokenizer) {
  std::vector<int32_t> ids;
  auto add = [&](int32_t id) {
    if (id >= 0 && std::find(ids.begin(), ids.end(), id) == ids.end())
      ids.push_back(id);
  };
  for (int64_t e : model_eos_ids) add(static_cast<int32_t>(e));
  add(tokenizer.eos_id());
  for (const std::string& s : config.generation().stop_strings()) {
    const int32_t id = tokenizer.TokenToId(s);
    if (id < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "generation.stop_strings: \"", s,
          "\" is not a single token of the tokenizer (only single-token stop "
          "strings are supported)"));
    }
    add(id);
  }
  return ids;
}

std::string DTypeName(v1::ModelDType dtype) {
  return dtype == v1::MODEL_D_TYPE_BFLOAT16 ? "bfloat16" : "float32";
}

std::string PromptText(const v1::RunConfig& config, std::string_view question) {
  return tasks::ApplyTemplate(config.data().prompt_template(), question);
}

absl::StatusOr<std::vector<int32_t>> EncodePrompt(
    const v1::RunConfig& config, const tokenizer::Tokenizer& tokenizer,
    std::string_view question) {
  CMDISTILL_ASSIGN_OR_RETURN(auto ids,
                             tokenizer.Encode(PromptText(config, question),
                                              /*add_special_tokens=*/true));
  if (ids.empty()) return absl::InvalidArgumentError("empty prompt");
  return ids;
}

}  // namespace cmdistill::services
