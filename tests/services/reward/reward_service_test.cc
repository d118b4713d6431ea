// The reward service in-process: results equal the constraint library's for
// every method on recorded inputs, verifier failures are flagged and counted,
// bad input is refused with its code, the rolling satisfaction ratio moves, and
// the same request gives the same answer.
#include "services/reward/reward_service.h"

#include <grpcpp/grpcpp.h>

#include <cmath>

#include "cmdistill/v1/reward.grpc.pb.h"
#include "common/metrics/metrics.h"
#include "common/net/server.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "services/reward/evaluator.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::reward {
namespace {

using ::testing::HasSubstr;

// A recorded trajectory: "#### 18" in text, T = 3, K = 2 supports, known
// log-probabilities.
v1::Trajectory Recorded(const std::string& text, float teacher_scale) {
  v1::Trajectory t;
  t.set_trajectory_id("lease-1/0");
  t.set_gold_answer("18");
  t.set_completion_text(text);
  const int ids[3] = {5, 6, 7};
  t.mutable_support()->set_k(2);
  const float p[3][2] = {{0.6f, 0.3f}, {0.5f, 0.4f}, {0.9f, 0.05f}};
  for (int i = 0; i < 3; ++i) {
    t.add_completion_ids(ids[i]);
    t.mutable_support()->add_token_ids(ids[i]);
    t.mutable_support()->add_token_ids(ids[i] + 10);
    t.add_behavior_logprobs(std::log(p[i][0]));
    t.add_teacher_sampled_logprobs(std::log(p[i][0] * teacher_scale));
    for (int k = 0; k < 2; ++k) {
      t.add_student_support_logprobs(std::log(p[i][k]));
      t.add_teacher_support_logprobs(
          std::log(k == 0 ? p[i][k] * teacher_scale : p[i][k]));
    }
  }
  return t;
}

struct Server {
  explicit Server(EvaluatorOptions eo, RewardServiceOptions ro = {})
      : evaluator(nullptr, eo) {
    registry = metrics::NewRegistry();
    auto gate = net::GrpcServer::MakeGate({}, registry.get());
    ro.method_name = "test";
    service = std::make_unique<RewardServiceImpl>(&evaluator, gate,
                                                  registry.get(), ro);
    server = *net::GrpcServer::Start({}, gate, {service.get()});
    stub = v1::RewardService::NewStub(server->InProcessChannel());
  }
  ~Server() {
    server->Shutdown(absl::Seconds(5), [&] { service->Close(); });
  }
  grpc::Status Evaluate(const v1::EvaluateRequest& req,
                        v1::EvaluateResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    return stub->Evaluate(&ctx, req, resp);
  }
  double Metric(const std::string& key) {
    auto m = testing::ParsePrometheusText(metrics::Serialize(*registry));
    return m.ok() && m->count(key) ? m->at(key) : -1;
  }
  Evaluator evaluator;
  std::shared_ptr<prometheus::Registry> registry;
  std::unique_ptr<RewardServiceImpl> service;
  std::unique_ptr<net::GrpcServer> server;
  std::unique_ptr<v1::RewardService::Stub> stub;
};

EvaluatorOptions Options(rl::Method m, double budget) {
  EvaluatorOptions o;
  o.reward.method = m;
  o.reward.penalty = 20;
  o.reward.budget = {budget, rl::CostNormalization::kSum, 3};
  return o;
}

TEST(RewardService, EqualsTheLibraryForEveryMethodOnRecordedInputs) {
  for (rl::Method m : {rl::Method::kCmdp, rl::Method::kSaute, rl::Method::kGrpo,
                       rl::Method::kSoftLagrangian, rl::Method::kLagrangian,
                       rl::Method::kGkd, rl::Method::kWeakestLink}) {
    Server s(Options(m, 0.05));
    v1::EvaluateRequest req;
    *req.add_trajectories() = Recorded("She makes 9 * 2 = 18.\n#### 18", 0.5f);
    *req.add_trajectories() = Recorded("#### 17", 1.0f);
    v1::EvaluateResponse resp;
    ASSERT_TRUE(s.Evaluate(req, &resp).ok()) << static_cast<int>(m);
    ASSERT_EQ(resp.evaluations_size(), 2);
    for (int i = 0; i < 2; ++i) {
      const v1::Trajectory& t = req.trajectories(i);
      // The library directly.
      rl::TokenLogProbs lp;
      lp.num_tokens = 3;
      lp.support_k = 2;
      lp.student_support = t.student_support_logprobs();
      lp.teacher_support = t.teacher_support_logprobs();
      auto costs = rl::PerTokenCosts(lp, {});
      ASSERT_OK(costs.status());
      const double reward = i == 0 ? 1.0 : 0.0;
      auto want =
          rl::ModifiedRewards(reward, *costs, t.teacher_sampled_logprobs(),
                              Options(m, 0.05).reward);
      ASSERT_OK(want.status());
      const v1::TrajectoryEvaluation& got = resp.evaluations(i);
      EXPECT_EQ(got.task_reward(), reward);
      EXPECT_NEAR(got.trajectory_return(), want->trajectory_return, 1e-4);
      EXPECT_EQ(got.first_violation_index(), want->check.first_violation);
      EXPECT_EQ(got.constraint_satisfied(), want->check.satisfied);
      ASSERT_EQ(got.modified_rewards_size(), 3);
      for (int k = 0; k < 3; ++k) {
        EXPECT_NEAR(got.modified_rewards(k), want->modified_rewards[k], 1e-4);
        EXPECT_NEAR(got.costs(k), want->check.costs[k], 1e-6);
        // The method's own gate (weakest_link: the teacher-NLL gate).
        EXPECT_EQ(got.feasible(k), want->gate[k]);
      }
    }
    // The teacher-matching trajectory has zero cost: within any budget.
    EXPECT_TRUE(resp.evaluations(1).constraint_satisfied());
    EXPECT_EQ(resp.evaluations(1).extracted_answer(), "17");
  }
}

TEST(RewardService, VerifierFailuresAreFlaggedAndCounted) {
  Server s(Options(rl::Method::kCmdp, 10));
  v1::EvaluateRequest req;
  *req.add_trajectories() = Recorded("I am not sure.", 1.0f);
  v1::EvaluateResponse resp;
  ASSERT_TRUE(s.Evaluate(req, &resp).ok());
  EXPECT_EQ(resp.evaluations(0).task_reward(), 0);
  EXPECT_EQ(resp.evaluations(0).verifier_failure(),
            v1::VERIFIER_FAILURE_NO_ANSWER);
  EXPECT_EQ(
      s.Metric("cmdistill_reward_verifier_failures_total{kind=\"no_answer\"}"),
      1);
}

TEST(RewardService, StylesAreClassifiedOnlyWhenAsked) {
  const char* answers[3] = {"Quick sum: 9*2=18\n#### 18",
                            "Mia starts with 9 marbles.\n#### 18",
                            "She makes 9 * 2 = 18.\n#### 18"};
  for (bool classify : {false, true}) {
    EvaluatorOptions o = Options(rl::Method::kCmdp, 10);
    o.classify_styles = classify;
    Server s(o);
    v1::EvaluateRequest req;
    for (const char* a : answers) *req.add_trajectories() = Recorded(a, 1.0f);
    v1::EvaluateResponse resp;
    ASSERT_TRUE(s.Evaluate(req, &resp).ok());
    ASSERT_EQ(resp.evaluations_size(), 3);
    if (!classify) {
      for (const auto& e : resp.evaluations())
        EXPECT_EQ(e.style(), v1::ANSWER_STYLE_UNSPECIFIED);
      continue;
    }
    EXPECT_EQ(resp.evaluations(0).style(), v1::ANSWER_STYLE_FOREIGN);
    EXPECT_EQ(resp.evaluations(1).style(), v1::ANSWER_STYLE_TEACHER);
    EXPECT_EQ(resp.evaluations(2).style(), v1::ANSWER_STYLE_OTHER);
  }
}

TEST(RewardService, BadInputIsRefusedWithItsCode) {
  Server s(Options(rl::Method::kCmdp, 0.35), [] {
    RewardServiceOptions o;
    o.max_request_trajectories = 2;
    return o;
  }());
  auto refused = [&](const v1::EvaluateRequest& req, const std::string& msg) {
    v1::EvaluateResponse resp;
    grpc::Status st = s.Evaluate(req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << msg;
    EXPECT_THAT(st.error_message(), HasSubstr(msg));
  };
  refused({}, "empty batch");
  v1::EvaluateRequest big;
  for (int i = 0; i < 3; ++i)
    *big.add_trajectories() = Recorded("#### 18", 1.0f);
  refused(big, "at most 2");
  v1::EvaluateRequest nan;
  *nan.add_trajectories() = Recorded("#### 18", 1.0f);
  nan.mutable_trajectories(0)->set_student_support_logprobs(1, std::nanf(""));
  refused(nan, "student_support_logprobs[1]");
  v1::EvaluateRequest inf;
  *inf.add_trajectories() = Recorded("#### 18", 1.0f);
  inf.mutable_trajectories(0)->set_teacher_support_logprobs(0, INFINITY);
  refused(inf, "teacher_support_logprobs[0]");
  v1::EvaluateRequest short_arr;
  *short_arr.add_trajectories() = Recorded("#### 18", 1.0f);
  short_arr.mutable_trajectories(0)
      ->mutable_teacher_support_logprobs()
      ->RemoveLast();
  refused(short_arr, "teacher_support_logprobs has 5 values, expected 6");
  v1::EvaluateRequest no_teacher;
  *no_teacher.add_trajectories() = Recorded("#### 18", 1.0f);
  no_teacher.mutable_trajectories(0)->clear_teacher_support_logprobs();
  no_teacher.mutable_trajectories(0)->clear_teacher_sampled_logprobs();
  refused(no_teacher, "teacher scores are missing");
  v1::EvaluateRequest support;
  *support.add_trajectories() = Recorded("#### 18", 1.0f);
  support.mutable_trajectories(0)->mutable_support()->set_token_ids(0, 99);
  refused(support, "does not contain the sampled token");
  EXPECT_EQ(
      s.Metric("cmdistill_reward_refused_total{reason=\"invalid_trajectory\"}"),
      5);
  EXPECT_EQ(s.Metric("cmdistill_reward_refused_total{reason=\"empty\"}"), 1);
}

TEST(RewardService, DeterministicAndRollingSatisfaction) {
  RewardServiceOptions ro;
  ro.rolling_window = 4;
  Server s(Options(rl::Method::kCmdp, 0.05), ro);
  v1::EvaluateRequest req;
  *req.add_trajectories() =
      Recorded("#### 18", 0.5f);  // costly: violates d = 0.05
  v1::EvaluateResponse a, b;
  ASSERT_TRUE(s.Evaluate(req, &a).ok());
  ASSERT_TRUE(s.Evaluate(req, &b).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(a, b));
  EXPECT_FALSE(a.evaluations(0).constraint_satisfied());
  EXPECT_EQ(s.service->satisfaction_ratio(), 0.0);
  v1::EvaluateRequest good;
  for (int i = 0; i < 4; ++i)
    *good.add_trajectories() = Recorded("#### 18", 1.0f);
  v1::EvaluateResponse c;
  ASSERT_TRUE(s.Evaluate(good, &c).ok());
  EXPECT_EQ(s.service->satisfaction_ratio(),
            1.0);  // the window holds the last 4 only
  EXPECT_EQ(s.Metric("cmdistill_reward_constraint_satisfaction_ratio"), 1.0);
  EXPECT_EQ(s.Metric("cmdistill_reward_violations_total"), 2);
  EXPECT_EQ(s.Metric("cmdistill_reward_correct_total"), 6);
}

}  // namespace
}  // namespace cmdistill::reward
