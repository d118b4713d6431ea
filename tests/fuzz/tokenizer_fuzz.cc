// Fuzz target: tokenizer.json loading, and encode/decode with a real byte-level
// BPE tokenizer. First byte: 0 -> the input is a tokenizer.json; otherwise the
// input is text to encode (whose ids must decode) and, read as little-endian
// int32s, ids to decode.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/tokenizer/tokenizer.h"

using cmdistill::tokenizer::Tokenizer;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] == 0) {
    (void)Tokenizer::FromJson(rest, "", "fuzz.json");
    return 0;
  }
  static const Tokenizer* tok =
      Tokenizer::FromJson(
          cmdistill::tokenizer::MakeByteLevelTokenizerJson(
              {"Ġ t", "h e", "Ġt he", "1 2", "Ġ 1"}, {"<|endoftext|>"}),
          "", "fuzz-fixed")
          ->release();
  auto ids = tok->Encode(rest, data[0] & 1);
  if (ids.ok()) {
    auto text = tok->Decode(*ids);
    if (!text.ok()) __builtin_trap();  // its own ids always decode
  }
  std::vector<int32_t> raw(rest.size() / 4);
  if (!raw.empty()) std::memcpy(raw.data(), rest.data(), raw.size() * 4);
  (void)tok->Decode(raw, data[0] & 2);
  return 0;
}
