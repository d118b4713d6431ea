#include "services/learner/lease_manager.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/tasks/dataset.h"

namespace cmdistill::learner {

LeaseManager::LeaseManager(uint64_t num_prompts, LeaseOptions options)
    : num_prompts_(num_prompts), options_(options) {
  std::random_device rd;
  incarnation_ = absl::StrCat(absl::Hex(rd(), absl::kZeroPad8));
}

std::optional<uint64_t> LeaseManager::LeaseEpoch(const std::string& id) {
  if (id.size() < 2 || id[0] != 'e') return std::nullopt;
  const size_t dash = id.find('-');
  uint64_t epoch = 0;
  if (dash == std::string::npos ||
      !absl::SimpleAtoi(absl::string_view(id).substr(1, dash - 1), &epoch))
    return std::nullopt;
  return epoch;
}

std::string LeaseManager::TrajectoryId(const std::string& lease_id,
                                       uint32_t sample_index) {
  return absl::StrCat(lease_id, "/", sample_index);
}

uint64_t LeaseManager::PromptAt(uint64_t epoch, uint64_t position) const {
  if (order_epoch_ != epoch) {
    order_.resize(num_prompts_);
    std::iota(order_.begin(), order_.end(), 0);
    tasks::SplitMix64 rng(options_.seed * 1000003 + epoch);
    for (size_t i = order_.size(); i > 1; --i)
      std::swap(order_[i - 1], order_[rng.Below(i)]);
    order_epoch_ = epoch;
  }
  return order_[position];
}

bool LeaseManager::finished() const {
  return num_prompts_ == 0 || state_.epoch >= options_.epochs;
}

Lease* LeaseManager::FindLease(const std::string& lease_id) {
  for (Lease& l : state_.outstanding) {
    if (l.lease_id == lease_id) return &l;
  }
  return nullptr;
}

int LeaseManager::ExpireLeases(absl::Time now) {
  int expired = 0;
  auto& out = state_.outstanding;
  for (auto it = out.begin(); it != out.end();) {
    if (it->expiry <= now) {
      state_.requeued.push_back(it->prompt_id);
      state_.received.erase(it->lease_id);
      it = out.erase(it);
      ++expired;
    } else {
      ++it;
    }
  }
  return expired;
}

absl::StatusOr<std::vector<Lease>> LeaseManager::Acquire(uint32_t max_prompts,
                                                         absl::Time now) {
  if (finished())
    return absl::OutOfRangeError(
        "training data exhausted: every epoch is done");
  ExpireLeases(now);
  std::vector<Lease> out;
  while (out.size() < max_prompts) {
    uint64_t prompt;
    if (!state_.requeued.empty()) {
      prompt = state_.requeued.front();
      state_.requeued.erase(state_.requeued.begin());
    } else if (state_.cursor < num_prompts_) {
      prompt = PromptAt(state_.epoch, state_.cursor++);
    } else {
      break;  // the rest of this epoch is leased; the next epoch starts when it
              // is done
    }
    Lease l;
    l.lease_id = absl::StrCat("e", state_.epoch, "-l", state_.next_lease++, "-",
                              incarnation_);
    l.prompt_id = prompt;
    l.epoch = state_.epoch;
    l.expiry = now + options_.lease_duration;
    state_.outstanding.push_back(l);
    state_.received[l.lease_id];
    out.push_back(l);
  }
  return out;
}

SubmitResult LeaseManager::Submit(const std::string& lease_id,
                                  uint32_t sample_index, absl::Time now) {
  (void)now;  // a submission for a lease that expired but was not yet re-issued
              // still counts
  Lease* l = FindLease(lease_id);
  if (l == nullptr) return SubmitResult::kUnknownLease;
  if (sample_index >= options_.samples_per_prompt)
    return SubmitResult::kInvalid;
  std::vector<uint32_t>& got = state_.received[lease_id];
  if (std::find(got.begin(), got.end(), sample_index) != got.end()) {
    return SubmitResult::kDuplicate;
  }
  got.push_back(sample_index);
  if (got.size() < options_.samples_per_prompt) return SubmitResult::kAccepted;
  // The group is complete: the prompt is done for this epoch.
  state_.received.erase(lease_id);
  state_.outstanding.erase(
      std::remove_if(state_.outstanding.begin(), state_.outstanding.end(),
                     [&](const Lease& x) { return x.lease_id == lease_id; }),
      state_.outstanding.end());
  ++state_.done_this_epoch;
  ++state_.done_total;
  if (state_.done_this_epoch == num_prompts_) {
    ++state_.epoch;
    state_.cursor = 0;
    state_.done_this_epoch = 0;
  }
  return SubmitResult::kGroupComplete;
}

bool LeaseManager::Return(const std::string& lease_id) {
  Lease* l = FindLease(lease_id);
  if (l == nullptr) return false;
  Abandon(lease_id);
  return true;
}

void LeaseManager::Abandon(const std::string& lease_id) {
  Lease* l = FindLease(lease_id);
  if (l == nullptr) return;
  state_.requeued.insert(state_.requeued.begin(), l->prompt_id);
  state_.received.erase(lease_id);
  state_.outstanding.erase(
      std::remove_if(state_.outstanding.begin(), state_.outstanding.end(),
                     [&](const Lease& x) { return x.lease_id == lease_id; }),
      state_.outstanding.end());
}

absl::Status LeaseManager::Restore(const LeaseState& s) {
  if (s.cursor > num_prompts_ || s.done_this_epoch > num_prompts_) {
    return absl::InvalidArgumentError(
        "lease state does not fit this data set (cursor/done)");
  }
  for (uint64_t p : s.requeued) {
    if (p >= num_prompts_)
      return absl::InvalidArgumentError("lease state names an unknown prompt");
  }
  for (const Lease& l : s.outstanding) {
    if (l.prompt_id >= num_prompts_) {
      return absl::InvalidArgumentError("lease state names an unknown prompt");
    }
  }
  state_ = s;
  order_epoch_ = UINT64_MAX;
  return absl::OkStatus();
}

}  // namespace cmdistill::learner
