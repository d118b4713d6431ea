// Generation and scoring on the transformer; the one LibTorch TU behind
// language_model.h.
#include "common/model/language_model.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard (not in ATen.h on 2.x)
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/model/threads.h"
#include "common/model/transformer.h"
#include "common/status/status_macros.h"

namespace cmdistill::model {
namespace {

constexpr float kTailFloor = -1e4f;
// A scoring pass on CPU: at most the tokens whose logits would fill this
// (see Score).
constexpr int64_t kCpuPassLogitBytes = int64_t{16} << 20;

// Keeps the host tensors' memory in the process between steps. glibc serves
// allocations above its mmap threshold (128 KiB, growing only as blocks are
// freed) with fresh mmaps and gives freed heap tops back to the OS, so every
// training step and forward pass paid page faults on its activations again
// (13-15% of a training step in `perf`: exc_page_fault under memset and
// sgemm's buffers). A fixed 32 MiB threshold (glibc's maximum) and a 1 GiB
// trim threshold keep them; the cost is that the process holds its peak.
// Once per process, at the first model.
void KeepTensorMemory() {
  static const bool done = [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    return true;
  }();
  (void)done;
}

struct Padded {
  at::Tensor ids, mask, positions;  // [B, T] int64
  std::vector<int64_t> lengths;
  int64_t width = 0;
};

// Left-pads `seqs` to a common width on `device`; padding ids are 0 with mask
// 0.
Padded LeftPad(const std::vector<const std::vector<int32_t>*>& seqs,
               c10::Device device) {
  Padded p;
  for (const auto* s : seqs)
    p.width = std::max<int64_t>(p.width, static_cast<int64_t>(s->size()));
  const int64_t B = static_cast<int64_t>(seqs.size());
  std::vector<int64_t> ids(static_cast<size_t>(B * p.width), 0),
      mask(ids.size(), 0), pos(ids.size(), 0);
  for (int64_t b = 0; b < B; ++b) {
    const auto& s = *seqs[b];
    const int64_t n = static_cast<int64_t>(s.size()), pad = p.width - n;
    p.lengths.push_back(n);
    for (int64_t t = 0; t < n; ++t) {
      ids[b * p.width + pad + t] = s[t];
      mask[b * p.width + pad + t] = 1;
      pos[b * p.width + pad + t] = t;
    }
  }
  auto make = [&](std::vector<int64_t>& v) {
    return at::tensor(v, at::kLong).view({B, p.width}).to(device);
  };
  p.ids = make(ids);
  p.mask = make(mask);
  p.positions = make(pos);
  return p;
}

template <typename T>
std::vector<T> ToVector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU).contiguous();
  return std::vector<T>(c.data_ptr<T>(), c.data_ptr<T>() + c.numel());
}

template <typename T>
void Append(std::vector<T>* to, const std::vector<T>& more) {
  to->insert(to->end(), more.begin(), more.end());
}

// Appends the scores of completion tokens [t0, t0 + n) of `in` to `s`, from
// their log-probabilities `lp` [n, V].
void AppendScores(const at::Tensor& lp, const ScoreInput& in, int64_t t0,
                  const ScoreOptions& o, SequenceScore* s) {
  const int64_t n = lp.size(0), V = lp.size(1);
  const c10::Device dev = lp.device();
  const at::Tensor comp =
      at::tensor(std::vector<int64_t>(in.completion_ids.begin() + t0,
                                      in.completion_ids.begin() + t0 + n),
                 at::kLong)
          .to(dev);
  Append(&s->sampled_logprobs,
         ToVector<float>(lp.gather(-1, comp.unsqueeze(-1)).squeeze(-1)));
  if (in.support_k > 0) {
    const int64_t K = in.support_k;
    const at::Tensor sup =
        at::tensor(std::vector<int64_t>(in.support_ids.begin() + t0 * K,
                                        in.support_ids.begin() + (t0 + n) * K),
                   at::kLong)
            .view({n, K})
            .to(dev);
    Append(&s->support_logprobs, ToVector<float>(lp.gather(-1, sup)));
    const at::Tensor outside =
        lp.scatter(-1, sup, -std::numeric_limits<float>::infinity());
    Append(&s->tail_logprobs,
           ToVector<float>(at::logsumexp(outside, -1).clamp_min(kTailFloor)));
  }
  if (o.top_k > 0) {
    auto [vals, ids] = lp.topk(std::min<int64_t>(o.top_k, V), -1);
    Append(&s->top_logprobs, ToVector<float>(vals));
    for (int64_t id : ToVector<int64_t>(ids))
      s->top_ids.push_back(static_cast<int32_t>(id));
  }
}

