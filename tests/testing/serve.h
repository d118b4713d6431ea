// A gRPC service served on 127.0.0.1:0 for a test, and a channel to it.
#ifndef CMDISTILL_TESTS_TESTING_SERVE_H_
#define CMDISTILL_TESTS_TESTING_SERVE_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "common/net/client.h"
#include "common/net/server.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace cmdistill::testing {

template <typename T>
std::unique_ptr<net::GrpcServer> Serve(std::shared_ptr<net::CallGate> gate,
                                       T* service) {
  net::ServerOptions o;  // 127.0.0.1:0
  auto s = net::GrpcServer::Start(o, gate, {service});
  EXPECT_OK(s.status());
  return *std::move(s);
}

inline std::shared_ptr<grpc::Channel> Dial(const net::GrpcServer& s) {
  net::ChannelOptions o;
  o.target = "127.0.0.1:" + std::to_string(s.port());
  return *net::MakeChannel(o);
}

}  // namespace cmdistill::testing

#endif  // CMDISTILL_TESTS_TESTING_SERVE_H_
