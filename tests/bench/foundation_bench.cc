// Throughput of the plumbing every service sits on: the bounded queue (single
// thread and contended), run-file loading, and a unary gRPC round trip over
// loopback with the gate on.
#include <benchmark/benchmark.h>

#include <thread>
#include <vector>

#include "cmdistill/v1/teacher.grpc.pb.h"
#include "common/config/config.h"
#include "common/net/client.h"
#include "common/net/server.h"
#include "common/queue/bounded_queue.h"
#include "tests/testing/fake_teacher.h"

namespace cmdistill {
namespace {

void BM_QueuePushPopBatch(benchmark::State& state) {
  const size_t batch = static_cast<size_t>(state.range(0));
  BoundedQueue<int> q(4096);
  for (auto _ : state) {
    for (size_t i = 0; i < batch; ++i) (void)q.TryPush(static_cast<int>(i));
    auto out = q.PopBatch(batch, batch, absl::InfinitePast());
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(batch));
}
BENCHMARK(BM_QueuePushPopBatch)->Arg(1)->Arg(64);

// Producers push while one consumer pops batches: the learner's
// trajectory-buffer shape.
void BM_QueueContended(benchmark::State& state) {
  const int producers = static_cast<int>(state.range(0));
  constexpr int kPerProducer = 20000;
  for (auto _ : state) {
    BoundedQueue<int> q(1024);
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
      threads.emplace_back([&] {
        for (int i = 0; i < kPerProducer; ++i)
          (void)q.Push(i, absl::InfiniteFuture());
      });
    }
    int64_t got = 0;
    while (got < static_cast<int64_t>(producers) * kPerProducer) {
      auto b = q.PopBatch(1, 256, absl::InfiniteFuture());
      got += static_cast<int64_t>(b->size());
    }
    for (auto& t : threads) t.join();
  }
  state.SetItemsProcessed(state.iterations() * producers * kPerProducer);
}
BENCHMARK(BM_QueueContended)
    ->Arg(1)
    ->Arg(4)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_LoadRunConfig(benchmark::State& state) {
  const std::string yaml =
      "method: cmdp\nconstraint: {budget: 0.35, penalty: 20}\noptimizer: {lr: "
      "1e-5}\n";
  for (auto _ : state) {
    auto c = config::LoadRunConfigFromString(yaml, "bench.yaml",
                                             {"training.max_steps=10"});
    benchmark::DoNotOptimize(c);
  }
}
BENCHMARK(BM_LoadRunConfig);

void BM_GrpcUnaryLoopback(benchmark::State& state) {
  net::ServerOptions o;
  o.bearer_token = "bench-token";
  auto gate = net::GrpcServer::MakeGate(o, nullptr);
  testing::FakeTeacherService service(gate);
  auto server = net::GrpcServer::Start(o, gate, {&service});
  net::ChannelOptions co;
  co.target = "127.0.0.1:" + std::to_string((*server)->port());
  auto stub = v1::TeacherService::NewStub(*net::MakeChannel(co));
  v1::ScoreRequest req;
  auto* seq = req.add_sequences();
  for (int i = 0; i < state.range(0); ++i) seq->add_completion_ids(i);
  for (auto _ : state) {
    grpc::ClientContext ctx;
    net::PrepareContext(&ctx, absl::Now() + absl::Seconds(10), "bench-token");
    v1::ScoreResponse resp;
    auto s = stub->Score(&ctx, req, &resp);
    if (!s.ok()) state.SkipWithError(s.error_message().c_str());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GrpcUnaryLoopback)
    ->Arg(16)
    ->Arg(4096)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace cmdistill

BENCHMARK_MAIN();
