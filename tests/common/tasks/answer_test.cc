#include "common/tasks/answer.h"

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace cmdistill::tasks {
namespace {

using ::testing::DoubleNear;
using ::testing::Optional;

TEST(Extract, PreferenceOrderAndLastOccurrence) {
  EXPECT_EQ(ExtractAnswer("so 3\n#### 1,234\n", Strictness::kStrict).answer,
            "1,234");
  EXPECT_EQ(ExtractAnswer("#### 1\n#### 2", Strictness::kStrict).answer, "2");
  EXPECT_EQ(ExtractAnswer("x \\boxed{1} then \\boxed{\\frac{1}{2}} done",
                          Strictness::kStrict)
                .answer,
            "\\frac{1}{2}");
  EXPECT_EQ(
      ExtractAnswer("\\boxed{\\{a, \\{b\\}\\}}", Strictness::kStrict).answer,
      "\\{a, \\{b\\}\\}");
  EXPECT_EQ(ExtractAnswer("$\\boxed 7$", Strictness::kStrict).answer, "7");
  EXPECT_EQ(ExtractAnswer("Thus, The Answer Is: $18.\nok", Strictness::kStrict)
                .answer,
            "$18");
  EXPECT_FALSE(ExtractAnswer("I think 42 apples", Strictness::kStrict).found);
  Extraction e = ExtractAnswer("I think 42 apples, no, -3.5 ones",
                               Strictness::kLastNumber);
  EXPECT_EQ(e.answer, "-3.5");
  EXPECT_STREQ(e.how, "last_number");
  EXPECT_EQ(ExtractAnswer("about 1,000,000.", Strictness::kLastNumber).answer,
            "1,000,000");
  EXPECT_FALSE(ExtractAnswer("no numbers", Strictness::kLastNumber).found);
}

TEST(Equivalent, NumbersInTheirManyForms) {
  const std::vector<std::pair<std::string, std::string>> same = {
      {"1,000", "1000"},
      {"$18", "18"},
      {"18.00", "18"},
      {"0.5", ".5"},
      {"50\\%", "50"},
      {"\\frac{1}{2}", "0.5"},
      {"\\dfrac{3}{4}", "3/4"},
      {"\\tfrac12", "0.5"},
      {"-\\frac{1}{2}", "-0.5"},
      {"\xe2\x88\x92"
       "7",
       "-7"},
      {"+5", "5"},
      {"5\\text{ cm}", "5"},
      {"18 dollars", "18"},
      {"90^\\circ", "90"},
      {"\\$1{,}000", "1000"},
      {"\\left( 1, 2 \\right)", "(1,2)"},
      {"1, 2, 3", "1,2,3"},
      {"\\(42\\)", "42"},
      {"{7}", "7"},
      {"3\\,000", "3000"},
      {"(0.5, \\frac{1}{4})", "(1/2,0.25)"},
      {"\\frac{-1}{2}", "-0.5"},
      {"x^2+1", "x^2+1"},
      {"\\sqrt2", "\\sqrt{2}"},
  };
  for (const auto& [a, b] : same) {
    EXPECT_TRUE(AnswersEquivalent(a, b)) << a << " vs " << b;
    EXPECT_TRUE(AnswersEquivalent(b, a)) << b << " vs " << a;
  }
  const std::vector<std::pair<std::string, std::string>> different = {
      {"1,000", "1"},     {"18", "19"},    {"0.5", "5"}, {"(1,2)", "(2,1)"},
      {"(1,2)", "[1,2]"}, {"1/2", "2"},    {"", ""},     {"12", "1,2"},
      {"-3", "3"},        {"1.0001", "1"}, {"x", "y"},
  };
  for (const auto& [a, b] : different) {
    EXPECT_FALSE(AnswersEquivalent(a, b)) << a << " vs " << b;
  }
  EXPECT_THAT(NumericValue("1,234.50"), Optional(DoubleNear(1234.5, 1e-12)));
  EXPECT_EQ(NumericValue("1e5"), std::nullopt);  // no exponents, hex or inf
  EXPECT_EQ(NumericValue("inf"), std::nullopt);
}

// Found by fuzzing: normalising twice must equal normalising once, so every
// answer is equivalent to itself ("+ +" used to normalise to "+", then "").
TEST(Equivalent, NormalisationIsIdempotentAndReflexive) {
  for (const char* a : {" + +", "+", "++", "+5", "+.5", "-+3", "+ 7 apples",
                        ".\fl", "5 cm.", "3. apples.", "\\boxed{+}",
                        "+\\frac{1}{2}", R"(\\\\\ci\\\\\circ\,,,rc\,,,)"}) {
    const std::string n = NormalizeAnswer(a);
    EXPECT_EQ(NormalizeAnswer(n), n) << a;
    if (!n.empty()) {
      EXPECT_TRUE(AnswersEquivalent(n, n)) << a;
    }
  }
  EXPECT_EQ(NormalizeAnswer("+5"), "5");
  EXPECT_TRUE(AnswersEquivalent("+5", "5"));
}

TEST(Grade, ResponsesAgainstGold) {
  EXPECT_TRUE(GradeResponse("She makes 9 * 2 = $18.\n#### 18", "#### 18",
                            Strictness::kStrict)
                  .correct);
  EXPECT_TRUE(
      GradeResponse("The answer is \\boxed{18}.", "18", Strictness::kStrict)
          .correct);
  Grade wrong = GradeResponse("#### 17", "18", Strictness::kStrict);
  EXPECT_FALSE(wrong.correct);
  EXPECT_EQ(wrong.extracted, "17");
  Grade none = GradeResponse("I do not know", "18", Strictness::kStrict);
  EXPECT_EQ(none.failure, GradeFailure::kNoAnswer);
  EXPECT_TRUE(
      GradeResponse("so 18 apples", "18", Strictness::kLastNumber).correct);
}

TEST(Grade, PathologicalInputsReturnPromptlyAndSafely) {
  const std::string braces = "\\boxed{" + std::string(500000, '{');
  EXPECT_FALSE(GradeResponse(braces, "1", Strictness::kLastNumber).correct);
  const std::string digits(900000, '9');
  EXPECT_FALSE(GradeResponse(digits, "1", Strictness::kLastNumber).correct);
  std::string nested = "\\boxed{";
  for (int i = 0; i < 100000; ++i) nested += "\\frac{";
  EXPECT_FALSE(GradeResponse(nested, "1", Strictness::kStrict).correct);
  std::string commas;
  for (int i = 0; i < 200000; ++i) commas += "(1,";
  EXPECT_FALSE(AnswersEquivalent(commas, commas + "2"));
  Grade too_long = GradeResponse(std::string(kMaxResponseBytes + 1, 'a'), "1",
                                 Strictness::kLastNumber);
  EXPECT_EQ(too_long.failure, GradeFailure::kTooLong);
}

TEST(Grade, ThreadSafe) {
  std::vector<std::thread> threads;
  std::vector<int> correct(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        correct[t] += GradeResponse("#### " + std::to_string(i),
                                    std::to_string(i), Strictness::kStrict)
                          .correct;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_THAT(correct, ::testing::Each(2000));
}

// Every GSM8K reference solution is graded correct against its own gold answer,
// in its own format and rewritten the ways models write answers; a perturbed
// answer is graded wrong.
TEST(Grade, EveryGsm8kReferenceSolution) {
  const char* src = std::getenv("CMDISTILL_SOURCE_DIR");
  const std::string path =
      std::string(src ? src : ".") + "/../shared/data/gsm8k/test.jsonl";
  std::ifstream in(path);
  if (!in) GTEST_SKIP() << "GSM8K not found at " << path;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    const auto item = nlohmann::json::parse(line);
    const std::string answer = item.at("answer").get<std::string>();
    const std::string gold = GoldAnswer(answer);
    ASSERT_TRUE(NumericValue(gold).has_value())
        << "line " << n + 1 << ": " << gold;
    const double value = *NumericValue(gold);
    EXPECT_TRUE(GradeResponse(answer, gold, Strictness::kStrict).correct)
        << n + 1;
    EXPECT_TRUE(GradeResponse("The answer is " + gold + ".", answer,
                              Strictness::kStrict)
                    .correct)
        << n + 1;
    EXPECT_TRUE(
        GradeResponse("\\boxed{" + gold + "}", answer, Strictness::kStrict)
            .correct);
    const std::string off = std::to_string(static_cast<long long>(value) + 1);
    EXPECT_FALSE(
        GradeResponse("#### " + off, answer, Strictness::kStrict).correct)
        << n + 1;
    ++n;
  }
  EXPECT_EQ(n, 1319);
}

}  // namespace
}  // namespace cmdistill::tasks
