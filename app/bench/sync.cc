#include "app/bench/sync.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/metrics/metrics.h"
#include "common/net/client.h"
#include "common/net/server.h"
#include "common/status/status_macros.h"
#include "services/actor/actor.h"
#include "services/actor/model_policy.h"
#include "services/learner/learner_service.h"
#include "services/learner/policy_trainer.h"

namespace cmdistill::bench {

// Bytes/s of a plain TCP stream over 127.0.0.1 into one buffer of `bytes`:
// the ceiling any weight transfer on this machine has.
absl::StatusOr<Rate> LoopbackTcp(size_t bytes, const Repeats& r) {
  const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (lfd < 0 || bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      listen(lfd, 1) != 0 ||
      getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (lfd >= 0) close(lfd);
    return absl::UnavailableError("cannot listen on 127.0.0.1");
  }
  std::string src(std::min<size_t>(bytes, 1 << 20), 'x');
  std::string dst(bytes, '\0');
  Rate out;
  for (int i = 0; i < r.warmup + std::max(1, r.repeats); ++i) {
    std::thread sender([&] {
      const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
        for (size_t sent = 0; sent < bytes;) {
          const ssize_t n = send(
              fd, src.data(), std::min(src.size(), bytes - sent), MSG_NOSIGNAL);
          if (n <= 0) break;
          sent += static_cast<size_t>(n);
        }
      }
      close(fd);
    });
    const auto t0 = std::chrono::steady_clock::now();
    const int cfd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    size_t got = 0;
    while (cfd >= 0 && got < bytes) {
      const ssize_t n = recv(cfd, dst.data() + got, bytes - got, 0);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    if (cfd >= 0) close(cfd);
    sender.join();
    if (got != bytes) {
      close(lfd);
      return absl::DataLossError("loopback transfer cut short");
    }
    if (i >= r.warmup) out.runs.push_back(static_cast<double>(bytes) / s);
  }
  close(lfd);
  return RateOf(std::move(out.runs));
}

// The actor's real path, timed: WaitForPolicy + FetchPolicy (chunked stream
// over loopback TCP) + checksum (XXH3-128) + load, from an in-process learner.
absl::StatusOr<SyncResult> Sync(model::LanguageModel& student,
                                const std::string& device,
                                const std::string& dtype, size_t chunk_bytes,
                                const Repeats& r) {
  learner::TrainerOptions to;
  to.method = rl::Method::kGrpo;
  CMDISTILL_ASSIGN_OR_RETURN(auto trainer,
                             learner::PolicyTrainer::Create(&student, to));
  auto registry = metrics::NewRegistry();
  auto gate = net::GrpcServer::MakeGate({}, registry.get());
  learner::LearnerOptions lo;
  lo.chunk_bytes = chunk_bytes;
  CMDISTILL_ASSIGN_OR_RETURN(
      auto learner, learner::Learner::Create({{{1}, "q", "1"}}, trainer.get(),
                                             registry.get(), lo));
  learner::LearnerServiceImpl service(learner.get(), gate);
  net::ServerOptions so;
  so.listen_address = "127.0.0.1:0";
  so.max_message_bytes = static_cast<int>(chunk_bytes + (1 << 20));
  CMDISTILL_ASSIGN_OR_RETURN(auto server,
                             net::GrpcServer::Start(so, gate, {&service}));
  CMDISTILL_ASSIGN_OR_RETURN(
      auto receiver,
      model::LanguageModel::InitRandom(student.config(), 2, device, dtype));
  net::ChannelOptions co;
  co.target = absl::StrCat("127.0.0.1:", server->port());
  co.max_message_bytes = so.max_message_bytes;
  CMDISTILL_ASSIGN_OR_RETURN(auto channel, net::MakeChannel(co));
  CMDISTILL_ASSIGN_OR_RETURN(auto snapshot, student.SerializeWeights());
  SyncResult out;
  out.bytes = snapshot.size();
  snapshot.clear();
  actor::ActorOptions ao;
  ao.call.timeout = absl::Minutes(5);
  // One long-lived actor, as in a run: every repeat fetches the snapshot again.
  auto reg = metrics::NewRegistry();
  actor::ModelPolicy seam(receiver.get());
  actor::Actor a(ao, &seam, channel, nullptr, channel, reg.get());
  auto fetch = [&]() -> absl::Status { return a.SyncPolicy(/*force=*/true); };
  Rate rate;
  // At least two warm-ups: the actor alternates between two receive buffers
  // (the model may hold the other), and each maps its pages on first use.
  const int warmup = std::max(r.warmup, 2);
  for (int i = 0; i < warmup + std::max(1, r.repeats); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    CMDISTILL_RETURN_IF_ERROR(fetch());
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    if (i >= warmup) rate.runs.push_back(static_cast<double>(out.bytes) / secs);
  }
  out.fetch = RateOf(std::move(rate.runs));
  server->Shutdown(absl::Seconds(2), [&] { learner->Close(); });
  CMDISTILL_ASSIGN_OR_RETURN(auto loop, LoopbackTcp(out.bytes, r));
  out.loopback = loop;
  return out;
}

}  // namespace cmdistill::bench