// One decoding step's sampling for `rows` [n, V] of logits: the token (`next`
// [n], on the logits' device), its log-probability under the policy before
// truncation (`tok_lp`), and with K > 0 the support (`sup_ids`, `sup_lp` [n,
// K], holding the sampled token).
void SampleStep(const at::Tensor& rows, const SamplingOptions& o, int64_t K,
                at::Generator& gen, at::Tensor* next_out,
                at::Tensor* tok_lp_out, at::Tensor* sup_ids_out,
                at::Tensor* sup_lp_out) {
  const c10::Device dev = rows.device();
  const int64_t V = rows.size(-1);
  const bool greedy = o.temperature == 0;
  const at::Tensor scaled = greedy ? rows : rows / o.temperature;
  const at::Tensor logp =
      at::log_softmax(scaled, -1);  // the policy, before truncation
  at::Tensor next;
  if (greedy) {
    next = scaled.argmax(-1);
  } else {
    at::Tensor filtered = scaled.clone();
    const float ninf = -std::numeric_limits<float>::infinity();
    if (o.top_k > 0 && o.top_k < V) {
      const at::Tensor kth =
          std::get<0>(filtered.topk(o.top_k, -1)).narrow(-1, o.top_k - 1, 1);
      filtered.masked_fill_(filtered < kth, ninf);
    }
    if (o.top_p < 1) {
      auto [sorted, idx] = filtered.sort(-1, /*descending=*/true);
      const at::Tensor p = at::softmax(sorted, -1);
      const at::Tensor before =
          p.cumsum(-1) - p;  // mass of strictly more likely tokens
      const at::Tensor drop = before > o.top_p;
      filtered.scatter_(-1, idx, sorted.masked_fill(drop, ninf));
    }
    const at::Tensor probs =
        at::softmax(filtered, -1).to(at::kCPU).to(at::kDouble);
    next = at::multinomial(probs, 1, /*replacement=*/false, gen)
               .squeeze(-1)
               .to(dev);
  }
  const at::Tensor tok_lp = logp.gather(-1, next.unsqueeze(-1)).squeeze(-1);
  at::Tensor sup_ids, sup_lp;
  if (K > 0) {
    std::tie(sup_lp, sup_ids) = logp.topk(K, -1);
    // Make sure the sampled token is in the support: replace the K-th entry
    // if not.
    const at::Tensor present = (sup_ids == next.unsqueeze(-1)).any(-1);
    const at::Tensor last_col_id =
        at::where(present, sup_ids.select(-1, K - 1), next);
    const at::Tensor last_col_lp =
        at::where(present, sup_lp.select(-1, K - 1), tok_lp);
    sup_ids.select(-1, K - 1).copy_(last_col_id);
    sup_lp.select(-1, K - 1).copy_(last_col_lp);
  }
  *next_out = next;
  *tok_lp_out = tok_lp;
  *sup_ids_out = sup_ids;
  *sup_lp_out = sup_lp;
}

absl::Status CheckSeq(const std::vector<int32_t>& s, int64_t vocab,
                      const std::string& what) {
  for (size_t t = 0; t < s.size(); ++t) {
    if (s[t] < 0 || s[t] >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " position ", t, ": token id ", s[t],
                       " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  return absl::OkStatus();
}

template <typename F>
auto Guard(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("LibTorch: ", e.what_without_backtrace()));
  }
}

}  // namespace

