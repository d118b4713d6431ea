// `cmdistill sft`, `eval`, `local` and `experiment`: the embedded default's
// whole pipeline and the method comparison.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "app/cli/commands.h"
#include "app/cli/flags.h"
#include "app/cli/run_config_flags.h"
#include "app/eval/evaluation.h"
#include "app/local/monitor.h"
#include "app/local/progress.h"
#include "app/local/supervisor.h"
#include "app/workflows/bootstrap.h"
#include "app/workflows/experiment.h"
#include "app/workflows/run_local.h"
#include "app/workflows/workflow.h"
#include "common/config/config.h"
#include "common/model/language_model.h"
#include "common/process/signals.h"
#include "common/rl/stats.h"
#include "common/tokenizer/tokenizer.h"
#include "common/util/files.h"
#include "common/util/sha256.h"
#include "nlohmann/json.hpp"

namespace cmdistill::cli {
namespace {

using workflows::Bootstrap;
using workflows::ResolveLocalPaths;
using workflows::SelfPath;

namespace fs = std::filesystem;
using json = nlohmann::json;

std::optional<v1::RunConfig> LoadWithSmoke(
    const FlagSet& flags, bool smoke, Io io,
    const std::vector<std::string>& extra = {}) {
  std::vector<std::string> sets;
  if (smoke) sets = workflows::SmokeOverrides();
  for (const std::string& s : flags.GetAll("set")) sets.push_back(s);
  sets.insert(sets.end(), extra.begin(), extra.end());
  auto config = flags.IsSet("config")
                    ? config::LoadRunConfig(flags.Get("config"), sets)
                    : config::LoadRunConfigFromString("", "(defaults)", sets);
  if (!config.ok()) {
    io.err << config.status().message() << "\n";
    return std::nullopt;
  }
  return *std::move(config);
}

// ------------------------------------------------------------------- sft

int RunSftCommand(const std::vector<std::string>& args, Io io) {
  FlagSet flags(
      "cmdistill sft",
      "--config FILE --out DIR (--model DIR | --init teacher|student "
      "--tokenizer DIR) [--knobs teacher|student]",
      "Supervised fine-tuning on the worked solutions of data.train_path: "
      "next-token\n"
      "cross-entropy on the completion, AdamW with warm-up and schedule, "
      "held-out\n"
      "correctness (greedy, data.test_path) every eval_every steps. Knobs: "
      "local.teacher_sft\n"
      "or local.student_sft of the run file. Writes a Hugging Face folder.");
  AddRunConfigFlags(&flags, "YAML run file");
  flags.AddString("out", "DIR", "output model folder");
  flags.AddString("model", "DIR", "start from this model folder");
  flags.AddString("init", "ROLE",
                  "start from a random model of local.<ROLE>_model's shape");
  flags.AddString("tokenizer", "DIR", "tokenizer folder (with --init)");
  flags.AddString("knobs", "ROLE",
                  "teacher or student: which local.*_sft section to use");
  if (auto code = ParseOrExit(&flags, args, io)) return *code;
  if (!flags.IsSet("out") || flags.IsSet("model") == flags.IsSet("init")) {
    io.err << "cmdistill sft: --out DIR and exactly one of --model DIR or "
              "--init ROLE are required\n";
    return kExitUsage;
  }
  auto config = LoadRunConfigOrReport(flags, io);
  if (!config) return kExitFailure;
  const std::string role = flags.IsSet("knobs")  ? flags.Get("knobs")
                           : flags.IsSet("init") ? flags.Get("init")
                                                 : "teacher";
  if ((role != "teacher" && role != "student") ||
      (flags.IsSet("init") && flags.Get("init") != "teacher" &&
       flags.Get("init") != "student")) {
    io.err << "cmdistill sft: roles are 'teacher' or 'student'\n";
    return kExitUsage;
  }
  if (flags.IsSet("init") && !flags.IsSet("tokenizer")) {
    io.err << "cmdistill sft: --init needs --tokenizer DIR\n";
    return kExitUsage;
  }
  workflows::SftRequest req;
  req.model_dir = flags.IsSet("model") ? flags.Get("model") : "";
  req.init_role = flags.IsSet("init") ? flags.Get("init") : "";
  req.tokenizer_dir = flags.IsSet("tokenizer") ? flags.Get("tokenizer") : "";
  req.knobs = role;
  req.out = flags.Get("out");
  auto sum = workflows::SftToFolder(*config, req, io.err);
  if (!sum.ok()) {
    return Fail(io, "sft", sum.status());
  }
  io.out << json({{"out", flags.Get("out")},
                  {"steps", sum->steps},
                  {"final_loss", sum->final_loss},
                  {"heldout_correctness", sum->heldout_correctness.value},
                  {"heldout_examples", sum->heldout_correctness.n},
                  {"seconds", sum->seconds}})
                .dump()
         << "\n";
  return kExitOk;
}

// ------------------------------------------------------------------- eval

int RunEvalCommand(const std::vector<std::string>& args, Io io) {
  FlagSet flags(
      "cmdistill eval",
      "--student DIR [--teacher DIR] [--data FILE] [--config FILE] [--json F] "
      "[--markdown F]",
      "Held-out evaluation: final-answer correctness, constraint satisfaction "
      "at\n"
      "constraint.budget and cost_normalization, mean per-token KL to the "
      "teacher and\n"
      "completion length, each with a 95% confidence interval. Without "
      "--teacher only\n"
      "correctness and length. Decoding: eval.temperature (0 = greedy), "
      "eval.samples_per_prompt.");
  AddRunConfigFlags(&flags, "YAML run file (defaults when omitted)");
  flags.AddString("student", "DIR", "model folder to evaluate");
  flags.AddString("teacher", "DIR", "teacher model folder (for CSR and KL)");
  flags.AddString("data", "FILE", "JSONL test set (default: data.test_path)");
  flags.AddString("name", "NAME", "row name in the table", "student");
  flags.AddString("json", "FILE", "write the report (with every item) here");
  flags.AddString("markdown", "FILE", "write the Markdown table here");
  if (auto code = ParseOrExit(&flags, args, io)) return *code;
  if (!flags.IsSet("student")) {
    io.err << "cmdistill eval: --student DIR is required\n";
    return kExitUsage;
  }
  auto config = LoadRunConfigOrReport(flags, io);
  if (!config) return kExitFailure;
  if (flags.IsSet("data"))
    config->mutable_data()->set_test_path(flags.Get("data"));
  auto r = workflows::EvaluateFolder(
      *config, flags.Get("name"), flags.Get("student"),
      flags.IsSet("teacher") ? flags.Get("teacher") : "", io.err);
  if (!r.ok()) {
    return Fail(io, "eval", r.status());
  }
  const std::string table = eval::MarkdownTable({*r}, *config);
  io.out << table;
  for (const auto& [flag, text] :
       {std::pair<std::string, std::string>{"json", eval::ReportJson(*r, true)},
        {"markdown", table}}) {
    if (!flags.IsSet(flag)) continue;
    if (auto s = util::WriteFileAtomically(flags.Get(flag), text); !s.ok()) {
      return Fail(io, "eval", s);
    }
  }
  return kExitOk;
}

// ------------------------------------------------------------------- local

// `prepare`: what `local` makes before training (data, tokenizer, teacher and
// warm student), alone — the init step of docker-compose and Kubernetes, where
// the services then read the made files from a shared volume.
int RunPrepareCommand(const std::vector<std::string>& args, Io io) {
  FlagSet flags(
      "cmdistill prepare", "--config FILE [--smoke] [--set K=V]...",
      "Makes the embedded default's data, tokenizer, teacher and warm "
      "student where the\nrun file puts them (under output_dir when "
      "left out), cached as in `local`,\nand prints the paths. The "
      "services of a cluster or compose stack then read them.");
  AddRunConfigFlags(&flags, "YAML run file (configs/compose.yaml)");
  flags.AddBool("smoke", "tiny sizes (as local --smoke)");
  if (auto code = ParseOrExit(&flags, args, io)) return *code;
  if (!flags.IsSet("config")) {
    io.err << "cmdistill prepare: --config FILE is required\n";
    return kExitUsage;
  }
  auto loaded = LoadWithSmoke(flags, flags.GetBool("smoke"), io);
  if (!loaded) return kExitFailure;
  v1::RunConfig config = *loaded;
  ResolveLocalPaths(&config);
  if (auto s = Bootstrap(config, io.err); !s.ok()) {
    return Fail(io, "prepare", s);
  }
  io.out << "train data:  " << config.data().train_path() << "\n"
         << "test data:   " << config.data().test_path() << "\n"
         << "teacher:     " << config.teacher().path() << "\n"
         << "student:     " << config.student().path() << "\n";
  return kExitOk;
}

int RunLocalCommand(const std::vector<std::string>& args, Io io) {
  FlagSet flags(
      "cmdistill local", "--config FILE [--smoke] [--resume] [--set K=V]...",
      "The main job on one machine: makes the embedded default's data, "
      "tokenizer and\n"
      "models when missing (teacher SFT is cached), evaluates teacher and "
      "student, runs\n"
      "learner, teacher, reward and local.actors actors as separate processes "
      "on loopback\n"
      "(the same binary and flags as a cluster), evaluates the trained "
      "student and prints\n"
      "the table. Ctrl-C stops every child cleanly.");
  AddRunConfigFlags(&flags, "YAML run file (configs/quickstart.yaml)");
  flags.AddBool("smoke", "tiny sizes: the whole pipeline in about a minute");
  flags.AddBool("resume",
                "continue from the newest checkpoint instead of a fresh run");
  flags.AddBool("monitor",
                "also run Prometheus (Debian's `prometheus`) with the "
                "project's rules,\nscraping every child; its data stays in "
                "<output_dir>/monitor/");
  flags.AddString("monitor-port", "PORT",
                  "where --monitor's Prometheus listens (0: a free port)",
                  "9090");
  if (auto code = ParseOrExit(&flags, args, io)) return *code;
  if (!flags.IsSet("config")) {
    io.err << "cmdistill local: --config FILE is required (the embedded "
              "default: configs/quickstart.yaml)\n";
    return kExitUsage;
  }
  int64_t monitor_port = 0;
  if (!ParseInt64(flags, "monitor-port", &monitor_port, io) ||
      monitor_port < 0 || monitor_port > 65535) {
    io.err << "cmdistill local: --monitor-port must be 0..65535\n";
    return kExitUsage;
  }
  auto loaded = LoadWithSmoke(flags, flags.GetBool("smoke"), io);
  if (!loaded) return kExitFailure;
  io.err << "cmdistill local: run '" << loaded->run_name() << "', method "
         << config::MethodLabel(*loaded) << ", output in "
         << loaded->output_dir() << "\n";
  workflows::LocalOptions lo;
  lo.resume = flags.GetBool("resume");
  lo.monitor = flags.GetBool("monitor");
  lo.monitor_port = static_cast<int>(monitor_port);
  lo.binary = SelfPath();
  lo.status_out = &io.out;
  auto r = workflows::RunLocal(*loaded, lo, io.err);
  if (!r.ok()) return Fail(io, "local", r.status());
  io.out << workflows::LocalSummary(*r);
  return kExitOk;
}

// -------------------------------------------------------------------
// experiment

// Long for its flags and their help text; the work is
// workflows::RunExperiment.
int RunExperimentCommand(const std::vector<std::string>& args, Io io) {
  FlagSet flags(
      "cmdistill experiment",
      "--config FILE [--methods LIST] [--soft-lambdas LIST] [--seeds N] "
      "[--reuse] [--smoke] [--set K=V]...",
      "Trains every method from the same warm start (each as `local` runs it: "
      "services as\n"
      "processes), evaluates each on the held-out set (greedy and sampled), "
      "and writes\n"
      "<output_dir>/experiment/: runs.csv and results.json (every run), "
      "summary.md (mean\n"
      "over seeds, clamped 95% t-interval; each method paired against cmdp "
      "on the same\n"
      "problems) and, with Debian's python3-matplotlib, tradeoff.png and "
      "curves.png.\n"
      "A method may carry run-file overrides for its row alone: "
      "METHOD@KEY=VALUE[@...],\n"
      "e.g. cmdp@constraint.penalty=5 or saute@constraint.penalty=1.");
  AddRunConfigFlags(&flags, "YAML run file (configs/quickstart.yaml)");
  flags.AddString(
      "methods", "LIST", "comma-separated methods (or variants)",
      "cmdp,saute,grpo,soft_lagrangian,lagrangian,gkd,weakest_link");
  flags.AddString("soft-lambdas", "LIST",
                  "also soft_lagrangian at each fixed λ (the front of "
                  "tradeoff.png), e.g. 0.003,0.03,0.1",
                  "");
  flags.AddString("seeds", "N", "seeds per method", "3");
  flags.AddBool("smoke", "tiny sizes (as local --smoke)");
  flags.AddBool("reuse",
                "keep runs already trained to training.max_steps in their "
                "folders (more seeds, an interrupted experiment): only "
                "evaluate them");
  if (auto code = ParseOrExit(&flags, args, io)) return *code;
  if (!flags.IsSet("config")) {
    io.err << "cmdistill experiment: --config FILE is required (e.g. "
              "configs/quickstart.yaml)\n";
    return kExitUsage;
  }
  int64_t seeds = 0;
  if (!ParseInt64(flags, "seeds", &seeds, io)) return kExitUsage;
  if (seeds < 1 || seeds > 100) {
    io.err << "cmdistill experiment: --seeds must be in [1, 100]\n";
    return kExitUsage;
  }
  std::vector<workflows::Variant> variants;
  const std::vector<std::string> specs =
      absl::StrSplit(flags.Get("methods"), ',', absl::SkipEmpty());
  for (const std::string& m : specs)
    variants.push_back(workflows::ParseVariant(m));
  const std::vector<std::string> lambdas =
      absl::StrSplit(flags.Get("soft-lambdas"), ',', absl::SkipEmpty());
  for (const std::string& l : lambdas) {
    variants.push_back(
        workflows::ParseVariant("soft_lagrangian@constraint.soft_lambda=" + l));
  }
  const bool smoke = flags.GetBool("smoke");
  auto base = LoadWithSmoke(flags, smoke, io);
  if (!base) return kExitFailure;
  // Validate every method and override before any work; each row is named by
  // what it runs (config::MethodLabel: a departure from the paper's method
  // that the run file makes shows in the name).
  for (workflows::Variant& v : variants) {
    auto c = LoadWithSmoke(flags, smoke, io, v.overrides);
    if (!c) return kExitUsage;
    v.label = config::MethodLabel(*c, v.label);
  }
  auto signals = ShutdownSignal::Install();
  if (!signals.ok()) {
    return Fail(io, "experiment", signals.status());
  }
  workflows::ExperimentOptions eo;
  eo.variants = variants;
  eo.seeds = seeds;
  eo.reuse = flags.GetBool("reuse");
  eo.binary = SelfPath();
  eo.signals = signals->get();
  eo.load = [&](const std::vector<std::string>& over)
      -> absl::StatusOr<v1::RunConfig> {
    std::ostringstream why;
    auto c = LoadWithSmoke(flags, smoke, {why, why}, over);
    if (!c) return absl::InvalidArgumentError(why.str());
    return *c;
  };
  auto r = workflows::RunExperiment(eo, io.err);
  if (!r.ok()) return Fail(io, "experiment", r.status());
  io.out << "\n" << r->report.summary_md << "\n";
  if (!r->plotted) {
    io.err << "cmdistill experiment: plotting failed (it needs Debian's "
              "python3-matplotlib; scripts/setup.sh installs it); the tables "
              "are written\n";
  }
  io.out << "results: " << r->dir
         << "/ (summary.md, runs.csv, results.json, tradeoff.png, "
            "curves.png)\n";
  return kExitOk;
}

}  // namespace

void AddPipelineCommands(std::vector<Command>* commands) {
  commands->push_back(
      {"local",
       "run the whole pipeline as local processes on loopback (the main job)",
       RunLocalCommand});
  commands->push_back({"prepare",
                       "make the embedded default's data and models (the "
                       "init step of compose/k8s)",
                       RunPrepareCommand});
  commands->push_back(
      {"sft", "supervised fine-tuning on worked solutions", RunSftCommand});
  commands->push_back(
      {"eval", "held-out correctness, constraint satisfaction, KL, length",
       RunEvalCommand});
  commands->push_back({"experiment",
                       "compare methods over seeds from one warm start",
                       RunExperimentCommand});
}

}  // namespace cmdistill::cli
