#include "common/model/transformer.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard (not in ATen.h on 2.x)
#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/model/threads.h"
#include "common/status/status_macros.h"

// at::scaled_dot_product_attention has its `scale` argument from 2.1 on.
#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define CMDISTILL_HAS_SDPA 1
#else
#define CMDISTILL_HAS_SDPA 0
#endif

namespace cmdistill::model {
namespace {

at::TensorOptions Opts(c10::Device d, c10::ScalarType t) {
  return at::TensorOptions().device(d).dtype(t);
}

c10::ScalarType ToScalarType(checkpoint::DType d) {
  switch (d) {
    case checkpoint::DType::kBF16:
      return at::kBFloat16;
    case checkpoint::DType::kF16:
      return at::kHalf;
    default:
      return at::kFloat;
  }
}

// Rotary inverse frequencies [D/2], with llama3 scaling when configured (as
// transformers' _compute_llama3_parameters).
at::Tensor InverseFrequencies(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<double> inv(half);
  for (int64_t i = 0; i < half; ++i) {
    inv[i] =
        1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / c.head_dim);
  }
  if (c.rope_scaling.type == "llama3") {
    const auto& r = c.rope_scaling;
    const double old_len =
        static_cast<double>(r.original_max_position_embeddings);
    const double low_wavelen = old_len / r.low_freq_factor;
    const double high_wavelen = old_len / r.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2 * M_PI / f;
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        f /= r.factor;
        continue;
      }
      const double smooth = (old_len / wavelen - r.low_freq_factor) /
                            (r.high_freq_factor - r.low_freq_factor);
      f = (1 - smooth) * f / r.factor + smooth * f;
    }
  }
  return at::tensor(inv, at::kDouble).to(at::kFloat);
}

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor normed =
      xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t h = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}

// Rows up to which a float32 CPU matmul without autograd runs as one
// matrix-vector product per row: OpenBLAS's sgemm packs the whole weight
// matrix on every call, and below 16 rows it runs on one thread whatever the
// count, while sgemv uses them all. Measured on the model's shapes
// (docs/benchmarks.md, "few rows"): at 1 thread per-row is 2.3-3.0x faster
// at 2-3 rows, 1.05-1.25x at 4, 0.67-0.87x at 8; at 2 threads 1.2-1.7x
// faster at 8 rows and 1.7x at 12, 0.46-0.68x at 16. So: 4 rows per thread
// of the calling scope, at most 12.
int64_t MatvecRows() {
  return std::min<int64_t>(12, 4 * at::get_num_threads());
}

// x @ w^T (+ b). One row (batch-1 decode) goes through a matrix-vector
// product: sgemm with M = 1 reads the weights at a fraction of the memory
// bandwidth that sgemv reaches; so do up to MatvecRows() rows of inference
// (a small decode batch, or one that has shrunk to a few sequences).
at::Tensor Linear(const at::Tensor& x, const at::Tensor& w,
                  const at::Tensor& b = at::Tensor()) {
  const int64_t rows = x.size(-1) > 0 ? x.numel() / x.size(-1) : 0;
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = w.size(0);
  if (rows == 1) {
    at::Tensor y = b.defined() ? at::addmv(b, w, x.reshape({-1}))
                               : at::mv(w, x.reshape({-1}));
    return y.view(shape);
  }
  if (rows > 1 && x.device().is_cpu() && rows <= MatvecRows() &&
      x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat &&
      !at::GradMode::is_enabled()) {
    const at::Tensor x2 = x.reshape({rows, x.size(-1)});
    at::Tensor y = at::empty({rows, w.size(0)}, x.options());
    for (int64_t r = 0; r < rows; ++r) {
      at::Tensor yr = y.select(0, r);
      if (b.defined()) {
        at::addmv_out(yr, b, w, x2.select(0, r));
      } else {
        at::mv_out(yr, w, x2.select(0, r));
      }
    }
    return y.view(shape);
  }
  return b.defined() ? at::linear(x, w, b) : at::linear(x, w);
}

