#include "common/tasks/answer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <vector>

namespace cmdistill::tasks {
namespace {

// Caps on the work per call, whatever the input.
constexpr size_t kMaxAnswerBytes = 4096;
constexpr int kMaxTupleDepth = 4;

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

void ReplaceAll(std::string* s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  std::string out;
  out.reserve(s->size());
  size_t i = 0;
  while (i < s->size()) {
    if (s->compare(i, from.size(), from) == 0) {
      out.append(to);
      i += from.size();
    } else {
      out.push_back((*s)[i++]);
    }
  }
  *s = std::move(out);
}

// Index just past the '}' matching the '{' at `open`, or npos. Linear.
size_t MatchBrace(std::string_view s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      ++i;  // escaped brace or command character
      continue;
    }
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) return i + 1;
  }
  return std::string_view::npos;
}

std::string_view RestOfLine(std::string_view s, size_t from) {
  const size_t nl = s.find('\n', from);
  return s.substr(
      from, nl == std::string_view::npos ? std::string_view::npos : nl - from);
}

// The last number in `s`: -?digits[,digits]*[.digits] or -?.digits. Linear
// backwards scan.
std::string LastNumber(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    // Find the last digit.
    size_t i = end;
    while (i > 0 && !IsDigit(s[i - 1])) --i;
    if (i == 0) return "";
    const size_t stop = i;  // one past the last digit
    size_t start = i - 1;
    while (start > 0 &&
           (IsDigit(s[start - 1]) || s[start - 1] == '.' ||
            (s[start - 1] == ',' && start >= 2 && IsDigit(s[start - 2])))) {
      --start;
    }
    if (start > 0 && (s[start - 1] == '-')) --start;
    std::string num(s.substr(start, stop - start));
    while (!num.empty() && (num.back() == '.' || num.back() == ','))
      num.pop_back();
    if (!num.empty() && num != "-") return num;
    end = start;
  }
  return "";
}

bool StartsWithAt(std::string_view s, size_t i, std::string_view p) {
  return s.size() >= i + p.size() && s.compare(i, p.size(), p) == 0;
}

// \text{X}, \textbf{X}, \mathrm{X}, \mbox{X} -> " X" (units become trailing
// words).
void UnwrapTextCommands(std::string* s) {
  static const char* kCommands[] = {"\\text{",   "\\textbf{", "\\textrm{",
                                    "\\mathrm{", "\\mbox{",   "\\textit{",
                                    "\\mathbf{"};
  std::string out;
  size_t i = 0;
  while (i < s->size()) {
    bool done = false;
    for (const char* c : kCommands) {
      const std::string_view cmd(c);
      if (StartsWithAt(*s, i, cmd)) {
        const size_t open = i + cmd.size() - 1;
        const size_t close = MatchBrace(*s, open);
        if (close != std::string::npos) {
          out.push_back(' ');
          out.append(*s, open + 1, close - open - 2);
          i = close;
          done = true;
        }
        break;
      }
    }
    if (!done) out.push_back((*s)[i++]);
  }
  *s = std::move(out);
}

// \frac{a}{b} -> (a)/(b) when both are plain; \frac12 -> 1/2. Linear.
void RewriteFractions(std::string* s) {
  std::string out;
  size_t i = 0;
  const std::string_view v(*s);
  while (i < v.size()) {
    if (StartsWithAt(v, i, "\\frac")) {
      size_t j = i + 5;
      std::string parts[2];
      bool ok = true;
      for (std::string& part : parts) {
        if (j < v.size() && v[j] == '{') {
          const size_t close = MatchBrace(v, j);
          if (close == std::string_view::npos) {
            ok = false;
            break;
          }
          part = std::string(v.substr(j + 1, close - j - 2));
          j = close;
        } else if (j < v.size() && (IsDigit(v[j]) || IsAlpha(v[j]))) {
          part = std::string(1, v[j]);
          ++j;
        } else {
          ok = false;
          break;
        }
      }
      if (ok) {
        auto wrap = [](const std::string& p) {
          bool simple = !p.empty();
          for (char c : p)
            simple = simple && (IsDigit(c) || c == '.' || c == '-');
          return simple && p.find('-', 1) == std::string::npos ? p
                                                               : "(" + p + ")";
        };
        out += wrap(parts[0]) + "/" + wrap(parts[1]);
        i = j;
        continue;
      }
    }
    if (StartsWithAt(v, i, "\\sqrt") && i + 5 < v.size() && v[i + 5] != '{' &&
        v[i + 5] != '[') {
      out += "\\sqrt{";
      out.push_back(v[i + 5]);
      out += "}";
      i += 6;
      continue;
    }
    out.push_back(v[i++]);
  }
  *s = std::move(out);
}

