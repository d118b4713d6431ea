// Generation and scoring through the torch-free facade: greedy decoding agrees
// with full forwards, batching and padding change nothing, seeds reproduce, the
// log-probability convention holds, and bad input is refused.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard (not in ATen.h on 2.x)

#include <cmath>
#include <set>

#include "common/model/language_model.h"
#include "common/model/transformer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/model_configs.h"
#include "tests/testing/status_matchers.h"

namespace cmdistill::model {
namespace {

using ::cmdistill::testing::StatusIs;
using ::testing::HasSubstr;

checkpoint::ModelConfig Config() {
  testing::TinyShape s;
  s.type = "qwen2";
  s.vocab = 53;
  s.layers = 2;
  s.max_positions = 256;
  s.bias = true;
  return testing::TinyConfig(s);
}

std::unique_ptr<LanguageModel> Model() {
  auto m = LanguageModel::InitRandom(Config(), 4, "cpu", "float32");
  EXPECT_OK(m.status());
  return *std::move(m);
}

// The argmax of p(. | prefix) from a full scoring pass, for every prefix
// length.
int32_t FullArgmax(LanguageModel& m, std::vector<int32_t> prefix) {
  ScoreInput in;
  in.prompt_ids = prefix;
  in.completion_ids = {0};
  ScoreOptions o;
  o.top_k = 1;
  auto s = m.Score({in}, o);
  EXPECT_OK(s.status());
  return (*s)[0].top_ids[0];
}

TEST(Generate, GreedyAgreesWithFullForwardsAndBatchingChangesNothing) {
  auto m = Model();
  const std::vector<std::vector<int32_t>> prompts = {
      {1, 2, 3, 4, 5, 6}, {7}, {8, 9, 10}};
  SamplingOptions o;
  o.temperature = 0;
  o.max_new_tokens = 8;
  ASSERT_OK_AND_ASSIGN(auto batched, m->Generate(prompts, o));
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(auto alone, m->Generate({prompts[i]}, o));
    EXPECT_EQ(batched[i].tokens, alone[0].tokens) << i;
    ASSERT_EQ(batched[i].tokens.size(), 8u);
    std::vector<int32_t> prefix = prompts[i];
    for (int32_t tok : batched[i].tokens) {
      EXPECT_EQ(tok, FullArgmax(*m, prefix));
      prefix.push_back(tok);
    }
  }
}

TEST(Generate, SeedsReproduceAndLogprobsFollowTheConvention) {
  auto m = Model();
  SamplingOptions o;
  o.temperature = 0.7;
  o.max_new_tokens = 12;
  o.seed = 123;
  o.support_k = 5;
  const std::vector<std::vector<int32_t>> prompts = {{3, 1, 4}, {1, 5}};
  ASSERT_OK_AND_ASSIGN(auto a, m->Generate(prompts, o));
  ASSERT_OK_AND_ASSIGN(auto b, m->Generate(prompts, o));
  EXPECT_EQ(a[0].tokens, b[0].tokens);
  EXPECT_EQ(a[1].tokens, b[1].tokens);
  o.seed = 124;
  ASSERT_OK_AND_ASSIGN(auto c, m->Generate(prompts, o));
  EXPECT_TRUE(c[0].tokens != a[0].tokens || c[1].tokens != a[1].tokens);
  // log π(token) = log softmax(logits / T): the same numbers from a scoring
  // pass at T.
  for (size_t i = 0; i < prompts.size(); ++i) {
    ScoreInput in;
    in.prompt_ids = prompts[i];
    in.completion_ids = a[i].tokens;
    in.support_k = 5;
    in.support_ids = a[i].support_ids;
    ScoreOptions so;
    so.temperature = 0.7;
    ASSERT_OK_AND_ASSIGN(auto s, m->Score({in}, so));
    for (size_t t = 0; t < a[i].tokens.size(); ++t) {
      EXPECT_NEAR(s[0].sampled_logprobs[t], a[i].logprobs[t], 1e-4);
      // The sampled token is in its support, whose values are the policy's
      // log-probabilities.
      bool found = false;
      for (int k = 0; k < 5; ++k) {
        found |= a[i].support_ids[t * 5 + k] == a[i].tokens[t];
        EXPECT_NEAR(a[i].support_logprobs[t * 5 + k],
                    s[0].support_logprobs[t * 5 + k], 1e-4);
      }
      EXPECT_TRUE(found);
      // Tail = log(1 - Σ support).
      double mass = 0;
      for (int k = 0; k < 5; ++k)
        mass += std::exp(s[0].support_logprobs[t * 5 + k]);
      EXPECT_NEAR(std::exp(s[0].tail_logprobs[t]), 1 - mass, 1e-5);
    }
  }
}

// Sampling a step's rows in chunks (as the CPU does with a real vocabulary)
// draws the same tokens from the same seed: one generator, rows in order.
TEST(Generate, SamplingInRowChunksChangesNothing) {
  auto m = Model();
  const std::vector<std::vector<int32_t>> prompts = {
      {3, 1, 4}, {1, 5}, {9, 2, 6, 5}, {3}, {5, 8, 9}};
  SamplingOptions o;
  o.temperature = 0.9;
  o.top_p = 0.95;
  o.top_k = 20;
  o.max_new_tokens = 10;
  o.seed = 77;
  o.support_k = 4;
  ASSERT_OK_AND_ASSIGN(auto whole, m->Generate(prompts, o));
  o.sample_chunk_rows = 2;  // 5 rows: chunks 2, 2, 1
  ASSERT_OK_AND_ASSIGN(auto chunked, m->Generate(prompts, o));
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(chunked[i].tokens, whole[i].tokens) << i;
    EXPECT_EQ(chunked[i].support_ids, whole[i].support_ids) << i;
    ASSERT_EQ(chunked[i].logprobs.size(), whole[i].logprobs.size());
    for (size_t t = 0; t < whole[i].logprobs.size(); ++t)
      EXPECT_NEAR(chunked[i].logprobs[t], whole[i].logprobs[t], 1e-6);
  }
  o.sample_chunk_rows = -1;
  EXPECT_THAT(m->Generate(prompts, o).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sample_chunk_rows")));
}

TEST(Generate, FullVocabularySupportAndTruncationOptions) {
  auto m = Model();
  SamplingOptions o;
  o.max_new_tokens = 4;
  o.support_k = 1000;  // >= V: the whole vocabulary
  ASSERT_OK_AND_ASSIGN(auto r, m->Generate({{2, 3}}, o));
  EXPECT_EQ(r[0].support_k, 53);
  double mass = 0;
  for (int k = 0; k < 53; ++k) mass += std::exp(r[0].support_logprobs[k]);
  EXPECT_NEAR(mass, 1.0, 1e-5);
  std::set<int32_t> ids(r[0].support_ids.begin(),
                        r[0].support_ids.begin() + 53);
  EXPECT_EQ(ids.size(), 53u);
  // top_k = 1 and a tiny top_p both reduce sampling to greedy.
  SamplingOptions greedy;
  greedy.temperature = 0;
  greedy.max_new_tokens = 6;
  ASSERT_OK_AND_ASSIGN(auto g, m->Generate({{5, 6, 7}}, greedy));
  SamplingOptions k1 = greedy;
  k1.temperature = 1.3;
  k1.top_k = 1;
  ASSERT_OK_AND_ASSIGN(auto a, m->Generate({{5, 6, 7}}, k1));
  EXPECT_EQ(a[0].tokens, g[0].tokens);
  SamplingOptions p0 = greedy;
  p0.temperature = 1.3;
  p0.top_p = 1e-6;
  ASSERT_OK_AND_ASSIGN(auto b, m->Generate({{5, 6, 7}}, p0));
  EXPECT_EQ(b[0].tokens, g[0].tokens);
}

TEST(Generate, StopTokensEndSequences) {
  auto m = Model();
  SamplingOptions o;
  o.temperature = 0;
  o.max_new_tokens = 10;
  ASSERT_OK_AND_ASSIGN(auto free_run, m->Generate({{1, 2}, {3}}, o));
  o.stop_token_ids = {free_run[0].tokens[2]};
  ASSERT_OK_AND_ASSIGN(auto stopped, m->Generate({{1, 2}, {3}}, o));
  const auto& s = stopped[0].tokens;
  EXPECT_TRUE(stopped[0].finished);
  EXPECT_EQ(s.back(), free_run[0].tokens[2]);
  EXPECT_LE(s.size(), 3u);
  // The other row keeps going, unaffected by its neighbour stopping (rows are
  // dropped).
  const auto& other = stopped[1].tokens;
  EXPECT_EQ(std::vector<int32_t>(
                free_run[1].tokens.begin(),
                free_run[1].tokens.begin() + static_cast<long>(other.size())),
            other);
}

TEST(Score, BatchingDoesNotChangeScores) {
  auto m = Model();
  std::vector<std::vector<int32_t>> seqs = {
      {1, 2, 3, 4, 5, 6, 7, 8}, {9, 10}, {11, 12, 13, 14}};
  ASSERT_OK_AND_ASSIGN(auto big, m->TokenLogprobs(seqs, 10000));
  ASSERT_OK_AND_ASSIGN(auto small, m->TokenLogprobs(seqs, 1));
  for (size_t i = 0; i < seqs.size(); ++i) {
    ASSERT_EQ(big[i].size(), seqs[i].size() - 1);
    for (size_t t = 0; t < big[i].size(); ++t)
      EXPECT_NEAR(big[i][t], small[i][t], 1e-5);
  }
}

// Scores of prompts and completions of different lengths, batched and padded
// together, equal a plain forward of each whole sequence alone: the rows the
// head is applied to are exactly those that predict the completion.
TEST(Score, MixedPromptLengthsEqualAPlainForwardOfEachSequence) {
  auto m = Model();
  std::vector<ScoreInput> inputs(4);
  inputs[0].prompt_ids = {1, 2, 3};
  inputs[0].completion_ids = {4, 5, 6, 7};
  inputs[1].prompt_ids = {8};
  inputs[1].completion_ids = {9};
  inputs[2].prompt_ids = {10, 11, 12, 13, 14, 15};
  inputs[2].completion_ids = {16, 17};
  inputs[3].prompt_ids = {18, 19};
  inputs[3].completion_ids = {};  // nothing to score, in the same pass
  ScoreOptions o;
  o.temperature = 0.7f;
  ASSERT_OK_AND_ASSIGN(auto scores, m->Score(inputs, o));
  ASSERT_EQ(scores.size(), inputs.size());
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ScoreInput& in = inputs[i];
    ASSERT_EQ(scores[i].sampled_logprobs.size(), in.completion_ids.size());
    if (in.completion_ids.empty()) continue;
    std::vector<int64_t> ids(in.prompt_ids.begin(), in.prompt_ids.end());
    ids.insert(ids.end(), in.completion_ids.begin(), in.completion_ids.end());
    const auto n = static_cast<int64_t>(ids.size());
    const at::Tensor logits = m->transformer()->Forward(
        at::tensor(ids, at::kLong).view({1, n}),
        at::arange(n, at::kLong).view({1, n}), at::ones({1, n}, at::kLong),
        nullptr)[0];  // [n, V]
    const at::Tensor lp = at::log_softmax(logits / 0.7, -1);
    const auto P = static_cast<int64_t>(in.prompt_ids.size());
    for (size_t t = 0; t < in.completion_ids.size(); ++t) {
      const int64_t row = P - 1 + static_cast<int64_t>(t);
      EXPECT_NEAR(scores[i].sampled_logprobs[t],
                  lp[row][in.completion_ids[t]].item<float>(), 1e-5)
          << "sequence " << i << " token " << t;
    }
  }
}

