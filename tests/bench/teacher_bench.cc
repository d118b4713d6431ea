// Teacher service throughput: 1, 4, 16 and 32 concurrent clients sending small
// Score requests over loopback TCP, against one large pre-made batch through
// the same model (the ceiling dynamic batching aims for). Reported as scored
// tokens/s.
#include <benchmark/benchmark.h>

#include <atomic>
#include <thread>
#include <vector>

#include "cmdistill/v1/teacher.grpc.pb.h"
#include "common/metrics/metrics.h"
#include "common/model/language_model.h"
#include "common/net/client.h"
#include "common/net/server.h"
#include "services/teacher/model_scorer.h"
#include "services/teacher/teacher_service.h"
#include "tests/testing/model_configs.h"

namespace cmdistill {
namespace {

constexpr int kPrompt = 32, kCompletion = 32, kK = 8;

checkpoint::ModelConfig Config() { return testing::SmallBenchConfig(); }

v1::ScoreSequence Sequence(int seed) {
  v1::ScoreSequence s;
  for (int t = 0; t < kPrompt; ++t) s.add_prompt_ids((seed * 31 + t) % 2048);
  s.mutable_support()->set_k(kK);
  for (int t = 0; t < kCompletion; ++t) {
    const int tok = (seed * 17 + t * 3) % 2048;
    s.add_completion_ids(tok);
    for (int k = 0; k < kK; ++k)
      s.mutable_support()->add_token_ids((tok + k) % 2048);
  }
  return s;
}

model::ScoreInput Input(const v1::ScoreSequence& s) {
  model::ScoreInput in;
  in.prompt_ids.assign(s.prompt_ids().begin(), s.prompt_ids().end());
  in.completion_ids.assign(s.completion_ids().begin(),
                           s.completion_ids().end());
  in.support_k = kK;
  in.support_ids.assign(s.support().token_ids().begin(),
                        s.support().token_ids().end());
  return in;
}

// The ceiling: 64 sequences in one pre-made batch, straight into the scorer.
void BM_OneLargeBatch(benchmark::State& state) {
  auto scorer = teacher::MakeModelScorer(
      *model::LanguageModel::InitRandom(Config(), 1, "cpu", "float32"), "bench",
      "", 1 << 20);
  std::vector<model::ScoreInput> batch;
  for (int i = 0; i < 64; ++i) batch.push_back(Input(Sequence(i)));
  for (auto _ : state) benchmark::DoNotOptimize(scorer->Score(batch, 0));
  state.counters["tokens_per_s"] =
      benchmark::Counter(64.0 * (kPrompt + kCompletion) * state.iterations(),
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_OneLargeBatch)->UseRealTime()->Unit(benchmark::kMillisecond);

// `clients` threads, each sending one-sequence requests back to back.
void BM_ConcurrentClients(benchmark::State& state) {
  const int clients = static_cast<int>(state.range(0));
  auto scorer = teacher::MakeModelScorer(
      *model::LanguageModel::InitRandom(Config(), 1, "cpu", "float32"), "bench",
      "", 1 << 20);
  auto registry = metrics::NewRegistry();
  auto gate = net::GrpcServer::MakeGate({}, registry.get());
  teacher::TeacherServiceOptions o;
  o.max_batch_tokens = 64 * (kPrompt + kCompletion);
  o.batch_timeout = absl::Milliseconds(2);
  teacher::TeacherServiceImpl service(scorer.get(), gate, registry.get(), o);
  auto server = *net::GrpcServer::Start({}, gate, {&service});
  net::ChannelOptions co;
  co.target = "127.0.0.1:" + std::to_string(server->port());
  auto channel = *net::MakeChannel(co);
  const int per_client = std::max(4, 256 / clients);
  for (auto _ : state) {
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&, c] {
        auto stub = v1::TeacherService::NewStub(channel);
        for (int r = 0; r < per_client; ++r) {
          v1::ScoreRequest req;
          *req.add_sequences() = Sequence(c * 1000 + r);
          v1::ScoreResponse resp;
          grpc::ClientContext ctx;
          ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
          if (!stub->Score(&ctx, req, &resp).ok()) failures.fetch_add(1);
        }
      });
    }
    for (auto& t : threads) t.join();
    if (failures.load() > 0) state.SkipWithError("calls failed");
  }
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(clients) * per_client *
                             (kPrompt + kCompletion) * state.iterations(),
                         benchmark::Counter::kIsRate);
  server->Shutdown(absl::Seconds(5), [&] { service.Close(); });
}
BENCHMARK(BM_ConcurrentClients)
    ->Arg(1)
    ->Arg(4)
    ->Arg(16)
    ->Arg(32)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace cmdistill

BENCHMARK_MAIN();
