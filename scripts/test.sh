#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh), configures, builds and runs the whole test suite.
#   scripts/test.sh                 everything
#   scripts/test.sh -L unit         only tests labelled unit (any ctest arguments pass through)
# Environment: CMDISTILL_BUILD_DIR (default build/), JOBS (default: all cores).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/setup.sh

build=${CMDISTILL_BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
args=(-DCMAKE_BUILD_TYPE=Release -DCMDISTILL_WERROR=ON)
if [[ ! -f $build/CMakeCache.txt ]] && command -v ninja >/dev/null; then
  args+=(-G Ninja)
fi
start=$(date +%s)
cmake -S . -B "$build" "${args[@]}" >/dev/null
cmake --build "$build" -j "$jobs"
echo "build: $(( $(date +%s) - start )) s"
ctest --test-dir "$build" --output-on-failure -j "$jobs" "$@"
