// Hugging Face model folders: config.json + model.safetensors, or sharded
// model-0000X-of-0000N.safetensors + model.safetensors.index.json;
// tokenizer.json and tokenizer_config.json copied through. Torch-free.
//
// Supported architectures (config.json `model_type`): "llama", "qwen2",
// "qwen3". Anything the model code does not implement (another model_type,
// hidden_act other than silu, mlp_bias, sliding-window attention, an unknown
// rope_type) is refused at load with INVALID_ARGUMENT naming config.json and
// the key.
#ifndef CMDISTILL_COMMON_CHECKPOINT_HF_CHECKPOINT_H_
#define CMDISTILL_COMMON_CHECKPOINT_HF_CHECKPOINT_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/checkpoint/safetensors.h"

namespace cmdistill::checkpoint {

struct RopeScaling {
  std::string type;  // "" (none) or "llama3"
  double factor = 1, low_freq_factor = 1, high_freq_factor = 4;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string model_type = "llama";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias =
      false;  // q/k/v (and o for llama) biases; Qwen2 always has q/k/v bias
  bool qk_norm = false;  // Qwen3
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype = "float32";
};

// Parses and checks a config.json text; `file` is named in errors.
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json,
                                             const std::string& file);
// config.json text for `config`, in Hugging Face's key names (what transformers
// reads).
std::string ModelConfigToJson(const ModelConfig& config);

// Tensor names and shapes the architecture needs, in Hugging Face naming.
std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensors(
    const ModelConfig& c);

class HfCheckpoint {
 public:
  // NOT_FOUND for a missing folder/config/weights; INVALID_ARGUMENT / DATA_LOSS
  // for corrupt ones; a tensor the architecture needs that is missing or has
  // the wrong shape is refused here, naming file and tensor.
  static absl::StatusOr<std::unique_ptr<HfCheckpoint>> Open(
      const std::string& dir);

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  struct Entry {
    const SafetensorsFile* file;
    const TensorInfo* info;
  };
  // nullptr file when absent.
  Entry Find(const std::string& name) const;
  std::vector<std::string> TensorNames() const;
  uint64_t total_bytes() const;

 private:
  std::string dir_;
  ModelConfig config_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> entries_;
};

// The sampling defaults written into generation_config.json (what the model
// was trained to be sampled with).
struct GenerationDefaults {
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t top_k = 0;           // 0 = off
  int64_t max_new_tokens = 0;  // 0 = not written
};

// The transformers release whose file layout these folders follow (written
// as transformers_version).
inline constexpr char kTransformersVersion[] = "4.46.0";

struct WriteOptions {
  uint64_t max_shard_bytes =
      5ull << 30;  // larger models are sharded, as transformers does
  std::string copy_tokenizer_from;  // folder whose tokenizer files are copied
  GenerationDefaults generation;
};

// Writes a Hugging Face folder atomically file by file: config.json, the
// weights (sharded with an index when larger than max_shard_bytes) and the
// tokenizer files. What transformers and vLLM need to load the model with the
// right stop tokens is written where the source has none: a
// generation_config.json (bos/eos ids and options.generation), and
// tokenizer_config.json's tokenizer_class and model_max_length (added to the
// copied file, or a new one when the folder has tokenizer.json only).
absl::Status WriteHfCheckpoint(const std::string& dir,
                               const ModelConfig& config,
                               const std::vector<TensorToWrite>& tensors,
                               const WriteOptions& options = {});

}  // namespace cmdistill::checkpoint

#endif  // CMDISTILL_COMMON_CHECKPOINT_HF_CHECKPOINT_H_
