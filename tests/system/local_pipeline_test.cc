// `cmdistill local --smoke`, the main job at tiny sizes, as a real process: it
// makes the data, tokenizer and models, runs learner, teacher, reward and two
// actors as child processes, evaluates and prints the table; a second run
// reuses the cached models; Ctrl-C stops every child; a child that dies is
// named. Also `experiment --smoke` and `eval`/`sft` on the made models.
#include <signal.h>
#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill {
namespace {

// What configs/quickstart.yaml runs as cmdp, named as every table names it.
constexpr char kCmdp[] = "cmdp@constraint.term_two_denominator=all_tokens";

namespace fs = std::filesystem;
using ::cmdistill::testing::RunProcess;
using ::cmdistill::testing::Subprocess;
using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string QuickstartConfig() {
  const char* src = std::getenv("CMDISTILL_SOURCE_DIR");
  return std::string(src ? src : ".") + "/configs/quickstart.yaml";
}

class LocalPipelineTest : public ::testing::Test {
 protected:
  // One output folder for the suite: the first run makes (and caches) the
  // models, the later ones reuse them.
  static void SetUpTestSuite() { dir_ = new testing::TempDir(); }
  static void TearDownTestSuite() { delete dir_; }

  static std::vector<std::string> Local(std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {
        testing::CmdistillBinary(),  "local",   "--config",
        QuickstartConfig(),          "--smoke", "--set",
        "output_dir=" + dir_->path()};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  // Starts a long run and returns the children's pids from its RUNNING line.
  static std::map<std::string, pid_t> StartLong(Subprocess* p) {
    std::map<std::string, pid_t> pids;
    for (;;) {
      auto line = p->ReadLine(absl::Now() + absl::Minutes(3));
      if (!line.ok()) {
        ADD_FAILURE() << line.status() << "\n" << p->Stderr();
        return pids;
      }
      if (line->rfind("RUNNING ", 0) != 0) continue;
      for (absl::string_view kv : absl::StrSplit(line->substr(8), ' ')) {
        std::vector<std::string> parts = absl::StrSplit(kv, '=');
        int pid = 0;
        if (parts.size() == 2 && absl::SimpleAtoi(parts[1], &pid))
          pids[parts[0]] = pid;
      }
      return pids;
    }
  }

  static bool Alive(pid_t pid) { return kill(pid, 0) == 0; }

  static testing::TempDir* dir_;
};

testing::TempDir* LocalPipelineTest::dir_ = nullptr;

TEST_F(LocalPipelineTest, SmokeRunsTheWholePipelineAndCachesTheModels) {
  const auto r = RunProcess(Local(), absl::Minutes(4));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The table: three rows with numbers.
  EXPECT_THAT(r.out, HasSubstr("| teacher | "));
  EXPECT_THAT(r.out, HasSubstr("| student before | "));
  EXPECT_THAT(r.out, HasSubstr("| student after | "));
  EXPECT_THAT(r.err, HasSubstr("teacher: 1"));  // "<n> parameters, ..."
  EXPECT_THAT(r.err, HasSubstr("ETA"));
  const std::string d = dir_->path();
  // The evaluation files hold the numbers of the table.
  const json after = json::parse(Read(d + "/eval/student_after.json"));
  EXPECT_EQ(after["metrics"]["correctness"]["n"], 16);
  EXPECT_EQ(after["metrics"]["constraint_satisfaction"]["n"], 16);
  const double csr = after["metrics"]["constraint_satisfaction"]["value"];
  EXPECT_GE(csr, 0.0);
  EXPECT_LE(csr, 1.0);
  EXPECT_GT(after["metrics"]["mean_token_kl"]["value"].get<double>(), 0.0);
  EXPECT_EQ(after["items"].size(), 16u);
  // The synthetic task's reasoning is checked on every answer.
  EXPECT_EQ(after["metrics"]["reasoning_success"]["n"], 16);
  EXPECT_TRUE(after["items"][0].contains("style"));
  EXPECT_THAT(r.out, HasSubstr("reasoning success"));
  // final/ was chosen on the validation split, by a printed rule, among the
  // warm start, the checkpoints (steps 2 and 4) and the last step.
  EXPECT_THAT(r.out, HasSubstr("final/: "));
  EXPECT_THAT(r.out, HasSubstr("validation CSR >= 0.9"));
  EXPECT_THAT(r.out, HasSubstr("| warm start | "));
  EXPECT_THAT(r.out, HasSubstr("| step 2 | "));
  EXPECT_THAT(r.out, HasSubstr("**chosen**"));
  // Sampled beside greedy: 2 samples per problem in --smoke.
  const json sampled =
      json::parse(Read(d + "/eval/student_after_sampled.json"));
  EXPECT_EQ(sampled["metrics"]["correctness"]["n"], 32);
  EXPECT_EQ(sampled["items"].size(), 32u);
  EXPECT_THAT(r.out, HasSubstr("| student after sampled | "));
  // The model card: the budget it was trained and verified under, the
  // results, and the teacher's fingerprint.
  const json card = json::parse(Read(d + "/final/cmdistill_eval.json"));
  // The quickstart's one departure from the paper's cmdp is in its name.
  EXPECT_EQ(card["method"], kCmdp);
  EXPECT_GT(card["budget"].get<double>(), 0.0);
  ASSERT_EQ(card["results"].size(), 2u);
  EXPECT_EQ(card["results"][0]["metrics"]["constraint_satisfaction"]["value"],
            after["metrics"]["constraint_satisfaction"]["value"]);
  EXPECT_EQ(card["teacher"]["sha256"].get<std::string>().size(), 64u);
  EXPECT_THAT(card["selection"].get<std::string>(), HasSubstr("chosen: "));
  const std::string readme = Read(d + "/final/README.md");
  EXPECT_THAT(readme, ::testing::StartsWith("---\n"));
  EXPECT_THAT(readme, HasSubstr("teacher_sha256: " +
                                card["teacher"]["sha256"].get<std::string>()));
  EXPECT_THAT(readme, HasSubstr("  method: " + std::string(kCmdp) + "\n"));
  // Machine-readable: which candidate final/ is, and the reasoning figures.
  EXPECT_THAT(readme, HasSubstr("  selected: \""));
  EXPECT_THAT(readme, HasSubstr("    reasoning_success: {value: "));
  EXPECT_THAT(readme, HasSubstr("constraint_satisfaction: {value: "));
  const json teacher = json::parse(Read(d + "/eval/teacher.json"));
  EXPECT_EQ(teacher["metrics"]["constraint_satisfaction"]["n"], 0);
  // Every learner step was reported and recorded.
  std::vector<std::string> curve =
      absl::StrSplit(Read(d + "/training_curve.csv"), '\n', absl::SkipEmpty());
  ASSERT_EQ(curve.size(), 5u);  // header + training.max_steps=4
  EXPECT_THAT(curve[0], HasSubstr(",clip_fraction,approx_kl,entropy,"));
  EXPECT_THAT(curve[0], HasSubstr(",teacher_style,foreign_style"));
  // The embedded task's answers are classified: a share in [0, 1], not empty.
  {
    std::vector<std::string> cells = absl::StrSplit(curve[4], ',');
    ASSERT_GE(cells.size(), 2u);
    const std::string& foreign = cells[cells.size() - 1];
    ASSERT_FALSE(foreign.empty()) << curve[4];
    EXPECT_GE(std::stod(foreign), 0.0);
    EXPECT_LE(std::stod(foreign), 1.0);
  }
  EXPECT_THAT(curve[4], ::testing::StartsWith("4,"));
  // The trained student, its checkpoints, logs and the scraped metrics.
  EXPECT_TRUE(fs::exists(d + "/final/config.json"));
  EXPECT_TRUE(fs::exists(d + "/checkpoints"));
  for (const char* log : {"learner", "teacher", "reward", "actor-1", "actor-2"})
    EXPECT_TRUE(fs::exists(d + "/logs/" + std::string(log) + ".log")) << log;
  auto learner_metrics =
      testing::ParsePrometheusText(Read(d + "/metrics/learner.prom"));
  ASSERT_OK(learner_metrics.status());
  EXPECT_EQ((*learner_metrics)["cmdistill_learner_step"], 4);
  EXPECT_FALSE(learner_metrics->count("cmdistill_learner_lambda"));  // cmdp
  // The last step's diagnostics: a real entropy and length, ratios near 1.
  EXPECT_GT((*learner_metrics)["cmdistill_learner_entropy_nats"], 0.0);
  EXPECT_GT((*learner_metrics)["cmdistill_learner_completion_length_tokens"],
            1.0);
  EXPECT_GT((*learner_metrics)["cmdistill_learner_ratio{stat=\"max\"}"], 0.5);
  EXPECT_NEAR(
      (*learner_metrics)["cmdistill_learner_style_ratio{style=\"teacher\"}"] +
          (*learner_metrics)
              ["cmdistill_learner_style_ratio{style=\"foreign\"}"] +
          (*learner_metrics)["cmdistill_learner_style_ratio{style=\"other\"}"],
      1.0, 1e-9);
  // The actors write their metrics in local mode (--metrics-file, last time
  // at exit): together they submitted at least what the learner accepted,
  // and their client-side latency histograms counted the submissions. (Each
  // actor's own share depends on which one won the leases.)
  double submitted = 0, submit_rpcs = 0;
  for (const char* a : {"actor-1", "actor-2"}) {
    auto am = testing::ParsePrometheusText(
        Read(d + "/metrics/" + std::string(a) + ".prom"));
    ASSERT_OK(am.status()) << a;
    ASSERT_TRUE(am->count("cmdistill_actor_trajectories_total")) << a;
    submitted += (*am)["cmdistill_actor_trajectories_total"];
    submit_rpcs += (*am)
        ["cmdistill_actor_rpc_seconds_count{method=\"SubmitTrajectories\","
         "peer=\"learner\"}"];
  }
  const double accepted = (*learner_metrics)
      ["cmdistill_learner_trajectories_total{outcome=\"accepted\"}"];
  EXPECT_GE(accepted, 4 * 4 * 4);  // steps x prompts x samples per prompt
  EXPECT_GE(submitted, accepted);
  EXPECT_GT(submit_rpcs, 0);
  // The held-out results as Prometheus text, equal to the JSON's.
  auto em = testing::ParsePrometheusText(Read(d + "/metrics/eval.prom"));
  ASSERT_OK(em.status());
  EXPECT_NEAR(
      (*em)["cmdistill_eval_constraint_satisfaction_ratio{estimate=\"value\","
            "model=\"student_after\"}"],
      csr, 1e-9);
  EXPECT_EQ((*em)["cmdistill_eval_completions{model=\"teacher\"}"], 16);
  EXPECT_FALSE(em->count(
      "cmdistill_eval_token_kl{estimate=\"value\",model=\"teacher\"}"));
  // The student loads in transformers/vLLM with the right stop tokens.
  const json gen = json::parse(Read(d + "/final/generation_config.json"));
  const json mcfg = json::parse(Read(d + "/final/config.json"));
  const json tcfg = json::parse(Read(d + "/final/tokenizer_config.json"));
  EXPECT_EQ(gen["eos_token_id"], mcfg["eos_token_id"]);
  EXPECT_TRUE(gen.contains("temperature"));
  EXPECT_TRUE(mcfg.contains("bos_token_id"));
  EXPECT_TRUE(mcfg.contains("transformers_version"));
  EXPECT_EQ(tcfg["tokenizer_class"], "PreTrainedTokenizerFast");
  EXPECT_EQ(tcfg["model_max_length"], mcfg["max_position_embeddings"]);
  // The resolved run file is a valid run file.
  const auto v = RunProcess({testing::CmdistillBinary(), "config", "validate",
                             "--config", d + "/run.yaml"},
                            absl::Minutes(1));
  EXPECT_EQ(v.exit_code, 0) << v.err;

  // Again: the models come from the cache, the run is fresh (steps 1..4).
  const auto again = RunProcess(Local(), absl::Minutes(3));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.err, HasSubstr("teacher: cached at"));
  EXPECT_THAT(again.err, HasSubstr("student (warm start): cached at"));
  EXPECT_THAT(again.err, ::testing::Not(HasSubstr("sft [")));
  curve =
      absl::StrSplit(Read(d + "/training_curve.csv"), '\n', absl::SkipEmpty());
  EXPECT_EQ(curve.size(), 5u);
}

TEST_F(LocalPipelineTest, CtrlCStopsEveryChildCleanly) {
  Subprocess p(Local({"--set", "training.max_steps=100000"}));
  const auto pids = StartLong(&p);
  ASSERT_EQ(pids.size(), 5u);
  p.Signal(SIGINT);
  auto code = p.Wait(absl::Now() + absl::Minutes(2));
  ASSERT_OK(code.status());
  EXPECT_EQ(*code, 130) << p.Stderr();
  for (const auto& [name, pid] : pids) EXPECT_FALSE(Alive(pid)) << name;
  const std::string err = p.Stderr();
  EXPECT_THAT(err, HasSubstr("interrupted"));
  // The learner stopped cleanly: its log ends with the shutdown checkpoint.
  EXPECT_THAT(Read(dir_->path() + "/logs/learner.log"), HasSubstr("FINISHED"));
}

TEST_F(LocalPipelineTest, ADeadChildIsNamedAndTheOthersStopped) {
  Subprocess p(Local({"--set", "training.max_steps=100000"}));
  const auto pids = StartLong(&p);
  ASSERT_EQ(pids.count("actor-1"), 1u);
  kill(pids.at("actor-1"), SIGKILL);
  auto code = p.Wait(absl::Now() + absl::Minutes(2));
  ASSERT_OK(code.status());
  EXPECT_EQ(*code, 1);
  const std::string err = p.Stderr();
  EXPECT_THAT(err, HasSubstr("actor-1"));
  EXPECT_THAT(err, HasSubstr("killed by signal 9"));
  EXPECT_THAT(err, HasSubstr("logs/actor-1.log"));
  for (const auto& [name, pid] : pids) EXPECT_FALSE(Alive(pid)) << name;
}

TEST_F(LocalPipelineTest, ExperimentComparesMethodsFromOneWarmStart) {
  const auto r = RunProcess(
      {testing::CmdistillBinary(), "experiment", "--config", QuickstartConfig(),
       "--smoke", "--set", "output_dir=" + dir_->path(), "--methods",
       "cmdp,grpo", "--seeds", "1"},
      absl::Minutes(4));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string d = dir_->path() + "/experiment";
  const json res = json::parse(Read(d + "/results.json"));
  ASSERT_EQ(res["runs"].size(), 2u);
  EXPECT_EQ(res["runs"][0]["method"], kCmdp);
  EXPECT_EQ(res["runs"][1]["method"], "grpo");
  ASSERT_EQ(res["methods"].size(), 2u);
  EXPECT_EQ(res["methods"][0]["seeds"], 1);
  const std::string summary = Read(d + "/summary.md");
  EXPECT_THAT(summary, HasSubstr("| " + std::string(kCmdp) + " | "));
  EXPECT_THAT(summary, HasSubstr("| grpo | "));
  EXPECT_THAT(summary, HasSubstr("| warm start (reference) | "));
  EXPECT_THAT(summary, HasSubstr("## Sampled"));
  EXPECT_THAT(summary, HasSubstr("| warm start sampled (reference) | "));
  EXPECT_THAT(summary, HasSubstr("## Paired against " + std::string(kCmdp)));
  ASSERT_EQ(res["paired_vs_reference"].size(), 1u);
  EXPECT_EQ(res["paired_vs_reference"][0]["method"], "grpo");
  const double diff =
      res["paired_vs_reference"][0]["correctness_difference"]["value"];
  EXPECT_NEAR(diff,
              res["runs"][1]["sampled"]["metrics"]["correctness"]["value"]
                      .get<double>() -
                  res["runs"][0]["sampled"]["metrics"]["correctness"]["value"]
                      .get<double>(),
              1e-9);  // one seed: the paired mean is the difference of means
  std::vector<std::string> runs =
      absl::StrSplit(Read(d + "/runs.csv"), '\n', absl::SkipEmpty());
  EXPECT_EQ(runs.size(), 3u);
  if (fs::exists("/usr/lib/python3/dist-packages/matplotlib")) {
    ASSERT_TRUE(fs::exists(d + "/tradeoff.png")) << r.err;
    EXPECT_GT(fs::file_size(d + "/tradeoff.png"), 1000u);
    EXPECT_GT(fs::file_size(d + "/curves.png"), 1000u);
    // The embedded task's answers are classified: the reasoning plot too.
    ASSERT_TRUE(fs::exists(d + "/reasoning.png")) << r.err;
    EXPECT_GT(fs::file_size(d + "/reasoning.png"), 1000u);
  }
  // --reuse keeps the trained runs and only evaluates them again: the same
  // greedy results, no training.
  const auto again = RunProcess(
      {testing::CmdistillBinary(), "experiment", "--config", QuickstartConfig(),
       "--smoke", "--set", "output_dir=" + dir_->path(), "--methods",
       "cmdp,grpo", "--seeds", "1", "--reuse"},
      absl::Minutes(4));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.err, HasSubstr("reusing the trained run"));
  EXPECT_THAT(again.err, ::testing::Not(HasSubstr("learner, teacher, reward")));
  const json res2 = json::parse(Read(d + "/results.json"));
  ASSERT_EQ(res2["runs"].size(), 2u);
  EXPECT_EQ(res2["runs"][0]["metrics"]["correctness"]["value"],
            res["runs"][0]["metrics"]["correctness"]["value"]);
  // An unknown method is refused before any work, naming the choices.
  const auto bad =
      RunProcess({testing::CmdistillBinary(), "experiment", "--config",
                  QuickstartConfig(), "--smoke", "--set",
                  "output_dir=" + dir_->path(), "--methods", "cmdp,ppo"},
                 absl::Minutes(1));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("'ppo' is not one of"));
  // So is a variant whose override names no key.
  const auto bad_key = RunProcess(
      {testing::CmdistillBinary(), "experiment", "--config", QuickstartConfig(),
       "--smoke", "--set", "output_dir=" + dir_->path(), "--methods",
       "cmdp,cmdp@constraint.no_such_key=1"},
      absl::Minutes(1));
  EXPECT_EQ(bad_key.exit_code, 2);
  EXPECT_THAT(bad_key.err, HasSubstr("no_such_key"));
}

