// A Scorer for teacher-service tests: deterministic fake scores
// (sampled_logprobs[t] = -completion_ids[t] / 100), a record of every batch it
// scored, and a hold that blocks Score until released — so load shedding and
// deadlines are tested without sleeps.
#ifndef CMDISTILL_TESTS_TESTING_FAKE_SCORER_H_
#define CMDISTILL_TESTS_TESTING_FAKE_SCORER_H_

#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "services/teacher/scorer.h"

namespace cmdistill::testing {

class FakeScorer final : public teacher::Scorer {
 public:
  FakeScorer() {
    info_.model_id = "fake";
    info_.vocab_size = 100;
    info_.max_sequence_length = 64;
    info_.tokenizer_fingerprint = "abc";
  }
  const teacher::TeacherInfo& info() const override { return info_; }

  absl::StatusOr<std::vector<model::SequenceScore>> Score(
      const std::vector<model::ScoreInput>& inputs, int64_t) override {
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
      for (const auto& in : inputs) scored_.push_back(in.completion_ids);
    }
    if (!entered_.HasBeenNotified())
      entered_.Notify();  // one worker calls Score
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](bool* held) { return !*held; }, &held_));
    std::vector<model::SequenceScore> out;
    for (const auto& in : inputs) {
      model::SequenceScore s;
      for (int32_t id : in.completion_ids)
        s.sampled_logprobs.push_back(-id / 100.0f);
      s.support_logprobs.assign(in.support_ids.size(), -1.0f);
      s.tail_logprobs.assign(in.support_k > 0 ? in.completion_ids.size() : 0,
                             -2.0f);
      out.push_back(std::move(s));
    }
    return out;
  }

  void Hold() {
    absl::MutexLock lock(&mu_);
    held_ = true;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    held_ = false;
  }
  // Blocks until the worker is inside Score (first time).
  void WaitEntered() { entered_.WaitForNotification(); }
  int calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  std::vector<std::vector<int32_t>> scored() const {
    absl::MutexLock lock(&mu_);
    return scored_;
  }

 private:
  teacher::TeacherInfo info_;
  mutable absl::Mutex mu_;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::vector<int32_t>> scored_ ABSL_GUARDED_BY(mu_);
  absl::Notification entered_;
};

}  // namespace cmdistill::testing

#endif  // CMDISTILL_TESTS_TESTING_FAKE_SCORER_H_
