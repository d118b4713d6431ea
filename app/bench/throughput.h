// Throughput measurements of the model work a user's checkpoint does in
// cmdistill (what `cmdistill bench` and tests/bench/throughput_bench report):
// sampling with the KV cache, scoring, and a training step. Each times only
// the work, after `warmup` untimed runs, over `repeats` timed runs, and ends
// every run with a host read of the result (so GPU work is finished when the
// clock stops). Torch-free (the model through its facade).
#ifndef CMDISTILL_SERVICES_BENCH_THROUGHPUT_H_
#define CMDISTILL_SERVICES_BENCH_THROUGHPUT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/checkpoint/hf_checkpoint.h"
#include "common/model/language_model.h"

namespace cmdistill::bench {

struct Repeats {
  int warmup = 1;
  int repeats = 3;
};

// A rate over the timed runs (units per second).
struct Rate {
  double min = 0, median = 0, max = 0;
  std::vector<double> runs;  // in order
};

// min / median / max of `runs` (which it keeps); runs must not be empty.
Rate RateOf(std::vector<double> runs);

// Random-weight shapes for benchmarks without a checkpoint: "small" (2.0M
// parameters: 2 layers, hidden 256, vocabulary 2048), "medium" (~20M: 8
// layers, hidden 512), "qwen05b" (Qwen2.5-0.5B's shape).
absl::StatusOr<checkpoint::ModelConfig> Shape(const std::string& name);

// Tokens/s of sampling `new_tokens` after a `prompt_len`-token prompt for
// `batch` sequences (temperature 1). Fixed length unless `stop_at_eos` (then
// the model's eos ids stop a sequence, and the rate counts tokens made).
absl::StatusOr<Rate> Decode(model::LanguageModel& m, int64_t batch,
                            int64_t prompt_len, int64_t new_tokens,
                            bool stop_at_eos, const Repeats& r);

// Tokens/s of log-probabilities of [batch, seq_len] (one forward per batch).
absl::StatusOr<Rate> Score(model::LanguageModel& m, int64_t batch,
                           int64_t seq_len, const Repeats& r);

struct TrainRate {
  Rate tokens;  // tokens/s of forward + backward + AdamW on [batch, seq_len]
  double model_flops = 0;  // per second at the median: 6 x matmul parameters
                           // x tokens (attention scores left out)
};
// One SFT step (cross-entropy on every position, AdamW at lr 1e-5 with float32
// master weights for bf16). The model's weights change.
absl::StatusOr<TrainRate> Train(model::LanguageModel& m, int64_t batch,
                                int64_t seq_len, const Repeats& r);

// Parameters that take part in matmuls: all but an untied input embedding.
double MatmulParameters(const model::LanguageModel& m);

// "1,8,64" -> {1, 8, 64}; INVALID_ARGUMENT naming `flag` for anything else.
absl::StatusOr<std::vector<int64_t>> ParseCounts(const std::string& text,
                                                 const std::string& flag);

}  // namespace cmdistill::bench

#endif  // CMDISTILL_SERVICES_BENCH_THROUGHPUT_H_