// The head applied in chunks of rows that cut across sequences gives the same
// scores, supports, tails and top-K as one chunk per pass.
TEST(Score, HeadChunksAcrossSequencesChangeNothing) {
  auto m = Model();
  std::vector<ScoreInput> inputs(3);
  inputs[0].prompt_ids = {1, 2};
  inputs[0].completion_ids = {3, 4, 5, 6, 7};
  inputs[1].prompt_ids = {8, 9, 10, 11};
  inputs[1].completion_ids = {12, 13};
  inputs[2].prompt_ids = {14};
  inputs[2].completion_ids = {15, 16, 17, 18};
  for (auto& in : inputs) {
    in.support_k = 2;
    for (int32_t c : in.completion_ids) {
      in.support_ids.push_back(c);
      in.support_ids.push_back((c + 20) % 53);
    }
  }
  ScoreOptions whole;
  whole.top_k = 3;
  ScoreOptions chunked = whole;
  chunked.head_chunk_rows = 3;  // 11 rows: chunks 3, 3, 3, 2
  ASSERT_OK_AND_ASSIGN(auto a, m->Score(inputs, whole));
  ASSERT_OK_AND_ASSIGN(auto b, m->Score(inputs, chunked));
  for (size_t i = 0; i < inputs.size(); ++i) {
    const size_t T = inputs[i].completion_ids.size();
    ASSERT_EQ(b[i].sampled_logprobs.size(), T);
    ASSERT_EQ(b[i].support_logprobs.size(), 2 * T);
    ASSERT_EQ(b[i].tail_logprobs.size(), T);
    ASSERT_EQ(b[i].top_ids.size(), 3 * T);
    EXPECT_EQ(a[i].top_ids, b[i].top_ids) << i;
    for (size_t t = 0; t < T; ++t) {
      EXPECT_NEAR(a[i].sampled_logprobs[t], b[i].sampled_logprobs[t], 1e-5);
      EXPECT_NEAR(a[i].tail_logprobs[t], b[i].tail_logprobs[t], 1e-5);
      EXPECT_NEAR(a[i].support_logprobs[2 * t + 1],
                  b[i].support_logprobs[2 * t + 1], 1e-5);
      // The support's first id is the sampled token.
      EXPECT_NEAR(b[i].support_logprobs[2 * t], b[i].sampled_logprobs[t], 1e-6);
    }
  }
  chunked.head_chunk_rows = -1;
  EXPECT_THAT(m->Score(inputs, chunked).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("head_chunk_rows")));
}

