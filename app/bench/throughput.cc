#include "app/bench/throughput.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status/status_macros.h"
#include "services/learner/sft_trainer.h"

namespace cmdistill::bench {
namespace {

// Times `work` (which returns a status) warmup + repeats times; units()
// after each timed run is what that run did -> units/s.
template <typename U, typename F>
absl::StatusOr<Rate> Time(const Repeats& r, U units, F work) {
  for (int i = 0; i < r.warmup; ++i) {
    CMDISTILL_RETURN_IF_ERROR(work());
  }
  std::vector<double> runs;
  for (int i = 0; i < std::max(1, r.repeats); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    CMDISTILL_RETURN_IF_ERROR(work());
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    runs.push_back(units() / std::max(secs, 1e-12));
  }
  return RateOf(std::move(runs));
}

absl::Status Positive(int64_t v, const char* what) {
  if (v > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(what, " must be > 0"));
}

}  // namespace

Rate RateOf(std::vector<double> runs) {
  std::vector<double> sorted = runs;
  std::sort(sorted.begin(), sorted.end());
  Rate out;
  out.min = sorted.front();
  out.max = sorted.back();
  out.median = sorted[sorted.size() / 2];
  out.runs = std::move(runs);
  return out;
}

absl::StatusOr<checkpoint::ModelConfig> Shape(const std::string& name) {
  checkpoint::ModelConfig c;
  c.model_type = "qwen2";
  c.attention_bias = true;
  c.tie_word_embeddings = true;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  c.max_position_embeddings = 2048;
  if (name == "small") {
    c.vocab_size = 2048;
    c.hidden_size = 256;
    c.intermediate_size = 688;
    c.num_hidden_layers = 2;
  } else if (name == "medium") {
    c.vocab_size = 8192;
    c.hidden_size = 512;
    c.intermediate_size = 1376;
    c.num_hidden_layers = 8;
    c.num_attention_heads = 8;
  } else if (name == "qwen05b") {
    c.vocab_size = 151936;
    c.hidden_size = 896;
    c.intermediate_size = 4864;
    c.num_hidden_layers = 24;
    c.num_attention_heads = 14;
    c.max_position_embeddings = 32768;
    c.rope_theta = 1e6;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown shape '", name, "' (small, medium or qwen05b)"));
  }
  return c;
}

absl::StatusOr<Rate> Decode(model::LanguageModel& m, int64_t batch,
                            int64_t prompt_len, int64_t new_tokens,
                            bool stop_at_eos, const Repeats& r) {
  for (auto [v, what] : {std::pair{batch, "batch"},
                         {prompt_len, "prompt length"},
                         {new_tokens, "new tokens"}}) {
    CMDISTILL_RETURN_IF_ERROR(Positive(v, what));
  }
  const int64_t V = m.config().vocab_size;
  std::vector<std::vector<int32_t>> prompts(batch);
  for (int64_t i = 0; i < batch; ++i)
    for (int64_t t = 0; t < prompt_len; ++t)
      prompts[i].push_back(static_cast<int32_t>((7 * i + 13 * t) % V));
  model::SamplingOptions o;
  o.max_new_tokens = new_tokens;
  if (stop_at_eos) {
    for (int64_t e : m.config().eos_token_ids)
      o.stop_token_ids.push_back(static_cast<int32_t>(e));
  }
  int64_t made = 0;
  auto run = [&]() -> absl::Status {
    CMDISTILL_ASSIGN_OR_RETURN(auto g, m.Generate(prompts, o));
    made = 0;
    for (const auto& x : g) made += static_cast<int64_t>(x.tokens.size());
    return absl::OkStatus();
  };
  // Fixed length: batch x new_tokens per run; at eos: what each run made.
  return Time(
      r, [&] { return static_cast<double>(made); }, run);
}

absl::StatusOr<Rate> Score(model::LanguageModel& m, int64_t batch,
                           int64_t seq_len, const Repeats& r) {
  CMDISTILL_RETURN_IF_ERROR(Positive(batch, "batch"));
  if (seq_len < 2) return absl::InvalidArgumentError("seq len must be >= 2");
  const int64_t V = m.config().vocab_size;
  std::vector<std::vector<int32_t>> seqs(batch);
  for (int64_t i = 0; i < batch; ++i)
    for (int64_t t = 0; t < seq_len; ++t)
      seqs[i].push_back(static_cast<int32_t>((11 * i + 5 * t) % V));
  const double tokens = static_cast<double>(batch * seq_len);
  return Time(
      r, [&] { return tokens; },
      [&]() -> absl::Status {
        return m.TokenLogprobs(seqs, batch * seq_len).status();
      });
}

double MatmulParameters(const model::LanguageModel& m) {
  const auto& c = m.config();
  const double embed = static_cast<double>(c.vocab_size * c.hidden_size);
  return static_cast<double>(m.num_parameters()) -
         (c.tie_word_embeddings ? 0.0 : embed);
}

absl::StatusOr<TrainRate> Train(model::LanguageModel& m, int64_t batch,
                                int64_t seq_len, const Repeats& r) {
  CMDISTILL_RETURN_IF_ERROR(Positive(batch, "batch"));
  CMDISTILL_RETURN_IF_ERROR(Positive(seq_len, "seq len"));
  const int64_t V = m.config().vocab_size;
  std::vector<learner::SftExample> data(batch);
  for (int64_t i = 0; i < batch; ++i) {
    data[i].prompt_ids = {static_cast<int32_t>(i % V)};
    for (int64_t t = 0; t < seq_len; ++t)
      data[i].completion_ids.push_back(
          static_cast<int32_t>((3 * i + 17 * t) % V));
  }
  learner::AdamWOptions ao;
  ao.lr = 1e-5;
  CMDISTILL_ASSIGN_OR_RETURN(auto trainer, learner::SftTrainer::Create(&m, ao));
  TrainRate out;
  const double tokens = static_cast<double>(batch * seq_len);
  CMDISTILL_ASSIGN_OR_RETURN(
      out.tokens, Time(
                      r, [&] { return tokens; },
                      [&]() { return trainer->Step(data).status(); }));
  out.model_flops = 6.0 * MatmulParameters(m) * out.tokens.median;
  return out;
}

absl::StatusOr<std::vector<int64_t>> ParseCounts(const std::string& text,
                                                 const std::string& flag) {
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flag, ": '", text, "' is not a list of positive counts"));
    }
    out.push_back(v);
  }
  return out;
}

}  // namespace cmdistill::bench
