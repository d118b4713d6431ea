#include "common/net/files.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/util/files.h"

namespace cmdistill::net {

absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          const std::string& what) {
  constexpr off_t kMaxBytes = 16 << 20;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    const int e = errno;
    const std::string msg =
        absl::StrCat(what, " '", path, "': ", std::strerror(e));
    if (e == EACCES) return absl::PermissionDeniedError(msg);
    return absl::NotFoundError(msg);
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", path, "' is not a file"));
  }
  if (st.st_size > kMaxBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", path, "' is larger than 16 MiB"));
  }
  auto read = util::ReadFile(path, kMaxBytes);
  if (!read.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat(what, " '", path, "' cannot be opened"));
  }
  std::string data = *std::move(read);
  if (data.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", path, "' is empty"));
  }
  return data;
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  CMDISTILL_ASSIGN_OR_RETURN(auto data, ReadSmallFile(path, "token file"));
  std::string token(absl::StripAsciiWhitespace(data));
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token file '", path, "' holds only whitespace"));
  }
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          absl::StrCat("token file '", path,
                       "': the token must be printable ASCII without spaces"));
    }
  }
  return token;
}

}  // namespace cmdistill::net
