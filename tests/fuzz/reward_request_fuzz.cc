// Fuzz target: the reward service's request handling, end to end in process:
// the input is decoded as an EvaluateRequest (as gRPC would), sent through an
// in-process channel to a real RewardServiceImpl (validation, grading, the
// constraint transform) and answered. Whatever the bytes, the service answers
// with a status and survives.
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>

#include "absl/time/clock.h"
#include "cmdistill/v1/reward.grpc.pb.h"
#include "common/metrics/metrics.h"
#include "common/net/server.h"
#include "services/reward/evaluator.h"
#include "services/reward/reward_service.h"

namespace {

struct Service {
  Service() : evaluator(nullptr, cmdistill::reward::EvaluatorOptions{}) {
    registry = cmdistill::metrics::NewRegistry();
    auto gate = cmdistill::net::GrpcServer::MakeGate({}, registry.get());
    cmdistill::reward::RewardServiceOptions ro;
    ro.method_name = "fuzz";
    service = std::make_unique<cmdistill::reward::RewardServiceImpl>(
        &evaluator, gate, registry.get(), ro);
    server = *cmdistill::net::GrpcServer::Start({}, gate, {service.get()});
    stub = cmdistill::v1::RewardService::NewStub(server->InProcessChannel());
  }
  cmdistill::reward::Evaluator evaluator;
  std::shared_ptr<prometheus::Registry> registry;
  std::unique_ptr<cmdistill::reward::RewardServiceImpl> service;
  std::unique_ptr<cmdistill::net::GrpcServer> server;
  std::unique_ptr<cmdistill::v1::RewardService::Stub> stub;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Service* s = new Service();  // lives for the process
  cmdistill::v1::EvaluateRequest req;
  if (!req.ParseFromArray(data, static_cast<int>(size))) return 0;
  cmdistill::v1::EvaluateResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  const grpc::Status st = s->stub->Evaluate(&ctx, req, &resp);
  // A deadline here would mean a request made the service hang.
  if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) __builtin_trap();
  return 0;
}
