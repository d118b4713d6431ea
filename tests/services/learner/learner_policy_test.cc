// The learner service over the real PolicyTrainer (LibTorch): snapshots load
// into another model, and bf16 students checkpoint their float32 master
// weights and resume exactly. The service's own contract is tested torch-free
// in tests/services/learner/learner_service_test.cc.
#include <grpcpp/grpcpp.h>

#include "common/model/language_model.h"
#include "common/util/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/learner/learner_service.h"
#include "services/learner/policy_trainer.h"
#include "tests/testing/learner_fixture.h"
#include "tests/testing/model_configs.h"
#include "tests/testing/status_matchers.h"

namespace cmdistill::learner {
namespace {

checkpoint::ModelConfig Tiny() {
  testing::TinyShape s;
  s.hidden = 16;
  s.intermediate = 32;
  s.heads = 2;
  s.kv_heads = 1;
  s.max_positions = 32;
  return testing::TinyConfig(s);
}

struct Fixture : testing::LearnerFixture {
  explicit Fixture(uint32_t max_policy_lag = 2,
                   const std::string& dtype = "float32",
                   const v1::LearnerCheckpoint* resume = nullptr,
                   const std::string& weights = "", uint64_t epochs = 1)
      : LearnerFixture(max_policy_lag, resume, epochs) {
    student = *model::LanguageModel::InitRandom(Tiny(), 1, "cpu", dtype);
    if (!weights.empty()) {
      EXPECT_OK(student->LoadWeights(weights));
    }
    TrainerOptions to;
    to.method = rl::Method::kGrpo;
    trainer = *PolicyTrainer::Create(student.get(), to);
    Start(trainer.get());
  }
  ~Fixture() { Stop(); }
  std::unique_ptr<model::LanguageModel> student;
  std::unique_ptr<PolicyTrainer> trainer;
};

TEST(LearnerService, StaleSamplesAbandonTheLeaseAndSnapshotsVerify) {
  Fixture f(/*max_policy_lag=*/0);
  // Train one step so that version 1 exists.
  ASSERT_EQ(f.TrainOneStep(), 1u);
  // With max_policy_lag 0, a sample of version 0 is now too stale: its lease is
  // abandoned and the same prompt is leased again.
  v1::PromptLease b = f.Lease();
  EXPECT_EQ(f.Submit(f.Make(b, 0)), v1::SUBMIT_OUTCOME_TOO_STALE);
  EXPECT_EQ(f.Metric("too_stale"), 1);
  v1::PromptLease again = f.Lease();
  EXPECT_EQ(again.lease().prompt_id(), b.lease().prompt_id());
  EXPECT_NE(again.lease().lease_id(), b.lease().lease_id());
  // Fetch the snapshot: chunks reassemble to the announced size; a pinned old
  // version is gone.
  grpc::ClientContext c1;
  v1::FetchPolicyRequest fr;
  auto reader = f.stub->FetchPolicy(&c1, fr);
  v1::FetchPolicyResponse chunk;
  std::string bytes;
  uint64_t total = 0;
  std::string sha;
  while (reader->Read(&chunk)) {
    if (chunk.has_header()) {
      total = chunk.header().total_bytes();
      sha = chunk.header().sha256_hex();
    }
    EXPECT_EQ(chunk.offset(), bytes.size());
    bytes += chunk.data();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(bytes.size(), total);
  // WaitForPolicy names the snapshot by its digest too (version numbers repeat
  // after a resume from an older checkpoint; the digest does not).
  {
    grpc::ClientContext cw;
    v1::WaitForPolicyRequest w;
    v1::WaitForPolicyResponse wr;
    ASSERT_TRUE(f.stub->WaitForPolicy(&cw, w, &wr).ok());
    EXPECT_EQ(wr.sha256_hex(), sha);
    EXPECT_EQ(wr.sha256_hex(), Sha256Hex(bytes));
  }
  auto other = *model::LanguageModel::InitRandom(Tiny(), 5, "cpu", "float32");
  EXPECT_OK(other->LoadWeights(bytes));
  grpc::ClientContext c2;
  fr.set_policy_version(0 + 99);
  auto old = f.stub->FetchPolicy(&c2, fr);
  while (old->Read(&chunk)) {
  }
  EXPECT_EQ(old->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(LearnerService, Bfloat16CheckpointsCarryMasterWeightsAndResumeExactly) {
  Fixture f(2, "bfloat16");
  ASSERT_EQ(f.TrainOneStep(), 1u);
  const v1::LearnerCheckpoint saved = f.learner->CaptureState();
  // One float32 master per (bf16) parameter, as big as the parameter in fp32.
  ASSERT_EQ(saved.optimizer_master_weights_size(),
            saved.optimizer_moments_size() / 2);
  for (int i = 0; i < saved.optimizer_master_weights_size(); ++i) {
    EXPECT_EQ(saved.optimizer_master_weights(i).size(),
              saved.optimizer_moments(2 * i).size());
  }
  // A learner resumed from it (weights as the checkpoint stores them) holds
  // the same master weights, not ones re-rounded from the bf16 copy.
  ASSERT_OK_AND_ASSIGN(std::string weights, f.student->SerializeWeights());
  Fixture g(2, "bfloat16", &saved, weights);
  const v1::LearnerCheckpoint resumed = g.learner->CaptureState();
  ASSERT_EQ(resumed.optimizer_master_weights_size(),
            saved.optimizer_master_weights_size());
  for (int i = 0; i < saved.optimizer_master_weights_size(); ++i) {
    EXPECT_EQ(resumed.optimizer_master_weights(i),
              saved.optimizer_master_weights(i))
        << i;
  }
  EXPECT_EQ(resumed.optimizer_step(), 1);
  // A float32 learner has none to store.
  Fixture h;
  const v1::LearnerCheckpoint fp32 = h.learner->CaptureState();
  for (const std::string& m : fp32.optimizer_master_weights())
    EXPECT_TRUE(m.empty());
}

}  // namespace
}  // namespace cmdistill::learner
