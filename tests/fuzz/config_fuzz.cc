// Fuzz target: the YAML run file and --set overrides. The input is YAML, then
// optionally "\n\0" followed by NUL-separated KEY=VALUE overrides. A config
// that loads must print (ToYaml) and load back.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t cut = input.find(std::string("\n\0", 2));
  const std::string yaml = input.substr(0, cut);
  std::vector<std::string> overrides;
  if (cut != std::string::npos) {
    overrides = absl::StrSplit(input.substr(cut + 2), '\0', absl::SkipEmpty());
  }
  auto config =
      cmdistill::config::LoadRunConfigFromString(yaml, "fuzz.yaml", overrides);
  if (config.ok()) {
    auto again = cmdistill::config::LoadRunConfigFromString(
        cmdistill::config::ToYaml(*config), "printed.yaml");
    if (!again.ok()) __builtin_trap();  // what we print must load back
  }
  return 0;
}
