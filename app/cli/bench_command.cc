// `cmdistill bench decode|score|train|sync|gemm`: throughput on one's own
// checkpoint (or a random model of a named shape), timed after a warm-up with
// min/median/max over repeats (app/bench/throughput.h). Like
// `vllm bench throughput`: the numbers a user compares with what they would
// otherwise run (tests/bench/peer/ does the same work in eager PyTorch).

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "app/bench/overload.h"
#include "app/bench/sync.h"
#include "app/bench/throughput.h"
#include "app/cli/commands.h"
#include "app/cli/flags.h"
#include "app/cli/run_config_flags.h"
#include "common/status/status_macros.h"

namespace cmdistill::cli {
namespace {

constexpr const char* kModes =
    "decode, score, train, sync, gemm, memory or overload";

std::string RateJson(const bench::Rate& r) {
  std::vector<std::string> runs;
  for (double x : r.runs) runs.push_back(absl::StrFormat("%.1f", x));
  return absl::StrFormat(
      R"({"min": %.1f, "median": %.1f, "max": %.1f, "runs": [%s]})", r.min,
      r.median, r.max, absl::StrJoin(runs, ", "));
}

std::string RateText(const bench::Rate& r, double scale = 1) {
  return absl::StrFormat("%.0f [%.0f, %.0f]", r.median / scale, r.min / scale,
                         r.max / scale);
}

// "cmdistill bench: ..." with `code` (kExitUsage for bad flag values).
int Fail(Io io, const absl::Status& s, int code = kExitFailure) {
  const int failed = cli::Fail(io, "bench", s);
  return code == kExitFailure ? failed : code;
}

// `overload`: the teacher service under 10x more clients than its queue holds.
int Overload(std::unique_ptr<model::LanguageModel> m, const std::string& desc,
             const FlagSet& flags, bool json, Io io) {
  bench::OverloadOptions o;
  int64_t clients = 0, queue = 0, len = 64;
  double secs = 0;
  if ((flags.IsSet("clients") &&
       (!absl::SimpleAtoi(flags.Get("clients"), &clients) || clients < 1)) ||
      !absl::SimpleAtoi(flags.Get("queue"), &queue) || queue < 1 ||
      !absl::SimpleAtod(flags.Get("duration"), &secs) || secs <= 0 ||
      (flags.IsSet("seq-len") &&
       (!absl::SimpleAtoi(flags.Get("seq-len"), &len) || len < 1))) {
    io.err << "cmdistill bench overload: --clients, --queue, --seq-len must "
              "be positive integers and --duration a positive number\n";
    return kExitUsage;
  }
  o.clients = static_cast<int>(clients);
  o.queue_capacity = static_cast<size_t>(queue);
  o.seq_len = len;
  o.duration = absl::Seconds(secs);
  const std::string service = flags.Get("service");
  if (service != "teacher" && service != "learner") {
    io.err << "cmdistill bench overload: --service is teacher or learner\n";
    return kExitUsage;
  }
  auto r = service == "teacher" ? bench::TeacherOverload(std::move(m), o)
                                : bench::LearnerOverload(std::move(m), o);
  if (!r.ok()) return Fail(io, r.status());
  io.out << (json ? bench::OverloadJson(*r, service, desc)
                  : bench::OverloadText(*r, service, desc));
  return kExitOk;
}

FlagSet BenchFlags() {
  FlagSet flags(
      "cmdistill bench", "MODE [--model DIR | --shape NAME] [flags]",
      "Measures throughput on a checkpoint (or a random model of a shape).\n"
      "MODE: decode (KV-cache sampling, tokens/s per batch size), score\n"
      "(log-probabilities, tokens/s), train (forward + backward + AdamW,\n"
      "tokens/s and model FLOP/s), sync (policy fetch + checksum + load from "
      "an\n"
      "in-process learner over loopback TCP, against plain loopback TCP), "
      "gemm\n"
      "(a plain [n, n] matmul: the machine's dense peak), memory (the read\n"
      "bandwidth a decode bound by its weights is held to).");
  flags.AllowPositional("MODE", kModes);
  flags.AddString("model", "DIR", "a Hugging Face model folder");
  flags.AddString("shape", "NAME",
                  "random model without --model: small, medium or qwen05b",
                  "small");
  flags.AddString("batch", "N[,N...]",
                  "batch sizes (decode: default 1,8,64; score 64; train 8)");
  flags.AddString("prompt-len", "P", "decode: prompt tokens", "18");
  flags.AddString("new-tokens", "T", "decode: new tokens per sequence", "128");
  flags.AddString("seq-len", "T", "score / train: tokens per sequence");
  flags.AddString("gemm-size", "N", "gemm: matrix size", "1024");
  flags.AddString("memory-mib", "M", "memory: MiB read per run", "1024");
  flags.AddString("chunk-bytes", "B", "sync: bytes per stream message",
                  "1048576");
  flags.AddString("device", "D", "cpu, cuda, cuda:N or auto", "cpu");
  flags.AddString("dtype", "T", "float32 or bfloat16", "float32");
  flags.AddString("threads", "N", "LibTorch intra-op threads (default: all)");
  flags.AddString("warmup", "W", "untimed runs first", "1");
  flags.AddString("repeats", "R", "timed runs", "3");
  flags.AddString(
      "peak-tflops", "F",
      "train: dense peak for the utilisation (e.g. 790 on an H200)");
  flags.AddBool("stop-at-eos",
                "decode: stop sequences at eos (default: "
                "fixed length, comparable figures)");
  flags.AddString("clients", "N",
                  "overload: concurrent scoring clients (default: 10 x queue)");
  flags.AddString("queue", "Q",
                  "overload: the teacher's queue capacity, or the learner's "
                  "buffer (trajectories)",
                  "8");
  flags.AddString("service", "S", "overload: teacher or learner", "teacher");
  flags.AddString("duration", "S", "overload: seconds of load", "10");
  flags.AddBool("json", "print one JSON object instead of a table");
  return flags;
}

// One `cmdistill bench` invocation: its parsed flags and the modes.
class Bench {
 public:
  Bench(const FlagSet& flags, Io io)
      : flags_(flags),
        io_(io),
        mode_(flags.positional()[0]),
        device_(flags.Get("device")),
        dtype_(flags.Get("dtype")),
        json_(flags.GetBool("json")) {}

