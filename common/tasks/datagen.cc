#include "common/tasks/datagen.h"

#include <algorithm>
#include <cctype>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "nlohmann/json.hpp"

namespace cmdistill::tasks {
namespace {

struct Person {
  const char* name;
  const char* pronoun;  // subject
  const char* possessive;
};

constexpr Person kPeople[] = {
    {"Mia", "She", "her"},  {"Liam", "He", "his"},   {"Ava", "She", "her"},
    {"Noah", "He", "his"},  {"Zoe", "She", "her"},   {"Omar", "He", "his"},
    {"Lena", "She", "her"}, {"Ravi", "He", "his"},   {"Sofia", "She", "her"},
    {"Kenji", "He", "his"}, {"Amara", "She", "her"}, {"Diego", "He", "his"},
};
constexpr const char* kItems[] = {"marbles", "stickers", "apples", "pencils",
                                  "coins",   "cookies",  "stamps", "shells",
                                  "beads",   "cards",    "books",  "flowers",
                                  "crayons", "eggs",     "buttons"};
constexpr const char* kDistractors[] = {
    "Her neighbour has a dog that is {n} years old.",
    "The shop has {n} shelves.",
    "It rained for {n} days that month.",
    "The bus ride takes {n} minutes.",
    "There are {n} windows in the classroom.",
};

std::string Fill(const char* tmpl, int64_t n) {
  std::string s(tmpl);
  const size_t p = s.find("{n}");
  return s.replace(p, 3, std::to_string(n));
}

}  // namespace

absl::Status ValidateDatagenOptions(const DatagenOptions& o) {
  if (!(o.add || o.subtract || o.multiply || o.divide)) {
    return absl::InvalidArgumentError("datagen needs at least one operation");
  }
  if (o.min_steps < 1 || o.max_steps < o.min_steps || o.max_steps > 20) {
    return absl::InvalidArgumentError(
        "datagen steps must satisfy 1 <= min <= max <= 20");
  }
  if (o.max_value < 3 || o.max_value > 1000000) {
    return absl::InvalidArgumentError(
        "datagen max_value must be in [3, 1000000]");
  }
  if (!(o.distractor_probability >= 0 && o.distractor_probability <= 1)) {
    return absl::InvalidArgumentError(
        "datagen distractor probability must be in [0, 1]");
  }
  return absl::OkStatus();
}

// Long on purpose: one problem's story, steps and worked solution are
// generated together (each step's sentence and its solution line).
Example GenerateProblem(const DatagenOptions& o, SplitMix64* rng) {
  const Person& p = kPeople[rng->Below(std::size(kPeople))];
  const std::string item = kItems[rng->Below(std::size(kItems))];
  int64_t n = rng->Range(2, 5 * o.max_value);
  std::string q = absl::StrCat(p.name, " has ", n, " ", item, ".");
  std::string a;
  const int64_t start = n;
  std::string restated;  // ", then gets 2 more, then gives 1 away"
  const int steps = static_cast<int>(rng->Range(o.min_steps, o.max_steps));
  std::vector<char> ops;
  if (o.add) ops.push_back('+');
  if (o.subtract) ops.push_back('-');
  if (o.multiply) ops.push_back('*');
  if (o.divide) ops.push_back('/');
  for (int s = 0; s < steps; ++s) {
    if (rng->Next() % 1000 <
        static_cast<uint64_t>(o.distractor_probability * 1000)) {
      std::string d = Fill(kDistractors[rng->Below(std::size(kDistractors))],
                           rng->Range(2, o.max_value));
      if (d.rfind("Her ", 0) == 0) d = absl::StrCat(p.possessive, d.substr(3));
      d[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(d[0])));
      absl::StrAppend(&q, " ", d);
    }
    char op = ops[rng->Below(ops.size())];
    // Keep every intermediate result a positive integer of reasonable size.
    if (op == '-' && n < 3) op = '+';
    if (op == '*' && n > 50 * o.max_value) op = '-';
    std::vector<int64_t> divisors;
    if (op == '/') {
      for (int64_t k = 2; k <= std::min<int64_t>(n / 2, o.max_value); ++k) {
        if (n % k == 0) divisors.push_back(k);
      }
      if (divisors.empty()) op = ops.size() > 1 ? '+' : '*';
    }
    int64_t k = 0, next = 0;
    switch (op) {
      case '+':
        k = rng->Range(2, o.max_value);
        next = n + k;
        absl::StrAppend(&q, " ", p.pronoun, " gets ", k, " more ", item, ".");
        absl::StrAppend(&restated, ", then gets ", k, " more");
        absl::StrAppend(&a, "After getting ", k, " more, ", p.name, " has ", n,
                        " + ", k, " = <<", n, "+", k, "=", next, ">>", next,
                        " ", item, ".\n");
        break;
      case '-':
        k = rng->Range(1, std::min<int64_t>(n - 1, o.max_value));
        next = n - k;
        absl::StrAppend(&q, " ", p.pronoun, " gives ", k, " ", item,
                        " to a friend.");
        absl::StrAppend(&restated, ", then gives ", k, " away");
        absl::StrAppend(&a, "After giving away ", k, ", ", p.name, " has ", n,
                        " - ", k, " = <<", n, "-", k, "=", next, ">>", next,
                        " ", item, ".\n");
        break;
      case '*':
        k = rng->Range(2,
                       std::max<int64_t>(2, std::min<int64_t>(o.max_value, 9)));
        next = n * k;
        absl::StrAppend(&q, " Then ", p.possessive, " collection grows to ", k,
                        " times as many ", item, ".");
        absl::StrAppend(&restated, ", then grows ", k, " times");
        absl::StrAppend(&a, "Growing ", k, " times, ", p.name, " has ", n,
                        " * ", k, " = <<", n, "*", k, "=", next, ">>", next,
                        " ", item, ".\n");
        break;
      default:  // '/'
        k = divisors[rng->Below(divisors.size())];
        next = n / k;
        absl::StrAppend(&q, " ", p.pronoun, " shares them equally among ", k,
                        " bags and keeps one bag.");
        absl::StrAppend(&restated, ", then keeps one of ", k, " bags");
        absl::StrAppend(&a, "Keeping one of ", k, " equal bags, ", p.name,
                        " has ", n, " / ", k, " = <<", n, "/", k, "=", next,
                        ">>", next, " ", item, ".\n");
        break;
    }
    if (o.check) {
      // The inverse operation, written out (no calculator annotation: the
      // foreign style is made from the annotations and has no check).
      const char inverse = op == '+'   ? '-'
                           : op == '-' ? '+'
                           : op == '*' ? '/'
                                       : '*';
      absl::StrAppend(&a, "Check: ", next, " ", std::string(1, inverse), " ", k,
                      " = ", n, ".\n");
    }
    n = next;
  }
  absl::StrAppend(&q, " How many ", item, " does ", p.name, " have now?");
  absl::StrAppend(&a, "#### ", n);
  if (o.restate) {
    a = absl::StrCat(p.name, " starts with ", start, " ", item, restated, ".\n",
                     a);
  }
  Example e;
  e.question = std::move(q);
  e.solution = std::move(a);
  e.gold = std::to_string(n);
  return e;
}

