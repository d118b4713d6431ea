#include "services/actor/actor.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/metrics/metrics.h"
#include "common/status/grpc_status.h"
#include "common/status/status_macros.h"
#include "common/tokenizer/fingerprint.h"
#include "common/util/sha256.h"
#include "common/util/xxh3.h"
#include "services/common/policy_wire.h"
#include "services/common/trajectory.h"

namespace cmdistill::actor {
namespace {

constexpr grpc::StatusCode kCodes[] = {grpc::StatusCode::OK,
                                       grpc::StatusCode::CANCELLED,
                                       grpc::StatusCode::INVALID_ARGUMENT,
                                       grpc::StatusCode::DEADLINE_EXCEEDED,
                                       grpc::StatusCode::NOT_FOUND,
                                       grpc::StatusCode::RESOURCE_EXHAUSTED,
                                       grpc::StatusCode::FAILED_PRECONDITION,
                                       grpc::StatusCode::OUT_OF_RANGE,
                                       grpc::StatusCode::UNAVAILABLE,
                                       grpc::StatusCode::UNAUTHENTICATED,
                                       grpc::StatusCode::INTERNAL};

// Asks for transparent huge pages over a fresh receive buffer (before its
// pages are touched): a multi-GB buffer otherwise takes one page fault per
// 4 KiB the first time it fills, seconds on a VM. A no-op where THP is off.
void AdviseHugePages(char* data, size_t n) {
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t begin =
      (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + n) & ~(kHuge - 1);
  if (end > begin)
    madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

const char* CodeName(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::OK:
      return "ok";
    case grpc::StatusCode::CANCELLED:
      return "cancelled";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "invalid_argument";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "deadline_exceeded";
    case grpc::StatusCode::NOT_FOUND:
      return "not_found";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "resource_exhausted";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "failed_precondition";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "out_of_range";
    case grpc::StatusCode::UNAVAILABLE:
      return "unavailable";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "unauthenticated";
    default:
      return "other";
  }
}

}  // namespace

Actor::Actor(ActorOptions options, Policy* policy,
             std::shared_ptr<grpc::Channel> learner,
             std::shared_ptr<grpc::Channel> teacher,
             std::shared_ptr<grpc::Channel> reward,
             prometheus::Registry* registry)
    : o_(std::move(options)),
      policy_(policy),
      learner_channel_(learner),
      learner_(v1::LearnerService::NewStub(learner)),
      teacher_(teacher ? v1::TeacherService::NewStub(teacher) : nullptr),
      reward_(v1::RewardService::NewStub(reward)) {
  rpcs_ = &prometheus::BuildCounter()
               .Name("cmdistill_actor_rpcs_total")
               .Help("RPC outcomes by peer and code (after retries)")
               .Register(*registry);
  // Every peer and code from the start (0), so that rate() alerts see the
  // first burst of errors.
  for (const char* peer : {"learner", "teacher", "reward"}) {
    for (grpc::StatusCode c : kCodes)
      rpcs_->Add({{"peer", peer}, {"code", CodeName(c)}});
  }
  retries_ = &prometheus::BuildCounter()
                  .Name("cmdistill_actor_rpc_retries_total")
                  .Help(
                      "Attempts beyond the first (backoff after UNAVAILABLE "
                      "or RESOURCE_EXHAUSTED), by peer")
                  .Register(*registry);
  for (const char* peer : {"learner", "teacher", "reward"})
    retries_->Add({{"peer", peer}});
  auto& latency = prometheus::BuildHistogram()
                      .Name("cmdistill_actor_rpc_seconds")
                      .Help(
                          "Client-side RPC latency by peer and method, "
                          "retries and backoff included")
                      .Register(*registry);
  for (int m = 0; m < kNumRpcs; ++m) {
    latency_[m] = &latency.Add({{"peer", kRpcPeer[m]}, {"method", kRpcName[m]}},
                               metrics::LatencyBuckets());
  }
  tokens_ = &prometheus::BuildCounter()
                 .Name("cmdistill_actor_tokens_generated_total")
                 .Help("Completion tokens generated")
                 .Register(*registry)
                 .Add({});
  trajectories_ = &prometheus::BuildCounter()
                       .Name("cmdistill_actor_trajectories_total")
                       .Help("Trajectories generated and submitted")
                       .Register(*registry)
                       .Add({});
  auto& phase = prometheus::BuildHistogram()
                    .Name("cmdistill_actor_round_phase_seconds")
                    .Help(
                        "Where a round's wall time goes, per completed round: "
                        "sync (policy), lease, sampling, teacher (scoring), "
                        "reward, submit, idle (no prompts: waiting for a new "
                        "policy)")
                    .Register(*registry);
  for (int p = 0; p < kNumPhases; ++p) {
    phase_seconds_[p] =
        &phase.Add({{"phase", kPhaseName[p]}}, metrics::LatencyBuckets());
  }
  round_seconds_ = &prometheus::BuildHistogram()
                        .Name("cmdistill_actor_round_seconds")
                        .Help(
                            "Wall time of a completed round (its phases "
                            "and the bookkeeping between them)")
                        .Register(*registry)
                        .Add({}, metrics::LatencyBuckets());
  version_gauge_ = &prometheus::BuildGauge()
                        .Name("cmdistill_actor_policy_version")
                        .Help("Policy version held by this actor")
                        .Register(*registry)
                        .Add({});
}

void Actor::Count(Rpc rpc, const grpc::Status& s, absl::Time start) {
  if (rpc <= kReturnLeases && s.error_code() != grpc::StatusCode::UNAVAILABLE &&
      s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
    learner_seen_ = absl::Now();
  }
  rpcs_->Add({{"peer", kRpcPeer[rpc]}, {"code", CodeName(s.error_code())}})
      .Increment();
  if (attempts_ > 1) {
    retries_->Add({{"peer", kRpcPeer[rpc]}})
        .Increment(static_cast<double>(attempts_ - 1));
  }
  attempts_ = 1;
  latency_[rpc]->Observe(absl::ToDoubleSeconds(absl::Now() - start));
}

template <typename Attempt>
grpc::Status Actor::Call(Rpc rpc, Attempt&& attempt) {
  const absl::Time start = absl::Now();
  grpc::Status s =
      net::CallWithRetry(o_.call, std::forward<Attempt>(attempt), &attempts_);
  Count(rpc, s, start);
  return s;
}

std::string Actor::Health(absl::Time now, absl::Duration stall) const {
  if (stall <= absl::ZeroDuration()) return "";
  const absl::Duration idle = now - absl::FromUnixNanos(progress_ns_.load());
  if (idle <= stall) return "";
  return absl::StrFormat(
      "no progress for %.0f s (actor.stall_seconds = %.0f): the actor's loop "
      "is stuck",
      absl::ToDoubleSeconds(idle), absl::ToDoubleSeconds(stall));
}

bool Actor::LearnerPastHorizon() {
  if (o_.learner_horizon <= absl::ZeroDuration() || !learner_seen_ ||
      absl::Now() - *learner_seen_ < o_.learner_horizon) {
    return false;
  }
  // Once more, briefly: a learner that answers anything is there.
  v1::GetStatusResponse st;
  grpc::ClientContext ctx;
  net::PrepareContext(&ctx, absl::Now() + absl::Seconds(5),
                      o_.call.bearer_token);
  const grpc::StatusCode code = learner_->GetStatus(&ctx, {}, &st).error_code();
  if (code != grpc::StatusCode::UNAVAILABLE &&
      code != grpc::StatusCode::DEADLINE_EXCEEDED) {
    learner_seen_ = absl::Now();
    return false;
  }
  std::fprintf(stderr,
               "%s: the learner has not answered for %.0f s "
               "(actor.learner_horizon_seconds = %.0f): the run has ended "
               "without this actor hearing it; stopping\n",
               o_.actor_id.c_str(),
               absl::ToDoubleSeconds(absl::Now() - *learner_seen_),
               absl::ToDoubleSeconds(o_.learner_horizon));
  learner_gone_ = true;
  return true;
}

absl::Status Actor::CheckTeacher() {
  if (!o_.needs_teacher || teacher_ == nullptr) return absl::OkStatus();
  v1::GetTeacherInfoResponse info;
  grpc::Status s = Call(kTeacherGetInfo, [&](grpc::ClientContext* ctx) {
    return teacher_->GetInfo(ctx, {}, &info);
  });
  if (!s.ok()) return FromGrpcStatus(s);
  if (info.vocab_size() != static_cast<uint32_t>(policy_->vocab_size())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the teacher's vocabulary (", info.vocab_size(),
        ") differs from the student's (", policy_->vocab_size(), ")"));
  }
  CMDISTILL_RETURN_IF_ERROR(tokenizer::CheckSameTokenizer(
      o_.tokenizer_fingerprint, info.tokenizer_fingerprint(), "the teacher"));
  return absl::OkStatus();
}

