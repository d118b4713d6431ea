// A supervised child process (the `local` supervisor's children): fork/exec
// with stdout and stderr on one pipe, every line appended to a log file and
// handed to a callback from a reader thread. The child gets its own process
// group (a terminal's Ctrl-C reaches only the supervisor, which stops the
// children in order) and SIGTERM when the supervisor dies.
#ifndef CMDISTILL_COMMON_PROCESS_CHILD_H_
#define CMDISTILL_COMMON_PROCESS_CHILD_H_

#include <sys/types.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace cmdistill {

class ChildProcess {
 public:
  using LineCallback = std::function<void(const std::string& line)>;

  // argv[0] is the program path. `log_path` is created (appended to).
  // INTERNAL when the log cannot be opened or fork/exec fails (an exec
  // failure shows as exit code 127).
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(
      const std::string& name, const std::vector<std::string>& argv,
      const std::string& log_path, LineCallback on_line);
  ~ChildProcess();  // SIGKILLs and reaps the child if still running

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }
  void Signal(int sig);
  // The exit code (>= 0) or -signal once the child has ended; nullopt while
  // it runs. Never blocks.
  std::optional<int> Poll();
  // Waits until `deadline`; nullopt when still running then.
  std::optional<int> Wait(absl::Time deadline);
  // The last lines it printed (up to 20).
  std::vector<std::string> Tail();
  // "exit code 3", "killed by signal 9 (Killed)".
  static std::string DescribeExit(int code);

 private:
  ChildProcess() = default;
  void ReadLoop();

  std::string name_;
  pid_t pid_ = -1;
  int fd_ = -1;
  int log_fd_ = -1;
  LineCallback on_line_;
  std::thread reader_;
  absl::Mutex mu_;
  std::deque<std::string> tail_ ABSL_GUARDED_BY(mu_);
  std::optional<int> exit_;
};

}  // namespace cmdistill

#endif  // CMDISTILL_COMMON_PROCESS_CHILD_H_
