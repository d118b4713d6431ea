#!/usr/bin/env bash
# Fuzzes the input parsers with libFuzzer under ASan+UBSan (Debian's clang 14):
#   tokenizer       tokenizer.json loading, encode/decode
#   config          the YAML run file with --set overrides
#   answer          answer extraction and grading
#   safetensors     a safetensors file's header and offsets
#   reward_request  an EvaluateRequest through a real in-process reward service
#   learner_submission  a SubmitTrajectoriesRequest: the learner's trajectory checks and
#                   exactly-once lease accounting
#   teacher_request a ScoreRequest through a real in-process teacher service (fake scorer)
#
#   scripts/fuzz.sh [RUNS] [TARGET...]     RUNS executions per target (default 1000000)
#   CMDISTILL_FUZZ_MERGE=1 scripts/fuzz.sh  also merge new coverage into tests/fuzz/corpus/
#
# Builds in build-fuzz/. Prints executions and crashes per target; exits 1 if any target
# crashed (the crashing input is kept in build-fuzz/crashes/<target>/). CI replays the
# committed corpora in the ordinary build (ctest -L fuzz).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-1000000}"
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(tokenizer config answer safetensors reward_request learner_submission
  teacher_request)

need=()
command -v clang++ >/dev/null || need+=(clang)
[[ -n $(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a 2>/dev/null) ]] ||
  need+=(libclang-rt-14-dev)
if [[ ${#need[@]} -gt 0 ]]; then
  echo "fuzz: installing ${need[*]}"
  SUDO=(); [[ $(id -u) -eq 0 ]] || SUDO=(sudo)
  "${SUDO[@]}" apt-get install -y -qq "${need[@]}" >/dev/null ||
    { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq "${need[@]}" >/dev/null; }
fi
bash "$root/scripts/setup.sh" >/dev/null

build="$root/build-fuzz"
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMDISTILL_FUZZ=ON -DCMDISTILL_BUILD_TESTS=OFF -DCMDISTILL_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build" --target "${targets[@]/%/_fuzz}"

failed=0
for t in "${targets[@]}"; do
  work="$build/corpus/$t"
  crashes="$build/crashes/$t"
  mkdir -p "$work" "$crashes"
  cp -n "$root/tests/fuzz/corpus/$t/"* "$work/" 2>/dev/null || true
  log="$build/$t.log"
  start=$(date +%s)
  if ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
     "$build/tests/fuzz/${t}_fuzz" -runs="$runs" -max_len=65536 -rss_limit_mb=4096 \
       -print_final_stats=1 -artifact_prefix="$crashes/" "$work" >"$log" 2>&1; then
    status=ok
  else
    status=CRASH; failed=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  echo "fuzz: $t: $status, $execs executions in $(( $(date +%s) - start )) s, corpus $(ls "$work" | wc -l) inputs, crashes $(ls "$crashes" | wc -l) (log: $log)"
  if [[ ${CMDISTILL_FUZZ_MERGE:-0} == 1 ]]; then
    "$build/tests/fuzz/${t}_fuzz" -merge=1 "$root/tests/fuzz/corpus/$t" "$work" >/dev/null 2>&1 || true
  fi
done
exit $failed
