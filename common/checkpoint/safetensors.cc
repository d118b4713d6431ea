#include "common/checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/util/files.h"
#include "nlohmann/json.hpp"

namespace cmdistill::checkpoint {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100
                                     << 20;  // as the reference implementation

absl::Status Bad(const std::string& file, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": ", what));
}

// a * b without overflow, or false.
bool MulOk(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

}  // namespace

const char* DTypeName(DType d) {
  switch (d) {
    case DType::kF64:
      return "F64";
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kI64:
      return "I64";
    case DType::kI32:
      return "I32";
    case DType::kI16:
      return "I16";
    case DType::kI8:
      return "I8";
    case DType::kU8:
      return "U8";
    case DType::kBool:
      return "BOOL";
  }
  return "?";
}

size_t DTypeSize(DType d) {
  switch (d) {
    case DType::kF64:
    case DType::kI64:
      return 8;
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
    case DType::kI16:
      return 2;
    default:
      return 1;
  }
}

absl::StatusOr<DType> ParseDType(const std::string& name) {
  for (DType d :
       {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64,
        DType::kI32, DType::kI16, DType::kI8, DType::kU8, DType::kBool}) {
    if (name == DTypeName(d)) return d;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", name, "'"));
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Long on purpose: the safetensors header's checks in order (JSON, each
// entry's dtype, shape, offsets, coverage without gaps or overlaps), each
// with its own error; fuzzed as one unit (tests/fuzz/safetensors_fuzz.cc).
absl::StatusOr<std::vector<TensorInfo>> ParseHeader(
    const std::string& json, uint64_t data_size, const std::string& file,
    std::map<std::string, std::string>* metadata) {
  nlohmann::json h =
      nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (h.is_discarded() || !h.is_object())
    return Bad(file, "header is not a JSON object");
  std::vector<TensorInfo> out;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return Bad(file, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          return Bad(file, "__metadata__ values must be strings");
        if (metadata != nullptr)
          (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor '", name, "'");
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets")) {
      return Bad(file,
                 absl::StrCat(where, ": needs dtype, shape and data_offsets"));
    }
    TensorInfo t;
    t.name = name;
    if (!v["dtype"].is_string())
      return Bad(file, absl::StrCat(where, ": dtype is not a string"));
    auto dt = ParseDType(v["dtype"].get<std::string>());
    if (!dt.ok())
      return Bad(file, absl::StrCat(where, ": ", dt.status().message()));
    t.dtype = *dt;
    if (!v["shape"].is_array())
      return Bad(file, absl::StrCat(where, ": shape is not a list"));
    uint64_t bytes = DTypeSize(t.dtype);
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) {
        return Bad(file,
                   absl::StrCat(
                       where, ": shape entries must be non-negative integers"));
      }
      const uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          !MulOk(bytes, dim, &bytes)) {
        return Bad(file, absl::StrCat(where, ": shape overflows"));
      }
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned()) {
      return Bad(file,
                 absl::StrCat(where, ": data_offsets must be [begin, end]"));
    }
    t.begin = off[0].get<uint64_t>();
    t.end = off[1].get<uint64_t>();
    if (t.begin > t.end || t.end > data_size) {
      return Bad(file, absl::StrCat(where, ": data_offsets [", t.begin, ", ",
                                    t.end, "] outside the data buffer of ",
                                    data_size, " bytes"));
    }
    if (t.end - t.begin != bytes) {
      return Bad(
          file, absl::StrCat(where, ": ", t.end - t.begin, " bytes for a ",
                             DTypeName(t.dtype), " tensor that needs ", bytes));
    }
    out.push_back(std::move(t));
  }
  // No overlaps, no holes: sorted by offset, each range starts where the
  // previous ended.
  std::vector<const TensorInfo*> sorted;
  for (const auto& t : out) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorInfo* a, const TensorInfo* b) {
              return a->begin != b->begin ? a->begin < b->begin
                                          : a->end < b->end;
            });
  uint64_t cursor = 0;
  for (const TensorInfo* t : sorted) {
    if (t->begin < cursor) {
      return Bad(
          file, absl::StrCat("tensor '", t->name, "' overlaps another tensor"));
    }
    if (t->begin > cursor) {
      return Bad(file,
                 absl::StrCat("bytes [", cursor, ", ", t->begin,
                              ") of the data buffer belong to no tensor"));
    }
    cursor = t->end;
  }
  if (cursor != data_size) {
    return Bad(
        file,
        absl::StrCat("bytes [", cursor, ", ", data_size,
                     ") at the end of the data buffer belong to no tensor"));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return Bad(path, "not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    close(fd);
    return absl::DataLossError(
        absl::StrCat(path, ": truncated (", size, " bytes, no header)"));
  }
  auto f = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  f->path_ = path;
  void* m = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m == MAP_FAILED) {
    return absl::InternalError(
        absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
  }
  f->map_ = static_cast<const uint8_t*>(m);
  f->map_size_ = size;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | f->map_[i];
  if (n > kMaxHeaderBytes)
    return Bad(path, absl::StrCat("header length ", n, " is absurd"));
  if (n > size - 8) {
    return absl::DataLossError(absl::StrCat(path, ": header length ", n,
                                            " is beyond the end of the file (",
                                            size, " bytes): truncated?"));
  }
  const std::string header(reinterpret_cast<const char*>(f->map_ + 8), n);
  CMDISTILL_ASSIGN_OR_RETURN(
      auto tensors, ParseHeader(header, size - 8 - n, path, &f->metadata_));
  f->tensors_ = std::move(tensors);
  f->data_ = f->map_ + 8 + n;
  for (size_t i = 0; i < f->tensors_.size(); ++i)
    f->index_[f->tensors_[i].name] = i;
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(const_cast<uint8_t*>(map_), map_size_);
}

