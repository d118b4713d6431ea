// The whole actor-learner pipeline in one process for a test: a learner over
// a real PolicyTrainer, a teacher over a random tiny model, a reward service,
// each served on 127.0.0.1:0, and actors (threads) sampling from their own
// policies. Links LibTorch (tests labelled torch only).
#ifndef CMDISTILL_TESTS_TESTING_PIPELINE_FIXTURE_H_
#define CMDISTILL_TESTS_TESTING_PIPELINE_FIXTURE_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/metrics/metrics.h"
#include "common/model/language_model.h"
#include "common/net/server.h"
#include "common/tokenizer/tokenizer.h"
#include "services/actor/actor.h"
#include "services/actor/model_policy.h"
#include "services/learner/learner.h"
#include "services/learner/learner_service.h"
#include "services/learner/policy_trainer.h"
#include "services/reward/evaluator.h"
#include "services/reward/reward_service.h"
#include "services/teacher/model_scorer.h"
#include "services/teacher/teacher_service.h"
#include "tests/testing/serve.h"

namespace cmdistill::testing {

struct PipelineSpec {
  std::vector<learner::Prompt> prompts;
  std::unique_ptr<model::LanguageModel> student;
  learner::TrainerOptions trainer;
  learner::LearnerOptions learner;
  learner::StepObserver observer;
  reward::EvaluatorOptions reward;
  // A teacher over a random model of `teacher_config` (seed 2), served at
  // start; without one, the test serves its own (or none).
  bool serve_teacher = true;
  checkpoint::ModelConfig teacher_config;
};

class InProcessPipeline {
 public:
  // Serves the learner, the reward service and (when asked) the teacher.
  InProcessPipeline(const tokenizer::Tokenizer* tok, PipelineSpec spec)
      : tok_(tok), spec_(std::move(spec)) {
    trainer_ =
        *learner::PolicyTrainer::Create(spec_.student.get(), spec_.trainer);
    learner_registry_ = metrics::NewRegistry();
    learner_gate_ = net::GrpcServer::MakeGate({}, learner_registry_.get());
    learner_ = *learner::Learner::Create(spec_.prompts, trainer_.get(),
                                         learner_registry_.get(), spec_.learner,
                                         spec_.observer);
    learner_service_ = std::make_unique<learner::LearnerServiceImpl>(
        learner_.get(), learner_gate_);
    learner_server_ = Serve(learner_gate_, learner_service_.get());
    teacher_scorer_ =
        teacher::MakeModelScorer(*model::LanguageModel::InitRandom(
                                     spec_.teacher_config, 2, "cpu", "float32"),
                                 "teacher", tok_->fingerprint(), 4096);
    teacher_registry_ = metrics::NewRegistry();
    teacher_gate_ = net::GrpcServer::MakeGate({}, teacher_registry_.get());
    teacher_service_ = std::make_unique<teacher::TeacherServiceImpl>(
        teacher_scorer_.get(), teacher_gate_, teacher_registry_.get(),
        teacher::TeacherServiceOptions{});
    if (spec_.serve_teacher)
      teacher_server_ = Serve(teacher_gate_, teacher_service_.get());
    evaluator_ = std::make_unique<reward::Evaluator>(tok_, spec_.reward);
    reward_registry_ = metrics::NewRegistry();
    reward_gate_ = net::GrpcServer::MakeGate({}, reward_registry_.get());
    reward_service_ = std::make_unique<reward::RewardServiceImpl>(
        evaluator_.get(), reward_gate_, reward_registry_.get(),
        reward::RewardServiceOptions{});
    reward_server_ = Serve(reward_gate_, reward_service_.get());
    actor_registry_ = metrics::NewRegistry();
  }
  ~InProcessPipeline() { Stop(); }

