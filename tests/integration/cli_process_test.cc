// The real cmdistill binary as a user runs it: exit codes and messages.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace cmdistill {
namespace {

using ::cmdistill::testing::CmdistillBinary;
using ::cmdistill::testing::RunProcess;
using ::testing::HasSubstr;

TEST(CliProcess, ExitCodes) {
  const absl::Duration t = absl::Seconds(30);
  auto help = RunProcess({CmdistillBinary(), "--help"}, t);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("learner"));
  auto unknown = RunProcess({CmdistillBinary(), "trian"}, t);
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("unknown subcommand 'trian'"));
  auto bad_flag =
      RunProcess({CmdistillBinary(), "config", "print", "--bogus"}, t);
  EXPECT_EQ(bad_flag.exit_code, 2);
  EXPECT_THAT(bad_flag.err, HasSubstr("unknown flag --bogus"));
  auto learner = RunProcess({CmdistillBinary(), "learner"}, t);
  EXPECT_EQ(learner.exit_code, 3);
  EXPECT_THAT(learner.err, HasSubstr("not yet available"));
}

TEST(CliProcess, ConfigValidateNamesKeyAndLine) {
  cmdistill::testing::TempDir dir;
  const std::string f =
      dir.Write("run.yaml", "method: cmdp\nconstraint:\n  budget: lots\n");
  auto r = RunProcess({CmdistillBinary(), "config", "validate", "--config", f},
                      absl::Seconds(30));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(
      r.err,
      HasSubstr(f + ":3:11: constraint.budget: expected a finite number"));
  const std::string ok = dir.Write("ok.yaml", "method: cmdp\n");
  auto p = RunProcess({CmdistillBinary(), "config", "print", "--config", ok,
                       "--set", "constraint.budget=0.25"},
                      absl::Seconds(30));
  EXPECT_EQ(p.exit_code, 0) << p.err;
  EXPECT_THAT(p.out, HasSubstr("budget: 0.25"));
}

}  // namespace
}  // namespace cmdistill
