#include "app/workflows/workflow.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "app/eval/evaluation.h"
#include "app/local/progress.h"
#include "common/config/config.h"
#include "common/status/status_macros.h"
#include "common/tasks/datagen.h"
#include "common/util/files.h"
#include "nlohmann/json.hpp"
#include "services/common/task_options.h"
#include "services/learner/sft_trainer.h"

namespace cmdistill::workflows {
namespace fs = std::filesystem;

absl::StatusOr<std::vector<tasks::Example>> LoadSplit(
    const v1::RunConfig& config, bool test) {
  const std::string& path =
      test ? config.data().test_path() : config.data().train_path();
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        test ? "data.test_path" : "data.train_path", " is not set"));
  }
  CMDISTILL_ASSIGN_OR_RETURN(
      auto ds,
      tasks::LoadJsonl(path, services::DatasetOptionsFrom(config, test)));
  if (ds.examples.empty())
    return absl::InvalidArgumentError(path + ": no examples");
  return std::move(ds.examples);
}

absl::StatusOr<std::vector<tasks::Example>> LoadValidation(
    const v1::RunConfig& config) {
  const std::string& path = config.data().validation_path();
  if (path.empty() || !fs::exists(path)) {
    return absl::NotFoundError(
        path.empty() ? std::string("data.validation_path is not set")
                     : path + " does not exist");
  }
  CMDISTILL_ASSIGN_OR_RETURN(
      auto ds,
      tasks::LoadJsonl(path, services::DatasetOptionsFrom(config, true)));
  if (ds.examples.empty())
    return absl::InvalidArgumentError(path + ": no examples");
  return std::move(ds.examples);
}

absl::StatusOr<bool> MakeTaskIfMissing(const v1::RunConfig& config,
                                       std::ostream& log) {
  const auto& d = config.data();
  const auto& g = config.local().datagen();
  // What made the data: a change (another seed, restate, more problems) makes
  // it again instead of training on stale files. Whether the tokenizer learns
  // from the foreign style too is part of it: the tokenizer goes with the data
  // (Bootstrap), so switching the student's foreign style on or off relearns
  // it instead of keeping one learned without (or with) that text.
  const std::string stamp_path =
      (fs::path(d.train_path()).parent_path() / "cmdistill_datagen.yaml")
          .string();
  const std::string stamp = absl::StrCat(
      "# What made this data (cmdistill local).\nseed: ", config.seed(), "\n",
      "tokenizer_foreign_style: ",
      config.local().student_sft().foreign_style_fraction() > 0 ? "true"
                                                                : "false",
      "\n", config::ToYaml(g));
  const bool want_validation =
      g.validation() > 0 && !d.validation_path().empty();
  if (fs::exists(d.train_path()) && fs::exists(d.test_path()) &&
      (!want_validation || fs::exists(d.validation_path()))) {
    auto old = util::ReadFile(stamp_path);
    // Data without a stamp was made by hand or by an older cmdistill: kept.
    if (!old.ok() || *old == stamp) return false;
  }
  tasks::DatagenOptions o;
  o.seed = config.seed();
  o.min_steps = static_cast<int>(g.min_steps());
  o.max_steps = static_cast<int>(g.max_steps());
  o.max_value = static_cast<int>(g.max_value());
  o.distractor_probability = g.distractors();
  o.restate = g.restate();
  o.check = g.check();
  if (g.ops_size() > 0) {
    o.add = o.subtract = o.multiply = o.divide = false;
    for (const std::string& op : g.ops()) {
      if (op == "add") {
        o.add = true;
      } else if (op == "sub") {
        o.subtract = true;
      } else if (op == "mul") {
        o.multiply = true;
      } else if (op == "div") {
        o.divide = true;
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "local.datagen.ops: '", op, "' is not one of add, sub, mul, div"));
      }
    }
  }
  if (auto s = tasks::ValidateDatagenOptions(o); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("local.datagen: ", s.message()));
  }
  CMDISTILL_ASSIGN_OR_RETURN(
      auto task, tasks::GenerateTask(o, g.train(), g.test(),
                                     want_validation ? g.validation() : 0));
  if (want_validation) {
    CMDISTILL_RETURN_IF_ERROR(util::WriteFileAtomically(
        d.validation_path(), tasks::ToGsm8kJsonl(task.validation)));
  }
  CMDISTILL_RETURN_IF_ERROR(util::WriteFileAtomically(
      d.train_path(), tasks::ToGsm8kJsonl(task.train)));
  CMDISTILL_RETURN_IF_ERROR(
      util::WriteFileAtomically(d.test_path(), tasks::ToGsm8kJsonl(task.test)));
  CMDISTILL_RETURN_IF_ERROR(util::WriteFileAtomically(stamp_path, stamp));
  log << "data: wrote " << task.train.size() << " training, "
      << task.validation.size() << " validation and " << task.test.size()
      << " held-out problems to " << d.train_path() << ", "
      << (want_validation ? d.validation_path() + " and " : "") << d.test_path()
      << "\n";
  return true;
}

