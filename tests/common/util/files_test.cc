// ReadFile and WriteFileAtomically: contents round-trip, errors name the file
// and carry the fitting code, a failed write leaves the old file and no
// temporary behind.
#include "common/util/files.h"

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::util {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(Files, WritesAtomicallyAndReadsBack) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/a/b/file.bin";  // parents made
  std::string data(100000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  ASSERT_OK(WriteFileAtomically(path, data));
  ASSERT_OK_AND_ASSIGN(std::string back, ReadFile(path));
  EXPECT_EQ(back, data);
  ASSERT_OK(WriteFileAtomically(path, "short"));
  EXPECT_EQ(*ReadFile(path), "short");
  for (const auto& e : fs::directory_iterator(dir.path() + "/a/b"))
    EXPECT_EQ(e.path().filename(), "file.bin");  // no temporary left
}

TEST(Files, ReadErrorsNameTheFileWithTheirCode) {
  testing::TempDir dir;
  auto missing = ReadFile(dir.path() + "/nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("nope"));
  EXPECT_EQ(ReadFile(dir.path()).status().code(),
            absl::StatusCode::kPermissionDenied);  // a directory
  ASSERT_OK(WriteFileAtomically(dir.path() + "/big", std::string(100, 'x')));
  auto big = ReadFile(dir.path() + "/big", /*max_bytes=*/99);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(big.status().message(), HasSubstr("larger than 99 bytes"));
  EXPECT_OK(ReadFile(dir.path() + "/big", 100).status());
}

TEST(Files, AFailedWriteLeavesWhatWasThereAndNoTemporary) {
  // The path is a folder with a file in it: the rename over it fails (as
  // root too), and neither the folder nor the temporary stays changed.
  testing::TempDir dir;
  const std::string target = dir.path() + "/target";
  ASSERT_OK(WriteFileAtomically(target + "/inside", "old"));
  const absl::Status s = WriteFileAtomically(target, "new");
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("target"));
  EXPECT_EQ(*ReadFile(target + "/inside"), "old");
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path()))
    names.push_back(e.path().filename().string());
  EXPECT_THAT(names, ::testing::ElementsAre("target"));
}

}  // namespace
}  // namespace cmdistill::util
