// `cmdistill local --monitor`: Debian's Prometheus, started beside the run with
// the project's rules (embedded from deploy/prometheus/rules.yml), scraping
// every child through a file_sd targets file the supervisor keeps current.
// Its data stays in <output_dir>/monitor/ and can be browsed after the run.
#ifndef CMDISTILL_SERVICES_PIPELINE_MONITOR_H_
#define CMDISTILL_SERVICES_PIPELINE_MONITOR_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/process/child.h"

namespace cmdistill::local {

struct MonitorOptions {
  std::string dir;                        // config, rules, targets, TSDB, log
  std::string prometheus = "prometheus";  // the executable (PATH is searched)
  int port = 9090;                        // 0: a free port
  absl::Duration scrape_interval = absl::Seconds(1);
};

// One scrape target: a child's name ("learner", "actor-2") and its /metrics
// port on 127.0.0.1.
using MetricsTargets = std::map<std::string, int>;

// The file_sd JSON for `targets`: one group per child, labelled with
// role (learner/teacher/reward/actor) and child (its name).
std::string FileSdJson(const MetricsTargets& targets);

// The prometheus.yml that `local --monitor` writes.
std::string PrometheusConfigYaml(const MonitorOptions& options);

class Monitor {
 public:
  // Writes the config, rules and an empty targets file, starts Prometheus and
  // waits (up to 30 s) until it answers /-/ready. FAILED_PRECONDITION naming
  // the package when Prometheus is not installed; UNAVAILABLE with its last
  // log lines when it does not come up.
  static absl::StatusOr<std::unique_ptr<Monitor>> Start(MonitorOptions options);
  ~Monitor();  // stops Prometheus (SIGTERM: it flushes its data)

  // Rewrites the targets file atomically when `targets` differ from the
  // last ones written; Prometheus picks the change up itself.
  absl::Status SetTargets(const MetricsTargets& targets);
  void Stop();

  int port() const { return options_.port; }
  std::string Url() const;
  // The command that serves the stored data again after the run.
  std::string ReopenCommand() const;

 private:
  explicit Monitor(MonitorOptions o) : options_(std::move(o)) {}
  MonitorOptions options_;
  std::unique_ptr<ChildProcess> child_;
  MetricsTargets written_;
  bool has_written_ = false;
};

}  // namespace cmdistill::local

#endif  // CMDISTILL_SERVICES_PIPELINE_MONITOR_H_
