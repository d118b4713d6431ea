#include "services/teacher/role.h"

#include <memory>
#include <vector>

#include "common/status/status_macros.h"
#include "services/common/compute_threads.h"
#include "services/common/role_host.h"
#include "services/common/task_options.h"
#include "services/teacher/model_scorer.h"
#include "services/teacher/teacher_service.h"

namespace cmdistill::teacher {

absl::Status RunTeacherRole(const v1::RunConfig& config,
                            const std::string& model_dir, std::ostream& log) {
  const auto& tc = config.teacher_service();
  services::SetRoleComputeThreads(config, "teacher", log);
  CMDISTILL_ASSIGN_OR_RETURN(
      auto scorer,
      teacher::MakeModelScorer(model_dir, config.teacher().device(),
                               services::DTypeName(config.teacher().dtype()),
                               tc.max_batch_tokens()));
  teacher::TeacherServiceOptions o;
  o.max_batch_tokens = tc.max_batch_tokens();
  o.batch_timeout = absl::Milliseconds(tc.batch_timeout_ms());
  o.queue_capacity = tc.queue_capacity();
  o.max_request_sequences = tc.max_request_sequences();
  o.max_request_tokens = tc.max_request_tokens();
  std::unique_ptr<teacher::TeacherServiceImpl> service;
  return services::ServeRole(
      "teacher", scorer->info().device, config, config.services().teacher(),
      log,
      [&](services::ServiceHost& host) -> std::vector<grpc::Service*> {
        service = std::make_unique<teacher::TeacherServiceImpl>(
            scorer.get(), host.gate_ptr(), host.registry().get(), o);
        return {service.get()};
      },
      [&] { service->Close(); });
}

}  // namespace cmdistill::teacher