  // One count from a flag (its default when unset); `zero_ok` for --warmup.
  absl::StatusOr<int64_t> Count(const std::string& name,
                                const std::string& fallback,
                                bool zero_ok = false) const {
    const std::string v = flags_.IsSet(name) ? flags_.Get(name) : fallback;
    if (zero_ok && v == "0") return int64_t{0};
    CMDISTILL_ASSIGN_OR_RETURN(auto c, bench::ParseCounts(v, name));
    if (c.size() != 1)
      return absl::InvalidArgumentError("--" + name + " takes one count");
    return c[0];
  }

  // --warmup, --repeats, --peak-tflops, --threads; an exit code on a bad one.
  std::optional<int> ParseCommon() {
    auto w = Count("warmup", "1", /*zero_ok=*/true), r = Count("repeats", "3");
    if (!w.ok()) return Fail(io_, w.status(), kExitUsage);
    if (!r.ok()) return Fail(io_, r.status(), kExitUsage);
    rep_.warmup = static_cast<int>(*w);
    rep_.repeats = static_cast<int>(*r);
    if (flags_.IsSet("peak-tflops") &&
        (!absl::SimpleAtod(flags_.Get("peak-tflops"), &peak_) || peak_ <= 0)) {
      io_.err << "cmdistill bench: --peak-tflops must be a positive number\n";
      return kExitUsage;
    }
    if (flags_.IsSet("threads")) {
      auto t = Count("threads", "");
      if (!t.ok()) return Fail(io_, t.status(), kExitUsage);
      model::SetComputeThreads(static_cast<int>(*t));
    }
    return std::nullopt;
  }

  int Run() {
    if (auto code = ParseCommon()) return *code;
    if (mode_ == "gemm") return Gemm();
    if (mode_ == "memory") return Memory();
    if (auto code = LoadModel()) return *code;
    if (mode_ == "overload")
      return Overload(std::move(m_), desc_, flags_, json_, io_);
    int rc = mode_ == "decode"                      ? Decode()
             : mode_ == "score" || mode_ == "train" ? ScoreOrTrain()
                                                    : Sync();
    if (rc == kExitOk && json_)
      io_.out << "{" << absl::StrJoin(parts_, ", ") << "}\n";
    return rc;
  }

 private:
  void Header(const std::string& what) {
    if (!json_) io_.out << "cmdistill bench " << mode_ << ": " << what << "\n";
  }

