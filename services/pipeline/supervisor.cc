#include "services/pipeline/supervisor.h"

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/config/config.h"
#include "common/net/http_get.h"
#include "common/process/child.h"
#include "common/util/files.h"
#include "services/common/child_protocol.h"
#include "services/pipeline/progress.h"

namespace cmdistill::pipeline {
namespace fs = std::filesystem;

namespace {

struct Ports {
  int grpc = -1, metrics = -1;
};

// What the children's line callbacks collect.
struct Shared {
  absl::Mutex mu;
  std::map<std::string, Ports> ready ABSL_GUARDED_BY(mu);
  std::vector<StepRecord> steps ABSL_GUARDED_BY(mu);
  bool finished ABSL_GUARDED_BY(mu) = false;
};

class Children {
 public:
  Children(const DistillOptions& o, std::string logs, Shared* shared)
      : o_(o), logs_(std::move(logs)), shared_(shared) {}
  ~Children() { StopAll(); }

  absl::Status Start(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), o_.binary);
    const absl::Time start = start_;
    Shared* shared = shared_;
    auto child = ChildProcess::Spawn(
        name, args, absl::StrCat(logs_, "/", name, ".log"),
        [shared, name, start](const std::string& line) {
          if (auto ready = services::ParseReady(line)) {
            absl::MutexLock l(&shared->mu);
            shared->ready[name] = {ready->grpc_port, ready->metrics_port};
          } else if (auto step = services::ParseStep(line)) {
            StepRecord r;
            r.step = step->step;
            r.reward = step->reward;
            r.satisfaction = step->satisfaction;
            r.cost = step->cost;
            r.kl = step->kl;
            r.lambda = step->lambda;
            r.loss = step->loss;
            r.tokens = step->tokens;
            r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
            absl::MutexLock l(&shared->mu);
            shared->steps.push_back(r);
          } else if (services::ParseFinished(line)) {
            absl::MutexLock l(&shared->mu);
            shared->finished = true;
          }
        });
    if (!child.ok()) return child.status();
    children_.push_back(*std::move(child));
    return absl::OkStatus();
  }

  ChildProcess* Get(const std::string& name) {
    for (auto& c : children_)
      if (c->name() == name) return c.get();
    return nullptr;
  }
  std::vector<ChildProcess*> All() {
    std::vector<ChildProcess*> out;
    for (auto& c : children_) out.push_back(c.get());
    return out;
  }

  // Stops the named group with SIGTERM, waits up to `grace`, then SIGKILL.
  void Stop(const std::vector<ChildProcess*>& group, absl::Duration grace) {
    for (ChildProcess* c : group) c->Signal(SIGTERM);
    const absl::Time deadline = absl::Now() + grace;
    for (ChildProcess* c : group) {
      if (!c->Wait(deadline)) {
        c->Signal(SIGKILL);
        c->Wait(absl::InfiniteFuture());
      }
    }
  }

  // Actors first (they return their leases), then the learner (final
  // checkpoint), then the services.
  void StopAll() {
    std::vector<ChildProcess*> actors, learner, rest;
    for (auto& c : children_) {
      if (c->name().rfind("actor", 0) == 0) {
        actors.push_back(c.get());
      } else if (c->name() == "learner") {
        learner.push_back(c.get());
      } else {
        rest.push_back(c.get());
      }
    }
    Stop(actors, absl::Seconds(30));
    Stop(learner, absl::Seconds(60));
    Stop(rest, absl::Seconds(30));
  }

  void SetStart(absl::Time t) { start_ = t; }

 private:
  const DistillOptions& o_;
  std::string logs_;
  Shared* shared_;
  absl::Time start_ = absl::Now();
  std::vector<std::unique_ptr<ChildProcess>> children_;
};

std::string FailureOf(ChildProcess* c, int code, const std::string& logs) {
  std::string tail;
  for (const std::string& l : c->Tail()) absl::StrAppend(&tail, "\n    ", l);
  return absl::StrCat(c->name(), " (pid ", c->pid(), ") ",
                      ChildProcess::DescribeExit(code),
                      "; its last lines:", tail.empty() ? " (none)" : tail,
                      "\n  full log: ", logs, "/", c->name(), ".log");
}

// Waits `d` for a shutdown signal; true when one arrived.
bool Interrupted(const DistillOptions& o, absl::Duration d) {
  if (o.signals == nullptr) {
    absl::SleepFor(d);
    return false;
  }
  return o.signals->WaitUntil(absl::Now() + d) != 0;
}

void ScrapeMetrics(const std::string& name, const Ports& p,
                   const std::string& dir) {
  if (p.metrics <= 0) return;
  auto body = net::HttpGet(p.metrics, "/metrics");
  if (!body.ok()) return;
  // Best effort: the next scrape writes it again.
  (void)util::WriteFileAtomically(absl::StrCat(dir, "/", name, ".prom"), *body);
}

}  // namespace

