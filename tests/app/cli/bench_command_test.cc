// `cmdistill bench`: argument handling (each bad input refused with exit 2 and
// a message naming it) and its output (the JSON has the measured fields, with
// values that follow from the work: one rate per batch size, each run counted,
// FLOP/s = 6 x parameters x tokens/s). In-process on a random "small" model,
// one timed run: this checks the command, not the machine's speed.
#include <sstream>
#include <string>
#include <vector>

#include "app/cli/commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/test_util.h"

namespace cmdistill::cli {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

struct Result {
  int code;
  std::string out, err;
};

Result Bench(std::vector<std::string> args) {
  args.insert(args.begin(), {"cmdistill", "bench"});
  std::ostringstream out, err;
  const int code = RunCli(args, {out, err});
  return {code, out.str(), err.str()};
}

TEST(BenchCommand, RefusesBadArguments) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{}, "give one MODE"},
      {{"fly"}, "unknown mode 'fly'"},
      {{"decode", "--batch", "0"}, "--batch: '0' is not a list"},
      {{"decode", "--batch", "1,x"}, "--batch: '1,x'"},
      {{"score", "--seq-len", "-3"}, "--seq-len"},
      {{"train", "--repeats", "0"}, "--repeats"},
      {{"decode", "--shape", "huge"}, "unknown shape 'huge'"},
      {{"train", "--peak-tflops", "fast"}, "--peak-tflops"},
      {{"decode", "--frobnicate"}, "frobnicate"},
  };
  for (const Case& c : cases) {
    const Result r = Bench(c.args);
    EXPECT_EQ(r.code, kExitUsage) << ::testing::PrintToString(c.args);
    EXPECT_THAT(r.err, HasSubstr(c.message))
        << ::testing::PrintToString(c.args);
    EXPECT_EQ(r.out, "");
  }
  const Result missing = Bench({"score", "--model", "/nonexistent/model"});
  EXPECT_EQ(missing.code, kExitFailure);
  EXPECT_THAT(missing.err, HasSubstr("/nonexistent/model"));
}

TEST(BenchCommand, JsonHasTheMeasuredFields) {
  const Result d =
      Bench({"decode", "--batch", "1,3", "--new-tokens", "4", "--prompt-len",
             "5", "--warmup", "0", "--repeats", "2", "--json"});
  ASSERT_EQ(d.code, kExitOk) << d.err;
  const json dj = json::parse(d.out);
  EXPECT_EQ(dj["mode"], "decode");
  EXPECT_EQ(dj["parameters"], 1976576);
  EXPECT_EQ(dj["new_tokens"], 4);
  EXPECT_EQ(dj["stop_at_eos"], false);
  ASSERT_EQ(dj["tokens_per_s"].size(), 2u);
  for (const char* b : {"1", "3"}) {
    const json& r = dj["tokens_per_s"][b];
    ASSERT_EQ(r["runs"].size(), 2u) << b;
    EXPECT_GT(r["min"].get<double>(), 0) << b;
    EXPECT_LE(r["min"].get<double>(), r["median"].get<double>());
    EXPECT_LE(r["median"].get<double>(), r["max"].get<double>());
  }
  const Result t =
      Bench({"train", "--batch", "2", "--seq-len", "8", "--warmup", "0",
             "--repeats", "1", "--peak-tflops", "1", "--json"});
  ASSERT_EQ(t.code, kExitOk) << t.err;
  const json tj = json::parse(t.out);
  const double tps = tj["tokens_per_s"]["median"];
  EXPECT_GT(tps, 0);
  // Tied embeddings: every parameter is a matmul parameter. Within what the
  // JSON's rounding allows: tokens/s printed to 0.1 (0.3% at the 17 tokens/s
  // of a loaded machine), FLOP/s to 4 significant digits.
  EXPECT_NEAR(tj["model_flops_per_s"].get<double>(), 6.0 * 1976576 * tps,
              6.0 * 1976576 * 0.05 + 1e-3 * 6.0 * 1976576 * tps);
  EXPECT_NEAR(tj["mfu"].get<double>(),
              tj["model_flops_per_s"].get<double>() / 1e12, 1e-4);
  const Result s = Bench({"score", "--batch", "2", "--seq-len", "16",
                          "--warmup", "0", "--repeats", "1"});
  ASSERT_EQ(s.code, kExitOk) << s.err;
  EXPECT_THAT(s.out, HasSubstr("[2, 16]"));
  EXPECT_THAT(s.out, HasSubstr("tokens/s "));
}

