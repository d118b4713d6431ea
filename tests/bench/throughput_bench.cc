// Throughput of the three things a GPU learner does, on any device and dtype,
// timed after a warm-up with min/median/max over repeats, printed as one JSON
// object (scripts/gpu-check.sh compares it with eager PyTorch):
//   decode  tokens/s of KV-cache sampling, fixed length (no stop tokens), at
//           each --batches size after a --prompt-len prompt
//   score   tokens/s of log-probabilities on [--score-batch, --score-len]
//   train   tokens/s of one SFT step (forward + backward + AdamW, float32
//           master weights for bf16) on [--train-batch, --train-len], the
//           model FLOP/s (6 * matmul parameters * tokens, attention scores
//           left out) and, given --peak-tflops, the utilisation
// Every measurement ends in a host read of the result, so GPU work is done
// when the clock stops.
//
// usage: throughput_bench --shape small|qwen05b [--model DIR] [--device D]
//        [--dtype float32|bfloat16] [--batches 1,8,64] [--new-tokens 128]
//        [--prompt-len 18] [--score-batch 64] [--score-len 256]
//        [--train-batch 8] [--train-len 128] [--warmup 1] [--repeats 3]
//        [--peak-tflops 790] [--save DIR]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/model/language_model.h"
#include "services/learner/sft_trainer.h"
#include "tests/testing/model_configs.h"

