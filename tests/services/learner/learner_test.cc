// The learner's update loop driven directly, without gRPC: leases and
// submissions on the messages, steps on a FakeTrainer, the end of a run and
// its durable checkpoint (tests/services/learner/learner_service_test.cc: the
// same learner behind its RPCs).
#include "services/learner/learner.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/metrics/metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/learner/checkpoints.h"
#include "tests/testing/fake_trainer.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::learner {
namespace {

using ::cmdistill::testing::StatusIs;
using ::testing::HasSubstr;

struct Loop {
  explicit Loop(int64_t max_steps, std::string checkpoint_dir = "",
                int64_t checkpoint_every = 0) {
    LearnerOptions o;
    o.lease.samples_per_prompt = 2;
    o.prompts_per_step = 1;
    o.max_steps = max_steps;
    o.checkpoint_dir = std::move(checkpoint_dir);
    o.checkpoint_every = checkpoint_every;
    o.buffer_capacity = 4;
    std::vector<Prompt> prompts = {
        {{1, 2}, "a", "1"}, {{3, 4}, "b", "2"}, {{5, 6}, "c", "3"}};
    auto created =
        Learner::Create(prompts, &trainer, registry.get(), o,
                        [this](const StepStats& s, uint64_t version) {
                          versions.push_back(version);
                          stats.push_back(s);
                        });
    EXPECT_OK(created.status());
    learner = *std::move(created);
  }
  v1::PromptLease Lease(const std::string& actor = "") {
    v1::LeasePromptsRequest req;
    req.set_max_prompts(1);
    req.set_actor_id(actor);
    v1::LeasePromptsResponse resp;
    EXPECT_OK(learner->Lease(req, &resp));
    EXPECT_EQ(resp.leases_size(), 1);
    return resp.leases(0);
  }
  absl::Status SubmitGroup(const v1::PromptLease& l) {
    v1::SubmitTrajectoriesRequest req;
    for (uint32_t i = 0; i < 2; ++i) {
      v1::Trajectory* t = req.add_trajectories();
      *t->mutable_lease() = l.lease();
      t->set_sample_index(i);
      t->set_trajectory_id(l.lease().lease_id() + "/" + std::to_string(i));
      t->mutable_prompt_ids()->CopyFrom(l.prompt_ids());
      t->add_completion_ids(3);
      t->add_behavior_logprobs(-1.5f);
      t->mutable_evaluation()->add_feasible(true);
      t->mutable_evaluation()->set_trajectory_return(1.0f);
    }
    v1::SubmitTrajectoriesResponse resp;
    absl::Status s = learner->Submit(req, &resp);
    for (int i = 0; i < resp.outcomes_size(); ++i)
      EXPECT_EQ(resp.outcomes(i), v1::SUBMIT_OUTCOME_ACCEPTED)
          << resp.reasons(i);
    return s;
  }
  double Metric(const std::string& series) {
    auto m = *testing::ParsePrometheusText(metrics::Serialize(*registry));
    return m[series];
  }