absl::Status Actor::SyncPolicy(bool force) {
  v1::WaitForPolicyRequest wreq;
  wreq.set_after_version(version_);
  wreq.set_max_wait_ms(0);
  v1::WaitForPolicyResponse wresp;
  grpc::Status s = Call(kWaitForPolicy, [&](grpc::ClientContext* ctx) {
    return learner_->WaitForPolicy(ctx, wreq, &wresp);
  });
  if (!s.ok()) return FromGrpcStatus(s);
  // Any difference matters: a learner that restarted from a checkpoint may be
  // *behind* the version this actor holds (that history was lost with it);
  // follow the learner.
  // The digest too: that learner also reuses the version numbers of the lost
  // history, for other weights.
  if (!force && have_policy_ && wresp.policy_version() == version_ &&
      (wresp.sha256_hex().empty() || wresp.sha256_hex() == policy_sha256_))
    return absl::OkStatus();
  // Two receive buffers are kept between fetches (their pages stay mapped: a
  // fresh multi-GB buffer per version costs more in page faults than the
  // copy); the policy may hold the last one it adopted, so the other one
  // receives. Each chunk is read in place from gRPC's slices (policy_wire),
  // copied once into the buffer and hashed there while still in cache.
  std::shared_ptr<std::string> target;
  for (auto& b : receive_buffers_) {
    if (!b) b = std::make_shared<std::string>();
    if (b.use_count() == 1) {
      target = b;
      break;
    }
  }
  if (!target) target = std::make_shared<std::string>();  // both held
  std::string& bytes = *target;
  v1::PolicyHeader header;
  std::string digest;
  s = Call(kFetchPolicy, [&](grpc::ClientContext* ctx) {
    bytes.clear();
    header.Clear();
    std::optional<Xxh3> fast;
    std::optional<Sha256> slow;  // a learner that sends no XXH3
    auto on_chunk = [&](const policy_wire::Chunk& c) -> grpc::Status {
      auto bad = [](const std::string& what) {
        return grpc::Status(grpc::StatusCode::DATA_LOSS,
                            "policy snapshot stream: " + what);
      };
      if (c.header) {
        header = *c.header;
        if (bytes.capacity() < header.total_bytes()) {
          try {
            bytes.reserve(header.total_bytes());
          } catch (const std::exception&) {  // length_error, bad_alloc
            return bad(
                absl::StrCat("cannot hold ", header.total_bytes(), " bytes"));
          }
          AdviseHugePages(bytes.data(), bytes.capacity());
        }
        if (header.xxh3_128_hex().empty()) {
          slow.emplace();
        } else {
          fast.emplace();
        }
      }
      if (!fast && !slow) return bad("the first chunk has no header");
      if (c.offset != bytes.size()) {
        return bad(absl::StrCat("chunk at offset ", c.offset, ", expected ",
                                bytes.size()));
      }
      if (bytes.size() + c.size > header.total_bytes()) {
        return bad(absl::StrCat("more than the announced ",
                                header.total_bytes(), " bytes"));
      }
      for (std::string_view piece : c.data) {
        const size_t at = bytes.size();
        bytes.append(piece);
        const std::string_view landed(bytes.data() + at, piece.size());
        if (fast) fast->Update(landed);
        if (slow) slow->Update(landed);
      }
      return grpc::Status::OK;
    };
    grpc::Status st = policy_wire::Fetch(learner_channel_.get(), ctx,
                                         v1::FetchPolicyRequest(), on_chunk);
    digest = fast ? fast->Hex() : slow ? slow->Hex() : "";
    return st;
  });
  if (!s.ok()) return FromGrpcStatus(s);
  const std::string& expected = header.xxh3_128_hex().empty()
                                    ? header.sha256_hex()
                                    : header.xxh3_128_hex();
  if (bytes.size() != header.total_bytes() || digest != expected) {
    return absl::DataLossError(
        "policy snapshot failed its size/checksum check");
  }
  // The policy may now keep `target`: it is not written again while held.
  CMDISTILL_RETURN_IF_ERROR(policy_->AdoptWeights(target));
  version_ = header.policy_version();
  policy_sha256_ = header.sha256_hex();  // the bytes matched its checksum
  have_policy_ = true;
  version_gauge_->Set(static_cast<double>(version_));
  return absl::OkStatus();
}

