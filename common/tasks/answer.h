// Final-answer extraction and equivalence for math tasks (GSM8K and MATH
// style).
//
// Extraction, in order of preference (the last occurrence of each counts):
//   1. "#### N" (GSM8K's marker) — to the end of its line;
//   2. the last \boxed{...} (nested braces; also \fbox{...} and "\boxed N");
//   3. "the answer is ..." (case-insensitive) — to the end of its line,
//   sentence dot dropped;
//   4. with Strictness::kLastNumber only: the last number in the text.
// Equivalence handles thousands separators, $, %, units (\text{...} and
// trailing words), trailing zeros, .5 / 0.5, signs (also U+2212), a/b, \frac
// \dfrac \tfrac and their decimal values, \left \right, spacing commands,
// degrees, and ordered tuples/lists element by element.
//
// Everything is linear-time hand-written scanning (no regex, no backtracking),
// bounded by kMaxResponseBytes, thread-safe and signal-free: any input returns
// promptly.
#ifndef CMDISTILL_COMMON_TASKS_ANSWER_H_
#define CMDISTILL_COMMON_TASKS_ANSWER_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace cmdistill::tasks {

enum class Strictness { kStrict, kLastNumber };

// Responses longer than this are not graded (failure kTooLong, reward 0).
inline constexpr size_t kMaxResponseBytes = 1 << 20;

enum class GradeFailure { kNone, kNoAnswer, kTooLong };

struct Extraction {
  bool found = false;
  std::string answer;    // raw extracted text
  const char* how = "";  // "marker", "boxed", "answer_is", "last_number"
};

Extraction ExtractAnswer(std::string_view response, Strictness strictness);

// The gold answer of a reference: the "#### N" or last \boxed{} if present,
// else the text.
std::string GoldAnswer(std::string_view reference);

// Canonical text of an answer (what equality of non-numeric answers compares).
std::string NormalizeAnswer(std::string_view answer);

// The numeric value of an answer, if it is a number (integer, decimal,
// fraction).
std::optional<double> NumericValue(std::string_view answer);

// Are two extracted answers the same? Numbers compare by value (relative 1e-9,
// absolute 1e-12 at zero); tuples/lists element-wise; anything else by
// normalised text.
bool AnswersEquivalent(std::string_view a, std::string_view b);

struct Grade {
  bool correct = false;
  std::string extracted;
  GradeFailure failure = GradeFailure::kNone;
};

// Extracts the response's answer and compares it with `gold` (a bare answer or
// a full reference solution).
Grade GradeResponse(std::string_view response, std::string_view gold,
                    Strictness strictness);

}  // namespace cmdistill::tasks

#endif  // CMDISTILL_COMMON_TASKS_ANSWER_H_
