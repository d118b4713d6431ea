#include "tests/testing/fake_teacher.h"

namespace cmdistill::testing {

grpc::ServerUnaryReactor* FakeTeacherService::Score(
    grpc::CallbackServerContext* ctx, const v1::ScoreRequest* req,
    v1::ScoreResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (gate_->Reject(ctx, reactor)) return reactor;
  for (const auto& seq : req->sequences()) {
    auto* s = resp->add_scores();
    for (int id : seq.completion_ids())
      s->add_sampled_logprobs(-static_cast<float>(id));
  }
  std::function<void()> on_hold;
  bool held = false;
  {
    absl::MutexLock lock(&mu_);
    ++score_calls_;
    if (fail_remaining_ != 0) {
      if (fail_remaining_ > 0) --fail_remaining_;
      reactor->Finish(grpc::Status(fail_code_, "scripted failure"));
      return reactor;
    }
    if (hold_) {
      held_.push_back(reactor);
      ++held_total_;
      on_hold = on_hold_;
      held = true;
    }
  }
  if (held) {
    if (on_hold) on_hold();
    return reactor;  // finished by ReleaseHeld()
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* FakeTeacherService::GetInfo(
    grpc::CallbackServerContext* ctx, const v1::GetTeacherInfoRequest*,
    v1::GetTeacherInfoResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (gate_->Reject(ctx, reactor)) return reactor;
  resp->set_model_id("fake-teacher");
  resp->set_vocab_size(32);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

void FakeTeacherService::FailNext(int n, grpc::StatusCode code) {
  absl::MutexLock lock(&mu_);
  fail_remaining_ = n;
  fail_code_ = code;
}

void FakeTeacherService::Hold(std::function<void()> on_hold) {
  absl::MutexLock lock(&mu_);
  hold_ = true;
  on_hold_ = std::move(on_hold);
}

void FakeTeacherService::ReleaseHeld() {
  std::vector<grpc::ServerUnaryReactor*> held;
  {
    absl::MutexLock lock(&mu_);
    hold_ = false;
    held.swap(held_);
  }
  for (auto* r : held) r->Finish(grpc::Status::OK);
}

int FakeTeacherService::score_calls() const {
  absl::MutexLock lock(&mu_);
  return score_calls_;
}

int FakeTeacherService::held_calls() const {
  absl::MutexLock lock(&mu_);
  return held_total_;
}

}  // namespace cmdistill::testing
