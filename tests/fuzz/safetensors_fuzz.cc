// Fuzz target: a safetensors file held in memory (length prefix, JSON header,
// offsets against the data buffer), as loading a checkpoint validates it.
#include <cstdint>

#include "absl/types/span.h"
#include "common/checkpoint/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  size_t offset = 0;
  auto tensors = cmdistill::checkpoint::ParseSafetensorsBuffer(
      absl::MakeConstSpan(data, size), "fuzz.safetensors", &offset);
  if (tensors.ok()) {
    // Every accepted tensor lies inside the buffer.
    for (const auto& t : *tensors) {
      if (offset + t.end > size || t.begin > t.end) __builtin_trap();
    }
  }
  return 0;
}