absl::Status MakeTokenizerIfMissing(const v1::RunConfig& config,
                                    const std::string& dir, std::ostream& log) {
  if (fs::exists(fs::path(dir) / "tokenizer.json")) return absl::OkStatus();
  CMDISTILL_ASSIGN_OR_RETURN(auto train, LoadSplit(config, /*test=*/false));
  std::vector<std::string> texts;
  for (const auto& e : train) {
    texts.push_back(services::PromptText(config, e.question));
    texts.push_back(" " + e.solution);
    if (config.local().student_sft().foreign_style_fraction() > 0)
      texts.push_back(" " + tasks::ForeignStyleSolution(e.solution));
  }
  CMDISTILL_ASSIGN_OR_RETURN(
      auto merges,
      tokenizer::TrainByteLevelMerges(
          texts, static_cast<int>(config.local().tokenizer_merges())));
  const std::string json =
      tokenizer::MakeByteLevelTokenizerJson(merges, {"<|endoftext|>"});
  CMDISTILL_RETURN_IF_ERROR(util::WriteFileAtomically(
      (fs::path(dir) / "tokenizer.json").string(), json));
  const nlohmann::json cfg = {{"eos_token", "<|endoftext|>"},
                              {"pad_token", "<|endoftext|>"},
                              {"clean_up_tokenization_spaces", false},
                              {"tokenizer_class", "PreTrainedTokenizerFast"}};
  CMDISTILL_RETURN_IF_ERROR(util::WriteFileAtomically(
      (fs::path(dir) / "tokenizer_config.json").string(), cfg.dump(1) + "\n"));
  log << "tokenizer: learned " << merges.size() << " byte-level BPE merges ("
      << 256 + merges.size() + 1 << " tokens) -> " << dir << "\n";
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<model::LanguageModel>> InitSmallModel(
    const v1::SmallModelConfig& shape, const tokenizer::Tokenizer& tokenizer,
    uint64_t seed) {
  checkpoint::ModelConfig c;
  c.model_type = "qwen2";
  c.vocab_size = (tokenizer.vocab_size() + 63) / 64 * 64;
  c.hidden_size = shape.hidden_size();
  c.intermediate_size = shape.intermediate_size();
  c.num_hidden_layers = shape.num_layers();
  c.num_attention_heads = shape.num_heads();
  c.num_key_value_heads = shape.num_kv_heads();
  if (c.hidden_size % c.num_attention_heads != 0 ||
      c.num_attention_heads % c.num_key_value_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model shape: hidden_size ", c.hidden_size,
        " must divide by num_heads ", c.num_attention_heads,
        ", and num_heads by num_kv_heads ", c.num_key_value_heads));
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.max_position_embeddings = shape.max_positions();
  c.rope_theta = 10000;
  c.tie_word_embeddings = true;
  c.attention_bias = true;
  if (tokenizer.eos_id() >= 0) c.eos_token_ids = {tokenizer.eos_id()};
  return model::LanguageModel::InitRandom(c, seed, "cpu", "float32");
}