const TensorInfo* SafetensorsFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::Span<const uint8_t> SafetensorsFile::Data(const TensorInfo& info) const {
  return absl::Span<const uint8_t>(data_ + info.begin, info.end - info.begin);
}

absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<TensorToWrite>& tensors,
    const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorToWrite*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const TensorToWrite* a, const TensorToWrite* b) {
              return a->name < b->name;
            });
  nlohmann::json h = nlohmann::json::object();
  uint64_t offset = 0;
  for (const TensorToWrite* t : order) {
    if (t->name == "__metadata__" || h.contains(t->name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad or duplicate tensor name '", t->name, "'"));
    }
    uint64_t bytes = DTypeSize(t->dtype);
    for (int64_t d : t->shape) {
      if (d < 0)
        return absl::InvalidArgumentError(
            absl::StrCat(t->name, ": negative dimension"));
      bytes *= static_cast<uint64_t>(d);
    }
    if (bytes != t->data.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          t->name, ": ", t->data.size(), " bytes given, shape needs ", bytes));
    }
    h[t->name] = {{"dtype", DTypeName(t->dtype)},
                  {"shape", t->shape},
                  {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::string header = h.dump();
  header.resize((header.size() + 7) / 8 * 8, ' ');
  std::string out;
  out.reserve(8 + header.size() + offset);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(n >> (8 * i)));
  out += header;
  for (const TensorToWrite* t : order) {
    out.append(reinterpret_cast<const char*>(t->data.data()), t->data.size());
  }
  return out;
}

absl::Status WriteSafetensors(
    const std::string& path, const std::vector<TensorToWrite>& tensors,
    const std::map<std::string, std::string>& metadata) {
  CMDISTILL_ASSIGN_OR_RETURN(auto bytes,
                             SerializeSafetensors(tensors, metadata));
  return util::WriteFileAtomically(path, bytes);
}

absl::StatusOr<std::vector<TensorInfo>> ParseSafetensorsBuffer(
    absl::Span<const uint8_t> buffer, const std::string& name,
    size_t* data_offset) {
  if (buffer.size() < 8)
    return absl::DataLossError(absl::StrCat(name, ": truncated"));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | buffer[i];
  if (n > buffer.size() - 8 || n > kMaxHeaderBytes) {
    return absl::DataLossError(
        absl::StrCat(name, ": header length beyond the buffer"));
  }
  *data_offset = 8 + n;
  return ParseHeader(
      std::string(reinterpret_cast<const char*>(buffer.data() + 8), n),
      buffer.size() - 8 - n, name, nullptr);
}

}  // namespace cmdistill::checkpoint
