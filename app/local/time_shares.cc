#include "app/local/time_shares.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace cmdistill::local {

namespace {

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The value of `label` in a sample's label set `labels` ("a=\"x\",b=\"y\"").
std::string LabelValue(const std::string& labels, const std::string& label) {
  const std::string key = label + "=\"";
  size_t at = 0;
  while ((at = labels.find(key, at)) != std::string::npos) {
    if (at == 0 || labels[at - 1] == ',' || labels[at - 1] == ' ') {
      const size_t begin = at + key.size();
      const size_t end = labels.find('"', begin);
      if (end == std::string::npos) return "";
      return labels.substr(begin, end - begin);
    }
    at += key.size();
  }
  return "";
}

// The phases in the order shown; what is not listed follows.
const std::vector<std::string> kActorOrder = {
    "sampling", "teacher", "reward", "submit", "sync", "lease", "idle"};
const std::vector<std::string> kLearnerOrder = {"wait", "update", "publish",
                                                "checkpoint"};

std::vector<std::pair<std::string, double>> Ordered(
    const std::map<std::string, double>& by,
    const std::vector<std::string>& order) {
  std::vector<std::pair<std::string, double>> out;
  for (const std::string& p : order) {
    auto it = by.find(p);
    if (it != by.end() && it->second > 0) out.push_back(*it);
  }
  for (const auto& [p, v] : by) {
    if (v > 0 && std::find(order.begin(), order.end(), p) == order.end())
      out.emplace_back(p, v);
  }
  return out;
}

std::string Shares(const std::vector<std::pair<std::string, double>>& parts,
                   const std::map<std::string, std::string>& names) {
  double total = 0;
  for (const auto& [p, v] : parts) total += v;
  std::vector<std::string> out;
  for (const auto& [p, v] : parts) {
    auto it = names.find(p);
    out.push_back(absl::StrFormat(
        "%s %.0f%%", it != names.end() ? it->second : p, 100.0 * v / total));
  }
  return absl::StrJoin(out, ", ");
}

}  // namespace

std::map<std::string, double> SumByLabel(const std::string& text,
                                         const std::string& metric,
                                         const std::string& label) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.compare(0, metric.size(), metric) != 0) continue;
    const size_t after = metric.size();
    if (after >= line.size()) continue;
    std::string labels;
    size_t value_at;
    if (line[after] == '{') {
      const size_t close = line.find('}', after);
      if (close == std::string::npos) continue;
      labels = line.substr(after + 1, close - after - 1);
      value_at = close + 1;
    } else if (line[after] == ' ') {
      value_at = after;
    } else {
      continue;  // another metric whose name starts with this one
    }
    std::istringstream rest(line.substr(value_at));
    std::string value;
    rest >> value;
    double v;
    if (!absl::SimpleAtod(value, &v)) continue;
    out[LabelValue(labels, label)] += v;
  }
  return out;
}

TimeShares ReadTimeShares(const std::string& metrics_dir, int actors) {
  TimeShares t;
  namespace fs = std::filesystem;
  std::map<std::string, double> actor;
  std::error_code ec;
  for (int i = 1; i <= actors; ++i) {
    const fs::path file =
        fs::path(metrics_dir) / absl::StrCat("actor-", i, ".prom");
    if (!fs::exists(file, ec)) continue;
    const std::string text = ReadAll(file);
    ++t.actors;
    for (const auto& [p, v] :
         SumByLabel(text, "cmdistill_actor_round_phase_seconds_sum", "phase"))
      actor[p] += v;
    t.rounds += SumByLabel(text, "cmdistill_actor_round_seconds_count", "")[""];
  }
  t.actor = Ordered(actor, kActorOrder);
  const fs::path learner = fs::path(metrics_dir) / "learner.prom";
  if (fs::exists(learner, ec)) {
    const std::string text = ReadAll(learner);
    t.learner = Ordered(
        SumByLabel(text, "cmdistill_learner_step_phase_seconds_sum", "phase"),
        kLearnerOrder);
    t.steps = SumByLabel(text, "cmdistill_learner_step_phase_seconds_count",
                         "phase")["update"];
  }
  return t;
}

std::string FormatTimeShares(const TimeShares& t) {
  std::string out;
  auto total = [](const std::vector<std::pair<std::string, double>>& parts) {
    double s = 0;
    for (const auto& [p, v] : parts) s += v;
    return s;
  };
  if (!t.actor.empty()) {
    absl::StrAppend(
        &out,
        absl::StrFormat("actors (%d, %.0f rounds, %.1f s in rounds): ",
                        t.actors, t.rounds, total(t.actor)),
        Shares(t.actor, {{"teacher", "teacher scoring"},
                         {"sync", "weight sync"},
                         {"idle", "idle (no prompts)"}}),
        "\n");
  }
  if (!t.learner.empty()) {
    absl::StrAppend(&out,
                    absl::StrFormat("learner (%.0f steps, %.1f s): ", t.steps,
                                    total(t.learner)),
                    Shares(t.learner, {{"wait", "waiting for trajectories"}}),
                    "\n");
  }
  return out;
}

}  // namespace cmdistill::local
