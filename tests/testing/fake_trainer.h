// A Trainer without a model, for learner-service tests that link no LibTorch:
// each Step counts its groups and tokens, and the "weights" are a few KiB of
// bytes that change with every step (so snapshots, digests and versions can
// be checked). Steps can be made to fail.
#ifndef CMDISTILL_TESTS_TESTING_FAKE_TRAINER_H_
#define CMDISTILL_TESTS_TESTING_FAKE_TRAINER_H_

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/learner/trainer.h"

namespace cmdistill::testing {

class FakeTrainer final : public learner::Trainer {
 public:
  explicit FakeTrainer(int64_t vocab_size = 32, double lambda = 0.5)
      : vocab_size_(vocab_size), lambda_(lambda) {}

  absl::StatusOr<learner::StepStats> Step(
      const std::vector<std::vector<v1::Trajectory>>& groups) override {
    if (fail_steps > 0) {
      --fail_steps;
      return absl::InternalError("scripted step failure");
    }
    if (groups.empty()) return absl::InvalidArgumentError("no groups");
    learner::StepStats s;
    s.step = ++step_;
    double reward = 0;
    int64_t n = 0;
    for (const auto& g : groups) {
      for (const v1::Trajectory& t : g) {
        s.tokens += t.completion_ids_size();
        reward += t.evaluation().trajectory_return();
        ++n;
      }
    }
    s.mean_task_reward = n > 0 ? reward / static_cast<double>(n) : 0;
    s.lambda = lambda_;
    groups_trained += static_cast<int64_t>(groups.size());
    return s;
  }
  double lambda() const override { return lambda_; }
  learner::TrainerState SaveState() const override {
    learner::TrainerState st;
    st.step = step_;
    st.lagrange.lambda = lambda_;
    return st;
  }
  absl::Status RestoreState(const learner::TrainerState& st) override {
    step_ = st.step;
    return absl::OkStatus();
  }
  int64_t vocab_size() const override { return vocab_size_; }
  // 4 KiB naming the step: different bytes (and digest) per version.
  absl::StatusOr<std::string> SerializeWeights() const override {
    std::string w = absl::StrCat("fake weights after step ", step_.load(), ";");
    while (w.size() < 4096) w += w;
    w.resize(4096);
    return w;
  }
  absl::Status SavePolicy(const std::string& dir,
                          const std::string&) const override {
    auto w = SerializeWeights();
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    std::ofstream out(dir + "/fake_policy.bin", std::ios::binary);
    out << *w;
    out.close();  // a full disk shows at the flush
    return out ? absl::OkStatus()
               : absl::InternalError(absl::StrCat("cannot write ", dir));
  }

  std::atomic<int> fail_steps{0};  // the next N steps fail
  std::atomic<int64_t> groups_trained{0};

 private:
  const int64_t vocab_size_;
  const double lambda_;
  std::atomic<int64_t> step_{0};
};

}  // namespace cmdistill::testing

#endif  // CMDISTILL_TESTS_TESTING_FAKE_TRAINER_H_
