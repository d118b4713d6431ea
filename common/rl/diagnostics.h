// Per-step diagnostics of a policy-gradient update, as RL engineers read them
// (veRL's actor/*, OpenRLHF's policy stats). Torch-free; filled by the learner
// (services/learner/policy_trainer.cc), carried on its STEP line, in the
// training curve and in the learner's metrics.
#ifndef CMDISTILL_COMMON_RL_DIAGNOSTICS_H_
#define CMDISTILL_COMMON_RL_DIAGNOSTICS_H_

namespace cmdistill::rl {

struct StepDiagnostics {
  // Share of completion tokens whose PPO ratio π_θ/π_behaviour was clipped
  // (ratio > 1 + ε with a positive advantage, < 1 − ε with a negative one).
  double clip_fraction = 0;
  // KL(π_behaviour ‖ π_θ) per token, the k3 estimate (r − 1) − log r with
  // r = π_θ/π_behaviour at the sampled token, before the update: how far the
  // trained policy is from the one that sampled (policy lag).
  double approx_kl = 0;
  // Mean −log π_θ(a_t) over completion tokens: a sampled estimate of the
  // policy's per-token entropy (nats).
  double entropy = 0;
  double ratio_mean = 1, ratio_max = 1;
  // Standard deviation of the step's advantages, and the share of groups
  // whose returns are not all equal (a group with one return has advantage 0
  // everywhere: no learning signal).
  double advantage_std = 0;
  double groups_with_signal = 0;
  double length = 0;  // mean completion tokens
  // Embedded synthetic task only: the shares of the step's answers in the
  // teacher's style and in the teacher-foreign one (-1: not classified).
  double teacher_style = -1, foreign_style = -1;
};

}  // namespace cmdistill::rl

#endif  // CMDISTILL_COMMON_RL_DIAGNOSTICS_H_
