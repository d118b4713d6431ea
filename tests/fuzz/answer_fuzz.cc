// Fuzz target: the answer extractor and grader (every strictness), answer
// normalisation and equivalence. Input: response, then "\0", then a gold
// reference.
#include <cstdint>
#include <string>

#include "common/tasks/answer.h"

namespace tasks = cmdistill::tasks;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t cut = input.find('\0');
  const std::string response = input.substr(0, cut);
  const std::string gold =
      cut == std::string::npos ? "42" : input.substr(cut + 1);
  for (auto s : {tasks::Strictness::kStrict, tasks::Strictness::kLastNumber}) {
    (void)tasks::ExtractAnswer(response, s);
    (void)tasks::GradeResponse(response, gold, s);
  }
  (void)tasks::GoldAnswer(gold);
  const std::string n = tasks::NormalizeAnswer(response);
  (void)tasks::NumericValue(n);
  // Equivalence is reflexive for anything normalised.
  if (!n.empty() && !tasks::AnswersEquivalent(n, n)) __builtin_trap();
  (void)tasks::AnswersEquivalent(response, gold);
  return 0;
}
