#include "services/common/compute_threads.h"

#include "common/model/language_model.h"

namespace cmdistill::services {

void SetRoleComputeThreads(const v1::RunConfig& config, const std::string& role,
                           std::ostream& log) {
  const uint32_t n = config.services().compute_threads();
  if (n > 0) model::SetComputeThreads(static_cast<int>(n));
  log << "cmdistill " << role << ": " << model::ComputeThreads()
      << " compute thread(s)" << (n > 0 ? "" : " (LibTorch's default)") << "\n";
}

}  // namespace cmdistill::services
