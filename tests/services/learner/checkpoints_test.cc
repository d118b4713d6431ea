// Learner checkpoints on disk: written atomically with the newest K kept, read
// back equal, and a corrupt newest checkpoint is reported and skipped in favour
// of the previous one.
#include "services/learner/checkpoints.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/learner/policy_trainer.h"
#include "tests/testing/model_configs.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::learner {
namespace {

using ::cmdistill::testing::StatusIs;
using ::testing::HasSubstr;

checkpoint::ModelConfig Tiny() {
  testing::TinyShape s;
  s.vocab = 16;
  s.hidden = 8;
  s.intermediate = 16;
  s.heads = 2;
  s.kv_heads = 1;
  s.head_dim = 4;
  s.max_positions = 16;
  return testing::TinyConfig(s);
}

v1::LearnerCheckpoint State(int64_t step) {
  v1::LearnerCheckpoint s;
  s.set_format_version(1);
  s.set_num_prompts(5);
  s.set_step(step);
  s.set_policy_version(static_cast<uint64_t>(step));
  s.add_trained_prompts(3);
  s.add_trained_trajectory_ids("e0-l0/0");
  return s;
}

TEST(Checkpoints, KeepsTheNewestKAndSkipsCorruptOnes) {
  testing::TempDir dir;
  auto m = *model::LanguageModel::InitRandom(Tiny(), 1, "cpu", "float32");
  auto policy = *PolicyTrainer::Create(m.get(), {});
  for (int64_t step : {2, 4, 6, 8}) {
    ASSERT_OK(
        WriteCheckpoint(dir.path(), State(step), *policy, "", /*keep=*/3));
  }
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_THAT(names, ::testing::ElementsAre("step-00000004", "step-00000006",
                                            "step-00000008"));
  std::vector<std::string> skipped;
  ASSERT_OK_AND_ASSIGN(FoundCheckpoint f,
                       FindLatestCheckpoint(dir.path(), 5, &skipped));
  EXPECT_EQ(f.state.step(), 8);
  EXPECT_EQ(f.state.trained_trajectory_ids(0), "e0-l0/0");
  EXPECT_TRUE(skipped.empty());
  // Corrupt the newest: its training state is garbage -> reported, the previous
  // one is used.
  std::ofstream(dir.File("step-00000008/training_state.pb"), std::ios::trunc)
      << "garbage!";
  ASSERT_OK_AND_ASSIGN(f, FindLatestCheckpoint(dir.path(), 5, &skipped));
  EXPECT_EQ(f.state.step(), 6);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_THAT(skipped[0], HasSubstr("step-00000008"));
  // Truncated weights are caught too.
  std::filesystem::resize_file(dir.File("step-00000006/model.safetensors"),
                               100);
  skipped.clear();
  ASSERT_OK_AND_ASSIGN(f, FindLatestCheckpoint(dir.path(), 5, &skipped));
  EXPECT_EQ(f.state.step(), 4);
  EXPECT_EQ(skipped.size(), 2u);
  // Another data set's checkpoint is refused.
  EXPECT_THAT(ReadCheckpoint(dir.File("step-00000004"), 99),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("99")));
  EXPECT_THAT(FindLatestCheckpoint(dir.File("nothing"), 5, nullptr),
              StatusIs(absl::StatusCode::kNotFound));
  // A training state cut short (a write that stopped half-way) is caught.
  ASSERT_OK(WriteCheckpoint(dir.path(), State(10), *policy, "", /*keep=*/5));
  const std::string state10 = dir.File("step-00000010/training_state.pb");
  std::filesystem::resize_file(state10,
                               std::filesystem::file_size(state10) / 2);
  skipped.clear();
  ASSERT_OK_AND_ASSIGN(f, FindLatestCheckpoint(dir.path(), 5, &skipped));
  EXPECT_EQ(f.state.step(), 4);
  ASSERT_EQ(skipped.size(), 3u);
  EXPECT_THAT(skipped[0], HasSubstr("step-00000010"));
}

// A full disk during a checkpoint (a size-limited tmpfs; needs root): the
// write fails with the reason, leaves no partial folder, and the newest good
// checkpoint resumes (weights validated); with space freed the next one is
// written.
TEST(Checkpoints, AFullDiskLeavesTheNewestGoodCheckpointResumable) {
  testing::TempDir dir;
  const std::string disk = dir.path() + "/disk";
  std::string why;
  auto small = testing::SmallDisk::Mount(disk, "512k", &why);
  if (small == nullptr) GTEST_SKIP() << why;
  auto m = *model::LanguageModel::InitRandom(Tiny(), 1, "cpu", "float32");
  auto policy = *PolicyTrainer::Create(m.get(), {});
  const std::string root = disk + "/checkpoints";
  ASSERT_OK(WriteCheckpoint(root, State(2), *policy, "", /*keep=*/3));
  small->Fill();
  const absl::Status full =
      WriteCheckpoint(root, State(4), *policy, "", /*keep=*/3);
  EXPECT_FALSE(full.ok());
  EXPECT_THAT(full.message(), HasSubstr("step-00000004"));
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(root))
    names.push_back(e.path().filename().string());
  EXPECT_THAT(names, ::testing::ElementsAre("step-00000002"));
  std::vector<std::string> skipped;
  ASSERT_OK_AND_ASSIGN(FoundCheckpoint f,
                       FindLatestCheckpoint(root, 5, &skipped));
  EXPECT_EQ(f.state.step(), 2);
  EXPECT_TRUE(skipped.empty());
  small->Free();
  ASSERT_OK(WriteCheckpoint(root, State(4), *policy, "", /*keep=*/3));
  ASSERT_OK_AND_ASSIGN(f, FindLatestCheckpoint(root, 5, &skipped));
  EXPECT_EQ(f.state.step(), 4);
}

TEST(Checkpoints, StaleTemporaryFoldersOfDeadLearnersAreRemoved) {
  // A learner killed mid-write leaves .tmp-step-N-<pid> (a whole checkpoint);
  // the next learner removes those whose process is gone, and only those.
  cmdistill::testing::TempDir dir;
  namespace fs = std::filesystem;
  const std::string root = dir.path() + "/ck";
  const std::string dead = root + "/.tmp-step-00000007-999999999";  // no pid
  const std::string alive =
      root + "/.tmp-step-00000008-" + std::to_string(getpid());
  const std::string kept = root + "/step-00000006";
  for (const std::string& d : {dead, alive, kept}) {
    fs::create_directories(d);
    std::ofstream(d + "/model.safetensors") << "x";
  }
  const std::vector<std::string> removed = RemoveStaleTemporaries(root);
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0], dead);
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(alive));  // a write in progress is left alone
  EXPECT_TRUE(fs::exists(kept));
  EXPECT_TRUE(RemoveStaleTemporaries(dir.path() + "/none").empty());
}

}  // namespace
}  // namespace cmdistill::learner
