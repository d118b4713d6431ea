// The teacher service in-process over a scripted FakeScorer (links no
// LibTorch): load shedding and deadlines are deterministic with a held
// backend, every refusal has its code and metric. The model-backed scorer
// under dynamic batching: tests/services/teacher/teacher_model_test.cc.
#include "services/teacher/teacher_service.h"

#include <grpcpp/grpcpp.h>

#include <thread>
#include <vector>

#include "cmdistill/v1/teacher.grpc.pb.h"
#include "common/metrics/metrics.h"
#include "common/net/client.h"
#include "common/net/server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/wiring.h"
#include "tests/testing/fake_scorer.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/teacher_fixture.h"
#include "tests/testing/test_util.h"

namespace cmdistill::teacher {
namespace {

using ::cmdistill::testing::StatusIs;
using ::testing::HasSubstr;

TEST(TeacherService, ShedsLoadWhenTheQueueIsFullDeterministically) {
  testing::FakeScorer fake;
  fake.Hold();
  TeacherServiceOptions o;
  o.queue_capacity = 2;
  o.batch_timeout = absl::ZeroDuration();
  Server s(&fake, o);
  v1::ScoreRequest req;
  *req.add_sequences() = Seq(1);
  std::vector<std::thread> callers;
  std::vector<grpc::Status> st(3);
  std::vector<v1::ScoreResponse> resp(3);
  callers.emplace_back([&] { st[0] = s.Score(req, &resp[0]); });
  fake.WaitEntered();  // the worker holds call 0 inside the model
  // Two more fill the queue (capacity 2) ...
  for (int i = 1; i <= 2; ++i)
    callers.emplace_back([&, i] { st[i] = s.Score(req, &resp[i]); });
  while (s.Metric("cmdistill_teacher_queue_depth") < 2)
    std::this_thread::yield();
  // ... and the next one is shed at once.
  v1::ScoreResponse shed;
  EXPECT_EQ(s.Score(req, &shed).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(s.Metric("cmdistill_teacher_shed_total"), 1);
  fake.Release();
  for (auto& t : callers) t.join();
  for (const auto& x : st) EXPECT_TRUE(x.ok()) << x.error_message();
  EXPECT_THAT(resp[2].scores(0).sampled_logprobs(),
              ::testing::ElementsAre(-Seq(1).completion_ids(0) / 100.0f,
                                     -Seq(1).completion_ids(1) / 100.0f));
}

TEST(TeacherService, ExpiredCallsAreDroppedBeforeModelTime) {
  testing::FakeScorer fake;
  fake.Hold();
  Server s(&fake, {});
  v1::ScoreRequest first, late;
  *first.add_sequences() = Seq(2);
  *late.add_sequences() = Seq(3);
  grpc::Status st_first;
  v1::ScoreResponse r1, r2;
  std::thread t([&] { st_first = s.Score(first, &r1); });
  fake.WaitEntered();
  // Queued behind the held batch, its deadline passes (the client returns by
  // itself).
  EXPECT_EQ(s.Score(late, &r2, absl::Milliseconds(100)).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  fake.Release();
  t.join();
  EXPECT_TRUE(st_first.ok());
  // Drain: a final call makes sure the worker has passed the expired one.
  v1::ScoreResponse r3;
  ASSERT_TRUE(s.Score(first, &r3).ok());
  const v1::ScoreSequence dropped = Seq(3);
  const std::vector<int32_t> dropped_ids(dropped.completion_ids().begin(),
                                         dropped.completion_ids().end());
  for (const auto& ids : fake.scored()) EXPECT_NE(ids, dropped_ids);
  EXPECT_EQ(fake.scored().size(), 2u);  // the first call and the final one
  EXPECT_EQ(
      s.Metric("cmdistill_teacher_dropped_total{reason=\"deadline\"}") +
          s.Metric("cmdistill_teacher_dropped_total{reason=\"cancelled\"}"),
      1);
}

// Found by fuzzing: the adapter indexed the scorer's top-K entries without
// checking their number. A scorer that returns none (the fake) now fails the
// call with INTERNAL, naming the shortfall, and the service keeps serving.
TEST(TeacherService, AShortAnswerFromTheScorerIsInternalNotAnOverread) {
  testing::FakeScorer fake;
  Server s(&fake, {});
  v1::ScoreRequest req;
  *req.add_sequences() = Seq(3);
  req.set_teacher_top_k(2);
  v1::ScoreResponse resp;
  const grpc::Status st = s.Score(req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_THAT(st.error_message(), HasSubstr("top-K entries"));
  req.set_teacher_top_k(0);
  EXPECT_TRUE(s.Score(req, &resp).ok());
}

TEST(TeacherService, EveryRefusalHasItsCodeAndMetric) {
  testing::FakeScorer fake;
  TeacherServiceOptions o;
  o.max_request_sequences = 4;
  o.max_request_tokens = 100;
  Server s(&fake, o);
  struct Case {
    std::function<void(v1::ScoreRequest*)> make;
    const char* reason;
    const char* message;
  };
  const std::vector<Case> cases = {
      {[](v1::ScoreRequest*) {}, "empty", "empty batch"},
      {[](v1::ScoreRequest* r) {
         *r->add_sequences() = Seq(1);
         r->mutable_sequences(0)->set_completion_ids(0, 100);
       },
       "token_out_of_vocab", "token id 100 is outside the vocabulary"},
      {[](v1::ScoreRequest* r) {
         *r->add_sequences() = Seq(1);
         r->mutable_sequences(0)->mutable_support()->set_token_ids(0, 50);
         r->mutable_sequences(0)->mutable_support()->set_token_ids(1, 51);
         r->mutable_sequences(0)->mutable_support()->set_token_ids(2, 52);
       },
       "support_without_token", "does not contain the sampled token"},
      {[](v1::ScoreRequest* r) {
         *r->add_sequences() = Seq(1);
         r->mutable_sequences(0)->mutable_support()->add_token_ids(1);
       },
       "length_mismatch", "expected T*K"},
      {[](v1::ScoreRequest* r) {
         auto* q = r->add_sequences();
         for (int i = 0; i < 70; ++i) q->add_prompt_ids(1);
       },
       "too_long", "the teacher allows 64"},
      {[](v1::ScoreRequest* r) {
         for (int i = 0; i < 5; ++i) *r->add_sequences() = Seq(i);
       },
       "oversized", "at most 4"},
  };
  for (const Case& c : cases) {
    v1::ScoreRequest req;
    c.make(&req);
    v1::ScoreResponse resp;
    grpc::Status st = s.Score(req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.reason;
    EXPECT_THAT(st.error_message(), HasSubstr(c.message)) << c.reason;
    EXPECT_EQ(
        s.Metric(std::string("cmdistill_teacher_refused_total{reason=\"") +
                 c.reason + "\"}"),
        1)
        << c.reason;
  }
  EXPECT_EQ(fake.calls(), 0);  // nothing invalid reached the model
  v1::GetTeacherInfoResponse info;
  grpc::ClientContext ctx;
  ASSERT_TRUE(s.stub->GetInfo(&ctx, {}, &info).ok());
  EXPECT_EQ(info.vocab_size(), 100u);
  EXPECT_EQ(info.tokenizer_fingerprint(), "abc");
  EXPECT_EQ(info.max_request_sequences(), 4u);
}

TEST(TeacherService, TokenizerFingerprintMismatchIsDetected) {
  EXPECT_OK(services::CheckSameTokenizer("abc", "abc", "teacher"));
  EXPECT_OK(services::CheckSameTokenizer("abc", "", "teacher"));
  EXPECT_THAT(services::CheckSameTokenizer("abc", "abd", "teacher at x:1"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("teacher at x:1")));
}

}  // namespace
}  // namespace cmdistill::teacher