  int Gemm() {
    auto n = Count("gemm-size", "1024");
    if (!n.ok()) return Fail(io_, n.status(), kExitUsage);
    auto f = model::MatmulFlopsPerSecond(*n, device_, dtype_, rep_.repeats);
    if (!f.ok()) return Fail(io_, f.status());
    if (json_) {
      io_.out
          << absl::StrFormat(
                 R"({"mode": "gemm", "device": "%s", "dtype": "%s", "n": %d, "threads": %d, "flops_per_s": %.4g})",
                 device_, dtype_, *n, model::ComputeThreads(), *f)
          << "\n";
    } else {
      io_.out << absl::StrFormat(
          "cmdistill bench gemm: [%d, %d] x [%d, %d] %s on %s, %d threads: "
          "%.2f GFLOP/s\n",
          *n, *n, *n, *n, dtype_, device_, model::ComputeThreads(), *f / 1e9);
    }
    return kExitOk;
  }

  int Memory() {
    auto mib = Count("memory-mib", "1024");
    if (!mib.ok()) return Fail(io_, mib.status(), kExitUsage);
    auto b = model::MemoryReadBytesPerSecond(*mib << 20, rep_.repeats);
    if (!b.ok()) return Fail(io_, b.status());
    if (json_) {
      io_.out
          << absl::StrFormat(
                 R"({"mode": "memory", "bytes": %d, "threads": %d, "read_bytes_per_s": %.4g})",
                 *mib << 20, model::ComputeThreads(), *b)
          << "\n";
    } else {
      io_.out << absl::StrFormat(
          "cmdistill bench memory: reading %d MiB, %d threads: %.1f GB/s\n",
          *mib, model::ComputeThreads(), *b / 1e9);
    }
    return kExitOk;
  }

  // --model DIR or a random --shape; an exit code on failure.
  std::optional<int> LoadModel() {
    std::string what;
    if (flags_.IsSet("model")) {
      auto l = model::LanguageModel::Load(flags_.Get("model"), device_, dtype_);
      if (!l.ok()) return Fail(io_, l.status());
      m_ = *std::move(l);
      what = flags_.Get("model");
    } else {
      auto shape = bench::Shape(flags_.Get("shape"));
      if (!shape.ok()) return Fail(io_, shape.status(), kExitUsage);
      auto r = model::LanguageModel::InitRandom(*shape, 1, device_, dtype_);
      if (!r.ok()) return Fail(io_, r.status());
      m_ = *std::move(r);
      what = "random " + flags_.Get("shape");
    }
    desc_ = absl::StrFormat(
        "%s (%.1fM parameters, %s), %s %s, %s attention, %d threads "
        "(OpenBLAS %s, threads policy %s)",
        what, m_->num_parameters() / 1e6, m_->config().model_type,
        m_->device_name(), m_->dtype_name(), m_->attention_name(),
        model::ComputeThreads(), model::BlasThreading(),
        model::ThreadsPolicyName());
    parts_.push_back(absl::StrFormat(
        R"("mode": "%s", "model": "%s", "parameters": %d, "device": "%s", "dtype": "%s", "attention": "%s", "threads": %d, "blas": "%s", "threads_policy": "%s", "warmup": %d, "repeats": %d)",
        mode_, what, m_->num_parameters(), m_->device_name(), m_->dtype_name(),
        m_->attention_name(), model::ComputeThreads(), model::BlasThreading(),
        model::ThreadsPolicyName(), rep_.warmup, rep_.repeats));
    return std::nullopt;
  }

  int Decode() {
    auto batches = bench::ParseCounts(
        flags_.IsSet("batch") ? flags_.Get("batch") : "1,8,64", "batch");
    auto P = Count("prompt-len", "18"), T = Count("new-tokens", "128");
    for (const absl::Status& s : {batches.status(), P.status(), T.status()})
      if (!s.ok()) return Fail(io_, s, kExitUsage);
    const bool eos = flags_.GetBool("stop-at-eos");
    Header(absl::StrFormat("%s; prompt %d tokens, %d new tokens%s", desc_, *P,
                           *T, eos ? " (stopping at eos)" : ", fixed length"));
    if (!json_) io_.out << "batch  tokens/s median [min, max]\n";
    std::vector<std::string> rows;
    for (int64_t b : *batches) {
      auto r = bench::Decode(*m_, b, *P, *T, eos, rep_);
      if (!r.ok()) return Fail(io_, r.status());
      if (!json_) io_.out << absl::StrFormat("%-6d %s\n", b, RateText(*r));
      rows.push_back(absl::StrFormat(R"("%d": %s)", b, RateJson(*r)));
    }
    parts_.push_back(absl::StrFormat(
        R"("prompt_len": %d, "new_tokens": %d, "stop_at_eos": %s, "tokens_per_s": {%s})",
        *P, *T, eos ? "true" : "false", absl::StrJoin(rows, ", ")));
    return kExitOk;
  }

