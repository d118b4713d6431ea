// The learner service's contract with hostile or confused actors: malformed,
// duplicate, unknown-lease, NaN and wrong-version submissions are each refused
// with their outcome and counted, and the run is unaffected; snapshots stream
// with a verifiable checksum.
#include "services/learner/learner_service.h"

#include <grpcpp/grpcpp.h>

#include <cmath>
#include <iostream>

#include "cmdistill/v1/learner.grpc.pb.h"
#include "common/metrics/metrics.h"
#include "common/model/language_model.h"
#include "common/net/server.h"
#include "common/util/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/model_configs.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::learner {
namespace {

checkpoint::ModelConfig Tiny() {
  testing::TinyShape s;
  s.hidden = 16;
  s.intermediate = 32;
  s.heads = 2;
  s.kv_heads = 1;
  s.max_positions = 32;
  return testing::TinyConfig(s);
}

struct Fixture {
  explicit Fixture(uint32_t max_policy_lag = 2,
                   const std::string& dtype = "float32",
                   const v1::LearnerCheckpoint* resume = nullptr,
                   const std::string& weights = "", uint64_t epochs = 1) {
    student = *model::LanguageModel::InitRandom(Tiny(), 1, "cpu", dtype);
    if (!weights.empty()) {
      EXPECT_OK(student->LoadWeights(weights));
    }
    TrainerOptions to;
    to.method = rl::Method::kGrpo;
    trainer = *PolicyTrainer::Create(student.get(), to);
    registry = metrics::NewRegistry();
    gate = net::GrpcServer::MakeGate({}, registry.get());
    LearnerOptions lo;
    lo.lease.samples_per_prompt = 2;
    lo.prompts_per_step = 1;
    lo.max_steps = 100;
    lo.lease.epochs = epochs;
    lo.max_policy_lag = max_policy_lag;
    std::vector<Prompt> prompts = {
        {{1, 2}, "a", "1"}, {{3, 4}, "b", "2"}, {{5, 6}, "c", "3"}};
    auto created =
        LearnerServiceImpl::Create(prompts, student.get(), trainer.get(), gate,
                                   registry.get(), lo, {}, resume);
    EXPECT_OK(created.status());
    if (created.ok()) service = *std::move(created);
    server = *net::GrpcServer::Start({}, gate, {service.get()});
    stub = v1::LearnerService::NewStub(server->InProcessChannel());
  }
  ~Fixture() {
    server->Shutdown(absl::Seconds(2), [&] { service->Close(); });
  }
  v1::PromptLease Lease(const std::string& actor_id = "") {
    grpc::ClientContext ctx;
    v1::LeasePromptsRequest req;
    req.set_max_prompts(1);
    req.set_actor_id(actor_id);
    v1::LeasePromptsResponse resp;
    EXPECT_TRUE(stub->LeasePrompts(&ctx, req, &resp).ok());
    return resp.leases(0);
  }
  v1::Trajectory Make(const v1::PromptLease& l, uint32_t i) {
    v1::Trajectory t;
    *t.mutable_lease() = l.lease();
    t.set_sample_index(i);
    t.set_trajectory_id(l.lease().lease_id() + "/" + std::to_string(i));
    t.mutable_prompt_ids()->CopyFrom(l.prompt_ids());
    t.add_completion_ids(3 + static_cast<int>(i));
    t.add_behavior_logprobs(-1.5f);
    t.mutable_evaluation()->add_feasible(true);
    t.mutable_evaluation()->set_trajectory_return(static_cast<float>(i));
    t.set_policy_version(0);
    return t;
  }
  v1::SubmitOutcome Submit(const v1::Trajectory& t,
                           std::string* reason = nullptr) {
    grpc::ClientContext ctx;
    v1::SubmitTrajectoriesRequest req;
    *req.add_trajectories() = t;
    v1::SubmitTrajectoriesResponse resp;
    EXPECT_TRUE(stub->SubmitTrajectories(&ctx, req, &resp).ok());
    if (reason) *reason = resp.reasons(0);
    return resp.outcomes(0);
  }
  // Leases a prompt, submits its group and waits for the step it makes;
  // returns the new policy version.
  uint64_t TrainOneStep() {
    v1::PromptLease a = Lease();
    Submit(Make(a, 0));
    Submit(Make(a, 1));
    grpc::ClientContext ctx;
    v1::WaitForPolicyRequest w;
    w.set_max_wait_ms(20000);
    v1::WaitForPolicyResponse wr;
    EXPECT_TRUE(stub->WaitForPolicy(&ctx, w, &wr).ok());
    return wr.policy_version();
  }
  double Gauge(const std::string& name) {
    auto m = *testing::ParsePrometheusText(metrics::Serialize(*registry));
    return m[name];
  }
  double Metric(const std::string& outcome) {
    auto m = *testing::ParsePrometheusText(metrics::Serialize(*registry));
    return m["cmdistill_learner_trajectories_total{outcome=\"" + outcome +
             "\"}"];
  }
  std::unique_ptr<model::LanguageModel> student;
  std::unique_ptr<PolicyTrainer> trainer;
  std::shared_ptr<prometheus::Registry> registry;
  std::shared_ptr<net::CallGate> gate;
  std::unique_ptr<LearnerServiceImpl> service;
  std::unique_ptr<net::GrpcServer> server;
  std::unique_ptr<v1::LearnerService::Stub> stub;
};

TEST(LearnerService, BadSubmissionsAreRefusedCountedAndHarmless) {
  Fixture f;
  const v1::PromptLease l = f.Lease();
  std::string reason;
  // NaN behaviour log-probability.
  v1::Trajectory nan = f.Make(l, 0);
  nan.set_behavior_logprobs(0, std::nanf(""));
  EXPECT_EQ(f.Submit(nan, &reason), v1::SUBMIT_OUTCOME_INVALID);
  EXPECT_THAT(reason, ::testing::HasSubstr("NaN"));
  // Malformed: arrays of the wrong length, id outside the vocabulary, bad
  // trajectory id.
  v1::Trajectory shortarr = f.Make(l, 0);
  shortarr.add_completion_ids(4);
  EXPECT_EQ(f.Submit(shortarr), v1::SUBMIT_OUTCOME_INVALID);
  v1::Trajectory vocab = f.Make(l, 0);
  vocab.set_completion_ids(0, 99);
  EXPECT_EQ(f.Submit(vocab), v1::SUBMIT_OUTCOME_INVALID);
  v1::Trajectory id = f.Make(l, 0);
  id.set_trajectory_id("made-up");
  EXPECT_EQ(f.Submit(id), v1::SUBMIT_OUTCOME_INVALID);
  v1::Trajectory prompt = f.Make(l, 0);
  prompt.set_prompt_ids(0, 9);
  EXPECT_EQ(f.Submit(prompt, &reason), v1::SUBMIT_OUTCOME_INVALID);
  EXPECT_THAT(reason, ::testing::HasSubstr("prompt_ids"));
  // A policy version from the future (a history the learner lost by
  // restarting from an older checkpoint: its own outcome, not "invalid"), and
  // an unknown lease.
  v1::Trajectory future = f.Make(l, 0);
  future.set_policy_version(7);
  EXPECT_EQ(f.Submit(future, &reason), v1::SUBMIT_OUTCOME_STALE_HISTORY);
  EXPECT_THAT(reason, ::testing::HasSubstr("restarted"));
  v1::Trajectory unknown = f.Make(l, 0);
  unknown.mutable_lease()->set_lease_id("nope");
  unknown.set_trajectory_id("nope/0");
  EXPECT_EQ(f.Submit(unknown), v1::SUBMIT_OUTCOME_UNKNOWN_LEASE);
  EXPECT_EQ(f.Metric("invalid"), 5);
  EXPECT_EQ(f.Metric("stale_history"), 1);
  EXPECT_EQ(f.Metric("unknown_lease"), 1);
  // The run is unaffected: the good samples complete the group and train a
  // step.
  EXPECT_EQ(f.Submit(f.Make(l, 0)), v1::SUBMIT_OUTCOME_ACCEPTED);
  EXPECT_EQ(f.Submit(f.Make(l, 0)), v1::SUBMIT_OUTCOME_DUPLICATE);
  EXPECT_EQ(f.Submit(f.Make(l, 1)), v1::SUBMIT_OUTCOME_ACCEPTED);
  // Wait for the step through the long-poll.
  grpc::ClientContext ctx;
  v1::WaitForPolicyRequest w;
  w.set_after_version(0);
  w.set_max_wait_ms(20000);
  v1::WaitForPolicyResponse wr;
  ASSERT_TRUE(f.stub->WaitForPolicy(&ctx, w, &wr).ok());
  EXPECT_EQ(wr.policy_version(), 1u);
  ASSERT_EQ(f.service->epoch_status().size(), 1u);
  EXPECT_EQ(f.service->epoch_status()[0].trained(), 1u);
  // After training, a resubmission of a trained trajectory is a duplicate.
  EXPECT_EQ(f.Submit(f.Make(l, 1)), v1::SUBMIT_OUTCOME_DUPLICATE);
  EXPECT_EQ(f.Metric("duplicate"), 2);
}

// Exactly-once visible from outside, and flat over a long run: 20 epochs of 3
// prompts. Every epoch trains each prompt once (ledger and GetStatus); the ids
// kept for duplicate detection stay those of one epoch and the checkpoint
// does not grow with the epochs (format 1 kept every id: ~3 KB more here); a
// late submission for a finished epoch is refused with its reason; a learner
// resumed from the checkpoint reports the same ledger and continues the
// counters instead of restarting them at 0.
TEST(LearnerService, TwentyEpochsExactlyOnceWithFlatStateAndResumedLedger) {
  Fixture f(2, "float32", nullptr, "", /*epochs=*/20);
  v1::PromptLease first;
  size_t bytes_at_epoch_2 = 0, most_ids = 0;
  for (int step = 1; step <= 60; ++step) {
    v1::PromptLease l = f.Lease();
    if (step == 1) first = l;
    for (uint32_t i = 0; i < 2; ++i) {
      v1::Trajectory t = f.Make(l, i);
      t.set_policy_version(static_cast<uint64_t>(step - 1));  // fresh samples
      ASSERT_EQ(f.Submit(t), v1::SUBMIT_OUTCOME_ACCEPTED) << "step " << step;
    }
    grpc::ClientContext ctx;
    v1::WaitForPolicyRequest w;
    w.set_after_version(static_cast<uint64_t>(step - 1));
    w.set_max_wait_ms(20000);
    v1::WaitForPolicyResponse wr;
    ASSERT_TRUE(f.stub->WaitForPolicy(&ctx, w, &wr).ok());
    ASSERT_EQ(wr.policy_version(), static_cast<uint64_t>(step));
    most_ids = std::max(most_ids, f.service->tracked_ids());
    if (step == 6) bytes_at_epoch_2 = f.service->CaptureState().ByteSizeLong();
  }
  const std::vector<v1::EpochStatus> ledger = f.service->epoch_status();
  ASSERT_EQ(ledger.size(), 20u);
  for (const auto& e : ledger) {
    EXPECT_EQ(e.trained(), 3u) << "epoch " << e.epoch();
    EXPECT_EQ(e.unique(), 3u) << "epoch " << e.epoch();
    EXPECT_EQ(e.trajectories().at("accepted"), 6u) << "epoch " << e.epoch();
  }
  EXPECT_LE(most_ids, 9u);  // one epoch: 3 leases + 6 trajectory ids
  const size_t bytes_at_epoch_20 = f.service->CaptureState().ByteSizeLong();
  std::cout << "training state: " << bytes_at_epoch_2
            << " bytes after epoch 2, " << bytes_at_epoch_20
            << " after epoch 20; at most " << most_ids << " ids tracked\n";
  EXPECT_LT(bytes_at_epoch_20, bytes_at_epoch_2 + 1000)
      << bytes_at_epoch_2 << " -> " << bytes_at_epoch_20;
  // The same through the RPC.
  grpc::ClientContext sctx;
  v1::GetStatusResponse status;
  ASSERT_TRUE(f.stub->GetStatus(&sctx, v1::GetStatusRequest(), &status).ok());
  EXPECT_EQ(status.num_prompts(), 3u);
  ASSERT_EQ(status.epochs_size(), 20);
  EXPECT_EQ(status.epochs(19).unique(), 3u);
  // A late sample of epoch 0: refused, with the reason.
  std::string reason;
  EXPECT_EQ(f.Submit(f.Make(first, 1), &reason),
            v1::SUBMIT_OUTCOME_UNKNOWN_LEASE);
  EXPECT_THAT(reason, ::testing::HasSubstr("epoch 0 is finished"));
  EXPECT_EQ(f.Gauge("cmdistill_learner_prompts_trained_total"), 60);
  EXPECT_EQ(f.Metric("accepted"), 120);
  // Resumed from the checkpoint: same ledger, counters continue.
  const v1::LearnerCheckpoint state = f.service->CaptureState();
  Fixture g(2, "float32", &state, "", /*epochs=*/20);
  const std::vector<v1::EpochStatus> again = g.service->epoch_status();
  ASSERT_EQ(again.size(), 20u);
  for (size_t i = 0; i < again.size(); ++i) {
    EXPECT_EQ(again[i].trained(), ledger[i].trained());
    EXPECT_EQ(again[i].unique(), ledger[i].unique());
  }
  EXPECT_EQ(g.Gauge("cmdistill_learner_prompts_trained_total"), 60);
  EXPECT_EQ(g.Metric("accepted"), 120);
  EXPECT_EQ(g.Metric("unknown_lease"), 1);
}

TEST(LearnerService, CountsTheLiveActors) {
  Fixture f;
  EXPECT_EQ(f.Gauge("cmdistill_learner_live_actors"), 0);  // from the start
  f.Lease("actor-a");
  f.Lease("actor-b");
  EXPECT_EQ(f.Gauge("cmdistill_learner_live_actors"), 2);
  f.Lease();  // an actor without an id is not counted (3 prompts: all leased)
  EXPECT_EQ(f.Gauge("cmdistill_learner_live_actors"), 2);
}

TEST(LearnerService, StaleSamplesAbandonTheLeaseAndSnapshotsVerify) {
  Fixture f(/*max_policy_lag=*/0);
  // Train one step so that version 1 exists.
  ASSERT_EQ(f.TrainOneStep(), 1u);
  // With max_policy_lag 0, a sample of version 0 is now too stale: its lease is
  // abandoned and the same prompt is leased again.
  v1::PromptLease b = f.Lease();
  EXPECT_EQ(f.Submit(f.Make(b, 0)), v1::SUBMIT_OUTCOME_TOO_STALE);
  EXPECT_EQ(f.Metric("too_stale"), 1);
  v1::PromptLease again = f.Lease();
  EXPECT_EQ(again.lease().prompt_id(), b.lease().prompt_id());
  EXPECT_NE(again.lease().lease_id(), b.lease().lease_id());
  // Fetch the snapshot: chunks reassemble to the announced size; a pinned old
  // version is gone.
  grpc::ClientContext c1;
  v1::FetchPolicyRequest fr;
  auto reader = f.stub->FetchPolicy(&c1, fr);
  v1::FetchPolicyResponse chunk;
  std::string bytes;
  uint64_t total = 0;
  std::string sha;
  while (reader->Read(&chunk)) {
    if (chunk.has_header()) {
      total = chunk.header().total_bytes();
      sha = chunk.header().sha256_hex();
    }
    EXPECT_EQ(chunk.offset(), bytes.size());
    bytes += chunk.data();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(bytes.size(), total);
  // WaitForPolicy names the snapshot by its digest too (version numbers repeat
  // after a resume from an older checkpoint; the digest does not).
  {
    grpc::ClientContext cw;
    v1::WaitForPolicyRequest w;
    v1::WaitForPolicyResponse wr;
    ASSERT_TRUE(f.stub->WaitForPolicy(&cw, w, &wr).ok());
    EXPECT_EQ(wr.sha256_hex(), sha);
    EXPECT_EQ(wr.sha256_hex(), Sha256Hex(bytes));
  }
  auto other = *model::LanguageModel::InitRandom(Tiny(), 5, "cpu", "float32");
  EXPECT_OK(other->LoadWeights(bytes));
  grpc::ClientContext c2;
  fr.set_policy_version(0 + 99);
  auto old = f.stub->FetchPolicy(&c2, fr);
  while (old->Read(&chunk)) {
  }
  EXPECT_EQ(old->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(LearnerService, Bfloat16CheckpointsCarryMasterWeightsAndResumeExactly) {
  Fixture f(2, "bfloat16");
  ASSERT_EQ(f.TrainOneStep(), 1u);
  const v1::LearnerCheckpoint saved = f.service->CaptureState();
  // One float32 master per (bf16) parameter, as big as the parameter in fp32.
  ASSERT_EQ(saved.optimizer_master_weights_size(),
            saved.optimizer_moments_size() / 2);
  for (int i = 0; i < saved.optimizer_master_weights_size(); ++i) {
    EXPECT_EQ(saved.optimizer_master_weights(i).size(),
              saved.optimizer_moments(2 * i).size());
  }
  // A learner resumed from it (weights as the checkpoint stores them) holds
  // the same master weights, not ones re-rounded from the bf16 copy.
  ASSERT_OK_AND_ASSIGN(std::string weights, f.student->SerializeWeights());
  Fixture g(2, "bfloat16", &saved, weights);
  const v1::LearnerCheckpoint resumed = g.service->CaptureState();
  ASSERT_EQ(resumed.optimizer_master_weights_size(),
            saved.optimizer_master_weights_size());
  for (int i = 0; i < saved.optimizer_master_weights_size(); ++i) {
    EXPECT_EQ(resumed.optimizer_master_weights(i),
              saved.optimizer_master_weights(i))
        << i;
  }
  EXPECT_EQ(resumed.optimizer_step(), 1);
  // A float32 learner has none to store.
  Fixture h;
  const v1::LearnerCheckpoint fp32 = h.service->CaptureState();
  for (const std::string& m : fp32.optimizer_master_weights())
    EXPECT_TRUE(m.empty());
}

}  // namespace
}  // namespace cmdistill::learner
