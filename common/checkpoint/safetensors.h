// The safetensors format (Hugging Face): 8-byte little-endian header length N,
// N bytes of JSON header {"name": {"dtype", "shape", "data_offsets": [begin,
// end]}, "__metadata__": {...}}, then the data buffer. Torch-free: readers hand
// out byte spans, the model code turns them into tensors.
//
// Reading memory-maps the file and validates everything before any byte is
// used: header length within the file, valid JSON, known dtypes, non-negative
// shapes whose byte size matches the offsets (overflow-checked), offsets inside
// the buffer, no overlaps and no holes (the format requires the buffer to be
// fully indexed). Every refusal is INVALID_ARGUMENT (DATA_LOSS for a truncated
// file) naming the file and, where there is one, the tensor.
#ifndef CMDISTILL_COMMON_CHECKPOINT_SAFETENSORS_H_
#define CMDISTILL_COMMON_CHECKPOINT_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace cmdistill::checkpoint {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

const char* DTypeName(DType d);  // "F32", "BF16", ...
size_t DTypeSize(DType d);
absl::StatusOr<DType> ParseDType(const std::string& name);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets in the data buffer
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }
  // nullptr when absent.
  const TensorInfo* Find(const std::string& name) const;
  // The tensor's bytes, valid while this object lives (memory-mapped).
  absl::Span<const uint8_t> Data(const TensorInfo& info) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data buffer
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Parses a header (the JSON between the length prefix and the data) against a
// data buffer of `data_size` bytes. Exposed for tests of hostile headers.
absl::StatusOr<std::vector<TensorInfo>> ParseHeader(
    const std::string& json, uint64_t data_size, const std::string& file,
    std::map<std::string, std::string>* metadata);

struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  absl::Span<const uint8_t> data;  // little-endian, numel * DTypeSize bytes
};

// Writes a safetensors file atomically (temporary file, fsync, rename). Tensors
// are laid out in name order; the header is padded with spaces to a multiple of
// 8 bytes.
absl::Status WriteSafetensors(
    const std::string& path, const std::vector<TensorToWrite>& tensors,
    const std::map<std::string, std::string>& metadata = {});

// The bytes of a safetensors file (what WriteSafetensors writes), e.g. a weight
// snapshot.
absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<TensorToWrite>& tensors,
    const std::map<std::string, std::string>& metadata = {});

// Validates a safetensors file held in memory, as SafetensorsFile::Open does;
// `data_offset` receives where the data buffer starts.
absl::StatusOr<std::vector<TensorInfo>> ParseSafetensorsBuffer(
    absl::Span<const uint8_t> buffer, const std::string& name,
    size_t* data_offset);

}  // namespace cmdistill::checkpoint

#endif  // CMDISTILL_COMMON_CHECKPOINT_SAFETENSORS_H_
