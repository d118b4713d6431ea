// A learner service over any Trainer, served in-process with a stub and the
// helpers its tests share (lease, make a trajectory, submit, train a step,
// read a metric). tests/services/learner/learner_service_test.cc drives it with
// FakeTrainer (no LibTorch); tests/services/learner/learner_policy_test.cc with the real
// PolicyTrainer.
#ifndef CMDISTILL_TESTS_TESTING_LEARNER_FIXTURE_H_
#define CMDISTILL_TESTS_TESTING_LEARNER_FIXTURE_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "cmdistill/v1/learner.grpc.pb.h"
#include "common/metrics/metrics.h"
#include "common/net/server.h"
#include "gtest/gtest.h"
#include "services/learner/learner_service.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::testing {

struct LearnerFixture {
  explicit LearnerFixture(uint32_t max_policy_lag = 2,
                          const v1::LearnerCheckpoint* resume = nullptr,
                          uint64_t epochs = 1)
      : max_policy_lag_(max_policy_lag), resume_(resume), epochs_(epochs) {}
  ~LearnerFixture() { Stop(); }

  // Read by Start().
  size_t chunk_bytes = 1 << 20;  // FetchPolicy's
  int64_t max_steps = 100;
  std::string checkpoint_dir;  // none by default

  // Serves a learner over `trainer` (which must outlive Stop()).
  void Start(learner::Trainer* trainer) {
    registry = metrics::NewRegistry();
    gate = net::GrpcServer::MakeGate({}, registry.get());
    learner::LearnerOptions lo;
    lo.lease.samples_per_prompt = 2;
    lo.prompts_per_step = 1;
    lo.max_steps = max_steps;
    lo.checkpoint_dir = checkpoint_dir;
    lo.lease.epochs = epochs_;
    lo.max_policy_lag = max_policy_lag_;
    lo.chunk_bytes = chunk_bytes;
    std::vector<learner::Prompt> prompts = {
        {{1, 2}, "a", "1"}, {{3, 4}, "b", "2"}, {{5, 6}, "c", "3"}};
    auto created = learner::Learner::Create(prompts, trainer, registry.get(),
                                            lo, {}, resume_);
    ASSERT_OK(created.status());
    learner = *std::move(created);
    service =
        std::make_unique<learner::LearnerServiceImpl>(learner.get(), gate);
    server = *net::GrpcServer::Start({}, gate, {service.get()});
    stub = v1::LearnerService::NewStub(server->InProcessChannel());
  }
  void Stop() {
    if (server == nullptr) return;
    server->Shutdown(absl::Seconds(2), [&] { learner->Close(); });
    server.reset();
  }
  v1::PromptLease Lease(const std::string& actor_id = "") {
    grpc::ClientContext ctx;
    v1::LeasePromptsRequest req;
    req.set_max_prompts(1);
    req.set_actor_id(actor_id);
    v1::LeasePromptsResponse resp;
    EXPECT_TRUE(stub->LeasePrompts(&ctx, req, &resp).ok());
    return resp.leases(0);
  }
  v1::Trajectory Make(const v1::PromptLease& l, uint32_t i) {
    v1::Trajectory t;
    *t.mutable_lease() = l.lease();
    t.set_sample_index(i);
    t.set_trajectory_id(l.lease().lease_id() + "/" + std::to_string(i));
    t.mutable_prompt_ids()->CopyFrom(l.prompt_ids());
    t.add_completion_ids(3 + static_cast<int>(i));
    t.add_behavior_logprobs(-1.5f);
    t.mutable_evaluation()->add_feasible(true);
    t.mutable_evaluation()->set_trajectory_return(static_cast<float>(i));
    t.set_policy_version(0);
    return t;
  }
  v1::SubmitOutcome Submit(const v1::Trajectory& t,
                           std::string* reason = nullptr) {
    grpc::ClientContext ctx;
    v1::SubmitTrajectoriesRequest req;
    *req.add_trajectories() = t;
    v1::SubmitTrajectoriesResponse resp;
    EXPECT_TRUE(stub->SubmitTrajectories(&ctx, req, &resp).ok());
    if (reason) *reason = resp.reasons(0);
    return resp.outcomes(0);
  }
  // Leases a prompt, submits its group and waits for the step it makes;
  // returns the new policy version.
  uint64_t TrainOneStep() {
    v1::PromptLease a = Lease();
    Submit(Make(a, 0));
    Submit(Make(a, 1));
    grpc::ClientContext ctx;
    v1::WaitForPolicyRequest w;
    w.set_max_wait_ms(20000);
    v1::WaitForPolicyResponse wr;
    EXPECT_TRUE(stub->WaitForPolicy(&ctx, w, &wr).ok());
    return wr.policy_version();
  }
  double Gauge(const std::string& name) {
    auto m = *ParsePrometheusText(metrics::Serialize(*registry));
    return m[name];
  }
  double Metric(const std::string& outcome) {
    auto m = *ParsePrometheusText(metrics::Serialize(*registry));
    return m["cmdistill_learner_trajectories_total{outcome=\"" + outcome +
             "\"}"];
  }

  std::shared_ptr<prometheus::Registry> registry;
  std::shared_ptr<net::CallGate> gate;
  std::unique_ptr<learner::Learner> learner;
  std::unique_ptr<learner::LearnerServiceImpl> service;
  std::unique_ptr<net::GrpcServer> server;
  std::unique_ptr<v1::LearnerService::Stub> stub;

 private:
  uint32_t max_policy_lag_;
  const v1::LearnerCheckpoint* resume_;
  uint64_t epochs_;
};

}  // namespace cmdistill::testing

#endif  // CMDISTILL_TESTS_TESTING_LEARNER_FIXTURE_H_
