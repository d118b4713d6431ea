// The transformer against an independent PyTorch reference
// (tests/reference/hf_reference.py, run with Debian's /usr/bin/python3 and
// python3-torch), plus KV-cache, padding and checkpoint round-trip properties.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard (not in ATen.h on 2.x)

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <vector>

#include "common/model/transformer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/device.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::model {
namespace {

using checkpoint::ModelConfig;
using testing::StatusIs;

ModelConfig Base(const std::string& type) {
  ModelConfig c;
  c.model_type = type;
  c.vocab_size = 97;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 128;
  c.rms_norm_eps = 1e-6;
  return c;
}

struct Variant {
  std::string name;
  ModelConfig config;
};

void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }

std::vector<Variant> Variants() {
  std::vector<Variant> v;
  ModelConfig llama = Base("llama");  // GQA, untied head, llama3 rope scaling
  llama.rope_scaling.type = "llama3";
  llama.rope_scaling.factor = 8;
  llama.rope_scaling.low_freq_factor = 1;
  llama.rope_scaling.high_freq_factor = 4;
  llama.rope_scaling.original_max_position_embeddings = 16;
  v.push_back({"llama_gqa_llama3rope", llama});
  ModelConfig llama_bias = Base("llama");  // multi-head, attention bias, tied
  llama_bias.num_key_value_heads = 4;
  llama_bias.attention_bias = true;
  llama_bias.tie_word_embeddings = true;
  v.push_back({"llama_bias_tied", llama_bias});
  ModelConfig qwen2 =
      Base("qwen2");  // q/k/v bias, one kv head, tied, large theta
  qwen2.attention_bias = true;
  qwen2.num_key_value_heads = 1;
  qwen2.tie_word_embeddings = true;
  qwen2.rope_theta = 1e6;
  v.push_back({"qwen2_bias_tied", qwen2});
  ModelConfig qwen3 =
      Base("qwen3");  // q/k norm, explicit head_dim != hidden / heads
  qwen3.qk_norm = true;
  qwen3.head_dim = 16;
  v.push_back({"qwen3_qknorm_headdim", qwen3});
  return v;
}

// Random init, then weights scaled up so that the network is far from uniform.
std::unique_ptr<Transformer> MakeModel(const ModelConfig& c, uint64_t seed) {
  auto m = Transformer::InitRandom(c, seed, c10::Device(c10::kCPU), at::kFloat);
  EXPECT_OK(m.status());
  at::manual_seed(static_cast<uint64_t>(seed));
  at::NoGradGuard no_grad;
  for (const auto& [name, t] : (*m)->named_parameters()) {
    if (name.find("norm") != std::string::npos) {
      t.copy_(1 + 0.2 * at::randn_like(t));
    } else {
      t.copy_(0.3 * at::randn_like(t));
    }
  }
  return *std::move(m);
}

// Logits of one unpadded sequence, on the CPU as float32 (the model may run
// on another device and dtype).
at::Tensor FullLogits(const Transformer& m, const std::vector<int64_t>& ids) {
  const int64_t T = static_cast<int64_t>(ids.size());
  const c10::Device d = m.device();
  const at::Tensor input = at::tensor(ids, at::kLong).view({1, T}).to(d);
  return m
      .Forward(input, at::arange(T, at::kLong).view({1, T}).to(d),
               at::ones({1, T}, at::kLong).to(d), nullptr)[0]
      .to(at::kCPU);
}

double RelErr(const at::Tensor& a, const at::Tensor& b) {
  return ((a.to(at::kDouble) - b.to(at::kDouble)).abs().max() /
          b.to(at::kDouble).abs().max())
      .item<double>();
}

class ReferenceTest : public ::testing::TestWithParam<Variant> {};

