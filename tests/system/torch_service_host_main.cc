// A service process that links LibTorch and runs the real ServiceHost (gRPC +
// /metrics + signal handling) with the fake teacher backend, whose Score calls
// are all held until shutdown. torch_process_test drives it: READY line -> held
// call ("HELD") -> SIGTERM -> the held call completes during the drain -> exit
// 0.
#include <ATen/Parallel.h>

#include <cstdio>

#include "prometheus/gauge.h"
#include "services/common/service_host.h"
#include "tests/testing/fake_teacher.h"

int main() {
  // Touch LibTorch for real so its thread pools exist, as in the learner or
  // teacher.
  at::init_num_threads();
  const int torch_threads = at::get_num_threads();

  cmdistill::services::ServiceHostOptions options;
  options.name = "torch-test";
  options.server.listen_address = "127.0.0.1:0";
  options.metrics_listen = "127.0.0.1:0";
  options.shutdown_grace = absl::Seconds(20);
  auto host = cmdistill::services::ServiceHost::Create(options);
  if (!host.ok()) {
    std::fprintf(stderr, "%s\n", host.status().ToString().c_str());
    return 1;
  }
  prometheus::BuildGauge()
      .Name("cmdistill_test_torch_threads")
      .Help("LibTorch intra-op threads in this process")
      .Register(*(*host)->registry())
      .Add({})
      .Set(torch_threads);
  cmdistill::testing::FakeTeacherService service((*host)->gate_ptr());
  service.Hold([] {
    std::printf("HELD\n");
    std::fflush(stdout);
  });
  if (auto s = (*host)->Start({&service}); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  const int sig = (*host)->WaitForShutdownSignal();
  std::fprintf(stderr, "signal %d: draining\n", sig);
  (*host)->Shutdown([&] { service.ReleaseHeld(); });
  std::fprintf(stderr, "drained %d held call(s), exiting\n",
               service.held_calls());
  return 0;
}
