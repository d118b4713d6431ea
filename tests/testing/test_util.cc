#include "tests/testing/test_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace cmdistill::testing {
namespace {

pid_t Spawn(const std::vector<std::string>& argv, int* in_fd, int* out_fd,
            int* err_fd) {
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
    return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  *in_fd = in[1];
  *out_fd = out[0];
  *err_fd = err[0];
  return pid;
}

int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1;
}

int MsLeft(absl::Time deadline) {
  const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
  return ms < 0 ? 0 : static_cast<int>(std::min<int64_t>(ms, 1 << 30));
}

}  // namespace

std::unique_ptr<SmallDisk> SmallDisk::Mount(const std::string& path,
                                            const std::string& size,
                                            std::string* why) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  const std::string options = "size=" + size;
  if (mount("tmpfs", path.c_str(), "tmpfs", 0, options.c_str()) != 0) {
    *why = absl::StrCat("cannot mount a tmpfs at ", path,
                        " (needs root): ", std::strerror(errno));
    return nullptr;
  }
  return std::unique_ptr<SmallDisk>(new SmallDisk(path));
}

SmallDisk::~SmallDisk() { umount2(path_.c_str(), MNT_DETACH); }

void SmallDisk::Fill() {
  struct statvfs fs;
  if (statvfs(path_.c_str(), &fs) != 0) return;
  std::ofstream filler(path_ + "/filler", std::ios::binary);
  filler << std::string(fs.f_bavail * fs.f_bsize, 'x');
}

void SmallDisk::Free() {
  std::error_code ec;
  std::filesystem::remove(path_ + "/filler", ec);
}

TempDir::TempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string tmpl =
      absl::StrCat(base ? base : "/tmp", "/cmdistill_test_XXXXXX");
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  path_ = mkdtemp(buf.data()) ? buf.data() : "";
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

std::string TempDir::Write(const std::string& name,
                           const std::string& contents) const {
  const std::string p = File(name);
  std::error_code ec;  // "sub/file" makes "sub"
  std::filesystem::create_directories(std::filesystem::path(p).parent_path(),
                                      ec);
  std::ofstream(p, std::ios::binary) << contents;
  return p;
}

std::string CmdistillBinary() {
  const char* bin = std::getenv("CMDISTILL_BIN");
  return bin ? bin : "cmdistill";
}

RunResult RunProcess(const std::vector<std::string>& argv,
                     absl::Duration timeout, const std::string& stdin_data) {
  RunResult r;
  int in_fd, out_fd, err_fd;
  const pid_t pid = Spawn(argv, &in_fd, &out_fd, &err_fd);
  if (pid < 0) return r;
  signal(SIGPIPE, SIG_IGN);
  if (!stdin_data.empty()) {
    [[maybe_unused]] ssize_t n =
        write(in_fd, stdin_data.data(), stdin_data.size());
  }
  close(in_fd);
  const absl::Time deadline = absl::Now() + timeout;
  bool out_open = true, err_open = true;
  char buf[4096];
  while (out_open || err_open) {
    struct pollfd p[2] = {{out_open ? out_fd : -1, POLLIN, 0},
                          {err_open ? err_fd : -1, POLLIN, 0}};
    const int rc = poll(p, 2, MsLeft(deadline));
    if (rc == 0) {
      kill(pid, SIGKILL);
      break;
    }
    if (rc < 0 && errno == EINTR) continue;
    for (int i = 0; i < 2; ++i) {
      if (p[i].revents & (POLLIN | POLLHUP)) {
        const ssize_t n = read(p[i].fd, buf, sizeof(buf));
        if (n <= 0) {
          (i == 0 ? out_open : err_open) = false;
        } else {
          (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
        }
      }
    }
  }
  close(out_fd);
  close(err_fd);
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = DecodeStatus(status);
  return r;
}

Subprocess::Subprocess(const std::vector<std::string>& argv) {
  int in_fd;
  pid_ = Spawn(argv, &in_fd, &out_fd_, &err_fd_);
  if (pid_ >= 0) close(in_fd);
  fcntl(err_fd_, F_SETFL, O_NONBLOCK);
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (err_fd_ >= 0) close(err_fd_);
}

absl::StatusOr<std::string> Subprocess::ReadLine(absl::Time deadline) {
  char buf[1024];
  for (;;) {
    const size_t nl = out_buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = out_buf_.substr(0, nl);
      out_buf_.erase(0, nl + 1);
      return line;
    }
    struct pollfd p = {out_fd_, POLLIN, 0};
    const int rc = poll(&p, 1, MsLeft(deadline));
    if (rc == 0)
      return absl::DeadlineExceededError(
          "no line from the child before the deadline");
    if (rc < 0 && errno == EINTR) continue;
    const ssize_t n = read(out_fd_, buf, sizeof(buf));
    if (n <= 0) return absl::OutOfRangeError("child closed stdout");
    out_buf_.append(buf, static_cast<size_t>(n));
  }
}

absl::StatusOr<int> Subprocess::Wait(absl::Time deadline) {
  while (!reaped_) {
    const pid_t r = waitpid(pid_, &status_, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      break;
    }
    if (absl::Now() >= deadline)
      return absl::DeadlineExceededError("child still running");
    // Drain stderr while waiting so a chatty child never blocks on a full pipe.
    struct pollfd p = {err_fd_, POLLIN, 0};
    poll(&p, 1, 20);
    char buf[4096];
    ssize_t n;
    while ((n = read(err_fd_, buf, sizeof(buf))) > 0)
      err_buf_.append(buf, static_cast<size_t>(n));
  }
  return DecodeStatus(status_);
}

