// Per-trajectory costs of the reward service's work: grading, support-KL costs
// and the constraint transform, and problem generation.
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "common/rl/constraint.h"
#include "common/tasks/answer.h"
#include "common/tasks/datagen.h"

namespace cmdistill {
namespace {

void BM_GradeTypicalResponse(benchmark::State& state) {
  const std::string response =
      "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * "
      "2 = "
      "$<<9*2=18>>18 every day at the farmer's market.\n#### 18";
  for (auto _ : state) {
    auto g = tasks::GradeResponse(response, "18", tasks::Strictness::kStrict);
    benchmark::DoNotOptimize(g);
  }
}
BENCHMARK(BM_GradeTypicalResponse);

void BM_GradePathological(benchmark::State& state) {
  const std::string response =
      "\\boxed{" + std::string(static_cast<size_t>(state.range(0)), '{');
  for (auto _ : state) {
    auto g =
        tasks::GradeResponse(response, "1", tasks::Strictness::kLastNumber);
    benchmark::DoNotOptimize(g);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_GradePathological)->Arg(1 << 10)->Arg(1 << 19);

// T positions x K support: the reward service's per-trajectory cost
// computation.
void BM_SupportKlCosts(benchmark::State& state) {
  const int T = static_cast<int>(state.range(0)),
            K = static_cast<int>(state.range(1));
  std::mt19937 rng(1);
  std::normal_distribution<float> n(0, 2);
  std::vector<float> s(static_cast<size_t>(T) * K), t(s.size());
  for (int i = 0; i < T; ++i) {
    for (auto* v : {&s, &t}) {
      float z = 0;
      std::vector<float> x(K);
      for (int k = 0; k < K; ++k) x[k] = n(rng), z += std::exp(x[k]);
      for (int k = 0; k < K; ++k) (*v)[i * K + k] = x[k] - std::log(z * 1.25f);
    }
  }
  rl::TokenLogProbs lp;
  lp.num_tokens = T;
  lp.support_k = K;
  lp.student_support = s;
  lp.teacher_support = t;
  rl::RewardOptions ro;
  ro.budget.max_new_tokens = T;
  for (auto _ : state) {
    auto c = rl::PerTokenCosts(lp, {});
    auto r = rl::ModifiedRewards(1.0, *c, {}, ro);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * T);
}
BENCHMARK(BM_SupportKlCosts)->Args({256, 64})->Args({512, 256});

void BM_GenerateProblem(benchmark::State& state) {
  tasks::DatagenOptions o;
  tasks::SplitMix64 rng(1);
  for (auto _ : state)
    benchmark::DoNotOptimize(tasks::GenerateProblem(o, &rng));
}
BENCHMARK(BM_GenerateProblem);

}  // namespace
}  // namespace cmdistill

BENCHMARK_MAIN();
