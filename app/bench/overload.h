// `cmdistill bench overload`: a teacher service (real model, real gRPC over
// loopback) driven by ten times more concurrent scoring clients than its queue
// holds. What a user needs to see: the queue stays within its capacity, the
// excess is refused with RESOURCE_EXHAUSTED at once (not after a timeout),
// memory stays flat, and the calls that are served keep a latency bounded by
// the queue (capacity x batch time), compared with one client alone.
#ifndef CMDISTILL_SERVICES_BENCH_OVERLOAD_H_
#define CMDISTILL_SERVICES_BENCH_OVERLOAD_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/model/language_model.h"

namespace cmdistill::bench {

struct OverloadOptions {
  int clients = 0;  // 0: 10 x queue_capacity
  size_t queue_capacity = 8;
  int64_t max_batch_tokens = 1024;
  int64_t seq_len = 64;  // completion tokens per request (one sequence)
  absl::Duration duration = absl::Seconds(10);
};

struct LatencyStats {
  int64_t count = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
};

struct OverloadResult {
  int clients = 0;
  size_t queue_capacity = 0;
  LatencyStats alone;    // one client, no contention: the reference
  LatencyStats served;   // under overload, calls that were scored
  LatencyStats refused;  // under overload, RESOURCE_EXHAUSTED answers
  int64_t other_errors = 0;
  int64_t idle = 0;  // learner: turns with nothing to lease (10 ms idle each)
  std::string other_example;  // the first other error, "code: message"
  double served_per_s = 0, alone_per_s = 0;
  double max_queue_depth = 0;  // sampled every 20 ms
  double rss_before_mb = 0, rss_peak_mb = 0, rss_after_mb = 0;
};

// Takes ownership of `teacher` (the scorer's model).
absl::StatusOr<OverloadResult> TeacherOverload(
    std::unique_ptr<model::LanguageModel> teacher,
    const OverloadOptions& options);

// The learner's submission buffer (capacity: options.queue_capacity
// trajectories) under `clients` actors that lease a prompt and submit its whole
// group (G = 2, seq_len completion tokens) as fast as they can, while the
// learner trains `student` (grpo, one prompt per step). "alone" is one such
// client. max_queue_depth is the buffer gauge.
absl::StatusOr<OverloadResult> LearnerOverload(
    std::unique_ptr<model::LanguageModel> student,
    const OverloadOptions& options);

// The result as `cmdistill bench overload` prints it: a few lines of text,
// or one JSON object (`service` and `model` describe what was loaded).
std::string OverloadText(const OverloadResult& r, const std::string& service,
                         const std::string& model);
std::string OverloadJson(const OverloadResult& r, const std::string& service,
                         const std::string& model);

}  // namespace cmdistill::bench

#endif  // CMDISTILL_SERVICES_BENCH_OVERLOAD_H_
