// Helpers for hermetic tests: temp folders, child processes, HTTP GET on
// loopback, Prometheus text parsing and self-signed test certificates (made
// with the openssl CLI).
#ifndef CMDISTILL_TESTS_TESTING_TEST_UTIL_H_
#define CMDISTILL_TESTS_TESTING_TEST_UTIL_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/net/http_get.h"

namespace cmdistill::testing {

// A size-limited tmpfs mounted at `path` (created), unmounted on destruction:
// a disk that can be filled. Mounting needs root: Mount() is nullptr (and
// `why` says why) where it cannot be made.
class SmallDisk {
 public:
  static std::unique_ptr<SmallDisk> Mount(const std::string& path,
                                          const std::string& size,
                                          std::string* why);
  ~SmallDisk();
  // Writes a file that takes every free byte; Free() removes it.
  void Fill();
  void Free();

 private:
  explicit SmallDisk(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// A fresh folder under $TEST_TMPDIR or /tmp, removed with its contents on
// destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  // Writes `contents` to File(name) and returns the path.
  std::string Write(const std::string& name, const std::string& contents) const;

 private:
  std::string path_;
};

// The cmdistill binary built alongside the tests ($CMDISTILL_BIN, set by
// CTest).
std::string CmdistillBinary();

struct RunResult {
  int exit_code = -1;  // -signal when killed by a signal
  std::string out, err;
};
// Runs `argv` to completion (bounded by `timeout`, then SIGKILL), capturing
// output.
RunResult RunProcess(const std::vector<std::string>& argv,
                     absl::Duration timeout,
                     const std::string& stdin_data = "");

// A child process whose stdout can be read line by line while it runs.
class Subprocess {
 public:
  explicit Subprocess(const std::vector<std::string>& argv);
  ~Subprocess();  // SIGKILLs and reaps the child if still running
  pid_t pid() const { return pid_; }
  // The next stdout line, or DEADLINE_EXCEEDED / OUT_OF_RANGE (stdout closed).
  absl::StatusOr<std::string> ReadLine(absl::Time deadline);
  // Waits for exit (bounded); returns the exit code, -signal, or
  // DEADLINE_EXCEEDED.
  absl::StatusOr<int> Wait(absl::Time deadline);
  void Signal(int sig);
  // Everything written to stderr so far (read after Wait()).
  std::string Stderr();

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  std::string out_buf_, err_buf_;
  bool reaped_ = false;
  int status_ = 0;
};

using ::cmdistill::net::HttpGet;  // common/net/http_get.h

// Parses Prometheus text format into "name{labels}" -> value; INVALID_ARGUMENT
// on a line that is not a comment, blank, or `name[{labels}] value
// [timestamp]`.
absl::StatusOr<std::map<std::string, double>> ParsePrometheusText(
    const std::string& text);

// A CA, a server certificate for localhost/127.0.0.1 signed by it, a client
// certificate signed by it, an unrelated second CA and a client certificate
// signed by that one. Files in `dir`.
struct TestCertificates {
  std::string ca_cert, server_cert, server_key, client_cert, client_key,
      other_ca_cert, other_client_cert, other_client_key;
};
absl::StatusOr<TestCertificates> MakeTestCertificates(const std::string& dir);

// With the cmdistill binary: a synthetic task (data/train.jsonl with `train`
// problems, data/test.jsonl) and randomly initialised student/ and teacher/
// model folders (a 1-layer byte-level Llama) in `dir`.
absl::Status MakeTinyTaskAndModels(const TempDir& dir, int train);

// The port of "grpc_port=N" (or "metrics_port=N" with `key`) in a READY line;
// 0 when absent.
int PortOf(const std::string& ready_line, const std::string& key = "grpc_port");

// A TCP connection to 127.0.0.1:`port` (a close-on-exec descriptor), or -1.
int ConnectLoopback(int port);

}  // namespace cmdistill::testing

#endif  // CMDISTILL_TESTS_TESTING_TEST_UTIL_H_
