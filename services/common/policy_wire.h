// FetchPolicy's messages without protobuf copies of the weights.
//
// The bytes on the wire are ordinary FetchPolicyResponse messages (any client
// with the generated stub can read them); only how they are built and read
// changes. The learner writes each chunk as a ByteBuffer whose `data` field is
// a slice of the immutable snapshot itself (no copy into a protobuf string,
// none into a serialized buffer), and the actor reads the received slices in
// place, copying each byte once: into its receive buffer.
#ifndef CMDISTILL_SERVICES_COMMON_POLICY_WIRE_H_
#define CMDISTILL_SERVICES_COMMON_POLICY_WIRE_H_

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "cmdistill/v1/learner.pb.h"

namespace cmdistill::policy_wire {

// One FetchPolicyResponse: `header` (first chunk only), `offset`, and `data`
// as a view of memory that `owner` keeps alive until gRPC has sent it.
grpc::ByteBuffer EncodeChunk(const v1::PolicyHeader* header, uint64_t offset,
                             std::string_view data,
                             std::shared_ptr<const void> owner);

// A decoded chunk: its data as views into the received slices (valid while
// the chunk lives).
struct Chunk {
  std::optional<v1::PolicyHeader> header;
  uint64_t offset = 0;
  uint64_t size = 0;                   // sum of the pieces
  std::vector<std::string_view> data;  // in order
  std::vector<grpc::Slice> slices;     // what `data` points into
};

// Parses one serialized FetchPolicyResponse (any field order, unknown fields
// skipped). DATA_LOSS names what is malformed.
grpc::Status DecodeChunk(const grpc::ByteBuffer& buffer, Chunk* out);

// Runs FetchPolicy on `channel` as a generic call (so that responses arrive
// as ByteBuffers) and hands each decoded chunk to `on_chunk`; a status other
// than OK from it cancels the call and is returned. Otherwise returns the
// call's status, or DATA_LOSS for a chunk that does not parse.
grpc::Status Fetch(grpc::ChannelInterface* channel, grpc::ClientContext* ctx,
                   const v1::FetchPolicyRequest& request,
                   const std::function<grpc::Status(const Chunk&)>& on_chunk);

}  // namespace cmdistill::policy_wire

#endif  // CMDISTILL_SERVICES_COMMON_POLICY_WIRE_H_
