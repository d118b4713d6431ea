#include "services/common/compute_threads.h"

#include "common/model/language_model.h"

namespace cmdistill::services {

void SetRoleComputeThreads(const v1::RunConfig& config, const std::string& role,
                           std::ostream& log) {
  const uint32_t n = config.services().compute_threads();
  if (n > 0) model::SetComputeThreads(static_cast<int>(n));
  const std::string blas = model::BlasThreading();
  log << "cmdistill " << role << ": " << model::ComputeThreads()
      << " compute thread(s)" << (n > 0 ? "" : " (LibTorch's default)")
      << ", OpenBLAS " << blas << "\n";
  if (blas == "pthreads" && model::ComputeThreads() > 1) {
    log << "cmdistill " << role
        << ": WARNING: this OpenBLAS keeps a thread pool of its own beside "
           "LibTorch's, and their threads spin against each other (measured "
           "2-5x slower at 2 threads than at 1); select the OpenMP build "
           "(libopenblas0-openmp; scripts/setup.sh does) or set "
           "services.compute_threads: 1\n";
  }
}

}  // namespace cmdistill::services
