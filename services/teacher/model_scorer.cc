#include "services/teacher/model_scorer.h"

#include <filesystem>
#include <utility>

#include "common/status/status_macros.h"
#include "common/tokenizer/tokenizer.h"

namespace cmdistill::teacher {
namespace {

class ModelScorer final : public Scorer {
 public:
  ModelScorer(std::unique_ptr<model::LanguageModel> model, TeacherInfo info,
              int64_t max_batch_tokens)
      : model_(std::move(model)),
        info_(std::move(info)),
        max_batch_tokens_(max_batch_tokens) {}

  const TeacherInfo& info() const override { return info_; }

  absl::StatusOr<std::vector<model::SequenceScore>> Score(
      const std::vector<model::ScoreInput>& inputs, int64_t top_k) override {
    model::ScoreOptions o;
    o.max_batch_tokens = max_batch_tokens_;
    o.top_k = top_k;
    return model_->Score(inputs, o);
  }

 private:
  std::unique_ptr<model::LanguageModel> model_;
  TeacherInfo info_;
  int64_t max_batch_tokens_;
};

}  // namespace

std::unique_ptr<Scorer> MakeModelScorer(
    std::unique_ptr<model::LanguageModel> model, const std::string& model_id,
    const std::string& fingerprint, int64_t max_batch_tokens) {
  TeacherInfo info;
  info.model_id = model_id;
  info.vocab_size = model->config().vocab_size;
  info.tokenizer_fingerprint = fingerprint;
  info.dtype = model->dtype_name();
  info.device = model->device_name();
  info.max_sequence_length = model->config().max_position_embeddings;
  return std::make_unique<ModelScorer>(std::move(model), std::move(info),
                                       max_batch_tokens);
}

absl::StatusOr<std::unique_ptr<Scorer>> MakeModelScorer(
    const std::string& model_dir, const std::string& device,
    const std::string& dtype, int64_t max_batch_tokens) {
  CMDISTILL_ASSIGN_OR_RETURN(
      auto model, model::LanguageModel::Load(model_dir, device, dtype));
  std::string fingerprint;
  if (std::filesystem::exists(model_dir + "/tokenizer.json")) {
    CMDISTILL_ASSIGN_OR_RETURN(auto tok, tokenizer::Tokenizer::Load(model_dir));
    fingerprint = tok->fingerprint();
  }
  std::string id = std::filesystem::path(model_dir).filename().string();
  if (id.empty())
    id = std::filesystem::path(model_dir).parent_path().filename().string();
  return MakeModelScorer(std::move(model), id, fingerprint, max_batch_tokens);
}

}  // namespace cmdistill::teacher
