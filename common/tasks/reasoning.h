// Exact reasoning checks for the synthetic task (common/tasks/datagen.h): the
// embedded analogue of the paper's reasoning win rate, computed instead of
// judged. Every answer is classified by style (the teacher's worked style, the
// teacher-foreign "Quick sum:" style, or other) and its scratchpad is checked:
// the numbers are the question's, each step's arithmetic is right, and the
// final answer is the scratchpad's last result.
//
// Only questions written by the generator can be checked (ParseProblem returns
// nullopt for anything else, e.g. GSM8K): for real data there is no ground
// truth of the reasoning, only of the final answer. Torch-free, pure functions.
#ifndef CMDISTILL_COMMON_TASKS_REASONING_H_
#define CMDISTILL_COMMON_TASKS_REASONING_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cmdistill::tasks {

// What a synthetic question asks: the starting quantity and each operation
// with its operand, in order (distractor sentences left out).
struct ProblemFacts {
  int64_t start = 0;
  struct Step {
    char op = '+';  // one of + - * /
    int64_t operand = 0;
  };
  std::vector<Step> steps;
  int64_t answer() const;
  // A stable id of the arithmetic (start, ops, operands) — the "cell" that
  // problems differing only in names, items and distractors share; used to
  // cluster evaluation intervals.
  uint64_t cell() const;
};

// nullopt when the question is not one the generator writes.
std::optional<ProblemFacts> ParseProblem(std::string_view question);

enum class AnswerStyle { kTeacher, kForeign, kOther };
const char* AnswerStyleName(AnswerStyle s);  // "teacher", "foreign", "other"

struct ReasoningCheck {
  AnswerStyle style = AnswerStyle::kOther;
  // The scratchpad's numbers are the question's (including the restatement
  // line where the answer has one), each result is its operation's, and
  // "#### N" is the last result; no step missing or added.
  bool valid = false;
  // The final answer equals the question's answer.
  bool correct = false;
  // Why it is not valid ("" when valid): the first problem found.
  std::string why;
};

// The style alone, from the answer's first line (no problem needed): the
// foreign style opens with kForeignStylePrefix, the teacher's with its
// restatement ("Mia starts with ...", "After ...", ...).
AnswerStyle ClassifyStyle(std::string_view completion);

// Classifies one answer (the completion text, without the prompt) to the
// problem `facts`.
ReasoningCheck CheckReasoning(const ProblemFacts& facts,
                              std::string_view completion);

}  // namespace cmdistill::tasks

#endif  // CMDISTILL_COMMON_TASKS_REASONING_H_
