// Policy weight distribution, the transport alone: an actor-side client
// reassembles one snapshot from the learner (FetchPolicy over loopback TCP,
// 1 MiB chunks), either through the generated stub (each chunk parsed into a
// protobuf message, then appended: what a client of the .proto gets) or
// through policy_wire (the received slices read in place: what the actor
// does). `cmdistill bench sync` times the actor's whole path (+ XXH3 check +
// adopting the weights). Small model and, with CMDISTILL_BENCH_BIG=1, a
// Qwen2.5-0.5B-shaped one.
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "app/bench/throughput.h"
#include "cmdistill/v1/learner.grpc.pb.h"
#include "common/metrics/metrics.h"
#include "common/model/language_model.h"
#include "common/net/client.h"
#include "common/net/server.h"
#include "services/common/policy_wire.h"
#include "services/learner/learner_service.h"
#include "services/learner/policy_trainer.h"

namespace cmdistill {
namespace {

checkpoint::ModelConfig Config(bool big) {
  return *bench::Shape(big ? "qwen05b" : "small");
}

void BM_FetchPolicy(benchmark::State& state) {
  const bool big = state.range(0) != 0;
  const bool in_place = state.range(1) != 0;
  if (big && std::getenv("CMDISTILL_BENCH_BIG") == nullptr) {
    state.SkipWithError("set CMDISTILL_BENCH_BIG=1");
    return;
  }
  auto student =
      *model::LanguageModel::InitRandom(Config(big), 1, "cpu", "float32");
  learner::TrainerOptions to;
  to.method = rl::Method::kGrpo;
  auto trainer = *learner::PolicyTrainer::Create(student.get(), to);
  auto registry = metrics::NewRegistry();
  auto gate = net::GrpcServer::MakeGate({}, registry.get());
  learner::LearnerOptions lo;
  auto learner = *learner::Learner::Create({{{1}, "q", "1"}}, trainer.get(),
                                           registry.get(), lo);
  learner::LearnerServiceImpl service(learner.get(), gate);
  net::ServerOptions so;
  so.max_message_bytes = 8 << 20;
  auto server = *net::GrpcServer::Start(so, gate, {&service});
  net::ChannelOptions co;
  co.target = "127.0.0.1:" + std::to_string(server->port());
  co.max_message_bytes = so.max_message_bytes;
  auto channel = *net::MakeChannel(co);
  auto stub = v1::LearnerService::NewStub(channel);
  std::string buf;  // kept, as the actor keeps its receive buffers
  auto fetch = [&]() -> grpc::Status {
    grpc::ClientContext ctx;
    buf.clear();
    if (in_place) {
      return policy_wire::Fetch(channel.get(), &ctx, v1::FetchPolicyRequest(),
                                [&](const policy_wire::Chunk& c) {
                                  if (c.header)
                                    buf.reserve(c.header->total_bytes());
                                  for (auto piece : c.data) buf.append(piece);
                                  return grpc::Status::OK;
                                });
    }
    auto reader = stub->FetchPolicy(&ctx, v1::FetchPolicyRequest());
    v1::FetchPolicyResponse chunk;
    while (reader->Read(&chunk)) {
      if (chunk.has_header()) buf.reserve(chunk.header().total_bytes());
      buf += chunk.data();
    }
    return reader->Finish();
  };
  // Untimed: the first fetch maps the buffer's pages (seconds for 2 GB).
  if (!fetch().ok()) state.SkipWithError("fetch failed");
  for (auto _ : state) {
    if (!fetch().ok()) state.SkipWithError("fetch failed");
  }
  state.SetBytesProcessed(static_cast<int64_t>(buf.size()) *
                          state.iterations());
  state.counters["snapshot_MB"] = static_cast<double>(buf.size()) / 1e6;
  server->Shutdown(absl::Seconds(2), [&] { learner->Close(); });
}
// Args: {big, in_place}: in_place = 0 reads through the generated stub,
// 1 through policy_wire.
BENCHMARK(BM_FetchPolicy)
    ->Args({0, 0})
    ->Args({0, 1})
    ->Args({1, 0})
    ->Args({1, 1})
    ->ArgNames({"qwen05b", "in_place"})
    ->UseRealTime()
    ->MinTime(2)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace cmdistill

BENCHMARK_MAIN();
