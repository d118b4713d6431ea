#include "app/cli/flags.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/util/suggest.h"

namespace cmdistill::cli {
namespace {

const std::vector<std::string>& Empty() {
  static const auto* e = new std::vector<std::string>();
  return *e;
}

}  // namespace

FlagSet::FlagSet(std::string command, std::string usage,
                 std::string description)
    : command_(std::move(command)),
      usage_(std::move(usage)),
      description_(std::move(description)) {}

void FlagSet::AddString(const std::string& name, const std::string& value_name,
                        const std::string& help,
                        const std::string& default_value) {
  defs_[name] = {Kind::kString, value_name, help, default_value};
  order_.push_back(name);
}

void FlagSet::AddBool(const std::string& name, const std::string& help) {
  defs_[name] = {Kind::kBool, "", help, ""};
  order_.push_back(name);
}

void FlagSet::AddRepeated(const std::string& name,
                          const std::string& value_name,
                          const std::string& help) {
  defs_[name] = {Kind::kRepeated, value_name, help, ""};
  order_.push_back(name);
}

void FlagSet::AllowPositional(const std::string& name,
                              const std::string& help) {
  positional_name_ = name;
  positional_help_ = help;
}

absl::Status FlagSet::Parse(const std::vector<std::string>& args) {
  bool flags_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (flags_done || !absl::StartsWith(a, "-") || a == "-") {
      if (positional_name_.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            command_, ": unexpected argument '", a, "' (see --help)"));
      }
      positional_.push_back(a);
      continue;
    }
    if (a == "--") {
      flags_done = true;
      continue;
    }
    if (a == "--help" || a == "-h") {
      help_ = true;
      return absl::OkStatus();
    }
    if (!absl::StartsWith(a, "--")) {
      return absl::InvalidArgumentError(absl::StrCat(
          command_, ": flags start with two dashes: '", a, "' (see --help)"));
    }
    std::string name = a.substr(2);
    std::string value;
    bool has_value = false;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto it = defs_.find(name);
    if (it == defs_.end() && absl::StartsWith(name, "no-") && !has_value) {
      auto neg = defs_.find(name.substr(3));
      if (neg != defs_.end() && neg->second.kind == Kind::kBool) {
        values_[name.substr(3)] = {"false"};
        continue;
      }
    }
    if (it == defs_.end()) {
      const std::string best = ClosestMatch(name, order_, 2);
      return absl::InvalidArgumentError(absl::StrCat(
          command_, ": unknown flag --", name,
          best.empty() ? "" : absl::StrCat(" (did you mean --", best, "?)"),
          "; see --help"));
    }
    const Def& def = it->second;
    if (def.kind == Kind::kBool) {
      if (has_value && value != "true" && value != "false") {
        return absl::InvalidArgumentError(absl::StrCat(
            command_, ": --", name, " takes no value or =true/=false"));
      }
      values_[name] = {has_value ? value : "true"};
      continue;
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            command_, ": --", name, " needs a value (", def.value_name, ")"));
      }
      value = args[++i];
    }
    if (def.kind == Kind::kString && values_.count(name) > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(command_, ": --", name, " given more than once"));
    }
    values_[name].push_back(value);
  }
  return absl::OkStatus();
}

std::string FlagSet::Help() const {
  std::string out = absl::StrCat("usage: ", command_, " ", usage_, "\n\n",
                                 description_, "\n");
  if (!order_.empty()) out += "\nflags:\n";
  for (const std::string& name : order_) {
    const Def& d = defs_.at(name);
    std::string left = absl::StrCat("  --", name);
    if (d.kind != Kind::kBool) absl::StrAppend(&left, " ", d.value_name);
    if (d.kind == Kind::kRepeated) absl::StrAppend(&left, " (repeatable)");
    if (left.size() < 30)
      left.resize(30, ' ');
    else
      left += "\n" + std::string(30, ' ');
    absl::StrAppend(&out, left, d.help);
    if (!d.default_value.empty())
      absl::StrAppend(&out, " [default: ", d.default_value, "]");
    out += "\n";
  }
  if (!positional_name_.empty()) {
    absl::StrAppend(&out, "\narguments:\n  ", positional_name_, "  ",
                    positional_help_, "\n");
  }
  out += "  --help                      show this help\n";
  return out;
}

const std::string& FlagSet::Get(const std::string& name) const {
  auto it = values_.find(name);
  if (it != values_.end() && !it->second.empty()) return it->second.back();
  auto d = defs_.find(name);
  static const std::string* empty = new std::string();
  return d == defs_.end() ? *empty : d->second.default_value;
}

bool FlagSet::GetBool(const std::string& name) const {
  return Get(name) == "true";
}

const std::vector<std::string>& FlagSet::GetAll(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? Empty() : it->second;
}

bool FlagSet::IsSet(const std::string& name) const {
  return values_.count(name) > 0;
}

}  // namespace cmdistill::cli
