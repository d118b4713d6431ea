#include <sstream>
#include <string>
#include <vector>

#include "app/cli/commands.h"
#include "app/cli/flags.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::cli {
namespace {

using ::cmdistill::testing::StatusIs;
using ::testing::HasSubstr;

struct Result {
  int code;
  std::string out, err;
};

Result RunCmd(std::vector<std::string> args) {
  args.insert(args.begin(), "cmdistill");
  std::ostringstream out, err;
  const int code = RunCli(args, {out, err});
  return {code, out.str(), err.str()};
}

TEST(Flags, ParsesFormsAndRefusesUnknown) {
  FlagSet f("cmdistill x", "", "");
  f.AddString("config", "FILE", "run file");
  f.AddBool("smoke", "small run");
  f.AddRepeated("set", "K=V", "override");
  ASSERT_OK(
      f.Parse({"--config=a.yaml", "--smoke", "--set", "a=1", "--set=b=2"}));
  EXPECT_EQ(f.Get("config"), "a.yaml");
  EXPECT_TRUE(f.GetBool("smoke"));
  EXPECT_EQ(f.GetAll("set"), (std::vector<std::string>{"a=1", "b=2"}));

  FlagSet g("cmdistill x", "", "");
  g.AddString("config", "FILE", "run file");
  g.AddBool("smoke", "small run");
  EXPECT_THAT(
      g.Parse({"--confg", "a"}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("unknown flag --confg (did you mean --config?)")));
  FlagSet h("cmdistill x", "", "");
  h.AddString("config", "FILE", "run file");
  EXPECT_THAT(h.Parse({"--config"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--config needs a value")));
  EXPECT_THAT(h.Parse({"stray"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unexpected argument 'stray'")));
  FlagSet k("cmdistill x", "", "");
  k.AddBool("smoke", "small run");
  ASSERT_OK(k.Parse({"--no-smoke"}));
  EXPECT_FALSE(k.GetBool("smoke"));
}

TEST(Cli, NoArgumentsIsUsageError) {
  Result r = RunCmd({});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("usage: cmdistill <subcommand>"));
}

TEST(Cli, HelpListsEveryServiceSubcommand) {
  Result r = RunCmd({"--help"});
  EXPECT_EQ(r.code, kExitOk);
  for (const char* s :
       {"learner", "actor", "teacher", "reward", "local", "config"}) {
    EXPECT_THAT(r.out, HasSubstr(std::string("  ") + s)) << s;
  }
}

TEST(Cli, UnknownSubcommandSuggestsAndExits2) {
  Result r = RunCmd({"lerner"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(
      r.err,
      HasSubstr("unknown subcommand 'lerner' (did you mean 'learner'?)"));
}

TEST(Cli, EverySubcommandHasHelp) {
  for (const Command& c : Commands()) {
    Result r = RunCmd({c.name, "--help"});
    EXPECT_EQ(r.code, kExitOk) << c.name;
    EXPECT_THAT(r.out, HasSubstr("usage: cmdistill " + c.name)) << c.name;
  }
}

TEST(Cli, UnknownFlagOfSubcommandExits2) {
  Result r = RunCmd({"teacher", "--modle", "x"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(
      r.err,
      HasSubstr(
          "cmdistill teacher: unknown flag --modle (did you mean --model?)"));
}

TEST(Cli, LocalAndExperimentNeedARunFile) {
  for (const char* s : {"local", "experiment"}) {
    Result r = RunCmd({s});
    EXPECT_EQ(r.code, kExitUsage) << s;
    EXPECT_THAT(r.err, HasSubstr("--config FILE is required")) << s;
  }
}

TEST(Cli, LearnerAndActorNeedTheirInputs) {
  Result l = RunCmd({"learner"});
  EXPECT_EQ(l.code, kExitUsage);
  EXPECT_THAT(l.err,
              HasSubstr("student.path and data.train_path are required"));
  Result a = RunCmd({"actor"});
  EXPECT_EQ(a.code, kExitUsage);
  EXPECT_THAT(a.err, HasSubstr("addresses are required"));
}

TEST(Cli, TeacherNeedsAModel) {
  Result r = RunCmd({"teacher"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("no model"));
  Result bad = RunCmd({"teacher", "--model", "/nonexistent/model"});
  EXPECT_EQ(bad.code, kExitFailure);
  EXPECT_THAT(bad.err, HasSubstr("/nonexistent/model"));
}

TEST(Cli, ServiceEntryPointsValidateTheConfigFirst) {
  Result r = RunCmd({"learner", "--set", "optimizer.lr=-1"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("optimizer.lr"));
}

TEST(Cli, ConfigPrintAndValidate) {
  cmdistill::testing::TempDir dir;
  const std::string good = dir.Write("good.yaml", "method: grpo\n");
  const std::string bad =
      dir.Write("bad.yaml", "method: grpo\ntraining:\n  max_step: 3\n");
  Result p = RunCmd(
      {"config", "print", "--config", good, "--set", "constraint.budget=0.2"});
  EXPECT_EQ(p.code, kExitOk);
  EXPECT_THAT(p.out, HasSubstr("method: grpo"));
  EXPECT_THAT(p.out, HasSubstr("budget: 0.2\n"));
  Result v = RunCmd({"config", "validate", "--config", good});
  EXPECT_EQ(v.code, kExitOk);
  EXPECT_THAT(v.out, HasSubstr("valid"));
  Result b = RunCmd({"config", "validate", "--config", bad});
  EXPECT_EQ(b.code, kExitFailure);
  EXPECT_THAT(b.err, HasSubstr(bad + ":3:3: training.max_step: unknown key"));
  EXPECT_EQ(RunCmd({"config", "validate"}).code, kExitUsage);
  EXPECT_EQ(RunCmd({"config", "show"}).code, kExitUsage);
  EXPECT_EQ(RunCmd({"config"}).code, kExitUsage);
}

}  // namespace
}  // namespace cmdistill::cli