void Subprocess::Signal(int sig) {
  if (pid_ > 0 && !reaped_) kill(pid_, sig);
}

std::string Subprocess::Stderr() {
  char buf[4096];
  ssize_t n;
  while ((n = read(err_fd_, buf, sizeof(buf))) > 0)
    err_buf_.append(buf, static_cast<size_t>(n));
  return err_buf_;
}

absl::StatusOr<std::map<std::string, double>> ParsePrometheusText(
    const std::string& text) {
  std::map<std::string, double> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    size_t split = line.find('}');
    split = split == absl::string_view::npos ? line.find(' ') : split + 1;
    if (split == absl::string_view::npos || split >= line.size() ||
        line[split] != ' ') {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_no, ": ", line));
    }
    const std::string key(line.substr(0, split));
    std::vector<absl::string_view> rest =
        absl::StrSplit(line.substr(split + 1), ' ', absl::SkipEmpty());
    double v = 0;
    if (rest.empty() || rest.size() > 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_no, ": ", line));
    }
    if (rest[0] == "+Inf") {
      v = HUGE_VAL;
    } else if (!absl::SimpleAtod(rest[0], &v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_no, ": bad value ", rest[0]));
    }
    out[key] = v;
  }
  return out;
}

absl::StatusOr<TestCertificates> MakeTestCertificates(const std::string& dir) {
  TestCertificates c;
  c.ca_cert = dir + "/ca.pem";
  c.server_cert = dir + "/server.pem";
  c.server_key = dir + "/server.key";
  c.client_cert = dir + "/client.pem";
  c.client_key = dir + "/client.key";
  c.other_ca_cert = dir + "/other_ca.pem";
  c.other_client_cert = dir + "/other_client.pem";
  c.other_client_key = dir + "/other_client.key";
  std::ofstream(dir + "/server.ext") << "subjectAltName=DNS:localhost,IP:127.0."
                                        "0.1\nextendedKeyUsage=serverAuth\n";
  std::ofstream(dir + "/client.ext") << "extendedKeyUsage=clientAuth\n";
  const std::string d = dir;
  const std::vector<std::string> steps = {
      "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "
      "/CN=cmdistill-test-ca "
      "-keyout " +
          d + "/ca.key -out " + d + "/ca.pem",
      "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca "
      "-keyout " +
          d + "/other_ca.key -out " + d + "/other_ca.pem",
      "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout " + d +
          "/server.key -out " + d + "/server.csr",
      "openssl x509 -req -in " + d + "/server.csr -CA " + d +
          "/ca.pem -CAkey " + d + "/ca.key -CAcreateserial -days 2 -extfile " +
          d + "/server.ext -out " + d + "/server.pem",
      "openssl req -newkey rsa:2048 -nodes -subj /CN=cmdistill-actor -keyout " +
          d + "/client.key -out " + d + "/client.csr",
      "openssl x509 -req -in " + d + "/client.csr -CA " + d +
          "/ca.pem -CAkey " + d + "/ca.key -CAcreateserial -days 2 -extfile " +
          d + "/client.ext -out " + d + "/client.pem",
      "openssl req -newkey rsa:2048 -nodes -subj /CN=intruder -keyout " + d +
          "/other_client.key -out " + d + "/other_client.csr",
      "openssl x509 -req -in " + d + "/other_client.csr -CA " + d +
          "/other_ca.pem -CAkey " + d +
          "/other_ca.key -CAcreateserial -days 2 -extfile " + d +
          "/client.ext -out " + d + "/other_client.pem",
  };
  for (const std::string& s : steps) {
    const int rc = std::system((s + " >/dev/null 2>&1").c_str());
    if (rc != 0)
      return absl::InternalError(absl::StrCat("failed (", rc, "): ", s));
  }
  return c;
}

absl::Status MakeTinyTaskAndModels(const TempDir& dir, int train) {
  const std::string B = CmdistillBinary();
  const absl::Duration t = absl::Seconds(60);
  RunResult r = RunProcess({B, "datagen", "--out", dir.File("data"), "--train",
                            std::to_string(train), "--test", "2"},
                           t);
  if (r.exit_code != 0) return absl::InternalError("datagen: " + r.err);
  const std::string cfg = dir.Write(
      "config.json",
      R"({"model_type": "llama", "vocab_size": 260, "hidden_size": 32, "intermediate_size": 64,
          "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 512})");
  for (const char* role : {"student", "teacher"}) {
    r = RunProcess({B, "init-model", "--config", cfg, "--out", dir.File(role),
                    "--seed", role[0] == 's' ? "1" : "2"},
                   t);
    if (r.exit_code != 0) return absl::InternalError("init-model: " + r.err);
  }
  return absl::OkStatus();
}

int PortOf(const std::string& ready_line, const std::string& key) {
  const size_t at = ready_line.find(key + "=");
  if (at == std::string::npos) return 0;
  return std::atoi(ready_line.c_str() + at + key.size() + 1);
}

int ConnectLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace cmdistill::testing
