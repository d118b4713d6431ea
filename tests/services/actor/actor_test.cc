// The actor on its own, torch-free: a scripted Policy behind the actor's seam,
// the real learner service over a FakeTrainer, the real teacher service over a
// FakeScorer and the real reward service, in-process on 127.0.0.1:0. Checks
// what the actor does with them: syncs the published policy (the bytes the
// trainer serialised), samples G per leased prompt, has every sample scored
// and evaluated, submits exactly one group per prompt, and stops cleanly when
// the learner says training is finished.
#include "services/actor/actor.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/metrics/http_exposer.h"
#include "common/metrics/metrics.h"
#include "common/net/client.h"
#include "common/net/http_get.h"
#include "common/net/server.h"
#include "common/tokenizer/tokenizer.h"
#include "common/util/sha256.h"
#include "common/util/xxh3.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/learner/learner_service.h"
#include "services/reward/evaluator.h"
#include "services/reward/reward_service.h"
#include "services/teacher/teacher_service.h"
#include "tests/testing/fake_scorer.h"
#include "tests/testing/fake_trainer.h"
#include "tests/testing/serve.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::actor {
namespace {

// Answers every prompt with the token '7' (log-probability -0.5; a support of
// '7' and '8' when one is asked for) and records the weights it was given.
class FakePolicy final : public Policy {
 public:
  int64_t vocab_size() const override { return 100; }
  absl::Status LoadWeights(const std::string& bytes) override {
    absl::MutexLock lock(&mu_);
    loaded_.push_back(bytes.substr(0, bytes.find(';')));
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<model::GenerationResult>> Generate(
      const std::vector<std::vector<int32_t>>& prompts,
      const model::SamplingOptions& o) override {
    absl::MutexLock lock(&mu_);
    std::vector<model::GenerationResult> out(prompts.size());
    for (auto& r : out) {
      r.tokens = {'7'};
      r.logprobs = {-0.5f};
      if (o.support_k > 0) {
        r.support_k = 2;
        r.support_ids = {'7', '8'};
        r.support_logprobs = {-0.5f, -1.5f};
      }
    }
    sampled_ += prompts.size();
    return out;
  }
  std::vector<std::string> loaded() const {
    absl::MutexLock lock(&mu_);
    return loaded_;
  }
  size_t sampled() const {
    absl::MutexLock lock(&mu_);
    return sampled_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> loaded_ ABSL_GUARDED_BY(mu_);
  size_t sampled_ ABSL_GUARDED_BY(mu_) = 0;
};

using testing::Dial;
using testing::Serve;
using testing::StatusIs;

TEST(Actor, TrainsEachLeasedPromptOnceThroughTheServicesAndStops) {
  // Learner: 3 prompts, G = 2, one epoch, a step per group.
  testing::FakeTrainer trainer(/*vocab_size=*/100);
  auto lreg = metrics::NewRegistry();
  auto lgate = net::GrpcServer::MakeGate({}, lreg.get());
  learner::LearnerOptions lo;
  lo.lease.samples_per_prompt = 2;
  lo.prompts_per_step = 1;
  lo.max_steps = 100;  // ends with the data
  lo.chunk_bytes = 5;  // snapshots arrive in many chunks
  std::vector<learner::Prompt> prompts = {{{'Q', '1'}, "Q1", "7"},
                                          {{'Q', '2'}, "Q2", "7"},
                                          {{'Q', '3'}, "Q3", "8"}};
  auto learner = *learner::Learner::Create(prompts, &trainer, lreg.get(), lo);
  learner::LearnerServiceImpl learner_service(learner.get(), lgate);
  auto learner_server = Serve(lgate, &learner_service);
  // Teacher over the fake scorer.
  testing::FakeScorer scorer;
  auto treg = metrics::NewRegistry();
  auto tgate = net::GrpcServer::MakeGate({}, treg.get());
  teacher::TeacherServiceImpl teacher(&scorer, tgate, treg.get(), {});
  auto teacher_server = Serve(tgate, &teacher);
  // Reward: the byte tokenizer decodes '7'; grading by the last number.
  auto tok = *tokenizer::Tokenizer::FromJson(
      tokenizer::MakeByteLevelTokenizerJson({}, {"<|endoftext|>"}), "",
      "bytes");
  reward::EvaluatorOptions eo;
  eo.reward.method = rl::Method::kGrpo;
  eo.strictness = tasks::Strictness::kLastNumber;
  reward::Evaluator evaluator(tok.get(), eo);
  auto rreg = metrics::NewRegistry();
  auto rgate = net::GrpcServer::MakeGate({}, rreg.get());
  reward::RewardServiceImpl reward(&evaluator, rgate, rreg.get(), {});
  auto reward_server = Serve(rgate, &reward);

  FakePolicy policy;
  ActorOptions ao;
  ao.actor_id = "actor-under-test";
  ao.prompts_per_lease = 1;
  ao.sampling.support_k = 2;
  ao.call.timeout = absl::Seconds(30);
  ao.call.retry.initial_backoff = absl::Milliseconds(5);
  ao.idle_wait = absl::Milliseconds(20);
  auto areg = metrics::NewRegistry();
  Actor actor(ao, &policy, Dial(*learner_server), Dial(*teacher_server),
              Dial(*reward_server), areg.get());
  std::atomic<bool> stop{false};
  // Returns once the learner has no more prompts to lease; the last group may
  // still be in its buffer: wait for the learner to train it.
  ASSERT_OK(actor.Run(stop));
  learner->WaitUntilFinished();

  // One group per prompt was trained, each of G samples.
  EXPECT_EQ(trainer.groups_trained, 3);
  const auto ledger = learner->epoch_status();
  ASSERT_EQ(ledger.size(), 1u);
  EXPECT_EQ(ledger[0].unique(), 3u);
  EXPECT_EQ(ledger[0].trajectories().at("accepted"), 6u);
  EXPECT_EQ(policy.sampled(), 6u);
  // Every sample went through the teacher.
  size_t scored = 0;
  for (const auto& ids : scorer.scored()) {
    EXPECT_THAT(ids, ::testing::ElementsAre('7'));
    ++scored;
  }
  EXPECT_EQ(scored, 6u);
  // The policy it sampled from is the one the trainer published: version 0
  // at start, then newer versions between rounds.
  const std::vector<std::string> loaded = policy.loaded();
  ASSERT_FALSE(loaded.empty());
  EXPECT_EQ(loaded[0], "fake weights after step 0");
  EXPECT_GE(actor.policy_version(), 1u);
  auto m = *testing::ParsePrometheusText(metrics::Serialize(*areg));
  EXPECT_EQ(m["cmdistill_actor_trajectories_total"], 6);
  // Every completed round's time broken down: one observation per phase and
  // round (idle rounds included), no negative part, the parts within the
  // whole; the RPC phases took time.
  const double rounds = m["cmdistill_actor_round_seconds_count"];
  EXPECT_GE(rounds, 3);  // 3 prompts, one per lease
  double parts = 0;
  for (const char* p :
       {"sync", "lease", "sampling", "teacher", "reward", "submit", "idle"}) {
    const std::string label = absl::StrCat("{phase=\"", p, "\"}");
    const std::string sum =
        absl::StrCat("cmdistill_actor_round_phase_seconds_sum", label);
    ASSERT_EQ(m.count(sum), 1u) << sum;
    EXPECT_GE(m[sum], 0) << p;
    EXPECT_EQ(
        m[absl::StrCat("cmdistill_actor_round_phase_seconds_count", label)],
        rounds)
        << p;
    parts += m[sum];
  }
  EXPECT_GT(m["cmdistill_actor_round_phase_seconds_sum{phase=\"teacher\"}"], 0);
  EXPECT_GT(m["cmdistill_actor_round_phase_seconds_sum{phase=\"submit\"}"], 0);
  EXPECT_LE(parts, m["cmdistill_actor_round_seconds_sum"] + 1e-6);
  // Prompts 1 and 2 have gold 7: the reward service graded their 4 samples
  // correct, prompt 3's 2 not.
  auto r = *testing::ParsePrometheusText(metrics::Serialize(*rreg));
  EXPECT_EQ(r["cmdistill_reward_trajectories_total"], 6);
  EXPECT_EQ(r["cmdistill_reward_correct_total"], 4);
  learner_server->Shutdown(absl::Seconds(2), [&] { learner->Close(); });
  teacher_server->Shutdown(absl::Seconds(2), [&] { teacher.Close(); });
  reward_server->Shutdown(absl::Seconds(2), [] {});
}

// A learner that publishes one snapshot in two chunks with the checksums it is
// given: a corrupt transfer, or a learner from before the XXH3 field; or with
// a broken stream (a gap between the chunks, an absurd announced size).
class ScriptedLearner final : public v1::LearnerService::CallbackService {
 public:
  ScriptedLearner(std::string bytes, std::string sha256, std::string xxh3)
      : bytes_(std::move(bytes)),
        sha256_(std::move(sha256)),
        xxh3_(std::move(xxh3)) {}
  uint64_t gap = 0;        // added to the second chunk's offset
  uint64_t announced = 0;  // total_bytes in the header, when not 0
  grpc::ServerUnaryReactor* WaitForPolicy(
      grpc::CallbackServerContext* ctx, const v1::WaitForPolicyRequest*,
      v1::WaitForPolicyResponse* resp) override {
    resp->set_policy_version(1);
    resp->set_sha256_hex(sha256_);
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
  grpc::ServerWriteReactor<v1::FetchPolicyResponse>* FetchPolicy(
      grpc::CallbackServerContext*, const v1::FetchPolicyRequest*) override {
    class Writer final
        : public grpc::ServerWriteReactor<v1::FetchPolicyResponse> {
     public:
      explicit Writer(const ScriptedLearner& l) {
        const size_t half = l.bytes_.size() / 2;
        auto* h = msgs_[0].mutable_header();
        h->set_policy_version(1);
        h->set_total_bytes(l.announced ? l.announced : l.bytes_.size());
        h->set_sha256_hex(l.sha256_);
        h->set_xxh3_128_hex(l.xxh3_);
        msgs_[0].set_data(l.bytes_.substr(0, half));
        msgs_[1].set_offset(half + l.gap);
        msgs_[1].set_data(l.bytes_.substr(half));
        StartWrite(&msgs_[0]);
      }
      void OnWriteDone(bool ok) override {
        if (ok && next_ < 2) {
          StartWrite(&msgs_[next_++]);
        } else {
          Finish(grpc::Status::OK);
        }
      }
      void OnDone() override { delete this; }

     private:
      v1::FetchPolicyResponse msgs_[2];
      int next_ = 1;
    };
    return new Writer(*this);
  }

 private:
  std::string bytes_, sha256_, xxh3_;
};

// One SyncPolicy of a fresh actor against `learner`: its status and what the
// policy was given.
struct SyncOutcome {
  absl::Status status;
  std::vector<std::string> loaded;
  uint64_t version = 0;
};

SyncOutcome SyncAgainst(ScriptedLearner& learner) {
  auto sreg = metrics::NewRegistry();
  auto gate = net::GrpcServer::MakeGate({}, sreg.get());
  auto server = Serve(gate, &learner);
  ActorOptions ao;
  ao.call.timeout = absl::Seconds(30);
  ao.call.retry.max_attempts = 1;
  FakePolicy policy;
  auto reg = metrics::NewRegistry();
  Actor actor(ao, &policy, Dial(*server), nullptr, Dial(*server), reg.get());
  SyncOutcome out;
  out.status = actor.SyncPolicy();
  out.loaded = policy.loaded();
  out.version = actor.policy_version();
  server->Shutdown(absl::Seconds(2), [] {});
  return out;
}

// A learner with one prompt (G = 1) behind its real gRPC service on
// 127.0.0.1:0, over a FakeTrainer.
struct OnePromptLearner {
  explicit OnePromptLearner(absl::Duration lease = absl::Seconds(120)) {
    learner::LearnerOptions lo;
    lo.lease.samples_per_prompt = 1;
    lo.lease.lease_duration = lease;
    lo.prompts_per_step = 1;
    lo.max_steps = 100;
    learner = *learner::Learner::Create({{{'Q', '1'}, "Q1", "7"}}, &trainer,
                                        registry.get(), lo);
    service =
        std::make_unique<learner::LearnerServiceImpl>(learner.get(), gate);
    server = Serve(gate, service.get());
  }
  testing::FakeTrainer trainer{/*vocab_size=*/100};
  std::shared_ptr<prometheus::Registry> registry = metrics::NewRegistry();
  std::shared_ptr<net::CallGate> gate =
      net::GrpcServer::MakeGate({}, registry.get());
  std::unique_ptr<learner::Learner> learner;
  std::unique_ptr<learner::LearnerServiceImpl> service;
  std::unique_ptr<net::GrpcServer> server;
};

// An actor whose learner answered and then went away for good (the run ended
// while the actor was away longer than the learner's linger): it stops by
// itself once the learner has not answered for the horizon. Before any answer
// the horizon does not run (a learner slow to start has not ended the run).
TEST(Actor, StopsByItselfWhenTheLearnerStaysAwayPastTheHorizon) {
  OnePromptLearner l(absl::Milliseconds(200));  // re-leased at once

  FakePolicy policy;
  ActorOptions ao;
  ao.actor_id = "away-actor";
  ao.needs_teacher = false;
  ao.call.timeout = absl::Milliseconds(300);
  ao.call.retry.initial_backoff = absl::Milliseconds(5);
  ao.learner_horizon = absl::Seconds(1);
  // The reward service is unreachable: every round fails after its lease.
  auto nowhere =
      grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  auto areg = metrics::NewRegistry();
  Actor actor(ao, &policy, Dial(*l.server), nullptr, nowhere, areg.get());
  std::atomic<bool> stop{false};
  absl::Status ran;
  absl::Notification ended;
  std::thread run([&] {
    ran = actor.Run(stop);
    ended.Notify();
  });
  // Rounds fail at the reward service while the learner answers: no horizon.
  auto learner_answers = [&] {
    auto m = *testing::ParsePrometheusText(metrics::Serialize(*areg));
    return m["cmdistill_actor_rpcs_total{code=\"ok\",peer=\"learner\"}"];
  };
  while (learner_answers() < 10) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_FALSE(ended.HasBeenNotified());
  const absl::Time gone = absl::Now();
  // The server goes; the learner itself is closed only after the actor ended
  // (a closing learner's answers could look like "finished").
  l.server->Shutdown(absl::Seconds(2), [] {});
  ASSERT_TRUE(ended.WaitForNotificationWithTimeout(absl::Seconds(60)));
  run.join();
  l.learner->Close();
  EXPECT_OK(ran);
  EXPECT_TRUE(actor.learner_gone());
  EXPECT_GE(absl::Now() - gone, ao.learner_horizon);
  auto m = *testing::ParsePrometheusText(metrics::Serialize(*areg));
  // Each call ends UNAVAILABLE, or DEADLINE_EXCEEDED while retrying that.
  EXPECT_GT(
      m["cmdistill_actor_rpcs_total{code=\"unavailable\",peer=\"learner\"}"] +
          m["cmdistill_actor_rpcs_total{code=\"deadline_exceeded\",peer="
            "\"learner\"}"],
      0);
}

// Samples one token, but blocks in Generate until released: a stuck loop (the
// process runs and answers scrapes, its work does not move).
class StuckPolicy final : public Policy {
 public:
  int64_t vocab_size() const override { return 100; }
  absl::Status LoadWeights(const std::string&) override {
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<model::GenerationResult>> Generate(
      const std::vector<std::vector<int32_t>>& prompts,
      const model::SamplingOptions&) override {
    if (!entered.HasBeenNotified()) entered.Notify();
    release.WaitForNotification();
    std::vector<model::GenerationResult> out(prompts.size());
    for (auto& r : out) {
      r.tokens = {'7'};
      r.logprobs = {-0.5f};
    }
    return out;
  }
  absl::Notification entered, release;
};

// The liveness probe of an actor (GET /healthz on its metrics port) fails
// while its loop is stuck, and recovers when it moves again.
TEST(Actor, HealthzFailsWhileTheLoopIsStuck) {
  OnePromptLearner l;

  StuckPolicy policy;
  ActorOptions ao;
  ao.actor_id = "stuck-actor";
  ao.needs_teacher = false;
  ao.call.timeout = absl::Seconds(5);
  ao.call.retry.initial_backoff = absl::Milliseconds(5);
  auto areg = metrics::NewRegistry();
  auto nowhere =
      grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  Actor actor(ao, &policy, Dial(*l.server), nullptr, nowhere, areg.get());
  auto exposer = *metrics::HttpExposer::Start("127.0.0.1:0", areg);
  const absl::Duration stall = absl::Milliseconds(200);
  exposer->SetHealthCheck([&] { return actor.Health(absl::Now(), stall); });
  EXPECT_EQ(actor.Health(absl::Now(), absl::Hours(1)), "");  // just made

  std::atomic<bool> stop{false};
  std::thread run([&] { (void)actor.Run(stop); });
  policy.entered.WaitForNotification();  // stuck in sampling from now on
  absl::StatusOr<std::string> probe;
  const absl::Time until = absl::Now() + absl::Seconds(30);
  do {
    absl::SleepFor(absl::Milliseconds(20));
    probe = net::HttpGet(exposer->port(), "/healthz");
  } while (probe.ok() && absl::Now() < until);
  EXPECT_THAT(probe.status().message(), ::testing::HasSubstr("503"));
  EXPECT_THAT(probe.status().message(),
              ::testing::HasSubstr("no progress for"));
  // The stall is measured, not guessed: not before `stall` has passed.
  EXPECT_EQ(actor.Health(absl::Now(), absl::Hours(1)), "");

  stop.store(true);
  policy.release.Notify();  // it moves again (and stops)
  run.join();
  exposer->SetHealthCheck(nullptr);
  EXPECT_OK(net::HttpGet(exposer->port(), "/healthz"));
  l.server->Shutdown(absl::Seconds(2), [&] { l.learner->Close(); });
}

TEST(Actor, ChecksASnapshotBeforeLoadingItAndReadsOlderLearners) {
  const std::string weights =
      "fake weights of version 1;" + std::string(5000, 'w');
  // The learner's XXH3 does not match what arrives: DATA_LOSS, nothing loaded.
  ScriptedLearner corrupt(weights, Sha256Hex(weights), Xxh3Hex(weights + "x"));
  SyncOutcome r = SyncAgainst(corrupt);
  EXPECT_THAT(r.status, StatusIs(absl::StatusCode::kDataLoss,
                                 ::testing::HasSubstr("checksum")));
  EXPECT_TRUE(r.loaded.empty());
  // A learner that sends only the SHA-256 (before XXH3): checked with it.
  ScriptedLearner old(weights, Sha256Hex(weights), "");
  r = SyncAgainst(old);
  EXPECT_OK(r.status);
  EXPECT_THAT(r.loaded, ::testing::ElementsAre("fake weights of version 1"));
  EXPECT_EQ(r.version, 1u);
  ScriptedLearner old_corrupt(weights, Sha256Hex("other"), "");
  r = SyncAgainst(old_corrupt);
  EXPECT_THAT(r.status, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_TRUE(r.loaded.empty());
  // A broken stream is DATA_LOSS naming what broke, and nothing is loaded.
  ScriptedLearner gap(weights, Sha256Hex(weights), Xxh3Hex(weights));
  gap.gap = 3;
  r = SyncAgainst(gap);
  EXPECT_THAT(r.status,
              StatusIs(absl::StatusCode::kDataLoss,
                       ::testing::HasSubstr("offset 2516, expected 2513")));
  EXPECT_TRUE(r.loaded.empty());
  ScriptedLearner huge(weights, Sha256Hex(weights), Xxh3Hex(weights));
  huge.announced = uint64_t{1} << 62;
  r = SyncAgainst(huge);
  EXPECT_THAT(r.status, StatusIs(absl::StatusCode::kDataLoss,
                                 ::testing::HasSubstr("cannot hold")));
  EXPECT_TRUE(r.loaded.empty());
}

}  // namespace
}  // namespace cmdistill::actor
