#include "services/common/policy_wire.h"

#include <grpcpp/generic/generic_stub.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace cmdistill::policy_wire {
namespace {

constexpr char kFetchMethod[] = "/cmdistill.v1.LearnerService/FetchPolicy";

// Protobuf wire types.
constexpr uint32_t kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5;

void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

void ReleaseOwner(void* p) {
  delete static_cast<std::shared_ptr<const void>*>(p);
}

// Reads across the received slices without joining them.
class Cursor {
 public:
  explicit Cursor(const std::vector<grpc::Slice>& slices) : slices_(slices) {
    Skip0();
  }
  bool done() const { return i_ == slices_.size(); }
  bool Byte(uint8_t* b) {
    if (done()) return false;
    *b = slices_[i_].begin()[pos_];
    Advance(1);
    return true;
  }
  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b;
      if (!Byte(&b)) return false;
      *v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  // The next `n` bytes as views (or false when fewer are left).
  bool Take(uint64_t n, std::vector<std::string_view>* pieces) {
    while (n > 0) {
      if (done()) return false;
      const size_t here =
          std::min<uint64_t>(n, slices_[i_].size() - static_cast<size_t>(pos_));
      pieces->emplace_back(
          reinterpret_cast<const char*>(slices_[i_].begin()) + pos_, here);
      Advance(here);
      n -= here;
    }
    return true;
  }

 private:
  void Advance(size_t n) {
    pos_ += n;
    if (pos_ == slices_[i_].size()) {
      ++i_;
      pos_ = 0;
      Skip0();
    }
  }
  void Skip0() {
    while (i_ < slices_.size() && slices_[i_].size() == 0) ++i_;
  }
  const std::vector<grpc::Slice>& slices_;
  size_t i_ = 0;
  size_t pos_ = 0;
};

grpc::Status Malformed(const std::string& what) {
  return grpc::Status(grpc::StatusCode::DATA_LOSS,
                      absl::StrCat("malformed FetchPolicy chunk: ", what));
}

}  // namespace

grpc::ByteBuffer EncodeChunk(const v1::PolicyHeader* header, uint64_t offset,
                             std::string_view data,
                             std::shared_ptr<const void> owner) {
  v1::FetchPolicyResponse prefix;
  if (header != nullptr) *prefix.mutable_header() = *header;
  prefix.set_offset(offset);
  std::string head = prefix.SerializeAsString();
  // Field 3 (data), length-delimited, followed by the bytes themselves: a
  // serialized message is the concatenation of its fields.
  head.push_back(static_cast<char>((3 << 3) | kLen));
  PutVarint(data.size(), &head);
  grpc::Slice slices[2] = {
      grpc::Slice(head),
      grpc::Slice(const_cast<char*>(data.data()), data.size(), &ReleaseOwner,
                  new std::shared_ptr<const void>(std::move(owner)))};
  return grpc::ByteBuffer(slices, data.empty() ? 1 : 2);
}

grpc::Status DecodeChunk(const grpc::ByteBuffer& buffer, Chunk* out) {
  *out = Chunk();
  if (grpc::Status s = buffer.Dump(&out->slices); !s.ok()) return s;
  Cursor in(out->slices);
  while (!in.done()) {
    uint64_t tag;
    if (!in.Varint(&tag)) return Malformed("truncated field tag");
    const uint64_t field = tag >> 3;
    const uint32_t type = static_cast<uint32_t>(tag & 7);
    uint64_t v = 0;
    std::vector<std::string_view> pieces;
    if (type == kVarint) {
      if (!in.Varint(&v)) return Malformed("truncated varint");
    } else if (type == kFixed64 || type == kFixed32) {
      if (!in.Take(type == kFixed64 ? 8 : 4, &pieces))
        return Malformed("truncated fixed-width field");
    } else if (type == kLen) {
      if (!in.Varint(&v) || !in.Take(v, &pieces))
        return Malformed(absl::StrCat("field ", field, " runs past the end"));
    } else {
      return Malformed(absl::StrCat("wire type ", type, " of field ", field));
    }
    if (field == 1 && type == kLen) {
      std::string bytes;
      for (auto p : pieces) bytes.append(p);
      out->header.emplace();
      if (!out->header->ParseFromString(bytes)) return Malformed("header");
    } else if (field == 2 && type == kVarint) {
      out->offset = v;
    } else if (field == 3 && type == kLen) {
      out->data = std::move(pieces);  // last one wins, as in protobuf
      out->size = v;
    }
  }
  return grpc::Status::OK;
}

grpc::Status Fetch(grpc::ChannelInterface* channel, grpc::ClientContext* ctx,
                   const v1::FetchPolicyRequest& request,
                   const std::function<grpc::Status(const Chunk&)>& on_chunk) {
  grpc::GenericStub stub(
      std::shared_ptr<grpc::ChannelInterface>(channel, [](auto*) {}));
  grpc::CompletionQueue cq;
  // One operation in flight at a time: each Wait() collects the one started.
  auto wait = [&cq] {
    void* tag;
    bool ok = false;
    return cq.Next(&tag, &ok) && ok;
  };
  auto call = stub.PrepareCall(ctx, kFetchMethod, &cq);
  call->StartCall(nullptr);
  bool live = wait();
  if (live) {
    grpc::Slice req(request.SerializeAsString());
    call->WriteLast(grpc::ByteBuffer(&req, 1), grpc::WriteOptions(), nullptr);
    live = wait();
  }
  grpc::Status bad;
  grpc::ByteBuffer buffer;
  Chunk chunk;
  while (live) {
    call->Read(&buffer, nullptr);
    if (!wait()) break;
    bad = DecodeChunk(buffer, &chunk);
    if (bad.ok()) bad = on_chunk(chunk);
    if (!bad.ok()) {
      ctx->TryCancel();
      break;
    }
  }
  chunk = Chunk();  // the slices go back before the call ends
  grpc::Status status;
  call->Finish(&status, nullptr);
  wait();
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
  return bad.ok() ? status : bad;
}

}  // namespace cmdistill::policy_wire
