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
};

// INVALID_ARGUMENT for impossible options (no operation, steps out of order,
// tiny ranges).
absl::Status ValidateDatagenOptions(const DatagenOptions& options);

// One problem from the given stream.
Example GenerateProblem(const DatagenOptions& options, SplitMix64* rng);

struct GeneratedTask {
  std::vector<Example> train, test;
};

// `train` and `test` problems; test questions never appear in train.
// FAILED_PRECONDITION when the options cannot produce that many distinct
// questions.
absl::StatusOr<GeneratedTask> GenerateTask(const DatagenOptions& options,
                                           size_t train, size_t test);

// GSM8K JSON Lines ({"question", "answer"}), one example a line.
std::string ToGsm8kJsonl(const std::vector<Example>& examples);

}  // namespace cmdistill::tasks

#endif  // CMDISTILL_COMMON_TASKS_DATAGEN_H_