TEST(Snapshot, WeightsTravelAsOneSafetensorsBuffer) {
  auto a = Model();
  auto b = *LanguageModel::InitRandom(Config(), 99, "cpu", "float32");
  ASSERT_OK_AND_ASSIGN(std::string snap, a->SerializeWeights());
  ASSERT_OK(b->LoadWeights(snap));
  ASSERT_OK_AND_ASSIGN(auto la, a->TokenLogprobs({{1, 2, 3, 4}}));
  ASSERT_OK_AND_ASSIGN(auto lb, b->TokenLogprobs({{1, 2, 3, 4}}));
  EXPECT_EQ(la, lb);
  // A corrupt snapshot is refused and changes nothing.
  std::string bad = snap;
  bad.resize(bad.size() / 2);
  EXPECT_FALSE(b->LoadWeights(bad).ok());
  ASSERT_OK_AND_ASSIGN(auto lc, b->TokenLogprobs({{1, 2, 3, 4}}));
  EXPECT_EQ(lc, la);
}

TEST(Snapshot, AdoptingOnCpuUsesTheBufferInPlace) {
  auto a = Model();
  auto b = *LanguageModel::InitRandom(Config(), 99, "cpu", "float32");
  ASSERT_OK_AND_ASSIGN(std::string snap, a->SerializeWeights());
  auto buffer = std::make_shared<const std::string>(snap);
  ASSERT_OK(b->AdoptWeights(buffer));
  ASSERT_OK_AND_ASSIGN(auto la, a->TokenLogprobs({{1, 2, 3, 4}}));
  ASSERT_OK_AND_ASSIGN(auto lb, b->TokenLogprobs({{1, 2, 3, 4}}));
  EXPECT_EQ(la, lb);
  // Every parameter's data lies inside the buffer, which they keep alive.
  const auto* lo = buffer->data();
  const auto* hi = lo + buffer->size();
  for (const auto& [name, t] : b->transformer()->named_parameters()) {
    const auto* p = static_cast<const char*>(t.data_ptr());
    EXPECT_TRUE(p >= lo && p < hi) << name;
  }
  EXPECT_GT(buffer.use_count(), 1);
  // A corrupt buffer is refused and the adopted weights stay.
  auto bad =
      std::make_shared<const std::string>(snap.substr(0, snap.size() / 2));
  EXPECT_FALSE(b->AdoptWeights(bad).ok());
  ASSERT_OK_AND_ASSIGN(auto lc, b->TokenLogprobs({{1, 2, 3, 4}}));
  EXPECT_EQ(lc, la);
  // Another snapshot moves every parameter off the first buffer.
  auto c = *LanguageModel::InitRandom(Config(), 7, "cpu", "float32");
  ASSERT_OK(b->AdoptWeights(
      std::make_shared<const std::string>(*c->SerializeWeights())));
  EXPECT_EQ(buffer.use_count(), 1);
  // A model of another dtype copies (converting) instead.
  auto h = *LanguageModel::InitRandom(Config(), 5, "cpu", "bfloat16");
  ASSERT_OK(h->AdoptWeights(buffer));
  for (const auto& [name, t] : h->transformer()->named_parameters()) {
    const auto* p = static_cast<const char*>(t.data_ptr());
    EXPECT_FALSE(p >= lo && p < hi) << name;
  }
  EXPECT_EQ(buffer.use_count(), 1);
}

// Matched on .status(): gmock would print a StatusOr<std::vector<T>> through
// the std::operator<< for vectors that LibTorch 2.x's c10 logging header
// declares, which does not compile for an unprintable T.
TEST(Score, BadInputIsRefused) {
  auto m = Model();
  ScoreInput in;
  in.prompt_ids = {1};
  in.completion_ids = {2, 99};
  EXPECT_THAT(m->Score({in}, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("token id 99 is outside the vocabulary")));
  in.completion_ids = {2, 3};
  in.support_k = 2;
  in.support_ids = {2, 5, 4, 5};  // position 1 lacks token 3
  EXPECT_THAT(m->Score({in}, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("position 1: the support does not contain")));
  in.support_ids = {2, 5};
  EXPECT_THAT(m->Score({in}, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("expected T*K = 4")));
  SamplingOptions o;
  o.max_new_tokens = 300;
  EXPECT_THAT(m->Generate({{1}}, o).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("exceeds the model's 256 positions")));
  EXPECT_THAT(m->Generate({{}}, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(LanguageModel::Load("/nonexistent", "cpu", "float32"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(LanguageModel::InitRandom(Config(), 1, "tpu", "float32"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace cmdistill::model
