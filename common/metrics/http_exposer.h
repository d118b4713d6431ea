// A minimal HTTP/1.1 server for Prometheus scrapes: GET /metrics (text format
// 0.0.4) and GET /healthz (200, or 503 with the reason its health check
// gives). One thread with a non-blocking event loop over at
// most kMaxConnections connections, each with a whole-request deadline
// (kRequestDeadline), Connection: close: a slow or idle client cannot delay
// another scrape. It starts no civetweb threads (see STYLE.md: civetweb cannot
// start threads in a LibTorch process).
#ifndef CMDISTILL_COMMON_METRICS_HTTP_EXPOSER_H_
#define CMDISTILL_COMMON_METRICS_HTTP_EXPOSER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics/metrics.h"

namespace cmdistill::metrics {

struct Connection;

class HttpExposer {
 public:
  static constexpr size_t kMaxConnections = 64;
  static constexpr absl::Duration kRequestDeadline = absl::Seconds(5);

  // Binds `listen` ("host:port", "[v6]:port"; port 0 picks a free port) and
  // starts serving `registry`. INVALID_ARGUMENT for a malformed address,
  // UNAVAILABLE when it cannot bind.
  static absl::StatusOr<std::unique_ptr<HttpExposer>> Start(
      std::string listen, std::shared_ptr<Registry> registry);
  ~HttpExposer();  // Stop()s.

  HttpExposer(const HttpExposer&) = delete;
  HttpExposer& operator=(const HttpExposer&) = delete;

  int port() const { return port_; }
  // What GET /healthz reports: "" = healthy (200 "ok"), anything else is the
  // reason for a 503. Without a check (or after SetHealthCheck(nullptr)) it is
  // always 200. Called on the serving thread, once per /healthz request.
  void SetHealthCheck(std::function<std::string()> check);
  // Idempotent; returns once the serving thread has exited.
  void Stop();

 private:
  HttpExposer(int listen_fd, int port, std::shared_ptr<Registry> registry);
  void Serve();
  // Reads what a connection sent or writes what it is owed; marks it done.
  void Progress(struct Connection* c, short events);
  std::string Respond(const std::string& request);

  int listen_fd_;
  int port_;
  int stop_pipe_[2] = {-1, -1};
  std::shared_ptr<Registry> registry_;
  absl::Mutex health_mu_;
  std::function<std::string()> health_ ABSL_GUARDED_BY(health_mu_);
  std::thread thread_;
  std::atomic<bool> stopped_{false};
  prometheus::Counter* scrapes_ = nullptr;
  prometheus::Counter* evicted_ = nullptr;
};

// Splits "host:port" / "[v6]:port" / ":port" into its parts (host empty = all
// interfaces).
absl::Status SplitHostPort(const std::string& address, std::string* host,
                           int* port);

}  // namespace cmdistill::metrics

#endif  // CMDISTILL_COMMON_METRICS_HTTP_EXPOSER_H_
