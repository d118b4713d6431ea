#include "services/learner/learner_metrics.h"

#include "common/metrics/metrics.h"
#include "services/learner/trajectory_buffer.h"

namespace cmdistill::learner {

prometheus::Gauge& LearnerMetrics::Gauge(const char* name, const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

LearnerMetrics::LearnerMetrics(prometheus::Registry& registry, bool has_lambda)
    : r(registry) {
  outcomes = &prometheus::BuildCounter()
                  .Name("cmdistill_learner_trajectories_total")
                  .Help("Submitted trajectories by outcome")
                  .Register(r);
  for (const std::string& name : AllOutcomeNames()) Outcome(name);
  version = &Gauge("cmdistill_learner_policy_version", "Newest policy version");
  step = &Gauge("cmdistill_learner_step", "Update steps done");
  buffer =
      &Gauge("cmdistill_learner_buffer_trajectories", "Trajectories buffered");
  leases = &Gauge("cmdistill_learner_outstanding_leases",
                  "Prompt leases outstanding");
  live_actors = &Gauge("cmdistill_learner_live_actors",
                       "Actors that asked for prompts within the lease "
                       "duration");
  satisfaction = &Gauge("cmdistill_learner_constraint_satisfaction_ratio",
                        "Share of the last step's trajectories within the "
                        "budget");
  if (has_lambda) {
    lambda = &Gauge("cmdistill_learner_lambda",
                    "Lagrange multiplier (methods that have one)");
  }
  reward = &Gauge("cmdistill_learner_task_reward",
                  "Mean task reward of the last step");
  kl = &Gauge("cmdistill_learner_token_kl",
              "Mean per-token KL of the last step");
  loss = &Gauge("cmdistill_learner_loss", "Loss of the last step");
  grad_norm = &Gauge("cmdistill_learner_grad_norm",
                     "Gradient norm of the last step (before clipping)");
  cost = &Gauge("cmdistill_learner_trajectory_cost",
                "Mean per-trajectory cost of the last step (compare with "
                "cmdistill_learner_budget)");
  clip_fraction = &Gauge("cmdistill_learner_clip_fraction_ratio",
                         "Share of the last step's tokens whose PPO ratio "
                         "was clipped");
  approx_kl = &Gauge("cmdistill_learner_approx_kl",
                     "KL(behaviour || current) per token before the last "
                     "update, k3 estimate (nats)");
  entropy = &Gauge("cmdistill_learner_entropy_nats",
                   "Mean -log pi(a_t) of the last step's tokens (sampled "
                   "entropy estimate)");
  auto& ratio = prometheus::BuildGauge()
                    .Name("cmdistill_learner_ratio")
                    .Help(
                        "PPO ratio pi_theta/pi_behaviour over the last "
                        "step's tokens")
                    .Register(r);
  ratio_mean = &ratio.Add({{"stat", "mean"}});
  ratio_max = &ratio.Add({{"stat", "max"}});
  advantage_std = &Gauge("cmdistill_learner_advantage_std",
                         "Standard deviation of the last step's advantages");
  groups_with_signal = &Gauge("cmdistill_learner_groups_with_signal_ratio",
                              "Share of the last step's groups whose "
                              "returns are not all equal");
  length = &Gauge("cmdistill_learner_completion_length_tokens",
                  "Mean completion length of the last step's trajectories");
  auto& style = prometheus::BuildGauge()
                    .Name("cmdistill_learner_style_ratio")
                    .Help(
                        "Share of the last step's answers per style (embedded "
                        "synthetic task only; 0 elsewhere)")
                    .Register(r);
  style_teacher = &style.Add({{"style", "teacher"}});
  style_foreign = &style.Add({{"style", "foreign"}});
  style_other = &style.Add({{"style", "other"}});
  lag = &prometheus::BuildHistogram()
             .Name("cmdistill_learner_policy_lag")
             .Help("Policy versions between sampling and submission")
             .Register(r)
             .Add({}, metrics::LinearBuckets(0, 1, 8));
  step_seconds = &prometheus::BuildHistogram()
                      .Name("cmdistill_learner_step_seconds")
                      .Help("Time of one update step")
                      .Register(r)
                      .Add({}, metrics::LatencyBuckets());
  auto& phase = prometheus::BuildHistogram()
                    .Name("cmdistill_learner_step_phase_seconds")
                    .Help(
                        "Where a step's wall time goes: waiting for "
                        "trajectories, the update, publishing the weights, "
                        "the checkpoint (when one is written)")
                    .Register(r);
  const char* phases[] = {"wait", "update", "publish", "checkpoint"};
  for (int i = 0; i < 4; ++i) {
    phase_seconds[i] =
        &phase.Add({{"phase", phases[i]}}, metrics::LatencyBuckets());
  }
  auto& rpc = prometheus::BuildHistogram()
                  .Name("cmdistill_learner_rpc_seconds")
                  .Help(
                      "Server-side latency of the learner's RPCs by method "
                      "(WaitForPolicy includes its long-poll, FetchPolicy "
                      "the whole stream)")
                  .Register(r);
  auto method = [&](const char* m) {
    return &rpc.Add({{"method", m}}, metrics::LatencyBuckets());
  };
  lease_rpc = method("LeasePrompts");
  return_rpc = method("ReturnLeases");
  submit_rpc = method("SubmitTrajectories");
  wait_rpc = method("WaitForPolicy");
  fetch_rpc = method("FetchPolicy");
  status_rpc = method("GetStatus");
  tokens_trained = &prometheus::BuildCounter()
                        .Name("cmdistill_learner_tokens_trained_total")
                        .Help("Completion tokens trained on")
                        .Register(r)
                        .Add({});
  prompts_trained =
      &prometheus::BuildCounter()
           .Name("cmdistill_learner_prompts_trained_total")
           .Help(
               "Prompt groups trained, all epochs (restored from the "
               "checkpoint at a resume, like the outcome counts)")
           .Register(r)
           .Add({});
  checkpoint_failures =
      &prometheus::BuildCounter()
           .Name("cmdistill_learner_checkpoint_failures_total")
           .Help(
               "Checkpoint writes that failed (full disk, read-only volume); "
               "training goes on and the newest good checkpoint stays")
           .Register(r)
           .Add({});
  last_checkpoint =
      &Gauge("cmdistill_learner_last_checkpoint_timestamp_seconds",
             "Unix time of the newest checkpoint written");
  epoch = &Gauge("cmdistill_learner_epoch", "The epoch being leased");
  epoch_prompts = &prometheus::BuildGauge()
                       .Name("cmdistill_learner_epoch_prompts")
                       .Help(
                           "Prompts of the current epoch by state: "
                           "trained, leased, pending")
                       .Register(r);
  for (const char* state : {"trained", "leased", "pending"})
    epoch_prompts->Add({{"state", state}});
  budget = &Gauge(
      "cmdistill_learner_budget",
      "The per-trajectory cost budget d (as normalised in the run file)");
}

void LearnerMetrics::RecordStep(const StepStats& stats, int64_t step_done) {
  step->Set(static_cast<double>(step_done));
  satisfaction->Set(stats.satisfaction);
  if (lambda != nullptr) lambda->Set(stats.lambda);
  reward->Set(stats.mean_task_reward);
  kl->Set(stats.mean_token_kl);
  loss->Set(stats.loss);
  grad_norm->Set(stats.grad_norm);
  cost->Set(stats.mean_cost);
  const rl::StepDiagnostics& d = stats.diagnostics;
  clip_fraction->Set(d.clip_fraction);
  approx_kl->Set(d.approx_kl);
  entropy->Set(d.entropy);
  ratio_mean->Set(d.ratio_mean);
  ratio_max->Set(d.ratio_max);
  advantage_std->Set(d.advantage_std);
  groups_with_signal->Set(d.groups_with_signal);
  length->Set(d.length);
  if (d.teacher_style >= 0) {
    style_teacher->Set(d.teacher_style);
    style_foreign->Set(d.foreign_style);
    style_other->Set(1.0 - d.teacher_style - d.foreign_style);
  }
  tokens_trained->Increment(static_cast<double>(stats.tokens));
}

void LearnerMetrics::RecordBuffer(const TrajectoryBuffer& b) {
  buffer->Set(static_cast<double>(b.buffered()));
  leases->Set(static_cast<double>(b.leases().outstanding()));
  const TrajectoryBuffer::EpochPrompts e = b.CurrentEpoch();
  epoch->Set(static_cast<double>(e.epoch));
  epoch_prompts->Add({{"state", "trained"}})
      .Set(static_cast<double>(e.trained));
  epoch_prompts->Add({{"state", "leased"}}).Set(static_cast<double>(e.leased));
  epoch_prompts->Add({{"state", "pending"}})
      .Set(static_cast<double>(e.pending));
}

}  // namespace cmdistill::learner
