// Supervised fine-tuning: the LibTorch TU.
#include "services/learner/sft_trainer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard (not in ATen.h on 2.x)

#include "absl/strings/str_cat.h"
#include "common/model/transformer.h"
#include "common/status/status_macros.h"
#include "services/learner/adamw.h"

namespace cmdistill::learner {

struct SftTrainer::Impl {
  model::Transformer* t = nullptr;
  std::unique_ptr<AdamW> adamw;

  // Loss over the batch (right-padded; positions from 0). Fills `st` except
  // step, grad_norm and lr.
  absl::StatusOr<at::Tensor> Loss(const std::vector<SftExample>& batch,
                                  SftStats* st) {
    if (batch.empty()) return absl::InvalidArgumentError("empty batch");
    std::vector<std::vector<int32_t>> seqs;
    int64_t W = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      const SftExample& e = batch[i];
      if (e.prompt_ids.empty() || e.completion_ids.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("example ", i, ": empty prompt or completion"));
      }
      std::vector<int32_t> s = e.prompt_ids;
      s.insert(s.end(), e.completion_ids.begin(), e.completion_ids.end());
      if (static_cast<int64_t>(s.size()) >
          t->config().max_position_embeddings) {
        return absl::InvalidArgumentError(
            absl::StrCat("example ", i, ": ", s.size(),
                         " tokens exceed the model's max_position_embeddings ",
                         t->config().max_position_embeddings));
      }
      W = std::max<int64_t>(W, static_cast<int64_t>(s.size()) - 1);
      seqs.push_back(std::move(s));
    }
    CMDISTILL_RETURN_IF_ERROR(t->CheckIds(seqs));
    const int64_t B = static_cast<int64_t>(seqs.size());
    std::vector<int64_t> ids(B * W, 0), pos(B * W, 0), mask(B * W, 0),
        target(B * W, 0);
    std::vector<float> weight(B * W, 0.f);
    for (int64_t b = 0; b < B; ++b) {
      const auto& s = seqs[b];
      const int64_t L = static_cast<int64_t>(s.size()) - 1;
      const int64_t P = static_cast<int64_t>(batch[b].prompt_ids.size());
      for (int64_t i = 0; i < L; ++i) {
        ids[b * W + i] = s[i];
        pos[b * W + i] = i;
        mask[b * W + i] = 1;
        target[b * W + i] = s[i + 1];
        if (i + 1 >= P) weight[b * W + i] = 1.f;
      }
    }
    const c10::Device dev = t->device();
    auto L64 = [&](std::vector<int64_t>& v) {
      return at::tensor(v, at::kLong).view({B, W}).to(dev);
    };
    // The head over the trained rows only (completion tokens): prompt rows'
    // logits — with a real vocabulary most of a batch's [B, W, V] — are never
    // made.
    std::vector<int64_t> rows, tgt_rows;
    for (int64_t r = 0; r < B * W; ++r) {
      if (weight[r] == 0.f) continue;
      rows.push_back(r);
      tgt_rows.push_back(target[r]);
    }
    const auto M = static_cast<int64_t>(rows.size());
    at::Tensor hidden =
        t->Hidden(L64(ids), L64(pos), L64(mask), nullptr).reshape({B * W, -1});
    if (M < B * W) {
      hidden = hidden.index_select(0, at::tensor(rows, at::kLong).to(dev));
    }
    const at::Tensor logits = t->Head(hidden);  // [M, V]
    const at::Tensor tgt = at::tensor(tgt_rows, at::kLong).to(dev);
    // Fused log-softmax + NLL: no [M, V] log-probability tensor to keep for
    // backward, no scatter of a gather's gradient into one.
    const at::Tensor loss =
        at::cross_entropy_loss(logits, tgt, /*weight=*/{}, at::Reduction::Sum,
                               /*ignore_index=*/-100) /
        static_cast<double>(M);
    st->tokens = M;
    st->token_accuracy =
        (logits.argmax(-1) == tgt).to(at::kFloat).mean().item<double>();
    st->loss = loss.item<double>();
    return loss;
  }
};

SftTrainer::SftTrainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SftTrainer::~SftTrainer() = default;

absl::StatusOr<std::unique_ptr<SftTrainer>> SftTrainer::Create(
    model::LanguageModel* model, AdamWOptions options) {
  if (model == nullptr) return absl::InvalidArgumentError("no model");
  if (!(options.lr > 0)) return absl::InvalidArgumentError("lr must be > 0");
  auto impl = std::make_unique<Impl>();
  impl->t = model->transformer();
  impl->t->SetRequiresGrad(true);
  impl->adamw = std::make_unique<AdamW>(impl->t->parameters(), options);
  return std::unique_ptr<SftTrainer>(new SftTrainer(std::move(impl)));
}

absl::StatusOr<SftStats> SftTrainer::Step(
    const std::vector<SftExample>& batch) {
  SftStats st;
  int64_t rows = 0;
  for (const SftExample& e : batch)
    rows += static_cast<int64_t>(e.prompt_ids.size() + e.completion_ids.size());
  const model::TunedThreadsScope threads = impl_->t->ThreadsFor(
      model::Transformer::kTrainStep, rows, static_cast<double>(rows));
  try {
    CMDISTILL_ASSIGN_OR_RETURN(auto loss, impl_->Loss(batch, &st));
    for (at::Tensor& p : impl_->t->parameters())
      p.mutable_grad() = at::Tensor();
    loss.backward();
    CMDISTILL_ASSIGN_OR_RETURN(auto info, impl_->adamw->Step());
    st.grad_norm = info.grad_norm;
    st.lr = info.lr;
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("LibTorch: ", e.what_without_backtrace()));
  }
  st.step = impl_->adamw->step();
  return st;
}

std::string SftTrainer::PrecisionWarning() const {
  return impl_->adamw->PrecisionWarning();
}

absl::StatusOr<SftStats> SftTrainer::Evaluate(
    const std::vector<SftExample>& batch) {
  SftStats st;
  try {
    at::NoGradGuard no_grad;
    CMDISTILL_ASSIGN_OR_RETURN(auto loss, impl_->Loss(batch, &st));
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("LibTorch: ", e.what_without_backtrace()));
  }
  st.step = impl_->adamw->step();
  return st;
}

}  // namespace cmdistill::learner
