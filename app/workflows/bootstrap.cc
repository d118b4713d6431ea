#include "app/workflows/bootstrap.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string_view>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "app/local/progress.h"
#include "app/workflows/workflow.h"
#include "common/config/config.h"
#include "common/status/status_macros.h"
#include "common/tasks/datagen.h"
#include "common/tokenizer/fingerprint.h"
#include "common/util/files.h"
#include "common/util/sha256.h"
#include "nlohmann/json.hpp"
#include "services/common/task_options.h"

namespace cmdistill::workflows {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The warm start's styles, sampled as training samples (on up to 200
// validation problems, else held-out ones, 8 samples each): each style's share
// and the student's accuracy in it. The embedded default's conflict needs the
// foreign style to be the more accurate one for the student (README).
absl::StatusOr<std::string> StyleCheck(const v1::RunConfig& config,
                                       model::LanguageModel* model,
                                       const tokenizer::Tokenizer& tok) {
  auto examples = LoadValidation(config);
  std::string split = "validation";
  if (!examples.ok()) {
    examples = LoadSplit(config, /*test=*/true);
    split = "held-out";
  }
  CMDISTILL_RETURN_IF_ERROR(examples.status());
  if (examples->size() > 200) examples->resize(200);
  v1::RunConfig ec = config;
  ec.mutable_eval()->set_temperature(config.eval().sampled_temperature());
  ec.mutable_eval()->set_samples_per_prompt(8);
  CMDISTILL_ASSIGN_OR_RETURN(
      auto r,
      eval::Evaluate("warm start styles", model, nullptr, tok, *examples, ec));
  std::map<std::string, std::pair<int, int>> by_style;  // count, correct
  int checked = 0;
  for (const auto& it : r.items) {
    if (!it.record.checkable) continue;
    ++checked;
    auto& c = by_style[it.style];
    c.first += 1;
    c.second += it.record.correct ? 1 : 0;
  }
  if (checked == 0) return std::string("styles: not a synthetic task");
  auto part = [&](const std::string& s) {
    const auto& c = by_style[s];
    return absl::StrFormat(
        "%s %.1f%% (accuracy %s)", s, 100.0 * c.first / checked,
        c.first > 0 ? absl::StrFormat("%.3f", 1.0 * c.second / c.first)
                    : std::string("—"));
  };
  std::string line = absl::StrFormat(
      "styles when sampled (%d %s problems x 8, T = %g): %s, %s, %s",
      examples->size(), split, config.eval().sampled_temperature(),
      part("teacher"), part("foreign"), part("other"));
  // The foreign style is rare by design, so its accuracy among the samples
  // rests on few answers: measure it as well with the answer started in that
  // style (the prompt ends with its prefix) — what the student would score if
  // it moved there.
  v1::RunConfig forced = ec;
  forced.mutable_data()->set_prompt_template(absl::StrCat(
      config.data().prompt_template(), " ", tasks::kForeignStylePrefix));
  CMDISTILL_ASSIGN_OR_RETURN(
      auto fr,
      eval::Evaluate("foreign style", model, nullptr, tok, *examples, forced));
  const double forced_acc = fr.metrics.correctness.value;
  const auto& t = by_style["teacher"];
  absl::StrAppend(&line,
                  absl::StrFormat("; started in the foreign style: accuracy "
                                  "%.3f",
                                  forced_acc));
  if (t.first > 0) {
    const double gap = 100.0 * (forced_acc - 1.0 * t.second / t.first);
    absl::StrAppend(&line,
                    absl::StrFormat(", %+.1f points against the teacher's "
                                    "style",
                                    gap));
    if (gap < 10) {
      absl::StrAppend(&line,
                      " — less than 10: the reward has little reason to "
                      "leave the teacher's style on this task");
    }
  }
  return line;
}

// Makes (or finds cached) a model of the embedded default: random init of the
// role's shape, then SFT. The cache key is everything that shaped it.
absl::Status BootstrapModel(const v1::RunConfig& config,
                            const std::string& role, const std::string& path,
                            const v1::SmallModelConfig& shape,
                            const v1::SftConfig& sft, uint64_t seed,
                            std::ostream& log) {
  const std::string stamp_path = path + "/cmdistill_bootstrap.yaml";
  const std::string stamp = absl::StrCat(
      "# What made this model (cmdistill local); a change retrains it.\n",
      "seed: ", seed,
      "\ntemplate: ", json(config.data().prompt_template()).dump(),
      "\ntokenizer_merges: ", config.local().tokenizer_merges(), "\ndatagen:\n",
      config::ToYaml(config.local().datagen()), "shape:\n",
      config::ToYaml(shape), "sft:\n", config::ToYaml(sft));
  if (auto old = util::ReadFile(stamp_path);
      fs::exists(path + "/config.json") && old.ok() && *old == stamp) {
    log << role << ": cached at " << path << "\n";
    if (auto styles = util::ReadFile(path + "/cmdistill_styles.txt");
        styles.ok())
      log << role << ": " << *styles;
    return absl::OkStatus();
  }
  CMDISTILL_ASSIGN_OR_RETURN(auto tok,
                             tokenizer::Tokenizer::Load(TokenizerDir(config)));
  CMDISTILL_ASSIGN_OR_RETURN(auto model, InitSmallModel(shape, *tok, seed));
  log << role << ": " << model->num_parameters()
      << " parameters, supervised fine-tuning for " << sft.steps()
      << " steps on worked solutions\n";
  CMDISTILL_ASSIGN_OR_RETURN(
      auto sum, RunSft(model.get(), *tok, config, sft, role + " sft", log));
  checkpoint::WriteOptions wo;
  wo.copy_tokenizer_from = TokenizerDir(config);
  std::error_code ec;
  fs::remove_all(path, ec);
  CMDISTILL_RETURN_IF_ERROR(model->Save(path, wo));
  CMDISTILL_RETURN_IF_ERROR(util::WriteFileAtomically(stamp_path, stamp));
  log << role << ": held-out correctness "
      << eval::FormatEstimate(sum.heldout_correctness, 2) << " after "
      << absl::StrFormat("%.0f", sum.seconds) << " s -> " << path << "\n";
  if (sft.foreign_style_fraction() > 0) {
    CMDISTILL_ASSIGN_OR_RETURN(auto styles,
                               StyleCheck(config, model.get(), *tok));
    log << role << ": " << styles << "\n";
    CMDISTILL_RETURN_IF_ERROR(util::WriteFileAtomically(
        path + "/cmdistill_styles.txt", styles + "\n"));
  }
  return absl::OkStatus();
}

std::string YamlQuote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

// Empty model and data paths of the embedded default live under output_dir.
const std::vector<std::string>& SmokeOverrides() {
  static const auto* v = new std::vector<std::string>{
      "output_dir=runs/quickstart-smoke",
      "local.datagen.train=400",
      "local.datagen.test=48",
      "local.datagen.validation=24",
      "local.tokenizer_merges=200",
      "local.teacher_model.hidden_size=64",
      "local.teacher_model.num_layers=2",
      "local.teacher_model.intermediate_size=192",
      "local.student_model.hidden_size=48",
      "local.student_model.num_layers=2",
      "local.student_model.num_heads=4",
      "local.student_model.intermediate_size=128",
      "local.teacher_sft.steps=60",
      "local.teacher_sft.eval_every=0",
      "local.teacher_sft.eval_examples=16",
      "local.student_sft.steps=20",
      "local.student_sft.eval_every=0",
      "local.student_sft.eval_examples=16",
      "local.student_sft.teacher_style_steps=10",
      "generation.max_new_tokens=48",
      "generation.samples_per_prompt=4",
      "training.prompts_per_step=4",
      "training.max_steps=4",
      "training.checkpoint_every_steps=2",
      "training.linger_seconds=1",
      "eval.max_examples=16",
      "eval.sampled_samples_per_prompt=2",
      "eval.validation_examples=16",
      "eval.validation_samples_per_prompt=2",
  };
  return *v;
}

void ResolveLocalPaths(v1::RunConfig* c) {
  const std::string out = c->output_dir();
  if (c->data().train_path().empty())
    c->mutable_data()->set_train_path(out + "/data/train.jsonl");
  if (c->data().test_path().empty())
    c->mutable_data()->set_test_path(out + "/data/test.jsonl");
  if (c->data().validation_path().empty() &&
      c->local().datagen().validation() > 0)
    c->mutable_data()->set_validation_path(out + "/data/validation.jsonl");
  if (c->teacher().path().empty())
    c->mutable_teacher()->set_path(out + "/models/teacher");
  if (c->student().path().empty())
    c->mutable_student()->set_path(out + "/models/student-warm");
}

std::string TokenizerDir(const v1::RunConfig& c) {
  return c.output_dir() + "/models/tokenizer";
}

absl::Status Bootstrap(const v1::RunConfig& config, std::ostream& log) {
  if (!config.local().bootstrap()) {
    for (const std::string& p :
         {config.data().train_path(), config.data().test_path(),
          config.teacher().path() + "/config.json",
          config.student().path() + "/config.json"}) {
      if (!fs::exists(p)) {
        return absl::NotFoundError(
            p +
            " does not exist (local.bootstrap is false, so cmdistill "
            "local does not make it)");
      }
    }
    return absl::OkStatus();
  }
  CMDISTILL_ASSIGN_OR_RETURN(auto made, MakeTaskIfMissing(config, log));
  if (made) {
    // New data: the tokenizer learned from the old one goes too (the models'
    // stamps then retrain them).
    std::error_code ec;
    fs::remove_all(TokenizerDir(config), ec);
  }
  CMDISTILL_RETURN_IF_ERROR(
      MakeTokenizerIfMissing(config, TokenizerDir(config), log));
  CMDISTILL_RETURN_IF_ERROR(
      BootstrapModel(config, "teacher", config.teacher().path(),
                     config.local().teacher_model(),
                     config.local().teacher_sft(), config.seed() + 1, log));
  return BootstrapModel(config, "student (warm start)", config.student().path(),
                        config.local().student_model(),
                        config.local().student_sft(), config.seed() + 2, log);
}

absl::StatusOr<std::vector<tasks::Example>> EvalExamples(
    const v1::RunConfig& config) {
  CMDISTILL_ASSIGN_OR_RETURN(auto test, LoadSplit(config, /*test=*/true));
  if (config.eval().max_examples() > 0 &&
      test.size() > config.eval().max_examples())
    test.resize(config.eval().max_examples());
  return test;
}

absl::StatusOr<std::unique_ptr<model::LanguageModel>> LoadModel(
    const v1::ModelConfig& m, const std::string& path) {
  return model::LanguageModel::Load(path, m.device(),
                                    services::DTypeName(m.dtype()));
}

absl::StatusOr<eval::EvalReport> EvaluateOne(
    const std::string& name, model::LanguageModel* student,
    model::LanguageModel* teacher, const tokenizer::Tokenizer& tok,
    const std::vector<tasks::Example>& examples, const v1::RunConfig& config,
    std::ostream& progress) {
  local::ProgressBar bar(progress, "eval " + name,
                         static_cast<int64_t>(examples.size()),
                         local::ProgressBar::IsTerminal(2));
  eval::EvalRunOptions ro;
  ro.progress = [&](int64_t done, int64_t) { bar.Update(done); };
  auto r = eval::Evaluate(name, student, teacher, tok, examples, config, ro);
  bar.Finish();
  return r;
}

// As above, for the model in `student_dir` (loaded with student.device/dtype).
absl::StatusOr<eval::EvalReport> EvaluateOne(
    const std::string& name, const std::string& student_dir,
    model::LanguageModel* teacher, const tokenizer::Tokenizer& tok,
    const std::vector<tasks::Example>& examples, const v1::RunConfig& config,
    std::ostream& progress) {
  CMDISTILL_ASSIGN_OR_RETURN(auto student,
                             LoadModel(config.student(), student_dir));
  return EvaluateOne(name, student.get(), teacher, tok, examples, config,
                     progress);
}

// The run file's evaluation by sampling, as training samples (nullopt when
// eval.sampled_samples_per_prompt is 0).
std::optional<v1::RunConfig> SampledEvalConfig(const v1::RunConfig& c) {
  if (c.eval().sampled_samples_per_prompt() == 0) return std::nullopt;
  v1::RunConfig s = c;
  s.mutable_eval()->set_temperature(c.eval().sampled_temperature());
  s.mutable_eval()->set_samples_per_prompt(
      c.eval().sampled_samples_per_prompt());
  return s;
}

// "student after" -> "student after sampled" (the table's footer says how).
std::string SampledName(const std::string& name) { return name + " sampled"; }

// Greedy (the run file's eval section) and, when configured, sampled
// evaluation of one model: appends one or two reports to `out`.
absl::Status EvaluateBoth(const std::string& name,
                          model::LanguageModel* student,
                          model::LanguageModel* teacher,
                          const tokenizer::Tokenizer& tok,
                          const std::vector<tasks::Example>& examples,
                          const v1::RunConfig& config, std::ostream& progress,
                          std::vector<eval::EvalReport>* out) {
  CMDISTILL_ASSIGN_OR_RETURN(
      auto greedy,
      EvaluateOne(name, student, teacher, tok, examples, config, progress));
  out->push_back(std::move(greedy));
  if (auto sc = SampledEvalConfig(config)) {
    CMDISTILL_ASSIGN_OR_RETURN(
        auto sampled, EvaluateOne(SampledName(name), student, teacher, tok,
                                  examples, *sc, progress));
    out->push_back(std::move(sampled));
  }
  return absl::OkStatus();
}

absl::Status EvaluateBoth(const std::string& name,
                          const std::string& student_dir,
                          model::LanguageModel* teacher,
                          const tokenizer::Tokenizer& tok,
                          const std::vector<tasks::Example>& examples,
                          const v1::RunConfig& config, std::ostream& progress,
                          std::vector<eval::EvalReport>* out) {
  CMDISTILL_ASSIGN_OR_RETURN(auto student,
                             LoadModel(config.student(), student_dir));
  return EvaluateBoth(name, student.get(), teacher, tok, examples, config,
                      progress, out);
}

absl::StatusOr<eval::EvalReport> EvaluateFolder(const v1::RunConfig& config,
                                                const std::string& name,
                                                const std::string& student_dir,
                                                const std::string& teacher_dir,
                                                std::ostream& progress) {
  CMDISTILL_ASSIGN_OR_RETURN(auto tok, tokenizer::Tokenizer::Load(student_dir));
  CMDISTILL_ASSIGN_OR_RETURN(auto examples, EvalExamples(config));
  std::unique_ptr<model::LanguageModel> teacher;
  if (!teacher_dir.empty()) {
    CMDISTILL_ASSIGN_OR_RETURN(auto ttok,
                               tokenizer::Tokenizer::Load(teacher_dir));
    CMDISTILL_RETURN_IF_ERROR(tokenizer::CheckSameTokenizer(
        tok->fingerprint(), ttok->fingerprint(), "the teacher"));
    CMDISTILL_ASSIGN_OR_RETURN(auto t,
                               LoadModel(config.teacher(), teacher_dir));
    teacher = std::move(t);
  }
  return EvaluateOne(name, student_dir, teacher.get(), *tok, examples, config,
                     progress);
}

// SHA-256 over a model folder's config.json and weight files, in name order:
// which teacher a student was verified against.
absl::StatusOr<std::string> ModelFingerprint(const std::string& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n == "config.json" || absl::EndsWith(n, ".safetensors"))
      files.push_back(e.path());
  }
  if (ec || files.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no config.json or *.safetensors in ", dir));
  }
  std::sort(files.begin(), files.end());
  Sha256 h;
  std::vector<char> buf(1 << 20);
  for (const fs::path& f : files) {
    std::ifstream in(f, std::ios::binary);
    h.Update(f.filename().string());
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      h.Update(std::string_view(buf.data(), static_cast<size_t>(in.gcount())));
    }
  }
  return h.Hex();
}

