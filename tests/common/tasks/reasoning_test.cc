// The synthetic task's answer classifier: each style, each kind of invalid
// scratchpad, and agreement with the generator on every problem it writes.
#include "common/tasks/reasoning.h"

#include <string>

#include "common/tasks/answer.h"
#include "common/tasks/datagen.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cmdistill::tasks {
namespace {

using ::testing::HasSubstr;

constexpr char kQuestion[] =
    "Mia has 3 marbles. The shop has 7 shelves. She gets 2 more marbles. She "
    "gives 4 marbles to a friend. How many marbles does Mia have now?";

ProblemFacts Facts() {
  auto f = ParseProblem(kQuestion);
  EXPECT_TRUE(f.has_value());
  return f.value_or(ProblemFacts{});
}

TEST(ParseProblem, ReadsStartAndStepsAndSkipsDistractors) {
  const ProblemFacts f = Facts();
  EXPECT_EQ(f.start, 3);
  ASSERT_EQ(f.steps.size(), 2u);
  EXPECT_EQ(f.steps[0].op, '+');
  EXPECT_EQ(f.steps[0].operand, 2);
  EXPECT_EQ(f.steps[1].op, '-');
  EXPECT_EQ(f.steps[1].operand, 4);
  EXPECT_EQ(f.answer(), 1);  // 3 + 2 - 4
  // Same arithmetic, other names and items: the same cell; other numbers not.
  auto same = ParseProblem(
      "Omar has 3 coins. He gets 2 more coins. He gives 4 coins to a friend. "
      "How many coins does Omar have now?");
  ASSERT_TRUE(same.has_value());
  EXPECT_EQ(same->cell(), f.cell());
  auto other = ParseProblem(
      "Omar has 3 coins. He gets 3 more coins. He gives 4 coins to a friend. "
      "How many coins does Omar have now?");
  ASSERT_TRUE(other.has_value());
  EXPECT_NE(other->cell(), f.cell());
  // Not the generator's: GSM8K and friends are not checkable.
  EXPECT_FALSE(ParseProblem("Natalia sold clips to 48 of her friends in April, "
                            "and then she sold half as many clips in May. How "
                            "many clips did Natalia sell altogether?")
                   .has_value());
  EXPECT_FALSE(ParseProblem("").has_value());
}

TEST(CheckReasoning, TeacherStyleValidWithAndWithoutRestatement) {
  const std::string steps =
      "After getting 2 more, Mia has 3 + 2 = <<3+2=5>>5 marbles.\n"
      "After giving away 4, Mia has 5 - 4 = <<5-4=1>>1 marbles.\n#### 1";
  for (const std::string& answer :
       {steps,
        "Mia starts with 3 marbles, then gets 2 more, then gives 4 "
        "away.\n" +
            steps,
        " " + steps + "\n"}) {
    const ReasoningCheck r = CheckReasoning(Facts(), answer);
    EXPECT_EQ(r.style, AnswerStyle::kTeacher) << answer;
    EXPECT_TRUE(r.valid) << answer << ": " << r.why;
    EXPECT_TRUE(r.correct) << answer;
  }
}

TEST(CheckReasoning, ChecksAfterEachStep) {
  const ReasoningCheck r = CheckReasoning(
      Facts(),
      "Mia starts with 3 marbles, then gets 2 more, then gives 4 away.\n"
      "After getting 2 more, Mia has 3 + 2 = <<3+2=5>>5 marbles.\n"
      "Check: 5 - 2 = 3.\n"
      "After giving away 4, Mia has 5 - 4 = <<5-4=1>>1 marbles.\n"
      "Check: 1 + 4 = 5.\n#### 1");
  EXPECT_EQ(r.style, AnswerStyle::kTeacher);
  EXPECT_TRUE(r.valid) << r.why;
  EXPECT_TRUE(r.correct);
  EXPECT_EQ(ForeignStyleSolution("After getting 2 more, Mia has 3 + 2 = "
                                 "<<3+2=5>>5 marbles.\nCheck: 5 - 2 = 3.\n"
                                 "#### 5"),
            "Quick sum: 3+2=5\n#### 5");
}

TEST(CheckReasoning, ForeignStyle) {
  ReasoningCheck r = CheckReasoning(Facts(), "Quick sum: 3+2=5, 5-4=1\n#### 1");
  EXPECT_EQ(r.style, AnswerStyle::kForeign);
  EXPECT_TRUE(r.valid) << r.why;
  EXPECT_TRUE(r.correct);
  // Right answer, a step skipped: correct but not valid.
  r = CheckReasoning(Facts(), "Quick sum: 3-2=1\n#### 1");
  EXPECT_EQ(r.style, AnswerStyle::kForeign);
  EXPECT_FALSE(r.valid);
  EXPECT_TRUE(r.correct);
  EXPECT_THAT(r.why, HasSubstr("1 steps written, the question has 2"));
  // Wrong arithmetic.
  r = CheckReasoning(Facts(), "Quick sum: 3+2=6, 6-4=2\n#### 2");
  EXPECT_FALSE(r.valid);
  EXPECT_FALSE(r.correct);
  EXPECT_THAT(r.why, HasSubstr("step 1: arithmetic: 3+2 is not 6"));
  // Text after the answer.
  r = CheckReasoning(Facts(), "Quick sum: 3+2=5, 5-4=1\n#### 1\nmore");
  EXPECT_FALSE(r.valid);
  EXPECT_THAT(r.why, HasSubstr("text after the final answer"));
}

TEST(CheckReasoning, EachKindOfInvalidTeacherScratchpad) {
  struct Case {
    const char* answer;
    const char* why;
    bool correct;
  };
  const Case cases[] = {
      // A number miscopied from the question (9 for 3) — arithmetic right.
      {"After getting 2 more, Mia has 9 + 2 = <<9+2=11>>11 marbles.\n"
       "After giving away 4, Mia has 11 - 4 = <<11-4=7>>7 marbles.\n#### 7",
       "step 1: starts from 9, not 3", false},
      // The operand miscopied (5 for 4) in both the text and the sum.
      {"After getting 2 more, Mia has 3 + 2 = <<3+2=5>>5 marbles.\n"
       "After giving away 5, Mia has 5 - 5 = <<5-5=0>>0 marbles.\n#### 0",
       "step 2: uses - 5, the question says - 4", false},
      // Wrong arithmetic, consistently carried on.
      {"After getting 2 more, Mia has 3 + 2 = <<3+2=6>>6 marbles.\n"
       "After giving away 4, Mia has 6 - 4 = <<6-4=2>>2 marbles.\n#### 2",
       "step 1: arithmetic: 3+2 is not 6", false},
      // The final answer is not the scratchpad's result (a lucky guess).
      {"After getting 2 more, Mia has 3 + 2 = <<3+2=5>>5 marbles.\n"
       "After giving away 4, Mia has 5 - 4 = <<5-4=2>>2 marbles.\n#### 1",
       "step 2: arithmetic: 5-4 is not 2", true},
      {"After getting 2 more, Mia has 3 + 2 = <<3+2=5>>5 marbles.\n"
       "After giving away 4, Mia has 5 - 4 = <<5-4=1>>1 marbles.\n#### 5",
       "final answer 5 is not the scratchpad's result", false},
      // The sentence says one number, the sum uses another.
      {"After getting 7 more, Mia has 3 + 2 = <<3+2=5>>5 marbles.\n"
       "After giving away 4, Mia has 5 - 4 = <<5-4=1>>1 marbles.\n#### 1",
       "line 1: says 7 but computes + 2", true},
      // The annotation disagrees with the written sum.
      {"After getting 2 more, Mia has 3 + 2 = <<3+2=4>>5 marbles.\n"
       "After giving away 4, Mia has 5 - 4 = <<5-4=1>>1 marbles.\n#### 1",
       "line 1: the annotation is not the written step", true},
      // A restatement with a miscopied number.
      {"Mia starts with 3 marbles, then gets 2 more, then gives 5 away.\n"
       "After getting 2 more, Mia has 3 + 2 = <<3+2=5>>5 marbles.\n"
       "After giving away 4, Mia has 5 - 4 = <<5-4=1>>1 marbles.\n#### 1",
       "restatement's step 2 is not the question's", true},
      // A wrong check (5 - 2 is 3, not 4).
      {"After getting 2 more, Mia has 3 + 2 = <<3+2=5>>5 marbles.\n"
       "Check: 5 - 2 = 4.\n"
       "After giving away 4, Mia has 5 - 4 = <<5-4=1>>1 marbles.\n#### 1",
       "line 2: the check is wrong", true},
      // A step missing.
      {"After getting 2 more, Mia has 3 + 2 = <<3+2=5>>5 marbles.\n#### 5",
       "1 steps written, the question has 2", false},
      // Derailed mid-way.
      {"After getting 2 more, Mia has 3 + 2 = <<3+2=5>>5 marbles.\n"
       "After giving marbles marbles",
       "no final", false},
  };
  for (const Case& c : cases) {
    const ReasoningCheck r = CheckReasoning(Facts(), c.answer);
    EXPECT_EQ(r.style, AnswerStyle::kTeacher) << c.answer;
    EXPECT_FALSE(r.valid) << c.answer;
    EXPECT_THAT(r.why, HasSubstr(c.why)) << c.answer;
    EXPECT_EQ(r.correct, c.correct) << c.answer;
  }
}

TEST(CheckReasoning, OtherStyle) {
  ReasoningCheck r = CheckReasoning(Facts(), "The answer is 1.\n#### 1");
  EXPECT_EQ(r.style, AnswerStyle::kOther);
  EXPECT_FALSE(r.valid);
  EXPECT_TRUE(r.correct);
  r = CheckReasoning(Facts(), "");
  EXPECT_EQ(r.style, AnswerStyle::kOther);
  EXPECT_FALSE(r.correct);
  EXPECT_STREQ(AnswerStyleName(AnswerStyle::kForeign), "foreign");
}

TEST(ClassifyStyle, FromTheFirstLineAlone) {
  EXPECT_EQ(ClassifyStyle("Quick sum: 3+2=5\n#### 5"), AnswerStyle::kForeign);
  EXPECT_EQ(ClassifyStyle("Mia starts with 3 marbles, then gets 2 more.\n"),
            AnswerStyle::kTeacher);
  EXPECT_EQ(ClassifyStyle("After 2 more, 3 + 2 = 5.\n#### 5"),
            AnswerStyle::kTeacher);
  EXPECT_EQ(ClassifyStyle("quick sum: 3+2=5"), AnswerStyle::kOther);
  EXPECT_EQ(ClassifyStyle("#### 5"), AnswerStyle::kOther);
  EXPECT_EQ(ClassifyStyle(""), AnswerStyle::kOther);
}

// Every problem the generator writes parses, and its own worked solution, in
// both datagen styles and in the foreign style, is valid and correct.
TEST(CheckReasoning, AgreesWithTheGeneratorOnEveryOperation) {
  for (int style = 0; style < 3; ++style) {
    DatagenOptions o;
    o.seed = 3;
    o.min_steps = 1;
    o.max_steps = 4;
    o.restate = style >= 1;
    o.check = style == 2;
    auto task = GenerateTask(o, 400, 0);
    ASSERT_TRUE(task.ok());
    for (const Example& e : task->train) {
      auto f = ParseProblem(e.question);
      ASSERT_TRUE(f.has_value()) << e.question;
      EXPECT_EQ(std::to_string(f->answer()), e.gold) << e.question;
      ReasoningCheck r = CheckReasoning(*f, e.solution);
      EXPECT_EQ(r.style, AnswerStyle::kTeacher) << e.solution;
      EXPECT_TRUE(r.valid) << e.solution << ": " << r.why;
      EXPECT_TRUE(r.correct) << e.solution;
      const std::string foreign = ForeignStyleSolution(e.solution);
      r = CheckReasoning(*f, foreign);
      EXPECT_EQ(r.style, AnswerStyle::kForeign) << foreign;
      EXPECT_TRUE(r.valid) << foreign << ": " << r.why;
      EXPECT_TRUE(GradeResponse(foreign, e.gold, Strictness::kStrict).correct)
          << foreign;
    }
  }
}

TEST(ForeignStyleSolution, FromTheAnnotations) {
  EXPECT_EQ(ForeignStyleSolution("After getting 2 more, Mia has 3 + 2 = "
                                 "<<3+2=5>>5 marbles.\n#### 5"),
            "Quick sum: 3+2=5\n#### 5");
  EXPECT_EQ(ForeignStyleSolution("no annotation\n#### 5"), "");
  EXPECT_EQ(ForeignStyleSolution("<<3+2=5>> but no answer"), "");
}

TEST(Datagen, RestateAndValidationSplit) {
  DatagenOptions o;
  o.seed = 9;
  o.restate = true;
  auto a = GenerateTask(o, 100, 20, 30);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->validation.size(), 30u);
  // Asking for validation problems changes neither train nor test.
  auto b = GenerateTask(o, 100, 20);
  ASSERT_TRUE(b.ok());
  for (size_t i = 0; i < 100; ++i)
    EXPECT_EQ(a->train[i].question, b->train[i].question);
  for (size_t i = 0; i < 20; ++i)
    EXPECT_EQ(a->test[i].question, b->test[i].question);
  EXPECT_TRUE(b->validation.empty());
  for (const Example& e : a->train)
    EXPECT_THAT(e.solution, HasSubstr(" starts with ")) << e.solution;
}

}  // namespace
}  // namespace cmdistill::tasks
