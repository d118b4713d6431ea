#include "app/local/monitor.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/net/http_get.h"
#include "common/status/status_macros.h"
#include "common/util/files.h"
#include "embedded_rules.h"  // generated: deploy/prometheus/rules.yml
#include "nlohmann/json.hpp"

namespace cmdistill::local {
namespace {

namespace fs = std::filesystem;

// A port nothing listens on now (the kernel's choice for port 0).
absl::StatusOr<int> FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  if (port <= 0) return absl::InternalError("cannot find a free port");
  return port;
}

std::string RoleOf(const std::string& child) {
  for (const char* role : {"learner", "teacher", "reward", "actor"}) {
    if (child.rfind(role, 0) == 0) return role;
  }
  return child;
}

// The absolute path of `program` (searched on PATH when it has no '/').
std::string FindProgram(const std::string& program) {
  if (program.find('/') != std::string::npos)
    return ::access(program.c_str(), X_OK) == 0 ? program : "";
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    const std::string candidate =
        absl::StrCat(dirs.substr(start, end - start), "/", program);
    if (end > start && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

}  // namespace

std::string FileSdJson(const MetricsTargets& targets) {
  nlohmann::json groups = nlohmann::json::array();
  for (const auto& [child, port] : targets) {
    groups.push_back({{"targets", {absl::StrCat("127.0.0.1:", port)}},
                      {"labels", {{"role", RoleOf(child)}, {"child", child}}}});
  }
  return groups.dump(2) + "\n";
}

std::string PrometheusConfigYaml(const MonitorOptions& o) {
  const std::string every =
      absl::StrCat(absl::ToInt64Milliseconds(o.scrape_interval), "ms");
  return absl::StrCat(
      "# Written by cmdistill local --monitor.\n"
      "global:\n"
      "  scrape_interval: ",
      every, "\n  evaluation_interval: ", every,
      "\nrule_files:\n"
      "  - rules.yml\n"
      "scrape_configs:\n"
      "  - job_name: cmdistill\n"
      "    file_sd_configs:\n"
      "      - files: [targets.json]\n"
      "        refresh_interval: 5s\n");
}

absl::StatusOr<std::unique_ptr<Monitor>> Monitor::Start(MonitorOptions o) {
  const std::string exe = FindProgram(o.prometheus);
  if (exe.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("--monitor needs Prometheus: '", o.prometheus,
                     "' was not found (Debian: apt-get install prometheus)"));
  }
  std::error_code ec;
  fs::create_directories(o.dir + "/data", ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create ", o.dir, "/data: ", ec.message()));
  }
  if (o.port == 0) {
    CMDISTILL_ASSIGN_OR_RETURN(auto port, FreePort());
    o.port = port;
  }
  for (const auto& [name, body] :
       {std::pair<std::string, std::string>{"prometheus.yml",
                                            PrometheusConfigYaml(o)},
        {"rules.yml", kPrometheusRulesYml},
        {"targets.json", "[]\n"}}) {
    CMDISTILL_RETURN_IF_ERROR(
        util::WriteFileAtomically(o.dir + "/" + name, body));
  }
  std::unique_ptr<Monitor> m(new Monitor(o));
  m->has_written_ = true;
  const std::string dir = fs::absolute(o.dir).string();
  CMDISTILL_ASSIGN_OR_RETURN(
      auto child, ChildProcess::Spawn(
                      "prometheus",
                      {exe, "--config.file=" + dir + "/prometheus.yml",
                       "--storage.tsdb.path=" + dir + "/data",
                       absl::StrCat("--web.listen-address=127.0.0.1:", o.port)},
                      dir + "/prometheus.log", [](const std::string&) {}));
  m->child_ = std::move(child);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    if (auto code = m->child_->Poll()) {
      return absl::UnavailableError(absl::StrCat(
          "Prometheus exited (", ChildProcess::DescribeExit(*code),
          "); last lines: ", absl::StrJoin(m->child_->Tail(), " | "),
          " (log: ", dir, "/prometheus.log)"));
    }
    if (net::HttpGet(o.port, "/-/ready").ok()) return m;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::UnavailableError(
      absl::StrCat("Prometheus did not answer /-/ready on port ", o.port,
                   " within 30 s (log: ", dir, "/prometheus.log)"));
}

Monitor::~Monitor() { Stop(); }

void Monitor::Stop() {
  if (child_ == nullptr || child_->Poll()) return;
  child_->Signal(SIGTERM);
  if (!child_->Wait(absl::Now() + absl::Seconds(20))) child_->Signal(SIGKILL);
  child_->Wait(absl::Now() + absl::Seconds(5));
}

absl::Status Monitor::SetTargets(const MetricsTargets& targets) {
  if (has_written_ && targets == written_) return absl::OkStatus();
  CMDISTILL_RETURN_IF_ERROR(util::WriteFileAtomically(
      options_.dir + "/targets.json", FileSdJson(targets)));
  written_ = targets;
  has_written_ = true;
  return absl::OkStatus();
}

std::string Monitor::Url() const {
  return absl::StrCat("http://127.0.0.1:", options_.port);
}

std::string Monitor::ReopenCommand() const {
  const std::string dir = fs::absolute(options_.dir).string();
  return absl::StrCat("prometheus --config.file=", dir,
                      "/prometheus.yml --storage.tsdb.path=", dir,
                      "/data --web.listen-address=127.0.0.1:", options_.port);
}

}  // namespace cmdistill::local
