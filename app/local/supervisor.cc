#include "app/local/supervisor.h"

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "app/local/progress.h"
#include "common/config/config.h"
#include "common/net/http_get.h"
#include "common/process/child.h"
#include "common/status/status_macros.h"
#include "common/util/files.h"
#include "services/common/child_protocol.h"

namespace cmdistill::local {
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
            r.diagnostics = step->diagnostics;
            r.wait_s = step->wait_s;
            r.update_s = step->update_s;
            r.publish_s = step->publish_s;
            r.checkpoint_s = step->checkpoint_s;
            r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
            absl::MutexLock l(&shared->mu);
            shared->steps.push_back(r);
          } else if (services::ParseFinished(line)) {
            absl::MutexLock l(&shared->mu);
            shared->finished = true;
          }
        });
    CMDISTILL_RETURN_IF_ERROR(child.status());
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

namespace {

// One run of RunDistillation: the children, what their lines told, and the
// phases as methods (start services, start actors, watch, finish).
class Distillation {
 public:
  Distillation(const v1::RunConfig& config, const DistillOptions& o,
               std::ostream& progress)
      : config_(config),
        o_(o),
        progress_(progress),
        children_(o, Paths(config).logs_dir, &shared_) {
    result_ = Paths(config);
  }

  absl::StatusOr<DistillResult> Run() {
    const absl::Time t0 = absl::Now();
    CMDISTILL_RETURN_IF_ERROR(WriteRunFile());
    if (auto s = StartServices(); !s.ok()) return Fail(s);
    if (auto s = StartActors(); !s.ok()) return Fail(s);
    CMDISTILL_RETURN_IF_ERROR(Watch());
    CMDISTILL_RETURN_IF_ERROR(Finish());
    result_.seconds = absl::ToDoubleSeconds(absl::Now() - t0);
    return result_;
  }

 private:
  static DistillResult Paths(const v1::RunConfig& config) {
    DistillResult r;
    const std::string out = config.output_dir();
    r.logs_dir = out + "/logs";
    r.metrics_dir = out + "/metrics";
    r.run_file = out + "/run.yaml";
    r.final_model = out + "/final";
    r.curve_csv = out + "/training_curve.csv";
    return r;
  }

  absl::Status Fail(absl::Status s) {
    children_.StopAll();
    return s;
  }

  // The resolved run file every child reads. Actors export /metrics too (on
  // a free port each); local mode also has them write it to
  // metrics/<actor>.prom (--metrics-file).
  absl::Status WriteRunFile() {
    std::error_code ec;
    fs::create_directories(result_.logs_dir, ec);
    fs::create_directories(result_.metrics_dir, ec);
    v1::RunConfig children_config = config_;
    // Several teachers read one run file: each must pick a free port.
    const v1::EndpointConfig& teacher = children_config.services().teacher();
    for (const std::string& listen :
         {teacher.listen(), teacher.metrics_listen()}) {
      if (o_.teachers > 1 && !listen.empty() && !absl::EndsWith(listen, ":0")) {
        return absl::InvalidArgumentError(absl::StrCat(
            "local.teachers is ", o_.teachers,
            ": services.teacher.listen and metrics_listen must end in :0 (a "
            "free port for each), not '",
            listen, "'"));
      }
    }
    if (children_config.services().actor_metrics_listen().empty())
      children_config.mutable_services()->set_actor_metrics_listen(
          "127.0.0.1:0");
    // The roles share this machine: each model-running one (teacher, learner,
    // actors) gets an equal share of the cores, so that their thread pools do
    // not spin against each other (LibTorch 2.6 sized each at every core: a
    // smoke run took 166 s instead of 10 s on 2 cores).
    if (children_config.services().compute_threads() == 0) {
      const int cores =
          std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
      children_config.mutable_services()->set_compute_threads(
          static_cast<uint32_t>(
              std::max(1, cores / (1 + o_.teachers + o_.actors))));
    }
    // This supervisor scrapes the learner when it sees its last STEP (it reads
    // the lines every 100 ms); a learner that ends at once (every actor heard
    // "finished") must still be there: 1 s of final-scrape window.
    if (children_config.services().final_scrape_seconds() == 0)
      children_config.mutable_services()->set_final_scrape_seconds(1);
    return util::WriteFileAtomically(
        result_.run_file,
        "# Written by cmdistill local: the resolved run file every child "
        "reads.\n" +
            config::ToYaml(children_config));
  }

