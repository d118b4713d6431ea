#include "services/teacher/teacher_service.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/metrics/metrics.h"
#include "common/rl/trajectory_checks.h"
#include "common/status/grpc_status.h"

namespace cmdistill::teacher {

struct TeacherServiceImpl::Pending {
  grpc::CallbackServerContext* ctx;
  grpc::ServerUnaryReactor* reactor;
  v1::ScoreResponse* resp;
  std::vector<model::ScoreInput> inputs;
  int64_t tokens = 0;
  int64_t top_k = 0;
  absl::Time arrived;
};

TeacherServiceImpl::TeacherServiceImpl(Scorer* scorer,
                                       std::shared_ptr<net::CallGate> gate,
                                       prometheus::Registry* registry,
                                       TeacherServiceOptions options)
    : scorer_(scorer),
      gate_(std::move(gate)),
      options_(options),
      queue_(options.queue_capacity) {
  refused_family_ = &prometheus::BuildCounter()
                         .Name("cmdistill_teacher_refused_total")
                         .Help("Score calls refused as invalid, by reason")
                         .Register(*registry);
  // Every known reason from the start (0), for dashboards and rate() alerts.
  for (const char* r : {"empty", "oversized", "length_mismatch", "too_long",
                        "token_out_of_vocab", "support_without_token"})
    refused_family_->Add({{"reason", r}});
  // A model batch holds at most one oversized request or max_batch_tokens.
  const int64_t max_tokens =
      std::max(options.max_batch_tokens, options.max_request_tokens);
  const int64_t max_sequences =
      std::max(options.max_request_sequences, options.max_batch_tokens);
  queue_depth_ = &prometheus::BuildGauge()
                      .Name("cmdistill_teacher_queue_depth")
                      .Help("Score calls waiting for the model")
                      .Register(*registry)
                      .Add({});
  prometheus::BuildGauge()
      .Name("cmdistill_teacher_queue_capacity")
      .Help("Capacity of the Score queue")
      .Register(*registry)
      .Add({})
      .Set(static_cast<double>(options.queue_capacity));
  batch_sequences_ = &prometheus::BuildHistogram()
                          .Name("cmdistill_teacher_batch_sequences")
                          .Help("Sequences per model batch")
                          .Register(*registry)
                          .Add({}, metrics::PowersOfTwoUpTo(1, max_sequences));
  batch_tokens_ = &prometheus::BuildHistogram()
                       .Name("cmdistill_teacher_batch_tokens")
                       .Help("Tokens per model batch")
                       .Register(*registry)
                       .Add({}, metrics::PowersOfTwoUpTo(16, max_tokens));
  scored_tokens_ = &prometheus::BuildCounter()
                        .Name("cmdistill_teacher_scored_tokens_total")
                        .Help("Tokens run through the teacher")
                        .Register(*registry)
                        .Add({});
  model_seconds_ = &prometheus::BuildHistogram()
                        .Name("cmdistill_teacher_model_seconds")
                        .Help("Model time per batch")
                        .Register(*registry)
                        .Add({}, metrics::LatencyBuckets());
  request_seconds_ = &prometheus::BuildHistogram()
                          .Name("cmdistill_teacher_request_seconds")
                          .Help("End-to-end Score latency in the service")
                          .Register(*registry)
                          .Add({}, metrics::LatencyBuckets());
  auto& dropped = prometheus::BuildCounter()
                      .Name("cmdistill_teacher_dropped_total")
                      .Help("Queued calls dropped before model time")
                      .Register(*registry);
  dropped_cancelled_ = &dropped.Add({{"reason", "cancelled"}});
  dropped_deadline_ = &dropped.Add({{"reason", "deadline"}});
  shed_ = &prometheus::BuildCounter()
               .Name("cmdistill_teacher_shed_total")
               .Help("Score calls refused with RESOURCE_EXHAUSTED (queue full)")
               .Register(*registry)
               .Add({});
  worker_ = std::thread([this] { WorkerLoop(); });
}

TeacherServiceImpl::~TeacherServiceImpl() { Close(); }

void TeacherServiceImpl::Close() {
  if (closed_.exchange(true)) return;
  queue_.Close();
  if (worker_.joinable()) worker_.join();
}

grpc::ServerUnaryReactor* TeacherServiceImpl::Refuse(
    grpc::ServerUnaryReactor* reactor, const std::string& reason,
    const std::string& message) {
  refused_family_->Add({{"reason", reason}}).Increment();
  reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message));
  return reactor;
}

