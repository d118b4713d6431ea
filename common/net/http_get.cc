#include "common/net/http_get.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace cmdistill::net {

absl::StatusOr<std::string> HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {
      10, 0};  // a hung server fails the test instead of hanging it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) !=
      0) {
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("connect to port ", port, ": ", strerror(errno)));
  }
  const std::string req =
      absl::StrCat("GET ", path,
                   " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(req.size())) {
    close(fd);
    return absl::UnavailableError("send failed");
  }
  std::string resp;
  char buf[8192];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
    resp.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t header_end = resp.find("\r\n\r\n");
  if (header_end == std::string::npos)
    return absl::DataLossError("no HTTP header end");
  const std::string status_line = resp.substr(0, resp.find("\r\n"));
  if (status_line.find(" 200 ") == std::string::npos) {
    // The body says why (e.g. /healthz's reason), on one line.
    std::string body = resp.substr(header_end + 4, 200);
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r'))
      body.pop_back();
    return absl::NotFoundError(
        body.empty() ? status_line : absl::StrCat(status_line, ": ", body));
  }
  return resp.substr(header_end + 4);
}

}  // namespace cmdistill::net