// "1,234,567.5" (groups of three) -> "1234567.5"; anything else unchanged.
bool IsThousandsNumber(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t lead = 0;
  while (i < s.size() && IsDigit(s[i])) ++i, ++lead;
  if (lead == 0 || lead > 3) return false;
  bool any_group = false;
  while (i < s.size() && s[i] == ',') {
    for (int k = 1; k <= 3; ++k) {
      if (i + k >= s.size() || !IsDigit(s[i + k])) return false;
    }
    i += 4;
    any_group = true;
  }
  if (!any_group) return false;
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (i >= s.size()) return false;
    while (i < s.size() && IsDigit(s[i])) ++i;
  }
  return i == s.size();
}

// Parses a plain decimal: [+-]digits[.digits] or [+-].digits. No exponents,
// hex, inf.
std::optional<double> ParseDecimal(std::string_view s) {
  if (s.empty() || s.size() > 64) return std::nullopt;
  size_t i = 0;
  if (s[i] == '-' || s[i] == '+') ++i;
  size_t digits = 0;
  while (i < s.size() && IsDigit(s[i])) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && IsDigit(s[i])) ++i, ++digits;
  }
  if (i != s.size() || digits == 0) return std::nullopt;
  return std::strtod(std::string(s).c_str(), nullptr);
}

std::string StripOuter(std::string s) {
  // Enclosing math delimiters and braces.
  for (bool changed = true; changed;) {
    changed = false;
    std::string_view t = Trim(s);
    auto strip = [&](std::string_view open, std::string_view close) {
      if (t.size() >= open.size() + close.size() &&
          t.substr(0, open.size()) == open &&
          t.substr(t.size() - close.size()) == close) {
        s = std::string(
            t.substr(open.size(), t.size() - open.size() - close.size()));
        changed = true;
      }
    };
    strip("\\(", "\\)");
    if (!changed) strip("\\[", "\\]");
    if (!changed && t.size() >= 2 && t.front() == '{' &&
        MatchBrace(t, 0) == t.size()) {
      strip("{", "}");
    }
    if (!changed) s = std::string(t);
  }
  return s;
}

