// The learner's trajectory buffer on its own (no gRPC, no model): groups
// complete at G samples, the checks refuse in order with reasons, a stale
// sample re-leases its prompt, capacity and draining, and the checkpoint
// mapping round-trips the buffered groups and the ledger.
#include "services/learner/trajectory_buffer.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace cmdistill::learner {
namespace {

BufferOptions Options(size_t capacity = 64, uint32_t lag = 1) {
  BufferOptions o;
  o.lease.samples_per_prompt = 2;
  o.lease.epochs = 1;
  o.capacity = capacity;
  o.max_policy_lag = lag;
  o.vocab_size = 16;
  return o;
}

std::vector<Prompt> Prompts() {
  return {{{1, 2}, "a", "1"}, {{3, 4}, "b", "2"}};
}

v1::Trajectory Sample(const Lease& l, const Prompt& p, uint32_t i,
                      uint64_t version = 0) {
  v1::Trajectory t;
  t.mutable_lease()->set_lease_id(l.lease_id);
  t.mutable_lease()->set_prompt_id(l.prompt_id);
  t.mutable_lease()->set_epoch(l.epoch);
  t.set_sample_index(i);
  t.set_trajectory_id(LeaseManager::TrajectoryId(l.lease_id, i));
  t.mutable_prompt_ids()->Add(p.ids.begin(), p.ids.end());
  t.add_completion_ids(5);
  t.add_behavior_logprobs(-1.0f);
  t.mutable_evaluation()->add_feasible(true);
  t.set_policy_version(version);
  return t;
}

TEST(TrajectoryBuffer, AGroupIsReadyAtGSamplesAndTrainedOnce) {
  TrajectoryBuffer b(Prompts(), Options());
  const absl::Time now = absl::Now();
  ASSERT_OK_AND_ASSIGN(std::vector<Lease> leases, b.Acquire(1, now));
  const Prompt& p = b.prompts()[leases[0].prompt_id];
  Submitted r = b.Submit(Sample(leases[0], p, 0), 0, now);
  EXPECT_EQ(r.outcome, v1::SUBMIT_OUTCOME_ACCEPTED);
  EXPECT_EQ(r.lag, 0u);
  EXPECT_EQ(b.ready_groups(), 0u);
  EXPECT_EQ(b.Submit(Sample(leases[0], p, 0), 0, now).outcome,
            v1::SUBMIT_OUTCOME_DUPLICATE);
  EXPECT_EQ(b.Submit(Sample(leases[0], p, 1), 0, now).outcome,
            v1::SUBMIT_OUTCOME_ACCEPTED);
  EXPECT_EQ(b.ready_groups(), 1u);
  EXPECT_EQ(b.buffered(), 2u);
  auto groups = b.TakeReady(8);
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].size(), 2u);
  EXPECT_EQ(b.buffered(), 0u);
  b.RecordTrained(groups);
  // A trained sample sent again is a duplicate, by its id.
  EXPECT_EQ(b.Submit(Sample(leases[0], p, 1), 0, now).outcome,
            v1::SUBMIT_OUTCOME_DUPLICATE);
  const auto ledger = b.EpochStatus();
  ASSERT_EQ(ledger.size(), 1u);
  EXPECT_EQ(ledger[0].trained(), 1u);
  EXPECT_EQ(ledger[0].unique(), 1u);
  EXPECT_EQ(ledger[0].trajectories().at("accepted"), 2u);
  EXPECT_EQ(ledger[0].trajectories().at("duplicate"), 2u);
  EXPECT_EQ(b.TrainedTotal(), 1u);
}

