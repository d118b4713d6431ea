#include "common/metrics/http_exposer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/metrics/process.h"
#include "common/status/status_macros.h"
#include "prometheus/text_serializer.h"

namespace cmdistill::metrics {
namespace {

constexpr size_t kMaxRequestBytes = 16 * 1024;

std::string Response(int code, const char* reason,
                     const std::string& content_type, const std::string& body) {
  return absl::StrCat("HTTP/1.1 ", code, " ", reason,
                      "\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", body.size(),
                      "\r\nConnection: close\r\n\r\n", body);
}

}  // namespace

// One client connection of the event loop: the request read so far, then the
// response being written. Non-blocking; the whole exchange has a deadline.
struct Connection {
  int fd = -1;
  std::string in, out;
  size_t sent = 0;
  bool responding = false;
  bool done = false;
  absl::Time accepted;
};

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
  CMDISTILL_RETURN_IF_ERROR(SplitHostPort(listen, &host, &port));
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
  // Non-blocking: the event loop accepts until EAGAIN.
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
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
  evicted_ = &prometheus::BuildCounter()
                  .Name("cmdistill_metrics_connections_evicted_total")
                  .Help(
                      "Idle /metrics connections closed to make room for a "
                      "new one (all slots were taken)")
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
  // One thread, many connections: every socket is non-blocking and polled
  // together, so a slow or idle client holds only its own slot (at most
  // kMaxConnections, each for at most kRequestDeadline) and never delays
  // another scrape. When every slot is taken, the oldest connection that has
  // not sent a whole request yet gives its slot to the newcomer.
  std::vector<Connection> conns;
  std::vector<struct pollfd> p;
  for (;;) {
    p.clear();
    p.push_back({listen_fd_, POLLIN, 0});
    p.push_back({stop_pipe_[0], POLLIN, 0});
    absl::Time next_deadline = absl::InfiniteFuture();
    for (const Connection& c : conns) {
      p.push_back(
          {c.fd, static_cast<short>(c.responding ? POLLOUT : POLLIN), 0});
      next_deadline = std::min(next_deadline, c.accepted + kRequestDeadline);
    }
    const int timeout_ms =
        conns.empty()
            ? -1
            : static_cast<int>(std::max<int64_t>(
                  0,
                  absl::ToInt64Milliseconds(next_deadline - absl::Now()) + 1));
    const int r = poll(p.data(), p.size(), timeout_ms);
    if (r < 0 && errno != EINTR) break;
    if (r > 0 && (p[1].revents & POLLIN)) break;
    const absl::Time now = absl::Now();
    for (size_t i = 0; r > 0 && i < conns.size(); ++i) {
      const short ev = p[i + 2].revents;
      if (ev != 0) Progress(&conns[i], ev);
    }
    for (Connection& c : conns) {
      if (now - c.accepted > kRequestDeadline) c.done = true;
    }
    for (Connection& c : conns) {
      if (c.done) close(c.fd);
    }
    conns.erase(std::remove_if(conns.begin(), conns.end(),
                               [](const Connection& c) { return c.done; }),
                conns.end());
    if (r > 0 && (p[0].revents & POLLIN)) {
      for (;;) {
        const int fd =
            accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;
        if (conns.size() >= kMaxConnections) {
          auto oldest = conns.end();
          for (auto it = conns.begin(); it != conns.end(); ++it) {
            if (!it->responding &&
                (oldest == conns.end() || it->accepted < oldest->accepted))
              oldest = it;
          }
          if (oldest == conns.end()) {  // all busy answering: refuse
            close(fd);
            continue;
          }
          close(oldest->fd);
          conns.erase(oldest);
          evicted_->Increment();
        }
        Connection c;
        c.fd = fd;
        c.accepted = absl::Now();
        conns.push_back(std::move(c));
      }
    }
  }
  for (Connection& c : conns) close(c.fd);
}

void HttpExposer::Progress(Connection* c, short events) {
  if (!c->responding) {
    if (events & (POLLERR | POLLNVAL)) {
      c->done = true;
      return;
    }
    char buf[2048];
    for (;;) {
      const ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n <= 0) {  // closed or failed before a whole request
        c->done = true;
        return;
      }
      c->in.append(buf, static_cast<size_t>(n));
      if (c->in.size() > kMaxRequestBytes) {
        c->done = true;
        return;
      }
      if (c->in.find("\r\n\r\n") != std::string::npos) break;
    }
    if (c->in.find("\r\n\r\n") == std::string::npos) return;
    c->out = Respond(c->in);
    c->responding = true;
  }
  while (c->sent < c->out.size()) {
    const ssize_t n = send(c->fd, c->out.data() + c->sent,
                           c->out.size() - c->sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      c->done = true;
      return;
    }
    c->sent += static_cast<size_t>(n);
  }
  c->done = true;
}

void HttpExposer::SetHealthCheck(std::function<std::string()> check) {
  absl::MutexLock lock(&health_mu_);
  health_ = std::move(check);
}

std::string HttpExposer::Respond(const std::string& request) {
  const std::string line = request.substr(0, request.find("\r\n"));
  std::vector<std::string> parts = absl::StrSplit(line, ' ');
  if (parts.size() != 3 || (parts[0] != "GET" && parts[0] != "HEAD")) {
    return Response(405, "Method Not Allowed", "text/plain",
                    "only GET is served\n");
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
    return response;
  }
  if (path == "/healthz") {
    std::string why;
    {
      absl::MutexLock lock(&health_mu_);
      if (health_) why = health_();
    }
    if (why.empty()) return Response(200, "OK", "text/plain", "ok\n");
    return Response(503, "Service Unavailable", "text/plain", why + "\n");
  }
  return Response(404, "Not Found", "text/plain", "try /metrics\n");
}

}  // namespace cmdistill::metrics
