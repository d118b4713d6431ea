// The embedded default task: GSM8K-style multi-step arithmetic word problems
// with worked, step-by-step solutions in GSM8K's format (calculator annotations
// <<a*b=c>> and a final
// "#### N"). Deterministic by seed; train and test never share a question.
//
// The worked solutions have one fixed, distinctive style (one sentence per
// step, the running quantity restated each time), so a teacher trained on them
// has a recognisable reasoning style that a student can keep or abandon — which
// is what the KL budget measures.
#ifndef CMDISTILL_COMMON_TASKS_DATAGEN_H_
#define CMDISTILL_COMMON_TASKS_DATAGEN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tasks/dataset.h"

namespace cmdistill::tasks {

struct DatagenOptions {
  uint64_t seed = 0;
  int min_steps = 1;  // operations applied after the starting quantity
  int max_steps = 3;
  int max_value = 20;  // operands are drawn from [2, max_value]; the start from
                       // [2, 5*max_value]
  bool add = true, subtract = true, multiply = true, divide = true;
  double distractor_probability =
      0.3;  // per step: an irrelevant sentence with a number
  // The worked solution first restates the question in one line ("Mia starts
  // with 3 marbles, then gets 2 more.") before computing: a longer teacher
  // style with more numbers to copy (the embedded default's conflict, README).
  bool restate = false;
  // Each step's line is followed by a check with the inverse operation
  // ("Check: 5 - 2 = 3."): more arithmetic in the teacher's style.
  bool check = false;
};

// INVALID_ARGUMENT for impossible options (no operation, steps out of order,
// tiny ranges).
absl::Status ValidateDatagenOptions(const DatagenOptions& options);

// One problem from the given stream.
Example GenerateProblem(const DatagenOptions& options, SplitMix64* rng);

struct GeneratedTask {
  std::vector<Example> train, test, validation;
};

// `train`, `test` and `validation` problems; no question appears in two
// splits. Each split has its own random stream, but the splits are filled in
// that order against one set of questions already taken: asking for
// validation problems changes neither train nor test, while asking for more
// training problems can change which test and validation problems survive.
// FAILED_PRECONDITION when the options cannot produce that many distinct
// questions.
absl::StatusOr<GeneratedTask> GenerateTask(const DatagenOptions& options,
                                           size_t train, size_t test,
                                           size_t validation = 0);

// The teacher-foreign answer style of the embedded default: every calculator
// annotation of a GSM8K-format solution on one line after this prefix, then
// the final answer ("Quick sum: 3+2=5, 5-1=4\n#### 4"). Short, and made of
// words the teacher never writes, so the teacher finds it improbable.
inline constexpr const char kForeignStylePrefix[] = "Quick sum:";
// "" when the solution has no annotation or no "#### N".
std::string ForeignStyleSolution(const std::string& solution);

// GSM8K JSON Lines ({"question", "answer"}), one example a line.
std::string ToGsm8kJsonl(const std::vector<Example>& examples);

}  // namespace cmdistill::tasks

#endif  // CMDISTILL_COMMON_TASKS_DATAGEN_H_
