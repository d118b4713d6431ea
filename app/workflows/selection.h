// Which student goes into final/ (eval.final_selection): the learner's last
// step, or the best of the warm start and every kept checkpoint on the
// validation split — the most correct among those whose validation constraint
// satisfaction meets eval.selection_csr_target, else the most satisfying. So
// while the warm start meets the target, the final student is never less
// correct on validation than where it started, by a rule printed with the
// result (like transformers' load_best_model_at_end). The test split is never
// used to choose.
#ifndef CMDISTILL_SERVICES_PIPELINE_SELECTION_H_
#define CMDISTILL_SERVICES_PIPELINE_SELECTION_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmdistill/v1/config.pb.h"
#include "common/model/language_model.h"
#include "common/rl/stats.h"
#include "common/tokenizer/tokenizer.h"

namespace cmdistill::workflows {

struct SelectionCandidate {
  std::string label;  // "warm start", "step 50", "last step"
  std::string dir;
  int64_t step = 0;
  rl::Estimate correctness, satisfaction;  // on validation, sampled
};

// The rule on measured candidates, in training order: the index chosen.
// Among candidates with satisfaction >= csr_target the highest correctness
// (a tie goes to the later one); when none qualifies, the highest
// satisfaction (a tie to the more correct, then the later). -1 when empty.
int ChooseCandidate(const std::vector<SelectionCandidate>& candidates,
                    double csr_target);

struct Selection {
  std::vector<SelectionCandidate> candidates;
  int chosen = -1;
  std::string rule;     // one line, for the summary and the model card
  std::string summary;  // the candidates as a Markdown table, the choice marked
};

// Evaluates the warm start (config.student().path()), every checkpoint under
// the run's checkpoint folder and `final_dir` on the validation split, and
// when another candidate wins, moves `final_dir` to `<output_dir>/last` and
// copies the chosen student's Hugging Face files into `final_dir`.
// FAILED_PRECONDITION without a validation split.
absl::StatusOr<Selection> SelectFinal(const v1::RunConfig& config,
                                      const std::string& final_dir,
                                      model::LanguageModel* teacher,
                                      const tokenizer::Tokenizer& tokenizer,
                                      std::ostream& log);

}  // namespace cmdistill::workflows

#endif  // CMDISTILL_SERVICES_PIPELINE_SELECTION_H_
