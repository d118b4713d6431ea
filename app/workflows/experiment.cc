#include "app/workflows/experiment.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "app/local/supervisor.h"
#include "app/workflows/bootstrap.h"
#include "common/config/config.h"
#include "common/rl/stats.h"
#include "common/status/status_macros.h"
#include "common/util/files.h"
#include "embedded_script.h"  // generated: scripts/plot_experiment.py

namespace cmdistill::workflows {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Lines in a text file (0 when it cannot be read).
uint64_t LineCount(const std::string& path) {
  auto text = util::ReadFile(path);
  return text.ok() ? static_cast<uint64_t>(
                         std::count(text->begin(), text->end(), '\n'))
                   : 0;
}

// Per problem: the share of samples correct (or within the budget).
std::vector<double> PerProblem(const eval::EvalReport& r, size_t problems,
                               bool satisfaction) {
  std::vector<double> sum(problems, 0), count(problems, 0);
  for (const auto& it : r.items) {
    if (it.example < 0 || static_cast<size_t>(it.example) >= problems) continue;
    sum[it.example] += satisfaction ? it.record.satisfied : it.record.correct;
    count[it.example] += 1;
  }
  for (size_t i = 0; i < problems; ++i)
    sum[i] = count[i] > 0 ? sum[i] / count[i] : 0;
  return sum;
}

// Per-problem values averaged within each cluster (an arithmetic cell of the
// synthetic task); unchanged when any problem has no cluster.
std::vector<double> ByCluster(const std::vector<double>& per_problem,
                              const std::vector<int64_t>& cluster) {
  if (cluster.size() != per_problem.size() ||
      std::any_of(cluster.begin(), cluster.end(),
                  [](int64_t c) { return c < 0; }))
    return per_problem;
  std::map<int64_t, std::pair<double, double>> acc;
  for (size_t i = 0; i < per_problem.size(); ++i) {
    acc[cluster[i]].first += per_problem[i];
    acc[cluster[i]].second += 1;
  }
  std::vector<double> out;
  for (const auto& [c, sn] : acc) out.push_back(sn.first / sn.second);
  return out;
}

// "cmdp@constraint.penalty=5" -> "cmdp_constraint.penalty_5" (a folder name).
std::string Slug(const std::string& label) {
  std::string slug = label;
  for (char& ch : slug)
    if (ch == '@' || ch == '=' || ch == '/') ch = '_';
  return slug;
}

}  // namespace

Variant ParseVariant(const std::string& spec) {
  std::vector<std::string> parts = absl::StrSplit(spec, '@');
  Variant v{spec, parts[0], {"method=" + parts[0]}};
  for (size_t i = 1; i < parts.size(); ++i) v.overrides.push_back(parts[i]);
  return v;
}

