// Security end to end, across real processes: teacher, reward and learner run
// with a bearer token and mutual TLS (security.token_file, tls,
// require_client_certificate). On every service, a call with no token or a
// wrong token is refused with UNAUTHENTICATED and counted in
// cmdistill_rpc_refused_total{reason="unauthenticated"}; a client without a
// certificate, or with one from another CA, never gets through the handshake;
// the right credentials work; the health service stays open (no token); the
// token appears in no log and no metric.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cmdistill/v1/learner.grpc.pb.h"
#include "cmdistill/v1/reward.grpc.pb.h"
#include "cmdistill/v1/teacher.grpc.pb.h"
#include "common/net/client.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill {
namespace {

using ::cmdistill::testing::CmdistillBinary;
using ::cmdistill::testing::PortOf;
using ::cmdistill::testing::Subprocess;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "tok-9f8e7d6c5b4a-never-printed";

struct Client {
  std::string ca, cert, key;  // cert/key empty: no client certificate
};

// A TLS channel to 127.0.0.1:port presenting `c`'s certificate (if any).
absl::StatusOr<std::shared_ptr<grpc::Channel>> Dial(int port, const Client& c) {
  net::ChannelOptions o;
  o.target = "127.0.0.1:" + std::to_string(port);
  o.use_tls = true;
  o.ca_file = c.ca;
  o.cert_file = c.cert;
  o.key_file = c.key;
  o.server_name_override = "localhost";
  return net::MakeChannel(o);
}

// One cheap authenticated RPC of the role's service.
grpc::Status Call(const std::string& role, int port, const Client& c,
                  const std::string& token) {
  auto ch = Dial(port, c);
  if (!ch.ok()) return grpc::Status(grpc::StatusCode::INTERNAL, "channel");
  net::CallOptions co;
  co.timeout = absl::Seconds(2);
  co.bearer_token = token;
  co.retry.max_attempts = 1;
  return net::CallWithRetry(co, [&](grpc::ClientContext* ctx) {
    if (role == "teacher") {
      v1::GetTeacherInfoResponse r;
      return v1::TeacherService::NewStub(*ch)->GetInfo(
          ctx, v1::GetTeacherInfoRequest(), &r);
    }
    if (role == "reward") {
      v1::GetRewardInfoResponse r;
      return v1::RewardService::NewStub(*ch)->GetInfo(
          ctx, v1::GetRewardInfoRequest(), &r);
    }
    v1::GetStatusResponse r;
    return v1::LearnerService::NewStub(*ch)->GetStatus(
        ctx, v1::GetStatusRequest(), &r);
  });
}

grpc::Status Health(int port, const Client& c) {
  auto ch = Dial(port, c);
  if (!ch.ok()) return grpc::Status(grpc::StatusCode::INTERNAL, "channel");
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  grpc::health::v1::HealthCheckResponse r;
  return grpc::health::v1::Health::NewStub(*ch)->Check(
      &ctx, grpc::health::v1::HealthCheckRequest(), &r);
}

TEST(Security, TokenAndMutualTlsRefuseEveryIntruderOnEveryService) {
  testing::TempDir dir;
  ASSERT_OK(testing::MakeTinyTaskAndModels(dir, 8));
  ASSERT_OK_AND_ASSIGN(auto certs, testing::MakeTestCertificates(dir.path()));
  const std::string token_file = dir.Write("token", kToken);
  const std::string run = dir.Write(
      "run.yaml",
      "output_dir: " + dir.File("run") +
          "\nstudent: {path: " + dir.File("student") +
          ", device: cpu}\nteacher: {path: " + dir.File("teacher") +
          ", device: cpu}\ndata: {train_path: " + dir.File("data/train.jsonl") +
          "}\ngeneration: {max_new_tokens: 6, samples_per_prompt: 2}\n"
          "training: {prompts_per_step: 2, max_steps: 2}\n"
          "reward: {answer_strictness: last_number}\n"
          "security:\n  token_file: " +
          token_file +
          "\n  tls: true\n  require_client_certificate: true\n"
          "  server: {cert_file: " +
          certs.server_cert + ", key_file: " + certs.server_key +
          ", ca_file: " + certs.ca_cert +
          "}\n"
          "services:\n"
          "  learner: {listen: \"127.0.0.1:0\", metrics_listen: "
          "\"127.0.0.1:0\"}\n"
          "  teacher: {listen: \"127.0.0.1:0\", metrics_listen: "
          "\"127.0.0.1:0\"}\n"
          "  reward: {listen: \"127.0.0.1:0\", metrics_listen: "
          "\"127.0.0.1:0\"}\n");
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  const Client good{certs.ca_cert, certs.client_cert, certs.client_key};
  const Client no_cert{certs.ca_cert, "", ""};
  const Client other_ca{certs.ca_cert, certs.other_client_cert,
                        certs.other_client_key};
  std::vector<std::unique_ptr<Subprocess>> procs;
  for (const std::string role : {"teacher", "reward", "learner"}) {
    SCOPED_TRACE(role);
    procs.push_back(std::make_unique<Subprocess>(
        std::vector<std::string>{CmdistillBinary(), role, "--config", run}));
    ASSERT_OK_AND_ASSIGN(std::string ready, procs.back()->ReadLine(deadline));
    const int port = PortOf(ready), metrics = PortOf(ready, "metrics_port");
    ASSERT_GT(port, 0) << ready;
    ASSERT_GT(metrics, 0) << ready;
    // The right client gets through; the health service needs no token.
    grpc::Status s = Call(role, port, good, kToken);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(Health(port, good).ok());
    // No token, a wrong token: refused by the gate, with its status.
    EXPECT_EQ(Call(role, port, good, "").error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(Call(role, port, good, "tok-guess").error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    // No client certificate, or one from another CA: the handshake fails, so
    // not even the right token reaches a handler.
    EXPECT_FALSE(Call(role, port, no_cert, kToken).ok());
    EXPECT_FALSE(Call(role, port, other_ca, kToken).ok());
    EXPECT_FALSE(Health(port, other_ca).ok());
    // Counted, and the token is not in the metrics.
    ASSERT_OK_AND_ASSIGN(std::string body, net::HttpGet(metrics, "/metrics"));
    ASSERT_OK_AND_ASSIGN(auto m, testing::ParsePrometheusText(body));
    EXPECT_EQ(m["cmdistill_rpc_refused_total{reason=\"unauthenticated\"}"], 2);
    EXPECT_THAT(body, Not(HasSubstr(kToken)));
  }
  for (auto& p : procs) p->Signal(SIGTERM);
  for (auto& p : procs) {
    for (auto line = p->ReadLine(deadline); line.ok();
         line = p->ReadLine(deadline))
      EXPECT_THAT(*line, Not(HasSubstr(kToken)));
    ASSERT_OK_AND_ASSIGN(int code, p->Wait(deadline));
    EXPECT_EQ(code, 0) << p->Stderr();
    EXPECT_THAT(p->Stderr(), Not(HasSubstr(kToken)));
  }
}

}  // namespace
}  // namespace cmdistill