absl::Status Actor::Round(const std::atomic<bool>& stop) {
  RoundTimes times;
  CMDISTILL_RETURN_IF_ERROR(SyncPolicy());
  times.Lap(kSync);
  Progress();
  v1::LeasePromptsResponse leases;
  CMDISTILL_RETURN_IF_ERROR(Lease(&leases));
  times.Lap(kLease);
  Progress();
  if (leases.leases_size() == 0) {
    IdleWait();  // nothing to do until the learner trains
    times.Lap(kIdle);
    ObserveRound(times);
    return absl::OkStatus();
  }
  CMDISTILL_ASSIGN_OR_RETURN(auto trajs, Sample(leases));
  times.Lap(kSampling);
  Progress();
  if (stop.load()) {
    ReturnLeases(leases);  // re-issued at once
    return absl::CancelledError("stopping");
  }
  if (o_.needs_teacher) {
    CMDISTILL_RETURN_IF_ERROR(ScoreWithTeacher(&trajs));
    times.Lap(kTeacher);
    Progress();
  }
  CMDISTILL_RETURN_IF_ERROR(EvaluateAndSubmit(&trajs, &times));
  ObserveRound(times);
  ++rounds_;
  return absl::OkStatus();
}

void Actor::RoundTimes::Lap(Phase p) {
  const absl::Time now = absl::Now();
  seconds[p] += absl::ToDoubleSeconds(now - last);
  last = now;
}

