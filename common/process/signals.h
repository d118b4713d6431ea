// SIGTERM/SIGINT -> orderly shutdown, in a way that works in processes linking
// LibTorch.
//
// LibTorch starts a thread before main() with no signals blocked, so
// sigwait()-style handling (block in every thread, wait in one) cannot work:
// the signal may land on that thread. Instead a sigaction handler writes the
// signal number to a self-pipe (async-signal-safe) and the main thread waits on
// the pipe.
//
// Usage in a service's wiring:
//   CMDISTILL_ASSIGN_OR_RETURN(auto signals, ShutdownSignal::Install());
//   ... start servers ...
//   int sig = signals->Wait();          // blocks until SIGTERM/SIGINT or
//   Notify()
//   ... drain, Shutdown(grace), join ...; return 0;
#ifndef CMDISTILL_COMMON_PROCESS_SIGNALS_H_
#define CMDISTILL_COMMON_PROCESS_SIGNALS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace cmdistill {

class ShutdownSignal {
 public:
  // Installs the handlers for SIGTERM and SIGINT and ignores SIGPIPE. At most
  // one instance may exist at a time (FAILED_PRECONDITION otherwise). The
  // destructor restores the previous handlers.
  static absl::StatusOr<std::unique_ptr<ShutdownSignal>> Install();
  ~ShutdownSignal();

  ShutdownSignal(const ShutdownSignal&) = delete;
  ShutdownSignal& operator=(const ShutdownSignal&) = delete;

  // Blocks until a signal arrives or Notify() is called; returns the signal
  // number (or kNotified). Returns the first signal again on later calls
  // without blocking.
  int Wait();
  // As Wait(), but gives up at `deadline` and then returns 0.
  int WaitUntil(absl::Time deadline);

  // Triggers shutdown from inside the process (a fatal error, a supervisor, a
  // test). Thread-safe and async-signal-safe.
  void Notify();

  // A file descriptor that becomes readable once shutdown was requested, for
  // poll() loops.
  int fd() const { return read_fd_; }

  // How many signals arrived so far (a second Ctrl-C can mean "stop now").
  int signal_count() const;

  static constexpr int kNotified = -1;

 private:
  ShutdownSignal(int read_fd, int write_fd)
      : read_fd_(read_fd), write_fd_(write_fd) {}
  int Drain(int timeout_ms);

  int read_fd_;
  int write_fd_;
  int first_signal_ = 0;
};

}  // namespace cmdistill

#endif  // CMDISTILL_COMMON_PROCESS_SIGNALS_H_