// Long on purpose: every refusal of a Score call (gate, limits, shapes,
// vocabulary, queue) with its gRPC code and metric, then the enqueue.
grpc::ServerUnaryReactor* TeacherServiceImpl::Score(
    grpc::CallbackServerContext* ctx, const v1::ScoreRequest* req,
    v1::ScoreResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (gate_->Reject(ctx, reactor)) return reactor;
  const TeacherInfo& info = scorer_->info();
  const int n = req->sequences_size();
  if (n == 0) return Refuse(reactor, "empty", "empty batch: no sequences");
  if (n > options_.max_request_sequences) {
    return Refuse(reactor, "oversized",
                  absl::StrCat(n, " sequences; at most ",
                               options_.max_request_sequences));
  }
  auto pending = std::make_unique<Pending>();
  pending->ctx = ctx;
  pending->reactor = reactor;
  pending->resp = resp;
  pending->top_k = std::min<int64_t>(req->teacher_top_k(), info.vocab_size);
  pending->arrived = absl::Now();
  pending->inputs.reserve(n);
  rl::TrajectoryContract contract;
  contract.vocab_size = info.vocab_size;
  for (int i = 0; i < n; ++i) {
    const v1::ScoreSequence& s = req->sequences(i);
    const int64_t T = s.completion_ids_size();
    const int64_t K = s.support().k();
    model::ScoreInput in;
    if (absl::Status st = rl::ValidateTokens(s.prompt_ids(), s.completion_ids(),
                                             s.support(), contract);
        !st.ok()) {
      return Refuse(reactor, rl::TrajectoryViolation(st),
                    absl::StrCat("sequence ", i, ": ", st.message()));
    }
    const int64_t len = s.prompt_ids_size() + T;
    if (len > info.max_sequence_length) {
      return Refuse(reactor, "too_long",
                    absl::StrCat("sequence ", i, " has ", len,
                                 " tokens; the teacher allows ",
                                 info.max_sequence_length));
    }
    in.prompt_ids.assign(s.prompt_ids().begin(), s.prompt_ids().end());
    in.completion_ids.assign(s.completion_ids().begin(),
                             s.completion_ids().end());
    in.support_k = K;
    in.support_ids.assign(s.support().token_ids().begin(),
                          s.support().token_ids().end());
    pending->tokens += len;
    pending->inputs.push_back(std::move(in));
  }
  if (pending->tokens > options_.max_request_tokens) {
    return Refuse(reactor, "oversized",
                  absl::StrCat(pending->tokens, " tokens; at most ",
                               options_.max_request_tokens));
  }
  if (absl::Status s = queue_.TryPush(pending); !s.ok()) {
    if (absl::IsResourceExhausted(s)) shed_->Increment();
    reactor->Finish(
        ToGrpcStatus(s.code() == absl::StatusCode::kUnavailable
                         ? absl::UnavailableError("teacher is shutting down")
                         : absl::ResourceExhaustedError(
                               "teacher queue is full; back off and retry")));
    return reactor;
  }
  queue_depth_->Set(static_cast<double>(queue_.size()));
  return reactor;
}

