// Plumbing inside processes that link LibTorch (the traps of STYLE.md):
// /metrics serving and SIGTERM/SIGINT -> drain -> exit 0.
#include <ATen/Parallel.h>
#include <signal.h>

#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "cmdistill/v1/teacher.grpc.pb.h"
#include "common/metrics/http_exposer.h"
#include "common/net/client.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill {
namespace {

using ::testing::HasSubstr;

TEST(TorchProcess, MetricsEndpointServesInThisLibTorchProcess) {
  at::init_num_threads();
  ASSERT_GE(at::get_num_threads(), 1);
  auto registry = metrics::NewRegistry();
  prometheus::BuildGauge()
      .Name("cmdistill_test_value")
      .Help("v")
      .Register(*registry)
      .Add({})
      .Set(42);
  ASSERT_OK_AND_ASSIGN(auto exposer,
                       metrics::HttpExposer::Start("127.0.0.1:0", registry));
  ASSERT_OK_AND_ASSIGN(std::string body,
                       testing::HttpGet(exposer->port(), "/metrics"));
  ASSERT_OK_AND_ASSIGN(auto m, testing::ParsePrometheusText(body));
  EXPECT_EQ(m["cmdistill_test_value"], 42);
}

struct Ports {
  int grpc = 0, metrics = 0;
};

Ports ParseReady(const std::string& line) {
  Ports p;
  for (absl::string_view kv : absl::StrSplit(line, ' ')) {
    std::pair<std::string, std::string> parts =
        absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (parts.first == "grpc_port")
      (void)absl::SimpleAtoi(parts.second, &p.grpc);
    if (parts.first == "metrics_port")
      (void)absl::SimpleAtoi(parts.second, &p.metrics);
  }
  return p;
}

class ServiceProcess : public ::testing::TestWithParam<int> {};

TEST_P(ServiceProcess, ServesHealthAndMetricsThenDrainsOnSignalAndExitsZero) {
  const char* bin = std::getenv("CMDISTILL_TORCH_HOST");
  ASSERT_NE(bin, nullptr);
  testing::Subprocess child({bin});
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  ASSERT_OK_AND_ASSIGN(std::string ready, child.ReadLine(deadline));
  ASSERT_THAT(ready, HasSubstr("READY name=torch-test"));
  const Ports ports = ParseReady(ready);
  ASSERT_GT(ports.grpc, 0);
  ASSERT_GT(ports.metrics, 0);

  // /metrics, scraped over HTTP from the LibTorch process and parsed.
  ASSERT_OK_AND_ASSIGN(std::string body,
                       testing::HttpGet(ports.metrics, "/metrics"));
  ASSERT_OK_AND_ASSIGN(auto m, testing::ParsePrometheusText(body));
  EXPECT_GE(m["cmdistill_test_torch_threads"], 1);
  EXPECT_EQ(m["cmdistill_rpc_refused_total{reason=\"draining\"}"], 0);

  // Health over gRPC.
  const std::string address = "127.0.0.1:" + std::to_string(ports.grpc);
  ASSERT_OK_AND_ASSIGN(auto channel, net::MakeChannel([&] {
                         net::ChannelOptions o;
                         o.target = address;
                         return o;
                       }()));
  {
    auto health = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, {}, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }

  // A call in flight when the signal arrives must still complete (drain).
  auto stub = v1::TeacherService::NewStub(channel);
  grpc::Status held_status;
  v1::ScoreResponse held_resp;
  std::thread caller([&] {
    v1::ScoreRequest req;
    req.add_sequences()->add_completion_ids(11);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    held_status = stub->Score(&ctx, req, &held_resp);
  });
  ASSERT_OK_AND_ASSIGN(std::string held, child.ReadLine(deadline));
  EXPECT_EQ(held, "HELD");
  child.Signal(GetParam());
  caller.join();
  // A client that is done hangs up; gRPC's Shutdown otherwise waits (up to the
  // grace period) for connected clients to leave after its GOAWAY.
  stub.reset();
  channel.reset();
  EXPECT_TRUE(held_status.ok()) << held_status.error_message();
  ASSERT_EQ(held_resp.scores_size(), 1);
  EXPECT_THAT(held_resp.scores(0).sampled_logprobs(),
              ::testing::ElementsAre(-11.f));
  ASSERT_OK_AND_ASSIGN(int code, child.Wait(deadline));
  EXPECT_EQ(code, 0) << child.Stderr();
  EXPECT_THAT(child.Stderr(), HasSubstr("drained 1 held call(s), exiting"));
}

INSTANTIATE_TEST_SUITE_P(Signals, ServiceProcess,
                         ::testing::Values(SIGTERM, SIGINT),
                         [](const auto& info) {
                           return std::string(info.param == SIGTERM ? "Sigterm"
                                                                    : "Sigint");
                         });

}  // namespace
}  // namespace cmdistill
