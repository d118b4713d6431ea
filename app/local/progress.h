// A progress bar with ETA for long commands (sft, eval, local). On a terminal
// it redraws one line; otherwise (logs, CI) it prints a line every ~10% or
// 30 s, so piped output stays readable.
#ifndef CMDISTILL_SERVICES_PIPELINE_PROGRESS_H_
#define CMDISTILL_SERVICES_PIPELINE_PROGRESS_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/time/time.h"

namespace cmdistill::local {

class ProgressBar {
 public:
  // `tty`: redraw in place (pass IsTerminal(2) for stderr).
  ProgressBar(std::ostream& os, std::string label, int64_t total, bool tty);
  void Update(int64_t done, const std::string& extra = "");
  // Completes the line (on a terminal) with the last numbers.
  void Finish(const std::string& extra = "");

  static bool IsTerminal(int fd);
  // "1m05s", "42s".
  static std::string Duration(double seconds);

 private:
  std::string Render(int64_t done, const std::string& extra) const;

  std::ostream& os_;
  std::string label_;
  int64_t total_;
  bool tty_;
  absl::Time start_, last_print_;
  int64_t last_done_ = -1;
  int last_decile_ = -1;
};

}  // namespace cmdistill::local

#endif  // CMDISTILL_SERVICES_PIPELINE_PROGRESS_H_
