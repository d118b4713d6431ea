// The teacher's domain interface, torch-free: score batches of sequences on the
// frozen teacher. The model-backed implementation is model_scorer.h; tests use
// a fake that can hold calls.
#ifndef CMDISTILL_SERVICES_TEACHER_SCORER_H_
#define CMDISTILL_SERVICES_TEACHER_SCORER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/types.h"

namespace cmdistill::teacher {

struct TeacherInfo {
  std::string model_id;
  int64_t vocab_size = 0;
  std::string
      tokenizer_fingerprint;  // "" when the model folder has no tokenizer.json
  std::string dtype, device;
  int64_t max_sequence_length = 0;
};

class Scorer {
 public:
  virtual ~Scorer() = default;
  virtual const TeacherInfo& info() const = 0;
  // Scores already-validated inputs (one merged batch). Blocking; called by one
  // worker thread at a time. `top_k` > 0 also returns the teacher's own top-K
  // per position.
  virtual absl::StatusOr<std::vector<model::SequenceScore>> Score(
      const std::vector<model::ScoreInput>& inputs, int64_t top_k) = 0;
};

}  // namespace cmdistill::teacher

#endif  // CMDISTILL_SERVICES_TEACHER_SCORER_H_