// log_softmax(hidden @ weight^T / temperature) gathered at ids, chunked over
// rows, with backward recomputing each chunk's logits (see LogProbsAt).
// d lp[n, j] / d z[n, v] = [v == ids[n, j]] - p[n, v], so for upstream g:
// grad_z = scatter_add(g at ids) - p * sum_j g, divided by the temperature.
struct ChunkedLogProbs : public torch::autograd::Function<ChunkedLogProbs> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx,
                            const at::Tensor& hidden, const at::Tensor& weight,
                            const at::Tensor& ids, double temperature,
                            int64_t chunk) {
    const int64_t N = hidden.size(0);
    at::Tensor out =
        at::empty({N, ids.size(1)}, hidden.options().dtype(at::kFloat));
    at::Tensor lse = at::empty({N}, hidden.options().dtype(at::kFloat));
    for (int64_t c0 = 0; c0 < N; c0 += chunk) {
      const int64_t n = std::min(chunk, N - c0);
      const at::Tensor z =
          at::mm(hidden.narrow(0, c0, n), weight.t()).to(at::kFloat) /
          temperature;
      const at::Tensor l = at::logsumexp(z, -1);
      lse.narrow(0, c0, n).copy_(l);
      out.narrow(0, c0, n).copy_(z.gather(1, ids.narrow(0, c0, n)) -
                                 l.unsqueeze(1));
      // One chunk holds every row (a small vocabulary or a short batch): keep
      // its probabilities (within the chunk's memory budget) instead of
      // recomputing the head in backward.
      if (n == N) ctx->saved_data["probs"] = (z - l.unsqueeze(1)).exp_();
    }
    ctx->save_for_backward({hidden, weight, ids, lse});
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["chunk"] = chunk;
    return out;
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &hidden = saved[0], &weight = saved[1], &ids = saved[2],
                     &lse = saved[3];
    const double temperature = ctx->saved_data["temperature"].toDouble();
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const at::Tensor g = grads[0].to(at::kFloat);
    const int64_t N = hidden.size(0);
    at::Tensor grad_hidden = at::empty_like(hidden);
    // The weight's gradient accumulates over chunks in float32 whatever the
    // weight's dtype.
    const bool kept = ctx->saved_data.count("probs") > 0;
    at::Tensor grad_weight;
    if (ctx->needs_input_grad(1) && !kept) {
      grad_weight =
          at::zeros(weight.sizes(), weight.options().dtype(at::kFloat));
    }
    for (int64_t c0 = 0; c0 < N; c0 += chunk) {
      const int64_t n = std::min(chunk, N - c0);
      const at::Tensor h = hidden.narrow(0, c0, n);
      const at::Tensor gc = g.narrow(0, c0, n);
      // p * (-sum_j g): out of place where p was kept, so that a second
      // backward (retain_graph) sees it unchanged.
      at::Tensor gz =
          kept ? ctx->saved_data["probs"].toTensor() *
                     (-gc.sum(1, /*keepdim=*/true))
               : (at::mm(h, weight.t()).to(at::kFloat) / temperature -
                  lse.narrow(0, c0, n).unsqueeze(1))
                     .exp_()
                     .mul_(-gc.sum(1, /*keepdim=*/true));
      gz.scatter_add_(1, ids.narrow(0, c0, n), gc).div_(temperature);  // [n, V]
      grad_hidden.narrow(0, c0, n).copy_(
          at::mm(gz.to(weight.scalar_type()), weight));
      if (ctx->needs_input_grad(1)) {
        if (kept) {
          grad_weight = at::mm(gz.t(), h.to(at::kFloat));
        } else {
          grad_weight.addmm_(gz.t(), h.to(at::kFloat));
        }
      }
    }
    return {grad_hidden,
            grad_weight.defined() ? grad_weight.to(weight.scalar_type())
                                  : at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

int64_t LogitChunkRows(c10::Device device, int64_t vocab, int64_t value_bytes) {
  const int64_t budget =
      device.is_cpu() ? int64_t{30} << 20 : int64_t{256} << 20;
  return std::max<int64_t>(1, budget / (vocab * value_bytes));
}

absl::StatusOr<c10::Device> ParseDevice(const std::string& device) {
  if (device == "auto") {
    return at::hasCUDA() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  }
  if (device == "cpu") return c10::Device(c10::kCPU);
  if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
    if (!at::hasCUDA()) {
      return absl::FailedPreconditionError(
          absl::StrCat("device '", device,
                       "' asked for, but this LibTorch has no CUDA device"));
    }
    int index = 0;
    if (device.size() > 5 && !absl::SimpleAtoi(device.substr(5), &index)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad device '", device, "'"));
    }
    return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device '", device, "' is not auto, cpu, cuda or cuda:N"));
}

absl::StatusOr<c10::ScalarType> ParseDType(const std::string& dtype) {
  if (dtype == "float32" || dtype == "fp32") return at::kFloat;
  if (dtype == "bfloat16" || dtype == "bf16") return at::kBFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("dtype '", dtype, "' is not float32 or bfloat16"));
}

bool SdpaAvailable() { return CMDISTILL_HAS_SDPA != 0; }

const char* AttentionName(Attention a) {
  return a == Attention::kSdpa ? "sdpa" : "explicit";
}

absl::StatusOr<Attention> ParseAttention(const std::string& name,
                                         c10::Device device) {
  if (name == "explicit") return Attention::kExplicit;
  if (name == "sdpa") {
    if (!SdpaAvailable()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "attention 'sdpa' needs LibTorch >= 2.1; this build has ",
          TORCH_VERSION));
    }
    return Attention::kSdpa;
  }
  if (name == "auto" || name.empty()) {
    return SdpaAvailable() && device.is_cuda() ? Attention::kSdpa
                                               : Attention::kExplicit;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("attention '", name, "' is not auto, explicit or sdpa"));
}