  testing::FakeTrainer trainer;
  std::shared_ptr<prometheus::Registry> registry = metrics::NewRegistry();
  std::vector<uint64_t> versions;  // the observer's, one per step
  std::vector<StepStats> stats;    // likewise
  std::unique_ptr<Learner> learner;
};

TEST(Learner, TrainsEachGroupOnceAndFinishesDurablyAtMaxSteps) {
  testing::TempDir dir;
  Loop l(/*max_steps=*/2, dir.path());
  EXPECT_EQ(l.learner->policy_version(), 0u);
  ASSERT_OK(l.SubmitGroup(l.Lease()));
  ASSERT_OK(l.SubmitGroup(l.Lease()));
  l.learner->WaitUntilFinished();
  EXPECT_TRUE(l.learner->finished());
  EXPECT_EQ(l.learner->step(), 2);
  EXPECT_EQ(l.learner->policy_version(), 2u);
  EXPECT_EQ(l.versions, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(l.trainer.groups_trained, 2);
  // The state that "finished" describes was written before it was announced.
  EXPECT_OK(l.learner->final_checkpoint());
  EXPECT_TRUE(std::filesystem::is_directory(dir.path() + "/step-00000002"));
  v1::LeasePromptsRequest req;
  req.set_max_prompts(1);
  v1::LeasePromptsResponse resp;
  EXPECT_THAT(l.learner->Lease(req, &resp),
              StatusIs(absl::StatusCode::kOutOfRange, "training is finished"));
  v1::GetStatusResponse status;
  l.learner->Status(&status);
  EXPECT_TRUE(status.finished());
  EXPECT_EQ(status.step(), 2u);
  ASSERT_EQ(status.epochs_size(), 1);
  EXPECT_EQ(status.epochs(0).trained(), 2u);
}

// A step's wall time, broken down: waiting for trajectories, the update and
// publishing the weights; no part negative, the parts within the whole.
TEST(Learner, AStepsTimeIsBrokenDownAndAddsUp) {
  testing::TempDir dir;
  Loop l(/*max_steps=*/2, dir.path(), /*checkpoint_every=*/1);
  const absl::Time start = absl::Now();
  ASSERT_OK(l.SubmitGroup(l.Lease()));
  ASSERT_OK(l.SubmitGroup(l.Lease()));
  l.learner->WaitUntilFinished();
  const double whole = absl::ToDoubleSeconds(absl::Now() - start);
  ASSERT_EQ(l.stats.size(), 2u);
  double parts = 0;
  for (const StepStats& s : l.stats) {
    EXPECT_GE(s.wait_seconds, 0);
    EXPECT_GE(s.update_seconds, 0);
    EXPECT_GE(s.publish_seconds, 0);
    EXPECT_GE(s.checkpoint_seconds, 0);
    parts += s.wait_seconds + s.update_seconds + s.publish_seconds +
             s.checkpoint_seconds;
  }
  EXPECT_LE(parts, whole);
  // Step 2 carries the checkpoint written after step 1 (a real write: it
  // took time), step 1 none; the metric saw the same time.
  EXPECT_EQ(l.stats[0].checkpoint_seconds, 0);
  EXPECT_GT(l.stats[1].checkpoint_seconds, 0);
  EXPECT_DOUBLE_EQ(
      l.Metric(
          "cmdistill_learner_step_phase_seconds_sum{phase=\"checkpoint\"}"),
      l.stats[1].checkpoint_seconds);
  // The same in the metrics: one observation per step and phase; one
  // checkpoint (step 1's; the final one is the durable finish).
  for (const char* phase : {"wait", "update", "publish"}) {
    EXPECT_EQ(l.Metric(absl::StrCat(
                  "cmdistill_learner_step_phase_seconds_count{phase=\"", phase,
                  "\"}")),
              2)
        << phase;
  }
  EXPECT_EQ(l.Metric("cmdistill_learner_step_phase_seconds_count{phase="
                     "\"checkpoint\"}"),
            1);
  EXPECT_LE(
      l.Metric("cmdistill_learner_step_phase_seconds_sum{phase=\"wait\"}") +
          l.Metric("cmdistill_learner_step_phase_seconds_sum{phase="
                   "\"update\"}") +
          l.Metric("cmdistill_learner_step_phase_seconds_sum{phase="
                   "\"publish\"}"),
      whole);
}

TEST(Learner, RefusesWhatDoesNotFitAndZeroPrompts) {
  Loop l(/*max_steps=*/100);
  v1::LeasePromptsRequest zero;
  v1::LeasePromptsResponse resp;
  EXPECT_THAT(
      l.learner->Lease(zero, &resp),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_prompts")));
  v1::SubmitTrajectoriesRequest big;
  for (int i = 0; i < 5; ++i) big.add_trajectories();  // capacity is 4
  v1::SubmitTrajectoriesResponse refused;
  EXPECT_THAT(l.learner->Submit(big, &refused),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("buffer is full")));
  EXPECT_EQ(refused.outcomes_size(), 0);  // nothing taken
  EXPECT_EQ(l.learner->step(), 0);
}

TEST(Learner, AFailedCheckpointIsCountedAndTrainingGoesOn) {
  // The checkpoint root is a file: every write fails.
  testing::TempDir dir;
  const std::string root = dir.Write("not-a-folder", "x");
  Loop l(/*max_steps=*/2, root, /*checkpoint_every=*/1);
  ASSERT_OK(l.SubmitGroup(l.Lease()));
  ASSERT_OK(l.SubmitGroup(l.Lease()));
  l.learner->WaitUntilFinished();
  EXPECT_EQ(l.learner->step(), 2);
  EXPECT_FALSE(l.learner->final_checkpoint().ok());
  // Step 1's periodic checkpoint and the final one.
  EXPECT_EQ(l.Metric("cmdistill_learner_trajectories_total{outcome="
                     "\"checkpoint_failed\"}"),
            2);
}

TEST(Learner, ResumesAFinishedRunWithoutTraining) {
  Loop first(/*max_steps=*/1);
  ASSERT_OK(first.SubmitGroup(first.Lease("actor-a")));
  first.learner->WaitUntilFinished();
  const v1::LearnerCheckpoint state = first.learner->CaptureState();
  first.learner->Close();
  EXPECT_EQ(state.step(), 1);
  EXPECT_EQ(TrainerStateOf(state).step, 1);

  testing::FakeTrainer trainer;
  auto registry = metrics::NewRegistry();
  LearnerOptions o;
  o.lease.samples_per_prompt = 2;
  o.prompts_per_step = 1;
  o.max_steps = 1;
  auto again = Learner::Create(
      {{{1, 2}, "a", "1"}, {{3, 4}, "b", "2"}, {{5, 6}, "c", "3"}}, &trainer,
      registry.get(), o, {}, &state);
  ASSERT_OK(again.status());
  (*again)->WaitUntilFinished();
  EXPECT_TRUE((*again)->finished());
  EXPECT_EQ((*again)->step(), 1);
  EXPECT_EQ((*again)->policy_version(), state.policy_version());
  EXPECT_EQ(trainer.groups_trained, 0);
  EXPECT_OK((*again)->final_checkpoint());  // nothing new to make durable
  // The actors the first incarnation saw (kept in its checkpoint) are waited
  // for until they hear "finished"; one seen long ago is not.
  EXPECT_FALSE((*again)->trained_here());
  std::vector<std::string> unheard;
  EXPECT_FALSE((*again)->EveryRecentActorHeard(absl::Hours(1), &unheard));
  EXPECT_EQ(unheard, (std::vector<std::string>{"actor-a"}));
  EXPECT_TRUE((*again)->EveryRecentActorHeard(absl::ZeroDuration()));
  v1::LeasePromptsRequest req;
  req.set_max_prompts(1);
  req.set_actor_id("actor-a");
  v1::LeasePromptsResponse resp;
  EXPECT_THAT((*again)->Lease(req, &resp),
              StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_TRUE((*again)->EveryRecentActorHeard(absl::Hours(1)));
}

// The linger ends once every actor that asked for work shortly before the
// finish has been told "finished"; one seen only long before does not count.
TEST(Learner, KnowsWhenEveryRecentActorHeardFinished) {
  Loop l(/*max_steps=*/2);
  ASSERT_OK(l.SubmitGroup(l.Lease("actor-a")));
  EXPECT_FALSE(l.learner->EveryRecentActorHeard(absl::Hours(1)));  // running
  ASSERT_OK(l.SubmitGroup(l.Lease("actor-b")));
  l.learner->WaitUntilFinished();
  EXPECT_TRUE(l.learner->trained_here());
  std::vector<std::string> unheard;
  EXPECT_FALSE(l.learner->EveryRecentActorHeard(absl::Hours(1), &unheard));
  EXPECT_EQ(unheard, (std::vector<std::string>{"actor-a", "actor-b"}));
  // Both were seen before the finish, not within a zero window before it.
  EXPECT_TRUE(l.learner->EveryRecentActorHeard(absl::ZeroDuration()));
  v1::LeasePromptsRequest req;
  req.set_max_prompts(1);
  req.set_actor_id("actor-b");
  v1::LeasePromptsResponse resp;
  EXPECT_THAT(l.learner->Lease(req, &resp),
              StatusIs(absl::StatusCode::kOutOfRange));
  unheard.clear();
  EXPECT_FALSE(l.learner->EveryRecentActorHeard(absl::Hours(1), &unheard));
  EXPECT_EQ(unheard, (std::vector<std::string>{"actor-a"}));
  req.set_actor_id("actor-a");  // e.g. back from a hang, or restarted
  EXPECT_THAT(l.learner->Lease(req, &resp),
              StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_TRUE(l.learner->EveryRecentActorHeard(absl::Hours(1)));
}

std::vector<std::string> Listing(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::map<std::string, std::string> Contents(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(e.path(), std::ios::binary);
    files[e.path().filename().string()] = std::string(
        std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return files;
}

// A full disk during a checkpoint (a size-limited tmpfs; needs root): the
// write fails, is counted and logged, training goes on, the newest good
// checkpoint stays intact and resumable with no partial folder beside it; with
// space freed the next checkpoint succeeds.
TEST(Learner, AFullDiskFailsACheckpointAndLosesNothing) {
  testing::TempDir dir;
  const std::string disk = dir.path() + "/disk";
  std::string why;
  auto small = testing::SmallDisk::Mount(disk, "256k", &why);
  if (small == nullptr) GTEST_SKIP() << why;
  const std::string root = disk + "/checkpoints";
  Loop first(/*max_steps=*/1, root);
  ASSERT_OK(first.SubmitGroup(first.Lease()));
  first.learner->WaitUntilFinished();
  ASSERT_OK(first.learner->final_checkpoint());
  const v1::LearnerCheckpoint state = first.learner->CaptureState();
  first.learner->Close();
  const auto before = Contents(root + "/step-00000001");
  ASSERT_EQ(before.size(), 2u);  // the policy and the training state

  small->Fill();  // less is left than a checkpoint needs
  std::vector<std::string> lines;
  testing::FakeTrainer trainer;
  auto registry = metrics::NewRegistry();
  LearnerOptions o;
  o.lease.samples_per_prompt = 2;
  o.prompts_per_step = 1;
  o.max_steps = 2;
  o.checkpoint_dir = root;
  o.log = [&](const std::string& line) { lines.push_back(line); };
  auto second = *Learner::Create(
      {{{1, 2}, "a", "1"}, {{3, 4}, "b", "2"}, {{5, 6}, "c", "3"}}, &trainer,
      registry.get(), o, {}, &state);
  v1::LeasePromptsRequest req;
  req.set_max_prompts(1);
  v1::LeasePromptsResponse leased;
  ASSERT_OK(second->Lease(req, &leased));
  ASSERT_EQ(leased.leases_size(), 1);
  v1::SubmitTrajectoriesRequest sub;
  for (uint32_t i = 0; i < 2; ++i) {
    v1::Trajectory* t = sub.add_trajectories();
    *t->mutable_lease() = leased.leases(0).lease();
    t->set_sample_index(i);
    t->set_trajectory_id(leased.leases(0).lease().lease_id() + "/" +
                         std::to_string(i));
    t->mutable_prompt_ids()->CopyFrom(leased.leases(0).prompt_ids());
    t->add_completion_ids(3);
    t->add_behavior_logprobs(-1.5f);
    t->mutable_evaluation()->add_feasible(true);
  }
  v1::SubmitTrajectoriesResponse submitted;
  ASSERT_OK(second->Submit(sub, &submitted));
  second->WaitUntilFinished();
  // Training went on: step 2 trained; its checkpoint could not be written.
  EXPECT_EQ(second->step(), 2);
  EXPECT_FALSE(second->final_checkpoint().ok());
  auto m = *testing::ParsePrometheusText(metrics::Serialize(*registry));
  EXPECT_EQ(m["cmdistill_learner_checkpoint_failures_total"], 1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("checkpoint failed"));
  EXPECT_THAT(lines[0], HasSubstr("step-00000002"));
  // The newest good checkpoint is as it was; no partial folder beside it
  // (checkpoints_test: the same with real weights, resumed).
  EXPECT_EQ(Listing(root), std::vector<std::string>{"step-00000001"});
  EXPECT_EQ(Contents(root + "/step-00000001"), before);
  // Space freed: the next checkpoint succeeds.
  small->Free();
  ASSERT_OK(second->SaveCheckpoint());
  EXPECT_EQ(Listing(root),
            (std::vector<std::string>{"step-00000001", "step-00000002"}));
  v1::LearnerCheckpoint written;
  ASSERT_TRUE(written.ParseFromString(
      Contents(root + "/step-00000002").at("training_state.pb")));
  EXPECT_EQ(written.step(), 2);
  second->Close();
}

TEST(Learner, TrainerStateMapsBothWays) {
  TrainerState ts;
  ts.step = 7;
  ts.lagrange = {0.25, 1.5, -0.5, 3};
  ts.moments = {"m0", "v0"};
  ts.master_weights = {"", "w1"};
  v1::LearnerCheckpoint c;
  SetTrainerState(ts, &c);
  const TrainerState back = TrainerStateOf(c);
  EXPECT_EQ(back.step, 7);
  EXPECT_EQ(back.lagrange.lambda, 0.25);
  EXPECT_EQ(back.lagrange.integral, 1.5);
  EXPECT_EQ(back.lagrange.previous_error, -0.5);
  EXPECT_EQ(back.lagrange.updates, 3);
  EXPECT_EQ(back.moments, ts.moments);
  EXPECT_EQ(back.master_weights, ts.master_weights);
}

}  // namespace
}  // namespace cmdistill::learner
