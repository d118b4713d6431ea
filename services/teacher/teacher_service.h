// The teacher-scoring gRPC service (callback API) with dynamic batching.
//
// A Score call is validated in the reactor (refusals: INVALID_ARGUMENT, counted
// by reason), then queued (full queue: RESOURCE_EXHAUSTED, the caller backs
// off). One worker merges queued calls into one model batch — up to
// max_batch_tokens, waiting at most batch_timeout after the first call of a
// batch — drops calls that were cancelled or whose deadline passed before they
// cost model time, runs the scorer once and finishes every call with its own
// slice.
//
// Lifetime: the scorer must outlive the service. Close() (idempotent, also in
// the destructor) stops taking calls, scores what is queued, and joins the
// worker.
#ifndef CMDISTILL_SERVICES_TEACHER_TEACHER_SERVICE_H_
#define CMDISTILL_SERVICES_TEACHER_TEACHER_SERVICE_H_

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "cmdistill/v1/teacher.grpc.pb.h"
#include "common/net/call_gate.h"
#include "common/queue/bounded_queue.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "services/teacher/scorer.h"

namespace cmdistill::teacher {

struct TeacherServiceOptions {
  int64_t max_batch_tokens = 16384;
  absl::Duration batch_timeout = absl::Milliseconds(5);
  size_t queue_capacity = 256;
  int64_t max_request_sequences = 512;
  int64_t max_request_tokens = 262144;
};

class TeacherServiceImpl final : public v1::TeacherService::CallbackService {
 public:
  TeacherServiceImpl(Scorer* scorer, std::shared_ptr<net::CallGate> gate,
                     prometheus::Registry* registry,
                     TeacherServiceOptions options);
  ~TeacherServiceImpl() override;

  grpc::ServerUnaryReactor* Score(grpc::CallbackServerContext* ctx,
                                  const v1::ScoreRequest* req,
                                  v1::ScoreResponse* resp) override;
  grpc::ServerUnaryReactor* GetInfo(grpc::CallbackServerContext* ctx,
                                    const v1::GetTeacherInfoRequest* req,
                                    v1::GetTeacherInfoResponse* resp) override;

  void Close();

 private:
  struct Pending;
  void WorkerLoop();
  void RunBatch(std::vector<std::unique_ptr<Pending>>& batch);
  // Refuses with INVALID_ARGUMENT and counts `reason`.
  grpc::ServerUnaryReactor* Refuse(grpc::ServerUnaryReactor* reactor,
                                   const std::string& reason,
                                   const std::string& message);

  Scorer* scorer_;
  std::shared_ptr<net::CallGate> gate_;
  TeacherServiceOptions options_;
  BoundedQueue<std::unique_ptr<Pending>> queue_;
  std::thread worker_;
  std::atomic<bool> closed_{false};

  prometheus::Family<prometheus::Counter>* refused_family_;
  prometheus::Gauge* queue_depth_;
  prometheus::Histogram* batch_sequences_;
  prometheus::Histogram* batch_tokens_;
  prometheus::Counter* scored_tokens_;
  prometheus::Histogram* model_seconds_;
  prometheus::Histogram* request_seconds_;
  prometheus::Counter* dropped_cancelled_;
  prometheus::Counter* dropped_deadline_;
  prometheus::Counter* shed_;
};

}  // namespace cmdistill::teacher

#endif  // CMDISTILL_SERVICES_TEACHER_TEACHER_SERVICE_H_
