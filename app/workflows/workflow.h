// The steps `cmdistill local`, `sft`, `eval` and `experiment` share, run
// in-process: the embedded default's data, tokenizer and small models, and
// supervised fine-tuning with held-out accuracy.
#ifndef CMDISTILL_SERVICES_PIPELINE_WORKFLOW_H_
#define CMDISTILL_SERVICES_PIPELINE_WORKFLOW_H_

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmdistill/v1/config.pb.h"
#include "common/model/language_model.h"
#include "common/rl/stats.h"
#include "common/tasks/dataset.h"
#include "common/tokenizer/tokenizer.h"

namespace cmdistill::workflows {

// data.train_path / data.test_path of the run file, loaded with its options.
absl::StatusOr<std::vector<tasks::Example>> LoadSplit(
    const v1::RunConfig& config, bool test);

// data.validation_path, loaded like the test split (NOT_FOUND when unset or
// missing).
absl::StatusOr<std::vector<tasks::Example>> LoadValidation(
    const v1::RunConfig& config);

// Writes data.train_path and data.test_path from local.datagen when either is
// missing; true when it wrote them.
absl::StatusOr<bool> MakeTaskIfMissing(const v1::RunConfig& config,
                                       std::ostream& log);

// A byte-level BPE tokenizer (local.tokenizer_merges merges learned from the
// training questions and solutions, plus <|endoftext|> as eos) in `dir`,
// unless `dir` already holds one.
absl::Status MakeTokenizerIfMissing(const v1::RunConfig& config,
                                    const std::string& dir, std::ostream& log);

// A randomly initialised Qwen2-style model of the given shape for the
// tokenizer (vocabulary rounded up to a multiple of 64; eos = the tokenizer's).
absl::StatusOr<std::unique_ptr<model::LanguageModel>> InitSmallModel(
    const v1::SmallModelConfig& shape, const tokenizer::Tokenizer& tokenizer,
    uint64_t seed);

struct SftSummary {
  int64_t steps = 0;
  double final_loss = 0;
  rl::Estimate heldout_correctness;  // greedy, on sft.eval_examples
  double seconds = 0;
};

// Supervised fine-tuning on the training split's worked solutions (prompt from
// data.prompt_template, completion " " + solution + eos), AdamW with the
// sft section's schedule, held-out correctness every sft.eval_every steps and
// at the end. Progress (bar with ETA, loss, accuracy) goes to `progress`.
absl::StatusOr<SftSummary> RunSft(model::LanguageModel* model,
                                  const tokenizer::Tokenizer& tokenizer,
                                  const v1::RunConfig& config,
                                  const v1::SftConfig& sft,
                                  const std::string& label,
                                  std::ostream& progress);

// `cmdistill sft`: fine-tunes the model in `model_dir` (or, with `init_role`
// "teacher"/"student", a random one of local.<role>_model's shape for the
// tokenizer in `tokenizer_dir`) with the local.<knobs>_sft section, and writes
// it to `out` with its tokenizer.
struct SftRequest {
  std::string model_dir;
  std::string init_role;
  std::string tokenizer_dir;
  std::string knobs = "teacher";
  std::string out;
};
absl::StatusOr<SftSummary> SftToFolder(const v1::RunConfig& config,
                                       const SftRequest& request,
                                       std::ostream& progress);

}  // namespace cmdistill::workflows

#endif  // CMDISTILL_SERVICES_PIPELINE_WORKFLOW_H_