LanguageModel::LanguageModel(std::unique_ptr<Transformer> t)
    : transformer_(std::move(t)) {
  MatchBlasThreadsOnce();
}
LanguageModel::~LanguageModel() = default;

absl::StatusOr<std::unique_ptr<LanguageModel>> LanguageModel::Load(
    const std::string& dir, const std::string& device,
    const std::string& dtype) {
  KeepTensorMemory();
  CMDISTILL_ASSIGN_OR_RETURN(auto d, ParseDevice(device));
  CMDISTILL_ASSIGN_OR_RETURN(auto t, ParseDType(dtype));
  CMDISTILL_ASSIGN_OR_RETURN(auto ck, checkpoint::HfCheckpoint::Open(dir));
  CMDISTILL_ASSIGN_OR_RETURN(auto m, Transformer::Load(*ck, d, t));
  return std::unique_ptr<LanguageModel>(new LanguageModel(std::move(m)));
}

absl::StatusOr<std::unique_ptr<LanguageModel>> LanguageModel::InitRandom(
    const checkpoint::ModelConfig& config, uint64_t seed,
    const std::string& device, const std::string& dtype) {
  KeepTensorMemory();
  CMDISTILL_ASSIGN_OR_RETURN(auto d, ParseDevice(device));
  CMDISTILL_ASSIGN_OR_RETURN(auto t, ParseDType(dtype));
  CMDISTILL_ASSIGN_OR_RETURN(auto m,
                             Transformer::InitRandom(config, seed, d, t));
  return std::unique_ptr<LanguageModel>(new LanguageModel(std::move(m)));
}

const checkpoint::ModelConfig& LanguageModel::config() const {
  return transformer_->config();
}
std::string LanguageModel::device_name() const {
  return transformer_->device().str();
}
std::string LanguageModel::attention_name() const {
  return AttentionName(transformer_->attention());
}

std::string LanguageModel::dtype_name() const {
  return transformer_->dtype() == at::kBFloat16 ? "bfloat16" : "float32";
}
int64_t LanguageModel::num_parameters() const {
  return transformer_->num_parameters();
}

absl::Status LanguageModel::Save(
    const std::string& dir, const checkpoint::WriteOptions& options) const {
  return transformer_->Save(dir, options);
}

absl::StatusOr<std::string> LanguageModel::SerializeWeights() const {
  return transformer_->SerializeWeights();
}

absl::Status LanguageModel::LoadWeights(const std::string& buffer) {
  return transformer_->LoadWeights(buffer);
}

absl::Status LanguageModel::AdoptWeights(
    std::shared_ptr<const std::string> buffer) {
  return transformer_->AdoptWeights(std::move(buffer));
}

