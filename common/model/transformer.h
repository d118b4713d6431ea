// The decoder-only transformer of the Llama / Qwen2 / Qwen3 family, as Hugging
// Face defines it (RMSNorm, rotary embeddings with optional llama3 scaling,
// grouped-query attention, SwiGLU MLP, optional q/k/v bias, optional q/k norm,
// tied or separate lm_head), in LibTorch.
//
// This header is for LibTorch TUs (the learner's backend, the model library
// itself). Torch-free code uses common/model/language_model.h.
//
// Shapes: B batch, T new positions, P cached positions, V vocabulary, L layers.
// Conventions: batches are left-padded; `attention_mask` [B, P + T] marks real
// tokens (1) of the cache and the new input; `positions` [B, T] are the real
// positions (padding does not count). Logits come back in float32 whatever the
// weights' dtype.
#ifndef CMDISTILL_COMMON_MODEL_TRANSFORMER_H_
#define CMDISTILL_COMMON_MODEL_TRANSFORMER_H_

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/checkpoint/hf_checkpoint.h"
#include "common/model/threads.h"

namespace cmdistill::model {

using checkpoint::ModelConfig;

// "auto" (CUDA if available), "cpu", "cuda", "cuda:N"; "float32" / "bfloat16".
absl::StatusOr<c10::Device> ParseDevice(const std::string& device);
absl::StatusOr<c10::ScalarType> ParseDType(const std::string& dtype);

// Rows per chunk of a [rows, vocab] temporary of `value_bytes` per value
// (logits and their log-softmax: 4; sampling's double copy: 8), one at least.
// On CPU under 30 MiB, just below the 32 MiB mmap threshold the model library
// sets (language_model.cc, KeepTensorMemory), so that such blocks come from
// reused heap memory instead of fresh pages. Measured with a Qwen-sized
// vocabulary (151,936; `cmdistill bench score`, [8, 128], 1 thread): 16 MiB
// chunks 543 tokens/s, 30 MiB 641, 64 MiB 132 (page faults again). On a GPU
// 256 MiB, so that a real vocabulary does not need gigabytes at once.
int64_t LogitChunkRows(c10::Device device, int64_t vocab,
                       int64_t value_bytes = 4);

// Keys and values of every layer: buffers [B, Hkv, capacity, D] of which the
// first `length` positions are filled. Appending writes in place (capacity
// doubles when full), so a decoding step costs O(1) copies, not a copy of the
// whole cache.
struct KvCache {
  std::vector<at::Tensor> keys, values;
  int64_t filled = 0;
  int64_t length() const { return filled; }
  // Keeps only batch rows `rows` (int64 [B'] on the cache's device).
  void SelectRows(const at::Tensor& rows);
};

// How attention is computed. kExplicit: scores, float32 softmax and the
// weighted sum as three ops, on every LibTorch (the reference in tests).
// kSdpa: at::scaled_dot_product_attention (LibTorch >= 2.1 only): fused
// kernels (flash / memory-efficient on CUDA, a flash kernel on CPU).
enum class Attention { kExplicit, kSdpa };

// True when this build has at::scaled_dot_product_attention (LibTorch >= 2.1).
bool SdpaAvailable();
// "explicit" / "sdpa"; parses "auto" as the default for `device`: kSdpa on
// CUDA where available, kExplicit on CPU (measured in docs/benchmarks.md,
// "Attention on LibTorch 2.6"). INVALID_ARGUMENT for another name, or for
// "sdpa" on a LibTorch without it.
absl::StatusOr<Attention> ParseAttention(const std::string& name,
                                         c10::Device device);
const char* AttentionName(Attention a);

class Transformer {
 public:
  static absl::StatusOr<std::unique_ptr<Transformer>> Load(
      const checkpoint::HfCheckpoint& ck, c10::Device device,
      c10::ScalarType dtype);
  // Hugging Face's initialisation: normal(0, 0.02) for matrices, ones for
  // norms, zero biases.
  static absl::StatusOr<std::unique_ptr<Transformer>> InitRandom(
      const ModelConfig& config, uint64_t seed, c10::Device device,
      c10::ScalarType dtype);

  const ModelConfig& config() const { return config_; }
  // The attention path (default: ParseAttention of the environment variable
  // CMDISTILL_ATTENTION, "auto" when unset or invalid).
  Attention attention() const { return attention_; }
  // INVALID_ARGUMENT for kSdpa on a LibTorch without it.
  absl::Status set_attention(Attention a);
  c10::Device device() const { return device_; }
  c10::ScalarType dtype() const { return dtype_; }

