// The run configuration: one YAML file parsed into cmdistill.v1.RunConfig.
//
// Resolution order: schema defaults (the `(spec).default_value` options in
// config.proto, the only place defaults live) -> the YAML file -> `--set
// a.b.c=value` overrides -> validation (ranges and `required` from the schema,
// cross-field rules in validate.cc).
//
// Every problem is reported, not just the first, one per line, each naming the
// key path and where its value came from ("run.yaml:12:5", "--set
// optimizer.lr", or "default"). The status code is INVALID_ARGUMENT for a bad
// file or override and NOT_FOUND for a missing file.
#ifndef CMDISTILL_COMMON_CONFIG_CONFIG_H_
#define CMDISTILL_COMMON_CONFIG_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmdistill/v1/config.pb.h"

namespace cmdistill::config {

using v1::RunConfig;

// The schema defaults alone (always valid: a test checks it).
RunConfig DefaultRunConfig();

absl::StatusOr<RunConfig> LoadRunConfig(
    const std::string& path, const std::vector<std::string>& overrides = {});

// As LoadRunConfig, from text; `source_name` is used in messages. An empty
// `yaml` means "defaults only".
absl::StatusOr<RunConfig> LoadRunConfigFromString(
    const std::string& yaml, const std::string& source_name,
    const std::vector<std::string>& overrides = {});

// The fully resolved config as YAML: every field, in schema order, enums by
// short name. The output loads back to an equal RunConfig.
std::string ToYaml(const google::protobuf::Message& message);

// Enum value <-> the short, lower-case name used in YAML ("METHOD_CMDP" <->
// "cmdp").
std::string EnumShortName(const google::protobuf::EnumValueDescriptor& value);
std::string MethodName(v1::Method method);
// The method's name for a table row: `base` (default: MethodName) with each
// departure from the paper's form of the method that `base` does not already
// say appended as "@key=value" (cmdp with κ ≠ 1, R kept once infeasible, a
// terminal penalty, term II over all tokens; lagrangian as a chance
// constraint), so that no table calls something else cmdp.
std::string MethodLabel(const v1::RunConfig& config, std::string base = "");

}  // namespace cmdistill::config

#endif  // CMDISTILL_COMMON_CONFIG_CONFIG_H_