// Long on purpose: the KV-cache decode loop (prefill, then per step: logits,
// sampling in row chunks (SampleStep), stop, cache compaction) shares the
// cache, mask and positions across steps; it is the hot path benchmarks
// measure.
absl::StatusOr<std::vector<GenerationResult>> LanguageModel::Generate(
    const std::vector<std::vector<int32_t>>& prompts,
    const SamplingOptions& o) {
  const auto& cfg = config();
  if (prompts.empty()) return absl::InvalidArgumentError("no prompts");
  if (!(o.temperature >= 0 && std::isfinite(o.temperature))) {
    return absl::InvalidArgumentError("temperature must be finite and >= 0");
  }
  if (!(o.top_p > 0 && o.top_p <= 1))
    return absl::InvalidArgumentError("top_p must be in (0, 1]");
  if (o.top_k < 0 || o.max_new_tokens < 0 || o.support_k < 0 ||
      o.sample_chunk_rows < 0) {
    return absl::InvalidArgumentError(
        "top_k, max_new_tokens, support_k and sample_chunk_rows must be >= 0");
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty())
      return absl::InvalidArgumentError(
          absl::StrCat("prompt ", i, " is empty"));
    CMDISTILL_RETURN_IF_ERROR(
        CheckSeq(prompts[i], cfg.vocab_size, absl::StrCat("prompt ", i)));
    if (static_cast<int64_t>(prompts[i].size()) + o.max_new_tokens >
        cfg.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prompt ", i, " (", prompts[i].size(),
          " tokens) plus max_new_tokens ", o.max_new_tokens,
          " exceeds the model's ", cfg.max_position_embeddings, " positions"));
    }
  }
  for (int32_t s : o.stop_token_ids) {
    if (s < 0 || s >= cfg.vocab_size)
      return absl::InvalidArgumentError("stop token outside vocabulary");
  }
  return Guard([&]() -> absl::StatusOr<std::vector<GenerationResult>> {
    at::NoGradGuard no_grad;
    const c10::Device dev = transformer_->device();
    const int64_t V = cfg.vocab_size;
    const int64_t K = o.support_k >= V ? V : o.support_k;
    std::vector<const std::vector<int32_t>*> ptrs;
    for (const auto& p : prompts) ptrs.push_back(&p);
    Padded pad = LeftPad(ptrs, dev);
    std::vector<GenerationResult> results(prompts.size());
    for (auto& r : results) r.support_k = K;
    if (o.max_new_tokens == 0) return results;
    KvCache cache;
    // Logits at the last prompt position only (left-padded: the same column
    // for every prompt).
    at::Tensor last;
    {
      const int64_t rows = pad.width * static_cast<int64_t>(prompts.size());
      const TunedThreadsScope threads = transformer_->ThreadsFor(
          Transformer::kPrefill, rows, static_cast<double>(rows));
      last = transformer_->Head(
          transformer_->Hidden(pad.ids, pad.positions, pad.mask, &cache)
              .select(1, pad.width - 1));  // [A, V]
    }
    at::Tensor mask = pad.mask;
    at::Tensor next_pos =
        at::tensor(pad.lengths, at::kLong).to(dev);  // position of next token
    std::vector<int64_t> active(prompts.size());
    std::iota(active.begin(), active.end(), 0);
    at::Generator gen = at::detail::createCPUGenerator(o.seed);
    for (int64_t step = 0; step < o.max_new_tokens; ++step) {
      // Sampled per chunk of rows, so that the step's [rows, V] temporaries
      // (float, and a double copy on the CPU) stay under the mmap threshold
      // with a real vocabulary; rows are drawn in order from one generator.
      const int64_t A_now = last.size(0);
      // The step's sampling and the forward for the next one.
      TunedThreadsScope threads =
          transformer_->ThreadsFor(Transformer::kDecodeStep, A_now, 1.0);
      const int64_t step_rows =
          o.sample_chunk_rows > 0
              ? o.sample_chunk_rows
              : LogitChunkRows(dev, V, int64_t{sizeof(double)});
      std::vector<at::Tensor> n_parts, t_parts, si_parts, sl_parts;
      for (int64_t r0 = 0; r0 < A_now; r0 += step_rows) {
        at::Tensor n, t, si, sl;
        SampleStep(last.narrow(0, r0, std::min(step_rows, A_now - r0)), o, K,
                   gen, &n, &t, &si, &sl);
        n_parts.push_back(n);
        t_parts.push_back(t);
        si_parts.push_back(si);
        sl_parts.push_back(sl);
      }
      const at::Tensor next = at::cat(n_parts), tok_lp = at::cat(t_parts);
      at::Tensor sup_ids, sup_lp;
      if (K > 0) {
        sup_ids = at::cat(si_parts);
        sup_lp = at::cat(sl_parts);
      }
      const auto next_v = ToVector<int64_t>(next);
      const auto lp_v = ToVector<float>(tok_lp);
      std::vector<int64_t> sid;
      std::vector<float> slp;
      if (K > 0) {
        sid = ToVector<int64_t>(sup_ids);
        slp = ToVector<float>(sup_lp);
      }
      std::vector<int64_t> keep;
      for (size_t a = 0; a < active.size(); ++a) {
        GenerationResult& r = results[active[a]];
        const int32_t tok = static_cast<int32_t>(next_v[a]);
        r.tokens.push_back(tok);
        r.logprobs.push_back(lp_v[a]);
        if (K > 0) {
          for (int64_t k = 0; k < K; ++k) {
            r.support_ids.push_back(static_cast<int32_t>(sid[a * K + k]));
            r.support_logprobs.push_back(slp[a * K + k]);
          }
        }
        if (std::find(o.stop_token_ids.begin(), o.stop_token_ids.end(), tok) !=
            o.stop_token_ids.end()) {
          r.finished = true;
        } else {
          keep.push_back(static_cast<int64_t>(a));
        }
      }
      if (keep.empty() || step + 1 == o.max_new_tokens) {
        threads.Discard();  // no forward: not a step's time
        break;
      }
      at::Tensor next_in = next;
      if (keep.size() != active.size()) {
        const at::Tensor rows = at::tensor(keep, at::kLong).to(dev);
        cache.SelectRows(rows);
        mask = mask.index_select(0, rows);
        next_pos = next_pos.index_select(0, rows);
        next_in = next.index_select(0, rows);
        std::vector<int64_t> still;
        for (int64_t a : keep) still.push_back(active[a]);
        active = std::move(still);
      }
      const int64_t A = static_cast<int64_t>(active.size());
      mask = at::cat({mask, at::ones({A, 1}, mask.options())}, 1);
      last = transformer_
                 ->Forward(next_in.view({A, 1}), next_pos.view({A, 1}), mask,
                           &cache)
                 .select(1, 0);
      next_pos = next_pos + 1;
    }
    return results;
  });
}

