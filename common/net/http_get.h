// A minimal HTTP/1.1 GET on loopback, for scraping /metrics (the `local`
// supervisor, tests). 10 s socket timeouts.
#ifndef CMDISTILL_COMMON_NET_HTTP_GET_H_
#define CMDISTILL_COMMON_NET_HTTP_GET_H_

#include <string>

#include "absl/status/statusor.h"

namespace cmdistill::net {

// GET http://127.0.0.1:port/path; returns the body of a 200 response,
// NOT_FOUND with the status line otherwise, UNAVAILABLE when nothing answers.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path);

}  // namespace cmdistill::net

#endif  // CMDISTILL_COMMON_NET_HTTP_GET_H_