// The tables and their JSON twin, in one pass over the rows (a long function
// because the report is one document; each table is a lambda).
ExperimentReport BuildReport(const v1::RunConfig& resolved,
                             const std::vector<Variant>& variants,
                             const std::vector<eval::EvalReport>& reference,
                             const std::vector<RunRow>& rows, size_t problems,
                             int64_t seeds) {
  // Per-run CSV and JSON.
  std::ostringstream csv;
  csv << "method,seed,correctness,satisfaction,mean_token_kl,length,"
         "sampled_correctness,sampled_satisfaction,train_seconds,curve_csv,"
         "reasoning_success,sampled_reasoning_success,sampled_foreign_style\n";
  json results = {{"config", config::ToYaml(resolved)},
                  {"reference", json::array()},
                  {"runs", json::array()},
                  {"methods", json::array()},
                  {"sampled_methods", json::array()},
                  {"paired_vs_reference", json::array()}};
  for (const auto& r : reference)
    results["reference"].push_back(eval::ReportToJson(r, false));
  for (const RunRow& r : rows) {
    const auto& mm = r.report.metrics;
    const double sfac = r.sampled ? r.sampled->metrics.correctness.value : NAN;
    const double scsr = r.sampled ? r.sampled->metrics.satisfaction.value : NAN;
    csv << absl::StrFormat(
        "%s,%d,%.6f,%.6f,%.6f,%.3f,%.6f,%.6f,%.1f,%s", r.method, r.seed,
        mm.correctness.value, mm.satisfaction.value, mm.mean_kl.value,
        mm.length.value, sfac, scsr, r.train_seconds, r.curve_csv);
    auto checked = [](const rl::Estimate& e) {
      return e.n > 0 ? absl::StrFormat("%.6f", e.value) : std::string();
    };
    csv << "," << checked(mm.reasoning) << ","
        << (r.sampled ? checked(r.sampled->metrics.reasoning) : "") << ","
        << (r.sampled ? checked(r.sampled->metrics.foreign_style) : "") << "\n";
    json j = eval::ReportToJson(r.report, false);
    j["method"] = r.method;
    j["seed"] = r.seed;
    j["curve_csv"] = r.curve_csv;
    if (r.sampled) j["sampled"] = eval::ReportToJson(*r.sampled, false);
    results["runs"].push_back(std::move(j));
  }
  // Per method: mean over seeds, t-interval across seeds clamped to the
  // metric's range ([0, 1] for FAC and CSR, >= 0 for KL and length).
  auto across = [&](const std::string& m, bool sampled) {
    std::vector<double> fac, csr, kl, len, rsr, teacher, foreign;
    for (const RunRow& r : rows) {
      if (r.method != m || (sampled && !r.sampled)) continue;
      const auto& mm = sampled ? r.sampled->metrics : r.report.metrics;
      fac.push_back(mm.correctness.value);
      csr.push_back(mm.satisfaction.value);
      kl.push_back(mm.mean_kl.value);
      len.push_back(mm.length.value);
      if (mm.reasoning.n > 0) {
        rsr.push_back(mm.reasoning.value);
        teacher.push_back(mm.teacher_style.value);
        foreign.push_back(mm.foreign_style.value);
      }
    }
    const double inf = std::numeric_limits<double>::infinity();
    rl::SuccessMetrics out;
    out.correctness = rl::ClampedMeanEstimate(fac, 0, 1);
    out.satisfaction = rl::ClampedMeanEstimate(csr, 0, 1);
    out.mean_kl = rl::ClampedMeanEstimate(kl, 0, inf);
    out.length = rl::ClampedMeanEstimate(len, 0, inf);
    // Reasoning only where every run of the method could be checked.
    if (!rsr.empty() && rsr.size() == fac.size()) {
      out.reasoning = rl::ClampedMeanEstimate(rsr, 0, 1);
      out.teacher_style = rl::ClampedMeanEstimate(teacher, 0, 1);
      out.foreign_style = rl::ClampedMeanEstimate(foreign, 0, 1);
    }
    return out;
  };
  const bool have_sampled = !rows.empty() && rows[0].sampled.has_value();
  // One table per decoding: the reference rows of that decoding, then every
  // variant's mean over seeds (also into results[key]).
  std::string md;
  auto table = [&](bool sampled, const std::string& title, const char* key) {
    absl::StrAppend(&md, title, eval::MarkdownHeader("method", resolved));
    for (const auto& r : reference) {
      if (absl::StrContains(r.name, "sampled") != sampled) continue;
      absl::StrAppend(&md,
                      eval::MarkdownRow(r.name + " (reference)", r.metrics));
    }
    for (const Variant& v : variants) {
      const rl::SuccessMetrics m = across(v.label, sampled);
      absl::StrAppend(&md, eval::MarkdownRow(v.label, m));
      json row = eval::MetricsToJson(m);
      row["method"] = v.label;
      row["seeds"] = m.correctness.n;
      results[key].push_back(std::move(row));
    }
  };
  table(false, "## Greedy decoding\n\n", "methods");
  if (have_sampled) {
    table(true,
          absl::StrCat(
              "\n## Sampled (T = ", resolved.eval().sampled_temperature(), ", ",
              resolved.eval().sampled_samples_per_prompt(),
              " samples per problem)\n\n"),
          "sampled_methods");
  }
  // Each method against the first (the reference, normally cmdp in the form
  // the run file runs) on the same problems: per problem, the share correct
  // (within budget) over seeds and samples; the mean difference with its
  // t-interval over problems — over arithmetic cells when the problems have
  // them (the synthetic task's problems repeat cells: treating them as
  // independent would overstate what is resolved).
  const size_t P = problems;
  std::vector<int64_t> cluster(P, -1);
  for (const RunRow& r : rows) {
    for (const auto& it : (r.sampled ? *r.sampled : r.report).items) {
      if (it.example >= 0 && static_cast<size_t>(it.example) < P)
        cluster[it.example] = it.record.cluster;
    }
  }
  // ByCluster's own rule: cells only when every problem has one.
  const bool clustered = std::none_of(cluster.begin(), cluster.end(),
                                      [](int64_t c) { return c < 0; });
  const size_t cells = std::set<int64_t>(cluster.begin(), cluster.end()).size();
  auto pooled = [&](const std::string& m, bool csr) {
    std::vector<double> acc(P, 0);
    double runs = 0;
    for (const RunRow& r : rows) {
      if (r.method != m) continue;
      const auto v = PerProblem(r.sampled ? *r.sampled : r.report, P, csr);
      for (size_t i = 0; i < P; ++i) acc[i] += v[i];
      runs += 1;
    }
    for (double& x : acc) x /= std::max(runs, 1.0);
    return acc;
  };
  if (variants.size() > 1) {
    const std::string& ref = variants.front().label;
    absl::StrAppend(
        &md, "\n## Paired against ", ref, " (same ", P, " problems",
        clustered ? absl::StrCat(" in ", cells, " arithmetic cells") : "", ", ",
        have_sampled ? "sampled" : "greedy",
        " evaluation pooled over seeds; interval over ",
        clustered ? "cells" : "problems", ")\n\n", "| method | ΔFAC vs ", ref,
        " [95% CI] | ΔCSR vs ", ref, " [95% CI] |\n", "|---|---|---|\n");
    const auto cf = ByCluster(pooled(ref, false), cluster),
               cc = ByCluster(pooled(ref, true), cluster);
    for (const Variant& v : variants) {
      if (v.label == ref) continue;
      const rl::Estimate df =
          rl::PairedDifference(ByCluster(pooled(v.label, false), cluster), cf);
      const rl::Estimate dc =
          rl::PairedDifference(ByCluster(pooled(v.label, true), cluster), cc);
      absl::StrAppend(
          &md, "| ", v.label, " | ",
          absl::StrFormat("%+.3f [%+.3f, %+.3f]", df.value, df.low, df.high),
          " | ",
          absl::StrFormat("%+.3f [%+.3f, %+.3f]", dc.value, dc.low, dc.high),
          " |\n");
      results["paired_vs_reference"].push_back(
          {{"method", v.label},
           {"correctness_difference", eval::EstimateToJson(df)},
           {"satisfaction_difference", eval::EstimateToJson(dc)}});
    }
  }
  absl::StrAppend(
      &md, "\n", seeds,
      " seed(s) per method; each cell is the mean over seeds with a 95% ",
      "t-interval across seeds, clamped to the metric's range ([0, 1] for ",
      "FAC and CSR; with few seeds the t quantile is large — 12.7 for 2, ",
      "4.3 for 3 — so these are wide). ",
      "Reference rows: one evaluation, the share of answers with an interval ",
      "over arithmetic cells where the problems have them (cluster-robust), ",
      "else over problems (Wilson for greedy). ", P,
      " held-out problems. Every row is the run's last step (no checkpoint ",
      "selection). The paired table is the sharper test: a difference whose ",
      "interval excludes 0 is an effect.\n");
  ExperimentReport out;
  out.runs_csv = csv.str();
  out.results = std::move(results);
  out.summary_md = std::move(md);
  return out;
}

