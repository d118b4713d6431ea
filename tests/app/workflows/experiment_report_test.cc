// The experiment's report on synthetic runs (no training): per-run CSV lines,
// means over seeds per method, the reference rows, and the paired difference
// against cmdp on the same problems, with its sign and interval.
#include "absl/strings/str_split.h"
#include "app/workflows/experiment.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cmdistill::workflows {
namespace {

using ::testing::HasSubstr;

// A greedy report over `problems` problems of which the first `correct` are
// correct and all satisfy the budget.
eval::EvalReport Report(const std::string& name, int problems, int correct) {
  eval::EvalReport r;
  r.name = name;
  r.have_teacher = true;
  for (int i = 0; i < problems; ++i) {
    eval::EvalItem it;
    it.example = i;
    it.record.correct = i < correct;
    it.record.satisfied = true;
    r.items.push_back(it);
  }
  const double fac = static_cast<double>(correct) / problems;
  r.metrics.correctness = {fac, fac, fac, problems};
  r.metrics.satisfaction = {1, 1, 1, problems};
  r.metrics.mean_kl = {0.1, 0.1, 0.1, problems};
  r.metrics.length = {12, 12, 12, problems};
  return r;
}

TEST(ExperimentReport, VariantsParseTheirOverrides) {
  const Variant v = ParseVariant("cmdp@constraint.penalty=5@seed=2");
  EXPECT_EQ(v.label, "cmdp@constraint.penalty=5@seed=2");
  EXPECT_EQ(v.method, "cmdp");
  EXPECT_THAT(
      v.overrides,
      ::testing::ElementsAre("method=cmdp", "constraint.penalty=5", "seed=2"));
}

TEST(ExperimentReport, MeansOverSeedsAndThePairedDifferenceAgainstCmdp) {
  v1::RunConfig config;
  config.mutable_constraint()->set_budget(0.35);
  const std::vector<Variant> variants = {ParseVariant("cmdp"),
                                         ParseVariant("grpo")};
  const std::vector<eval::EvalReport> reference = {Report("teacher", 10, 9)};
  std::vector<RunRow> rows;
  // cmdp: 6 and 8 of 10 correct; grpo: 2 and 4 — on the same problems.
  rows.push_back({"cmdp", 0, Report("cmdp", 10, 6), std::nullopt, "a.csv", 1});
  rows.push_back({"cmdp", 1, Report("cmdp", 10, 8), std::nullopt, "b.csv", 1});
  rows.push_back({"grpo", 0, Report("grpo", 10, 2), std::nullopt, "c.csv", 1});
  rows.push_back({"grpo", 1, Report("grpo", 10, 4), std::nullopt, "d.csv", 1});
  const ExperimentReport r = BuildReport(config, variants, reference, rows,
                                         /*problems=*/10, /*seeds=*/2);
  // One CSV line per run after the header.
  const std::vector<std::string> lines =
      absl::StrSplit(r.runs_csv, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_THAT(lines[1], ::testing::StartsWith("cmdp,0,0.600000,1.000000,"));
  EXPECT_THAT(lines[4], ::testing::StartsWith("grpo,1,0.400000,"));
  // Means over seeds.
  ASSERT_EQ(r.results["methods"].size(), 2u);
  EXPECT_EQ(r.results["methods"][0]["method"], "cmdp");
  EXPECT_NEAR(r.results["methods"][0]["correctness"]["value"].get<double>(),
              0.7, 1e-9);
  EXPECT_NEAR(r.results["methods"][1]["correctness"]["value"].get<double>(),
              0.3, 1e-9);
  EXPECT_EQ(r.results["methods"][1]["seeds"], 2);
  // grpo vs cmdp on the same problems: problems 0-1 correct in both seeds of
  // both, 2-3 in one seed of grpo and both of cmdp, 4-5 in cmdp's only, ...
  // mean difference -0.4.
  ASSERT_EQ(r.results["paired_vs_reference"].size(), 1u);
  const auto& d = r.results["paired_vs_reference"][0];
  EXPECT_EQ(d["method"], "grpo");
  EXPECT_NEAR(d["correctness_difference"]["value"].get<double>(), -0.4, 1e-9);
  EXPECT_LT(d["correctness_difference"]["high"].get<double>(), 0);
  EXPECT_NEAR(d["satisfaction_difference"]["value"].get<double>(), 0, 1e-9);
  // The tables a person reads.
  EXPECT_THAT(r.summary_md, HasSubstr("## Greedy decoding"));
  EXPECT_THAT(r.summary_md, HasSubstr("teacher (reference)"));
  EXPECT_THAT(r.summary_md, HasSubstr("## Paired against cmdp (same 10"));
  EXPECT_THAT(r.summary_md, HasSubstr("| grpo | -0.400"));
  EXPECT_THAT(r.summary_md, HasSubstr("2 seed(s) per method"));
  EXPECT_EQ(r.results["reference"][0]["name"], "teacher");
}

// The first variant is the reference, whatever its label; problems that share
// an arithmetic cell are one unit of the paired interval.
TEST(ExperimentReport, PairedAgainstTheFirstVariantOverCells) {
  v1::RunConfig config;
  config.mutable_constraint()->set_budget(0.35);
  const std::string ref = "cmdp@constraint.term_two_denominator=all_tokens";
  const std::vector<Variant> variants = {ParseVariant(ref),
                                         ParseVariant("grpo")};
  auto celled = [](eval::EvalReport r) {
    for (auto& it : r.items) it.record.cluster = it.example / 2;  // 5 cells
    return r;
  };
  std::vector<RunRow> rows;
  rows.push_back(
      {ref, 0, celled(Report("a", 10, 6)), std::nullopt, "a.csv", 1});
  rows.push_back(
      {ref, 1, celled(Report("a", 10, 8)), std::nullopt, "b.csv", 1});
  rows.push_back(
      {"grpo", 0, celled(Report("g", 10, 2)), std::nullopt, "c.csv", 1});
  rows.push_back(
      {"grpo", 1, celled(Report("g", 10, 4)), std::nullopt, "d.csv", 1});
  const ExperimentReport r = BuildReport(config, variants, {}, rows,
                                         /*problems=*/10, /*seeds=*/2);
  EXPECT_THAT(r.summary_md,
              HasSubstr("## Paired against " + ref +
                        " (same 10 problems in 5 arithmetic cells"));
  // Cell differences 0, -0.5, -1, -0.5, 0: mean -0.4, sd 0.418, t(4) = 2.776
  // -> [-0.919, +0.119]. Over the 10 problems as if independent it would be
  // [-0.682, -0.118], an effect the cells do not resolve.
  const auto& d = r.results["paired_vs_reference"][0];
  EXPECT_NEAR(d["correctness_difference"]["value"].get<double>(), -0.4, 1e-9);
  EXPECT_NEAR(d["correctness_difference"]["low"].get<double>(), -0.919, 2e-3);
  EXPECT_NEAR(d["correctness_difference"]["high"].get<double>(), 0.119, 2e-3);
}

}  // namespace
}  // namespace cmdistill::workflows
