// Flags of one subcommand. Deliberately not absl/flags (global, and LibTorch's
// glog already owns some names): each subcommand declares its own FlagSet, so
// `--help` lists exactly what it accepts and an unknown flag is an error naming
// the subcommand.
//
// Accepted forms: --name=value, --name value, --bool-flag, --no-bool-flag, and
// `--` to end flags. Anything not starting with "--" is positional.
#ifndef CMDISTILL_SERVICES_CLI_FLAGS_H_
#define CMDISTILL_SERVICES_CLI_FLAGS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace cmdistill::cli {

class FlagSet {
 public:
  // `command`: "cmdistill config print"; `usage`: "--config FILE [--set
  // K=V]...";
  FlagSet(std::string command, std::string usage, std::string description);

  void AddString(const std::string& name, const std::string& value_name,
                 const std::string& help,
                 const std::string& default_value = "");
  void AddBool(const std::string& name, const std::string& help);
  void AddRepeated(const std::string& name, const std::string& value_name,
                   const std::string& help);
  // Positional arguments are refused unless allowed.
  void AllowPositional(const std::string& name, const std::string& help);

  // INVALID_ARGUMENT naming the flag for unknown flags, missing values,
  // repeated single flags. `--help`/`-h` set help_requested() and stop parsing.
  absl::Status Parse(const std::vector<std::string>& args);

  bool help_requested() const { return help_; }
  std::string Help() const;

  const std::string& Get(const std::string& name) const;
  bool GetBool(const std::string& name) const;
  const std::vector<std::string>& GetAll(const std::string& name) const;
  bool IsSet(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  enum class Kind { kString, kBool, kRepeated };
  struct Def {
    Kind kind;
    std::string value_name, help, default_value;
  };

  std::string command_, usage_, description_;
  std::string positional_name_, positional_help_;
  std::vector<std::string> order_;
  std::map<std::string, Def> defs_;
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_;
  bool help_ = false;
};

}  // namespace cmdistill::cli

#endif  // CMDISTILL_SERVICES_CLI_FLAGS_H_
