#include <set>
#include <string>

#include "common/tasks/answer.h"
#include "common/tasks/datagen.h"
#include "common/tasks/dataset.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::tasks {
namespace {

using ::cmdistill::testing::StatusIs;
using ::testing::HasSubstr;

std::string Gsm8kPath(const char* split) {
  const char* src = std::getenv("CMDISTILL_SOURCE_DIR");
  return std::string(src ? src : ".") + "/../shared/data/gsm8k/" + split +
         ".jsonl";
}

TEST(Dataset, LoadsTheRealGsm8kFiles) {
  auto train = LoadJsonl(Gsm8kPath("train"), {});
  if (absl::IsNotFound(train.status())) GTEST_SKIP() << "no ../shared/data";
  ASSERT_OK(train.status());
  EXPECT_EQ(train->examples.size(), 7473u);
  EXPECT_EQ(train->skipped, 0);
  ASSERT_OK_AND_ASSIGN(Dataset test, LoadJsonl(Gsm8kPath("test"), {}));
  ASSERT_EQ(test.examples.size(), 1319u);
  EXPECT_THAT(test.examples[0].question, HasSubstr("Janet"));
  EXPECT_EQ(test.examples[0].gold, "18");
  EXPECT_EQ(test.examples[0].line, 1);
  DatasetOptions capped;
  capped.max_examples = 10;
  ASSERT_OK_AND_ASSIGN(Dataset ten, LoadJsonl(Gsm8kPath("test"), capped));
  EXPECT_EQ(ten.examples.size(), 10u);
}

TEST(Dataset, MalformedLinesFailWithFileAndLineOrAreSkippedAndCounted) {
  const std::string text =
      "{\"question\": \"q1\", \"answer\": \"a\\n#### 1\"}\n"
      "\n"
      "{not json}\n"
      "{\"question\": \"q2\"}\n"
      "{\"question\": 3, \"answer\": \"#### 2\"}\n"
      "{\"question\": \"q3\", \"answer\": \"no marker\"}\n"
      "[1, 2]\n"
      "{\"question\": \"q4\", \"answer\": \"#### 4\"}\r\n";
  EXPECT_THAT(ParseJsonl(text, "d.jsonl", {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("d.jsonl:3: not valid JSON")));
  DatasetOptions skip;
  skip.malformed = MalformedLines::kSkip;
  ASSERT_OK_AND_ASSIGN(Dataset d, ParseJsonl(text, "d.jsonl", skip));
  ASSERT_EQ(d.examples.size(), 2u);
  EXPECT_EQ(d.examples[1].gold, "4");
  EXPECT_EQ(d.examples[1].line, 8);
  EXPECT_EQ(d.skipped, 5);
  EXPECT_THAT(d.skip_reasons[1],
              HasSubstr("d.jsonl:4: missing field 'answer'"));
  EXPECT_THAT(d.skip_reasons[2],
              HasSubstr("d.jsonl:5: field 'question' is not a string"));
  EXPECT_THAT(d.skip_reasons[3], HasSubstr("'#### <final answer>'"));
  EXPECT_THAT(LoadJsonl("/nonexistent.jsonl", {}),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(Dataset, MathAndGenericFormats) {
  DatasetOptions math;
  math.format = DataFormat::kMath;
  ASSERT_OK_AND_ASSIGN(Dataset m,
                       ParseJsonl("{\"problem\": \"p\", \"solution\": \"so "
                                  "$\\\\boxed{\\\\frac{1}{2}}$\"}\n",
                                  "m.jsonl", math));
  EXPECT_EQ(m.examples[0].gold, "\\frac{1}{2}");
  DatasetOptions generic;
  generic.format = DataFormat::kGeneric;
  generic.question_field = "prompt";
  generic.answer_field = "target";
  ASSERT_OK_AND_ASSIGN(Dataset g,
                       ParseJsonl("{\"prompt\": \"2+2?\", \"target\": \"4\"}\n",
                                  "g.jsonl", generic));
  EXPECT_EQ(g.examples[0].question, "2+2?");
  EXPECT_EQ(g.examples[0].gold, "4");
}

TEST(Dataset, TemplatesShufflesAndSplitsAreDeterministic) {
  EXPECT_EQ(ApplyTemplate("Q: {question}\nA ({question}):", "x?"),
            "Q: x?\nA (x?):");
  std::vector<Example> ex(50);
  for (int i = 0; i < 50; ++i) ex[i].question = std::to_string(i);
  auto a = Split(ex, 0.2, 7), b = Split(ex, 0.2, 7), c = Split(ex, 0.2, 8);
  ASSERT_EQ(a.first.size(), 40u);
  ASSERT_EQ(a.second.size(), 10u);
  std::set<std::string> all;
  for (const auto* part : {&a.first, &a.second}) {
    for (const auto& e : *part) all.insert(e.question);
  }
  EXPECT_EQ(all.size(), 50u);  // a partition
  bool same_b = true, same_c = true;
  for (size_t i = 0; i < 40; ++i) {
    same_b = same_b && a.first[i].question == b.first[i].question;
    same_c = same_c && a.first[i].question == c.first[i].question;
  }
  EXPECT_TRUE(same_b);
  EXPECT_FALSE(same_c);
  // The PRNG is fixed across platforms: its first outputs are part of the
  // contract.
  SplitMix64 rng(0);
  EXPECT_EQ(rng.Next(), 0xe220a8397b1dcdafULL);
}

// Checks every calculator annotation <<a op b=c>> of a worked solution.
void ExpectArithmeticCorrect(const std::string& solution) {
  size_t p = 0;
  while ((p = solution.find("<<", p)) != std::string::npos) {
    const size_t q = solution.find(">>", p);
    ASSERT_NE(q, std::string::npos);
    const std::string expr = solution.substr(p + 2, q - p - 2);
    long long a, b, c;
    char op;
    ASSERT_EQ(std::sscanf(expr.c_str(), "%lld%c%lld=%lld", &a, &op, &b, &c), 4)
        << expr;
    long long want = op == '+'   ? a + b
                     : op == '-' ? a - b
                     : op == '*' ? a * b
                                 : a / b;
    if (op == '/') {
      EXPECT_EQ(a % b, 0) << expr;
    }
    EXPECT_EQ(c, want) << expr;
    EXPECT_GT(c, 0) << expr;
    p = q;
  }
}

TEST(Datagen, DeterministicDisjointAndCorrect) {
  DatagenOptions o;
  o.seed = 5;
  ASSERT_OK_AND_ASSIGN(GeneratedTask t1, GenerateTask(o, 300, 60));
  ASSERT_OK_AND_ASSIGN(GeneratedTask t2, GenerateTask(o, 300, 60));
  ASSERT_EQ(t1.train.size(), 300u);
  ASSERT_EQ(t1.test.size(), 60u);
  std::set<std::string> train_q;
  for (size_t i = 0; i < t1.train.size(); ++i) {
    EXPECT_EQ(t1.train[i].question, t2.train[i].question);
    train_q.insert(t1.train[i].question);
  }
  EXPECT_EQ(train_q.size(), 300u);
  for (const auto& e : t1.test)
    EXPECT_EQ(train_q.count(e.question), 0u) << e.question;
  // More test problems never change the training set.
  ASSERT_OK_AND_ASSIGN(GeneratedTask t3, GenerateTask(o, 300, 90));
  for (size_t i = 0; i < 300; ++i)
    EXPECT_EQ(t3.train[i].question, t1.train[i].question);
  // Every worked solution is arithmetically right and grades correct in GSM8K
  // format.
  const std::string jsonl = ToGsm8kJsonl(t1.train);
  ASSERT_OK_AND_ASSIGN(Dataset back, ParseJsonl(jsonl, "gen", {}));
  ASSERT_EQ(back.examples.size(), 300u);
  for (const auto& e : back.examples) {
    ExpectArithmeticCorrect(e.solution);
    EXPECT_TRUE(GradeResponse(e.solution, e.gold, Strictness::kStrict).correct);
  }
  o.seed = 6;
  ASSERT_OK_AND_ASSIGN(GeneratedTask other, GenerateTask(o, 300, 0));
  EXPECT_NE(other.train[0].question, t1.train[0].question);
}

TEST(Datagen, KnobsAreRespected) {
  DatagenOptions o;
  o.min_steps = o.max_steps = 4;
  o.add = o.subtract = o.divide = false;  // multiply only
  o.distractor_probability = 0;
  o.max_value = 5;
  ASSERT_OK_AND_ASSIGN(GeneratedTask t, GenerateTask(o, 50, 0));
  for (const auto& e : t.train) {
    size_t steps = 0, p = 0;
    while ((p = e.solution.find("<<", p)) != std::string::npos) ++steps, ++p;
    EXPECT_EQ(steps, 4u) << e.solution;
    EXPECT_EQ(e.solution.find('+'), std::string::npos);
    EXPECT_EQ(e.solution.find('/'), std::string::npos);
    EXPECT_EQ(e.question.find("years old"), std::string::npos);
  }
  DatagenOptions bad;
  bad.add = bad.subtract = bad.multiply = bad.divide = false;
  EXPECT_THAT(GenerateTask(bad, 1, 1),
              StatusIs(absl::StatusCode::kInvalidArgument));
  bad = {};
  bad.min_steps = 3;
  bad.max_steps = 2;
  EXPECT_THAT(GenerateTask(bad, 1, 1),
              StatusIs(absl::StatusCode::kInvalidArgument));
  DatagenOptions tiny;
  tiny.min_steps = tiny.max_steps = 1;
  tiny.max_value = 3;
  tiny.subtract = tiny.multiply = tiny.divide = false;
  tiny.distractor_probability =
      0;  // 14 starts x 2 operands x 12 names x 15 items = 5040
  EXPECT_THAT(GenerateTask(tiny, 6000, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace cmdistill::tasks
