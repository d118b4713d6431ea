// The learner's gRPC adapter: maps the six RPCs of cmdistill.v1.LearnerService
// onto a Learner (learner.h), which holds the domain and the update loop. The
// handlers never block: unary calls do their work under the learner's lock
// and finish; WaitForPolicy is finished by the policy store's thread;
// FetchPolicy streams a snapshot from a write reactor.
#ifndef CMDISTILL_SERVICES_LEARNER_LEARNER_SERVICE_H_
#define CMDISTILL_SERVICES_LEARNER_LEARNER_SERVICE_H_

#include <memory>

#include "cmdistill/v1/learner.grpc.pb.h"
#include "common/net/call_gate.h"
#include "prometheus/histogram.h"
#include "services/learner/learner.h"

namespace cmdistill::learner {

// FetchPolicy is served raw (ByteBuffers) so that chunks alias the snapshot
// instead of being copied into protobuf messages (services/common/policy_wire).
class LearnerServiceImpl final
    : public v1::LearnerService::WithRawCallbackMethod_FetchPolicy<
          v1::LearnerService::CallbackService> {
 public:
  // `learner` must outlive the service.
  LearnerServiceImpl(Learner* learner, std::shared_ptr<net::CallGate> gate);

  grpc::ServerUnaryReactor* LeasePrompts(
      grpc::CallbackServerContext* ctx, const v1::LeasePromptsRequest* req,
      v1::LeasePromptsResponse* resp) override;
  grpc::ServerUnaryReactor* ReturnLeases(
      grpc::CallbackServerContext* ctx, const v1::ReturnLeasesRequest* req,
      v1::ReturnLeasesResponse* resp) override;
  grpc::ServerUnaryReactor* SubmitTrajectories(
      grpc::CallbackServerContext* ctx,
      const v1::SubmitTrajectoriesRequest* req,
      v1::SubmitTrajectoriesResponse* resp) override;
  grpc::ServerUnaryReactor* WaitForPolicy(
      grpc::CallbackServerContext* ctx, const v1::WaitForPolicyRequest* req,
      v1::WaitForPolicyResponse* resp) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* FetchPolicy(
      grpc::CallbackServerContext* ctx,
      const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx,
                                      const v1::GetStatusRequest* req,
                                      v1::GetStatusResponse* resp) override;

 private:
  class FetchReactor;
  template <typename Work>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx,
                                  prometheus::Histogram* latency, Work work);

  Learner* learner_;
  std::shared_ptr<net::CallGate> gate_;
};

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_LEARNER_SERVICE_H_