// Splits at top-level commas; fills `open`/`close` with enclosing brackets if
// present.
std::vector<std::string> SplitTuple(const std::string& s, char* open,
                                    char* close) {
  std::string body = s;
  *open = *close = 0;
  if (body.size() >= 2 && (body.front() == '(' || body.front() == '[') &&
      (body.back() == ')' || body.back() == ']')) {
    *open = body.front();
    *close = body.back();
    body = body.substr(1, body.size() - 2);
  }
  std::vector<std::string> parts;
  int depth = 0;
  std::string cur;
  for (char c : body) {
    if (c == '(' || c == '[' || c == '{') ++depth;
    if (c == ')' || c == ']' || c == '}') --depth;
    if (c == ',' && depth == 0) {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  parts.push_back(cur);
  return parts;
}

bool Equivalent(std::string_view a, std::string_view b, int depth);

}  // namespace

Extraction ExtractAnswer(std::string_view response, Strictness strictness) {
  Extraction e;
  if (response.size() > kMaxResponseBytes) return e;
  // 1. GSM8K marker.
  if (size_t p = response.rfind("####"); p != std::string_view::npos) {
    std::string_view rest = RestOfLine(response, p + 4);
    while (!rest.empty() && rest.front() == '#') rest.remove_prefix(1);
    rest = Trim(rest);
    if (!rest.empty()) {
      e = {true, std::string(rest), "marker"};
      return e;
    }
  }
  // 2. The last \boxed{...} / \fbox{...}.
  size_t p = response.rfind("\\boxed");
  size_t skip = 6;
  if (const size_t f = response.rfind("\\fbox");
      f != std::string_view::npos && (p == std::string_view::npos || f > p)) {
    p = f;
    skip = 5;
  }
  if (p != std::string_view::npos) {
    size_t j = p + skip;
    while (j < response.size() && response[j] == ' ') ++j;
    if (j < response.size() && response[j] == '{') {
      const size_t close = MatchBrace(response, j);
      if (close != std::string_view::npos) {
        e = {true, std::string(Trim(response.substr(j + 1, close - j - 2))),
             "boxed"};
        if (!e.answer.empty()) return e;
      }
    } else if (j > p + skip) {  // "\boxed 5"
      size_t k = j;
      while (k < response.size() && !IsSpace(response[k]) && response[k] != '$')
        ++k;
      if (k > j) {
        e = {true, std::string(response.substr(j, k - j)), "boxed"};
        return e;
      }
    }
  }
  // 3. "the answer is ...".
  const std::string lower = Lower(response);
  if (size_t a = lower.rfind("answer is"); a != std::string::npos) {
    std::string_view rest = Trim(RestOfLine(response, a + 9));
    while (!rest.empty() && (rest.front() == ':' || IsSpace(rest.front())))
      rest.remove_prefix(1);
    while (!rest.empty() && (rest.back() == '.' || IsSpace(rest.back())))
      rest.remove_suffix(1);
    if (!rest.empty()) {
      e = {true, std::string(rest), "answer_is"};
      return e;
    }
  }
  // 4. Last number.
  if (strictness == Strictness::kLastNumber) {
    std::string n = LastNumber(response);
    if (!n.empty()) e = {true, n, "last_number"};
  }
  return e;
}

std::string GoldAnswer(std::string_view reference) {
  Extraction e = ExtractAnswer(reference, Strictness::kStrict);
  if (e.found && (std::string_view(e.how) == "marker" ||
                  std::string_view(e.how) == "boxed")) {
    return e.answer;
  }
  return std::string(Trim(reference));
}

namespace {

std::string NormalizeOnce(std::string_view answer) {
  std::string s(answer.substr(0, kMaxAnswerBytes));
  ReplaceAll(&s, "\xe2\x88\x92", "-");  // U+2212 minus sign
  ReplaceAll(&s, "\\dfrac", "\\frac");
  ReplaceAll(&s, "\\tfrac", "\\frac");
  ReplaceAll(&s, "\\displaystyle", "");
  ReplaceAll(&s, "\\left", "");
  ReplaceAll(&s, "\\right", "");
  for (const char* sp :
       {"\\!", "\\,", "\\;", "\\:", "\\quad", "\\qquad", "\\ ", "~"}) {
    ReplaceAll(&s, sp, " ");
  }
  for (const char* deg : {"^{\\circ}", "^\\circ", "\\circ", "\xc2\xb0"})
    ReplaceAll(&s, deg, "");
  for (const char* sym : {"\\%", "%", "\\$", "$"}) ReplaceAll(&s, sym, "");
  ReplaceAll(&s, "{,}", ",");
  UnwrapTextCommands(&s);
  s = StripOuter(s);
  std::string_view t = Trim(s);
  while (!t.empty() && t.back() == '.') t.remove_suffix(1);
  t = Trim(t);
  // Units and words after a number: "18 per day", "5 cm" -> the number.
  {
    size_t i = 0;
    if (i < t.size() && (t[i] == '-' || t[i] == '+')) ++i;
    const size_t num_start = i;
    while (i < t.size() &&
           (IsDigit(t[i]) || t[i] == '.' || t[i] == ',' || t[i] == '/'))
      ++i;
    if (i > num_start && i < t.size() && IsSpace(t[i])) {
      bool words = true;
      for (size_t k = i; k < t.size() && words; ++k) {
        words = IsAlpha(t[k]) || IsSpace(t[k]) || t[k] == '.';
      }
      if (words) t = t.substr(0, i);
    }
  }
  std::string out;
  for (char c : t) {
    if (!IsSpace(c)) out.push_back(c);
  }
  RewriteFractions(&out);
  if (IsThousandsNumber(out)) ReplaceAll(&out, ",", "");
  // A sign on a number only: stripping any leading '+' made normalising twice
  // differ from once ("+ +" -> "+" -> ""), so such an answer was not even
  // equivalent to itself (found by fuzzing).
  if (out.size() > 1 && out[0] == '+' && (IsDigit(out[1]) || out[1] == '.'))
    out.erase(0, 1);
  return out;
}

}  // namespace

// One pass can expose what another pass would remove ("5 cm." loses its unit,
// then its dot): normalising is repeated to a fixed point, so that normalising
// twice equals normalising once (found by fuzzing).
std::string NormalizeAnswer(std::string_view answer) {
  // A crafted answer can nest removable pieces (\ci\,rc becomes \circ only
  // once \, is gone), so the passes are bounded by the length, not by
  // a small count (each pass that changes a removable piece shortens it).
  std::string out = NormalizeOnce(answer);
  for (size_t i = 0; i < kMaxAnswerBytes; ++i) {
    std::string again = NormalizeOnce(out);
    if (again == out) break;
    out = std::move(again);
  }
  return out;
}

std::optional<double> NumericValue(std::string_view answer) {
  std::string s = NormalizeAnswer(answer);
  if (auto d = ParseDecimal(s)) return d;
  // a/b, with optional parentheses around either side and a sign in front.
  const size_t slash = s.find('/');
  if (slash == std::string::npos ||
      s.find('/', slash + 1) != std::string::npos) {
    return std::nullopt;
  }
  auto side = [](std::string x) -> std::optional<double> {
    if (x.size() >= 2 && x.front() == '(' && x.back() == ')')
      x = x.substr(1, x.size() - 2);
    return ParseDecimal(x);
  };
  std::string num = s.substr(0, slash);
  double sign = 1;
  if (num.size() > 1 && num[0] == '-' && num[1] == '(') {
    sign = -1;
    num = num.substr(1);
  }
  auto n = side(num), d = side(s.substr(slash + 1));
  if (!n || !d || *d == 0) return std::nullopt;
  return sign * *n / *d;
}

namespace {

bool Equivalent(std::string_view a, std::string_view b, int depth) {
  // Answers this long are not answers; refusing them also keeps the work
  // bounded.
  if (a.size() > kMaxAnswerBytes || b.size() > kMaxAnswerBytes) return false;
  const std::string na = NormalizeAnswer(a), nb = NormalizeAnswer(b);
  if (na.empty() || nb.empty()) return false;
  if (na == nb) return true;
  const auto va = NumericValue(na), vb = NumericValue(nb);
  if (va && vb) {
    const double scale = std::max(std::fabs(*va), std::fabs(*vb));
    return std::fabs(*va - *vb) <= std::max(1e-12, 1e-9 * scale);
  }
  if (depth >= kMaxTupleDepth) return false;
  char oa, ca, ob, cb;
  const auto pa = SplitTuple(na, &oa, &ca), pb = SplitTuple(nb, &ob, &cb);
  if (pa.size() != pb.size()) return false;
  if (oa != 0 && ob != 0 && (oa != ob || ca != cb)) return false;
  if (pa.size() == 1) {
    // "(5)" vs "5": a single parenthesised value.
    return (oa != 0 || ob != 0) && pa[0] != na &&
           Equivalent(pa[0], pb[0], depth + 1);
  }
  for (size_t i = 0; i < pa.size(); ++i) {
    if (!Equivalent(pa[i], pb[i], depth + 1)) return false;
  }
  return true;
}

}  // namespace

bool AnswersEquivalent(std::string_view a, std::string_view b) {
  return Equivalent(a, b, 0);
}

Grade GradeResponse(std::string_view response, std::string_view gold,
                    Strictness strictness) {
  Grade g;
  if (response.size() > kMaxResponseBytes) {
    g.failure = GradeFailure::kTooLong;
    return g;
  }
  const Extraction e = ExtractAnswer(response, strictness);
  if (!e.found) {
    g.failure = GradeFailure::kNoAnswer;
    return g;
  }
  g.extracted = e.answer;
  g.correct = AnswersEquivalent(e.answer, GoldAnswer(gold));
  return g;
}

}  // namespace cmdistill::tasks
