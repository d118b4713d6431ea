#!/usr/bin/env bash
# The GPU check (issue "The GPU path"), as one script for a machine with a CUDA PyTorch 2.x in
# its python3, CMake and a compiler, but no apt: run scripts/gpu-prepare.sh HERE first and carry
# .gpu-deps. It
#   1. configures and builds the LibTorch subset (-DCMDISTILL_TORCH_ONLY=ON) against the
#      LibTorch inside that PyTorch wheel, with the other dependencies from .gpu-deps;
#   2. runs the subset's tests on the CPU and on the GPU (CMDISTILL_TEST_DEVICE=cuda): the model
#      against the independent reference in fp32 and bf16, generation, scoring, a policy update
#      and an SFT step, AdamW parity with torch::optim::AdamW;
#   3. measures a Qwen2.5-0.5B-shaped random model in bf16 on the GPU with
#      tests/bench/throughput_bench (decode tokens/s at batch 1/8/64, scoring tokens/s, training
#      step tokens/s and MFU against --peak-tflops) and the same work in eager PyTorch
#      (tests/bench/peer/eager_bench.py) on the same weights, for a ratio.
# Writes gpu-check.log and results.json under $OUT (or out/gpu-check).
#   CMDISTILL_GPU_DEVICE   the device (default cuda; "cpu" rehearses the script on any machine)
#   CMDISTILL_GPU_SHAPE    qwen05b (default) or small
#   CMDISTILL_PEAK_TFLOPS  dense bf16 peak for MFU (default 790, an H200)
#   CMDISTILL_PYTHON       the python3 with torch (default python3)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=${OUT:-$root/out/gpu-check}
mkdir -p "$out"
exec > >(tee "$out/gpu-check.log") 2>&1
device=${CMDISTILL_GPU_DEVICE:-cuda}
shape=${CMDISTILL_GPU_SHAPE:-qwen05b}
peak=${CMDISTILL_PEAK_TFLOPS:-790}
py=${CMDISTILL_PYTHON:-python3}
jobs=$(nproc)
deps=$root/.gpu-deps/root
build=${CMDISTILL_GPU_BUILD:-$root/build-gpu}
status=0
step() { echo; echo "=== $* ($(date +%T))"; }

step "machine"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
cmake --version | head -1; c++ --version | head -1

if [[ ! -d $deps/usr ]]; then
  echo "gpu-check: $deps is missing: run scripts/gpu-prepare.sh on a Debian 12 machine and carry .gpu-deps" >&2
  exit 1
fi
export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=$deps/usr/bin:$PATH
torch_prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
# The wheel's own libraries (libtorch_cuda.so, and the nvidia-* wheels it loads) at run time.
torch_lib=$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH=$torch_lib:$LD_LIBRARY_PATH

step "configure + build the LibTorch subset"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
if ! cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMDISTILL_TORCH_ONLY=ON \
    -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr" ${CMDISTILL_GPU_CMAKE_ARGS:-}; then
  echo "gpu-check: configure FAILED"; exit 1
fi
if ! cmake --build "$build" -j "$jobs"; then echo "gpu-check: build FAILED"; exit 1; fi

step "tests on the CPU"
CMDISTILL_REFERENCE_PYTHON=$(command -v "$py") ctest --test-dir "$build" --output-on-failure \
  -j "$jobs" --output-junit "$out/ctest-cpu.xml" || status=1
if [[ $device != cpu ]]; then
  step "tests on $device"
  CMDISTILL_TEST_DEVICE=$device CMDISTILL_REFERENCE_PYTHON=$(command -v "$py") \
    ctest --test-dir "$build" --output-on-failure -j 2 --output-junit "$out/ctest-$device.xml" ||
    status=1
fi

work=$(mktemp -d)
dtype=bfloat16
[[ $device == cpu ]] && dtype=float32  # bf16 matmuls on a CPU measure nothing useful
step "throughput: cmdistill ($shape, $dtype, $device)"
small=(); [[ $shape == small ]] && small=(--new-tokens 32 --score-batch 8 --score-len 64)
"$build/tests/bench/throughput_bench" --shape "$shape" --device "$device" --dtype "$dtype" \
  --peak-tflops "$peak" --save "$work/model" "${small[@]}" | tee "$out/cmdistill.json" || status=1
step "throughput: eager PyTorch (same weights)"
"$py" tests/bench/peer/eager_bench.py --model "$work/model" --device "$device" --dtype "$dtype" \
  "${small[@]}" | tee "$out/eager.json" || status=1

step "ratios"
"$py" - "$out" "$peak" <<'PY' || status=1
import json, sys
out, peak = sys.argv[1], float(sys.argv[2])
c = json.load(open(out + "/cmdistill.json")); e = json.load(open(out + "/eager.json"))
rows = [("decode batch " + b, c["decode_tokens_per_s"][b]["median"], e["decode_tokens_per_s"][b]["median"])
        for b in c["decode_tokens_per_s"]]
rows += [("score", c["score_tokens_per_s"]["median"], e["score_tokens_per_s"]["median"]),
         ("train step", c["train_tokens_per_s"]["median"], e["train_tokens_per_s"]["median"])]
print("| work | cmdistill tok/s | eager PyTorch tok/s | ratio |\n|---|---|---|---|")
for name, a, b in rows:
    print("| %s | %.0f | %.0f | %.2fx |" % (name, a, b, a / b))
print("train: %.1f model TFLOP/s, MFU %.3f of %g" % (c["train_model_tflops"], c.get("train_mfu", 0), peak))
json.dump({"cmdistill": c, "eager": e, "ratios": {n: a / b for n, a, b in rows}},
          open(out + "/results.json", "w"), indent=1)
PY
rm -rf "$work"
step "done: status $status (log and results.json in $out)"
exit $status