TEST_F(LocalPipelineTest, EvalAndSftWorkOnTheMadeModels) {
  const std::string d = dir_->path();
  const auto e = RunProcess(
      {testing::CmdistillBinary(), "eval", "--config", QuickstartConfig(),
       "--set", "eval.max_examples=8", "--set", "generation.max_new_tokens=32",
       "--student", d + "/models/student-warm", "--teacher",
       d + "/models/teacher", "--data", d + "/data/test.jsonl", "--json",
       d + "/e.json"},
      absl::Minutes(2));
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_THAT(e.out, HasSubstr("| student | "));
  const json report = json::parse(Read(d + "/e.json"));
  EXPECT_EQ(report["metrics"]["correctness"]["n"], 8);
  EXPECT_EQ(report["items"].size(), 8u);
  // sft continues from a model folder and writes a loadable one.
  const auto s = RunProcess({testing::CmdistillBinary(),
                             "sft",
                             "--config",
                             QuickstartConfig(),
                             "--set",
                             "data.train_path=" + d + "/data/train.jsonl",
                             "--set",
                             "data.test_path=" + d + "/data/test.jsonl",
                             "--set",
                             "local.student_sft.steps=3",
                             "--set",
                             "local.student_sft.teacher_style_steps=2",
                             "--set",
                             "local.student_sft.eval_examples=2",
                             "--knobs",
                             "student",
                             "--model",
                             d + "/models/student-warm",
                             "--out",
                             d + "/sft-out"},
                            absl::Minutes(2));
  ASSERT_EQ(s.exit_code, 0) << s.err;
  const json sj = json::parse(s.out);
  EXPECT_EQ(sj["steps"], 5);  // 3 on the style mix, then 2 on the teacher's
  EXPECT_TRUE(fs::exists(d + "/sft-out/model.safetensors") ||
              fs::exists(d + "/sft-out/model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(d + "/sft-out/tokenizer.json"));
  // A missing student folder is a clear failure.
  const auto missing =
      RunProcess({testing::CmdistillBinary(), "eval", "--student", d + "/nope"},
                 absl::Minutes(1));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("nope"));
}

// --monitor fails fast, before any preparation, naming what is missing.
TEST_F(LocalPipelineTest, MonitorWithoutPrometheusOrWithABadPortFailsFirst) {
  auto a = Local({"--monitor"});
  a.insert(a.begin(), {"/usr/bin/env", "PATH=/nonexistent"});
  const auto r = RunProcess(a, absl::Minutes(1));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("apt-get install prometheus"));
  EXPECT_THAT(r.err, Not(HasSubstr("parameters")));  // no model was made
  const auto bad = RunProcess(Local({"--monitor", "--monitor-port", "70000"}),
                              absl::Minutes(1));
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_THAT(bad.err, HasSubstr("--monitor-port must be 0..65535"));
}

}  // namespace
}  // namespace cmdistill
