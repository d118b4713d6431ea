#include "services/common/child_protocol.h"

#include <cstdio>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace cmdistill::services {
namespace {

using Fields = std::map<std::string, std::string>;

// The key=value pairs after `tag ` (nullopt when the line has another tag).
std::optional<Fields> Split(const std::string& line, const std::string& tag) {
  if (line.rfind(tag + " ", 0) != 0) return std::nullopt;
  Fields kv;
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(line).substr(tag.size() + 1), ' ')) {
    const size_t eq = part.find('=');
    if (eq == absl::string_view::npos) continue;
    kv[std::string(part.substr(0, eq))] = std::string(part.substr(eq + 1));
  }
  return kv;
}

template <typename T>
bool Get(const Fields& kv, const char* key, T* out) {
  auto it = kv.find(key);
  if (it == kv.end()) return false;
  if constexpr (std::is_same_v<T, double>) {
    return absl::SimpleAtod(it->second, out);
  } else {
    return absl::SimpleAtoi(it->second, out);
  }
}

}  // namespace

std::string FormatReady(const ReadyLine& r) {
  return absl::StrCat("READY name=", r.name, " grpc_port=", r.grpc_port,
                      " metrics_port=", r.metrics_port);
}

std::string FormatStep(const StepLine& s) {
  const rl::StepDiagnostics& d = s.diagnostics;
  std::string styles;
  if (d.teacher_style >= 0 && d.foreign_style >= 0) {
    styles = absl::StrFormat(" teacher_style=%.4f foreign_style=%.4f",
                             d.teacher_style, d.foreign_style);
  }
  return absl::StrFormat(
      "STEP step=%d version=%d reward=%.4f return=%.4f satisfaction=%.4f "
      "cost=%.5f kl=%.5f lambda=%.4f loss=%.5f tokens=%d clip=%.4f "
      "approx_kl=%.6f entropy=%.4f ratio=%.4f ratio_max=%.4f adv_std=%.4f "
      "signal=%.4f length=%.2f wait=%.4f update=%.4f publish=%.4f "
      "checkpoint=%.4f%s",
      s.step, s.version, s.reward, s.ret, s.satisfaction, s.cost, s.kl,
      s.lambda, s.loss, s.tokens, d.clip_fraction, d.approx_kl, d.entropy,
      d.ratio_mean, d.ratio_max, d.advantage_std, d.groups_with_signal,
      d.length, s.wait_s, s.update_s, s.publish_s, s.checkpoint_s, styles);
}

std::string FormatFinished(const FinishedLine& f) {
  std::vector<std::string> epochs;
  for (const auto& [trained, unique] : f.epochs)
    epochs.push_back(absl::StrCat(trained, "/", unique));
  return absl::StrCat("FINISHED step=", f.step, " model=", f.model,
                      " complete=", f.complete ? 1 : 0, " prompts=", f.prompts,
                      " unique=", f.unique,
                      " epochs=", absl::StrJoin(epochs, ","));
}

std::optional<ReadyLine> ParseReady(const std::string& line) {
  auto kv = Split(line, "READY");
  if (!kv) return std::nullopt;
  ReadyLine r;
  if (auto it = kv->find("name"); it != kv->end()) r.name = it->second;
  if (!Get(*kv, "grpc_port", &r.grpc_port)) return std::nullopt;
  if (!Get(*kv, "metrics_port", &r.metrics_port)) r.metrics_port = -1;
  // Services report their gRPC port; an actor serves only /metrics.
  if (r.grpc_port <= 0 && r.metrics_port <= 0) return std::nullopt;
  return r;
}

std::optional<StepLine> ParseStep(const std::string& line) {
  auto kv = Split(line, "STEP");
  if (!kv) return std::nullopt;
  StepLine s;
  double step = 0;
  if (!Get(*kv, "step", &step)) return std::nullopt;
  s.step = static_cast<int64_t>(step);
  double version = 0, tokens = 0;
  if (Get(*kv, "version", &version)) s.version = static_cast<uint64_t>(version);
  Get(*kv, "reward", &s.reward);
  Get(*kv, "return", &s.ret);
  Get(*kv, "satisfaction", &s.satisfaction);
  Get(*kv, "cost", &s.cost);
  Get(*kv, "kl", &s.kl);
  Get(*kv, "lambda", &s.lambda);
  Get(*kv, "loss", &s.loss);
  if (Get(*kv, "tokens", &tokens)) s.tokens = static_cast<int64_t>(tokens);
  rl::StepDiagnostics& d = s.diagnostics;
  Get(*kv, "clip", &d.clip_fraction);
  Get(*kv, "approx_kl", &d.approx_kl);
  Get(*kv, "entropy", &d.entropy);
  Get(*kv, "ratio", &d.ratio_mean);
  Get(*kv, "ratio_max", &d.ratio_max);
  Get(*kv, "adv_std", &d.advantage_std);
  Get(*kv, "signal", &d.groups_with_signal);
  Get(*kv, "length", &d.length);
  Get(*kv, "teacher_style", &d.teacher_style);
  Get(*kv, "foreign_style", &d.foreign_style);
  Get(*kv, "wait", &s.wait_s);
  Get(*kv, "update", &s.update_s);
  Get(*kv, "publish", &s.publish_s);
  Get(*kv, "checkpoint", &s.checkpoint_s);
  return s;
}

std::optional<FinishedLine> ParseFinished(const std::string& line) {
  auto kv = Split(line, "FINISHED");
  if (!kv) return std::nullopt;
  FinishedLine f;
  if (!Get(*kv, "step", &f.step)) return std::nullopt;
  if (auto it = kv->find("model"); it != kv->end()) f.model = it->second;
  int complete = 0;
  f.complete = Get(*kv, "complete", &complete) && complete == 1;
  Get(*kv, "prompts", &f.prompts);
  Get(*kv, "unique", &f.unique);
  if (auto it = kv->find("epochs"); it != kv->end() && !it->second.empty()) {
    for (absl::string_view e : absl::StrSplit(it->second, ',')) {
      std::pair<std::string, std::string> tu = absl::StrSplit(e, '/');
      uint64_t t = 0, u = 0;
      if (absl::SimpleAtoi(tu.first, &t) && absl::SimpleAtoi(tu.second, &u))
        f.epochs.emplace_back(t, u);
    }
  }
  return f;
}

void Announce(const std::string& line) {
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

}  // namespace cmdistill::services
