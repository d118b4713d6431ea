// `cmdistill datagen` (the synthetic task) and `cmdistill grade` (answer
// checking in bulk).
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "app/cli/commands.h"
#include "app/cli/flags.h"
#include "app/cli/run_config_flags.h"
#include "app/tools/model_tools.h"
#include "common/tasks/answer.h"
#include "common/tasks/datagen.h"

namespace cmdistill::cli {
namespace {

int RunDatagen(const std::vector<std::string>& args, Io io) {
  FlagSet flags(
      "cmdistill datagen", "--out DIR [--train N] [--test N] [--seed S] ...",
      "Writes a synthetic GSM8K-style task: DIR/train.jsonl and "
      "DIR/test.jsonl\n"
      "(multi-step arithmetic word problems with worked solutions ending in\n"
      "\"#### N\"). Deterministic by seed; test questions never appear in "
      "train.");
  flags.AddString("out", "DIR", "output folder (created if missing)");
  flags.AddString("train", "N", "training problems", "2000");
  flags.AddString("test", "N", "held-out problems", "200");
  flags.AddString("seed", "S", "random seed", "0");
  flags.AddString("min-steps", "N", "fewest operations per problem", "1");
  flags.AddString("max-steps", "N", "most operations per problem", "3");
  flags.AddString("max-value", "N", "largest operand", "20");
  flags.AddString("ops", "LIST", "operations among add,sub,mul,div",
                  "add,sub,mul,div");
  flags.AddString("distractors", "P",
                  "probability of a distractor sentence per step", "0.3");
  if (auto code = ParseOrExit(&flags, args, io)) return *code;
  if (!flags.IsSet("out")) {
    io.err << "cmdistill datagen: --out DIR is required\n";
    return kExitUsage;
  }
  tasks::DatagenOptions o;
  int64_t train = 0, test = 0, seed = 0, min_steps = 0, max_steps = 0,
          max_value = 0;
  if (!ParseInt64(flags, "train", &train, io) ||
      !ParseInt64(flags, "test", &test, io) ||
      !ParseInt64(flags, "seed", &seed, io) ||
      !ParseInt64(flags, "min-steps", &min_steps, io) ||
      !ParseInt64(flags, "max-steps", &max_steps, io) ||
      !ParseInt64(flags, "max-value", &max_value, io)) {
    return kExitUsage;
  }
  if (train < 0 || test < 0 || seed < 0) {
    io.err << "cmdistill datagen: --train, --test and --seed must be >= 0\n";
    return kExitUsage;
  }
  if (!absl::SimpleAtod(flags.Get("distractors"), &o.distractor_probability)) {
    io.err << "--distractors: expected a number\n";
    return kExitUsage;
  }
  o.seed = static_cast<uint64_t>(seed);
  o.min_steps = static_cast<int>(min_steps);
  o.max_steps = static_cast<int>(max_steps);
  o.max_value = static_cast<int>(max_value);
  o.add = o.subtract = o.multiply = o.divide = false;
  for (absl::string_view op :
       absl::StrSplit(flags.Get("ops"), ',', absl::SkipEmpty())) {
    if (op == "add")
      o.add = true;
    else if (op == "sub")
      o.subtract = true;
    else if (op == "mul")
      o.multiply = true;
    else if (op == "div")
      o.divide = true;
    else {
      io.err << "--ops: unknown operation '" << op
             << "' (add, sub, mul, div)\n";
      return kExitUsage;
    }
  }
  const std::string dir = flags.Get("out");
  auto task = tools::WriteSyntheticTask(o, static_cast<size_t>(train),
                                        static_cast<size_t>(test), dir);
  if (!task.ok()) return Fail(io, "datagen", task.status());
  io.out << "wrote " << task->train.size() << " train and " << task->test.size()
         << " test problems to " << dir << "\n";
  return kExitOk;
}

int RunGrade(const std::vector<std::string>& args, Io io) {
  FlagSet flags("cmdistill grade",
                "[--strictness strict|last_number] < in.jsonl > out.jsonl",
                "Grades answers in bulk. Each input line is {\"response\": "
                "\"...\", \"gold\":\n"
                "\"...\"} (gold: a bare answer or a reference solution); each "
                "output line is\n"
                "{\"correct\": true|false, \"extracted\": \"...\"}, in input "
                "order. A malformed\n"
                "line gets {\"correct\": false, \"extracted\": \"\", "
                "\"error\": \"...\"} and the\n"
                "exit code is 1.");
  flags.AddString("strictness", "MODE",
                  "strict, or last_number to fall back on the last number",
                  "strict");
  if (auto code = ParseOrExit(&flags, args, io)) return *code;
  tasks::Strictness strictness;
  if (flags.Get("strictness") == "strict") {
    strictness = tasks::Strictness::kStrict;
  } else if (flags.Get("strictness") == "last_number") {
    strictness = tasks::Strictness::kLastNumber;
  } else {
    io.err << "--strictness: expected strict or last_number\n";
    return kExitUsage;
  }
  const int64_t bad = tools::GradeLines(strictness, std::cin, io.out, io.err);
  return bad > 0 ? kExitFailure : kExitOk;
}

}  // namespace

void AddTaskCommands(std::vector<Command>* commands) {
  commands->push_back(
      {"datagen", "write the synthetic GSM8K-style task (train/test JSONL)",
       RunDatagen});
  commands->push_back(
      {"grade",
       "grade answers in bulk: JSONL {response, gold} in, verdicts out",
       RunGrade});
}

}  // namespace cmdistill::cli
