#include "common/metrics/process.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/util/files.h"
#include "prometheus/gauge.h"

#ifndef CMDISTILL_VERSION
#define CMDISTILL_VERSION "unknown"
#endif
#ifndef CMDISTILL_GIT_REVISION
#define CMDISTILL_GIT_REVISION "unknown"
#endif
#ifndef CMDISTILL_LIBTORCH_VERSION
#define CMDISTILL_LIBTORCH_VERSION "unknown"
#endif

namespace cmdistill::metrics {
namespace {

prometheus::MetricFamily One(const std::string& name, const std::string& help,
                             prometheus::MetricType type, double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(m);
  return f;
}

std::string ReadAll(const char* path) {
  return util::ReadFile(path).value_or("");
}

// Seconds since the epoch at which the machine booted (/proc/stat btime).
double BootTime() {
  std::istringstream in(ReadAll("/proc/stat"));
  std::string key;
  double v = 0;
  while (in >> key) {
    if (key == "btime" && in >> v) return v;
    in.ignore(1 << 20, '\n');
  }
  return -1;
}

}  // namespace

std::vector<prometheus::MetricFamily> CollectProcessMetrics() {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> out;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  // /proc/self/stat: the fields after the parenthesised command name.
  const std::string stat = ReadAll("/proc/self/stat");
  const size_t close = stat.rfind(')');
  if (close != std::string::npos && ticks > 0) {
    std::vector<std::string> f =
        absl::StrSplit(stat.substr(close + 2), ' ', absl::SkipEmpty());
    // f[0] is field 3 (state): utime 14, stime 15, num_threads 20,
    // starttime 22, vsize 23, rss 24.
    double utime, stime, threads, start, vsize, rss;
    if (f.size() > 21 && absl::SimpleAtod(f[11], &utime) &&
        absl::SimpleAtod(f[12], &stime) && absl::SimpleAtod(f[17], &threads) &&
        absl::SimpleAtod(f[19], &start) && absl::SimpleAtod(f[20], &vsize) &&
        absl::SimpleAtod(f[21], &rss)) {
      out.push_back(One("process_cpu_seconds_total",
                        "Total user and system CPU time spent in seconds.",
                        MetricType::Counter, (utime + stime) / ticks));
      out.push_back(One("process_resident_memory_bytes",
                        "Resident memory size in bytes.", MetricType::Gauge,
                        rss * page));
      out.push_back(One("process_virtual_memory_bytes",
                        "Virtual memory size in bytes.", MetricType::Gauge,
                        vsize));
      out.push_back(One("process_threads", "Number of OS threads.",
                        MetricType::Gauge, threads));
      const double boot = BootTime();
      if (boot >= 0) {
        out.push_back(
            One("process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                MetricType::Gauge, boot + start / ticks));
      }
    }
  }
  if (DIR* d = opendir("/proc/self/fd")) {
    double n = 0;
    while (struct dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    closedir(d);
    out.push_back(One("process_open_fds", "Number of open file descriptors.",
                      MetricType::Gauge, n - 1));  // the one readdir holds
  }
  struct rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    out.push_back(One("process_max_fds",
                      "Maximum number of open file descriptors.",
                      MetricType::Gauge, static_cast<double>(lim.rlim_cur)));
  }
  return out;
}

BuildInfo GetBuildInfo() {
  return {CMDISTILL_VERSION, CMDISTILL_GIT_REVISION,
          CMDISTILL_LIBTORCH_VERSION};
}

void RegisterBuildInfo(Registry* registry, const std::string& role,
                       const std::string& device) {
  const BuildInfo b = GetBuildInfo();
  prometheus::BuildGauge()
      .Name("cmdistill_build_info")
      .Help(
          "Build of this process (value 1): version, git revision, LibTorch "
          "version, role and compute device")
      .Register(*registry)
      .Add({{"version", b.version},
            {"git_revision", b.git_revision},
            {"libtorch_version", b.libtorch_version},
            {"role", role},
            {"device", device}})
      .Set(1);
}

}  // namespace cmdistill::metrics