grpc::ServerUnaryReactor* TeacherServiceImpl::GetInfo(
    grpc::CallbackServerContext* ctx, const v1::GetTeacherInfoRequest*,
    v1::GetTeacherInfoResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (gate_->Reject(ctx, reactor)) return reactor;
  const TeacherInfo& info = scorer_->info();
  resp->set_model_id(info.model_id);
  resp->set_vocab_size(static_cast<uint32_t>(info.vocab_size));
  resp->set_tokenizer_fingerprint(info.tokenizer_fingerprint);
  resp->set_dtype(info.dtype);
  resp->set_device(info.device);
  resp->set_max_sequence_length(
      static_cast<uint32_t>(info.max_sequence_length));
  resp->set_max_batch_tokens(static_cast<uint32_t>(options_.max_batch_tokens));
  resp->set_max_request_sequences(
      static_cast<uint32_t>(options_.max_request_sequences));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

void TeacherServiceImpl::WorkerLoop() {
  std::unique_ptr<Pending> carry;
  for (;;) {
    std::vector<std::unique_ptr<Pending>> batch;
    if (carry) {
      batch.push_back(std::move(carry));
    } else {
      auto first = queue_.PopBatch(1, 1, absl::InfiniteFuture());
      if (!first.ok()) return;  // closed and drained
      batch.push_back(std::move((*first)[0]));
    }
    int64_t tokens = batch[0]->tokens;
    const absl::Time deadline = absl::Now() + options_.batch_timeout;
    while (tokens < options_.max_batch_tokens) {
      auto more = queue_.PopBatch(1, 1, deadline);
      if (!more.ok()) break;
      std::unique_ptr<Pending>& p = (*more)[0];
      if (tokens + p->tokens > options_.max_batch_tokens) {
        carry = std::move(p);
        break;
      }
      tokens += p->tokens;
      batch.push_back(std::move(p));
    }
    queue_depth_->Set(static_cast<double>(queue_.size()));
    RunBatch(batch);
  }
}

// Long on purpose: one dynamic batch end to end (drop expired calls, merge,
// score once, split the answers back, finish each call, metrics) — the
// order matters for the deadline and metric guarantees.
void TeacherServiceImpl::RunBatch(
    std::vector<std::unique_ptr<Pending>>& batch) {
  // Calls that were cancelled or whose deadline passed cost no model time.
  std::vector<Pending*> live;
  const auto now = std::chrono::system_clock::now();
  for (auto& p : batch) {
    if (p->ctx->IsCancelled()) {
      dropped_cancelled_->Increment();
      p->reactor->Finish(
          grpc::Status(grpc::StatusCode::CANCELLED, "cancelled while queued"));
    } else if (p->ctx->deadline() < now) {
      dropped_deadline_->Increment();
      p->reactor->Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                      "deadline passed while queued"));
    } else {
      live.push_back(p.get());
    }
  }
  if (live.empty()) return;
  std::vector<model::ScoreInput> merged;
  int64_t top_k = 0, tokens = 0;
  for (Pending* p : live) {
    top_k = std::max(top_k, p->top_k);
    tokens += p->tokens;
    for (auto& in : p->inputs) merged.push_back(std::move(in));
  }
  batch_sequences_->Observe(static_cast<double>(merged.size()));
  batch_tokens_->Observe(static_cast<double>(tokens));
  const absl::Time start = absl::Now();
  auto scores = scorer_->Score(merged, top_k);
  model_seconds_->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  if (!scores.ok()) {
    for (Pending* p : live) p->reactor->Finish(ToGrpcStatus(scores.status()));
    return;
  }
  scored_tokens_->Increment(static_cast<double>(tokens));
  // The backend's answer is checked before it is indexed: a scorer that
  // returns too few scores or top-K entries fails the calls with INTERNAL
  // instead of reading out of bounds (found by fuzzing with a fake scorer).
  size_t wanted = 0;
  for (Pending* p : live) wanted += p->inputs.size();
  if (scores->size() != wanted) {
    for (Pending* p : live) {
      p->reactor->Finish(
          grpc::Status(grpc::StatusCode::INTERNAL,
                       absl::StrCat("the scorer returned ", scores->size(),
                                    " scores for ", wanted, " sequences")));
    }
    return;
  }
  size_t k = 0;
  for (Pending* p : live) {
    std::string broken;
    for (size_t i = 0; i < p->inputs.size(); ++i, ++k) {
      model::SequenceScore& s = (*scores)[k];
      if (p->top_k > 0) {
        const size_t need =
            s.sampled_logprobs.size() * static_cast<size_t>(top_k);
        if (s.top_ids.size() < need || s.top_logprobs.size() < need) {
          broken = absl::StrCat("the scorer returned ", s.top_ids.size(),
                                " top-K entries for ", need);
        }
      }
      if (!broken.empty()) continue;
      v1::SequenceScores* out = p->resp->add_scores();
      out->mutable_sampled_logprobs()->Assign(s.sampled_logprobs.begin(),
                                              s.sampled_logprobs.end());
      out->mutable_support_logprobs()->Assign(s.support_logprobs.begin(),
                                              s.support_logprobs.end());
      out->mutable_tail_logprobs()->Assign(s.tail_logprobs.begin(),
                                           s.tail_logprobs.end());
      if (p->top_k > 0) {
        // The merged batch may have asked for more than this call: keep its own
        // K.
        const int64_t K = top_k,
                      T = static_cast<int64_t>(s.sampled_logprobs.size());
        out->mutable_teacher_top()->set_k(static_cast<uint32_t>(p->top_k));
        for (int64_t t = 0; t < T; ++t) {
          for (int64_t j = 0; j < p->top_k; ++j) {
            out->mutable_teacher_top()->add_token_ids(s.top_ids[t * K + j]);
            out->add_teacher_top_logprobs(s.top_logprobs[t * K + j]);
          }
        }
      }
    }
    request_seconds_->Observe(absl::ToDoubleSeconds(absl::Now() - p->arrived));
    p->reactor->Finish(broken.empty()
                           ? grpc::Status::OK
                           : grpc::Status(grpc::StatusCode::INTERNAL, broken));
  }
}

}  // namespace cmdistill::teacher
