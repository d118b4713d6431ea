// Learner checkpoints: `<root>/step-00000042/` holds the student as a Hugging
// Face folder plus `training_state.pb` (cmdistill.v1.LearnerCheckpoint).
// Written atomically: everything goes into a temporary folder, each file
// fsynced, then one rename publishes it; the last K are kept. A corrupt
// checkpoint (unreadable state, wrong data set, broken weights) is reported and
// skipped when resuming.
#ifndef CMDISTILL_SERVICES_LEARNER_CHECKPOINTS_H_
#define CMDISTILL_SERVICES_LEARNER_CHECKPOINTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmdistill/v1/checkpoint.pb.h"
#include "services/learner/trainer.h"

namespace cmdistill::learner {

// The trainer's part of a checkpoint (optimizer step, moments, master
// weights, the Lagrange controller), both ways.
TrainerState TrainerStateOf(const v1::LearnerCheckpoint& c);
void SetTrainerState(const TrainerState& ts, v1::LearnerCheckpoint* c);

absl::Status WriteCheckpoint(const std::string& root,
                             const v1::LearnerCheckpoint& state,
                             const Trainer& policy,
                             const std::string& tokenizer_from, int keep);

struct FoundCheckpoint {
  std::string dir;  // the student's Hugging Face folder is this folder
  v1::LearnerCheckpoint state;
};

// The newest valid checkpoint under `root`; NOT_FOUND when there is none. Each
// skipped (corrupt) one is described in `skipped`.
absl::StatusOr<FoundCheckpoint> FindLatestCheckpoint(
    const std::string& root, uint64_t num_prompts,
    std::vector<std::string>* skipped);

// Removes the temporary folders (`.tmp-step-N-<pid>`) that a learner killed
// while writing left under `root`, when that process is gone (a live pid's
// folder may be a write in progress). Returns the folders removed.
std::vector<std::string> RemoveStaleTemporaries(const std::string& root);

// Loads one checkpoint folder (INVALID_ARGUMENT / DATA_LOSS naming what is
// wrong).
absl::StatusOr<FoundCheckpoint> ReadCheckpoint(const std::string& dir,
                                               uint64_t num_prompts);

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_CHECKPOINTS_H_
