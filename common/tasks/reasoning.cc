#include "common/tasks/reasoning.h"

#include <regex>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/tasks/datagen.h"

namespace cmdistill::tasks {
namespace {

// Numbers in these texts are small non-negative integers; anything that does
// not parse (or overflows) makes the line invalid.
bool ToInt(const std::string& s, int64_t* out) {
  return absl::SimpleAtoi(s, out);
}

// a op b, or nullopt when the operation has no integer result.
std::optional<int64_t> Apply(int64_t a, char op, int64_t b) {
  switch (op) {
    case '+':
      return a + b;
    case '-':
      return a - b;
    case '*':
      return a * b;
    case '/':
      if (b == 0 || a % b != 0) return std::nullopt;
      return a / b;
  }
  return std::nullopt;
}

// One "a op b=c" of a scratchpad.
struct Written {
  int64_t a = 0, b = 0, c = 0;
  char op = '+';
};

// Checks a chain of written steps against the problem: operands copied,
// each result right, each step starting from the previous result.
std::string CheckChain(const ProblemFacts& f, const std::vector<Written>& w) {
  if (w.size() != f.steps.size()) {
    return absl::StrCat(w.size(), " steps written, the question has ",
                        f.steps.size());
  }
  int64_t running = f.start;
  for (size_t i = 0; i < w.size(); ++i) {
    const std::string at = absl::StrCat("step ", i + 1, ": ");
    if (w[i].a != running) {
      return absl::StrCat(at, "starts from ", w[i].a, ", not ", running);
    }
    if (w[i].op != f.steps[i].op || w[i].b != f.steps[i].operand) {
      return absl::StrCat(at, "uses ", std::string(1, w[i].op), " ", w[i].b,
                          ", the question says ", std::string(1, f.steps[i].op),
                          " ", f.steps[i].operand);
    }
    const auto want = Apply(w[i].a, w[i].op, w[i].b);
    if (!want || *want != w[i].c) {
      return absl::StrCat(at, "arithmetic: ", w[i].a, std::string(1, w[i].op),
                          w[i].b, " is not ", w[i].c);
    }
    running = w[i].c;
  }
  return "";
}

// "#### N": N must be the scratchpad's last result.
std::string CheckFinal(const std::string& line, const std::vector<Written>& w,
                       int64_t* final_answer, bool* has_final) {
  *has_final = false;
  absl::string_view rest(line);
  if (!absl::ConsumePrefix(&rest, "#### ")) {
    return absl::StrCat("no final \"#### N\" line (\"", line, "\")");
  }
  if (!absl::SimpleAtoi(rest, final_answer)) {
    return absl::StrCat("final answer \"", rest, "\" is not a number");
  }
  *has_final = true;
  if (w.empty() || w.back().c != *final_answer) {
    return absl::StrCat("final answer ", *final_answer,
                        " is not the scratchpad's result");
  }
  return "";
}

std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> out;
  for (absl::string_view l :
       absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    l = absl::StripAsciiWhitespace(l);
    if (!l.empty()) out.emplace_back(l);
  }
  return out;
}

const std::regex& StepLine() {
  // "After getting 2 more, Mia has 3 + 2 = <<3+2=5>>5 marbles." and the other
  // three operations' openings (datagen.cc).
  static const auto* re = new std::regex(
      R"(^(?:After getting (\d+) more|After giving away (\d+)|Growing (\d+) times|Keeping one of (\d+) equal bags), \S+ has (\d+) ([-+*/]) (\d+) = <<(\d+)([-+*/])(\d+)=(\d+)>>(\d+) \S+\.$)");
  return *re;
}

const std::regex& RestateLine() {
  static const auto* re = new std::regex(
      R"(^\S+ starts with (\d+) \S+((?:, then (?:gets \d+ more|gives \d+ away|grows \d+ times|keeps one of \d+ bags))*)\.$)");
  return *re;
}

const std::regex& RestateClause() {
  static const auto* re = new std::regex(
      R"(, then (?:gets (\d+) more|gives (\d+) away|grows (\d+) times|keeps one of (\d+) bags))");
  return *re;
}

ReasoningCheck CheckTeacherStyle(const ProblemFacts& f,
                                 const std::vector<std::string>& lines) {
  ReasoningCheck r;
  r.style = AnswerStyle::kTeacher;
  size_t i = 0;
  std::smatch m;
  if (std::regex_match(lines[0], m, RestateLine())) {
    int64_t start = 0;
    if (!ToInt(m[1].str(), &start) || start != f.start) {
      r.why = absl::StrCat("restatement starts from ", m[1].str(), ", not ",
                           f.start);
    }
    const std::string clauses = m[2].str();
    size_t k = 0;
    static constexpr char kOps[] = {'+', '-', '*', '/'};
    for (auto it = std::sregex_iterator(clauses.begin(), clauses.end(),
                                        RestateClause());
         it != std::sregex_iterator() && r.why.empty(); ++it, ++k) {
      for (int g = 1; g <= 4; ++g) {
        if (!(*it)[g].matched) continue;
        int64_t v = 0;
        if (k >= f.steps.size() || !ToInt((*it)[g].str(), &v) ||
            f.steps[k].op != kOps[g - 1] || f.steps[k].operand != v) {
          r.why = absl::StrCat("restatement's step ", k + 1,
                               " is not the question's");
        }
      }
    }
    if (r.why.empty() && k != f.steps.size()) {
      r.why = absl::StrCat("restatement names ", k, " steps, the question ",
                           f.steps.size());
    }
    ++i;
  }
  std::vector<Written> w;
  static const auto* check_line =
      new std::regex(R"(^Check: (\d+) ([-+*/]) (\d+) = (\d+)\.$)");
  for (; i + 1 < lines.size(); ++i) {
    if (!w.empty() && std::regex_match(lines[i], m, *check_line)) {
      // "Check: c inv b = a." after a step a op b = c.
      const Written& s = w.back();
      int64_t c = 0, b = 0, a = 0;
      const char inv = s.op == '+'   ? '-'
                       : s.op == '-' ? '+'
                       : s.op == '*' ? '/'
                                     : '*';
      if (r.why.empty() &&
          (!ToInt(m[1].str(), &c) || !ToInt(m[3].str(), &b) ||
           !ToInt(m[4].str(), &a) || m[2].str()[0] != inv || c != s.c ||
           b != s.b || a != s.a || Apply(c, inv, b) != std::optional(a))) {
        r.why = absl::StrCat("line ", i + 1, ": the check is wrong: \"",
                             lines[i], "\"");
      }
      continue;
    }
    if (!std::regex_match(lines[i], m, StepLine())) {
      if (r.why.empty()) {
        r.why = absl::StrCat("line ", i + 1, " is not a worked step: \"",
                             lines[i], "\"");
      }
      continue;
    }
    Written s;
    int64_t said = 0, a2 = 0, b2 = 0, c2 = 0;
    int said_group = 1;
    while (!m[said_group].matched) ++said_group;
    const char said_op = "+-*/"[said_group - 1];
    bool ok = ToInt(m[said_group].str(), &said) && ToInt(m[5].str(), &s.a) &&
              ToInt(m[7].str(), &s.b) && ToInt(m[8].str(), &a2) &&
              ToInt(m[10].str(), &b2) && ToInt(m[11].str(), &c2) &&
              ToInt(m[12].str(), &s.c);
    s.op = m[6].str()[0];
    if (r.why.empty()) {
      if (!ok) {
        r.why = absl::StrCat("line ", i + 1, ": a number does not parse");
      } else if (said != s.b || said_op != s.op) {
        r.why = absl::StrCat("line ", i + 1, ": says ", said, " but computes ",
                             std::string(1, s.op), " ", s.b);
      } else if (a2 != s.a || b2 != s.b || m[9].str()[0] != s.op || c2 != s.c) {
        r.why = absl::StrCat("line ", i + 1,
                             ": the annotation is not the written step");
      }
    }
    w.push_back(s);
  }
  if (i >= lines.size()) {
    if (r.why.empty()) r.why = "no final \"#### N\" line";
    return r;
  }
  int64_t final_answer = 0;
  bool has_final = false;
  const std::string final_why =
      CheckFinal(lines[i], w, &final_answer, &has_final);
  r.correct = has_final && final_answer == f.answer();
  if (r.why.empty() && !has_final) r.why = final_why;
  if (r.why.empty()) r.why = CheckChain(f, w);
  if (r.why.empty()) r.why = final_why;
  r.valid = r.why.empty();
  return r;
}

ReasoningCheck CheckForeignStyle(const ProblemFacts& f,
                                 const std::vector<std::string>& lines) {
  ReasoningCheck r;
  r.style = AnswerStyle::kForeign;
  static const auto* item = new std::regex(R"(^(\d+)([-+*/])(\d+)=(\d+)$)");
  absl::string_view body(lines[0]);
  absl::ConsumePrefix(&body, kForeignStylePrefix);
  body = absl::StripAsciiWhitespace(body);
  std::vector<Written> w;
  for (absl::string_view part : absl::StrSplit(body, ", ")) {
    std::smatch m;
    const std::string s(part);
    Written x;
    if (!std::regex_match(s, m, *item) || !ToInt(m[1].str(), &x.a) ||
        !ToInt(m[3].str(), &x.b) || !ToInt(m[4].str(), &x.c)) {
      if (r.why.empty())
        r.why = absl::StrCat("\"", s, "\" is not a step a op b=c");
      continue;
    }
    x.op = m[2].str()[0];
    w.push_back(x);
  }
  if (lines.size() < 2) {
    if (r.why.empty()) r.why = "no final \"#### N\" line";
    return r;
  }
  if (lines.size() > 2 && r.why.empty()) r.why = "text after the final answer";
  int64_t final_answer = 0;
  bool has_final = false;
  const std::string final_why =
      CheckFinal(lines[1], w, &final_answer, &has_final);
  r.correct = has_final && final_answer == f.answer();
  if (r.why.empty() && !has_final) r.why = final_why;
  if (r.why.empty()) r.why = CheckChain(f, w);
  if (r.why.empty()) r.why = final_why;
  r.valid = r.why.empty();
  return r;
}

}  // namespace

