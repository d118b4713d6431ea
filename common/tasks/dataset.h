// Math data sets from JSON Lines: GSM8K ({"question", "answer" ending in "####
// N"}), MATH
// ({"problem", "solution" with \boxed{...}}) and a generic form with configured
// field names.
//
// A malformed line (not JSON, a missing or non-string field, no final answer)
// fails the load with INVALID_ARGUMENT naming the file and line, or — with
// MalformedLines::kSkip — is skipped and counted. Shuffles and splits are
// deterministic functions of the seed, on every platform (own PRNG, not
// std::shuffle).
#ifndef CMDISTILL_COMMON_TASKS_DATASET_H_
#define CMDISTILL_COMMON_TASKS_DATASET_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace cmdistill::tasks {

enum class DataFormat { kGsm8k, kMath, kGeneric };
enum class MalformedLines { kFail, kSkip };

struct DatasetOptions {
  DataFormat format = DataFormat::kGsm8k;
  std::string question_field = "question";  // kGeneric only
  std::string answer_field = "answer";      // kGeneric only
  MalformedLines malformed = MalformedLines::kFail;
  size_t max_examples = 0;  // 0 = all
};

struct Example {
  std::string question;
  std::string solution;  // the reference solution as given
  std::string gold;      // the final answer
  int64_t line = 0;      // 1-based line in the source file
};

struct Dataset {
  std::vector<Example> examples;
  int64_t skipped = 0;
  std::vector<std::string> skip_reasons;  // the first few, "file:line: why"
};

absl::StatusOr<Dataset> LoadJsonl(const std::string& path,
                                  const DatasetOptions& options);
// As LoadJsonl, from text; `name` stands for the file in messages.
absl::StatusOr<Dataset> ParseJsonl(std::string_view text,
                                   const std::string& name,
                                   const DatasetOptions& options);

// The prompt for one question: every "{question}" in `tmpl` replaced.
std::string ApplyTemplate(std::string_view tmpl, std::string_view question);

// A small, portable PRNG (SplitMix64) for everything that must be reproducible
// by seed.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  // Uniform in [0, n) without modulo bias; n > 0.
  uint64_t Below(uint64_t n);
  // Uniform in [lo, hi].
  int64_t Range(int64_t lo, int64_t hi);

 private:
  uint64_t state_;
};

// Fisher-Yates with SplitMix64(seed).
void Shuffle(std::vector<Example>* examples, uint64_t seed);

// Shuffles by seed, then puts round(test_fraction * n) examples into the second
// part.
std::pair<std::vector<Example>, std::vector<Example>> Split(
    std::vector<Example> examples, double test_fraction, uint64_t seed);

}  // namespace cmdistill::tasks

#endif  // CMDISTILL_COMMON_TASKS_DATASET_H_
