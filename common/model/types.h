// The model-facing value types shared by the facade (language_model.h), the
// teacher's Scorer and the actor: what sampling is asked for and returns, what
// scoring takes and gives. Header-only, torch-free, dependency-free (target
// cmdistill_model_types), so code that only passes these around links no
// LibTorch. The log-probability convention is language_model.h's.
#ifndef CMDISTILL_COMMON_MODEL_TYPES_H_
#define CMDISTILL_COMMON_MODEL_TYPES_H_

#include <cstdint>
#include <vector>

namespace cmdistill::model {

struct SamplingOptions {
  double temperature = 1.0;  // 0 = greedy
  double top_p = 1.0;        // (0, 1]
  int64_t top_k = 0;         // 0 = off
  int64_t max_new_tokens = 64;
  std::vector<int32_t> stop_token_ids;
  uint64_t seed = 0;
  // Per position, the K most likely tokens of the policy and their
  // log-probabilities, always including the sampled token (it replaces the K-th
  // when outside). 0 = none; >= V = all.
  int64_t support_k = 0;
  // Rows sampled together per step; 0 = LogitChunkRows (the step's [rows, V]
  // double copy under 30 MiB on CPU, 256 MiB on a GPU). Results do not depend
  // on it (one generator, rows drawn in order).
  int64_t sample_chunk_rows = 0;
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // [T] generated tokens (a stop token included)
  std::vector<float> logprobs;  // [T] log π(token) under the convention above
  bool finished = false;        // ended on a stop token
  int64_t support_k = 0;        // K actually used
  std::vector<int32_t> support_ids;     // [T * K]
  std::vector<float> support_logprobs;  // [T * K]
};

struct ScoreInput {
  std::vector<int32_t> prompt_ids;      // at least one token
  std::vector<int32_t> completion_ids;  // [T]
  int64_t support_k = 0;                // K (0: sampled tokens only)
  std::vector<int32_t> support_ids;     // [T * K]
};

struct SequenceScore {
  std::vector<float> sampled_logprobs;  // [T] log p(completion_t | prefix)
  std::vector<float> support_logprobs;  // [T * K]
  std::vector<float>
      tail_logprobs;  // [T] log p(outside the support), floored at -1e4
  std::vector<int32_t> top_ids;  // [T * top_k] when asked
  std::vector<float> top_logprobs;
};

struct ScoreOptions {
  double temperature = 1.0;         // the distribution scored (teacher: 1)
  int64_t max_batch_tokens = 8192;  // padded tokens per forward pass
  int64_t top_k = 0;  // also return the model's own top-K per position
  // Rows of logits per head GEMM; 0 = LogitChunkRows (30 MiB on CPU, 256 MiB
  // on a GPU). The results do not depend on it.
  int64_t head_chunk_rows = 0;
};

}  // namespace cmdistill::model

#endif  // CMDISTILL_COMMON_MODEL_TYPES_H_