absl::StatusOr<GeneratedTask> GenerateTask(const DatagenOptions& o,
                                           size_t train, size_t test,
                                           size_t validation) {
  CMDISTILL_RETURN_IF_ERROR(ValidateDatagenOptions(o));
  GeneratedTask task;
  std::unordered_set<std::string> seen;
  // Separate streams for train and test, so adding test problems never changes
  // train.
  // Validation has a third stream, drawn last, so asking for it changes
  // neither train nor test.
  SplitMix64 train_rng(o.seed * 2 + 1), test_rng(o.seed * 2 + 2),
      validation_rng(o.seed * 2 + 0x9E3779B97F4A7C15ULL);
  // Give up once this many draws in a row were duplicates: the space is
  // (nearly) exhausted.
  constexpr size_t kMaxDuplicatesInARow = 5000;
  size_t duplicates = 0;
  auto fill = [&](std::vector<Example>* out, size_t n,
                  SplitMix64* rng) -> absl::Status {
    while (out->size() < n) {
      if (duplicates > kMaxDuplicatesInARow) {
        return absl::FailedPreconditionError(
            absl::StrCat("cannot make ", train + test + validation,
                         " distinct problems with these options; raise "
                         "max_value or max_steps"));
      }
      Example e = GenerateProblem(o, rng);
      if (!seen.insert(e.question).second) {
        ++duplicates;
        continue;
      }
      duplicates = 0;
      e.line = static_cast<int64_t>(out->size()) + 1;
      out->push_back(std::move(e));
    }
    return absl::OkStatus();
  };
  CMDISTILL_RETURN_IF_ERROR(fill(&task.train, train, &train_rng));
  CMDISTILL_RETURN_IF_ERROR(fill(&task.test, test, &test_rng));
  CMDISTILL_RETURN_IF_ERROR(
      fill(&task.validation, validation, &validation_rng));
  return task;
}

std::string ToGsm8kJsonl(const std::vector<Example>& examples) {
  std::string out;
  for (const Example& e : examples) {
    nlohmann::json j;
    j["question"] = e.question;
    j["answer"] = e.solution;
    absl::StrAppend(&out, j.dump(), "\n");
  }
  return out;
}

std::string ForeignStyleSolution(const std::string& solution) {
  // The calculator annotations <<a op b=c>> in order, and the final answer.
  std::string steps;
  size_t p = 0;
  while ((p = solution.find("<<", p)) != std::string::npos) {
    const size_t q = solution.find(">>", p + 2);
    if (q == std::string::npos) break;
    absl::StrAppend(&steps, steps.empty() ? "" : ", ",
                    solution.substr(p + 2, q - p - 2));
    p = q + 2;
  }
  const size_t h = solution.rfind("####");
  if (steps.empty() || h == std::string::npos) return "";
  std::string answer = solution.substr(h + 4);
  while (!answer.empty() && std::isspace(static_cast<unsigned char>(answer[0])))
    answer.erase(0, 1);
  while (!answer.empty() &&
         std::isspace(static_cast<unsigned char>(answer.back())))
    answer.pop_back();
  if (answer.empty()) return "";
  return absl::StrCat(kForeignStylePrefix, " ", steps, "\n#### ", answer);
}

}  // namespace cmdistill::tasks