void KvCache::SelectRows(const at::Tensor& rows) {
  for (auto* v : {&keys, &values}) {
    for (at::Tensor& t : *v) t = t.index_select(0, rows);
  }
}

Transformer::Transformer(ModelConfig config, c10::Device device,
                         c10::ScalarType dtype)
    : config_(std::move(config)), device_(device), dtype_(dtype) {
  const char* env = std::getenv("CMDISTILL_ATTENTION");
  auto a = ParseAttention(env != nullptr ? env : "auto", device_);
  if (!a.ok()) a = ParseAttention("auto", device_);
  attention_ = *a;
}

absl::Status Transformer::set_attention(Attention a) {
  if (a == Attention::kSdpa && !SdpaAvailable()) {
    return ParseAttention("sdpa", device_).status();
  }
  attention_ = a;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Transformer>> Transformer::Load(
    const checkpoint::HfCheckpoint& ck, c10::Device device,
    c10::ScalarType dtype) {
  auto m =
      std::unique_ptr<Transformer>(new Transformer(ck.config(), device, dtype));
  try {
    for (const auto& [name, shape] : checkpoint::ExpectedTensors(ck.config())) {
      const auto e = ck.Find(
          name);  // presence and shape were checked by HfCheckpoint::Open
      const auto bytes = e.file->Data(*e.info);
      // from_blob over the memory map, then one copy into the target dtype and
      // device.
      at::Tensor t =
          at::from_blob(const_cast<uint8_t*>(bytes.data()), shape,
                        at::TensorOptions().dtype(ToScalarType(e.info->dtype)))
              .to(Opts(device, dtype), /*non_blocking=*/false, /*copy=*/true);
      m->params_.emplace_back(name, t);
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(
        ck.dir(), ": loading weights: ", e.what_without_backtrace()));
  }
  m->Bind();
  return m;
}

absl::StatusOr<std::unique_ptr<Transformer>> Transformer::InitRandom(
    const ModelConfig& config, uint64_t seed, c10::Device device,
    c10::ScalarType dtype) {
  auto m = std::unique_ptr<Transformer>(new Transformer(config, device, dtype));
  try {
    at::Generator gen = at::detail::createCPUGenerator(seed);
    for (const auto& [name, shape] : checkpoint::ExpectedTensors(config)) {
      at::Tensor t;
      const bool is_norm = name.find("norm.weight") != std::string::npos;
      const bool is_bias =
          name.size() > 5 && name.substr(name.size() - 5) == ".bias";
      if (is_norm) {
        t = at::ones(shape, at::kFloat);
      } else if (is_bias) {
        t = at::zeros(shape, at::kFloat);
      } else {
        t = at::normal(0.0, 0.02, shape, gen,
                       at::TensorOptions().dtype(at::kFloat));
      }
      m->params_.emplace_back(name, t.to(Opts(device, dtype)));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("random init: ", e.what_without_backtrace()));
  }
  m->Bind();
  return m;
}

void Transformer::Bind() {
  std::map<std::string, at::Tensor> p(params_.begin(), params_.end());
  auto get = [&](const std::string& n) {
    auto it = p.find(n);
    return it == p.end() ? at::Tensor() : it->second;
  };
  embed_ = get("model.embed_tokens.weight");
  final_norm_ = get("model.norm.weight");
  lm_head_ = config_.tie_word_embeddings ? embed_ : get("lm_head.weight");
  layers_.clear();
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    const std::string pre = absl::StrCat("model.layers.", l, ".");
    Layer L;
    L.input_norm = get(pre + "input_layernorm.weight");
    L.post_norm = get(pre + "post_attention_layernorm.weight");
    L.q = get(pre + "self_attn.q_proj.weight");
    L.k = get(pre + "self_attn.k_proj.weight");
    L.v = get(pre + "self_attn.v_proj.weight");
    L.o = get(pre + "self_attn.o_proj.weight");
    L.q_bias = get(pre + "self_attn.q_proj.bias");
    L.k_bias = get(pre + "self_attn.k_proj.bias");
    L.v_bias = get(pre + "self_attn.v_proj.bias");
    L.o_bias = get(pre + "self_attn.o_proj.bias");
    L.q_norm = get(pre + "self_attn.q_norm.weight");
    L.k_norm = get(pre + "self_attn.k_norm.weight");
    L.gate = get(pre + "mlp.gate_proj.weight");
    L.up = get(pre + "mlp.up_proj.weight");
    L.down = get(pre + "mlp.down_proj.weight");
    layers_.push_back(L);
  }
  inv_freq_ = InverseFrequencies(config_).to(device_);
}