void Actor::ObserveRound(const RoundTimes& times) {
  for (int p = 0; p < kNumPhases; ++p) {
    phase_seconds_[p]->Observe(times.seconds[p]);
  }
  round_seconds_->Observe(absl::ToDoubleSeconds(times.last - times.start));
}

absl::Status Actor::Lease(v1::LeasePromptsResponse* leases) {
  v1::LeasePromptsRequest lreq;
  lreq.set_actor_id(o_.actor_id);
  lreq.set_max_prompts(o_.prompts_per_lease);
  grpc::Status s = Call(kLeasePrompts, [&](grpc::ClientContext* ctx) {
    return learner_->LeasePrompts(ctx, lreq, leases);
  });
  return s.ok() ? absl::OkStatus() : FromGrpcStatus(s);
}

void Actor::IdleWait() {
  // Wait for a new policy (bounded by idle_wait).
  v1::WaitForPolicyRequest w;
  w.set_after_version(version_);
  w.set_max_wait_ms(
      static_cast<uint32_t>(absl::ToInt64Milliseconds(o_.idle_wait)));
  v1::WaitForPolicyResponse wr;
  grpc::ClientContext ctx;
  net::PrepareContext(&ctx, absl::Now() + o_.idle_wait + absl::Seconds(10),
                      o_.call.bearer_token);
  const absl::Time start = absl::Now();
  Count(kWaitForPolicy, learner_->WaitForPolicy(&ctx, w, &wr), start);
}