namespace {

// Trains (or reuses) and evaluates one variant at one seed.
absl::StatusOr<RunRow> TrainAndEvaluate(const ExperimentOptions& o,
                                        const Variant& v, int64_t s,
                                        const Prepared& prep,
                                        const std::string& dir,
                                        std::ostream& log) {
  const v1::RunConfig& resolved = prep.config;
  const std::string out = absl::StrCat(dir, "/", Slug(v.label), "/seed-", s);
  std::vector<std::string> over = v.overrides;
  for (std::string x :
       {absl::StrCat("seed=", resolved.seed() + s), "output_dir=" + out,
        std::string("training.resume=never"),
        "student.path=" + resolved.student().path(),
        "teacher.path=" + resolved.teacher().path(),
        "data.train_path=" + resolved.data().train_path(),
        "data.test_path=" + resolved.data().test_path()})
    over.push_back(x);
  CMDISTILL_ASSIGN_OR_RETURN(auto c, o.load(over));
  local::DistillResult reused;
  reused.final_model = out + "/final";
  reused.curve_csv = out + "/training_curve.csv";
  const bool reuse = o.reuse &&
                     fs::exists(reused.final_model + "/config.json") &&
                     LineCount(reused.curve_csv) ==
                         static_cast<uint64_t>(c.training().max_steps()) + 1;
  absl::StatusOr<local::DistillResult> run = reused;
  if (reuse) {
    log << "reusing the trained run in " << out << "\n";
  } else {
    ClearPreviousRun(out);
    local::DistillOptions dopt;
    dopt.binary = o.binary;
    dopt.actors = static_cast<int>(c.local().actors());
    dopt.teachers = static_cast<int>(c.local().teachers());
    dopt.signals = o.signals;
    dopt.label = absl::StrCat(v.label, " s", s);
    run = local::RunDistillation(c, dopt, log);
  }
  CMDISTILL_RETURN_IF_ERROR(run.status());
  std::vector<eval::EvalReport> r;
  CMDISTILL_RETURN_IF_ERROR(EvaluateBoth(v.label, run->final_model,
                                         prep.teacher.get(), *prep.tok,
                                         prep.examples, c, log, &r));
  RunRow row{v.label,      static_cast<int>(s), r[0],
             std::nullopt, run->curve_csv,      run->seconds};
  if (r.size() > 1) row.sampled = r[1];
  return row;
}

// Writes the report and the plotting script and runs it (Debian's
// matplotlib); false when plotting failed (the tables are written).
absl::StatusOr<bool> WriteReport(const std::string& dir,
                                 const ExperimentReport& report) {
  for (const auto& [name, text] :
       {std::pair<std::string, std::string>{"runs.csv", report.runs_csv},
        {"results.json", report.results.dump(2) + "\n"},
        {"summary.md", report.summary_md},
        {"plot_experiment.py", kPlotExperimentPy}}) {
    CMDISTILL_RETURN_IF_ERROR(
        util::WriteFileAtomically(dir + "/" + name, text));
  }
  const std::string py =
      fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  const std::string cmd =
      absl::StrCat(py, " '", dir, "/plot_experiment.py' '", dir,
                   "/results.json' --out '", dir, "' 1>&2");
  return std::system(cmd.c_str()) == 0;
}

}  // namespace