absl::Status Transformer::CheckIds(
    const std::vector<std::vector<int32_t>>& sequences) const {
  for (size_t s = 0; s < sequences.size(); ++s) {
    for (size_t t = 0; t < sequences[s].size(); ++t) {
      const int32_t id = sequences[s][t];
      if (id < 0 || id >= config_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "sequence ", s, " position ", t, ": token id ", id,
            " is outside the vocabulary [0, ", config_.vocab_size, ")"));
      }
    }
    if (static_cast<int64_t>(sequences[s].size()) >
        config_.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sequence ", s, " has ", sequences[s].size(),
          " tokens; the model allows ", config_.max_position_embeddings));
    }
  }
  return absl::OkStatus();
}

at::Tensor Transformer::Forward(const at::Tensor& input_ids,
                                const at::Tensor& positions,
                                const at::Tensor& attention_mask,
                                KvCache* cache) const {
  return Head(Hidden(input_ids, positions, attention_mask, cache));
}

at::Tensor Transformer::Head(const at::Tensor& hidden) const {
  return Linear(hidden, lm_head_).to(at::kFloat);
}

at::Tensor Transformer::LogProbsAt(const at::Tensor& hidden,
                                   const at::Tensor& ids, double temperature,
                                   int64_t chunk_rows) const {
  const int64_t chunk =
      chunk_rows > 0 ? chunk_rows : LogitChunkRows(device_, lm_head_.size(0));
  return ChunkedLogProbs::apply(hidden, lm_head_, ids, temperature, chunk);
}