TEST_P(ReferenceTest, LogitsMatchTheIndependentPyTorchImplementation) {
  // CMDISTILL_REFERENCE_PYTHON: a python3 with torch (default Debian's).
  const char* py_env = std::getenv("CMDISTILL_REFERENCE_PYTHON");
  const std::string py = py_env != nullptr ? py_env : "/usr/bin/python3";
  if (std::system((py + " -c 'import torch' >/dev/null 2>&1").c_str()) != 0) {
    GTEST_SKIP() << "Debian's python3-torch is not installed (scripts/setup.sh "
                    "installs it)";
  }
  const Variant& v = GetParam();
  testing::TempDir dir;
  auto model = MakeModel(v.config, 11);
  ASSERT_OK(model->Save(dir.File("model")));
  const std::vector<std::vector<int64_t>> seqs = {
      {1, 5, 9, 2, 96, 0, 33, 33, 7, 12, 64, 3},
      {42},
      {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9,
       3, 2, 3, 8, 4, 6, 2, 6, 4, 3, 3, 8, 3, 2, 7}};
  std::ofstream(dir.File("ids.json")) << nlohmann::json(seqs).dump();
  const char* src = std::getenv("CMDISTILL_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  const std::string cmd = py + " " + src + "/tests/reference/hf_reference.py " +
                          dir.File("model") + " " + dir.File("ids.json") + " " +
                          dir.File("out.bin");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream in(dir.File("out.bin"), std::ios::binary);
  // Load what was saved (the checkpoint path is part of what is checked), on
  // the test device (CMDISTILL_TEST_DEVICE), in float32 and in bfloat16.
  ASSERT_OK_AND_ASSIGN(auto ck,
                       checkpoint::HfCheckpoint::Open(dir.File("model")));
  ASSERT_OK_AND_ASSIGN(const c10::Device device,
                       ParseDevice(testing::TestDevice()));
  std::vector<at::Tensor> expected;
  for (const auto& ids : seqs) {
    const int64_t T = static_cast<int64_t>(ids.size());
    std::vector<double> ref(static_cast<size_t>(T * v.config.vocab_size));
    in.read(reinterpret_cast<char*>(ref.data()),
            static_cast<std::streamsize>(ref.size() * 8));
    ASSERT_TRUE(in.good());
    expected.push_back(
        at::tensor(ref, at::kDouble).view({T, v.config.vocab_size}));
    EXPECT_GT(expected.back().std().item<double>(),
              0.1);  // not a degenerate, flat model
  }
  for (const auto& [dtype_name, dtype] :
       {std::pair<std::string, at::ScalarType>{"float32", at::kFloat},
        {"bfloat16", at::kBFloat16}}) {
    ASSERT_OK_AND_ASSIGN(auto loaded, Transformer::Load(*ck, device, dtype));
    for (size_t i = 0; i < seqs.size(); ++i) {
      const double err = RelErr(FullLogits(*loaded, seqs[i]), expected[i]);
      EXPECT_LT(err, testing::RelTolerance(dtype_name))
          << v.name << " " << dtype_name << " on " << testing::TestDevice()
          << " T=" << seqs[i].size();
      if (dtype != at::kFloat) {
        EXPECT_GT(err, 0.0);  // really ran in bf16
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, ReferenceTest,
                         ::testing::ValuesIn(Variants()),
                         [](const auto& info) { return info.param.name; });

TEST(Transformer, KvCacheDecodingEqualsFullForward) {
  for (const Variant& v : Variants()) {
    auto m = MakeModel(v.config, 3);
    const std::vector<int64_t> ids = {4, 8, 15, 16, 23, 42, 1, 2, 3, 5, 8, 13};
    const at::Tensor full = FullLogits(*m, ids);
    KvCache cache;
    const int64_t prefix = 5;
    at::Tensor mask = at::ones({1, prefix}, at::kLong);
    at::Tensor out = m->Forward(
        at::tensor(std::vector<int64_t>(ids.begin(), ids.begin() + prefix),
                   at::kLong)
            .view({1, prefix}),
        at::arange(prefix, at::kLong).view({1, prefix}), mask, &cache)[0];
    std::vector<at::Tensor> pieces = {out};
    for (size_t t = prefix; t < ids.size(); ++t) {
      mask = at::ones({1, static_cast<int64_t>(t) + 1}, at::kLong);
      pieces.push_back(m->Forward(
          at::tensor({ids[t]}, at::kLong).view({1, 1}),
          at::tensor({static_cast<int64_t>(t)}, at::kLong).view({1, 1}), mask,
          &cache)[0]);
    }
    EXPECT_LT(RelErr(at::cat(pieces, 0), full), 1e-5) << v.name;
    EXPECT_EQ(cache.length(), static_cast<int64_t>(ids.size()));
  }
}

// Inference over 2-4 rows takes one matrix-vector product per row (Linear's
// kMatvecRows), training the matmul: the same logits either way.
TEST(Transformer, FewRowsWithoutAutogradEqualTheMatmulPath) {
  for (const Variant& v : Variants()) {
    auto m = MakeModel(v.config, 5);
    for (const auto& [B, T] : std::vector<std::pair<int64_t, int64_t>>{
             {2, 1}, {3, 1}, {4, 1}, {2, 2}, {5, 1}}) {
      const at::Tensor ids = at::arange(1, 1 + B * T, at::kLong)
                                 .remainder(v.config.vocab_size)
                                 .view({B, T});
      const at::Tensor pos = at::arange(T, at::kLong).repeat({B, 1});
      const at::Tensor mask = at::ones({B, T}, at::kLong);
      const at::Tensor matmul = m->Forward(ids, pos, mask, nullptr);
      at::Tensor rows;
      {
        at::NoGradGuard no_grad;
        rows = m->Forward(ids, pos, mask, nullptr);
      }
      EXPECT_LT(RelErr(rows, matmul), 1e-5)
          << v.name << " B=" << B << " T=" << T;
    }
  }
}

TEST(Transformer, LeftPaddedBatchEqualsUnbatched) {
  const Variant v = Variants()[0];
  auto m = MakeModel(v.config, 5);
  const std::vector<std::vector<int64_t>> seqs = {
      {1, 2, 3, 4, 5, 6, 7}, {9, 8}, {5, 5, 5, 5}};
  const int64_t T = 7, B = 3;
  at::Tensor ids = at::zeros({B, T}, at::kLong),
             mask = at::zeros({B, T}, at::kLong),
             pos = at::zeros({B, T}, at::kLong);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = static_cast<int64_t>(seqs[b].size()), pad = T - n;
    for (int64_t t = 0; t < n; ++t) {
      ids[b][pad + t] = seqs[b][t];
      mask[b][pad + t] = 1;
      pos[b][pad + t] = t;
    }
  }
  const at::Tensor batched = m->Forward(ids, pos, mask, nullptr);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = static_cast<int64_t>(seqs[b].size());
    EXPECT_LT(RelErr(batched[b].narrow(0, T - n, n), FullLogits(*m, seqs[b])),
              1e-5)
        << b;
  }
}

// Values and gradients (every parameter, through the hidden states and the
// head, tied or not) of log-probabilities at chosen ids, from the chunked,
// recomputing LogProbsAt and from log_softmax over the whole head: equal.
struct GradsOf {
  at::Tensor values;
  std::vector<at::Tensor> grads;
};
// chunk_rows < 0: the whole-head path; 0: LogProbsAt's own chunking (one
// chunk here: probabilities kept, no recompute); > 0: chunks of that many rows.
GradsOf RunLogProbs(Transformer& m, int64_t chunk_rows) {
  const std::vector<int64_t> seq = {4, 8, 15, 16, 23, 42, 1, 2, 3, 5, 8};
  const auto T = static_cast<int64_t>(seq.size());
  m.SetRequiresGrad(true);
  for (at::Tensor& p : m.parameters()) p.mutable_grad() = at::Tensor();
  const at::Tensor h = m.Hidden(at::tensor(seq, at::kLong).view({1, T}),
                                at::arange(T, at::kLong).view({1, T}),
                                at::ones({1, T}, at::kLong), nullptr)
                           .view({T, -1});
  // Three ids per row, the first repeated as the third (a support that holds
  // the sampled token).
  at::Tensor ids = at::remainder(at::arange(T * 3, at::kLong) * 7, 97);
  ids = ids.view({T, 3});
  ids.select(1, 2).copy_(ids.select(1, 0));
  const double temperature = 0.8;
  const at::Tensor lp =
      chunk_rows >= 0
          ? m.LogProbsAt(h, ids, temperature, chunk_rows)
          : at::log_softmax(m.Head(h) / temperature, -1).gather(1, ids);
  const at::Tensor coef =
      at::linspace(-1.0, 2.0, T * 3, at::kFloat).view({T, 3});
  (lp * coef).sum().backward();
  GradsOf out{lp.detach().clone(), {}};
  for (const at::Tensor& p : m.parameters())
    out.grads.push_back(p.grad().clone());
  m.SetRequiresGrad(false);
  return out;
}

TEST(Transformer, ChunkedLogProbsMatchTheWholeHeadInValueAndGradient) {
  for (const Variant& v : {Variants()[0], Variants()[1]}) {  // untied, tied
    auto m = MakeModel(v.config, 5);
    const GradsOf whole = RunLogProbs(*m, -1);
    for (int64_t chunk_rows : {3, 0}) {  // recomputed in 4 chunks; kept
      const GradsOf chunked = RunLogProbs(*m, chunk_rows);
      EXPECT_EQ(chunked.values.scalar_type(), at::kFloat);
      EXPECT_LT(RelErr(chunked.values, whole.values), 1e-5) << v.name;
      ASSERT_EQ(chunked.grads.size(), whole.grads.size());
      for (size_t i = 0; i < whole.grads.size(); ++i) {
        EXPECT_LT(RelErr(chunked.grads[i], whole.grads[i]), 1e-4)
            << v.name << " chunk_rows " << chunk_rows << " "
            << m->named_parameters()[i].first;
      }
    }
  }
}

TEST(Transformer, Bfloat16TracksFloat32) {
  const Variant v = Variants()[0];
  auto m = MakeModel(v.config, 8);
  testing::TempDir dir;
  ASSERT_OK(m->Save(dir.File("m")));
  ASSERT_OK_AND_ASSIGN(auto ck, checkpoint::HfCheckpoint::Open(dir.File("m")));
  ASSERT_OK_AND_ASSIGN(
      auto bf16, Transformer::Load(*ck, c10::Device(c10::kCPU), at::kBFloat16));
  EXPECT_EQ(bf16->dtype(), at::kBFloat16);
  const std::vector<int64_t> ids = {3, 1, 4, 1, 5, 9, 2, 6};
  const at::Tensor a = FullLogits(*m, ids), b = FullLogits(*bf16, ids);
  EXPECT_EQ(b.scalar_type(), at::kFloat);  // logits always float32
  EXPECT_LT(RelErr(b, a), 0.05);           // bf16 has 8 mantissa bits
  EXPECT_GT(RelErr(b, a), 0.0);            // and really ran in bf16
}

TEST(Transformer, SaveLoadRoundTripIsBitExact) {
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    const Variant v = Variants()[2];
    auto m =
        Transformer::InitRandom(v.config, 9, c10::Device(c10::kCPU), dtype);
    ASSERT_OK(m.status());
    testing::TempDir dir;
    ASSERT_OK((*m)->Save(dir.File("m")));
    ASSERT_OK_AND_ASSIGN(auto ck,
                         checkpoint::HfCheckpoint::Open(dir.File("m")));
    ASSERT_OK_AND_ASSIGN(auto back,
                         Transformer::Load(*ck, c10::Device(c10::kCPU), dtype));
    ASSERT_EQ(back->named_parameters().size(), (*m)->named_parameters().size());
    for (size_t i = 0; i < back->named_parameters().size(); ++i) {
      EXPECT_TRUE(at::equal(back->named_parameters()[i].second,
                            (*m)->named_parameters()[i].second))
          << back->named_parameters()[i].first;
    }
    EXPECT_EQ(ck->Find("lm_head.weight").file,
              nullptr);  // tied: saved once, as transformers
  }
}

TEST(Transformer, SaveShardsLargeModelsWithAnIndex) {
  const Variant v = Variants()[0];
  auto m = MakeModel(v.config, 1);
  testing::TempDir dir;
  checkpoint::WriteOptions o;
  o.max_shard_bytes = 40000;
  ASSERT_OK(m->Save(dir.File("m"), o));
  std::ifstream idx(dir.File("m/model.safetensors.index.json"));
  ASSERT_TRUE(idx.good());
  const auto index = nlohmann::json::parse(idx);
  std::set<std::string> shards;
  for (auto& [k, f] : index["weight_map"].items())
    shards.insert(f.get<std::string>());
  EXPECT_GT(shards.size(), 1u);
  EXPECT_EQ(
      *shards.begin(),
      "model-00001-of-0000" + std::to_string(shards.size()) + ".safetensors");
  ASSERT_OK_AND_ASSIGN(auto ck, checkpoint::HfCheckpoint::Open(dir.File("m")));
  ASSERT_OK_AND_ASSIGN(
      auto back, Transformer::Load(*ck, c10::Device(c10::kCPU), at::kFloat));
  const std::vector<int64_t> ids = {1, 2, 3};
  EXPECT_TRUE(at::equal(FullLogits(*back, ids), FullLogits(*m, ids)));
  // Saving again unsharded leaves one unambiguous layout behind.
  ASSERT_OK(m->Save(dir.File("m")));
  EXPECT_FALSE(
      std::ifstream(dir.File("m/model.safetensors.index.json")).good());
  ASSERT_OK(checkpoint::HfCheckpoint::Open(dir.File("m")).status());
}

// The fused path (at::scaled_dot_product_attention, LibTorch >= 2.1) against
// the explicit one on every architecture: a left-padded batch (rows whose
// queries see only padding included), then decoding against the KV cache,
// and the gradients of every parameter; float32 and bfloat16.
TEST(Transformer, SdpaAttentionEqualsTheExplicitPath) {
  if (!SdpaAvailable()) {
    EXPECT_THAT(ParseAttention("sdpa", c10::Device(c10::kCPU)).status(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::HasSubstr("LibTorch >= 2.1")));
    GTEST_SKIP() << "this LibTorch has no scaled_dot_product_attention";
  }
  for (const Variant& v : Variants()) {
    for (auto dtype : {at::kFloat, at::kBFloat16}) {
      auto m = MakeModel(v.config, 11);
      testing::TempDir dir;
      ASSERT_OK(m->Save(dir.File("m")));
      ASSERT_OK_AND_ASSIGN(auto ck,
                           checkpoint::HfCheckpoint::Open(dir.File("m")));
      ASSERT_OK_AND_ASSIGN(
          auto model, Transformer::Load(*ck, c10::Device(c10::kCPU), dtype));
      // Prefill of a left-padded batch, then 3 decoding steps.
      const at::Tensor ids =
          at::tensor({0, 0, 0, 7, 8, 9, 1, 2, 3, 4, 5, 6}, at::kLong)
              .view({2, 6});
      const at::Tensor mask =
          at::tensor({0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1}, at::kLong)
              .view({2, 6});
      const at::Tensor pos =
          at::tensor({0, 0, 0, 0, 1, 2, 0, 1, 2, 3, 4, 5}, at::kLong)
              .view({2, 6});
      auto run = [&](Attention a) {
        EXPECT_OK(model->set_attention(a));
        EXPECT_EQ(model->attention(), a);
        KvCache cache;
        std::vector<at::Tensor> out = {model->Forward(ids, pos, mask, &cache)};
        at::Tensor m2 = mask, p2 = pos.select(1, 5).unsqueeze(1);
        for (int step = 0; step < 3; ++step) {
          m2 = at::cat({m2, at::ones({2, 1}, at::kLong)}, 1);
          p2 = p2 + 1;
          out.push_back(model->Forward(at::full({2, 1}, 10 + step, at::kLong),
                                       p2, m2, &cache));
        }
        // Gradients through a full forward (no cache), padding included.
        model->SetRequiresGrad(true);
        for (at::Tensor& p : model->parameters())
          p.mutable_grad() = at::Tensor();
        const at::Tensor logits = model->Forward(ids, pos, mask, nullptr);
        (at::log_softmax(logits, -1).select(2, 3) * mask.to(at::kFloat))
            .sum()
            .backward();
        std::vector<at::Tensor> grads;
        for (const at::Tensor& p : model->parameters())
          grads.push_back(p.grad().to(at::kFloat).clone());
        model->SetRequiresGrad(false);
        return std::make_pair(at::cat(out, 1).to(at::kFloat), grads);
      };
      const auto [explicit_logits, explicit_grads] = run(Attention::kExplicit);
      const auto [sdpa_logits, sdpa_grads] = run(Attention::kSdpa);
      // Real rows only: a padded query's output is never used.
      const at::Tensor real = at::cat({mask, at::ones({2, 3}, at::kLong)}, 1)
                                  .to(at::kBool)
                                  .unsqueeze(-1);
      const double tol = dtype == at::kFloat ? 1e-5 : 0.05;
      EXPECT_LT(RelErr(sdpa_logits.masked_fill(real.logical_not(), 0),
                       explicit_logits.masked_fill(real.logical_not(), 0)),
                tol)
          << v.name << " " << dtype;
      ASSERT_EQ(sdpa_grads.size(), explicit_grads.size());
      // Relative to the parameter's gradient, or to 1% of the largest one
      // where a gradient is zero in exact arithmetic (a key bias shifts every
      // score of a query equally: softmax ignores it) and only noise remains.
      double largest = 0;
      for (const at::Tensor& g : explicit_grads)
        largest = std::max(largest, g.abs().max().item<double>());
      for (size_t i = 0; i < sdpa_grads.size(); ++i) {
        const double scale = std::max(
            explicit_grads[i].abs().max().item<double>(), 0.01 * largest);
        EXPECT_LT(
            (sdpa_grads[i] - explicit_grads[i]).abs().max().item<double>() /
                scale,
            dtype == at::kFloat ? 1e-4 : 0.1)
            << v.name << " " << dtype << " "
            << model->named_parameters()[i].first;
      }
    }
  }
}

TEST(Transformer, AttentionNamesParse) {
  const c10::Device cpu(c10::kCPU);
  ASSERT_OK_AND_ASSIGN(Attention a, ParseAttention("explicit", cpu));
  EXPECT_EQ(a, Attention::kExplicit);
  ASSERT_OK_AND_ASSIGN(a, ParseAttention("auto", cpu));
  EXPECT_EQ(a, Attention::kExplicit);  // measured faster on CPU
  EXPECT_STREQ(AttentionName(Attention::kSdpa), "sdpa");
  EXPECT_THAT(ParseAttention("flash", cpu).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("'flash' is not auto")));
}

}  // namespace
}  // namespace cmdistill::model
