#include "app/bench/overload.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <functional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "cmdistill/v1/learner.grpc.pb.h"
#include "cmdistill/v1/teacher.grpc.pb.h"
#include "common/metrics/metrics.h"
#include "common/net/client.h"
#include "common/net/server.h"
#include "common/status/status_macros.h"
#include "services/learner/learner_service.h"
#include "services/learner/policy_trainer.h"
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
  int64_t other = 0, idle = 0;
  std::string other_example;
};

// `clients` threads making `call` until `until`.
void Drive(const std::function<grpc::Status()>& call, int clients,
           absl::Time until, Samples* out) {
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      while (absl::Now() < until) {
        const absl::Time t0 = absl::Now();
        const grpc::Status s = call();
        const double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
        absl::MutexLock l(&out->mu);
        if (s.ok()) {
          out->served.push_back(ms);
        } else if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
          out->refused.push_back(ms);
        } else if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
          ++out->idle;  // no work to lease (learner): not an error
        } else {
          ++out->other;
          if (out->other_example.empty())
            out->other_example =
                absl::StrCat(s.error_code(), ": ", s.error_message());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
}

// Alone, then under load with `gauge` and RSS sampled: fills `r`.
void Measure(const std::function<grpc::Status()>& call,
             prometheus::Registry& registry, const std::string& gauge,
             const OverloadOptions& o, OverloadResult* r) {
  Samples alone;
  Drive(call, 1, absl::Now() + o.duration / 4, &alone);
  r->alone = StatsOf(alone.served);
  r->alone_per_s = static_cast<double>(alone.served.size()) /
                   absl::ToDoubleSeconds(o.duration / 4);
  r->rss_before_mb = RssMb();
  std::atomic<bool> stop{false};
  std::thread sampler([&] {
    while (!stop.load()) {
      r->max_queue_depth =
          std::max(r->max_queue_depth, GaugeValue(registry, gauge));
      r->rss_peak_mb = std::max(r->rss_peak_mb, RssMb());
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  Samples load;
  const absl::Time t0 = absl::Now();
  Drive(call, r->clients, t0 + o.duration, &load);
  const double secs = absl::ToDoubleSeconds(absl::Now() - t0);
  stop = true;
  sampler.join();
  r->rss_after_mb = RssMb();
  r->served = StatsOf(load.served);
  r->refused = StatsOf(load.refused);
  r->other_errors = load.other;
  r->idle = load.idle;
  r->other_example =
      !load.other_example.empty() ? load.other_example : alone.other_example;
  r->served_per_s = static_cast<double>(load.served.size()) / secs;
}

// The result's fixed part: capacity and the client count (10x by default).
OverloadResult Start(const OverloadOptions& o) {
  OverloadResult r;
  r.queue_capacity = o.queue_capacity;
  r.clients =
      o.clients > 0 ? o.clients : static_cast<int>(10 * o.queue_capacity);
  return r;
}

}  // namespace

absl::StatusOr<OverloadResult> TeacherOverload(
    std::unique_ptr<model::LanguageModel> teacher, const OverloadOptions& o) {
  OverloadResult r = Start(o);
  const int64_t vocab = teacher->config().vocab_size;
  auto scorer = teacher::MakeModelScorer(std::move(teacher), "bench", "",
                                         o.max_batch_tokens);
  auto registry = metrics::NewRegistry();
  auto gate = net::GrpcServer::MakeGate({}, registry.get());
  teacher::TeacherServiceOptions to;
  to.queue_capacity = o.queue_capacity;
  to.max_batch_tokens = o.max_batch_tokens;
  teacher::TeacherServiceImpl service(scorer.get(), gate, registry.get(), to);
  CMDISTILL_ASSIGN_OR_RETURN(auto server,
                             net::GrpcServer::Start({}, gate, {&service}));
  net::ChannelOptions co;
  co.target = "127.0.0.1:" + std::to_string(server->port());
  CMDISTILL_ASSIGN_OR_RETURN(auto channel, net::MakeChannel(co));
  auto stub = v1::TeacherService::NewStub(channel);
  v1::ScoreRequest req;
  auto* seq = req.add_sequences();
  for (int i = 0; i < 8; ++i) seq->add_prompt_ids(static_cast<int>(i % vocab));
  for (int64_t i = 0; i < o.seq_len; ++i)
    seq->add_completion_ids(static_cast<int>((7 * i + 3) % vocab));

  Measure(
      [&] {
        grpc::ClientContext ctx;
        ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
        v1::ScoreResponse resp;
        return stub->Score(&ctx, req, &resp);
      },
      *registry, "cmdistill_teacher_queue_depth", o, &r);
  server->Shutdown(absl::Seconds(5), [&] { service.Close(); });
  return r;
}

// Long on purpose: a benchmark script (a learner over loopback, N clients
// submitting until the deadline, the figures) read top to bottom.
absl::StatusOr<OverloadResult> LearnerOverload(
    std::unique_ptr<model::LanguageModel> student, const OverloadOptions& o) {
  OverloadResult r = Start(o);
  const int64_t vocab = student->config().vocab_size;
  learner::TrainerOptions to;
  to.method = rl::Method::kGrpo;
  CMDISTILL_ASSIGN_OR_RETURN(auto trainer,
                             learner::PolicyTrainer::Create(student.get(), to));
  auto registry = metrics::NewRegistry();
  auto gate = net::GrpcServer::MakeGate({}, registry.get());
  learner::LearnerOptions lo;
  lo.lease.samples_per_prompt = 2;
  lo.lease.epochs = 1000;
  lo.prompts_per_step = 1;
  lo.max_steps = 1 << 30;
  lo.max_policy_lag = 1 << 20;  // every submission fresh enough: only the
                                // buffer refuses
  lo.buffer_capacity = o.queue_capacity;
  std::vector<learner::Prompt> prompts;
  for (int p = 0; p < 1000; ++p) {
    learner::Prompt q;
    for (int i = 0; i < 8; ++i)
      q.ids.push_back(static_cast<int32_t>((p * 31 + i) % vocab));
    q.gold = "1";
    prompts.push_back(std::move(q));
  }
  CMDISTILL_ASSIGN_OR_RETURN(
      auto learner, learner::Learner::Create(std::move(prompts), trainer.get(),
                                             registry.get(), lo));
  learner::LearnerServiceImpl service(learner.get(), gate);
  CMDISTILL_ASSIGN_OR_RETURN(auto server,
                             net::GrpcServer::Start({}, gate, {&service}));
  net::ChannelOptions co;
  co.target = "127.0.0.1:" + std::to_string(server->port());
  CMDISTILL_ASSIGN_OR_RETURN(auto channel, net::MakeChannel(co));
  auto stub = v1::LearnerService::NewStub(channel);
  Measure(
      [&]() -> grpc::Status {
        // Like an actor: a refused group is submitted again (after the
        // client's next turn), not dropped; a new prompt only after success.
        thread_local v1::SubmitTrajectoriesRequest pending;
        if (pending.trajectories_size() > 0) {
          grpc::ClientContext ctx;
          ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
          v1::SubmitTrajectoriesResponse resp;
          const grpc::Status s = stub->SubmitTrajectories(&ctx, pending, &resp);
          if (s.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED)
            pending.Clear();
          return s;
        }
        v1::LeasePromptsResponse leases;
        {
          grpc::ClientContext ctx;
          ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
          v1::LeasePromptsRequest req;
          req.set_max_prompts(1);
          const grpc::Status s = stub->LeasePrompts(&ctx, req, &leases);
          if (!s.ok()) return s;
          if (leases.leases_size() == 0) {  // all leased: an actor idles
            absl::SleepFor(absl::Milliseconds(10));
            return grpc::Status(grpc::StatusCode::NOT_FOUND, "idle");
          }
        }
        const v1::PromptLease& l = leases.leases(0);
        v1::SubmitTrajectoriesRequest sub;
        for (uint32_t i = 0; i < 2; ++i) {
          v1::Trajectory* t = sub.add_trajectories();
          *t->mutable_lease() = l.lease();
          t->set_sample_index(i);
          t->set_trajectory_id(l.lease().lease_id() + "/" + std::to_string(i));
          t->mutable_prompt_ids()->CopyFrom(l.prompt_ids());
          for (int64_t k = 0; k < o.seq_len; ++k) {
            t->add_completion_ids(static_cast<int>((k * 7 + i) % vocab));
            t->add_behavior_logprobs(-2.0f);
            t->mutable_evaluation()->add_feasible(true);
          }
          t->mutable_evaluation()->set_trajectory_return(static_cast<float>(i));
          t->set_policy_version(0);
        }
        grpc::ClientContext ctx;
        ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
        v1::SubmitTrajectoriesResponse resp;
        const grpc::Status s = stub->SubmitTrajectories(&ctx, sub, &resp);
        if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED)
          pending = sub;
        if (!s.ok()) return s;
        for (int i = 0; i < resp.outcomes_size(); ++i) {
          if (resp.outcomes(i) != v1::SUBMIT_OUTCOME_ACCEPTED)
            return grpc::Status(grpc::StatusCode::INTERNAL, resp.reasons(i));
        }
        return s;
      },
      *registry, "cmdistill_learner_buffer_trajectories", o, &r);
  server->Shutdown(absl::Seconds(5), [&] { learner->Close(); });
  return r;
}

std::string OverloadJson(const OverloadResult& r, const std::string& service,
                         const std::string& model) {
  auto lat = [](const LatencyStats& l) {
    return absl::StrFormat(
        R"({"count": %d, "p50_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f})",
        l.count, l.p50_ms, l.p99_ms, l.max_ms);
  };
  return absl::StrFormat(
             R"({"mode": "overload", "service": "%s", "model": "%s", "clients": %d, "queue_capacity": %d, "alone": %s, "served": %s, "refused": %s, "idle": %d, "other_errors": %d, "alone_per_s": %.1f, "served_per_s": %.1f, "max_queue_depth": %.0f, "rss_mb": {"before": %.1f, "peak": %.1f, "after": %.1f}})",
             service, model, r.clients, r.queue_capacity, lat(r.alone),
             lat(r.served), lat(r.refused), r.idle, r.other_errors,
             r.alone_per_s, r.served_per_s, r.max_queue_depth, r.rss_before_mb,
             r.rss_peak_mb, r.rss_after_mb) +
         "\n";
}