at::Tensor Transformer::Hidden(const at::Tensor& input_ids,
                               const at::Tensor& positions,
                               const at::Tensor& attention_mask,
                               KvCache* cache) const {
  const ModelConfig& c = config_;
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  const ComputeThreadsScope threads(WorthThreads(c, B * T));
  const int64_t P = cache != nullptr ? cache->length() : 0;
  const int64_t H = c.num_attention_heads, Hkv = c.num_key_value_heads,
                D = c.head_dim;
  at::Tensor x = at::embedding(embed_, input_ids);  // [B, T, hidden]

  // Rotary tables for these positions: cos/sin [B, 1, T, D].
  const at::Tensor freqs = positions.to(at::kFloat).unsqueeze(-1) *
                           inv_freq_.unsqueeze(0).unsqueeze(0);
  const at::Tensor emb = at::cat({freqs, freqs}, -1);
  const at::Tensor cos = emb.cos().to(dtype_).unsqueeze(1);
  const at::Tensor sin = emb.sin().to(dtype_).unsqueeze(1);

  // Additive mask [B, 1, T, P + T]: causal over absolute slots, and keys must
  // be real tokens.
  const at::Tensor q_slot =
      at::arange(P, P + T, at::TensorOptions().device(device_)).view({T, 1});
  const at::Tensor k_slot =
      at::arange(0, P + T, at::TensorOptions().device(device_)).view({1, -1});
  const at::Tensor allowed =
      (k_slot <= q_slot).unsqueeze(0) &
      attention_mask.to(at::kBool).unsqueeze(1);  // [B,T,P+T]
  const float neg = std::numeric_limits<float>::lowest();
  const at::Tensor bias =
      at::zeros({B, 1, T, P + T},
                at::TensorOptions().device(device_).dtype(at::kFloat))
          .masked_fill(allowed.logical_not().unsqueeze(1), neg);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  at::Tensor sdpa_mask;  // made at the first layer when attention_ is kSdpa

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const Layer& L = layers_[l];
    const at::Tensor h = RmsNorm(x, L.input_norm, c.rms_norm_eps);
    at::Tensor q = Linear(h, L.q, L.q_bias).view({B, T, H, D}).transpose(1, 2);
    at::Tensor k =
        Linear(h, L.k, L.k_bias).view({B, T, Hkv, D}).transpose(1, 2);
    at::Tensor v =
        Linear(h, L.v, L.v_bias).view({B, T, Hkv, D}).transpose(1, 2);
    if (c.qk_norm) {
      q = RmsNorm(q, L.q_norm, c.rms_norm_eps);
      k = RmsNorm(k, L.k_norm, c.rms_norm_eps);
    }
    q = q * cos + RotateHalf(q) * sin;
    k = k * cos + RotateHalf(k) * sin;
    if (cache != nullptr) {
      if (static_cast<int64_t>(cache->keys.size()) <= l) {
        const int64_t cap = std::max<int64_t>(P + T, 64);
        cache->keys.push_back(at::empty({B, Hkv, cap, D}, k.options()));
        cache->values.push_back(at::empty({B, Hkv, cap, D}, v.options()));
      }
      at::Tensor& kb = cache->keys[l];
      at::Tensor& vb = cache->values[l];
      if (kb.size(2) < P + T) {  // grow geometrically
        const int64_t cap = std::max<int64_t>(P + T, 2 * kb.size(2));
        at::Tensor nk = at::empty({B, Hkv, cap, D}, kb.options());
        at::Tensor nv = at::empty({B, Hkv, cap, D}, vb.options());
        nk.narrow(2, 0, P).copy_(kb.narrow(2, 0, P));
        nv.narrow(2, 0, P).copy_(vb.narrow(2, 0, P));
        kb = nk;
        vb = nv;
      }
      kb.narrow(2, P, T).copy_(k);
      vb.narrow(2, P, T).copy_(v);
      k = kb.narrow(2, 0, P + T);
      v = vb.narrow(2, 0, P + T);
    }
    const int64_t rep = H / Hkv;
    at::Tensor attn;  // [B, T, H * D]
#if CMDISTILL_HAS_SDPA
    if (attention_ == Attention::kSdpa) {
      // The same grouping as below (rep query heads of a key head as rep*T
      // rows, so no repeated keys on any LibTorch 2.x), the mask tiled to
      // those rows, in the model's dtype (the kernels accumulate in float32).
      if (!sdpa_mask.defined()) {
        sdpa_mask = bias.view({B, 1, 1, T, P + T})
                        .expand({B, 1, rep, T, P + T})
                        .reshape({B, 1, rep * T, P + T})
                        .to(dtype_);
      }
      attn = at::scaled_dot_product_attention(
          q.reshape({B, Hkv, rep * T, D}), k, v, sdpa_mask, 0.0, false, scale);
    }
#endif
    if (!attn.defined()) {
      // Grouped-query attention without materialising repeated keys and values,
      // and without broadcasting them: the rep = H/Hkv query heads of a key
      // head are stacked as rep*T rows against its [P+T, D] keys, so each
      // matmul is a plain batched GEMM over B*Hkv (a broadcast [.., rep, ..] x
      // [.., 1, ..] matmul copies the whole cache rep times per layer and
      // step). Scores and softmax in float32, whatever the weights' dtype.
      const at::Tensor qg =
          q.to(at::kFloat).reshape({B, Hkv, rep * T, D});  // [B, Hkv, rep*T, D]
      const at::Tensor kf = k.to(at::kFloat);              // [B, Hkv, P+T, D]
      const at::Tensor scores =
          at::matmul(qg, kf.transpose(-2, -1)).view({B, Hkv, rep, T, P + T}) *
          scale;
      const at::Tensor probs =
          at::softmax(scores + bias.view({B, 1, 1, T, P + T}), -1)
              .to(dtype_)
              .view({B, Hkv, rep * T, P + T});
      attn = at::matmul(probs, v);  // [B, Hkv, rep*T, D]
    }
    attn = attn.reshape({B, H, T, D}).transpose(1, 2).reshape({B, T, H * D});
    x = x + Linear(attn, L.o, L.o_bias);
    const at::Tensor h2 = RmsNorm(x, L.post_norm, c.rms_norm_eps);
    x = x + Linear(at::silu(Linear(h2, L.gate)) * Linear(h2, L.up), L.down);
  }
  if (cache != nullptr) cache->filled = P + T;
  return RmsNorm(x, final_norm_, c.rms_norm_eps);
}