// Batching by padded tokens, one forward per batch, then the head over the
// completion rows in chunks; AppendScores takes sampled, support, tail and
// top-K log-probabilities from each chunk's log-softmax.
absl::StatusOr<std::vector<SequenceScore>> LanguageModel::Score(
    const std::vector<ScoreInput>& inputs, const ScoreOptions& o) {
  const auto& cfg = config();
  const int64_t V = cfg.vocab_size;
  if (!(o.temperature > 0 && std::isfinite(o.temperature))) {
    return absl::InvalidArgumentError(
        "scoring temperature must be finite and > 0");
  }
  if (o.head_chunk_rows < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("head_chunk_rows must be >= 0 (0: by memory), got ",
                     o.head_chunk_rows));
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ScoreInput& in = inputs[i];
    const std::string what = absl::StrCat("sequence ", i);
    if (in.prompt_ids.empty())
      return absl::InvalidArgumentError(what + ": empty prompt");
    CMDISTILL_RETURN_IF_ERROR(CheckSeq(in.prompt_ids, V, what + " prompt"));
    CMDISTILL_RETURN_IF_ERROR(
        CheckSeq(in.completion_ids, V, what + " completion"));
    CMDISTILL_RETURN_IF_ERROR(CheckSeq(in.support_ids, V, what + " support"));
    const int64_t T = static_cast<int64_t>(in.completion_ids.size());
    if (in.support_k < 0 ||
        static_cast<int64_t>(in.support_ids.size()) != T * in.support_k) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": support has ", in.support_ids.size(),
                       " ids, expected T*K = ", T * in.support_k));
    }
    for (int64_t t = 0; t < T && in.support_k > 0; ++t) {
      const auto* row = in.support_ids.data() + t * in.support_k;
      if (std::find(row, row + in.support_k, in.completion_ids[t]) ==
          row + in.support_k) {
        return absl::InvalidArgumentError(absl::StrCat(
            what, " position ", t, ": the support does not contain the token"));
      }
    }
    if (static_cast<int64_t>(in.prompt_ids.size()) + T >
        cfg.max_position_embeddings) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " is longer than the model's ",
                       cfg.max_position_embeddings, " positions"));
    }
  }
  return Guard([&]() -> absl::StatusOr<std::vector<SequenceScore>> {
    at::NoGradGuard no_grad;
    const c10::Device dev = transformer_->device();
    std::vector<SequenceScore> out(inputs.size());
    std::vector<std::vector<int32_t>> full(inputs.size());
    std::vector<size_t> order(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      full[i] = inputs[i].prompt_ids;
      // The last completion token is never an input.
      if (!inputs[i].completion_ids.empty()) {
        full[i].insert(full[i].end(), inputs[i].completion_ids.begin(),
                       inputs[i].completion_ids.end() - 1);
      }
      order[i] = i;
    }
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return full[a].size() < full[b].size();
    });
    // On CPU a pass is also bounded to the tokens whose logits would fill
    // 16 MiB: glibc serves blocks above 32 MiB (its largest mmap threshold)
    // with fresh mappings, so bigger activations are page-faulted and zeroed
    // again on every pass — measured as a quarter of a [64, 256] score of the
    // small model in the kernel — while passes of a few thousand tokens keep
    // them in reused, cached memory. One sequence per pass at least. (Tuned
    // when a pass made all its logits at once; the head now runs in chunks
    // below, and the bound keeps the attention and MLP activations small.
    // With a real vocabulary it means one sequence per pass; a bound on those
    // activations instead was not measured.)
    const int64_t pass_tokens =
        dev.is_cpu() ? std::max<int64_t>(
                           1, kCpuPassLogitBytes / (V * int64_t{sizeof(float)}))
                     : std::numeric_limits<int64_t>::max();
    size_t start = 0;
    while (start < order.size()) {
      // Grow the batch while the padded size stays within budget (sorted: the
      // last is longest).
      size_t end = start + 1;
      while (end < order.size()) {
        const auto tokens =
            static_cast<int64_t>((end + 1 - start) * full[order[end]].size());
        if (tokens > o.max_batch_tokens || tokens > pass_tokens) break;
        ++end;
      }
      std::vector<const std::vector<int32_t>*> ptrs;
      for (size_t j = start; j < end; ++j) ptrs.push_back(&full[order[j]]);
      Padded pad = LeftPad(ptrs, dev);
      const int64_t pass_rows = pad.width * static_cast<int64_t>(ptrs.size());
      const TunedThreadsScope threads = transformer_->ThreadsFor(
          Transformer::kScoreBatch, pass_rows, static_cast<double>(pass_rows));
      const at::Tensor hidden =
          transformer_->Hidden(pad.ids, pad.positions, pad.mask, nullptr);
      // The head over the rows that predict completion tokens only, in one
      // GEMM: prompt rows' logits are never read.
      std::vector<int64_t> rows, row_start(end - start);
      for (size_t j = start; j < end; ++j) {
        const size_t i = order[j];
        const int64_t T = static_cast<int64_t>(inputs[i].completion_ids.size());
        const int64_t P = static_cast<int64_t>(inputs[i].prompt_ids.size());
        const int64_t first =
            pad.width - static_cast<int64_t>(full[i].size()) + P - 1;
        const int64_t b = static_cast<int64_t>(j - start);
        row_start[j - start] = static_cast<int64_t>(rows.size());
        for (int64_t t = 0; t < T; ++t)
          rows.push_back(b * pad.width + first + t);
      }
      // The head in chunks of rows (a chunk may span sequences): with a real
      // vocabulary one sequence's logits alone are far above the pass budget
      // ([256, 151936] float32 is 156 MB, faulted in afresh on every pass on
      // CPU). Each chunk is one GEMM; log-softmax is per row, so chunking
      // changes nothing.
      const at::Tensor flat = hidden.reshape({-1, hidden.size(2)});
      const at::Tensor rows_t = at::tensor(rows, at::kLong).to(dev);
      const auto n_rows = static_cast<int64_t>(rows.size());
      const int64_t chunk =
          o.head_chunk_rows > 0 ? o.head_chunk_rows : LogitChunkRows(dev, V);
      for (int64_t c0 = 0; c0 < n_rows; c0 += chunk) {
        const int64_t c1 = std::min(n_rows, c0 + chunk);
        const at::Tensor lp_chunk =
            at::log_softmax(transformer_->Head(flat.index_select(
                                0, rows_t.narrow(0, c0, c1 - c0))) /
                                o.temperature,
                            -1);  // [c1 - c0, V]
        for (size_t j = start; j < end; ++j) {
          const size_t i = order[j];
          const int64_t r0 = row_start[j - start];
          const auto T = static_cast<int64_t>(inputs[i].completion_ids.size());
          const int64_t a = std::max(c0, r0), z = std::min(c1, r0 + T);
          if (a >= z) continue;
          AppendScores(lp_chunk.narrow(0, a - c0, z - a), inputs[i], a - r0, o,
                       &out[i]);
        }
      }
      start = end;
    }
    return out;
  });
}