absl::StatusOr<SftSummary> RunSft(model::LanguageModel* model,
                                  const tokenizer::Tokenizer& tokenizer,
                                  const v1::RunConfig& config,
                                  const v1::SftConfig& sft,
                                  const std::string& label,
                                  std::ostream& progress) {
  const absl::Time start = absl::Now();
  CMDISTILL_ASSIGN_OR_RETURN(auto train, LoadSplit(config, false));
  CMDISTILL_ASSIGN_OR_RETURN(auto test, LoadSplit(config, true));
  if (sft.train_examples() > 0 && train.size() > sft.train_examples())
    train.resize(sft.train_examples());
  if (test.size() > sft.eval_examples()) test.resize(sft.eval_examples());
  const int32_t eos = tokenizer.eos_id();
  if (eos < 0) {
    return absl::FailedPreconditionError(
        "the tokenizer has no eos token (tokenizer_config.json eos_token); "
        "SFT needs one to teach the model to stop");
  }
  // Each example in the teacher's style and, where foreign_style_fraction
  // asks, in the foreign one; the first `steps` draw a mix, the
  // teacher_style_steps after them the teacher's style only.
  std::vector<learner::SftExample> data, foreign;
  const double foreign_share = sft.foreign_style_fraction();
  for (const auto& e : train) {
    CMDISTILL_ASSIGN_OR_RETURN(
        auto p, services::EncodePrompt(config, tokenizer, e.question));
    for (bool f : {false, true}) {
      if (f && foreign_share <= 0) break;
      const std::string text =
          f ? tasks::ForeignStyleSolution(e.solution) : e.solution;
      if (text.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "foreign_style_fraction > 0 needs calculator annotations "
            "<<a+b=c>> and \"#### N\" in every solution; this one has none: ",
            e.solution.substr(0, 80)));
      }
      CMDISTILL_ASSIGN_OR_RETURN(auto c, tokenizer.Encode(" " + text));
      learner::SftExample x;
      x.prompt_ids = p;
      x.completion_ids = std::move(c);
      x.completion_ids.push_back(eos);
      (f ? foreign : data).push_back(std::move(x));
    }
  }
  learner::AdamWOptions ao;
  ao.lr = sft.lr();
  ao.weight_decay = sft.weight_decay();
  ao.warmup_steps = sft.warmup_steps();
  const uint32_t total_steps = sft.steps() + sft.teacher_style_steps();
  ao.total_steps = total_steps;
  ao.schedule = learner::ScheduleFrom(sft.schedule());
  ao.grad_clip = 1.0;
  CMDISTILL_ASSIGN_OR_RETURN(auto trainer,
                             learner::SftTrainer::Create(model, ao));
  if (const std::string w = trainer->PrecisionWarning(); !w.empty())
    progress << label << ": " << w << "\n";
  // Held-out correctness: greedy, on the first eval_examples test problems.
  v1::RunConfig eval_config = config;
  eval_config.mutable_eval()->set_temperature(0);
  eval_config.mutable_eval()->set_samples_per_prompt(1);
  SftSummary summary;
  auto heldout = [&]() -> absl::Status {
    CMDISTILL_ASSIGN_OR_RETURN(
        auto r,
        eval::Evaluate(label, model, nullptr, tokenizer, test, eval_config));
    summary.heldout_correctness = r.metrics.correctness;
    return absl::OkStatus();
  };
  tasks::SplitMix64 rng(config.seed() * 977 + 13);
  std::vector<size_t> order(data.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  size_t cursor = order.size();
  // A separate stream for the style draws: the order of examples is the same
  // with and without a foreign style.
  tasks::SplitMix64 style_rng(config.seed() * 1009 + 7);
  local::ProgressBar bar(progress, label, total_steps,
                         local::ProgressBar::IsTerminal(2));
  double loss_avg = -1;
  std::string acc = "?";
  for (uint32_t step = 1; step <= total_steps; ++step) {
    const bool mixed = step <= sft.steps() && foreign_share > 0;
    std::vector<learner::SftExample> batch;
    while (batch.size() < sft.batch_size()) {
      if (cursor >= order.size()) {
        for (size_t i = order.size(); i > 1; --i) {
          std::swap(order[i - 1], order[rng.Next() % i]);
        }
        cursor = 0;
      }
      const size_t i = order[cursor++];
      const bool f =
          mixed && static_cast<double>(style_rng.Next() >> 11) * 0x1.0p-53 <
                       foreign_share;
      batch.push_back(f ? foreign[i] : data[i]);
    }
    CMDISTILL_ASSIGN_OR_RETURN(auto st, trainer->Step(batch));
    loss_avg = loss_avg < 0 ? st.loss : 0.9 * loss_avg + 0.1 * st.loss;
    summary.final_loss = loss_avg;
    summary.steps = step;
    if ((sft.eval_every() > 0 && step % sft.eval_every() == 0) ||
        step == total_steps) {
      CMDISTILL_RETURN_IF_ERROR(heldout());
      acc = absl::StrFormat("%.2f", summary.heldout_correctness.value);
    }
    bar.Update(step,
               absl::StrFormat("loss %.3f held-out acc %s", loss_avg, acc));
  }
  bar.Finish(absl::StrFormat("loss %.3f held-out acc %s", loss_avg, acc));
  summary.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return summary;
}

absl::StatusOr<SftSummary> SftToFolder(const v1::RunConfig& config,
                                       const SftRequest& r,
                                       std::ostream& progress) {
  const v1::SftConfig& sft = r.knobs == "teacher"
                                 ? config.local().teacher_sft()
                                 : config.local().student_sft();
  const std::string tok_dir =
      r.model_dir.empty() ? r.tokenizer_dir : r.model_dir;
  CMDISTILL_ASSIGN_OR_RETURN(auto tok, tokenizer::Tokenizer::Load(tok_dir));
  CMDISTILL_ASSIGN_OR_RETURN(
      std::unique_ptr<model::LanguageModel> model,
      r.model_dir.empty() ? InitSmallModel(r.init_role == "teacher"
                                               ? config.local().teacher_model()
                                               : config.local().student_model(),
                                           *tok, config.seed())
                          : model::LanguageModel::Load(
                                r.model_dir, config.student().device(),
                                services::DTypeName(config.student().dtype())));
  CMDISTILL_ASSIGN_OR_RETURN(
      auto sum, RunSft(model.get(), *tok, config, sft, "sft", progress));
  checkpoint::WriteOptions wo;
  wo.copy_tokenizer_from = tok_dir;
  CMDISTILL_RETURN_IF_ERROR(model->Save(r.out, wo));
  return sum;
}

}  // namespace cmdistill::workflows