  int ScoreOrTrain() {
    const bool train = mode_ == "train";
    auto B = Count("batch", train ? "8" : "64");
    auto T = Count("seq-len", train ? "128" : "256");
    for (const absl::Status& s : {B.status(), T.status()})
      if (!s.ok()) return Fail(io_, s, kExitUsage);
    Header(absl::StrFormat("%s; [%d, %d]", desc_, *B, *T));
    if (!train) {
      auto r = bench::Score(*m_, *B, *T, rep_);
      if (!r.ok()) return Fail(io_, r.status());
      // Forward FLOPs per token: 2 x matmul parameters.
      const double flops = 2 * bench::MatmulParameters(*m_) * r->median;
      if (!json_) {
        io_.out << "tokens/s " << RateText(*r)
                << absl::StrFormat("  (model %.2f GFLOP/s)\n", flops / 1e9);
      }
      parts_.push_back(absl::StrFormat(
          R"("batch": %d, "seq_len": %d, "tokens_per_s": %s, "model_flops_per_s": %.4g)",
          *B, *T, RateJson(*r), flops));
    } else {
      auto r = bench::Train(*m_, *B, *T, rep_);
      if (!r.ok()) return Fail(io_, r.status());
      if (!json_) {
        io_.out << "tokens/s " << RateText(r->tokens)
                << absl::StrFormat("  (model %.2f GFLOP/s",
                                   r->model_flops / 1e9);
        if (peak_ > 0)
          io_.out << absl::StrFormat(", utilisation %.1f%% of %g TFLOP/s",
                                     100 * r->model_flops / (peak_ * 1e12),
                                     peak_);
        io_.out << ")\n";
      }
      parts_.push_back(absl::StrFormat(
          R"("batch": %d, "seq_len": %d, "tokens_per_s": %s, "model_flops_per_s": %.4g)",
          *B, *T, RateJson(r->tokens), r->model_flops));
      if (peak_ > 0) {
        parts_.push_back(
            absl::StrFormat(R"("mfu": %.4f)", r->model_flops / (peak_ * 1e12)));
      }
    }
    return kExitOk;
  }

  int Sync() {
    auto chunk = Count("chunk-bytes", "1048576");
    if (!chunk.ok()) return Fail(io_, chunk.status(), kExitUsage);
    Header(desc_);
    auto r =
        bench::Sync(*m_, device_, dtype_, static_cast<size_t>(*chunk), rep_);
    if (!r.ok()) return Fail(io_, r.status());
    const double ratio = r->fetch.median / r->loopback.median;
    if (!json_) {
      io_.out << absl::StrFormat(
          "snapshot %.1f MB, %d-byte chunks\nfetch + check + load   MB/s %s\n"
          "plain loopback TCP    MB/s %s\nratio %.0f%%\n",
          r->bytes / 1e6, *chunk, RateText(r->fetch, 1e6),
          RateText(r->loopback, 1e6), 100 * ratio);
    }
    parts_.push_back(absl::StrFormat(
        R"("snapshot_bytes": %d, "chunk_bytes": %d, "fetch_bytes_per_s": %s, "loopback_bytes_per_s": %s, "ratio": %.4f)",
        r->bytes, *chunk, RateJson(r->fetch), RateJson(r->loopback), ratio));
    return kExitOk;
  }

  const FlagSet& flags_;
  Io io_;
  const std::string mode_, device_, dtype_;
  const bool json_;
  bench::Repeats rep_;
  double peak_ = 0;
  std::unique_ptr<model::LanguageModel> m_;
  std::string desc_;
  std::vector<std::string> parts_;  // JSON members
};

int RunBench(const std::vector<std::string>& args, Io io) {
  FlagSet flags = BenchFlags();
  if (auto code = ParseOrExit(&flags, args, io)) return *code;
  if (flags.positional().size() != 1) {
    io.err << "cmdistill bench: give one MODE (" << kModes << ")\n";
    return kExitUsage;
  }
  const std::string mode = flags.positional()[0];
  if (mode != "decode" && mode != "score" && mode != "train" &&
      mode != "sync" && mode != "gemm" && mode != "memory" &&
      mode != "overload") {
    io.err << "cmdistill bench: unknown mode '" << mode << "' (" << kModes
           << ")\n";
    return kExitUsage;
  }
  return Bench(flags, io).Run();
}

}  // namespace

void AddBenchCommands(std::vector<Command>* commands) {
  commands->push_back(
      {"bench", "throughput: decode, score, train, policy sync, gemm, memory",
       RunBench});
}

}  // namespace cmdistill::cli
