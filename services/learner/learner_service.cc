#include "services/learner/learner_service.h"

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status/grpc_status.h"
#include "services/common/policy_wire.h"

namespace cmdistill::learner {
namespace {

// Finishes a unary call and observes its latency first, so that a client that
// has its answer also finds the call counted (or, for a call finished
// elsewhere, at the end of the handler's scope).
class TimedFinish {
 public:
  TimedFinish(prometheus::Histogram* h, grpc::ServerUnaryReactor* reactor)
      : h_(h), reactor_(reactor), start_(absl::Now()) {}
  ~TimedFinish() {
    if (!observed_) Observe();
  }
  void Finish(const grpc::Status& s) {
    Observe();
    reactor_->Finish(s);
  }

 private:
  void Observe() {
    observed_ = true;
    h_->Observe(absl::ToDoubleSeconds(absl::Now() - start_));
  }
  prometheus::Histogram* h_;
  grpc::ServerUnaryReactor* reactor_;
  absl::Time start_;
  bool observed_ = false;
};

}  // namespace

// Streams one immutable snapshot in chunks; one write in flight, the next in
// OnWriteDone. Each chunk's data is a slice of the snapshot (no copy); the
// slices hold the snapshot alive until gRPC has sent them.
class LearnerServiceImpl::FetchReactor final
    : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  FetchReactor(std::shared_ptr<const PolicySnapshot> snap, size_t chunk,
               prometheus::Histogram* latency)
      : snap_(std::move(snap)),
        chunk_(chunk),
        latency_(latency),
        start_(absl::Now()) {
    header_.set_policy_version(snap_->version);
    header_.set_format("safetensors");
    header_.set_total_bytes(snap_->bytes.size());
    header_.set_num_chunks(
        static_cast<uint32_t>((snap_->bytes.size() + chunk_ - 1) / chunk_));
    header_.set_sha256_hex(snap_->sha256_hex);
    header_.set_xxh3_128_hex(snap_->xxh3_hex);
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Done(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    if (offset_ >= snap_->bytes.size()) {
      Done(grpc::Status::OK);
      return;
    }
    Next();
  }
  void OnDone() override { delete this; }

 private:
  // Observed before Finish, so that a client that has its answer also finds
  // the call counted.
  void Done(const grpc::Status& s) {
    latency_->Observe(absl::ToDoubleSeconds(absl::Now() - start_));
    Finish(s);
  }
  void Next() {
    const size_t n = std::min(chunk_, snap_->bytes.size() - offset_);
    msg_ = policy_wire::EncodeChunk(
        offset_ == 0 ? &header_ : nullptr, offset_,
        std::string_view(snap_->bytes).substr(offset_, n), snap_);
    offset_ += n;
    StartWrite(&msg_);
  }
  std::shared_ptr<const PolicySnapshot> snap_;
  size_t chunk_;
  size_t offset_ = 0;
  prometheus::Histogram* latency_;
  absl::Time start_;
  v1::PolicyHeader header_;
  grpc::ByteBuffer msg_;
};

LearnerServiceImpl::LearnerServiceImpl(Learner* learner,
                                       std::shared_ptr<net::CallGate> gate)
    : learner_(learner), gate_(std::move(gate)) {}

// The unary handlers: the gate, then the learner's work on the messages, its
// status as the call's.
template <typename Work>
grpc::ServerUnaryReactor* LearnerServiceImpl::Unary(
    grpc::CallbackServerContext* ctx, prometheus::Histogram* latency,
    Work work) {
  auto* reactor = ctx->DefaultReactor();
  TimedFinish timed(latency, reactor);
  if (gate_->Reject(ctx, reactor)) return reactor;
  timed.Finish(ToGrpcStatus(work()));
  return reactor;
}

grpc::ServerUnaryReactor* LearnerServiceImpl::LeasePrompts(
    grpc::CallbackServerContext* ctx, const v1::LeasePromptsRequest* req,
    v1::LeasePromptsResponse* resp) {
  return Unary(ctx, learner_->metrics().lease_rpc,
               [&] { return learner_->Lease(*req, resp); });
}

grpc::ServerUnaryReactor* LearnerServiceImpl::ReturnLeases(
    grpc::CallbackServerContext* ctx, const v1::ReturnLeasesRequest* req,
    v1::ReturnLeasesResponse* resp) {
  return Unary(ctx, learner_->metrics().return_rpc, [&] {
    learner_->ReturnLeases(*req, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* LearnerServiceImpl::SubmitTrajectories(
    grpc::CallbackServerContext* ctx, const v1::SubmitTrajectoriesRequest* req,
    v1::SubmitTrajectoriesResponse* resp) {
  return Unary(ctx, learner_->metrics().submit_rpc,
               [&] { return learner_->Submit(*req, resp); });
}

grpc::ServerUnaryReactor* LearnerServiceImpl::GetStatus(
    grpc::CallbackServerContext* ctx, const v1::GetStatusRequest*,
    v1::GetStatusResponse* resp) {
  return Unary(ctx, learner_->metrics().status_rpc, [&] {
    learner_->Status(resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* LearnerServiceImpl::WaitForPolicy(
    grpc::CallbackServerContext* ctx, const v1::WaitForPolicyRequest* req,
    v1::WaitForPolicyResponse* resp) {
  const absl::Time arrived = absl::Now();
  auto* reactor = ctx->DefaultReactor();
  if (gate_->Reject(ctx, reactor)) return reactor;
  prometheus::Histogram* latency = learner_->metrics().wait_rpc;
  learner_->store().Wait(
      req->after_version(), absl::Milliseconds(req->max_wait_ms()),
      [=](const PolicyStore::Answer& a) {
        resp->set_policy_version(a.version);
        resp->set_size_bytes(a.size_bytes);
        resp->set_sha256_hex(a.sha256_hex);
        latency->Observe(absl::ToDoubleSeconds(absl::Now() - arrived));
        reactor->Finish(grpc::Status::OK);
      });
  return reactor;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* LearnerServiceImpl::FetchPolicy(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request) {
  std::shared_ptr<const PolicySnapshot> snap;
  grpc::Status refusal = gate_->Admit(*ctx);
  v1::FetchPolicyRequest req;
  if (refusal.ok()) {
    grpc::ByteBuffer copy(*request);  // Deserialize consumes its buffer
    refusal = grpc::SerializationTraits<v1::FetchPolicyRequest>::Deserialize(
        &copy, &req);
    if (!refusal.ok()) {
      refusal = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                             "FetchPolicyRequest does not parse");
    }
  }
  if (refusal.ok()) {
    snap = learner_->store().Newest();
    if (req.policy_version() != 0 && req.policy_version() != snap->version) {
      refusal = grpc::Status(
          grpc::StatusCode::NOT_FOUND,
          absl::StrCat("policy version ", req.policy_version(),
                       " is not kept; the newest is ", snap->version));
    }
  }
  if (!refusal.ok()) {
    class Refused final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
     public:
      explicit Refused(const grpc::Status& s) { Finish(s); }
      void OnDone() override { delete this; }
    };
    return new Refused(refusal);
  }
  return new FetchReactor(std::move(snap), learner_->options().chunk_bytes,
                          learner_->metrics().fetch_rpc);
}

}  // namespace cmdistill::learner
