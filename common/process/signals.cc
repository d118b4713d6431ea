#include "common/process/signals.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace cmdistill {
namespace {

std::atomic<int> g_write_fd{-1};
std::atomic<int> g_signal_count{0};
struct sigaction g_old_term, g_old_int, g_old_pipe;

void OnSignal(int sig) {
  const int saved_errno = errno;
  g_signal_count.fetch_add(1, std::memory_order_relaxed);
  const int fd = g_write_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const unsigned char b = static_cast<unsigned char>(sig);
    // A full pipe means a shutdown is already pending: dropping the byte is
    // fine.
    [[maybe_unused]] ssize_t n = write(fd, &b, 1);
  }
  errno = saved_errno;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShutdownSignal>> ShutdownSignal::Install() {
  if (g_write_fd.load() >= 0) {
    return absl::FailedPreconditionError(
        "a ShutdownSignal is already installed");
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  g_write_fd.store(fds[1]);
  g_signal_count.store(0);
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, &g_old_term);
  sigaction(SIGINT, &sa, &g_old_int);
  struct sigaction ign;
  std::memset(&ign, 0, sizeof(ign));
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  sigaction(SIGPIPE, &ign, &g_old_pipe);
  return std::unique_ptr<ShutdownSignal>(new ShutdownSignal(fds[0], fds[1]));
}

ShutdownSignal::~ShutdownSignal() {
  sigaction(SIGTERM, &g_old_term, nullptr);
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGPIPE, &g_old_pipe, nullptr);
  g_write_fd.store(-1);
  close(read_fd_);
  close(write_fd_);
}

void ShutdownSignal::Notify() {
  const unsigned char b = 0;
  [[maybe_unused]] ssize_t n = write(write_fd_, &b, 1);
}

int ShutdownSignal::signal_count() const { return g_signal_count.load(); }

int ShutdownSignal::Drain(int timeout_ms) {
  if (first_signal_ != 0) return first_signal_;
  struct pollfd p = {read_fd_, POLLIN, 0};
  int r;
  do {
    r = poll(&p, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  if (r <= 0) return 0;
  unsigned char b = 0;
  if (read(read_fd_, &b, 1) == 1) {
    first_signal_ = b == 0 ? kNotified : static_cast<int>(b);
    // Keep the pipe readable for other pollers of fd(): put a byte back.
    [[maybe_unused]] ssize_t n = write(write_fd_, &b, 1);
  }
  return first_signal_;
}

int ShutdownSignal::Wait() {
  int s = 0;
  while ((s = Drain(-1)) == 0) {
  }
  return s;
}

int ShutdownSignal::WaitUntil(absl::Time deadline) {
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return Drain(0);
    const int ms = static_cast<int>(
        std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1 << 30));
    const int s = Drain(ms);
    if (s != 0) return s;
  }
}

}  // namespace cmdistill