namespace cmdistill {
namespace {

checkpoint::ModelConfig Qwen05B() {  // Qwen2.5-0.5B's shape
  checkpoint::ModelConfig c;
  c.model_type = "qwen2";
  c.vocab_size = 151936;
  c.hidden_size = 896;
  c.intermediate_size = 4864;
  c.num_hidden_layers = 24;
  c.num_attention_heads = 14;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  c.attention_bias = true;
  c.tie_word_embeddings = true;
  c.max_position_embeddings = 32768;
  c.rope_theta = 1e6;
  return c;
}

struct Stats {
  double min = 0, median = 0, max = 0;  // tokens/s
};

// Runs `work` warmup + repeats times; tokens/s of the timed runs.
template <typename F>
Stats Measure(int warmup, int repeats, double tokens, F work) {
  for (int i = 0; i < warmup; ++i) work();
  std::vector<double> rates;
  for (int i = 0; i < repeats; ++i) {
    const absl::Time t0 = absl::Now();
    work();
    rates.push_back(tokens / absl::ToDoubleSeconds(absl::Now() - t0));
  }
  std::sort(rates.begin(), rates.end());
  return {rates.front(), rates[rates.size() / 2], rates.back()};
}

std::string Json(const Stats& s) {
  return absl::StrFormat(R"({"min": %.1f, "median": %.1f, "max": %.1f})", s.min,
                         s.median, s.max);
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "throughput_bench: %s\n", what.c_str());
  return 2;
}

int Main(int argc, char** argv) {
  std::map<std::string, std::string> a = {
      {"shape", "small"},    {"device", "cpu"},     {"dtype", "float32"},
      {"batches", "1,8,64"}, {"new-tokens", "128"}, {"prompt-len", "18"},
      {"score-batch", "64"}, {"score-len", "256"},  {"train-batch", "8"},
      {"train-len", "128"},  {"warmup", "1"},       {"repeats", "3"},
      {"peak-tflops", "0"},  {"model", ""},         {"save", ""}};
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || i + 1 >= argc || !a.count(k.substr(2)))
      return Fail("unknown or incomplete flag '" + k + "' (see the header)");
    a[k.substr(2)] = argv[++i];
  }
  auto num = [&](const std::string& k) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(a[k], &v) || v < 0) {
      std::fprintf(stderr, "throughput_bench: --%s must be a count\n",
                   k.c_str());
      std::exit(2);
    }
    return v;
  };
  double peak = 0;
  if (!absl::SimpleAtod(a["peak-tflops"], &peak))
    return Fail("--peak-tflops must be a number");
  std::unique_ptr<model::LanguageModel> m;
  if (!a["model"].empty()) {
    auto l = model::LanguageModel::Load(a["model"], a["device"], a["dtype"]);
    if (!l.ok()) return Fail(std::string(l.status().message()));
    m = *std::move(l);
  } else {
    if (a["shape"] != "small" && a["shape"] != "qwen05b")
      return Fail("--shape is small or qwen05b");
    auto r = model::LanguageModel::InitRandom(
        a["shape"] == "small" ? testing::SmallBenchConfig() : Qwen05B(), 1,
        a["device"], a["dtype"]);
    if (!r.ok()) return Fail(std::string(r.status().message()));
    m = *std::move(r);
  }
  if (!a["save"].empty()) {  // the same weights for the eager comparison
    if (auto s = m->Save(a["save"]); !s.ok())
      return Fail(std::string(s.message()));
  }
  const auto& cfg = m->config();
  const int64_t V = cfg.vocab_size, warmup = num("warmup"),
                repeats = std::max<int64_t>(1, num("repeats"));
  std::vector<std::string> parts;
  parts.push_back(absl::StrFormat(
      R"("device": "%s", "dtype": "%s", "parameters": %d, "vocab": %d)",
      m->device_name(), m->dtype_name(), m->num_parameters(), V));
  // decode
  std::vector<std::string> decode;
  const int64_t P = num("prompt-len"), N = num("new-tokens");
  for (absl::string_view b : absl::StrSplit(a["batches"], ',')) {
    int64_t B = 0;
    if (!absl::SimpleAtoi(b, &B) || B <= 0) return Fail("bad --batches");
    std::vector<std::vector<int32_t>> prompts(B);
    for (int64_t i = 0; i < B; ++i)
      for (int64_t t = 0; t < P; ++t)
        prompts[i].push_back(static_cast<int32_t>((7 * i + 13 * t) % V));
    model::SamplingOptions o;
    o.max_new_tokens = N;  // no stop tokens: fixed length
    bool ok = true;
    const Stats s = Measure(static_cast<int>(warmup), static_cast<int>(repeats),
                            static_cast<double>(B * N), [&] {
                              auto r = m->Generate(prompts, o);
                              ok = ok && r.ok();
                            });
    if (!ok) return Fail("decode failed");
    decode.push_back(absl::StrFormat(R"("%d": %s)", B, Json(s)));
  }
  parts.push_back(absl::StrFormat(R"("decode_tokens_per_s": {%s})",
                                  absl::StrJoin(decode, ", ")));
  // score
  {
    const int64_t B = num("score-batch"), T = num("score-len");
    std::vector<std::vector<int32_t>> seqs(B);
    for (int64_t i = 0; i < B; ++i)
      for (int64_t t = 0; t < T; ++t)
        seqs[i].push_back(static_cast<int32_t>((11 * i + 5 * t) % V));
    bool ok = true;
    const Stats s = Measure(static_cast<int>(warmup), static_cast<int>(repeats),
                            static_cast<double>(B * T), [&] {
                              ok = ok && m->TokenLogprobs(seqs, B * T).ok();
                            });
    if (!ok) return Fail("score failed");
    parts.push_back(absl::StrFormat(R"("score_tokens_per_s": %s)", Json(s)));
  }
  // train: the SFT step (cross-entropy on every completion token, AdamW)
  {
    const int64_t B = num("train-batch"), T = num("train-len");
    std::vector<learner::SftExample> batch(B);
    for (int64_t i = 0; i < B; ++i) {
      batch[i].prompt_ids = {static_cast<int32_t>(i % V)};
      for (int64_t t = 0; t < T; ++t)
        batch[i].completion_ids.push_back(
            static_cast<int32_t>((3 * i + 17 * t) % V));
    }
    learner::AdamWOptions ao;
    ao.lr = 1e-5;
    auto trainer = learner::SftTrainer::Create(m.get(), ao);
    if (!trainer.ok()) return Fail(std::string(trainer.status().message()));
    bool ok = true;
    const double tokens = static_cast<double>(B * T);
    const Stats s =
        Measure(static_cast<int>(warmup), static_cast<int>(repeats), tokens,
                [&] { ok = ok && (*trainer)->Step(batch).ok(); });
    if (!ok) return Fail("train step failed");
    // Matmul parameters: all but the input embedding lookup (with tied
    // embeddings the table is the LM head and counts once).
    const double embed = static_cast<double>(V * cfg.hidden_size);
    const double matmul = static_cast<double>(m->num_parameters()) -
                          (cfg.tie_word_embeddings ? 0.0 : embed);
    const double flops = 6.0 * matmul * s.median;
    parts.push_back(absl::StrFormat(
        R"("train_tokens_per_s": %s, "train_model_tflops": %.2f)", Json(s),
        flops / 1e12));
    if (peak > 0) {
      parts.push_back(
          absl::StrFormat(R"("train_mfu": %.4f)", flops / (peak * 1e12)));
    }
  }
  std::printf("{%s}\n", absl::StrJoin(parts, ", ").c_str());
  return 0;
}

}  // namespace
}  // namespace cmdistill

int main(int argc, char** argv) { return cmdistill::Main(argc, argv); }
