// A torch-free facade over the LibTorch transformer: load / init / save,
// batched incremental generation with a KV cache, and scoring. What the CLI,
// the actor and the teacher service use; the learner's LibTorch backend reaches
// the Transformer itself through transformer().
//
// Log-probability convention (the learner must use the same one): the policy
// that samples a token is softmax(logits / temperature) over the whole
// vocabulary. The log-probability returned for a sampled token, and the top-K
// support, are taken from that distribution BEFORE top-p / top-k truncation
// (truncation only restricts which tokens may be drawn). temperature = 0 means
// greedy decoding; its log-probabilities are those of softmax(logits).
//
// Thread-compatibility: one call at a time per LanguageModel (callers
// serialise; the teacher service batches requests into one call).
#ifndef CMDISTILL_COMMON_MODEL_LANGUAGE_MODEL_H_
#define CMDISTILL_COMMON_MODEL_LANGUAGE_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/checkpoint/hf_checkpoint.h"
#include "common/model/threads.h"  // SetComputeThreads, for the callers
#include "common/model/types.h"

namespace cmdistill::model {

class Transformer;

class LanguageModel {
 public:
  // device: "auto", "cpu", "cuda", "cuda:N"; dtype: "float32", "bfloat16".
  static absl::StatusOr<std::unique_ptr<LanguageModel>> Load(
      const std::string& dir, const std::string& device,
      const std::string& dtype);
  static absl::StatusOr<std::unique_ptr<LanguageModel>> InitRandom(
      const checkpoint::ModelConfig& config, uint64_t seed,
      const std::string& device, const std::string& dtype);
  ~LanguageModel();

  const checkpoint::ModelConfig& config() const;
  std::string device_name() const;
  std::string dtype_name() const;
  // "explicit" or "sdpa" (Transformer::attention; CMDISTILL_ATTENTION).
  std::string attention_name() const;
  int64_t num_parameters() const;

  // INVALID_ARGUMENT for empty prompts, ids outside the vocabulary, a prompt
  // plus max_new_tokens longer than the model allows, or bad sampling options.
  absl::StatusOr<std::vector<GenerationResult>> Generate(
      const std::vector<std::vector<int32_t>>& prompts,
      const SamplingOptions& options);

  // INVALID_ARGUMENT for ids outside the vocabulary, empty prompts, support
  // rows that do not contain the scored token or have the wrong size, over-long
  // sequences.
  absl::StatusOr<std::vector<SequenceScore>> Score(
      const std::vector<ScoreInput>& inputs, const ScoreOptions& options);

  // For each sequence, len - 1 values: value t-1 = log p(ids[t] | ids[<t]).
  absl::StatusOr<std::vector<std::vector<float>>> TokenLogprobs(
      const std::vector<std::vector<int32_t>>& sequences,
      int64_t max_batch_tokens = 8192);

  absl::Status Save(const std::string& dir,
                    const checkpoint::WriteOptions& options = {}) const;

  // Policy snapshots (see Transformer::SerializeWeights / LoadWeights).
  absl::StatusOr<std::string> SerializeWeights() const;
  absl::Status LoadWeights(const std::string& buffer);
  absl::Status AdoptWeights(std::shared_ptr<const std::string> buffer);

  Transformer* transformer() { return transformer_.get(); }

 private:
  explicit LanguageModel(std::unique_ptr<Transformer> t);
  std::unique_ptr<Transformer> transformer_;
};

// The achieved FLOP/s of a plain [n, n] x [n, n] matmul on `device` in
// `dtype` (the median of `repeats` after one warm-up; ends with a device
// sync): the machine's dense peak for the work the model does.
// INVALID_ARGUMENT for a bad device or dtype.
absl::StatusOr<double> MatmulFlopsPerSecond(int64_t n,
                                            const std::string& device,
                                            const std::string& dtype,
                                            int repeats = 5);

// The achieved read bandwidth (bytes/s) of summing a `bytes`-sized float32
// tensor on the CPU with ComputeThreads() threads (the median of `repeats`
// after one warm-up): what decoding a model whose weights exceed the caches
// is bound by. INVALID_ARGUMENT below 4 bytes.
absl::StatusOr<double> MemoryReadBytesPerSecond(int64_t bytes, int repeats = 5);

}  // namespace cmdistill::model

#endif  // CMDISTILL_COMMON_MODEL_LANGUAGE_MODEL_H_
