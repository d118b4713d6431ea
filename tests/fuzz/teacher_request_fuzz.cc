// Fuzz target: the teacher service's request handling in process: the input is
// decoded as a ScoreRequest (as gRPC would) and sent through an in-process
// channel to a real TeacherServiceImpl (validation against the vocabulary,
// lengths and support shape, dynamic batching) over a fake scorer. Whatever
// the bytes, the service answers with a status, never hangs, and survives.
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>

#include "absl/time/clock.h"
#include "cmdistill/v1/teacher.grpc.pb.h"
#include "common/metrics/metrics.h"
#include "common/net/server.h"
#include "services/teacher/teacher_service.h"
#include "tests/testing/fake_scorer.h"

namespace {

struct Service {
  Service() {
    registry = cmdistill::metrics::NewRegistry();
    auto gate = cmdistill::net::GrpcServer::MakeGate({}, registry.get());
    cmdistill::teacher::TeacherServiceOptions o;
    o.max_request_sequences = 16;
    o.max_request_tokens = 4096;
    o.batch_timeout = absl::ZeroDuration();  // no batching wait per input
    service = std::make_unique<cmdistill::teacher::TeacherServiceImpl>(
        &scorer, gate, registry.get(), o);
    server = *cmdistill::net::GrpcServer::Start({}, gate, {service.get()});
    stub = cmdistill::v1::TeacherService::NewStub(server->InProcessChannel());
  }
  cmdistill::testing::FakeScorer scorer;
  std::shared_ptr<prometheus::Registry> registry;
  std::unique_ptr<cmdistill::teacher::TeacherServiceImpl> service;
  std::unique_ptr<cmdistill::net::GrpcServer> server;
  std::unique_ptr<cmdistill::v1::TeacherService::Stub> stub;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Service* s = new Service();  // lives for the process
  cmdistill::v1::ScoreRequest req;
  if (!req.ParseFromArray(data, static_cast<int>(size))) return 0;
  cmdistill::v1::ScoreResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  const grpc::Status st = s->stub->Score(&ctx, req, &resp);
  if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) __builtin_trap();
  if (st.ok() && resp.scores_size() != req.sequences_size()) __builtin_trap();
  return 0;
}
