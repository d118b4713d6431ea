// The teacher service over the model-backed Scorer (LibTorch): scores equal
// the model library's under any dynamic batching and concurrency, and the
// teacher's own top-K per call.
#include <grpcpp/grpcpp.h>

#include <thread>
#include <vector>

#include "common/model/language_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/teacher/model_scorer.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/teacher_fixture.h"

namespace cmdistill::teacher {
namespace {

model::ScoreInput ToInput(const v1::ScoreSequence& s) {
  model::ScoreInput in;
  in.prompt_ids.assign(s.prompt_ids().begin(), s.prompt_ids().end());
  in.completion_ids.assign(s.completion_ids().begin(),
                           s.completion_ids().end());
  in.support_k = s.support().k();
  in.support_ids.assign(s.support().token_ids().begin(),
                        s.support().token_ids().end());
  return in;
}

void ExpectSame(const v1::SequenceScores& got,
                const model::SequenceScore& want) {
  ASSERT_EQ(got.sampled_logprobs_size(),
            static_cast<int>(want.sampled_logprobs.size()));
  for (size_t t = 0; t < want.sampled_logprobs.size(); ++t) {
    EXPECT_NEAR(got.sampled_logprobs(t), want.sampled_logprobs[t], 1e-5);
    EXPECT_NEAR(got.tail_logprobs(t), want.tail_logprobs[t], 1e-5);
  }
  ASSERT_EQ(got.support_logprobs_size(),
            static_cast<int>(want.support_logprobs.size()));
  for (size_t k = 0; k < want.support_logprobs.size(); ++k) {
    EXPECT_NEAR(got.support_logprobs(k), want.support_logprobs[k], 1e-5);
  }
}

TEST(TeacherService, ScoresEqualTheModelLibraryInAnyBatchingAndConcurrency) {
  auto reference =
      *model::LanguageModel::InitRandom(TinyConfig(), 3, "cpu", "float32");
  auto scorer = MakeModelScorer(
      *model::LanguageModel::InitRandom(TinyConfig(), 3, "cpu", "float32"),
      "tiny", "", 4096);
  TeacherServiceOptions o;
  o.max_batch_tokens = 64;  // forces several model batches per burst
  o.batch_timeout = absl::Milliseconds(20);
  Server s(scorer.get(), o);
  // 16 concurrent callers, each with distinct sequences: everyone gets their
  // own numbers.
  constexpr int kCallers = 16;
  std::vector<v1::ScoreResponse> responses(kCallers);
  std::vector<grpc::Status> statuses(kCallers);
  std::vector<std::thread> threads;
  for (int c = 0; c < kCallers; ++c) {
    threads.emplace_back([&, c] {
      v1::ScoreRequest req;
      for (int j = 0; j < 1 + c % 3; ++j)
        *req.add_sequences() = Seq(c * 10 + j);
      statuses[c] = s.Score(req, &responses[c]);
    });
  }
  for (auto& t : threads) t.join();
  for (int c = 0; c < kCallers; ++c) {
    ASSERT_TRUE(statuses[c].ok()) << statuses[c].error_message();
    ASSERT_EQ(responses[c].scores_size(), 1 + c % 3);
    for (int j = 0; j < 1 + c % 3; ++j) {
      ASSERT_OK_AND_ASSIGN(auto want,
                           reference->Score({ToInput(Seq(c * 10 + j))}, {}));
      ExpectSame(responses[c].scores(j), want[0]);
    }
  }
  EXPECT_GT(s.Metric("cmdistill_teacher_scored_tokens_total"), 0);
  EXPECT_GT(s.Metric("cmdistill_teacher_batch_sequences_count"), 1);
}

TEST(TeacherService, TeacherTopKPerCall) {
  auto scorer = MakeModelScorer(
      *model::LanguageModel::InitRandom(TinyConfig(), 3, "cpu", "float32"),
      "tiny", "", 4096);
  Server s(scorer.get(), {});
  v1::ScoreRequest req;
  *req.add_sequences() = Seq(1);
  req.set_teacher_top_k(4);
  v1::ScoreResponse resp;
  ASSERT_TRUE(s.Score(req, &resp).ok());
  const auto& sc = resp.scores(0);
  EXPECT_EQ(sc.teacher_top().k(), 4u);
  EXPECT_EQ(sc.teacher_top().token_ids_size(), 4 * sc.sampled_logprobs_size());
  EXPECT_GE(sc.teacher_top_logprobs(0), sc.teacher_top_logprobs(1));
}

}  // namespace
}  // namespace cmdistill::teacher