absl::StatusOr<std::vector<v1::Trajectory>> Actor::Sample(
    const v1::LeasePromptsResponse& leases) {
  // G samples per leased prompt.
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::pair<int, uint32_t>> who;  // (lease index, sample index)
  for (int i = 0; i < leases.leases_size(); ++i) {
    const auto& l = leases.leases(i);
    for (uint32_t g = 0; g < l.samples(); ++g) {
      prompts.emplace_back(l.prompt_ids().begin(), l.prompt_ids().end());
      who.push_back({i, g});
    }
  }
  model::SamplingOptions so = o_.sampling;
  so.seed = o_.sampling.seed * 1000003 + static_cast<uint64_t>(rounds_);
  CMDISTILL_ASSIGN_OR_RETURN(auto gen, policy_->Generate(prompts, so));
  std::vector<v1::Trajectory> trajs(prompts.size());
  for (size_t k = 0; k < prompts.size(); ++k) {
    const auto& l = leases.leases(who[k].first);
    const auto& g = gen[k];
    v1::Trajectory& t = trajs[k];
    *t.mutable_lease() = l.lease();
    t.set_sample_index(who[k].second);
    t.set_trajectory_id(absl::StrCat(l.lease().lease_id(), "/", who[k].second));
    t.set_policy_version(version_);  // the behaviour policy
    services::FillSample(l.prompt_ids(), g, /*with_support=*/true, &t);
    t.set_gold_answer(l.gold_answer());
    t.set_actor_id(o_.actor_id);
    tokens_->Increment(static_cast<double>(g.tokens.size()));
  }
  return trajs;
}

void Actor::ReturnLeases(const v1::LeasePromptsResponse& leases) {
  v1::ReturnLeasesRequest rr;
  for (const auto& l : leases.leases()) rr.add_lease_ids(l.lease().lease_id());
  v1::ReturnLeasesResponse rresp;
  grpc::ClientContext ctx;
  net::PrepareContext(&ctx, absl::Now() + absl::Seconds(5),
                      o_.call.bearer_token);
  const absl::Time start = absl::Now();
  Count(kReturnLeases, learner_->ReturnLeases(&ctx, rr, &rresp), start);
}

absl::Status Actor::ScoreWithTeacher(std::vector<v1::Trajectory>* trajs) {
  v1::ScoreRequest sreq;
  for (const auto& t : *trajs) {
    auto* q = sreq.add_sequences();
    q->mutable_prompt_ids()->CopyFrom(t.prompt_ids());
    q->mutable_completion_ids()->CopyFrom(t.completion_ids());
    *q->mutable_support() = t.support();
  }
  v1::ScoreResponse sresp;
  grpc::Status s = Call(kTeacherScore, [&](grpc::ClientContext* ctx) {
    sresp.Clear();
    return teacher_->Score(ctx, sreq, &sresp);
  });
  if (!s.ok()) return FromGrpcStatus(s);
  if (sresp.scores_size() != sreq.sequences_size()) {
    return absl::DataLossError(
        absl::StrCat("the teacher answered ", sresp.scores_size(),
                     " scores for ", sreq.sequences_size(), " sequences"));
  }
  for (size_t k = 0; k < trajs->size(); ++k) {
    const auto& sc = sresp.scores(static_cast<int>(k));
    v1::Trajectory& t = (*trajs)[k];
    t.mutable_teacher_support_logprobs()->CopyFrom(sc.support_logprobs());
    t.mutable_teacher_tail_logprobs()->CopyFrom(sc.tail_logprobs());
    t.mutable_teacher_sampled_logprobs()->CopyFrom(sc.sampled_logprobs());
  }
  return absl::OkStatus();
}