int64_t ProblemFacts::answer() const {
  int64_t v = start;
  for (const Step& s : steps) v = Apply(v, s.op, s.operand).value_or(0);
  return v;
}

uint64_t ProblemFacts::cell() const {
  // FNV-1a over the numbers and operations.
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](uint64_t x) {
    for (int i = 0; i < 8; ++i) {
      h ^= (x >> (8 * i)) & 0xff;
      h *= 1099511628211ULL;
    }
  };
  mix(static_cast<uint64_t>(start));
  for (const Step& s : steps) {
    mix(static_cast<uint64_t>(s.op));
    mix(static_cast<uint64_t>(s.operand));
  }
  return h >> 1;  // non-negative as int64
}

std::optional<ProblemFacts> ParseProblem(std::string_view question) {
  static const auto* first = new std::regex(R"(^\S+ has (\d+) \S+\.)");
  static const auto* step = new std::regex(
      R"( gets (\d+) more | gives (\d+) \S+ to a friend\.| grows to (\d+) times as many | shares them equally among (\d+) bags )");
  static const auto* last =
      new std::regex(R"( How many \S+ does \S+ have now\?$)");
  const std::string q(question);
  std::smatch m;
  ProblemFacts f;
  if (!std::regex_search(q, m, *first) || m.position(0) != 0 ||
      !ToInt(m[1].str(), &f.start) || !std::regex_search(q, *last)) {
    return std::nullopt;
  }
  static constexpr char kOps[] = {'+', '-', '*', '/'};
  for (auto it = std::sregex_iterator(q.begin(), q.end(), *step);
       it != std::sregex_iterator(); ++it) {
    for (int g = 1; g <= 4; ++g) {
      if (!(*it)[g].matched) continue;
      ProblemFacts::Step s;
      s.op = kOps[g - 1];
      if (!ToInt((*it)[g].str(), &s.operand)) return std::nullopt;
      f.steps.push_back(s);
    }
  }
  if (f.steps.empty()) return std::nullopt;
  return f;
}

