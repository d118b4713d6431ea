// Small model architectures for tests and benchmarks (Hugging Face config
// fields).
#ifndef CMDISTILL_TESTS_TESTING_MODEL_CONFIGS_H_
#define CMDISTILL_TESTS_TESTING_MODEL_CONFIGS_H_

#include <string>

#include "common/checkpoint/hf_checkpoint.h"

namespace cmdistill::testing {

struct TinyShape {
  std::string type = "llama";
  int64_t vocab = 32, hidden = 32, intermediate = 64, layers = 1, heads = 4,
          kv_heads = 2, head_dim = 8, max_positions = 64;
  bool bias = false, tied = false;
};

inline checkpoint::ModelConfig TinyConfig(const TinyShape& s) {
  checkpoint::ModelConfig c;
  c.model_type = s.type;
  c.vocab_size = s.vocab;
  c.hidden_size = s.hidden;
  c.intermediate_size = s.intermediate;
  c.num_hidden_layers = s.layers;
  c.num_attention_heads = s.heads;
  c.num_key_value_heads = s.kv_heads;
  c.head_dim = s.head_dim;
  c.max_position_embeddings = s.max_positions;
  c.attention_bias = s.bias;
  c.tie_word_embeddings = s.tied;
  c.qk_norm = s.type == "qwen3";
  return c;
}

// The ~2.1M-parameter "small model" of the benchmarks (qwen2-shaped, vocabulary
// 2048).
inline checkpoint::ModelConfig SmallBenchConfig() {
  TinyShape s;
  s.type = "qwen2";
  s.vocab = 2048;
  s.hidden = 256;
  s.intermediate = 688;
  s.layers = 2;
  s.head_dim = 64;
  s.max_positions = 1024;
  s.bias = true;
  s.tied = true;
  return TinyConfig(s);
}

}  // namespace cmdistill::testing

#endif  // CMDISTILL_TESTS_TESTING_MODEL_CONFIGS_H_
