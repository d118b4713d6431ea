// Conversion between absl::Status (used everywhere inside cmdistill) and
// grpc::Status (only at the gRPC adapters). The canonical codes have the same
// numbers in both.
#ifndef CMDISTILL_COMMON_STATUS_GRPC_STATUS_H_
#define CMDISTILL_COMMON_STATUS_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace cmdistill {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace cmdistill

#endif  // CMDISTILL_COMMON_STATUS_GRPC_STATUS_H_
