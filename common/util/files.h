// Whole-file reads and crash-safe writes, with errors that name the file.
#ifndef CMDISTILL_COMMON_UTIL_FILES_H_
#define CMDISTILL_COMMON_UTIL_FILES_H_

#include <cstddef>
#include <limits>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace cmdistill::util {

// The whole file. NOT_FOUND when it does not exist, PERMISSION_DENIED when it
// cannot be opened or read (a directory, no rights), INVALID_ARGUMENT when it
// is larger than `max_bytes`.
absl::StatusOr<std::string> ReadFile(
    const std::string& path,
    size_t max_bytes = std::numeric_limits<size_t>::max());

// Replaces `path` with `contents` so that a crash leaves either the old file
// or the new one, never a torn one: a temporary beside it (missing parent
// folders are made), written in full, fsynced, renamed over `path`, and the
// folder fsynced. RESOURCE_EXHAUSTED for a short write (disk full),
// PERMISSION_DENIED when the temporary cannot be made, INTERNAL otherwise;
// the temporary is removed on failure.
absl::Status WriteFileAtomically(const std::string& path,
                                 std::string_view contents);

}  // namespace cmdistill::util

#endif  // CMDISTILL_COMMON_UTIL_FILES_H_
