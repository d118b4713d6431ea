// Bad input at the edges of a real service process (the teacher; every role
// shares the same gRPC server and /metrics exposer): raw garbage and an
// oversized message on the gRPC port, 500 idle connections on both ports, a
// slow-loris HTTP client and a 1 MiB path on /metrics. After each, the service
// keeps serving other clients: a scoring call succeeds and a scrape is
// answered, and the process is still alive at the end.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "cmdistill/v1/teacher.grpc.pb.h"
#include "common/net/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill {
namespace {

using ::cmdistill::testing::CmdistillBinary;
using ::cmdistill::testing::PortOf;
using ::cmdistill::testing::Subprocess;
using ::testing::HasSubstr;

int Connect(int port) { return testing::ConnectLoopback(port); }

void SendAll(int fd, const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n =
        send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;  // the peer closed on us: fine
    off += static_cast<size_t>(n);
  }
}

class EdgesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::MakeTinyTaskAndModels(dir_, 4));
    const std::string run = dir_.Write(
        "run.yaml", "teacher: {path: " + dir_.File("teacher") +
                        ", device: cpu}\nservices:\n  max_message_mib: 4\n"
                        "  teacher: {listen: \"127.0.0.1:0\", metrics_listen: "
                        "\"127.0.0.1:0\"}\n");
    teacher_ = std::make_unique<Subprocess>(std::vector<std::string>{
        CmdistillBinary(), "teacher", "--config", run});
    ASSERT_OK_AND_ASSIGN(std::string ready,
                         teacher_->ReadLine(absl::Now() + absl::Seconds(60)));
    grpc_ = PortOf(ready);
    metrics_ = PortOf(ready, "metrics_port");
    ASSERT_GT(grpc_, 0);
    ASSERT_GT(metrics_, 0);
    net::ChannelOptions o;
    o.target = "127.0.0.1:" + std::to_string(grpc_);
    channel_ = *net::MakeChannel(o);
  }
  void TearDown() override {
    if (teacher_ == nullptr) return;
    teacher_->Signal(SIGTERM);
    auto code = teacher_->Wait(absl::Now() + absl::Seconds(30));
    ASSERT_OK(code.status());
    EXPECT_EQ(*code, 0) << teacher_->Stderr();
  }
  // A real scoring call and a scrape, both answered.
  void ExpectServing(const std::string& after) {
    SCOPED_TRACE(after);
    v1::ScoreRequest req;
    auto* s = req.add_sequences();
    s->add_prompt_ids(1);
    s->add_completion_ids(2);
    s->add_completion_ids(3);
    v1::ScoreResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    const grpc::Status st =
        v1::TeacherService::NewStub(channel_)->Score(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(resp.scores_size(), 1);
    auto body = net::HttpGet(metrics_, "/metrics");
    ASSERT_OK(body.status());
    EXPECT_THAT(*body, HasSubstr("cmdistill_teacher_queue_depth"));
  }
  testing::TempDir dir_;
  std::unique_ptr<Subprocess> teacher_;
  int grpc_ = 0, metrics_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(EdgesTest, GarbageOversizedAndIdleConnectionsOnTheGrpcPort) {
  ExpectServing("start");
  // Raw garbage, and an HTTP/2 preface followed by a frame header announcing
  // a 16 MiB frame, then nothing.
  for (const std::string& junk :
       {std::string(65536, '\xfe'),
        std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") +
            std::string("\xff\xff\xff\x00\x00\x00\x00\x00\x01", 9)}) {
    const int fd = Connect(grpc_);
    ASSERT_GE(fd, 0);
    SendAll(fd, junk);
    close(fd);
  }
  ExpectServing("garbage");
  // A request over max_message_mib (4 MiB here): refused with its status,
  // not read into memory and not fatal.
  v1::ScoreRequest big;
  auto* s = big.add_sequences();
  s->add_prompt_ids(1);
  for (int i = 0; i < 3000000; ++i) s->add_completion_ids(100000);  // 9 MB
  v1::ScoreResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  const grpc::Status st =
      v1::TeacherService::NewStub(channel_)->Score(&ctx, big, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << st.error_message();
  ExpectServing("oversized");
  // 500 idle connections held open.
  std::vector<int> idle;
  for (int i = 0; i < 500; ++i) {
    const int fd = Connect(grpc_);
    if (fd >= 0) idle.push_back(fd);
  }
  EXPECT_GE(idle.size(), 400u);  // the soft fd limit may cap us, not it
  ExpectServing("500 idle gRPC connections");
  for (int fd : idle) close(fd);
}

TEST_F(EdgesTest, IdleSlowAndHugeRequestsOnTheMetricsPort) {
  // 500 idle connections and a slow-loris client (a header byte at a time).
  std::vector<int> idle;
  for (int i = 0; i < 500; ++i) {
    const int fd = Connect(metrics_);
    if (fd >= 0) idle.push_back(fd);
  }
  EXPECT_GE(idle.size(), 400u);
  const int slow = Connect(metrics_);
  ASSERT_GE(slow, 0);
  SendAll(slow, "GET /metr");
  ExpectServing("500 idle /metrics connections and a slow client");
  SendAll(slow, "ics HT");
  ExpectServing("the slow client again");
  close(slow);
  for (int fd : idle) close(fd);
  // A 1 MiB path and binary garbage: closed or refused, never fatal.
  for (const std::string& junk :
       {"GET /" + std::string(1 << 20, 'a') + " HTTP/1.1\r\n\r\n",
        std::string(100000, '\0')}) {
    const int fd = Connect(metrics_);
    ASSERT_GE(fd, 0);
    SendAll(fd, junk);
    char buf[256];
    (void)recv(fd, buf, sizeof(buf), 0);
    close(fd);
  }
  ExpectServing("huge path and garbage");
  // The exposer counted the connections it had to evict.
  auto body = net::HttpGet(metrics_, "/metrics");
  ASSERT_OK(body.status());
  ASSERT_OK_AND_ASSIGN(auto m, testing::ParsePrometheusText(*body));
  EXPECT_GE(m["cmdistill_metrics_connections_evicted_total"], 500 - 64);
}

}  // namespace
}  // namespace cmdistill