// A Hugging Face model card (README.md with YAML front matter) and
// cmdistill_eval.json in the trained student's folder: the budget it was
// trained and verified under, the held-out results with their intervals, and
// the teacher it was measured against — readable without the teacher.
absl::Status WriteModelCard(const v1::RunConfig& config,
                            const std::string& final_dir,
                            const std::vector<eval::EvalReport>& after,
                            const std::vector<eval::EvalReport>& before,
                            int64_t steps, int64_t problems,
                            const std::string& selection) {
  CMDISTILL_ASSIGN_OR_RETURN(auto fp,
                             ModelFingerprint(config.teacher().path()));
  const std::string norm = config::EnumShortName(
      *v1::CostNormalization_descriptor()->FindValueByNumber(
          config.constraint().cost_normalization()));
  const std::string method = config::MethodLabel(config);
  json j = {
      {"method", method},
      {"budget", config.constraint().budget()},
      {"cost_normalization", norm},
      {"max_new_tokens", config.generation().max_new_tokens()},
      {"penalty", config.constraint().penalty()},
      {"teacher", {{"path", config.teacher().path()}, {"sha256", fp}}},
      {"base_model", config.student().path()},
      {"data",
       {{"train", config.data().train_path()},
        {"test", config.data().test_path()},
        {"problems_evaluated", problems}}},
      {"learner_steps", steps},
      {"selection", selection.empty() ? "the learner's last step" : selection},
      {"results", json::array()},
      {"before_training", json::array()}};
  for (const auto& r : after)
    j["results"].push_back(eval::ReportToJson(r, false));
  for (const auto& r : before)
    j["before_training"].push_back(eval::ReportToJson(r, false));
  {
    std::ofstream f(final_dir + "/cmdistill_eval.json");
    f << j.dump(2) << "\n";
    if (!f.good())
      return absl::InternalError("cannot write cmdistill_eval.json");
  }
  std::string md = "---\n";
  absl::StrAppend(
      &md, "library_name: transformers\n",
      "base_model: ", YamlQuote(config.student().path()), "\n",
      "tags:\n- cmdistill\n- distillation\n- constrained-rl\n- ", method, "\n",
      "datasets:\n- ", YamlQuote(config.data().train_path()), "\n",
      "cmdistill:\n", "  method: ", method, "\n",
      "  budget: ", config.constraint().budget(), "\n",
      "  cost_normalization: ", norm, "\n",
      "  max_new_tokens: ", config.generation().max_new_tokens(), "\n",
      "  teacher: ", YamlQuote(config.teacher().path()), "\n",
      "  teacher_sha256: ", fp, "\n", "  learner_steps: ", steps, "\n",
      "  selected: ",
      YamlQuote(selection.empty() ? std::string("the learner's last step")
                                  : selection.substr(0, selection.find('\n'))),
      "\n", "  held_out:\n");
  for (const auto& r : after) {
    const auto& m = r.metrics;
    auto est = [](const rl::Estimate& e) {
      return absl::StrFormat("{value: %.4f, low: %.4f, high: %.4f, n: %d}",
                             e.value, e.low, e.high, e.n);
    };
    absl::StrAppend(&md, "  - evaluation: ", YamlQuote(r.name), "\n",
                    "    correctness: ", est(m.correctness), "\n");
    if (r.have_teacher) {
      absl::StrAppend(
          &md, "    constraint_satisfaction: ", est(m.satisfaction), "\n",
          "    mean_token_kl: ",
          absl::StrFormat("{value: %.4f, low: %.4f, high: %.4f}",
                          m.mean_kl.value, m.mean_kl.low, m.mean_kl.high),
          "\n");
    }
    if (m.reasoning.n > 0) {  // the embedded task: answers classified
      absl::StrAppend(&md, "    reasoning_success: ", est(m.reasoning), "\n",
                      "    foreign_style_share: ", est(m.foreign_style), "\n");
    }
  }
  absl::StrAppend(
      &md, "---\n\n# ", config.run_name(), " (student, ", method, ")\n\n",
      "Trained by cmdistill with `method: ", method,
      "`: task reward under a per-trajectory KL budget to the teacher, d = ",
      config.constraint().budget(), " (", norm, ", max_new_tokens ",
      config.generation().max_new_tokens(),
      "). It runs without the teacher; "
      "the teacher below is only what its budget was measured against.\n\n",
      eval::MarkdownTable(after, config), "\n", problems,
      " held-out problems (", config.data().test_path(), "). ",
      selection.empty() ? std::string("This is the learner's last step.")
                        : absl::StrCat("Which student this is: ", selection),
      "\n\nThe warm start it was trained from, on the same problems:\n\n",
      eval::MarkdownTable(before, config), "\nTeacher: `",
      config.teacher().path(), "` (sha256 of config.json and weights `", fp,
      "`). Every figure: cmdistill_eval.json.\n");
  std::ofstream f(final_dir + "/README.md");
  f << md;
  if (!f.good()) return absl::InternalError("cannot write the model card");
  return absl::OkStatus();
}

