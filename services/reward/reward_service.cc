#include "services/reward/reward_service.h"

#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/metrics/metrics.h"
#include "common/status/grpc_status.h"

namespace cmdistill::reward {

RewardServiceImpl::RewardServiceImpl(const Evaluator* evaluator,
                                     std::shared_ptr<net::CallGate> gate,
                                     prometheus::Registry* registry,
                                     RewardServiceOptions options)
    : evaluator_(evaluator),
      gate_(std::move(gate)),
      options_(std::move(options)),
      queue_(options_.queue_capacity) {
  refused_ = &prometheus::BuildCounter()
                  .Name("cmdistill_reward_refused_total")
                  .Help("Evaluate calls refused as invalid, by reason")
                  .Register(*registry);
  // Every known label value from the start (0), so that dashboards and rate()
  // alerts see the series before the first event.
  for (const char* r : {"empty", "oversized", "invalid_trajectory"})
    refused_->Add({{"reason", r}});
  satisfaction_ = &prometheus::BuildGauge()
                       .Name("cmdistill_reward_constraint_satisfaction_ratio")
                       .Help(
                           "Share of recent trajectories within the KL budget "
                           "(rolling window)")
                       .Register(*registry)
                       .Add({});
  queue_depth_ = &prometheus::BuildGauge()
                      .Name("cmdistill_reward_queue_depth")
                      .Help("Evaluate calls waiting for a worker")
                      .Register(*registry)
                      .Add({});
  cost_ = &prometheus::BuildHistogram()
               .Name("cmdistill_reward_trajectory_cost")
               .Help("Cost used per trajectory (normalised as configured)")
               .Register(*registry)
               .Add({}, metrics::ExponentialBuckets(0.001, 2, 16));
  violations_ = &prometheus::BuildCounter()
                     .Name("cmdistill_reward_violations_total")
                     .Help("Trajectories that broke the budget")
                     .Register(*registry)
                     .Add({});
  evaluated_ = &prometheus::BuildCounter()
                    .Name("cmdistill_reward_trajectories_total")
                    .Help("Trajectories evaluated")
                    .Register(*registry)
                    .Add({});
  correct_ =
      &prometheus::BuildCounter()
           .Name("cmdistill_reward_correct_total")
           .Help("Trajectories whose final answer was correct (task reward 1)")
           .Register(*registry)
           .Add({});
  verifier_failures_ =
      &prometheus::BuildCounter()
           .Name("cmdistill_reward_verifier_failures_total")
           .Help("Trajectories given reward 0 by a verifier problem, by kind")
           .Register(*registry);
  for (const char* k : {"no_answer", "timeout", "decode"})
    verifier_failures_->Add({{"kind", k}});
  prometheus::BuildGauge()
      .Name("cmdistill_reward_budget")
      .Help("The per-trajectory cost budget d (as normalised in the run file)")
      .Register(*registry)
      .Add({})
      .Set(evaluator_->options().reward.budget.budget);
  latency_ = &prometheus::BuildHistogram()
                  .Name("cmdistill_reward_request_seconds")
                  .Help("Evaluate latency in the service")
                  .Register(*registry)
                  .Add({}, metrics::LatencyBuckets());
  shed_ =
      &prometheus::BuildCounter()
           .Name("cmdistill_reward_shed_total")
           .Help("Evaluate calls refused with RESOURCE_EXHAUSTED (queue full)")
           .Register(*registry)
           .Add({});
  satisfaction_->Set(std::numeric_limits<double>::quiet_NaN());
  for (int i = 0; i < std::max(1, options_.workers); ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
}

RewardServiceImpl::~RewardServiceImpl() { Close(); }

void RewardServiceImpl::Close() {
  if (closed_.exchange(true)) return;
  queue_.Close();
  for (auto& w : workers_) w.join();
}

double RewardServiceImpl::satisfaction_ratio() const {
  absl::MutexLock lock(&window_mu_);
  if (window_.empty()) return std::numeric_limits<double>::quiet_NaN();
  return static_cast<double>(window_satisfied_) /
         static_cast<double>(window_.size());
}

grpc::ServerUnaryReactor* RewardServiceImpl::Evaluate(
    grpc::CallbackServerContext* ctx, const v1::EvaluateRequest* req,
    v1::EvaluateResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (gate_->Reject(ctx, reactor)) return reactor;
  if (req->trajectories_size() == 0) {
    refused_->Add({{"reason", "empty"}}).Increment();
    reactor->Finish(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty batch"));
    return reactor;
  }
  if (req->trajectories_size() > options_.max_request_trajectories) {
    refused_->Add({{"reason", "oversized"}}).Increment();
    reactor->Finish(grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat(req->trajectories_size(), " trajectories; at most ",
                     options_.max_request_trajectories)));
    return reactor;
  }
  Work w{ctx, reactor, req, resp, absl::Now()};
  if (absl::Status s = queue_.TryPush(w); !s.ok()) {
    if (absl::IsResourceExhausted(s)) shed_->Increment();
    reactor->Finish(ToGrpcStatus(
        absl::IsResourceExhausted(s)
            ? absl::ResourceExhaustedError(
                  "reward queue is full; back off and retry")
            : absl::UnavailableError("reward service is shutting down")));
    return reactor;
  }
  queue_depth_->Set(static_cast<double>(queue_.size()));
  return reactor;
}

grpc::ServerUnaryReactor* RewardServiceImpl::GetInfo(
    grpc::CallbackServerContext* ctx, const v1::GetRewardInfoRequest*,
    v1::GetRewardInfoResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (gate_->Reject(ctx, reactor)) return reactor;
  resp->set_method(options_.method_name);
  resp->set_budget(evaluator_->options().reward.budget.budget);
  resp->set_cost_normalization(options_.normalization_name);
  resp->set_cost_estimator(options_.estimator_name);
  resp->set_tokenizer_fingerprint(options_.tokenizer_fingerprint);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

void RewardServiceImpl::WorkerLoop() {
  for (;;) {
    auto batch = queue_.PopBatch(1, 1, absl::InfiniteFuture());
    if (!batch.ok()) return;
    queue_depth_->Set(static_cast<double>(queue_.size()));
    Process((*batch)[0]);
  }
}

void RewardServiceImpl::Process(const Work& w) {
  if (w.ctx->IsCancelled()) {
    w.reactor->Finish(
        grpc::Status(grpc::StatusCode::CANCELLED, "cancelled while queued"));
    return;
  }
  std::vector<v1::TrajectoryEvaluation> out;
  out.reserve(static_cast<size_t>(w.req->trajectories_size()));
  for (int i = 0; i < w.req->trajectories_size(); ++i) {
    auto ev = evaluator_->Evaluate(w.req->trajectories(i));
    if (!ev.ok()) {
      refused_->Add({{"reason", "invalid_trajectory"}}).Increment();
      w.reactor->Finish(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       absl::StrCat("trajectory ", i, " (",
                                    w.req->trajectories(i).trajectory_id(),
                                    "): ", ev.status().message())));
      return;
    }
    out.push_back(*std::move(ev));
  }
  for (auto& ev : out) {
    Record(ev);
    *w.resp->add_evaluations() = std::move(ev);
  }
  latency_->Observe(absl::ToDoubleSeconds(absl::Now() - w.arrived));
  w.reactor->Finish(grpc::Status::OK);
}

void RewardServiceImpl::Record(const v1::TrajectoryEvaluation& ev) {
  evaluated_->Increment();
  if (ev.task_reward() > 0) correct_->Increment();
  if (!ev.constraint_satisfied()) violations_->Increment();
  cost_->Observe(ev.cost_used());
  switch (ev.verifier_failure()) {
    case v1::VERIFIER_FAILURE_NO_ANSWER:
      verifier_failures_->Add({{"kind", "no_answer"}}).Increment();
      break;
    case v1::VERIFIER_FAILURE_TIMEOUT:
      verifier_failures_->Add({{"kind", "timeout"}}).Increment();
      break;
    case v1::VERIFIER_FAILURE_DECODE:
      verifier_failures_->Add({{"kind", "decode"}}).Increment();
      break;
    default:
      break;
  }
  absl::MutexLock lock(&window_mu_);
  window_.push_back(ev.constraint_satisfied());
  window_satisfied_ += ev.constraint_satisfied();
  while (window_.size() > options_.rolling_window) {
    window_satisfied_ -= window_.front();
    window_.pop_front();
  }
  satisfaction_->Set(static_cast<double>(window_satisfied_) /
                     static_cast<double>(window_.size()));
}

}  // namespace cmdistill::reward
