#ifndef CMDISTILL_COMMON_NET_FILES_H_
#define CMDISTILL_COMMON_NET_FILES_H_

#include <string>

#include "absl/status/statusor.h"

namespace cmdistill::net {

// Reads a whole (small) file: PEM certificates, token files. NOT_FOUND /
// PERMISSION_DENIED / INVALID_ARGUMENT (empty, or a directory) with the path in
// the message. `what` names the role of the file in errors ("TLS certificate").
absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          const std::string& what);

// A token file holds one token; surrounding whitespace (a trailing newline) is
// ignored.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace cmdistill::net

#endif  // CMDISTILL_COMMON_NET_FILES_H_
