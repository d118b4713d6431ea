#include "services/learner/role.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/checkpoint/hf_checkpoint.h"
#include "common/model/language_model.h"
#include "common/status/status_macros.h"
#include "common/tasks/dataset.h"
#include "common/tokenizer/tokenizer.h"
#include "services/common/child_protocol.h"
#include "services/common/compute_threads.h"
#include "services/common/role_host.h"
#include "services/common/task_options.h"
#include "services/learner/checkpoints.h"
#include "services/learner/learner.h"
#include "services/learner/learner_service.h"
#include "services/learner/optimizer_options.h"
#include "services/learner/policy_trainer.h"

namespace cmdistill::learner {
namespace {

// ------------------------------------------------------------ learner

// The training prompts: each question in the run file's template, encoded.
absl::StatusOr<std::vector<learner::Prompt>> LoadPrompts(
    const v1::RunConfig& config, const tokenizer::Tokenizer& tok,
    std::ostream& log) {
  CMDISTILL_ASSIGN_OR_RETURN(
      auto data, tasks::LoadJsonl(config.data().train_path(),
                                  services::DatasetOptionsFrom(
                                      config, /*test_split=*/false)));
  if (data.skipped > 0) {
    log << "cmdistill learner: skipped " << data.skipped
        << " malformed line(s)\n";
  }
  std::vector<learner::Prompt> prompts;
  for (const auto& e : data.examples) {
    learner::Prompt p;
    p.text = services::PromptText(config, e.question);
    auto ids = services::EncodePrompt(config, tok, e.question);
    if (!ids.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot encode the prompt of line ", e.line));
    }
    p.ids = *std::move(ids);
    p.gold = e.gold;
    prompts.push_back(std::move(p));
  }
  return prompts;
}

// The checkpoint to resume from: "auto" (the newest valid one, if any),
// "never", or a checkpoint folder.
absl::StatusOr<std::optional<learner::FoundCheckpoint>> FindResume(
    const std::string& resume, const std::string& checkpoint_dir,
    size_t num_prompts, std::ostream& log) {
  for (const std::string& d : learner::RemoveStaleTemporaries(checkpoint_dir)) {
    log << "cmdistill learner: removed " << d
        << " (a checkpoint write that a killed learner left unfinished)\n";
  }
  if (resume == "never") return std::nullopt;
  if (resume == "auto") {
    std::vector<std::string> skipped;
    auto f =
        learner::FindLatestCheckpoint(checkpoint_dir, num_prompts, &skipped);
    for (const auto& why : skipped)
      log << "cmdistill learner: skipping corrupt checkpoint: " << why << "\n";
    if (!f.ok()) return std::nullopt;
    return *std::move(f);
  }
  auto f = learner::ReadCheckpoint(resume, num_prompts);
  CMDISTILL_RETURN_IF_ERROR_ANNOTATED(f.status(), "cannot resume from ",
                                      resume);
  return *std::move(f);
}

learner::TrainerOptions TrainerOptionsFrom(const v1::RunConfig& config) {
  const auto& tr = config.training();
  learner::TrainerOptions to;
  to.method = services::MethodFrom(config.method());
  to.clip_epsilon = tr.clip_epsilon();
  to.kappa = config.constraint().kappa();
  to.fixed_lambda = config.constraint().soft_lambda();
  to.cost_estimator = services::CostOptionsFrom(config).estimator;
  to.term_two_over_all_tokens = config.constraint().term_two_denominator() ==
                                v1::TERM_TWO_DENOMINATOR_ALL_TOKENS;
  to.lagrange = services::LagrangeOptionsFrom(config);
  to.budget = config.constraint().budget();
  to.lagrange_on_violation_rate = config.constraint().lagrangian_constraint() ==
                                  v1::LAGRANGIAN_CONSTRAINT_VIOLATION_RATE;
  to.violation_target = config.constraint().violation_target();
  to.std_normalization = tr.advantage_std_normalization();
  to.advantage_eps = tr.advantage_eps();
  to.prob_floor = config.constraint().prob_floor();
  to.temperature = config.generation().temperature() > 0
                       ? config.generation().temperature()
                       : 1.0;
  to.optimizer = learner::AdamWOptionsFrom(config.optimizer(), tr.max_steps());
  to.micro_batch_sequences = tr.micro_batch_sequences();
  return to;
}

learner::LearnerOptions LearnerOptionsFrom(const v1::RunConfig& config,
                                           const std::string& checkpoint_dir) {
  const auto& tr = config.training();
  learner::LearnerOptions lo;
  lo.log = [](const std::string& line) {
    std::cerr << "cmdistill learner: " << line << "\n";
  };
  lo.lease.lease_duration = absl::Seconds(tr.lease_seconds());
  lo.lease.samples_per_prompt = config.generation().samples_per_prompt();
  lo.lease.epochs = tr.epochs();
  lo.lease.seed = config.data().shuffle_seed();
  lo.prompts_per_step = tr.prompts_per_step();
  lo.max_policy_lag = tr.max_policy_lag();
  lo.buffer_capacity = tr.trajectory_buffer_capacity();
  lo.max_steps = tr.max_steps();
  lo.checkpoint_dir = checkpoint_dir;
  lo.checkpoint_every = tr.checkpoint_every_steps();
  lo.keep_checkpoints = static_cast<int>(tr.keep_checkpoints());
  lo.tokenizer_from = config.student().path();
  lo.budget = config.constraint().budget();
  const rl::Method m = services::MethodFrom(config.method());
  lo.has_lambda =
      m == rl::Method::kLagrangian || m == rl::Method::kSoftLagrangian;
  return lo;
}

// The STEP line of one update.
void AnnounceStep(const learner::StepStats& s, uint64_t version) {
  services::StepLine l;
  l.step = s.step;
  l.version = version;
  l.reward = s.mean_task_reward;
  l.ret = s.mean_return;
  l.satisfaction = s.satisfaction;
  l.cost = s.mean_cost;
  l.kl = s.mean_token_kl;
  l.lambda = s.lambda;
  l.loss = s.loss;
  l.diagnostics = s.diagnostics;
  l.tokens = s.tokens;
  l.wait_s = s.wait_seconds;
  l.update_s = s.update_seconds;
  l.publish_s = s.publish_seconds;
  l.checkpoint_s = s.checkpoint_seconds;
  services::Announce(services::FormatStep(l));
}

// Blocks until training is finished and lingered, or a signal came; true for
// the former. The linger answers "finished" until every actor that asked for
// work within linger_seconds before the finish has heard it (a hung or
// restarted actor asks again and hears it), at most linger_seconds. A learner
// resumed on an already finished run trains nothing and waits only for the
// actors its checkpoint saw shortly before (none: it ends at once).
bool ServeUntilFinished(services::ServiceHost& host, learner::Learner& learner,
                        absl::Duration linger, std::ostream& log) {
  std::atomic<bool> stopping{false};
  std::thread finisher([&] {
    learner.WaitUntilFinished();
    const absl::Time start = absl::Now();
    const absl::Time until = start + linger;
    if (!learner.trained_here() && learner.finished()) {
      log << "cmdistill learner: run already finished at step "
          << learner.step() << "; training nothing\n";
    }
    bool heard = false;
    // Who to wait for: every actor seen within a lease before the finish (it
    // may be mid-round), or within the linger when that is longer.
    const absl::Duration recent =
        std::max(linger, learner.options().lease.lease_duration);
    while (!stopping.load() && absl::Now() < until &&
           !(heard = learner.EveryRecentActorHeard(recent))) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    std::vector<std::string> unheard;
    if (!heard && !stopping.load() &&
        !learner.EveryRecentActorHeard(recent, &unheard) && !unheard.empty()) {
      log << "cmdistill learner: linger over; not heard \"finished\": "
          << absl::StrJoin(unheard, ", ") << "\n";
    } else if (heard) {
      log << "cmdistill learner: every recent actor heard \"finished\" after "
          << absl::StrFormat("%.1f", absl::ToDoubleSeconds(absl::Now() - start))
          << " s\n";
    }
    host.signals().Notify();
  });
  const int sig = host.WaitForShutdownSignal();
  stopping.store(true);
  learner.Close();
  finisher.join();
  return sig == ShutdownSignal::kNotified;
}

// <output_dir>/final, with the sampling settings in generation_config.json.
absl::Status SaveFinalModel(const v1::RunConfig& config,
                            const model::LanguageModel& student,
                            const std::string& final_dir) {
  checkpoint::WriteOptions wo;
  wo.copy_tokenizer_from = config.student().path();
  const auto& gen = config.generation();
  // float32 in the run file: written as the decimal the user typed.
  auto decimal = [](float x) { return std::round(x * 1e6) / 1e6; };
  wo.generation = {decimal(gen.temperature()), decimal(gen.top_p()),
                   static_cast<int64_t>(gen.top_k()),
                   static_cast<int64_t>(gen.max_new_tokens())};
  CMDISTILL_RETURN_IF_ERROR_ANNOTATED(student.Save(final_dir, wo), "saving ",
                                      final_dir);
  return absl::OkStatus();
}

// Exactly-once, from outside: groups trained and distinct prompts among
// them, in total and per epoch, restored across resumes.
void AnnounceFinished(const learner::Learner& learner,
                      const std::string& final_dir, bool complete) {
  services::FinishedLine f;
  f.step = learner.step();
  f.model = final_dir;
  f.complete = complete;
  for (const v1::EpochStatus& e : learner.epoch_status()) {
    f.prompts += e.trained();
    f.unique += e.unique();
    f.epochs.emplace_back(e.trained(), e.unique());
  }
  services::Announce(services::FormatFinished(f));
}

}  // namespace

absl::Status RunLearnerRole(const v1::RunConfig& config,
                            const std::string& resume, std::ostream& log) {
  const auto& tr = config.training();
  CMDISTILL_ASSIGN_OR_RETURN(
      auto tok, tokenizer::Tokenizer::Load(config.student().path()));
  CMDISTILL_ASSIGN_OR_RETURN(auto prompts, LoadPrompts(config, *tok, log));
  const std::string checkpoint_dir = tr.checkpoint_dir().empty()
                                         ? config.output_dir() + "/checkpoints"
                                         : tr.checkpoint_dir();
  CMDISTILL_ASSIGN_OR_RETURN(
      auto found, FindResume(resume, checkpoint_dir, prompts.size(), log));
  if (found) {
    log << "cmdistill learner: resuming from " << found->dir << " (step "
        << found->state.step() << ", policy version "
        << found->state.policy_version() << ")\n";
  }
  services::SetRoleComputeThreads(config, "learner", log);
  CMDISTILL_ASSIGN_OR_RETURN(
      auto student, model::LanguageModel::Load(
                        found ? found->dir : config.student().path(),
                        config.student().device(),
                        services::DTypeName(config.student().dtype())));
  CMDISTILL_ASSIGN_OR_RETURN(
      auto trainer, learner::PolicyTrainer::Create(student.get(),
                                                   TrainerOptionsFrom(config)));
  if (const std::string w = trainer->PrecisionWarning(); !w.empty())
    log << "cmdistill learner: " << w << "\n";
  CMDISTILL_ASSIGN_OR_RETURN(
      auto host, services::MakeRoleHost("learner", student->device_name(),
                                        config, config.services().learner()));
  CMDISTILL_ASSIGN_OR_RETURN(
      auto learner,
      learner::Learner::Create(std::move(prompts), trainer.get(),
                               host->registry().get(),
                               LearnerOptionsFrom(config, checkpoint_dir),
                               AnnounceStep, found ? &found->state : nullptr));
  learner::LearnerServiceImpl service(learner.get(), host->gate_ptr());
  CMDISTILL_RETURN_IF_ERROR(host->Start({&service}));
  // Ended by itself (true), or by a signal, perhaps during the linger of a
  // run that is nonetheless finished.
  const bool by_itself = ServeUntilFinished(
      *host, *learner, absl::Seconds(tr.linger_seconds()), log);
  const int signals_seen = host->signals().signal_count();
  const bool done = by_itself || learner->finished();
  // The final checkpoint and the final model are both tried; FINISHED is
  // announced when the final model is written. A finished run's checkpoint
  // was written before the actors were told (written again only if that
  // failed); a stopped one's is written now.
  absl::Status checkpointed = done && learner->final_checkpoint().ok()
                                  ? absl::OkStatus()
                                  : learner->SaveCheckpoint();
  checkpointed = Annotate(checkpointed, "final checkpoint");
  const std::string final_dir = config.output_dir() + "/final";
  const absl::Status saved = SaveFinalModel(config, *student, final_dir);
  if (saved.ok()) AnnounceFinished(*learner, final_dir, done);
  // A learner that resumed a finished run has nothing new to show: it ends.
  if (by_itself && learner->trained_here()) {
    services::ServeFinalScrape(config, "learner", host->signals(), signals_seen,
                               log);
  }
  host->Shutdown();
  if (!saved.ok() && !checkpointed.ok())
    log << "cmdistill learner: " << checkpointed.message() << "\n";
  return saved.ok() ? checkpointed : saved;
}

}  // namespace cmdistill::learner
