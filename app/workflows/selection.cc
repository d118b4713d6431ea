#include "app/workflows/selection.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "app/eval/evaluation.h"
#include "app/workflows/bootstrap.h"
#include "app/workflows/workflow.h"
#include "common/status/status_macros.h"

namespace cmdistill::workflows {
namespace fs = std::filesystem;

int ChooseCandidate(const std::vector<SelectionCandidate>& c,
                    double csr_target) {
  int best = -1;
  for (size_t i = 0; i < c.size(); ++i) {
    if (c[i].satisfaction.value < csr_target) continue;
    if (best < 0 || c[i].correctness.value >= c[best].correctness.value)
      best = static_cast<int>(i);
  }
  if (best >= 0) return best;
  for (size_t i = 0; i < c.size(); ++i) {
    if (best < 0 || c[i].satisfaction.value > c[best].satisfaction.value ||
        (c[i].satisfaction.value == c[best].satisfaction.value &&
         c[i].correctness.value >= c[best].correctness.value))
      best = static_cast<int>(i);
  }
  return best;
}

namespace {

// The Hugging Face files of a model folder, without cmdistill's own records
// (training state, bootstrap stamps).
absl::Status CopyModel(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::create_directories(to, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", to));
  for (const auto& e : fs::directory_iterator(from, ec)) {
    const std::string n = e.path().filename().string();
    if (!e.is_regular_file() || absl::StartsWith(n, "cmdistill_") ||
        absl::EndsWith(n, ".pb"))
      continue;
    fs::copy_file(e.path(), fs::path(to) / n,
                  fs::copy_options::overwrite_existing, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot copy ", e.path().string(), ": ", ec.message()));
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot read ", from));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Selection> SelectFinal(const v1::RunConfig& config,
                                      const std::string& final_dir,
                                      model::LanguageModel* teacher,
                                      const tokenizer::Tokenizer& tokenizer,
                                      std::ostream& log) {
  auto examples = LoadValidation(config);
  if (!examples.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "eval.final_selection best_validation needs a validation split "
        "(data.validation_path, or local.datagen.validation > 0): ",
        examples.status().message()));
  }
  const uint32_t cap = config.eval().validation_examples();
  if (cap > 0 && examples->size() > cap) examples->resize(cap);
  Selection sel;
  sel.candidates.push_back({"warm start", config.student().path(), 0, {}, {}});
  const std::string ckpt_root = config.training().checkpoint_dir().empty()
                                    ? config.output_dir() + "/checkpoints"
                                    : config.training().checkpoint_dir();
  std::vector<SelectionCandidate> steps;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckpt_root, ec)) {
    const std::string n = e.path().filename().string();
    int64_t step = 0;
    if (!absl::StartsWith(n, "step-") ||
        !absl::SimpleAtoi(n.substr(5), &step) ||
        !fs::exists(e.path() / "config.json"))
      continue;
    steps.push_back(
        {absl::StrCat("step ", step), e.path().string(), step, {}, {}});
  }
  std::sort(steps.begin(), steps.end(),
            [](const auto& a, const auto& b) { return a.step < b.step; });
  for (auto& s : steps) sel.candidates.push_back(std::move(s));
  sel.candidates.push_back(
      {"last step", final_dir, sel.candidates.back().step, {}, {}});
  v1::RunConfig ec_config = config;
  ec_config.mutable_eval()->set_temperature(
      config.eval().sampled_temperature());
  ec_config.mutable_eval()->set_samples_per_prompt(
      config.eval().validation_samples_per_prompt());
  const double target = config.eval().selection_csr_target();
  sel.rule = absl::StrFormat(
      "final/ = the most correct of the warm start and every kept checkpoint "
      "among those with validation CSR >= %g (none: the highest CSR); %d "
      "validation problems x %d samples at T = %g",
      target, examples->size(), config.eval().validation_samples_per_prompt(),
      config.eval().sampled_temperature());
  log << "selection: " << sel.rule << "\n";
  for (SelectionCandidate& c : sel.candidates) {
    CMDISTILL_ASSIGN_OR_RETURN(
        auto r, EvaluateOne("validation " + c.label, c.dir, teacher, tokenizer,
                            *examples, ec_config, log));
    c.correctness = r.metrics.correctness;
    c.satisfaction = r.metrics.satisfaction;
  }
  sel.chosen = ChooseCandidate(sel.candidates, target);
  sel.summary =
      "| candidate | validation FAC | validation CSR | |\n|---|---|---|---|\n";
  for (size_t i = 0; i < sel.candidates.size(); ++i) {
    const auto& c = sel.candidates[i];
    absl::StrAppend(
        &sel.summary, "| ", c.label, " | ", eval::FormatEstimate(c.correctness),
        " | ", eval::FormatEstimate(c.satisfaction), " | ",
        static_cast<int>(i) == sel.chosen ? "**chosen**" : "", " |\n");
  }
  const SelectionCandidate& chosen = sel.candidates[sel.chosen];
  log << sel.summary << "selection: " << chosen.label << " -> " << final_dir
      << "\n";
  if (chosen.dir != final_dir) {
    const std::string last = config.output_dir() + "/last";
    fs::remove_all(last, ec);
    fs::rename(final_dir, last, ec);
    if (ec) {
      return absl::InternalError(absl::StrCat("cannot move ", final_dir, " to ",
                                              last, ": ", ec.message()));
    }
    CMDISTILL_RETURN_IF_ERROR(CopyModel(chosen.dir, final_dir));
    log << "selection: the last step's student is kept in " << last << "\n";
  }
  return sel;
}

}  // namespace cmdistill::workflows
