// The learner service's contract with hostile or confused actors: malformed,
// duplicate, unknown-lease, NaN and wrong-version submissions are each refused
// with their outcome and counted, and the run is unaffected; the exactly-once
// ledger over many epochs and across a resume; snapshots stream what the
// trainer serialised. Driven by a FakeTrainer: links no LibTorch (the same
// service over the real PolicyTrainer:
// tests/services/learner/learner_policy_test.cc).
#include "services/learner/learner_service.h"

#include <grpcpp/grpcpp.h>

#include <cmath>
#include <filesystem>
#include <iostream>

#include "common/util/sha256.h"
#include "common/util/xxh3.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_trainer.h"
#include "tests/testing/learner_fixture.h"
#include "tests/testing/status_matchers.h"

namespace cmdistill::learner {
namespace {

// The service over a FakeTrainer (dtype and weights are the real trainer's
// parameters; the fake has neither).
struct Fixture : testing::LearnerFixture {
  explicit Fixture(uint32_t max_policy_lag = 2,
                   const std::string& /*dtype*/ = "float32",
                   const v1::LearnerCheckpoint* resume = nullptr,
                   const std::string& /*weights*/ = "", uint64_t epochs = 1)
      : LearnerFixture(max_policy_lag, resume, epochs) {
    Start(&trainer);
  }
  ~Fixture() { Stop(); }
  testing::FakeTrainer trainer;
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
  ASSERT_EQ(f.learner->epoch_status().size(), 1u);
  EXPECT_EQ(f.learner->epoch_status()[0].trained(), 1u);
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
    most_ids = std::max(most_ids, f.learner->tracked_ids());
    if (step == 6) bytes_at_epoch_2 = f.learner->CaptureState().ByteSizeLong();
  }
  const std::vector<v1::EpochStatus> ledger = f.learner->epoch_status();
  ASSERT_EQ(ledger.size(), 20u);
  for (const auto& e : ledger) {
    EXPECT_EQ(e.trained(), 3u) << "epoch " << e.epoch();
    EXPECT_EQ(e.unique(), 3u) << "epoch " << e.epoch();
    EXPECT_EQ(e.trajectories().at("accepted"), 6u) << "epoch " << e.epoch();
  }
  EXPECT_LE(most_ids, 9u);  // one epoch: 3 leases + 6 trajectory ids
  const size_t bytes_at_epoch_20 = f.learner->CaptureState().ByteSizeLong();
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
  const v1::LearnerCheckpoint state = f.learner->CaptureState();
  Fixture g(2, "float32", &state, "", /*epochs=*/20);
  const std::vector<v1::EpochStatus> again = g.learner->epoch_status();
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

TEST(LearnerService, SnapshotsStreamWhatTheTrainerSerialised) {
  Fixture f;
  f.Stop();
  f.chunk_bytes = 7;  // many chunks, the last one short
  f.Start(&f.trainer);
  ASSERT_EQ(f.TrainOneStep(), 1u);
  grpc::ClientContext c1;
  auto reader = f.stub->FetchPolicy(&c1, v1::FetchPolicyRequest());
  v1::FetchPolicyResponse chunk;
  std::string bytes, sha, xxh3;
  int chunks = 0;
  while (reader->Read(&chunk)) {
    ++chunks;
    if (chunk.has_header()) {
      sha = chunk.header().sha256_hex();
      xxh3 = chunk.header().xxh3_128_hex();
    }
    EXPECT_EQ(chunk.offset(), bytes.size());
    bytes += chunk.data();
  }
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_OK_AND_ASSIGN(std::string expected, f.trainer.SerializeWeights());
  EXPECT_EQ(bytes, expected);
  EXPECT_EQ(sha, Sha256Hex(expected));
  EXPECT_EQ(xxh3, Xxh3Hex(expected));
  EXPECT_EQ(chunks, static_cast<int>((expected.size() + 6) / 7));
  EXPECT_THAT(bytes, ::testing::StartsWith("fake weights after step 1;"));
}

TEST(LearnerService, FinishedIsAnnouncedOnlyOnceTheFinalStateIsCheckpointed) {
  // Actors exit on "finished": a learner killed after saying it but before
  // its final checkpoint would resume at an older step with nobody left to
  // train the rest. So the last step's checkpoint is on disk first.
  testing::TempDir dir;
  Fixture f;
  f.Stop();
  f.max_steps = 1;
  f.checkpoint_dir = dir.path();
  f.Start(&f.trainer);
  ASSERT_EQ(f.TrainOneStep(), 1u);
  f.learner->WaitUntilFinished();
  EXPECT_TRUE(std::filesystem::is_directory(dir.path() + "/step-00000001"));
  EXPECT_OK(f.learner->final_checkpoint());
}

TEST(LearnerService, AFailedStepIsCountedDroppedAndTheRunGoesOn) {
  Fixture f;
  f.trainer.fail_steps = 1;
  v1::PromptLease a = f.Lease();
  EXPECT_EQ(f.Submit(f.Make(a, 0)), v1::SUBMIT_OUTCOME_ACCEPTED);
  EXPECT_EQ(f.Submit(f.Make(a, 1)), v1::SUBMIT_OUTCOME_ACCEPTED);
  // The next group trains: version 1 comes from it, not from the failed one.
  ASSERT_EQ(f.TrainOneStep(), 1u);
  EXPECT_EQ(f.Metric("step_failed"), 1);
  EXPECT_EQ(f.trainer.groups_trained, 1);
  EXPECT_EQ(f.learner->step(), 1);
}

}  // namespace
}  // namespace cmdistill::learner