  // logits [B, T, V] float32. `cache` (may be null) is read and extended with
  // the new keys and values. Input ids must already be validated (see
  // CheckIds).
  at::Tensor Forward(const at::Tensor& input_ids, const at::Tensor& positions,
                     const at::Tensor& attention_mask, KvCache* cache) const;
  // Forward = Head(Hidden(...)). Hidden: the final-normed states [B, T,
  // hidden] in the model's dtype. Head: logits float32 for any [..., hidden].
  // Callers that need logits at a few positions only (the last prompt token
  // of a prefill, the completion of a scored sequence) select the rows first:
  // with a real vocabulary (Qwen: 151,936) the head over every prompt row is
  // most of a prefill's work and memory.
  at::Tensor Hidden(const at::Tensor& input_ids, const at::Tensor& positions,
                    const at::Tensor& attention_mask, KvCache* cache) const;
  at::Tensor Head(const at::Tensor& hidden) const;
  // log_softmax(Head(hidden) / temperature) at `ids`: hidden [N, hidden], ids
  // [N, J] int64 (repeats allowed) -> [N, J] float32, differentiable in
  // `hidden` and the head's weight. The [N, V] logits are never kept: the head
  // runs over chunks of `chunk_rows` rows (0: as many as fit 30 MiB of logits
  // on CPU, 256 MiB on a GPU) and backward recomputes them chunk by chunk, so
  // training with a real vocabulary holds O(N x hidden) for it instead of
  // several [N, V] tensors.
  at::Tensor LogProbsAt(const at::Tensor& hidden, const at::Tensor& ids,
                        double temperature, int64_t chunk_rows = 0) const;

  // INVALID_ARGUMENT naming the sequence and position of an id outside [0, V).
  absl::Status CheckIds(
      const std::vector<std::vector<int32_t>>& sequences) const;

  // Parameters in Hugging Face naming (tied heads appear once, as the
  // embedding).
  const std::vector<std::pair<std::string, at::Tensor>>& named_parameters()
      const {
    return params_;
  }
  std::vector<at::Tensor> parameters() const;
  void SetRequiresGrad(bool requires_grad);
  int64_t num_parameters() const;

  // The weights as one safetensors buffer (Hugging Face names, the model's
  // dtype): an immutable policy snapshot for actors.
  absl::StatusOr<std::string> SerializeWeights() const;
  // Replaces the weights from such a buffer. INVALID_ARGUMENT / DATA_LOSS
  // (weights unchanged) for a corrupt buffer, a missing tensor or a shape
  // mismatch.
  absl::Status LoadWeights(const std::string& buffer);
  // The same, without the copy where it can: on CPU, when the snapshot's
  // dtypes are the model's, the parameters become views of `buffer` (which
  // they keep alive; the caller must not change it afterwards). Otherwise
  // (another device or dtype) it copies as LoadWeights does.
  absl::Status AdoptWeights(std::shared_ptr<const std::string> buffer);

  // Writes a Hugging Face folder (config.json + safetensors in the model's
  // dtype).
  absl::Status Save(const std::string& dir,
                    const checkpoint::WriteOptions& options = {}) const;

  // Threads or one thread for this model's recurring work (threads.h): a
  // scope for one piece of work of `kind` over `rows` token rows (tuned per
  // kind and size of rows, when worth threads at all), timed per `units`.
  static constexpr int kDecodeStep = 0, kScoreBatch = 100, kTrainStep = 200,
                       kPrefill = 300;
  TunedThreadsScope ThreadsFor(int kind, int64_t rows, double units) const {
    return TunedThreadsScope(&threads_tuner_, kind + SizeBucket(rows),
                             WorthThreads(config_, rows), units);
  }

 private:
  Transformer(ModelConfig config, c10::Device device, c10::ScalarType dtype);
  absl::StatusOr<std::map<std::string, checkpoint::TensorInfo>> CheckSnapshot(
      const std::string& buffer, size_t* data_offset) const;
  absl::Status ApplySnapshot(const std::string& buffer,
                             std::shared_ptr<const std::string> keep);
  void Bind();  // resolves per-layer handles from params_

  struct Layer {
    at::Tensor input_norm, post_norm, q, k, v, o, q_bias, k_bias, v_bias,
        o_bias, q_norm, k_norm, gate, up, down;
  };

  ModelConfig config_;
  c10::Device device_;
  c10::ScalarType dtype_;
  Attention attention_ = Attention::kExplicit;
  std::vector<std::pair<std::string, at::Tensor>> params_;
  at::Tensor embed_, final_norm_, lm_head_, inv_freq_;
  std::vector<Layer> layers_;
  mutable ThreadsTuner threads_tuner_;
};

}  // namespace cmdistill::model

#endif  // CMDISTILL_COMMON_MODEL_TRANSFORMER_H_
