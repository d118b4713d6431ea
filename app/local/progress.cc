#include "app/local/progress.h"

#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace cmdistill::local {

ProgressBar::ProgressBar(std::ostream& os, std::string label, int64_t total,
                         bool tty)
    : os_(os),
      label_(std::move(label)),
      total_(std::max<int64_t>(1, total)),
      tty_(tty),
      start_(absl::Now()),
      last_print_(absl::InfinitePast()) {}

bool ProgressBar::IsTerminal(int fd) { return isatty(fd) == 1; }

std::string ProgressBar::Duration(double s) {
  if (!(s >= 0) || s > 360000) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, (t / 60) % 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrCat(t, "s");
}

std::string ProgressBar::Render(int64_t done, const std::string& extra) const {
  const double frac =
      std::min(1.0, static_cast<double>(done) / static_cast<double>(total_));
  const int width = 24;
  const int fill = static_cast<int>(frac * width);
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start_);
  std::string eta = "?";
  if (done > 0) eta = Duration(elapsed * (1 - frac) / frac);
  return absl::StrCat(label_, " [", std::string(fill, '#'),
                      std::string(width - fill, '.'), "] ", done, "/", total_,
                      absl::StrFormat(" %3d%%", static_cast<int>(frac * 100)),
                      " elapsed ", Duration(elapsed), " ETA ", eta,
                      extra.empty() ? "" : "  ", extra);
}

void ProgressBar::Update(int64_t done, const std::string& extra) {
  const absl::Time now = absl::Now();
  if (tty_) {
    if (now - last_print_ < absl::Milliseconds(200) && done != total_) return;
    os_ << "\r\033[K" << Render(done, extra) << std::flush;
  } else {
    const int decile = static_cast<int>(10 * done / total_);
    if (decile == last_decile_ && now - last_print_ < absl::Seconds(30)) return;
    last_decile_ = decile;
    os_ << Render(done, extra) << "\n" << std::flush;
  }
  last_print_ = now;
  last_done_ = done;
}

void ProgressBar::Finish(const std::string& extra) {
  const int64_t done = std::max<int64_t>(last_done_, 0);
  if (tty_) {
    os_ << "\r\033[K" << Render(done, extra) << "\n" << std::flush;
  } else if (done != last_done_ ||
             absl::Now() - last_print_ > absl::Seconds(1)) {
    os_ << Render(done, extra) << "\n" << std::flush;
  }
}

}  // namespace cmdistill::local
