// Hugging Face tokenizer.json with a byte-level BPE model (GPT-2, Llama 3,
// Qwen2/Qwen3).
//
// Supported components (anything else is refused at load, naming the
// component):
//   normalizer:     none, NFC, NFKC, or a Sequence of those
//   pre_tokenizer:  Split with the Qwen2/Qwen3 or Llama 3 pattern (behavior
//   Isolated), ByteLevel
//                   (with or without GPT-2's regex), or a Sequence of those
//   model:          BPE over byte-level symbols (merges as "a b" strings or [a,
//   b] pairs;
//                   ignore_merges; no dropout, no byte_fallback, no unk)
//   post_processor: none, ByteLevel, TemplateProcessing (single sequence)
//   decoder:        ByteLevel
//   added tokens:   matched leftmost-longest in the raw text (lstrip/rstrip
//   honoured)
//
// The split patterns are implemented as hand-written scanners that reproduce
// the regular expressions' semantics exactly (alternation order, greedy
// quantifiers with backtracking, the (?!\S) look-ahead), with Unicode classes
// from ICU: \p{L} = Lu Ll Lt Lm Lo, \p{N} = Nd Nl No, \s = White_Space. Linear
// time in the input.
//
// Thread-safety: Encode/Decode are const and thread-safe (the BPE cache has its
// own lock).
#ifndef CMDISTILL_COMMON_TOKENIZER_TOKENIZER_H_
#define CMDISTILL_COMMON_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace cmdistill::tokenizer {

class Tokenizer {
 public:
  // `json`: the text of tokenizer.json; `config_json`: tokenizer_config.json
  // ("" if absent).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(
      const std::string& json, const std::string& config_json,
      const std::string& source);
  // A tokenizer.json path, or a folder holding tokenizer.json (+
  // tokenizer_config.json).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(
      const std::string& path);
  ~Tokenizer();

  // INVALID_ARGUMENT for text that is not valid UTF-8 (the byte offset named).
  absl::StatusOr<std::vector<int32_t>> Encode(
      std::string_view text, bool add_special_tokens = false) const;
  // INVALID_ARGUMENT for ids outside the vocabulary. Invalid UTF-8 produced by
  // a byte-level sequence becomes U+FFFD per maximal invalid subpart (as Rust's
  // from_utf8_lossy and the WHATWG TextDecoder do).
  absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids,
                                     bool skip_special_tokens = false) const;

  int64_t vocab_size() const;  // highest id + 1, added tokens included
  // The id of a token string (vocabulary or added token), or -1.
  int32_t TokenToId(std::string_view token) const;
  std::string IdToToken(int32_t id) const;  // "" when unknown
  bool IsSpecial(int32_t id) const;
  // eos / bos / pad from tokenizer_config.json, -1 when absent.
  int32_t eos_id() const;
  int32_t bos_id() const;
  int32_t pad_id() const;
  // sha256 (hex) of a canonical description: vocabulary, merges, added tokens
  // and pipeline. Equal fingerprints mean the tokenizers encode and decode
  // alike.
  const std::string& fingerprint() const;

 private:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJsonUnchecked(
      const std::string& json, const std::string& config_json,
      const std::string& source);
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A tokenizer.json for a byte-level BPE: the 256 byte symbols (ids 0..255),
// then the tokens the `merges` ("a b", in byte-level spelling, applied in
// order) create, then `special_tokens` as added special tokens; Qwen2's split
// pattern. For tests and tiny models (`init-model`).
std::string MakeByteLevelTokenizerJson(
    const std::vector<std::string>& merges,
    const std::vector<std::string>& special_tokens);

// Learns up to `num_merges` byte-level BPE merges from `texts` (split with
// Qwen2's pattern, as MakeByteLevelTokenizerJson's tokenizer does): each round
// merges the most frequent adjacent pair (ties: the smallest pair in byte-level
// spelling), so the result is deterministic. Stops early when no pair occurs
// twice. INVALID_ARGUMENT for text that is not valid UTF-8.
absl::StatusOr<std::vector<std::string>> TrainByteLevelMerges(
    const std::vector<std::string>& texts, int num_merges);

// UTF-8 -> code points; INVALID_ARGUMENT naming the offset of the first invalid
// byte.
absl::StatusOr<std::vector<char32_t>> DecodeUtf8(std::string_view s);
// Bytes -> UTF-8 text, U+FFFD per maximal invalid subpart.
std::string LossyUtf8(std::string_view bytes);

}  // namespace cmdistill::tokenizer

#endif  // CMDISTILL_COMMON_TOKENIZER_TOKENIZER_H_
