#include "services/bench/overload.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "cmdistill/v1/teacher.grpc.pb.h"
#include "common/metrics/metrics.h"
#include "common/net/client.h"
#include "common/net/server.h"
#include "services/teacher/model_scorer.h"
#include "services/teacher/teacher_service.h"

namespace cmdistill::bench {
namespace {

double RssMb() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return static_cast<double>(resident) *
         static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

double GaugeValue(prometheus::Registry& registry, const std::string& name) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) return m.gauge.value;
  }
  return 0;
}

LatencyStats StatsOf(std::vector<double> ms) {
  LatencyStats s;
  s.count = static_cast<int64_t>(ms.size());
  if (ms.empty()) return s;
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(q * ms.size()))];
  };
  s.p50_ms = at(0.5);
  s.p99_ms = at(0.99);
  s.max_ms = ms.back();
  return s;
}

struct Samples {
  absl::Mutex mu;
  std::vector<double> served, refused;
  int64_t other = 0;
};

// `clients` threads calling Score until `until`.
void Drive(v1::TeacherService::Stub* stub, const v1::ScoreRequest& req,
           int clients, absl::Time until, Samples* out) {
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      while (absl::Now() < until) {
        grpc::ClientContext ctx;
        ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
        v1::ScoreResponse resp;
        const absl::Time t0 = absl::Now();
        const grpc::Status s = stub->Score(&ctx, req, &resp);
        const double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
        absl::MutexLock l(&out->mu);
        if (s.ok()) {
          out->served.push_back(ms);
        } else if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
          out->refused.push_back(ms);
        } else {
          ++out->other;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
}

}  // namespace

absl::StatusOr<OverloadResult> TeacherOverload(
    std::unique_ptr<model::LanguageModel> teacher, const OverloadOptions& o) {
  OverloadResult r;
  r.queue_capacity = o.queue_capacity;
  r.clients =
      o.clients > 0 ? o.clients : static_cast<int>(10 * o.queue_capacity);
  const int64_t vocab = teacher->config().vocab_size;
  auto scorer = teacher::MakeModelScorer(std::move(teacher), "bench", "",
                                         o.max_batch_tokens);
  auto registry = metrics::NewRegistry();
  auto gate = net::GrpcServer::MakeGate({}, registry.get());
  teacher::TeacherServiceOptions to;
  to.queue_capacity = o.queue_capacity;
  to.max_batch_tokens = o.max_batch_tokens;
  teacher::TeacherServiceImpl service(scorer.get(), gate, registry.get(), to);
  auto server = net::GrpcServer::Start({}, gate, {&service});
  if (!server.ok()) return server.status();
  net::ChannelOptions co;
  co.target = "127.0.0.1:" + std::to_string((*server)->port());
  auto channel = net::MakeChannel(co);
  if (!channel.ok()) return channel.status();
  auto stub = v1::TeacherService::NewStub(*channel);
  v1::ScoreRequest req;
  auto* seq = req.add_sequences();
  for (int i = 0; i < 8; ++i) seq->add_prompt_ids(static_cast<int>(i % vocab));
  for (int64_t i = 0; i < o.seq_len; ++i)
    seq->add_completion_ids(static_cast<int>((7 * i + 3) % vocab));

  // One client alone: the latency the served calls are compared with.
  Samples alone;
  Drive(stub.get(), req, 1, absl::Now() + o.duration / 4, &alone);
  r.alone = StatsOf(alone.served);
  r.alone_per_s = static_cast<double>(alone.served.size()) /
                  absl::ToDoubleSeconds(o.duration / 4);
  // Overload, with queue depth and memory sampled alongside.
  r.rss_before_mb = RssMb();
  std::atomic<bool> stop{false};
  std::thread sampler([&] {
    while (!stop.load()) {
      r.max_queue_depth =
          std::max(r.max_queue_depth,
                   GaugeValue(*registry, "cmdistill_teacher_queue_depth"));
      r.rss_peak_mb = std::max(r.rss_peak_mb, RssMb());
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  Samples load;
  const absl::Time t0 = absl::Now();
  Drive(stub.get(), req, r.clients, t0 + o.duration, &load);
  const double secs = absl::ToDoubleSeconds(absl::Now() - t0);
  stop = true;
  sampler.join();
  r.rss_after_mb = RssMb();
  r.served = StatsOf(load.served);
  r.refused = StatsOf(load.refused);
  r.other_errors = load.other;
  r.served_per_s = static_cast<double>(load.served.size()) / secs;
  (*server)->Shutdown(absl::Seconds(5), [&] { service.Close(); });
  return r;
}

}  // namespace cmdistill::bench
