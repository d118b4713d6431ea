// The one-line protocol a cmdistill service process speaks on stdout to
// whoever started it (`cmdistill local`, the chaos harness, scripts):
//
//   READY name=<role> grpc_port=<p> metrics_port=<p>    serving (actor: grpc 0)
//   STEP step=<n> version=<v> reward=.. return=.. satisfaction=.. cost=..
//        kl=.. lambda=.. loss=.. tokens=<n>              after each update
//   FINISHED step=<n> model=<dir> complete=<0|1> prompts=<n> unique=<n>
//            epochs=<trained/unique>,...                 the learner is done
//
// Keys are space-separated key=value pairs; parsers ignore keys they do not
// know, so lines may grow. Format* and Parse* here are the only writers and
// readers.
#ifndef CMDISTILL_SERVICES_COMMON_CHILD_PROTOCOL_H_
#define CMDISTILL_SERVICES_COMMON_CHILD_PROTOCOL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/rl/diagnostics.h"

namespace cmdistill::services {

struct ReadyLine {
  std::string name;
  int grpc_port = 0;
  int metrics_port = 0;
};

struct StepLine {
  int64_t step = 0;
  uint64_t version = 0;
  double reward = 0, ret = 0, satisfaction = 0, cost = 0, kl = 0, lambda = 0,
         loss = 0;
  int64_t tokens = 0;
  rl::StepDiagnostics diagnostics;  // keys clip, approx_kl, entropy, ratio,
                                    // ratio_max, adv_std, signal, length
  // The step's time (s): keys wait, update, publish, checkpoint (the one
  // written after the previous step).
  double wait_s = 0, update_s = 0, publish_s = 0, checkpoint_s = 0;
};

struct FinishedLine {
  int64_t step = 0;
  std::string model;
  bool complete = false;
  uint64_t prompts = 0, unique = 0;
  // Per epoch: groups trained / distinct prompts among them.
  std::vector<std::pair<uint64_t, uint64_t>> epochs;
};

std::string FormatReady(const ReadyLine& r);
std::string FormatStep(const StepLine& s);
std::string FormatFinished(const FinishedLine& f);

// nullopt when `line` is not such a line (or lacks its required key: name
// and a port for READY, step for STEP and FINISHED).
std::optional<ReadyLine> ParseReady(const std::string& line);
std::optional<StepLine> ParseStep(const std::string& line);
std::optional<FinishedLine> ParseFinished(const std::string& line);

// Writes one line to stdout and flushes it (the parent reads line by line).
void Announce(const std::string& line);

}  // namespace cmdistill::services

#endif  // CMDISTILL_SERVICES_COMMON_CHILD_PROTOCOL_H_
