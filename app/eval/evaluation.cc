#include "app/eval/evaluation.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/metrics/metrics.h"
#include "common/rl/constraint.h"
#include "common/status/status_macros.h"
#include "common/tasks/reasoning.h"
#include "nlohmann/json.hpp"
#include "services/common/task_options.h"
#include "services/common/trajectory.h"
#include "services/reward/evaluator.h"
#include "services/reward/options.h"

namespace cmdistill::eval {

using json = nlohmann::json;

json EstimateToJson(const rl::Estimate& e) {
  auto finite = [](double x) { return std::isfinite(x) ? json(x) : json(); };
  return {{"value", e.value},
          {"low", finite(e.low)},
          {"high", finite(e.high)},
          {"n", e.n}};
}

json MetricsToJson(const rl::SuccessMetrics& m) {
  json j = {{"correctness", EstimateToJson(m.correctness)},
            {"constraint_satisfaction", EstimateToJson(m.satisfaction)},
            {"mean_token_kl", EstimateToJson(m.mean_kl)},
            {"length", EstimateToJson(m.length)}};
  if (m.reasoning.n > 0) {
    j["reasoning_success"] = EstimateToJson(m.reasoning);
    j["teacher_style_share"] = EstimateToJson(m.teacher_style);
    j["foreign_style_share"] = EstimateToJson(m.foreign_style);
  }
  return j;
}

absl::StatusOr<EvalReport> Evaluate(const std::string& name,
                                    model::LanguageModel* student,
                                    model::LanguageModel* teacher,
                                    const tokenizer::Tokenizer& tokenizer,
                                    const std::vector<tasks::Example>& examples,
                                    const v1::RunConfig& config,
                                    const EvalRunOptions& run) {
  if (student == nullptr) return absl::InvalidArgumentError("no student");
  if (examples.empty())
    return absl::InvalidArgumentError("no examples to evaluate");
  const absl::Time start = absl::Now();
  EvalReport report;
  report.name = name;
  report.have_teacher = teacher != nullptr;
  const auto& ec = config.eval();
  const int64_t V = student->config().vocab_size;
  if (teacher != nullptr && teacher->config().vocab_size != V) {
    return absl::InvalidArgumentError(
        absl::StrCat("student and teacher vocabularies differ (", V, " vs ",
                     teacher->config().vocab_size, ")"));
  }
  model::SamplingOptions so;
  so.temperature = ec.temperature();
  so.max_new_tokens = config.generation().max_new_tokens();
  so.seed = config.seed() * 31 + 7;
  CMDISTILL_ASSIGN_OR_RETURN(
      auto stops, services::StopTokenIds(
                      config, student->config().eos_token_ids, tokenizer));
  so.stop_token_ids = stops;
  const int64_t k = config.generation().support_k();
  so.support_k = teacher == nullptr ? 0 : (k == 0 || k >= V ? V : k);

  // Constraint bookkeeping as the reward service does it (a method that needs
  // the teacher, so that costs are computed).
  reward::EvaluatorOptions eo = reward::EvaluatorOptionsFrom(config);
  eo.reward.method = teacher != nullptr ? rl::Method::kCmdp : rl::Method::kGrpo;
  eo.vocab_size = V;
  reward::Evaluator evaluator(&tokenizer, eo);

  const int samples =
      static_cast<int>(std::max<uint32_t>(1, ec.samples_per_prompt()));
  const int64_t batch = std::max<int64_t>(1, ec.batch_sequences() / samples);
  const int64_t n = static_cast<int64_t>(examples.size());
  // The synthetic task's questions: reasoning checked exactly, intervals
  // clustered by arithmetic cell (nullopt for anything else, e.g. GSM8K).
  std::vector<std::optional<tasks::ProblemFacts>> facts;
  for (const tasks::Example& e : examples)
    facts.push_back(tasks::ParseProblem(e.question));
  std::vector<rl::EvalRecord> records;
  for (int64_t b0 = 0; b0 < n; b0 += batch) {
    const int64_t b1 = std::min(n, b0 + batch);
    std::vector<std::vector<int32_t>> prompts;
    std::vector<int64_t> which;
    for (int64_t i = b0; i < b1; ++i) {
      auto ids =
          services::EncodePrompt(config, tokenizer, examples[i].question);
      CMDISTILL_RETURN_IF_ERROR_ANNOTATED(ids.status(), "example ", i);
      for (int s = 0; s < samples; ++s) {
        prompts.push_back(*ids);
        which.push_back(i);
      }
    }
    so.seed += 1;
    CMDISTILL_ASSIGN_OR_RETURN(auto gen, student->Generate(prompts, so));
    std::vector<model::SequenceScore> scores;
    if (teacher != nullptr) {
      std::vector<model::ScoreInput> in(prompts.size());
      for (size_t j = 0; j < prompts.size(); ++j) {
        in[j].prompt_ids = prompts[j];
        in[j].completion_ids = gen[j].tokens;
        in[j].support_k = gen[j].support_k;
        in[j].support_ids = gen[j].support_ids;
      }
      model::ScoreOptions sco;
      CMDISTILL_ASSIGN_OR_RETURN(auto sc, teacher->Score(in, sco));
      scores = std::move(sc);
    }
    for (size_t j = 0; j < prompts.size(); ++j) {
      const model::GenerationResult& g = gen[j];
      v1::Trajectory t;
      services::FillSample(prompts[j], g, /*with_support=*/teacher != nullptr,
                           &t);
      t.set_gold_answer(examples[which[j]].gold);
      if (teacher != nullptr) {
        const auto& sc = scores[j];
        t.mutable_teacher_support_logprobs()->Add(sc.support_logprobs.begin(),
                                                  sc.support_logprobs.end());
        t.mutable_teacher_tail_logprobs()->Add(sc.tail_logprobs.begin(),
                                               sc.tail_logprobs.end());
        t.mutable_teacher_sampled_logprobs()->Add(sc.sampled_logprobs.begin(),
                                                  sc.sampled_logprobs.end());
      }
      CMDISTILL_ASSIGN_OR_RETURN(auto ev, evaluator.Evaluate(t));
      EvalItem item;
      item.example = which[j];
      item.sample = static_cast<int>(j % samples);
      auto text = tokenizer.Decode(g.tokens, /*skip_special_tokens=*/true);
      item.completion = text.ok() ? *text : "";
      item.extracted_answer = ev.extracted_answer();
      item.gold = examples[which[j]].gold;
      item.record.correct = ev.task_reward() > 0.5;
      item.record.problem = which[j];
      item.record.length = static_cast<int64_t>(g.tokens.size());
      if (const auto& f = facts[which[j]]) {
        const tasks::ReasoningCheck rc =
            tasks::CheckReasoning(*f, item.completion);
        item.style = tasks::AnswerStyleName(rc.style);
        item.valid = rc.valid;
        item.why = rc.why;
        item.record.checkable = true;
        item.record.cluster = static_cast<int64_t>(f->cell());
        item.record.style = static_cast<int>(rc.style);
        item.record.reasoning_success =
            item.record.correct && rc.valid &&
            rc.style == tasks::AnswerStyle::kTeacher;
      }
      if (teacher != nullptr) {
        item.record.satisfied = ev.constraint_satisfied();
        rl::TokenLogProbs lp;
        lp.num_tokens = static_cast<int>(g.tokens.size());
        lp.support_k = static_cast<int>(g.support_k);
        lp.student_support = g.support_logprobs;
        lp.teacher_support = scores[j].support_logprobs;
        lp.teacher_tail = scores[j].tail_logprobs;
        lp.student_sampled = g.logprobs;
        lp.teacher_sampled = scores[j].sampled_logprobs;
        CMDISTILL_ASSIGN_OR_RETURN(auto costs, rl::PerTokenCosts(lp, eo.cost));
        double sum = 0;
        for (double c : costs) sum += c;
        item.record.mean_token_kl =
            costs.empty() ? 0 : sum / static_cast<double>(costs.size());
      }
      records.push_back(item.record);
      report.items.push_back(std::move(item));
    }
    if (run.progress) run.progress(b1, n);
  }
  report.metrics = rl::Summarize(records, report.have_teacher);
  report.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return report;
}

std::string FormatEstimate(const rl::Estimate& e, int precision) {
  if (e.n == 0) return "—";
  if (!std::isfinite(e.low) || !std::isfinite(e.high)) {
    return absl::StrFormat("%.*f", precision, e.value);
  }
  return absl::StrFormat("%.*f [%.*f, %.*f]", precision, e.value, precision,
                         e.low, precision, e.high);
}

json ReportToJson(const EvalReport& r, bool with_items) {
  json j = {{"name", r.name},
            {"have_teacher", r.have_teacher},
            {"seconds", r.seconds},
            {"metrics", MetricsToJson(r.metrics)}};
  if (with_items) {
    json items = json::array();
    for (const EvalItem& it : r.items) {
      json x = {{"example", it.example},
                {"sample", it.sample},
                {"gold", it.gold},
                {"extracted_answer", it.extracted_answer},
                {"correct", it.record.correct},
                {"length", it.record.length},
                {"completion", it.completion}};
      if (it.record.checkable) {
        x["style"] = it.style;
        x["valid"] = it.valid;
        if (!it.valid) x["why"] = it.why;
        x["reasoning_success"] = it.record.reasoning_success;
      }
      if (r.have_teacher) {
        x["satisfied"] = it.record.satisfied;
        x["mean_token_kl"] = it.record.mean_token_kl;
      }
      items.push_back(std::move(x));
    }
    j["items"] = std::move(items);
  }
  return j;
}

std::string ReportJson(const EvalReport& r, bool with_items) {
  return ReportToJson(r, with_items)
             .dump(2, ' ', false, json::error_handler_t::replace) +
         "\n";
}

std::string MarkdownHeader(const std::string& first_column,
                           const v1::RunConfig& config) {
  return absl::StrCat(
      "| ", first_column,
      " | correctness (FAC) | constraint satisfaction (CSR, d = ",
      absl::StrFormat("%g", config.constraint().budget()),
      ") | mean per-token KL | length (tokens) | reasoning success | "
      "foreign style |\n|---|---|---|---|---|---|---|\n");
}

std::string MarkdownRow(const std::string& name, const rl::SuccessMetrics& m) {
  return absl::StrCat(
      "| ", name, " | ", FormatEstimate(m.correctness), " | ",
      FormatEstimate(m.satisfaction), " | ", FormatEstimate(m.mean_kl), " | ",
      FormatEstimate(m.length, 1), " | ", FormatEstimate(m.reasoning), " | ",
      FormatEstimate(m.foreign_style), " |\n");
}

std::string ReportsToPrometheus(const std::vector<EvalReport>& reports) {
  auto registry = metrics::NewRegistry();
  auto& fac = prometheus::BuildGauge()
                  .Name("cmdistill_eval_correctness_ratio")
                  .Help("Held-out final-answer correctness (FAC), 95% interval")
                  .Register(*registry);
  auto& csr = prometheus::BuildGauge()
                  .Name("cmdistill_eval_constraint_satisfaction_ratio")
                  .Help(
                      "Held-out share of completions within the budget "
                      "(CSR), 95% interval")
                  .Register(*registry);
  auto& kl = prometheus::BuildGauge()
                 .Name("cmdistill_eval_token_kl")
                 .Help("Held-out mean per-token KL to the teacher (nats)")
                 .Register(*registry);
  auto& len = prometheus::BuildGauge()
                  .Name("cmdistill_eval_length_tokens")
                  .Help("Held-out mean completion length (tokens)")
                  .Register(*registry);
  auto& reasoning =
      prometheus::BuildGauge()
          .Name("cmdistill_eval_reasoning_success_ratio")
          .Help(
              "Held-out share of answers correct with a valid scratchpad in "
              "the teacher's style (synthetic task only), 95% interval")
          .Register(*registry);
  auto& style = prometheus::BuildGauge()
                    .Name("cmdistill_eval_style_ratio")
                    .Help(
                        "Held-out share of answers in each style (synthetic "
                        "task only)")
                    .Register(*registry);
  auto& problems = prometheus::BuildGauge()
                       .Name("cmdistill_eval_completions")
                       .Help("Completions graded in the held-out evaluation")
                       .Register(*registry);
  for (const EvalReport& r : reports) {
    std::string model = r.name;
    std::replace(model.begin(), model.end(), ' ', '_');
    auto put = [&](prometheus::Family<prometheus::Gauge>& f,
                   const rl::Estimate& e) {
      f.Add({{"model", model}, {"estimate", "value"}}).Set(e.value);
      f.Add({{"model", model}, {"estimate", "low"}}).Set(e.low);
      f.Add({{"model", model}, {"estimate", "high"}}).Set(e.high);
    };
    put(fac, r.metrics.correctness);
    put(len, r.metrics.length);
    if (r.have_teacher) {
      put(csr, r.metrics.satisfaction);
      put(kl, r.metrics.mean_kl);
    }
    if (r.metrics.reasoning.n > 0) {
      put(reasoning, r.metrics.reasoning);
      style.Add({{"model", model}, {"style", "teacher"}})
          .Set(r.metrics.teacher_style.value);
      style.Add({{"model", model}, {"style", "foreign"}})
          .Set(r.metrics.foreign_style.value);
    }
    problems.Add({{"model", model}})
        .Set(static_cast<double>(r.metrics.correctness.n));
  }
  return metrics::Serialize(*registry);
}

std::string MarkdownTable(const std::vector<EvalReport>& reports,
                          const v1::RunConfig& config) {
  std::string out = MarkdownHeader("model", config);
  for (const EvalReport& r : reports) {
    absl::StrAppend(&out, MarkdownRow(r.name, r.metrics));
  }
  return out;
}

}  // namespace cmdistill::eval
