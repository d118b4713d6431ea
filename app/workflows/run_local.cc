#include "app/workflows/run_local.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "app/local/monitor.h"
#include "app/local/time_shares.h"
#include "app/workflows/bootstrap.h"
#include "app/workflows/selection.h"
#include "app/workflows/workflow.h"
#include "common/config/config.h"
#include "common/process/signals.h"
#include "common/status/status_macros.h"
#include "common/util/files.h"

namespace cmdistill::workflows {
namespace {

// results.md, one JSON per evaluation, and eval.prom beside the children's
// metrics.
absl::Status WriteEvaluations(const LocalResult& r) {
  CMDISTILL_RETURN_IF_ERROR(
      util::WriteFileAtomically(r.eval_dir + "/results.md", r.table));
  for (const auto& rep : r.reports) {
    std::string file = rep.name;
    std::replace(file.begin(), file.end(), ' ', '_');
    CMDISTILL_RETURN_IF_ERROR(util::WriteFileAtomically(
        r.eval_dir + "/" + file + ".json", eval::ReportJson(rep, true)));
  }
  return util::WriteFileAtomically(r.run.metrics_dir + "/eval.prom",
                                   eval::ReportsToPrometheus(r.reports));
}

}  // namespace

absl::StatusOr<LocalResult> RunLocal(v1::RunConfig loaded,
                                     const LocalOptions& o, std::ostream& log) {
  const absl::Time t0 = absl::Now();
  // First, so that a missing Prometheus fails before minutes of preparation.
  std::unique_ptr<local::Monitor> monitor;
  if (o.monitor) {
    local::MonitorOptions mo;
    mo.dir = loaded.output_dir() + "/monitor";
    mo.port = o.monitor_port;
    CMDISTILL_ASSIGN_OR_RETURN(auto m, local::Monitor::Start(mo));
    monitor = std::move(m);
    log << "cmdistill local: Prometheus at " << monitor->Url()
        << " (rules loaded; dashboard: deploy/grafana/cmdistill.json)\n";
  }
  CMDISTILL_ASSIGN_OR_RETURN(auto prep, Prepare(std::move(loaded), log));
  LocalResult r;
  r.config = prep.config;
  v1::RunConfig& config = r.config;
  if (!o.resume) {
    ClearPreviousRun(config.output_dir());
    config.mutable_training()->set_resume("never");
  }
  CMDISTILL_RETURN_IF_ERROR(EvaluateBoth("teacher", prep.teacher.get(), nullptr,
                                         *prep.tok, prep.examples, config, log,
                                         &r.reports));
  const size_t before_begin = r.reports.size();
  CMDISTILL_RETURN_IF_ERROR(EvaluateBoth(
      "student before", config.student().path(), prep.teacher.get(), *prep.tok,
      prep.examples, config, log, &r.reports));
  const size_t before_end = r.reports.size();
  const bool select =
      config.eval().final_selection() == v1::FINAL_SELECTION_BEST_VALIDATION;
  if (select && !LoadValidation(config).ok()) {
    // Before minutes of training, not after.
    return absl::FailedPreconditionError(
        "eval.final_selection best_validation needs a validation split: "
        "data.validation_path, or local.datagen.validation > 0");
  }
  CMDISTILL_ASSIGN_OR_RETURN(auto signals, ShutdownSignal::Install());
  local::DistillOptions dopt;
  if (monitor != nullptr) {
    dopt.on_metrics_targets = [&](const std::map<std::string, int>& t) {
      if (auto s = monitor->SetTargets(t); !s.ok())
        log << "cmdistill local: monitor: " << s.message() << "\n";
    };
  }
  dopt.binary = o.binary;
  dopt.actors = static_cast<int>(config.local().actors());
  dopt.teachers = static_cast<int>(config.local().teachers());
  dopt.signals = signals.get();
  dopt.label = config::MethodLabel(config);
  dopt.status_out = o.status_out;
  auto run = local::RunDistillation(config, dopt, log);
  if (monitor != nullptr) monitor->Stop();  // flushes its data to disk
  CMDISTILL_RETURN_IF_ERROR(run.status());
  r.run = *std::move(run);
  if (select) {
    CMDISTILL_ASSIGN_OR_RETURN(
        auto sel, SelectFinal(config, r.run.final_model, prep.teacher.get(),
                              *prep.tok, log));
    r.selection = absl::StrCat(sel.candidates[sel.chosen].label,
                               " chosen: ", sel.rule, ".");
    r.selection_table = sel.summary;
  }
  const size_t after_begin = r.reports.size();
  CMDISTILL_RETURN_IF_ERROR(
      EvaluateBoth("student after", r.run.final_model, prep.teacher.get(),
                   *prep.tok, prep.examples, config, log, &r.reports));
  r.problems = prep.examples.size();
  CMDISTILL_RETURN_IF_ERROR(WriteModelCard(
      config, r.run.final_model,
      {r.reports.begin() + after_begin, r.reports.end()},
      {r.reports.begin() + before_begin, r.reports.begin() + before_end},
      static_cast<int64_t>(r.run.steps.size()),
      static_cast<int64_t>(r.problems),
      r.selection.empty()
          ? ""
          : absl::StrCat(r.selection, "\n\n", r.selection_table)));
  r.eval_dir = config.output_dir() + "/eval";
  r.table = eval::MarkdownTable(r.reports, config);
  CMDISTILL_RETURN_IF_ERROR(WriteEvaluations(r));
  if (monitor != nullptr) {
    r.monitor_url = monitor->Url();
    r.monitor_reopen = monitor->ReopenCommand();
  }
  r.seconds = absl::ToDoubleSeconds(absl::Now() - t0);
  return r;
}

std::string LocalSummary(const LocalResult& r) {
  std::ostringstream out;
  const v1::RunConfig& config = r.config;
  out << "\n" << r.table << "\n";
  out << absl::StrFormat(
      "%d held-out problems, greedy decoding%s; budget d = %g (%s); method "
      "%s; %d learner steps in %.0f s; total %.0f s.\n\n",
      r.problems,
      config.eval().sampled_samples_per_prompt() > 0
          ? absl::StrFormat(" and %d samples per problem at T = %g (FAC = mean "
                            "accuracy; intervals over problems, or over "
                            "arithmetic cells on the synthetic task)",
                            config.eval().sampled_samples_per_prompt(),
                            config.eval().sampled_temperature())
          : std::string(),
      config.constraint().budget(),
      config::EnumShortName(
          *v1::CostNormalization_descriptor()->FindValueByNumber(
              config.constraint().cost_normalization())),
      config::MethodLabel(config), r.run.steps.size(), r.run.seconds,
      r.seconds);
  const std::string shares = local::FormatTimeShares(local::ReadTimeShares(
      r.run.metrics_dir, static_cast<int>(config.local().actors())));
  if (!shares.empty()) out << "where the time went:\n" << shares << "\n";
  if (!r.selection.empty()) {
    out << "final/: " << r.selection << "\n\n" << r.selection_table << "\n";
  }
  out << "trained student:  " << r.run.final_model
      << " (model card: README.md, cmdistill_eval.json)\n"
      << "checkpoints:      " << config.output_dir() << "/checkpoints\n"
      << "evaluation:       " << r.eval_dir << "/ (results.md, *.json)\n"
      << "training curve:   " << r.run.curve_csv << "\n"
      << "metrics:          " << r.run.metrics_dir
      << "/*.prom (Prometheus text of every child, eval.prom the held-out "
         "results; live at /metrics while running)\n"
      << "logs:             " << r.run.logs_dir << "/\n"
      << "view:             /usr/bin/python3 scripts/plot_curves.py "
      << r.run.curve_csv << " --out " << config.output_dir()
      << "/training_curve.png\n";
  if (!r.monitor_url.empty()) {
    out << "prometheus:       was " << r.monitor_url
        << " during the run; its data is in " << config.output_dir()
        << "/monitor/. Browse it again with\n"
        << "                    " << r.monitor_reopen << "\n"
        << "                  and import deploy/grafana/cmdistill.json in "
           "Grafana (data source: that Prometheus).\n";
  }
  return out.str();
}

}  // namespace cmdistill::workflows