absl::StatusOr<ExperimentResult> RunExperiment(const ExperimentOptions& o,
                                               std::ostream& log) {
  CMDISTILL_ASSIGN_OR_RETURN(auto base, o.load({}));
  CMDISTILL_ASSIGN_OR_RETURN(auto prep, Prepare(base, log));
  const v1::RunConfig& resolved = prep.config;
  ExperimentResult result;
  result.dir = resolved.output_dir() + "/experiment";
  std::error_code ec;
  fs::create_directories(result.dir, ec);
  std::vector<eval::EvalReport> reference;
  CMDISTILL_RETURN_IF_ERROR(EvaluateBoth("teacher", prep.teacher.get(), nullptr,
                                         *prep.tok, prep.examples, resolved,
                                         log, &reference));
  CMDISTILL_RETURN_IF_ERROR(
      EvaluateBoth("warm start", resolved.student().path(), prep.teacher.get(),
                   *prep.tok, prep.examples, resolved, log, &reference));
  std::vector<RunRow> rows;
  for (const Variant& v : o.variants) {
    for (int64_t s = 0; s < o.seeds; ++s) {
      log << "\n== " << v.label << ", seed " << s << " (" << rows.size() + 1
          << "/" << o.variants.size() * static_cast<size_t>(o.seeds) << ")\n";
      CMDISTILL_ASSIGN_OR_RETURN(
          auto row, TrainAndEvaluate(o, v, s, prep, result.dir, log));
      rows.push_back(std::move(row));
    }
  }
  result.report = BuildReport(resolved, o.variants, reference, rows,
                              prep.examples.size(), o.seeds);
  CMDISTILL_ASSIGN_OR_RETURN(auto plotted,
                             WriteReport(result.dir, result.report));
  result.plotted = plotted;
  return result;
}

}  // namespace cmdistill::workflows
