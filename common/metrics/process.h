// Metrics every Prometheus client library exports, for our own processes:
// the standard process_* families (read from /proc at scrape time) and
// cmdistill_build_info. Torch-free: the LibTorch version is the one CMake
// found at configure time.
#ifndef CMDISTILL_COMMON_METRICS_PROCESS_H_
#define CMDISTILL_COMMON_METRICS_PROCESS_H_

#include <string>
#include <vector>

#include "common/metrics/metrics.h"
#include "prometheus/metric_family.h"

namespace cmdistill::metrics {

// process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds,
// process_start_time_seconds, process_threads — of the calling process, now.
// Families whose source cannot be read are left out.
std::vector<prometheus::MetricFamily> CollectProcessMetrics();

struct BuildInfo {
  std::string version;           // the project's version
  std::string git_revision;      // at configure time ("unknown" outside git)
  std::string libtorch_version;  // the LibTorch CMake found
};
BuildInfo GetBuildInfo();

// cmdistill_build_info{version, git_revision, libtorch_version, role,
// device} = 1. `device` is where this process computes ("cpu", "cuda", or
// "none" for a torch-free role).
void RegisterBuildInfo(Registry* registry, const std::string& role,
                       const std::string& device);

}  // namespace cmdistill::metrics

#endif  // CMDISTILL_COMMON_METRICS_PROCESS_H_