std::string SelfPath() {
  std::error_code ec;
  std::string p = fs::read_symlink("/proc/self/exe", ec).string();
  if (ec) return "cmdistill";
  // A binary rebuilt while it runs: the path now names the new one.
  const std::string deleted = " (deleted)";
  if (p.size() > deleted.size() &&
      p.compare(p.size() - deleted.size(), deleted.size(), deleted) == 0)
    p.resize(p.size() - deleted.size());
  return p;
}

// Resolves paths, bootstraps, loads the tokenizer, teacher and eval split.
absl::StatusOr<Prepared> Prepare(v1::RunConfig config, std::ostream& log) {
  ResolveLocalPaths(&config);
  CMDISTILL_RETURN_IF_ERROR(Bootstrap(config, log));
  Prepared p;
  CMDISTILL_ASSIGN_OR_RETURN(
      auto tok, tokenizer::Tokenizer::Load(config.student().path()));
  CMDISTILL_ASSIGN_OR_RETURN(
      auto ttok, tokenizer::Tokenizer::Load(config.teacher().path()));
  CMDISTILL_RETURN_IF_ERROR(tokenizer::CheckSameTokenizer(
      tok->fingerprint(), ttok->fingerprint(), "the teacher"));
  CMDISTILL_ASSIGN_OR_RETURN(
      auto teacher, LoadModel(config.teacher(), config.teacher().path()));
  CMDISTILL_ASSIGN_OR_RETURN(auto ex, EvalExamples(config));
  p.tok = std::move(tok);
  p.teacher = std::move(teacher);
  p.examples = std::move(ex);
  p.config = std::move(config);
  return p;
}

void ClearPreviousRun(const std::string& out) {
  std::error_code ec;
  for (const char* d : {"checkpoints", "final", "last", "logs", "metrics"}) {
    fs::remove_all(fs::path(out) / d, ec);
  }
}

}  // namespace cmdistill::workflows
