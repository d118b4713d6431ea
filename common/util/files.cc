#include "common/util/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace cmdistill::util {
namespace {

std::string Error() { return std::strerror(errno); }

void FsyncFolderOf(const std::string& path) {
  const std::filesystem::path parent =
      std::filesystem::path(path).parent_path();
  const int fd = open(parent.empty() ? "." : parent.c_str(),
                      O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     size_t max_bytes) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT)
      return absl::NotFoundError(absl::StrCat("'", path, "' does not exist"));
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open '", path, "': ", Error()));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    close(fd);
    return absl::PermissionDeniedError(
        absl::StrCat("cannot read '", path, "': not a regular file"));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' is larger than ", max_bytes, " bytes (",
                     st.st_size, ")"));
  }
  std::string out;
  out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string err = Error();
      close(fd);
      return absl::PermissionDeniedError(
          absl::StrCat("cannot read '", path, "': ", err));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {  // grew while being read
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("'", path, "' is larger than ", max_bytes, " bytes"));
    }
  }
  close(fd);
  return out;
}

absl::Status WriteFileAtomically(const std::string& path,
                                 std::string_view contents) {
  const std::filesystem::path parent =
      std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
  }
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  const int fd =
      open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create '", tmp, "': ", Error()));
  }
  size_t off = 0;
  while (off < contents.size()) {
    const ssize_t w = write(fd, contents.data() + off, contents.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const std::string err = Error();
      close(fd);
      unlink(tmp.c_str());
      return absl::ResourceExhaustedError(
          absl::StrCat("writing '", tmp, "': ", err));
    }
    off += static_cast<size_t>(w);
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    const std::string err = Error();
    unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("fsync '", tmp, "': ", err));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = Error();
    unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("rename '", tmp, "' to '", path, "': ", err));
  }
  FsyncFolderOf(path);
  return absl::OkStatus();
}

}  // namespace cmdistill::util
