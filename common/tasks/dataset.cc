#include "common/tasks/dataset.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/tasks/answer.h"
#include "common/util/files.h"
#include "nlohmann/json.hpp"

namespace cmdistill::tasks {
namespace {

constexpr size_t kMaxReasons = 10;

absl::StatusOr<std::string> StringField(const nlohmann::json& obj,
                                        const std::string& field) {
  auto it = obj.find(field);
  if (it == obj.end())
    return absl::InvalidArgumentError(
        absl::StrCat("missing field '", field, "'"));
  if (!it->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("field '", field, "' is not a string"));
  }
  return it->get<std::string>();
}

absl::StatusOr<Example> ParseLine(std::string_view line,
                                  const DatasetOptions& o) {
  nlohmann::json obj =
      nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (obj.is_discarded()) return absl::InvalidArgumentError("not valid JSON");
  if (!obj.is_object()) return absl::InvalidArgumentError("not a JSON object");
  std::string qf = "question", af = "answer";
  if (o.format == DataFormat::kMath) {
    qf = "problem";
    af = "solution";
  } else if (o.format == DataFormat::kGeneric) {
    qf = o.question_field;
    af = o.answer_field;
  }
  Example e;
  CMDISTILL_ASSIGN_OR_RETURN(auto q, StringField(obj, qf));
  CMDISTILL_ASSIGN_OR_RETURN(auto a, StringField(obj, af));
  e.question = std::move(q);
  e.solution = std::move(a);
  if (e.question.empty())
    return absl::InvalidArgumentError(absl::StrCat("'", qf, "' is empty"));
  const Extraction x = ExtractAnswer(e.solution, Strictness::kStrict);
  switch (o.format) {
    case DataFormat::kGsm8k:
      if (!x.found || std::string_view(x.how) != "marker") {
        return absl::InvalidArgumentError(
            "answer does not end with '#### <final answer>'");
      }
      e.gold = x.answer;
      break;
    case DataFormat::kMath:
      if (!x.found || std::string_view(x.how) != "boxed") {
        return absl::InvalidArgumentError(
            "solution has no \\boxed{...} final answer");
      }
      e.gold = x.answer;
      break;
    case DataFormat::kGeneric:
      e.gold = GoldAnswer(e.solution);
      if (e.gold.empty())
        return absl::InvalidArgumentError(absl::StrCat("'", af, "' is empty"));
      break;
  }
  return e;
}

}  // namespace

absl::StatusOr<Dataset> ParseJsonl(std::string_view text,
                                   const std::string& name,
                                   const DatasetOptions& options) {
  Dataset d;
  int64_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos)
      continue;  // blank
    auto e = ParseLine(line, options);
    if (!e.ok()) {
      const std::string why =
          absl::StrCat(name, ":", line_no, ": ", e.status().message());
      if (options.malformed == MalformedLines::kFail) {
        return absl::InvalidArgumentError(absl::StrCat(
            why, " (data.malformed_lines: skip skips and counts such lines)"));
      }
      ++d.skipped;
      if (d.skip_reasons.size() < kMaxReasons) d.skip_reasons.push_back(why);
      continue;
    }
    e->line = line_no;
    d.examples.push_back(*std::move(e));
    if (options.max_examples > 0 && d.examples.size() >= options.max_examples)
      break;
  }
  return d;
}

absl::StatusOr<Dataset> LoadJsonl(const std::string& path,
                                  const DatasetOptions& options) {
  auto text = util::ReadFile(path);
  if (!text.ok())
    return absl::NotFoundError(
        absl::StrCat("cannot open data file '", path, "'"));
  return ParseJsonl(*text, path, options);
}

std::string ApplyTemplate(std::string_view tmpl, std::string_view question) {
  std::string out;
  constexpr std::string_view kSlot = "{question}";
  size_t i = 0;
  while (i < tmpl.size()) {
    if (tmpl.compare(i, kSlot.size(), kSlot) == 0) {
      out.append(question);
      i += kSlot.size();
    } else {
      out.push_back(tmpl[i++]);
    }
  }
  return out;
}

uint64_t SplitMix64::Next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::Below(uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do {
    x = Next();
  } while (x >= limit);
  return x % n;
}

int64_t SplitMix64::Range(int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo) + 1));
}

void Shuffle(std::vector<Example>* examples, uint64_t seed) {
  SplitMix64 rng(seed);
  for (size_t i = examples->size(); i > 1; --i) {
    std::swap((*examples)[i - 1], (*examples)[rng.Below(i)]);
  }
}

std::pair<std::vector<Example>, std::vector<Example>> Split(
    std::vector<Example> examples, double test_fraction, uint64_t seed) {
  Shuffle(&examples, seed);
  const double f = std::min(std::max(test_fraction, 0.0), 1.0);
  const size_t n_test = static_cast<size_t>(
      std::llround(f * static_cast<double>(examples.size())));
  std::vector<Example> test(
      examples.end() - static_cast<std::ptrdiff_t>(n_test), examples.end());
  examples.resize(examples.size() - n_test);
  return {std::move(examples), std::move(test)};
}

}  // namespace cmdistill::tasks
