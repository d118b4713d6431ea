// The teacher service served in-process over any Scorer, and the distinct
// sequences its tests score (tests/services/teacher/teacher_service_test.cc with
// FakeScorer, tests/services/teacher/teacher_model_test.cc with the model-backed one).
#ifndef CMDISTILL_TESTS_TESTING_TEACHER_FIXTURE_H_
#define CMDISTILL_TESTS_TESTING_TEACHER_FIXTURE_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "cmdistill/v1/teacher.grpc.pb.h"
#include "common/checkpoint/hf_checkpoint.h"
#include "common/metrics/metrics.h"
#include "common/net/server.h"
#include "services/teacher/teacher_service.h"
#include "tests/testing/model_configs.h"
#include "tests/testing/test_util.h"

namespace cmdistill::teacher {

struct Server {
  Server(Scorer* scorer, TeacherServiceOptions o) {
    registry = metrics::NewRegistry();
    gate = net::GrpcServer::MakeGate({}, registry.get());
    service =
        std::make_unique<TeacherServiceImpl>(scorer, gate, registry.get(), o);
    server = *net::GrpcServer::Start({}, gate, {service.get()});
    stub = v1::TeacherService::NewStub(server->InProcessChannel());
  }
  ~Server() {
    server->Shutdown(absl::Seconds(5), [&] { service->Close(); });
  }
  grpc::Status Score(const v1::ScoreRequest& req, v1::ScoreResponse* resp,
                     absl::Duration timeout = absl::Seconds(60)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    return stub->Score(&ctx, req, resp);
  }
  double Metric(const std::string& key) {
    auto m = testing::ParsePrometheusText(metrics::Serialize(*registry));
    return m.ok() && m->count(key) ? m->at(key) : -1;
  }
  std::shared_ptr<prometheus::Registry> registry;
  std::shared_ptr<net::CallGate> gate;
  std::unique_ptr<TeacherServiceImpl> service;
  std::unique_ptr<net::GrpcServer> server;
  std::unique_ptr<v1::TeacherService::Stub> stub;
};

inline checkpoint::ModelConfig TinyConfig() {
  testing::TinyShape s;
  s.type = "qwen2";
  s.vocab = 61;
  s.layers = 2;
  s.max_positions = 128;
  s.bias = true;
  return testing::TinyConfig(s);
}

// A distinct sequence per (i): prompt, completion, and a K=3 support containing
// the token.
inline v1::ScoreSequence Seq(int i) {
  v1::ScoreSequence s;
  for (int t = 0; t < 2 + i % 5; ++t) s.add_prompt_ids((i * 7 + t) % 61);
  s.mutable_support()->set_k(3);
  for (int t = 0; t < 1 + i % 4; ++t) {
    const int tok = (i * 13 + t * 5) % 61;
    s.add_completion_ids(tok);
    s.mutable_support()->add_token_ids(tok);
    s.mutable_support()->add_token_ids((tok + 1) % 61);
    s.mutable_support()->add_token_ids((tok + 2) % 61);
  }
  return s;
}

}  // namespace cmdistill::teacher

#endif  // CMDISTILL_TESTS_TESTING_TEACHER_FIXTURE_H_