absl::StatusOr<std::vector<std::vector<float>>> LanguageModel::TokenLogprobs(
    const std::vector<std::vector<int32_t>>& sequences,
    int64_t max_batch_tokens) {
  std::vector<ScoreInput> inputs;
  for (size_t i = 0; i < sequences.size(); ++i) {
    if (sequences[i].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", i, " is empty"));
    }
    ScoreInput in;
    in.prompt_ids = {sequences[i][0]};
    in.completion_ids.assign(sequences[i].begin() + 1, sequences[i].end());
    inputs.push_back(std::move(in));
  }
  ScoreOptions o;
  o.max_batch_tokens = max_batch_tokens;
  CMDISTILL_ASSIGN_OR_RETURN(auto scores, Score(inputs, o));
  std::vector<std::vector<float>> out;
  for (auto& s : scores) out.push_back(std::move(s.sampled_logprobs));
  return out;
}

}  // namespace cmdistill::model

namespace cmdistill::model {

absl::StatusOr<double> MatmulFlopsPerSecond(int64_t n,
                                            const std::string& device,
                                            const std::string& dtype,
                                            int repeats) {
  CMDISTILL_ASSIGN_OR_RETURN(auto d, ParseDevice(device));
  CMDISTILL_ASSIGN_OR_RETURN(auto t, ParseDType(dtype));
  if (n <= 0) return absl::InvalidArgumentError("matmul size must be > 0");
  try {
    at::NoGradGuard no_grad;
    const at::TensorOptions o = at::TensorOptions().device(d).dtype(t);
    const at::Tensor a = at::randn({n, n}, o), b = at::randn({n, n}, o);
    std::vector<double> rates;
    for (int i = 0; i <= std::max(1, repeats); ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      const at::Tensor c = at::matmul(a, b);
      (void)c.sum().item<double>();  // the device is done when this returns
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
              .count();
      if (i > 0) rates.push_back(2.0 * n * n * n / s);  // i == 0: warm-up
    }
    std::sort(rates.begin(), rates.end());
    return rates[rates.size() / 2];
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("LibTorch: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<double> MemoryReadBytesPerSecond(int64_t bytes, int repeats) {
  if (bytes < 4) return absl::InvalidArgumentError("memory size must be >= 4");
  try {
    at::NoGradGuard no_grad;
    // Written once (every page touched), then only read.
    const at::Tensor a = at::ones({bytes / 4}, at::kFloat);
    std::vector<double> rates;
    for (int i = 0; i <= std::max(1, repeats); ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      const double sum = a.sum().item<double>();
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
              .count();
      if (!(sum > 0)) return absl::InternalError("the read went wrong");
      if (i > 0) rates.push_back(static_cast<double>(a.nbytes()) / s);
    }
    std::sort(rates.begin(), rates.end());
    return rates[rates.size() / 2];
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("LibTorch: ", e.what_without_backtrace()));
  }
}

}  // namespace cmdistill::model
