// What the learner service needs of whoever updates the policy: one update
// from complete groups, the optimizer/controller state for checkpoints, and
// the policy's weights (snapshots for the actors, a Hugging Face folder for
// checkpoints). Torch-free: PolicyTrainer (policy_trainer.h) is the LibTorch
// implementation; tests drive the service with a fake
// (tests/testing/fake_trainer.h) and link no LibTorch.
#ifndef CMDISTILL_SERVICES_LEARNER_TRAINER_H_
#define CMDISTILL_SERVICES_LEARNER_TRAINER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmdistill/v1/trajectory.pb.h"
#include "common/rl/diagnostics.h"
#include "common/rl/lagrange.h"

namespace cmdistill::learner {

struct StepStats {
  int64_t step = 0;
  double loss = 0;
  double mean_return = 0;
  double mean_task_reward = 0;
  double satisfaction = 0;  // share of trajectories within the budget
  double mean_cost = 0;     // mean cost_used
  double mean_token_kl =
      0;  // under the updated-from policy, over real tokens (0 for grpo)
  double lambda = 0;
  double grad_norm = 0;
  double lr = 0;
  int64_t tokens = 0;
  rl::StepDiagnostics diagnostics;
  // Where the step's wall time went (filled by the Learner, not the trainer):
  // waiting for enough trajectories, the update (forward, backward,
  // optimizer), publishing the new weights (serialise, hash, store), and
  // the checkpoint written after the previous step (0 when none was): the
  // time since the previous step's record is their sum plus bookkeeping.
  double wait_seconds = 0, update_seconds = 0, publish_seconds = 0,
         checkpoint_seconds = 0;
};

// Optimizer and controller state, for checkpoints.
struct TrainerState {
  int64_t step = 0;
  rl::LagrangeState lagrange;
  // AdamW moments in parameter order, as raw float32 bytes (m then v per
  // parameter).
  std::vector<std::string> moments;
  // float32 master weights per parameter ("" where a parameter has none);
  // empty: re-initialised from the parameters.
  std::vector<std::string> master_weights;
};

class Trainer {
 public:
  virtual ~Trainer() = default;

  // One update from complete groups (each: the G trajectories of one prompt,
  // with their `evaluation` filled in by the reward service). INVALID_ARGUMENT
  // for inconsistent trajectories; nothing is changed then.
  virtual absl::StatusOr<StepStats> Step(
      const std::vector<std::vector<v1::Trajectory>>& groups) = 0;
  virtual double lambda() const = 0;
  virtual TrainerState SaveState() const = 0;
  virtual absl::Status RestoreState(const TrainerState& state) = 0;

  // The policy being trained.
  virtual int64_t vocab_size() const = 0;
  // A snapshot of the weights as the actors load them.
  virtual absl::StatusOr<std::string> SerializeWeights() const = 0;
  // The policy as a Hugging Face folder in `dir` (each file written
  // atomically), with the tokenizer files of `tokenizer_from` when not empty.
  virtual absl::Status SavePolicy(const std::string& dir,
                                  const std::string& tokenizer_from) const = 0;
};

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_TRAINER_H_