TEST(TrajectoryBuffer, RefusalsCarryTheirOutcomeAndReason) {
  TrajectoryBuffer b(Prompts(), Options(64, /*lag=*/1));
  const absl::Time now = absl::Now();
  ASSERT_OK_AND_ASSIGN(std::vector<Lease> leases, b.Acquire(1, now));
  const Prompt& p = b.prompts()[leases[0].prompt_id];
  v1::Trajectory vocab = Sample(leases[0], p, 0);
  vocab.set_completion_ids(0, 16);
  EXPECT_EQ(b.Submit(vocab, 0, now).outcome, v1::SUBMIT_OUTCOME_INVALID);
  v1::Trajectory other = Sample(leases[0], p, 0);
  other.set_prompt_ids(0, 9);
  Submitted r = b.Submit(other, 0, now);
  EXPECT_EQ(r.outcome, v1::SUBMIT_OUTCOME_INVALID);
  EXPECT_THAT(r.reason, ::testing::HasSubstr("prompt_ids"));
  r = b.Submit(Sample(leases[0], p, 0, /*version=*/5), 3, now);
  EXPECT_EQ(r.outcome, v1::SUBMIT_OUTCOME_STALE_HISTORY);
  EXPECT_THAT(r.reason, ::testing::HasSubstr("newer than the learner's (3)"));
  v1::Trajectory unknown = Sample(leases[0], p, 0);
  unknown.mutable_lease()->set_lease_id("nope");
  EXPECT_EQ(b.Submit(unknown, 0, now).outcome,
            v1::SUBMIT_OUTCOME_UNKNOWN_LEASE);
  // Two versions behind with a lag of 1: too stale, and the prompt is leased
  // again under a new lease.
  EXPECT_EQ(b.Submit(Sample(leases[0], p, 0, 0), 2, now).outcome,
            v1::SUBMIT_OUTCOME_TOO_STALE);
  ASSERT_OK_AND_ASSIGN(std::vector<Lease> again, b.Acquire(2, now));
  ASSERT_FALSE(again.empty());
  EXPECT_EQ(again[0].prompt_id, leases[0].prompt_id);
  EXPECT_NE(again[0].lease_id, leases[0].lease_id);
  const auto totals = b.OutcomeTotals();
  EXPECT_EQ(totals.at("invalid"), 2u);
  EXPECT_EQ(totals.at("stale_history"), 1u);
  EXPECT_EQ(totals.at("unknown_lease"), 1u);
  EXPECT_EQ(totals.at("too_stale"), 1u);
}

TEST(TrajectoryBuffer, CapacityReturnsAndDraining) {
  TrajectoryBuffer b(Prompts(), Options(/*capacity=*/1));
  const absl::Time now = absl::Now();
  EXPECT_TRUE(b.Fits(1));
  EXPECT_FALSE(b.Fits(2));
  ASSERT_OK_AND_ASSIGN(std::vector<Lease> leases, b.Acquire(2, now));
  ASSERT_EQ(leases.size(), 2u);
  const Prompt& p = b.prompts()[leases[0].prompt_id];
  EXPECT_EQ(b.Submit(Sample(leases[0], p, 0), 0, now).outcome,
            v1::SUBMIT_OUTCOME_ACCEPTED);
  EXPECT_TRUE(b.full());
  // Returning the lease drops its partial group.
  EXPECT_EQ(b.Return({leases[0].lease_id, "nope"}), 1u);
  EXPECT_EQ(b.buffered(), 0u);
  EXPECT_FALSE(b.drained());  // the other lease is out, one prompt pending
}

TEST(TrajectoryBuffer, TheCheckpointMappingRoundTrips) {
  TrajectoryBuffer b(Prompts(), Options());
  const absl::Time now = absl::Now();
  ASSERT_OK_AND_ASSIGN(std::vector<Lease> leases, b.Acquire(2, now));
  const Prompt& p0 = b.prompts()[leases[0].prompt_id];
  const Prompt& p1 = b.prompts()[leases[1].prompt_id];
  b.Submit(Sample(leases[0], p0, 0), 0, now);
  b.Submit(Sample(leases[0], p0, 1), 0, now);  // ready
  b.Submit(Sample(leases[1], p1, 1), 0, now);  // partial
  v1::LearnerCheckpoint c;
  b.Capture(&c);
  EXPECT_EQ(c.format_version(), 2u);
  EXPECT_EQ(c.num_prompts(), 2u);
  TrajectoryBuffer r(Prompts(), Options());
  ASSERT_OK(r.Restore(c));
  EXPECT_EQ(r.buffered(), 3u);
  EXPECT_EQ(r.ready_groups(), 1u);
  EXPECT_EQ(r.leases().outstanding(), 1u);  // the partial group's lease
  // The partial group completes after the restore.
  EXPECT_EQ(r.Submit(Sample(leases[1], p1, 0), 0, now).outcome,
            v1::SUBMIT_OUTCOME_ACCEPTED);
  EXPECT_EQ(r.ready_groups(), 2u);
  EXPECT_EQ(r.OutcomeTotals().at("accepted"), 4u);
  // Another data set is refused.
  TrajectoryBuffer three({{{1}, "a", "1"}, {{2}, "b", "2"}, {{3}, "c", "3"}},
                         Options());
  EXPECT_EQ(three.Restore(c).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace cmdistill::learner
