// Cross-field rules of RunConfig that the per-field schema options cannot
// express.
#ifndef CMDISTILL_COMMON_CONFIG_VALIDATE_H_
#define CMDISTILL_COMMON_CONFIG_VALIDATE_H_

#include <string>
#include <vector>

#include "cmdistill/v1/config.pb.h"

namespace cmdistill::config {

struct CrossFieldError {
  std::string path;     // key path the problem is reported on
  std::string message;  // what is wrong and what would be right
};

// Appends every violated rule to `errors`.
void CheckCrossFieldRules(const v1::RunConfig& config,
                          std::vector<CrossFieldError>* errors);

}  // namespace cmdistill::config

#endif  // CMDISTILL_COMMON_CONFIG_VALIDATE_H_
