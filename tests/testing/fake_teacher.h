// A scriptable TeacherService for plumbing tests (no model): Score answers each
// sequence with sampled_logprobs[t] = -completion_ids[t], so callers can check
// they got their own results. Calls can be failed with a chosen code, or held
// until released (deterministic tests of shutdown and load shedding without
// sleeps). Every call goes through the CallGate first.
#ifndef CMDISTILL_TESTS_TESTING_FAKE_TEACHER_H_
#define CMDISTILL_TESTS_TESTING_FAKE_TEACHER_H_

#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "cmdistill/v1/teacher.grpc.pb.h"
#include "common/net/call_gate.h"

namespace cmdistill::testing {

class FakeTeacherService final : public v1::TeacherService::CallbackService {
 public:
  explicit FakeTeacherService(std::shared_ptr<net::CallGate> gate)
      : gate_(std::move(gate)) {}

  grpc::ServerUnaryReactor* Score(grpc::CallbackServerContext* ctx,
                                  const v1::ScoreRequest* req,
                                  v1::ScoreResponse* resp) override;
  grpc::ServerUnaryReactor* GetInfo(grpc::CallbackServerContext* ctx,
                                    const v1::GetTeacherInfoRequest* req,
                                    v1::GetTeacherInfoResponse* resp) override;

  // The next `n` Score calls fail with `code` (n < 0: all of them).
  void FailNext(int n, grpc::StatusCode code);
  // While held, Score calls wait until ReleaseHeld(); `on_hold` runs for each
  // held call.
  void Hold(std::function<void()> on_hold = {});
  void ReleaseHeld();
  int score_calls() const;
  int held_calls() const;

 private:
  std::shared_ptr<net::CallGate> gate_;
  mutable absl::Mutex mu_;
  int fail_remaining_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::StatusCode fail_code_ ABSL_GUARDED_BY(mu_) = grpc::StatusCode::OK;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> on_hold_ ABSL_GUARDED_BY(mu_);
  std::vector<grpc::ServerUnaryReactor*> held_ ABSL_GUARDED_BY(mu_);
  int score_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int held_total_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace cmdistill::testing

#endif  // CMDISTILL_TESTS_TESTING_FAKE_TEACHER_H_