absl::Status Actor::EvaluateAndSubmit(std::vector<v1::Trajectory>* trajs,
                                      RoundTimes* times) {
  // Rewards and the constraint transform.
  v1::EvaluateRequest ereq;
  for (const auto& t : *trajs) *ereq.add_trajectories() = t;
  v1::EvaluateResponse eresp;
  grpc::Status s = Call(kRewardEvaluate, [&](grpc::ClientContext* ctx) {
    eresp.Clear();
    return reward_->Evaluate(ctx, ereq, &eresp);
  });
  if (!s.ok()) return FromGrpcStatus(s);
  if (eresp.evaluations_size() != ereq.trajectories_size()) {
    return absl::DataLossError(absl::StrCat(
        "the reward service answered ", eresp.evaluations_size(),
        " evaluations for ", ereq.trajectories_size(), " trajectories"));
  }
  times->Lap(kReward);
  v1::SubmitTrajectoriesRequest sub;
  for (size_t k = 0; k < trajs->size(); ++k) {
    *(*trajs)[k].mutable_evaluation() = eresp.evaluations(static_cast<int>(k));
    *sub.add_trajectories() = std::move((*trajs)[k]);
  }
  v1::SubmitTrajectoriesResponse subr;
  s = Call(kSubmitTrajectories, [&](grpc::ClientContext* ctx) {
    subr.Clear();
    return learner_->SubmitTrajectories(ctx, sub, &subr);
  });
  if (!s.ok()) return FromGrpcStatus(s);
  times->Lap(kSubmit);
  trajectories_->Increment(static_cast<double>(sub.trajectories_size()));
  return absl::OkStatus();
}

namespace {

// A bug or a misconfiguration: retrying will not help.
bool Permanent(const absl::Status& s) {
  return absl::IsInvalidArgument(s) || absl::IsFailedPrecondition(s) ||
         absl::IsUnauthenticated(s) || absl::IsPermissionDenied(s);
}

}  // namespace

absl::Status Actor::Run(const std::atomic<bool>& stop) {
  // The start-up check is retried like any round: a teacher that is down for
  // minutes (restarting, not scheduled yet) delays the actor, it does not end
  // it. Each failed attempt is counted in the RPC metrics; the first of a run
  // of failures is logged.
  bool logged = false;
  for (absl::Duration backoff = o_.call.retry.initial_backoff;;) {
    Progress();
    const absl::Status s = CheckTeacher();
    if (s.ok()) break;
    if (Permanent(s)) return s;
    if (stop.load() || LearnerPastHorizon()) return absl::OkStatus();
    if (!logged) {
      std::fprintf(stderr,
                   "%s: the teacher is not reachable yet (%s); retrying until "
                   "it is\n",
                   o_.actor_id.c_str(), std::string(s.message()).c_str());
      logged = true;
    }
    absl::SleepFor(backoff);
    backoff = std::min(2 * backoff, o_.call.retry.max_backoff);
  }
  while (!stop.load()) {
    Progress();
    if (o_.max_rounds > 0 && rounds_ >= o_.max_rounds) return absl::OkStatus();
    absl::Status s = Round(stop);
    if (absl::IsOutOfRange(s)) return absl::OkStatus();  // training finished
    if (absl::IsCancelled(s)) break;
    if (Permanent(s)) return s;
    // Anything else (a peer restarting, a deadline): the round is abandoned,
    // its leases expire and are re-issued; try again after a pause, unless
    // the learner has stayed away past the horizon (the run ended).
    if (!s.ok()) {
      if (LearnerPastHorizon()) return absl::OkStatus();
      absl::SleepFor(o_.call.retry.initial_backoff);
    }
  }
  return absl::OkStatus();
}

}  // namespace cmdistill::actor
