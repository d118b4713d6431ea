#include "services/common/wiring.h"

#include "common/config/config.h"
#include "common/rl/lagrange.h"
#include "gtest/gtest.h"
#include "services/common/task_options.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::services {
namespace {

using ::cmdistill::testing::StatusIs;
using ::testing::HasSubstr;

TEST(Wiring, ServerAndChannelOptionsFollowTheRunFile) {
  cmdistill::testing::TempDir dir;
  const std::string token = dir.Write("token", "tok-123\n");
  auto config = config::LoadRunConfigFromString(
      "security:\n  tls: true\n  require_client_certificate: true\n  "
      "token_file: " +
          token +
          "\n  server: {cert_file: s.pem, key_file: s.key, ca_file: ca.pem}\n"
          "  client: {cert_file: c.pem, key_file: c.key, ca_file: ca.pem, "
          "server_name_override: teacher}\n"
          "services:\n  teacher: {listen: \"0.0.0.0:50052\"}\n  "
          "max_message_mib: 8\n",
      "run.yaml");
  ASSERT_OK(config.status());
  ASSERT_OK_AND_ASSIGN(auto server,
                       ServerOptionsFor(*config, config->services().teacher()));
  EXPECT_EQ(server.listen_address, "0.0.0.0:50052");
  EXPECT_TRUE(server.use_tls);
  EXPECT_TRUE(server.tls.require_client_certificate);
  EXPECT_EQ(server.tls.client_ca_file, "ca.pem");
  EXPECT_EQ(server.bearer_token, "tok-123");
  EXPECT_EQ(server.max_message_bytes, 8 << 20);
  ASSERT_OK_AND_ASSIGN(auto channel,
                       ChannelOptionsFor(*config, "dns:///teacher:50052"));
  EXPECT_EQ(channel.target, "dns:///teacher:50052");
  EXPECT_EQ(channel.cert_file, "c.pem");
  EXPECT_EQ(channel.server_name_override, "teacher");
  ASSERT_OK_AND_ASSIGN(auto call, CallOptionsFor(*config));
  EXPECT_EQ(call.bearer_token, "tok-123");
  EXPECT_EQ(call.timeout, absl::Seconds(30));
}

TEST(Wiring, DefaultsListenOnLoopbackPortZeroAndMissingTokenFileIsNamed) {
  auto config = config::LoadRunConfigFromString("", "run.yaml");
  ASSERT_OK(config.status());
  ASSERT_OK_AND_ASSIGN(auto server,
                       ServerOptionsFor(*config, config->services().learner()));
  EXPECT_EQ(server.listen_address, "127.0.0.1:0");
  EXPECT_TRUE(server.bearer_token.empty());
  config->mutable_security()->set_token_file("/nonexistent/token");
  EXPECT_THAT(
      ServerOptionsFor(*config, config->services().learner()),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/token")));
  EXPECT_THAT(ChannelOptionsFor(*config, ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(TaskOptions, EveryMethodAndSectionMapsFromTheRunFile) {
  const std::vector<std::pair<std::string, rl::Method>> methods = {
      {"cmdp", rl::Method::kCmdp},
      {"saute", rl::Method::kSaute},
      {"grpo", rl::Method::kGrpo},
      {"soft_lagrangian", rl::Method::kSoftLagrangian},
      {"lagrangian", rl::Method::kLagrangian},
      {"gkd", rl::Method::kGkd},
      {"weakest_link", rl::Method::kWeakestLink}};
  for (const auto& [name, method] : methods) {
    auto c = config::LoadRunConfigFromString("method: " + name, "run.yaml");
    ASSERT_OK(c.status());
    EXPECT_EQ(RewardOptionsFrom(*c).method, method) << name;
  }
  auto c = config::LoadRunConfigFromString(
      "constraint: {budget: 0.5, cost_normalization: prefix_mean, "
      "cost_estimator: k3, "
      "penalty: 7, prob_floor: 1e-6, lambda_lr: 0.2}\n"
      "generation: {max_new_tokens: 64}\n"
      "data: {format: math, malformed_lines: skip, max_test_examples: 9}\n"
      "reward: {answer_strictness: last_number}\n",
      "run.yaml");
  ASSERT_OK(c.status());
  const rl::RewardOptions r = RewardOptionsFrom(*c);
  EXPECT_EQ(r.penalty, 7);
  EXPECT_EQ(r.budget.budget, 0.5);
  EXPECT_EQ(r.budget.normalization, rl::CostNormalization::kPrefixMean);
  EXPECT_EQ(r.budget.max_new_tokens, 64);
  EXPECT_EQ(CostOptionsFrom(*c).estimator, rl::CostEstimator::kK3);
  EXPECT_EQ(CostOptionsFrom(*c).prob_floor, 1e-6);
  EXPECT_EQ(LagrangeOptionsFrom(*c).lr, 0.2);
  const tasks::DatasetOptions d = DatasetOptionsFrom(*c, /*test_split=*/true);
  EXPECT_EQ(d.format, tasks::DataFormat::kMath);
  EXPECT_EQ(d.malformed, tasks::MalformedLines::kSkip);
  EXPECT_EQ(d.max_examples, 9u);
  EXPECT_EQ(StrictnessFrom(*c), tasks::Strictness::kLastNumber);
  // The method options the paper leaves open.
  auto o = config::LoadRunConfigFromString(
      "constraint: {penalty_placement: terminal, "
      "keep_task_reward_when_infeasible: true, weakest_link_threshold: 2.5}\n",
      "run.yaml");
  ASSERT_OK(o.status());
  const rl::RewardOptions ro = RewardOptionsFrom(*o);
  EXPECT_EQ(ro.placement, rl::PenaltyPlacement::kTerminal);
  EXPECT_TRUE(ro.keep_task_reward_when_infeasible);
  EXPECT_EQ(ro.weakest_link_threshold, 2.5);
  EXPECT_EQ(RewardOptionsFrom(*c).placement, rl::PenaltyPlacement::kPerToken);
}

TEST(TaskOptions, DefaultLagrangianMovesLambdaAndSoftLagrangianIsTheHundredth) {
  // With the schema's defaults the two λ baselines cannot be the same row:
  // lagrangian's λ starts at 0 and rises by η (cost − d) per step over
  // budget, falls back to 0 under it; soft_lagrangian's is fixed at 0.01.
  auto c = config::LoadRunConfigFromString("method: lagrangian", "run.yaml");
  ASSERT_OK(c.status());
  EXPECT_EQ(c->constraint().soft_lambda(), 0.01);
  rl::LagrangeController lambda(LagrangeOptionsFrom(*c));
  EXPECT_EQ(lambda.lambda(), 0.0);
  const double d = c->constraint().budget();  // 0.35
  double prev = 0;
  for (int i = 0; i < 5; ++i) {  // mean cost 0.55: 0.2 over the budget
    ASSERT_OK_AND_ASSIGN(double l, lambda.Update(0.55, d));
    EXPECT_NEAR(l - prev, 0.1, 1e-9);  // η = 0.5
    prev = l;
  }
  EXPECT_GT(lambda.lambda(), 10 * c->constraint().soft_lambda());
  for (int i = 0; i < 6; ++i) ASSERT_OK(lambda.Update(0.15, d).status());
  EXPECT_EQ(lambda.lambda(), 0.0);  // 0.5 - 6 * 0.1, projected at 0
}

}  // namespace
}  // namespace cmdistill::services
