// The device the LibTorch tests run on: CMDISTILL_TEST_DEVICE ("cpu" when
// unset; "cuda", "cuda:N" on a GPU machine — scripts/gpu-check.sh sets it),
// and the tolerances each dtype is held to there. Torch-free.
#ifndef CMDISTILL_TESTS_TESTING_DEVICE_H_
#define CMDISTILL_TESTS_TESTING_DEVICE_H_

#include <cstdlib>
#include <string>

namespace cmdistill::testing {

inline std::string TestDevice() {
  const char* d = std::getenv("CMDISTILL_TEST_DEVICE");
  return d != nullptr && *d != '\0' ? d : "cpu";
}

inline bool OnCuda() { return TestDevice().rfind("cuda", 0) == 0; }

// Relative error (max |a - b| / max |b|) allowed between logits (or
// log-probabilities) computed in `dtype` on the test device and an exact
// reference: float32 agrees to rounding (a GPU sums in another order, hence
// the looser bound there); bfloat16 keeps 8 significant bits: up to 6% was
// measured on model_test's deliberately large-weight models, so 10%.
inline double RelTolerance(const std::string& dtype) {
  if (dtype == "bfloat16") return 0.1;
  return OnCuda() ? 5e-4 : 1e-4;
}

}  // namespace cmdistill::testing

#endif  // CMDISTILL_TESTS_TESTING_DEVICE_H_
