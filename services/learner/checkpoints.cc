#include "services/learner/checkpoints.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/checkpoint/hf_checkpoint.h"
#include "common/checkpoint/safetensors.h"
#include "common/status/status_macros.h"
#include "common/util/files.h"

namespace cmdistill::learner {

TrainerState TrainerStateOf(const v1::LearnerCheckpoint& c) {
  TrainerState ts;
  ts.step = c.optimizer_step();
  ts.lagrange = {c.lambda(), c.lambda_integral(), c.lambda_previous_error(),
                 c.lambda_updates()};
  ts.moments.assign(c.optimizer_moments().begin(), c.optimizer_moments().end());
  ts.master_weights.assign(c.optimizer_master_weights().begin(),
                           c.optimizer_master_weights().end());
  return ts;
}

void SetTrainerState(const TrainerState& ts, v1::LearnerCheckpoint* c) {
  c->set_optimizer_step(ts.step);
  for (const std::string& m : ts.moments) c->add_optimizer_moments(m);
  for (const std::string& m : ts.master_weights)
    c->add_optimizer_master_weights(m);
  c->set_lambda(ts.lagrange.lambda);
  c->set_lambda_integral(ts.lagrange.integral);
  c->set_lambda_previous_error(ts.lagrange.previous_error);
  c->set_lambda_updates(ts.lagrange.updates);
}
namespace {

namespace fs = std::filesystem;
constexpr char kState[] = "training_state.pb";

void FsyncPath(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

}  // namespace

absl::Status WriteCheckpoint(const std::string& root,
                             const v1::LearnerCheckpoint& state,
                             const Trainer& policy,
                             const std::string& tokenizer_from, int keep) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec)
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", root, ": ", ec.message()));
  const std::string name = absl::StrFormat("step-%08d", state.step());
  const std::string tmp = absl::StrCat(root, "/.tmp-", name, "-", getpid());
  const std::string final_dir = root + "/" + name;
  fs::remove_all(tmp, ec);
  // Each file written atomically; on any failure (a full disk) the partial
  // folder goes, so it neither fills the disk further nor looks like a
  // checkpoint, and the older ones stay as they are.
  absl::Status written = [&]() -> absl::Status {
    CMDISTILL_RETURN_IF_ERROR(policy.SavePolicy(tmp, tokenizer_from));
    std::string bytes;
    if (!state.SerializeToString(&bytes))
      return absl::InternalError("cannot serialise state");
    CMDISTILL_RETURN_IF_ERROR(
        util::WriteFileAtomically(tmp + "/" + kState, bytes));
    FsyncPath(tmp);
    fs::remove_all(final_dir, ec);  // a re-run of the same step replaces it
    fs::rename(tmp, final_dir, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("rename to ", final_dir, ": ", ec.message()));
    }
    return absl::OkStatus();
  }();
  if (!written.ok()) {
    fs::remove_all(tmp, ec);
    return Annotate(written, absl::StrCat("checkpoint ", name));
  }
  FsyncPath(root);
  // Keep the newest `keep`.
  std::vector<std::string> steps;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("step-", 0) == 0) steps.push_back(n);
  }
  std::sort(steps.begin(), steps.end());
  for (size_t i = 0; i + static_cast<size_t>(std::max(keep, 1)) < steps.size();
       ++i) {
    fs::remove_all(root + "/" + steps[i], ec);
  }
  return absl::OkStatus();
}

std::vector<std::string> RemoveStaleTemporaries(const std::string& root) {
  std::vector<std::string> removed;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return removed;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(".tmp-", 0) != 0) continue;
    int pid = 0;
    const size_t dash = n.rfind('-');
    const bool parsed = dash != std::string::npos &&
                        absl::SimpleAtoi(n.substr(dash + 1), &pid) && pid > 0;
    // Alive (or not ours to signal): leave it.
    if (parsed && (kill(pid, 0) == 0 || errno == EPERM)) continue;
    std::error_code rm;
    fs::remove_all(e.path(), rm);
    if (!rm) removed.push_back(e.path().string());
  }
  return removed;
}

absl::StatusOr<FoundCheckpoint> ReadCheckpoint(const std::string& dir,
                                               uint64_t num_prompts) {
  auto bytes = util::ReadFile(dir + "/" + kState);
  if (!bytes.ok())
    return absl::NotFoundError(absl::StrCat(dir, ": no ", kState));
  FoundCheckpoint f;
  f.dir = dir;
  if (!f.state.ParseFromString(*bytes)) {
    return absl::DataLossError(absl::StrCat(dir, "/", kState, " is corrupt"));
  }
  // 1: before the per-epoch ledger; 2: with it (both are read).
  if (f.state.format_version() != 1 && f.state.format_version() != 2) {
    return absl::DataLossError(
        absl::StrCat(dir, "/", kState, " has format version ",
                     f.state.format_version(), " (this build reads 1 and 2)"));
  }
  if (f.state.num_prompts() != num_prompts) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": trained on ", f.state.num_prompts(),
                     " prompts, the data set has ", num_prompts));
  }
  // Validates every weight file.
  CMDISTILL_RETURN_IF_ERROR(checkpoint::HfCheckpoint::Open(dir).status());
  return f;
}

absl::StatusOr<FoundCheckpoint> FindLatestCheckpoint(
    const std::string& root, uint64_t num_prompts,
    std::vector<std::string>* skipped) {
  std::error_code ec;
  std::vector<std::string> steps;
  if (fs::is_directory(root)) {
    for (const auto& e : fs::directory_iterator(root, ec)) {
      const std::string n = e.path().filename().string();
      if (n.rfind("step-", 0) == 0) steps.push_back(n);
    }
  }
  std::sort(steps.rbegin(), steps.rend());
  for (const std::string& s : steps) {
    auto f = ReadCheckpoint(root + "/" + s, num_prompts);
    if (f.ok()) return f;
    if (skipped != nullptr)
      skipped->push_back(std::string(f.status().message()));
  }
  return absl::NotFoundError(absl::StrCat("no valid checkpoint under ", root));
}

}  // namespace cmdistill::learner
