#include "services/reward/role.h"

#include <memory>
#include <vector>

#include "common/checkpoint/hf_checkpoint.h"
#include "common/config/config.h"
#include "common/status/status_macros.h"
#include "common/tokenizer/tokenizer.h"
#include "common/util/files.h"
#include "services/common/role_host.h"
#include "services/reward/evaluator.h"
#include "services/reward/options.h"
#include "services/reward/reward_service.h"

namespace cmdistill::reward {

absl::Status RunRewardRole(const v1::RunConfig& config, std::ostream& log) {
  std::string tok_path = config.reward().tokenizer_path();
  if (tok_path.empty()) tok_path = config.student().path();
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (!tok_path.empty()) {
    CMDISTILL_ASSIGN_OR_RETURN(tok, tokenizer::Tokenizer::Load(tok_path));
  } else {
    log << "cmdistill reward: no tokenizer (reward.tokenizer_path / "
           "student.path): trajectories must carry completion_text\n";
  }
  reward::EvaluatorOptions eo = EvaluatorOptionsFrom(config);
  if (!config.student().path().empty()) {
    // The models' vocabulary bounds token ids (it may exceed the tokenizer's).
    const std::string path = config.student().path() + "/config.json";
    if (auto text = util::ReadFile(path); text.ok()) {
      auto mc = checkpoint::ParseModelConfig(*text, path);
      if (mc.ok()) eo.vocab_size = mc->vocab_size;
    }
  }
  reward::Evaluator evaluator(tok.get(), eo);
  reward::RewardServiceOptions o;
  o.queue_capacity = config.reward().queue_capacity();
  o.workers = static_cast<int>(config.reward().workers());
  o.max_request_trajectories = config.reward().max_request_trajectories();
  o.rolling_window = config.reward().rolling_window();
  o.method_name = config::MethodName(config.method());
  o.normalization_name = config::EnumShortName(
      *v1::CostNormalization_descriptor()->FindValueByNumber(
          config.constraint().cost_normalization()));
  o.estimator_name =
      config::EnumShortName(*v1::CostEstimator_descriptor()->FindValueByNumber(
          config.constraint().cost_estimator()));
  o.tokenizer_fingerprint = tok ? tok->fingerprint() : "";
  std::unique_ptr<reward::RewardServiceImpl> service;
  return services::ServeRole(
      "reward", "none", config, config.services().reward(), log,
      [&](services::ServiceHost& host) -> std::vector<grpc::Service*> {
        service = std::make_unique<reward::RewardServiceImpl>(
            &evaluator, host.gate_ptr(), host.registry().get(), o);
        return {service.get()};
      },
      [&] { service->Close(); });
}

}  // namespace cmdistill::reward