std::vector<at::Tensor> Transformer::parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& [n, t] : params_) out.push_back(t);
  return out;
}

void Transformer::SetRequiresGrad(bool requires_grad) {
  for (auto& [n, t] : params_) t.requires_grad_(requires_grad);
}

int64_t Transformer::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : params_) n += t.numel();
  return n;
}

absl::StatusOr<std::string> Transformer::SerializeWeights() const {
  std::vector<at::Tensor> host;
  std::vector<checkpoint::TensorToWrite> out;
  try {
    for (const auto& [name, t] : params_)
      host.push_back(t.detach().to(at::kCPU).contiguous());
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("snapshot: ", e.what_without_backtrace()));
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    checkpoint::TensorToWrite w;
    w.name = params_[i].first;
    w.dtype = host[i].scalar_type() == at::kBFloat16 ? checkpoint::DType::kBF16
                                                     : checkpoint::DType::kF32;
    w.shape.assign(host[i].sizes().begin(), host[i].sizes().end());
    w.data = absl::Span<const uint8_t>(
        static_cast<const uint8_t*>(host[i].data_ptr()), host[i].nbytes());
    out.push_back(w);
  }
  return checkpoint::SerializeSafetensors(out);
}

// Parses and checks a policy snapshot against the model: every parameter
// present with its shape, in a floating dtype. `data_offset` is where the
// tensors' bytes begin.
absl::StatusOr<std::map<std::string, checkpoint::TensorInfo>>
Transformer::CheckSnapshot(const std::string& buffer,
                           size_t* data_offset) const {
  const absl::Span<const uint8_t> bytes(
      reinterpret_cast<const uint8_t*>(buffer.data()), buffer.size());
  CMDISTILL_ASSIGN_OR_RETURN(
      auto infos, checkpoint::ParseSafetensorsBuffer(bytes, "policy snapshot",
                                                     data_offset));
  std::map<std::string, checkpoint::TensorInfo> by_name;
  for (auto& i : infos) by_name[i.name] = std::move(i);
  for (const auto& [name, t] : params_) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("policy snapshot lacks '", name, "'"));
    }
    if (std::vector<int64_t>(t.sizes().begin(), t.sizes().end()) !=
        it->second.shape) {
      return absl::InvalidArgumentError(
          absl::StrCat("policy snapshot: '", name, "' has the wrong shape"));
    }
    const auto dt = it->second.dtype;
    if (dt != checkpoint::DType::kF32 && dt != checkpoint::DType::kBF16) {
      return absl::InvalidArgumentError(
          absl::StrCat("policy snapshot: '", name, "' has dtype ",
                       checkpoint::DTypeName(dt)));
    }
  }
  return by_name;
}