std::string OverloadText(const OverloadResult& r, const std::string& service,
                         const std::string& model) {
  return absl::StrCat(
      "cmdistill bench overload (", service, "): ", model, "\n",
      absl::StrFormat(
          "  alone (1 client):   %.1f calls/s, latency p50 %.1f ms, p99 "
          "%.1f ms\n"
          "  %d clients, capacity %d: %.1f calls/s served (%d), p50 %.1f "
          "ms, p99 %.1f ms, max %.1f ms\n"
          "  refused RESOURCE_EXHAUSTED: %d, p50 %.2f ms, p99 %.2f ms; "
          "idle turns: %d; other errors: %d%s\n"
          "  queue/buffer max %.0f of %d; RSS %.1f MB before, %.1f peak, "
          "%.1f after\n",
          r.alone_per_s, r.alone.p50_ms, r.alone.p99_ms, r.clients,
          r.queue_capacity, r.served_per_s, r.served.count, r.served.p50_ms,
          r.served.p99_ms, r.served.max_ms, r.refused.count, r.refused.p50_ms,
          r.refused.p99_ms, r.idle, r.other_errors,
          r.other_errors > 0 ? " (first: " + r.other_example + ")" : "",
          r.max_queue_depth, r.queue_capacity, r.rss_before_mb, r.rss_peak_mb,
          r.rss_after_mb));
}

}  // namespace cmdistill::bench