TEST(BenchCommand, SyncComparesTheFetchWithPlainLoopback) {
  const Result r = Bench({"sync", "--warmup", "0", "--repeats", "1", "--json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const json j = json::parse(r.out);
  // The fp32 snapshot of the small model: its weights plus a safetensors
  // header.
  EXPECT_GT(j["snapshot_bytes"].get<double>(), 1976576.0 * 4);
  EXPECT_LT(j["snapshot_bytes"].get<double>(), 1976576.0 * 4 + 65536);
  const double fetch = j["fetch_bytes_per_s"]["median"];
  const double loop = j["loopback_bytes_per_s"]["median"];
  EXPECT_GT(fetch, 0);
  EXPECT_GT(loop, 0);
  EXPECT_NEAR(j["ratio"].get<double>(), fetch / loop, 1e-3);
}

// Overload, teacher and learner: the queue (buffer) never exceeds its
// capacity, the excess is refused with RESOURCE_EXHAUSTED, nothing else fails.
// Figures only, no timing asserted.
TEST(BenchCommand, OverloadIsBoundedAndRefusesTheExcess) {
  for (const std::string service : {"teacher", "learner"}) {
    SCOPED_TRACE(service);
    const Result r =
        Bench({"overload", "--service", service, "--queue", "4", "--clients",
               "24", "--duration", "1.5", "--seq-len", "16", "--json"});
    ASSERT_EQ(r.code, kExitOk) << r.err;
    const json j = json::parse(r.out);
    EXPECT_EQ(j["clients"], 24);
    EXPECT_LE(j["max_queue_depth"].get<double>(), 4);
    EXPECT_GT(j["served"]["count"].get<int>(), 0);
    EXPECT_GT(j["refused"]["count"].get<int>(), 0);
    EXPECT_EQ(j["other_errors"], 0);
    EXPECT_GT(j["rss_mb"]["peak"].get<double>(), 0);
  }
  EXPECT_EQ(Bench({"overload", "--service", "actor"}).code, kExitUsage);
}

TEST(BenchCommand, GemmReportsFlops) {
  const Result r =
      Bench({"gemm", "--gemm-size", "64", "--repeats", "1", "--json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["n"], 64);
  EXPECT_GT(j["flops_per_s"].get<double>(), 1e6);
}

TEST(BenchCommand, MemoryReportsReadBandwidth) {
  const Result r =
      Bench({"memory", "--memory-mib", "8", "--repeats", "1", "--json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["bytes"], 8 << 20);
  EXPECT_GT(j["read_bytes_per_s"].get<double>(), 1e8);
  EXPECT_EQ(Bench({"memory", "--memory-mib", "0"}).code, kExitUsage);
}

TEST(BenchCommand, SaysWhichOpenBlasAndThreadsPolicyItRanWith) {
  const Result r = Bench({"decode", "--shape", "small", "--batch", "1",
                          "--new-tokens", "2", "--repeats", "1", "--json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const json j = json::parse(r.out);
  EXPECT_THAT(j["blas"].get<std::string>(),
              ::testing::AnyOf("openmp", "pthreads", "serial", "none"));
  EXPECT_EQ(j["threads_policy"], "tuned");
}

}  // namespace
}  // namespace cmdistill::cli
