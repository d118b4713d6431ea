#include "common/metrics/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/metrics/http_exposer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::metrics {
namespace {

using ::cmdistill::testing::StatusIs;
using ::testing::DoubleEq;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(Buckets, ExponentialAndLinear) {
  EXPECT_THAT(ExponentialBuckets(1, 2, 4), ElementsAre(1, 2, 4, 8));
  EXPECT_THAT(LinearBuckets(0.5, 0.25, 3), ElementsAre(0.5, 0.75, 1.0));
  EXPECT_TRUE(ExponentialBuckets(0, 2, 4).empty());
  EXPECT_TRUE(ExponentialBuckets(1, 1, 4).empty());
  auto lat = LatencyBuckets();
  ASSERT_EQ(lat.size(), 21u);
  EXPECT_THAT(lat.front(), DoubleEq(1e-4));
  EXPECT_GT(lat.back(), 100.0);
  EXPECT_TRUE(std::is_sorted(lat.begin(), lat.end()));
}

TEST(SplitHostPort, Forms) {
  std::string host;
  int port = -1;
  ASSERT_OK(SplitHostPort("127.0.0.1:9100", &host, &port));
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 9100);
  ASSERT_OK(SplitHostPort("[::1]:0", &host, &port));
  EXPECT_EQ(host, "::1");
  ASSERT_OK(SplitHostPort(":8080", &host, &port));
  EXPECT_EQ(host, "");
  EXPECT_THAT(SplitHostPort("localhost", &host, &port),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      SplitHostPort("h:70000", &host, &port),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0..65535")));
}

TEST(HttpExposer, ServesMetricsOverHttp) {
  auto registry = NewRegistry();
  auto& counter = prometheus::BuildCounter()
                      .Name("cmdistill_test_events_total")
                      .Help("events")
                      .Register(*registry)
                      .Add({{"kind", "a"}});
  auto& hist = prometheus::BuildHistogram()
                   .Name("cmdistill_test_latency_seconds")
                   .Help("latency")
                   .Register(*registry)
                   .Add({}, ExponentialBuckets(0.001, 10, 3));
  counter.Increment(3);
  hist.Observe(0.005);
  hist.Observe(5);
  ASSERT_OK_AND_ASSIGN(auto exposer,
                       HttpExposer::Start("127.0.0.1:0", registry));
  ASSERT_GT(exposer->port(), 0);
  ASSERT_OK_AND_ASSIGN(std::string body, cmdistill::testing::HttpGet(
                                             exposer->port(), "/metrics"));
  ASSERT_OK_AND_ASSIGN(auto m, cmdistill::testing::ParsePrometheusText(body));
  EXPECT_EQ(m["cmdistill_test_events_total{kind=\"a\"}"], 3);
  EXPECT_EQ(m["cmdistill_test_latency_seconds_count"], 2);
  EXPECT_EQ(m["cmdistill_test_latency_seconds_bucket{le=\"0.01\"}"], 1);
  EXPECT_EQ(m["cmdistill_test_latency_seconds_bucket{le=\"+Inf\"}"], 2);
  EXPECT_THAT(body, HasSubstr("# TYPE cmdistill_test_events_total counter"));
  // The scrape itself is counted; the second scrape sees the first.
  ASSERT_OK_AND_ASSIGN(std::string again, cmdistill::testing::HttpGet(
                                              exposer->port(), "/metrics"));
  ASSERT_OK_AND_ASSIGN(auto m2, cmdistill::testing::ParsePrometheusText(again));
  EXPECT_EQ(m2["cmdistill_metrics_scrapes_total"], 2);
  EXPECT_THAT(cmdistill::testing::HttpGet(exposer->port(), "/nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("404")));
  ASSERT_OK_AND_ASSIGN(std::string health, cmdistill::testing::HttpGet(
                                               exposer->port(), "/healthz"));
  EXPECT_EQ(health, "ok\n");
  exposer->Stop();
  EXPECT_THAT(cmdistill::testing::HttpGet(exposer->port(), "/metrics"),
              StatusIs(absl::StatusCode::kUnavailable));
}

int Connect(int port) {
  const int fd = cmdistill::testing::ConnectLoopback(port);
  EXPECT_GE(fd, 0) << "cannot connect to 127.0.0.1:" << port;
  return fd;
}

TEST(HttpExposer, SlowAndIdleClientsDoNotDelayAScrape) {
  // 100 idle connections (more than the 64 slots) and a slow client that has
  // sent half a request: the one-connection-at-a-time server this replaced
  // waited 2 s on each of them in turn, so a scrape behind them timed out.
  auto registry = NewRegistry();
  ASSERT_OK_AND_ASSIGN(auto exposer,
                       HttpExposer::Start("127.0.0.1:0", registry));
  std::vector<int> idle;
  for (int i = 0; i < 100; ++i) idle.push_back(Connect(exposer->port()));
  const int slow = Connect(exposer->port());
  const std::string first = "GET /metr";
  ASSERT_EQ(send(slow, first.data(), first.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(first.size()));
  // A scrape is answered at once, and counts the evictions it caused.
  ASSERT_OK_AND_ASSIGN(std::string body, cmdistill::testing::HttpGet(
                                             exposer->port(), "/metrics"));
  ASSERT_OK_AND_ASSIGN(auto m, cmdistill::testing::ParsePrometheusText(body));
  EXPECT_EQ(m["cmdistill_metrics_scrapes_total"], 1);
  EXPECT_GE(m["cmdistill_metrics_connections_evicted_total"], 100 + 1 - 64);
  // The slow client, still within its deadline, gets its answer too.
  const std::string rest = "ics HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(send(slow, rest.data(), rest.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(rest.size()));
  std::string response;
  char buf[4096];
  for (ssize_t n; (n = recv(slow, buf, sizeof(buf), 0)) > 0;)
    response.append(buf, static_cast<size_t>(n));
  EXPECT_THAT(response, ::testing::StartsWith("HTTP/1.1 200 OK"));
  EXPECT_THAT(response, HasSubstr("cmdistill_metrics_scrapes_total 2"));
  close(slow);
  for (int fd : idle) close(fd);
}

TEST(HttpExposer, BadAddressesAreRefused) {
  EXPECT_THAT(HttpExposer::Start("nonsense", NewRegistry()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(auto a,
                       HttpExposer::Start("127.0.0.1:0", NewRegistry()));
  EXPECT_THAT(
      HttpExposer::Start("127.0.0.1:" + std::to_string(a->port()),
                         NewRegistry()),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot listen")));
}

}  // namespace
}  // namespace cmdistill::metrics
