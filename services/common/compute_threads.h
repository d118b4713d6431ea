// The CPU threads of a model-running role (services.compute_threads of the
// run file), set once at its start for LibTorch and OpenBLAS together.
#ifndef CMDISTILL_SERVICES_COMMON_COMPUTE_THREADS_H_
#define CMDISTILL_SERVICES_COMMON_COMPUTE_THREADS_H_

#include <ostream>
#include <string>

#include "cmdistill/v1/config.pb.h"

namespace cmdistill::services {

// Sets them when the run file names a count (0 leaves LibTorch's default) and
// says how many the role computes with on `log`.
void SetRoleComputeThreads(const v1::RunConfig& config, const std::string& role,
                           std::ostream& log);

}  // namespace cmdistill::services

#endif  // CMDISTILL_SERVICES_COMMON_COMPUTE_THREADS_H_
