#include "common/net/call_gate.h"

#include <utility>

#include "prometheus/family.h"

namespace cmdistill::net {
namespace {

// Constant-time comparison: the time taken must not reveal how much of a token
// matched.
bool SameSecret(const std::string& a, const grpc::string_ref& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i]) ^
            static_cast<unsigned char>(b.data()[i]);
  }
  return diff == 0;
}

}  // namespace

CallGate::CallGate(std::string bearer_token, prometheus::Registry* registry)
    : expected_header_(bearer_token.empty()
                           ? std::string()
                           : "Bearer " + std::move(bearer_token)) {
  if (registry != nullptr) {
    auto& family = prometheus::BuildCounter()
                       .Name("cmdistill_rpc_refused_total")
                       .Help("RPCs refused before their handler ran, by reason")
                       .Register(*registry);
    unauthenticated_ = &family.Add({{"reason", "unauthenticated"}});
    draining_refused_ = &family.Add({{"reason", "draining"}});
  }
}

grpc::Status CallGate::Admit(const grpc::ServerContextBase& ctx) const {
  if (draining_.load()) {
    if (draining_refused_ != nullptr) draining_refused_->Increment();
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "server is shutting down");
  }
  if (expected_header_.empty()) return grpc::Status::OK;
  const auto& md = ctx.client_metadata();
  auto it = md.find(kAuthorizationHeader);
  if (it == md.end()) {
    if (unauthenticated_ != nullptr) unauthenticated_->Increment();
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing bearer token (authorization metadata)");
  }
  if (!SameSecret(expected_header_, it->second)) {
    if (unauthenticated_ != nullptr) unauthenticated_->Increment();
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "wrong bearer token");
  }
  return grpc::Status::OK;
}

bool CallGate::Reject(const grpc::CallbackServerContext* ctx,
                      grpc::ServerUnaryReactor* reactor) const {
  grpc::Status s = Admit(*ctx);
  if (s.ok()) return false;
  reactor->Finish(s);
  return true;
}

}  // namespace cmdistill::net
