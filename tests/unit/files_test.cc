// ReadFile and WriteFileAtomically: contents round-trip, errors name the file
// and carry the fitting code, a failed write leaves the old file and no
// temporary behind.
#include "common/util/files.h"

#include <sys/stat.h>

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

TEST(Files, AFailedWriteKeepsTheOldFile) {
  if (geteuid() == 0) GTEST_SKIP() << "root writes into read-only folders";
  testing::TempDir dir;
  const std::string sub = dir.path() + "/ro";
  const std::string path = sub + "/kept";
  ASSERT_OK(WriteFileAtomically(path, "old"));
  ASSERT_EQ(chmod(sub.c_str(), 0500), 0);
  const absl::Status s = WriteFileAtomically(path, "new");
  chmod(sub.c_str(), 0700);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(*ReadFile(path), "old");
}

}  // namespace
}  // namespace cmdistill::util
