// The embedded default's preparation and evaluation, behind `cmdistill
// local`, `prepare`, `eval` and `experiment`: paths resolved under
// output_dir, data + tokenizer + SFT'd teacher and warm student made (and
// cached by a stamp of everything that shaped them), models loaded, greedy
// and sampled held-out evaluation, the trained student's model card. No
// flags, no exit codes: every failure is a Status naming what is wrong.
#ifndef CMDISTILL_SERVICES_PIPELINE_BOOTSTRAP_H_
#define CMDISTILL_SERVICES_PIPELINE_BOOTSTRAP_H_

#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "app/eval/evaluation.h"
#include "cmdistill/v1/config.pb.h"
#include "common/model/language_model.h"
#include "common/tasks/dataset.h"
#include "common/tokenizer/tokenizer.h"

namespace cmdistill::workflows {

// Overrides that make `local --smoke` / `experiment --smoke` finish in a
// couple of minutes on 2 cores (the test suite runs them); the user's --set
// go after them and win.
const std::vector<std::string>& SmokeOverrides();

// Empty model and data paths of the embedded default live under output_dir.
void ResolveLocalPaths(v1::RunConfig* c);
// <output_dir>/models/tokenizer: the tokenizer the embedded default learns.
std::string TokenizerDir(const v1::RunConfig& c);

// Makes what is missing (local.bootstrap) or checks that the run file's data
// and models exist (NOT_FOUND naming the first missing one).
absl::Status Bootstrap(const v1::RunConfig& config, std::ostream& log);

// The held-out split, cut to eval.max_examples.
absl::StatusOr<std::vector<tasks::Example>> EvalExamples(
    const v1::RunConfig& config);
// A model folder on the role's device and dtype.
absl::StatusOr<std::unique_ptr<model::LanguageModel>> LoadModel(
    const v1::ModelConfig& m, const std::string& path);

// One evaluation with a progress bar on `progress`; the second form loads
// the student from `student_dir` (student.device/dtype).
absl::StatusOr<eval::EvalReport> EvaluateOne(
    const std::string& name, model::LanguageModel* student,
    model::LanguageModel* teacher, const tokenizer::Tokenizer& tok,
    const std::vector<tasks::Example>& examples, const v1::RunConfig& config,
    std::ostream& progress);
absl::StatusOr<eval::EvalReport> EvaluateOne(
    const std::string& name, const std::string& student_dir,
    model::LanguageModel* teacher, const tokenizer::Tokenizer& tok,
    const std::vector<tasks::Example>& examples, const v1::RunConfig& config,
    std::ostream& progress);
// The run file's evaluation by sampling, as training samples (nullopt when
// eval.sampled_samples_per_prompt is 0).
std::optional<v1::RunConfig> SampledEvalConfig(const v1::RunConfig& c);
// "student after" -> "student after sampled".
std::string SampledName(const std::string& name);
// Greedy and, when configured, sampled evaluation: appends one or two
// reports to `out`.
absl::Status EvaluateBoth(const std::string& name,
                          model::LanguageModel* student,
                          model::LanguageModel* teacher,
                          const tokenizer::Tokenizer& tok,
                          const std::vector<tasks::Example>& examples,
                          const v1::RunConfig& config, std::ostream& progress,
                          std::vector<eval::EvalReport>* out);
absl::Status EvaluateBoth(const std::string& name,
                          const std::string& student_dir,
                          model::LanguageModel* teacher,
                          const tokenizer::Tokenizer& tok,
                          const std::vector<tasks::Example>& examples,
                          const v1::RunConfig& config, std::ostream& progress,
                          std::vector<eval::EvalReport>* out);

// `cmdistill eval`: the model in `student_dir` on the run file's held-out
// split, against the teacher in `teacher_dir` ("" = none: correctness and
// length only). FAILED_PRECONDITION when their tokenizers differ.
absl::StatusOr<eval::EvalReport> EvaluateFolder(const v1::RunConfig& config,
                                                const std::string& name,
                                                const std::string& student_dir,
                                                const std::string& teacher_dir,
                                                std::ostream& progress);

// SHA-256 over a model folder's config.json and weight files, in name order.
absl::StatusOr<std::string> ModelFingerprint(const std::string& dir);
// README.md (Hugging Face model card) and cmdistill_eval.json in `final_dir`.
absl::Status WriteModelCard(const v1::RunConfig& config,
                            const std::string& final_dir,
                            const std::vector<eval::EvalReport>& after,
                            const std::vector<eval::EvalReport>& before,
                            int64_t steps, int64_t problems,
                            const std::string& selection = "");

// The running executable (the children of `local` are the same binary).
std::string SelfPath();

struct Prepared {
  v1::RunConfig config;
  std::unique_ptr<tokenizer::Tokenizer> tok;
  std::unique_ptr<model::LanguageModel> teacher;
  std::vector<tasks::Example> examples;
};
// Resolves paths, bootstraps, loads the tokenizer, teacher and eval split
// (FAILED_PRECONDITION when the student's and teacher's tokenizers differ).
absl::StatusOr<Prepared> Prepare(v1::RunConfig config, std::ostream& log);
// Removes the checkpoints, final model, logs and metrics of an earlier run.
void ClearPreviousRun(const std::string& out);

}  // namespace cmdistill::workflows

#endif  // CMDISTILL_SERVICES_PIPELINE_BOOTSTRAP_H_