  // An actor sampling from a random tiny model (`policy_seed`), dialled to
  // the learner, the reward service and `teacher` (default: the served
  // teacher when there is one and the actor needs it).
  actor::Actor* AddActor(const actor::ActorOptions& ao, uint64_t policy_seed,
                         const checkpoint::ModelConfig& config,
                         std::shared_ptr<grpc::Channel> teacher = nullptr) {
    policies_.push_back(*model::LanguageModel::InitRandom(config, policy_seed,
                                                          "cpu", "float32"));
    seams_.push_back(
        std::make_unique<actor::ModelPolicy>(policies_.back().get()));
    if (teacher == nullptr && ao.needs_teacher && teacher_server_ != nullptr)
      teacher = Dial(*teacher_server_);
    actors_.push_back(std::make_unique<actor::Actor>(
        ao, seams_.back().get(), Dial(*learner_server_), teacher,
        Dial(*reward_server_), actor_registry_.get()));
    stops_.push_back(std::make_unique<std::atomic<bool>>(false));
    results_.push_back(absl::UnknownError("not run"));
    return actors_.back().get();
  }
  // Runs actor `a` on its own thread until it stops (see Stop/Leave).
  void Run(int a) {
    threads_.emplace_back(
        [this, a] { results_[a] = actors_[a]->Run(*stops_[a]); });
  }
  void RunAll() {
    for (int a = 0; a < static_cast<int>(actors_.size()); ++a) Run(a);
  }
  // Asks actor `a` to stop (cleanly: its unfinished leases go back).
  void Leave(int a) { stops_[a]->store(true); }
  // Waits for the learner to finish, then for every actor.
  void WaitUntilFinished() {
    learner_->WaitUntilFinished();
    JoinActors();
  }
  void JoinActors() {
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  // Shuts the servers down in STYLE.md's order. Idempotent.
  void Stop() {
    for (auto& s : stops_) s->store(true);
    JoinActors();
    if (learner_server_) {
      learner_server_->Shutdown(absl::Seconds(2), [&] { learner_->Close(); });
      learner_server_.reset();
    }
    if (teacher_server_) {
      teacher_server_->Shutdown(absl::Seconds(2),
                                [&] { teacher_service_->Close(); });
      teacher_server_.reset();
    }
    if (reward_server_) {
      reward_server_->Shutdown(absl::Seconds(2),
                               [&] { reward_service_->Close(); });
      reward_server_.reset();
    }
  }

  learner::Learner& learner() { return *learner_; }
  prometheus::Registry& learner_registry() { return *learner_registry_; }
  prometheus::Registry& actor_registry() { return *actor_registry_; }
  actor::Actor& actor(int a) { return *actors_[a]; }
  const std::vector<absl::Status>& results() const { return results_; }
  const net::GrpcServer& learner_server() const { return *learner_server_; }
  const net::GrpcServer& reward_server() const { return *reward_server_; }
  // The teacher, for a test that serves it itself (serve_teacher false).
  teacher::TeacherServiceImpl& teacher_service() { return *teacher_service_; }
  const std::shared_ptr<net::CallGate>& teacher_gate() const {
    return teacher_gate_;
  }
  teacher::Scorer* teacher_scorer() { return teacher_scorer_.get(); }

 private:
  const tokenizer::Tokenizer* tok_;
  PipelineSpec spec_;
  std::unique_ptr<learner::PolicyTrainer> trainer_;
  std::shared_ptr<prometheus::Registry> learner_registry_;
  std::shared_ptr<net::CallGate> learner_gate_;
  std::unique_ptr<learner::Learner> learner_;
  std::unique_ptr<learner::LearnerServiceImpl> learner_service_;
  std::unique_ptr<net::GrpcServer> learner_server_;
  std::unique_ptr<teacher::Scorer> teacher_scorer_;
  std::shared_ptr<prometheus::Registry> teacher_registry_;
  std::shared_ptr<net::CallGate> teacher_gate_;
  std::unique_ptr<teacher::TeacherServiceImpl> teacher_service_;
  std::unique_ptr<net::GrpcServer> teacher_server_;
  std::unique_ptr<reward::Evaluator> evaluator_;
  std::shared_ptr<prometheus::Registry> reward_registry_;
  std::shared_ptr<net::CallGate> reward_gate_;
  std::unique_ptr<reward::RewardServiceImpl> reward_service_;
  std::unique_ptr<net::GrpcServer> reward_server_;
  std::shared_ptr<prometheus::Registry> actor_registry_;
  std::vector<std::unique_ptr<model::LanguageModel>> policies_;
  std::vector<std::unique_ptr<actor::ModelPolicy>> seams_;
  std::vector<std::unique_ptr<actor::Actor>> actors_;
  std::vector<std::unique_ptr<std::atomic<bool>>> stops_;
  std::vector<absl::Status> results_;
  std::vector<std::thread> threads_;
};

}  // namespace cmdistill::testing

#endif  // CMDISTILL_TESTS_TESTING_PIPELINE_FIXTURE_H_