absl::StatusOr<DistillResult> RunDistillation(const v1::RunConfig& config,
                                              const DistillOptions& o,
                                              std::ostream& progress) {
  const absl::Time t0 = absl::Now();
  DistillResult result;
  const std::string out = config.output_dir();
  result.logs_dir = out + "/logs";
  result.metrics_dir = out + "/metrics";
  result.run_file = out + "/run.yaml";
  result.final_model = out + "/final";
  result.curve_csv = out + "/training_curve.csv";
  std::error_code ec;
  fs::create_directories(result.logs_dir, ec);
  fs::create_directories(result.metrics_dir, ec);
  {
    // Actors export /metrics too (on a free port each); local mode also has
    // them write it to metrics/<actor>.prom (--metrics-file).
    v1::RunConfig children_config = config;
    if (children_config.services().actor_metrics_listen().empty())
      children_config.mutable_services()->set_actor_metrics_listen(
          "127.0.0.1:0");
    if (auto s = util::WriteFileAtomically(
            result.run_file,
            "# Written by cmdistill local: the resolved run file every child "
            "reads.\n" +
                config::ToYaml(children_config));
        !s.ok())
      return s;
  }
  Shared shared;
  Children children(o, result.logs_dir, &shared);
  const std::vector<std::string> base = {"--config", result.run_file};
  auto args = [&](const char* cmd, std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {cmd};
    a.insert(a.end(), base.begin(), base.end());
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  // Waits for READY lines (or a child's death, or a signal).
  auto await_ready = [&](const std::vector<std::string>& names,
                         absl::Duration limit) -> absl::Status {
    const absl::Time deadline = absl::Now() + limit;
    for (;;) {
      bool all = true;
      {
        absl::MutexLock l(&shared.mu);
        for (const auto& n : names) all = all && shared.ready.count(n) > 0;
      }
      if (all) return absl::OkStatus();
      for (const auto& n : names) {
        ChildProcess* c = children.Get(n);
        if (auto code = c->Poll()) {
          return absl::AbortedError(absl::StrCat(
              "while starting: ", FailureOf(c, *code, result.logs_dir)));
        }
      }
      if (Interrupted(o, absl::Milliseconds(50))) {
        return absl::CancelledError("interrupted while starting");
      }
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "services did not report READY within ",
            absl::FormatDuration(limit), "; logs in ", result.logs_dir));
      }
    }
  };
  auto fail = [&](absl::Status s) -> absl::Status {
    children.StopAll();
    return s;
  };
  for (const char* svc : {"teacher", "reward"}) {
    if (auto s = children.Start(svc, args(svc)); !s.ok()) return fail(s);
  }
  if (auto s = await_ready({"teacher", "reward"}, absl::Minutes(5)); !s.ok())
    return fail(s);
  if (auto s = children.Start("learner", args("learner")); !s.ok())
    return fail(s);
  if (auto s = await_ready({"learner"}, absl::Minutes(5)); !s.ok())
    return fail(s);
  std::map<std::string, Ports> ports;
  {
    absl::MutexLock l(&shared.mu);
    ports = shared.ready;
  }
  auto addr = [&](const std::string& n) {
    return absl::StrCat("127.0.0.1:", ports[n].grpc);
  };
  children.SetStart(absl::Now());
  const absl::Time train_start = absl::Now();
  std::vector<std::string> actor_names;
  for (int i = 0; i < o.actors; ++i) {
    const std::string name = absl::StrCat("actor-", i + 1);
    actor_names.push_back(name);
    if (auto s = children.Start(
            name, args("actor", {"--learner", addr("learner"), "--teacher",
                                 addr("teacher"), "--reward", addr("reward"),
                                 "--id", name, "--metrics-file",
                                 result.metrics_dir + "/" + name + ".prom"}));
        !s.ok())
      return fail(s);
  }
  if (o.status_out != nullptr) {
    std::string line = "RUNNING";
    for (ChildProcess* c : children.All())
      absl::StrAppend(&line, " ", c->name(), "=", c->pid());
    *o.status_out << line << std::endl;
  }
  progress << o.label << ": learner, teacher, reward and " << o.actors
           << " actors running (logs: " << result.logs_dir << ")\n";
  ProgressBar bar(progress, o.label, config.training().max_steps(),
                  ProgressBar::IsTerminal(2));
  size_t shown = 0;
  int64_t tokens = 0;
  bool scraped_last = false;
  absl::Time learner_exit_time = absl::InfiniteFuture();
  absl::Time last_scrape = absl::Now();
  std::string live;
  for (;;) {
    if (Interrupted(o, absl::Milliseconds(100))) {
      bar.Finish(live);
      progress << o.label
               << ": interrupted — stopping actors, the learner (it writes a "
                  "final checkpoint), teacher and reward\n";
      children.StopAll();
      return absl::CancelledError("interrupted; every child stopped");
    }
    if (o.on_metrics_targets) {
      std::map<std::string, int> targets;
      {
        absl::MutexLock l(&shared.mu);
        for (const auto& [n, p] : shared.ready)
          if (p.metrics > 0) targets[n] = p.metrics;
      }
      for (ChildProcess* c : children.All())
        if (c->Poll()) targets.erase(c->name());
      o.on_metrics_targets(targets);
    }
    std::vector<StepRecord> steps;
    {
      absl::MutexLock l(&shared.mu);
      steps = shared.steps;
    }
    if (steps.size() > shown) {
      for (size_t i = shown; i < steps.size(); ++i) tokens += steps[i].tokens;
      shown = steps.size();
      const StepRecord& r = steps.back();
      const double secs = absl::ToDoubleSeconds(absl::Now() - train_start);
      const bool has_lambda = config.method() == v1::METHOD_LAGRANGIAN ||
                              config.method() == v1::METHOD_SOFT_LAGRANGIAN;
      live = absl::StrFormat(
          "reward %.2f  CSR %.2f  KL %.3f%s  %.0f tok/s", r.reward,
          r.satisfaction, r.kl,
          has_lambda ? absl::StrFormat("  λ %.3f", r.lambda) : "",
          secs > 0 ? static_cast<double>(tokens) / secs : 0.0);
      bar.Update(r.step, live);
    }
    // /metrics to files every 5 s (they survive a crash) and at the last
    // step, while the learner still serves.
    const bool last =
        !steps.empty() && steps.back().step >= config.training().max_steps();
    if ((last && !scraped_last) ||
        absl::Now() - last_scrape > absl::Seconds(5)) {
      std::map<std::string, Ports> now;
      {
        absl::MutexLock l(&shared.mu);
        now = shared.ready;  // the actors' READY lines arrive as they start
      }
      for (const auto& [n, p] : now) {
        // Actors write their own file (--metrics-file), last counts included.
        if (n.rfind("actor", 0) != 0) ScrapeMetrics(n, p, result.metrics_dir);
      }
      last_scrape = absl::Now();
      scraped_last = scraped_last || last;
    }
    // A child that ended: fine for actors and the learner once training is
    // finished, a failure otherwise.
    bool learner_done = false;
    for (ChildProcess* c : children.All()) {
      auto code = c->Poll();
      if (!code) continue;
      const bool trainer_side =
          c->name() == "learner" || c->name().rfind("actor", 0) == 0;
      // Poll() returns once the child's output is read to the end, so its
      // FINISHED line (if any) is in `shared` now — not yet in `finished`.
      bool finished_now;
      {
        absl::MutexLock l(&shared.mu);
        finished_now = shared.finished;
      }
      if (*code == 0 && trainer_side &&
          (finished_now || c->name() != "learner")) {
        if (c->name() == "learner") learner_done = true;
        continue;
      }
      bar.Finish(live);
      const std::string why = FailureOf(c, *code, result.logs_dir);
      children.StopAll();
      return absl::AbortedError(why);
    }
    if (learner_done) {
      bool actors_done = true;
      for (const auto& n : actor_names)
        actors_done = actors_done && children.Get(n)->Poll().has_value();
      if (actors_done) break;
      // An actor busy with a round while the learner lingered never heard
      // "finished" and now retries a learner that is gone: training is over,
      // so it is stopped (SIGTERM) rather than waited for.
      if (learner_exit_time == absl::InfiniteFuture())
        learner_exit_time = absl::Now();
      if (absl::Now() - learner_exit_time > absl::Seconds(10)) break;
    }
  }
  bar.Finish(live);
  ScrapeMetrics("teacher", ports["teacher"], result.metrics_dir);
  ScrapeMetrics("reward", ports["reward"], result.metrics_dir);
  children.StopAll();
  for (ChildProcess* c : children.All()) {
    auto code = c->Poll();
    if (code && *code != 0 && c->name() != "learner" &&
        c->name().rfind("actor", 0) != 0) {
      return absl::AbortedError(
          absl::StrCat("at shutdown: ", FailureOf(c, *code, result.logs_dir)));
    }
  }
  {
    absl::MutexLock l(&shared.mu);
    result.steps = shared.steps;
  }
  std::ofstream csv(result.curve_csv);
  csv << "step,seconds,reward,satisfaction,cost,kl,lambda,loss,tokens\n";
  for (const StepRecord& r : result.steps) {
    csv << absl::StrFormat("%d,%.3f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%d\n", r.step,
                           r.seconds, r.reward, r.satisfaction, r.cost, r.kl,
                           r.lambda, r.loss, r.tokens);
  }
  result.seconds = absl::ToDoubleSeconds(absl::Now() - t0);
  return result;
}

}  // namespace cmdistill::pipeline
