// Policy weight distribution: the time for an actor to fetch one snapshot from
// the learner (FetchPolicy over loopback TCP, 1 MiB chunks, sha256 checked,
// weights loaded), against the plain loopback bandwidth of the same gRPC stream
// without the model (a pre-made byte buffer streamed by the same reactor).
// Small model and, with CMDISTILL_BENCH_BIG=1, a Qwen2.5-0.5B-shaped one.
#include <benchmark/benchmark.h>
#include <openssl/evp.h>

#include <cstdlib>

#include "cmdistill/v1/learner.grpc.pb.h"
#include "common/metrics/metrics.h"
#include "common/model/language_model.h"
#include "common/net/client.h"
#include "common/net/server.h"
#include "services/bench/throughput.h"
#include "services/learner/learner_service.h"
#include "services/learner/policy_trainer.h"

namespace cmdistill {
namespace {

checkpoint::ModelConfig Config(bool big) {
  return *bench::Shape(big ? "qwen05b" : "small");
}

void BM_FetchPolicy(benchmark::State& state) {
  const bool big = state.range(0) != 0;
  const bool load = state.range(1) != 0;
  if (big && std::getenv("CMDISTILL_BENCH_BIG") == nullptr) {
    state.SkipWithError("set CMDISTILL_BENCH_BIG=1");
    return;
  }
  auto student =
      *model::LanguageModel::InitRandom(Config(big), 1, "cpu", "float32");
  auto actor_model =
      *model::LanguageModel::InitRandom(Config(big), 2, "cpu", "float32");
  learner::TrainerOptions to;
  to.method = rl::Method::kGrpo;
  auto trainer = *learner::PolicyTrainer::Create(student.get(), to);
  auto registry = metrics::NewRegistry();
  auto gate = net::GrpcServer::MakeGate({}, registry.get());
  learner::LearnerOptions lo;
  auto service = *learner::LearnerServiceImpl::Create(
      {{{1}, "q", "1"}}, trainer.get(), gate, registry.get(), lo);
  net::ServerOptions so;
  so.max_message_bytes = 8 << 20;
  auto server = *net::GrpcServer::Start(so, gate, {service.get()});
  net::ChannelOptions co;
  co.target = "127.0.0.1:" + std::to_string(server->port());
  auto stub = v1::LearnerService::NewStub(*net::MakeChannel(co));
  int64_t bytes = 0;
  for (auto _ : state) {
    grpc::ClientContext ctx;
    auto reader = stub->FetchPolicy(&ctx, v1::FetchPolicyRequest());
    v1::FetchPolicyResponse chunk;
    std::string buf;
    std::string want;
    while (reader->Read(&chunk)) {
      if (chunk.has_header()) {
        buf.reserve(chunk.header().total_bytes());
        want = chunk.header().sha256_hex();
      }
      buf += chunk.data();
    }
    if (!reader->Finish().ok()) state.SkipWithError("fetch failed");
    if (load) {
      unsigned char md[EVP_MAX_MD_SIZE];
      unsigned int len = 0;
      EVP_Digest(buf.data(), buf.size(), md, &len, EVP_sha256(), nullptr);
      benchmark::DoNotOptimize(md);
      if (!actor_model->LoadWeights(buf).ok())
        state.SkipWithError("load failed");
    }
    bytes = static_cast<int64_t>(buf.size());
  }
  state.SetBytesProcessed(bytes * state.iterations());
  state.counters["snapshot_MB"] = static_cast<double>(bytes) / 1e6;
  server->Shutdown(absl::Seconds(2), [&] { service->Close(); });
}
// Args: {big, load}. load = 0 is the transport alone (loopback gRPC streaming
// bandwidth).
BENCHMARK(BM_FetchPolicy)
    ->Args({0, 0})
    ->Args({0, 1})
    ->Args({1, 0})
    ->Args({1, 1})
    ->ArgNames({"qwen05b", "verify_and_load"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace cmdistill

BENCHMARK_MAIN();
