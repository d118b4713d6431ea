#include "common/metrics/http_exposer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/metrics/process.h"
#include "prometheus/text_serializer.h"

namespace cmdistill::metrics {
namespace {

constexpr int kIoTimeoutMs = 2000;
constexpr size_t kMaxRequestBytes = 16 * 1024;

bool WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    struct pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, kIoTimeoutMs) <= 0) return false;
    const ssize_t n =
        send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string Response(int code, const char* reason,
                     const std::string& content_type, const std::string& body) {
  return absl::StrCat("HTTP/1.1 ", code, " ", reason,
                      "\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", body.size(),
                      "\r\nConnection: close\r\n\r\n", body);
}

}  // namespace

absl::Status SplitHostPort(const std::string& address, std::string* host,
                           int* port) {
  std::string h, p;
  if (!address.empty() && address[0] == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat(
          "malformed address '", address, "': expected [v6-host]:port"));
    }
    h = address.substr(1, close - 1);
    p = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "malformed address '", address, "': expected host:port"));
    }
    h = address.substr(0, colon);
    p = address.substr(colon + 1);
  }
  int port_num = -1;
  if (!absl::SimpleAtoi(p, &port_num) || port_num < 0 || port_num > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "malformed address '", address, "': port must be 0..65535"));
  }
  *host = h;
  *port = port_num;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<HttpExposer>> HttpExposer::Start(
    std::string listen, std::shared_ptr<Registry> registry) {
  std::string host;
  int port = 0;
  if (auto s = SplitHostPort(listen, &host, &port); !s.ok()) return s;
  struct addrinfo hints;
  std::memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  struct addrinfo* res = nullptr;
  const std::string port_str = std::to_string(port);
  const int gai = getaddrinfo(host.empty() ? nullptr : host.c_str(),
                              port_str.c_str(), &hints, &res);
  if (gai != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", listen, "': ", gai_strerror(gai)));
  }
  int fd = -1;
  std::string last_error = "no address";
  for (struct addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 64) == 0)
      break;
    last_error = std::strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for metrics on '",
                                               listen, "': ", last_error));
  }
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &len);
  const int bound =
      ss.ss_family == AF_INET6
          ? ntohs(reinterpret_cast<struct sockaddr_in6*>(&ss)->sin6_port)
          : ntohs(reinterpret_cast<struct sockaddr_in*>(&ss)->sin_port);
  auto exposer = std::unique_ptr<HttpExposer>(
      new HttpExposer(fd, bound, std::move(registry)));
  if (pipe2(exposer->stop_pipe_, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  exposer->thread_ = std::thread([e = exposer.get()] { e->Serve(); });
  return exposer;
}

HttpExposer::HttpExposer(int listen_fd, int port,
                         std::shared_ptr<Registry> registry)
    : listen_fd_(listen_fd), port_(port), registry_(std::move(registry)) {
  scrapes_ = &prometheus::BuildCounter()
                  .Name("cmdistill_metrics_scrapes_total")
                  .Help("HTTP requests served by the /metrics endpoint")
                  .Register(*registry_)
                  .Add({});
}

HttpExposer::~HttpExposer() {
  Stop();
  for (int fd : stop_pipe_) {
    if (fd >= 0) close(fd);
  }
}

void HttpExposer::Stop() {
  if (stopped_.exchange(true)) return;
  if (stop_pipe_[1] >= 0) {
    const char b = 1;
    [[maybe_unused]] ssize_t n = write(stop_pipe_[1], &b, 1);
  }
  if (thread_.joinable()) thread_.join();
  close(listen_fd_);  // refuse new connections at once
  listen_fd_ = -1;
}

void HttpExposer::Serve() {
  for (;;) {
    struct pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    const int r = poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (p[1].revents & POLLIN)) return;
    if (!(p[0].revents & POLLIN)) continue;
    const int conn = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    HandleConnection(conn);
    close(conn);
  }
}

void HttpExposer::HandleConnection(int fd) {
  std::string request;
  char buf[2048];
  while (request.find("\r\n\r\n") == std::string::npos &&
         request.size() < kMaxRequestBytes) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, kIoTimeoutMs) <= 0) return;
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    request.append(buf, static_cast<size_t>(n));
  }
  const std::string line = request.substr(0, request.find("\r\n"));
  std::vector<std::string> parts = absl::StrSplit(line, ' ');
  if (parts.size() != 3 || (parts[0] != "GET" && parts[0] != "HEAD")) {
    WriteAll(fd, Response(405, "Method Not Allowed", "text/plain",
                          "only GET is served\n"));
    return;
  }
  std::string path = parts[1].substr(0, parts[1].find('?'));
  if (path == "/metrics") {
    scrapes_->Increment();
    std::vector<prometheus::MetricFamily> families = registry_->Collect();
    for (auto& f : CollectProcessMetrics()) families.push_back(std::move(f));
    std::string body = prometheus::TextSerializer().Serialize(families);
    std::string response =
        Response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", body);
    if (parts[0] == "HEAD") response.resize(response.size() - body.size());
    WriteAll(fd, response);
  } else if (path == "/healthz") {
    WriteAll(fd, Response(200, "OK", "text/plain", "ok\n"));
  } else {
    WriteAll(fd, Response(404, "Not Found", "text/plain", "try /metrics\n"));
  }
}

}  // namespace cmdistill::metrics