  std::vector<std::string> Args(const char* cmd,
                                std::vector<std::string> extra = {}) const {
    std::vector<std::string> a = {cmd, "--config", result_.run_file};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  // Waits for READY lines (or a child's death, or a signal).
  absl::Status AwaitReady(const std::vector<std::string>& names,
                          absl::Duration limit) {
    const absl::Time deadline = absl::Now() + limit;
    for (;;) {
      bool all = true;
      {
        absl::MutexLock l(&shared_.mu);
        for (const auto& n : names) all = all && shared_.ready.count(n) > 0;
      }
      if (all) return absl::OkStatus();
      for (const auto& n : names) {
        ChildProcess* c = children_.Get(n);
        if (auto code = c->Poll()) {
          return absl::AbortedError(absl::StrCat(
              "while starting: ", FailureOf(c, *code, result_.logs_dir)));
        }
      }
      if (Interrupted(o_, absl::Milliseconds(50))) {
        return absl::CancelledError("interrupted while starting");
      }
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "services did not report READY within ",
            absl::FormatDuration(limit), "; logs in ", result_.logs_dir));
      }
    }
  }

  // teacher, teacher-2, ...
  std::vector<std::string> TeacherNames() const {
    std::vector<std::string> names = {"teacher"};
    for (int i = 2; i <= o_.teachers; ++i)
      names.push_back(absl::StrCat("teacher-", i));
    return names;
  }

  // Teachers and reward, then the learner (its checks need both).
  absl::Status StartServices() {
    std::vector<std::string> services = TeacherNames();
    services.push_back("reward");
    for (const std::string& svc : services) {
      CMDISTILL_RETURN_IF_ERROR(children_.Start(
          svc, Args(svc.rfind("teacher", 0) == 0 ? "teacher" : "reward")));
    }
    CMDISTILL_RETURN_IF_ERROR(AwaitReady(services, absl::Minutes(5)));
    CMDISTILL_RETURN_IF_ERROR(children_.Start("learner", Args("learner")));
    CMDISTILL_RETURN_IF_ERROR(AwaitReady({"learner"}, absl::Minutes(5)));
    absl::MutexLock l(&shared_.mu);
    ports_ = shared_.ready;
    return absl::OkStatus();
  }

  absl::Status StartActors() {
    auto addr = [&](const std::string& n) {
      return absl::StrCat("127.0.0.1:", ports_[n].grpc);
    };
    // Several teachers: one target naming them all (the actors' channels
    // balance round-robin).
    std::string teachers;
    for (const std::string& t : TeacherNames())
      absl::StrAppend(&teachers, teachers.empty() ? "" : ",", addr(t));
    if (o_.teachers > 1) teachers = "ipv4:" + teachers;
    children_.SetStart(absl::Now());
    train_start_ = absl::Now();
    for (int i = 0; i < o_.actors; ++i) {
      const std::string name = absl::StrCat("actor-", i + 1);
      actor_names_.push_back(name);
      CMDISTILL_RETURN_IF_ERROR(children_.Start(
          name, Args("actor", {"--learner", addr("learner"), "--teacher",
                               teachers, "--reward", addr("reward"), "--id",
                               name, "--metrics-file",
                               result_.metrics_dir + "/" + name + ".prom"})));
    }
    if (o_.status_out != nullptr) {
      std::string line = "RUNNING";
      for (ChildProcess* c : children_.All())
        absl::StrAppend(&line, " ", c->name(), "=", c->pid());
      *o_.status_out << line << std::endl;
    }
    progress_ << o_.label << ": learner, "
              << (o_.teachers > 1 ? absl::StrCat(o_.teachers, " teachers")
                                  : std::string("teacher"))
              << ", reward and " << o_.actors
              << " actors running (logs: " << result_.logs_dir << ")\n";
    return absl::OkStatus();
  }

  void PublishMetricsTargets() {
    if (!o_.on_metrics_targets) return;
    std::map<std::string, int> targets;
    {
      absl::MutexLock l(&shared_.mu);
      for (const auto& [n, p] : shared_.ready)
        if (p.metrics > 0) targets[n] = p.metrics;
    }
    for (ChildProcess* c : children_.All())
      if (c->Poll()) targets.erase(c->name());
    o_.on_metrics_targets(targets);
  }

  // New STEP records onto the bar; returns them all.
  std::vector<StepRecord> UpdateProgress(ProgressBar& bar) {
    std::vector<StepRecord> steps;
    {
      absl::MutexLock l(&shared_.mu);
      steps = shared_.steps;
    }
    if (steps.size() <= shown_) return steps;
    for (size_t i = shown_; i < steps.size(); ++i) tokens_ += steps[i].tokens;
    shown_ = steps.size();
    const StepRecord& r = steps.back();
    const double secs = absl::ToDoubleSeconds(absl::Now() - train_start_);
    const bool has_lambda = config_.method() == v1::METHOD_LAGRANGIAN ||
                            config_.method() == v1::METHOD_SOFT_LAGRANGIAN;
    live_ =
        absl::StrFormat("reward %.2f  CSR %.2f  KL %.3f%s  %.0f tok/s",
                        r.reward, r.satisfaction, r.kl,
                        has_lambda ? absl::StrFormat("  λ %.3f", r.lambda) : "",
                        secs > 0 ? static_cast<double>(tokens_) / secs : 0.0);
    bar.Update(r.step, live_);
    return steps;
  }

  // /metrics to files every 5 s (they survive a crash) and at the last step,
  // while the learner still serves. Actors write their own file
  // (--metrics-file), last counts included.
  void ScrapeIfDue(bool last) {
    if (!(last && !scraped_last_) &&
        absl::Now() - last_scrape_ <= absl::Seconds(5))
      return;
    std::map<std::string, Ports> now;
    {
      absl::MutexLock l(&shared_.mu);
      now = shared_.ready;  // the actors' READY lines arrive as they start
    }
    for (const auto& [n, p] : now) {
      if (n.rfind("actor", 0) != 0) ScrapeMetrics(n, p, result_.metrics_dir);
    }
    last_scrape_ = absl::Now();
    scraped_last_ = scraped_last_ || last;
  }

  // A child that ended: fine for actors and the learner once training is
  // finished (sets `learner_done`), a failure otherwise (ABORTED naming it).
  absl::Status CheckChildren(bool* learner_done) {
    for (ChildProcess* c : children_.All()) {
      auto code = c->Poll();
      if (!code) continue;
      const bool trainer_side =
          c->name() == "learner" || c->name().rfind("actor", 0) == 0;
      // Poll() returns once the child's output is read to the end, so its
      // FINISHED line (if any) is in `shared_` now.
      bool finished_now;
      {
        absl::MutexLock l(&shared_.mu);
        finished_now = shared_.finished;
      }
      if (*code == 0 && trainer_side &&
          (finished_now || c->name() != "learner")) {
        if (c->name() == "learner") *learner_done = true;
        continue;
      }
      return absl::AbortedError(FailureOf(c, *code, result_.logs_dir));
    }
    return absl::OkStatus();
  }

  // Once the learner is done: the actors' exits, or 10 s. An actor busy with
  // a round while the learner lingered never heard "finished" and now
  // retries a learner that is gone: training is over, so it is stopped
  // (SIGTERM) rather than waited for.
  bool ActorsDone() {
    bool all = true;
    for (const auto& n : actor_names_)
      all = all && children_.Get(n)->Poll().has_value();
    if (all) return true;
    if (learner_exit_time_ == absl::InfiniteFuture())
      learner_exit_time_ = absl::Now();
    return absl::Now() - learner_exit_time_ > absl::Seconds(10);
  }

  // Until the learner finished and the actors are done; CANCELLED on a
  // signal, ABORTED when a child failed (every child stopped in both).
  absl::Status Watch() {
    ProgressBar bar(progress_, o_.label, config_.training().max_steps(),
                    ProgressBar::IsTerminal(2));
    for (;;) {
      if (Interrupted(o_, absl::Milliseconds(100))) {
        bar.Finish(live_);
        progress_ << o_.label
                  << ": interrupted — stopping actors, the learner (it "
                     "writes a final checkpoint), teacher and reward\n";
        children_.StopAll();
        return absl::CancelledError("interrupted; every child stopped");
      }
      PublishMetricsTargets();
      const std::vector<StepRecord> steps = UpdateProgress(bar);
      ScrapeIfDue(!steps.empty() &&
                  steps.back().step >= config_.training().max_steps());
      bool learner_done = false;
      if (auto s = CheckChildren(&learner_done); !s.ok()) {
        bar.Finish(live_);
        return Fail(s);
      }
      if (learner_done && ActorsDone()) break;
    }
    bar.Finish(live_);
    return absl::OkStatus();
  }

  // The services' last metrics, every child stopped (a service that then
  // fails is ABORTED), the steps and the training curve.
  absl::Status Finish() {
    for (const std::string& t : TeacherNames())
      ScrapeMetrics(t, ports_[t], result_.metrics_dir);
    ScrapeMetrics("reward", ports_["reward"], result_.metrics_dir);
    children_.StopAll();
    for (ChildProcess* c : children_.All()) {
      auto code = c->Poll();
      if (code && *code != 0 && c->name() != "learner" &&
          c->name().rfind("actor", 0) != 0) {
        return absl::AbortedError(absl::StrCat(
            "at shutdown: ", FailureOf(c, *code, result_.logs_dir)));
      }
    }
    {
      absl::MutexLock l(&shared_.mu);
      result_.steps = shared_.steps;
    }
    std::string csv =
        "step,seconds,reward,satisfaction,cost,kl,lambda,loss,tokens,"
        "clip_fraction,approx_kl,entropy,ratio_mean,ratio_max,advantage_std,"
        "groups_with_signal,length,wait_s,update_s,publish_s,checkpoint_s,"
        "teacher_style,foreign_style\n";
    for (const StepRecord& r : result_.steps) {
      const rl::StepDiagnostics& d = r.diagnostics;
      absl::StrAppend(
          &csv,
          absl::StrFormat("%d,%.3f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%d,%.6f,%.6f,"
                          "%.6f,%.6f,%.6f,%.6f,%.6f,%.3f,%.4f,%.4f,%.4f,%.4f,",
                          r.step, r.seconds, r.reward, r.satisfaction, r.cost,
                          r.kl, r.lambda, r.loss, r.tokens, d.clip_fraction,
                          d.approx_kl, d.entropy, d.ratio_mean, d.ratio_max,
                          d.advantage_std, d.groups_with_signal, d.length,
                          r.wait_s, r.update_s, r.publish_s, r.checkpoint_s));
      // Empty where the answers are not classified (not the embedded task).
      if (d.teacher_style >= 0) {
        absl::StrAppend(&csv, absl::StrFormat("%.6f,%.6f\n", d.teacher_style,
                                              d.foreign_style));
      } else {
        absl::StrAppend(&csv, ",\n");
      }
    }
    return util::WriteFileAtomically(result_.curve_csv, csv);
  }

  const v1::RunConfig& config_;
  const DistillOptions& o_;
  std::ostream& progress_;
  DistillResult result_;
  Shared shared_;
  Children children_;
  std::map<std::string, Ports> ports_;
  std::vector<std::string> actor_names_;
  absl::Time train_start_ = absl::Now();
  size_t shown_ = 0;
  int64_t tokens_ = 0;
  bool scraped_last_ = false;
  absl::Time learner_exit_time_ = absl::InfiniteFuture();
  absl::Time last_scrape_ = absl::Now();
  std::string live_;
};

}  // namespace

absl::StatusOr<DistillResult> RunDistillation(const v1::RunConfig& config,
                                              const DistillOptions& options,
                                              std::ostream& progress) {
  Distillation d(config, options, progress);
  return d.Run();
}

}  // namespace cmdistill::local
