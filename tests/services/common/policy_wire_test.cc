// FetchPolicy's hand-built chunks: what the learner encodes is an ordinary
// FetchPolicyResponse, its data is the snapshot's memory (not a copy), the
// decoder reads it back in place and refuses malformed bytes; XXH3's hex.
#include "services/common/policy_wire.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>

#include <memory>
#include <string>
#include <vector>

#include "common/util/xxh3.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cmdistill::policy_wire {
namespace {

std::string Joined(const Chunk& c) {
  std::string out;
  for (auto p : c.data) out.append(p);
  return out;
}

grpc::ByteBuffer Raw(const std::string& bytes) {
  grpc::Slice s(bytes);
  return grpc::ByteBuffer(&s, 1);
}

TEST(Xxh3, KnownValueAndIncrementalEqualsWhole) {
  // XXH3-128 of no bytes (seed 0), high half first as xxhsum -H2 prints it.
  EXPECT_EQ(Xxh3Hex(""), "99aa06d3014798d86001c324468d497f");
  std::string data(100000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  Xxh3 h;
  h.Update(std::string_view(data).substr(0, 33));
  h.Update(std::string_view(data).substr(33, 4000));
  h.Update(std::string_view(data).substr(4033));
  EXPECT_EQ(h.Hex(), Xxh3Hex(data));
  const std::string before = Xxh3Hex(data);
  data[500] ^= 1;  // one bit
  EXPECT_NE(Xxh3Hex(data), before);
}

TEST(PolicyWire, ChunksAreProtobufMessagesThatAliasTheSnapshot) {
  auto snapshot = std::make_shared<std::string>(3 << 20, 'w');
  (*snapshot)[1 << 20] = 'x';
  v1::PolicyHeader header;
  header.set_policy_version(7);
  header.set_total_bytes(snapshot->size());
  header.set_xxh3_128_hex(Xxh3Hex(*snapshot));
  const std::string_view data =
      std::string_view(*snapshot).substr(1 << 20, 1 << 20);
  grpc::ByteBuffer wire = EncodeChunk(&header, 1 << 20, data, snapshot);
  EXPECT_EQ(snapshot.use_count(), 2);  // the data slice holds the snapshot

  Chunk c;
  ASSERT_TRUE(DecodeChunk(wire, &c).ok());
  ASSERT_TRUE(c.header.has_value());
  EXPECT_EQ(c.header->policy_version(), 7u);
  EXPECT_EQ(c.header->xxh3_128_hex(), header.xxh3_128_hex());
  EXPECT_EQ(c.offset, 1u << 20);
  EXPECT_EQ(c.size, 1u << 20);
  EXPECT_EQ(Joined(c), std::string(data));
  // No copy on the sending side: the data piece is the snapshot's memory.
  ASSERT_FALSE(c.data.empty());
  EXPECT_EQ(c.data[0].data(), snapshot->data() + (1 << 20));

  // What the generated code parses from the same bytes.
  grpc::ByteBuffer copy(wire);
  v1::FetchPolicyResponse parsed;
  ASSERT_TRUE(grpc::SerializationTraits<v1::FetchPolicyResponse>::Deserialize(
                  &copy, &parsed)
                  .ok());
  EXPECT_EQ(parsed.header().policy_version(), 7u);
  EXPECT_EQ(parsed.offset(), 1u << 20);
  EXPECT_EQ(parsed.data(), std::string(data));

  // A later chunk carries no header; the snapshot is released with the
  // buffers that referenced it.
  grpc::ByteBuffer next = EncodeChunk(nullptr, 2 << 20, data, snapshot);
  ASSERT_TRUE(DecodeChunk(next, &c).ok());
  EXPECT_FALSE(c.header.has_value());
  EXPECT_EQ(c.offset, 2u << 20);
  c = Chunk();
  wire.Clear();
  next.Clear();
  EXPECT_EQ(snapshot.use_count(), 1);
}

TEST(PolicyWire, DecodesWhatTheGeneratedCodeWritesAndSkipsUnknownFields) {
  v1::FetchPolicyResponse m;
  m.set_offset(5);
  m.set_data("hello");
  std::string bytes = m.SerializeAsString();
  bytes += std::string("\x48\x2a", 2);  // field 9, varint 42: unknown
  Chunk c;
  ASSERT_TRUE(DecodeChunk(Raw(bytes), &c).ok());
  EXPECT_EQ(c.offset, 5u);
  EXPECT_EQ(Joined(c), "hello");
}

TEST(PolicyWire, MalformedChunksAreDataLoss) {
  Chunk c;
  // Data field claiming 100 bytes with 3 present.
  grpc::Status s = DecodeChunk(Raw(std::string("\x1a\x64"
                                               "abc",
                                               5)),
                               &c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(s.error_message(), ::testing::HasSubstr("runs past the end"));
  // A truncated varint.
  s = DecodeChunk(Raw(std::string("\x10\x80", 2)), &c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS);
  // Wire type 3 (a group start) is not in this message.
  s = DecodeChunk(Raw(std::string("\x0b", 1)), &c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS);
  // A header that is not a PolicyHeader.
  s = DecodeChunk(Raw(std::string("\x0a\x02\xff\xff", 4)), &c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS);
}

}  // namespace
}  // namespace cmdistill::policy_wire