absl::Status Transformer::LoadWeights(const std::string& buffer) {
  return ApplySnapshot(buffer, nullptr);
}

absl::Status Transformer::AdoptWeights(
    std::shared_ptr<const std::string> buffer) {
  const std::string& bytes = *buffer;
  return ApplySnapshot(bytes, std::move(buffer));
}

// Checks everything first, then changes the weights: a bad snapshot changes
// nothing. With `keep` (== &buffer), on CPU in the model's dtype, the
// parameters become views of it (each holding it alive; the previous storage
// is released when the last parameter moves off it); otherwise they copy.
absl::Status Transformer::ApplySnapshot(
    const std::string& buffer, std::shared_ptr<const std::string> keep) {
  size_t data_offset = 0;
  CMDISTILL_ASSIGN_OR_RETURN(auto by_name, CheckSnapshot(buffer, &data_offset));
  const auto* base =
      reinterpret_cast<const uint8_t*>(buffer.data()) + data_offset;
  bool in_place = keep != nullptr;
  for (const auto& [name, t] : params_) {
    const checkpoint::TensorInfo& info = by_name.at(name);
    in_place =
        in_place && t.device().is_cpu() &&
        ToScalarType(info.dtype) == t.scalar_type() &&
        reinterpret_cast<uintptr_t>(base + info.begin) % t.element_size() == 0;
  }
  try {
    at::NoGradGuard no_grad;
    for (auto& [name, t] : params_) {
      const checkpoint::TensorInfo& info = by_name.at(name);
      auto* data = const_cast<uint8_t*>(base + info.begin);
      if (in_place) {
        t.set_data(at::from_blob(
            data, info.shape, [keep](void*) {}, t.options()));
      } else {
        t.copy_(
            at::from_blob(data, info.shape,
                          at::TensorOptions().dtype(ToScalarType(info.dtype))));
      }
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("loading snapshot: ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

absl::Status Transformer::Save(const std::string& dir,
                               const checkpoint::WriteOptions& options) const {
  ModelConfig cfg = config_;
  cfg.torch_dtype = dtype_ == at::kBFloat16 ? "bfloat16" : "float32";
  std::vector<at::Tensor> host;
  std::vector<checkpoint::TensorToWrite> out;
  try {
    for (const auto& [name, t] : params_) {
      host.push_back(t.detach().to(at::kCPU).contiguous());
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("saving: ", e.what_without_backtrace()));
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    const at::Tensor& h = host[i];
    checkpoint::TensorToWrite w;
    w.name = params_[i].first;
    w.dtype = h.scalar_type() == at::kBFloat16 ? checkpoint::DType::kBF16
                                               : checkpoint::DType::kF32;
    w.shape.assign(h.sizes().begin(), h.sizes().end());
    w.data = absl::Span<const uint8_t>(
        static_cast<const uint8_t*>(h.data_ptr()), h.nbytes());
    out.push_back(w);
  }
  return checkpoint::WriteHfCheckpoint(dir, cfg, out, options);
}

}  // namespace cmdistill::model
