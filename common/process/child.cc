#include "common/process/child.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace cmdistill {

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Spawn(
    const std::string& name, const std::vector<std::string>& argv,
    const std::string& log_path, LineCallback on_line) {
  if (argv.empty()) return absl::InvalidArgumentError("empty argv");
  std::unique_ptr<ChildProcess> c(new ChildProcess());
  c->name_ = name;
  c->on_line_ = std::move(on_line);
  c->log_fd_ =
      open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (c->log_fd_ < 0) {
    return absl::InternalError(
        absl::StrCat("cannot open ", log_path, ": ", std::strerror(errno)));
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(126);  // the supervisor is already gone
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  c->pid_ = pid;
  c->fd_ = fds[0];
  c->reader_ = std::thread([p = c.get()] { p->ReadLoop(); });
  return c;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !exit_) {
    kill(pid_, SIGKILL);
    Wait(absl::InfiniteFuture());
  }
  if (reader_.joinable()) reader_.join();
  if (fd_ >= 0) close(fd_);
  if (log_fd_ >= 0) close(log_fd_);
}

void ChildProcess::ReadLoop() {
  std::string buf;
  char chunk[4096];
  for (;;) {
    const ssize_t n = read(fd_, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (write(log_fd_, chunk, static_cast<size_t>(n)) < 0) {
      // The log is best effort; the lines still reach the callback.
    }
    buf.append(chunk, static_cast<size_t>(n));
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      {
        absl::MutexLock l(&mu_);
        tail_.push_back(line);
        if (tail_.size() > 20) tail_.pop_front();
      }
      if (on_line_) on_line_(line);
    }
  }
  if (!buf.empty()) {
    absl::MutexLock l(&mu_);
    tail_.push_back(buf);
  }
}

void ChildProcess::Signal(int sig) {
  if (pid_ > 0 && !exit_) kill(pid_, sig);
}

std::optional<int> ChildProcess::Poll() {
  if (exit_) return exit_;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r != pid_) return std::nullopt;
  exit_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  if (reader_.joinable()) reader_.join();  // the pipe drains to EOF
  return exit_;
}

std::optional<int> ChildProcess::Wait(absl::Time deadline) {
  for (;;) {
    if (auto e = Poll()) return e;
    if (absl::Now() >= deadline) return std::nullopt;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

std::vector<std::string> ChildProcess::Tail() {
  absl::MutexLock l(&mu_);
  return {tail_.begin(), tail_.end()};
}

std::string ChildProcess::DescribeExit(int code) {
  if (code >= 0) return absl::StrCat("exit code ", code);
  return absl::StrCat("killed by signal ", -code, " (", strsignal(-code), ")");
}

}  // namespace cmdistill