const char* AnswerStyleName(AnswerStyle s) {
  switch (s) {
    case AnswerStyle::kTeacher:
      return "teacher";
    case AnswerStyle::kForeign:
      return "foreign";
    case AnswerStyle::kOther:
      break;
  }
  return "other";
}

namespace {

AnswerStyle StyleOfFirstLine(const std::string& l0) {
  if (absl::StartsWith(l0, kForeignStylePrefix)) return AnswerStyle::kForeign;
  static const auto* teacher_opening =
      new std::regex(R"(^(?:After |Growing |Keeping |\S+ starts with ))");
  if (std::regex_search(l0, *teacher_opening)) return AnswerStyle::kTeacher;
  return AnswerStyle::kOther;
}

}  // namespace

AnswerStyle ClassifyStyle(std::string_view completion) {
  const std::vector<std::string> lines = Lines(completion);
  return lines.empty() ? AnswerStyle::kOther : StyleOfFirstLine(lines[0]);
}

ReasoningCheck CheckReasoning(const ProblemFacts& facts,
                              std::string_view completion) {
  const std::vector<std::string> lines = Lines(completion);
  ReasoningCheck r;
  if (lines.empty()) {
    r.why = "empty answer";
    return r;
  }
  switch (StyleOfFirstLine(lines[0])) {
    case AnswerStyle::kForeign:
      return CheckForeignStyle(facts, lines);
    case AnswerStyle::kTeacher:
      return CheckTeacherStyle(facts, lines);
    case AnswerStyle::kOther:
      break;
  }
  r.why = "neither the teacher's style nor the foreign one";
  // Correct by its final answer, if it has one.
  const std::string& tail = lines.back();
  absl::string_view rest(tail);
  int64_t v = 0;
  r.correct = absl::ConsumePrefix(&rest, "#### ") &&
              absl::SimpleAtoi(rest, &v) && v == facts.answer();
  return r;
}

}  // namespace cmdistill::tasks
