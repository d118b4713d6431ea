// A minimal HTTP/1.1 server for Prometheus scrapes: GET /metrics (text format
// 0.0.4) and GET /healthz. One thread, one connection at a time, Connection:
// close — scrapes are rare and small, so this is all a metrics port needs, and
// it starts no civetweb threads (see STYLE.md: civetweb cannot start threads in
// a LibTorch process).
#ifndef CMDISTILL_COMMON_METRICS_HTTP_EXPOSER_H_
#define CMDISTILL_COMMON_METRICS_HTTP_EXPOSER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/metrics/metrics.h"

namespace cmdistill::metrics {

class HttpExposer {
 public:
  // Binds `listen` ("host:port", "[v6]:port"; port 0 picks a free port) and
  // starts serving `registry`. INVALID_ARGUMENT for a malformed address,
  // UNAVAILABLE when it cannot bind.
  static absl::StatusOr<std::unique_ptr<HttpExposer>> Start(
      std::string listen, std::shared_ptr<Registry> registry);
  ~HttpExposer();  // Stop()s.

  HttpExposer(const HttpExposer&) = delete;
  HttpExposer& operator=(const HttpExposer&) = delete;

  int port() const { return port_; }
  // Idempotent; returns once the serving thread has exited.
  void Stop();

 private:
  HttpExposer(int listen_fd, int port, std::shared_ptr<Registry> registry);
  void Serve();
  void HandleConnection(int fd);

  int listen_fd_;
  int port_;
  int stop_pipe_[2] = {-1, -1};
  std::shared_ptr<Registry> registry_;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
  prometheus::Counter* scrapes_ = nullptr;
};

// Splits "host:port" / "[v6]:port" / ":port" into its parts (host empty = all
// interfaces).
absl::Status SplitHostPort(const std::string& address, std::string* host,
                           int* port);

}  // namespace cmdistill::metrics

#endif  // CMDISTILL_COMMON_METRICS_HTTP_EXPOSER_H_
