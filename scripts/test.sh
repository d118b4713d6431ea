#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh), configures, builds and runs the whole test suite.
#   scripts/test.sh                 everything
#   scripts/test.sh -L unit         only tests labelled unit (any ctest arguments pass through)
# Environment: CMDISTILL_BUILD_DIR (default build/), JOBS (default: all cores),
# CMDISTILL_WERROR=1 (warnings are errors; CI sets it).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/setup.sh
# One way to propagate errors: the status macros (docs/architecture.md).
python3 scripts/check-status-style.py

build=${CMDISTILL_BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
# The same configuration as scripts/quickstart.sh, so that alternating the two rebuilds
# nothing. Warnings become errors where CMDISTILL_WERROR=1 (.ci/run sets it); a build folder
# configured either way keeps its setting until told otherwise.
args=(-DCMAKE_BUILD_TYPE=Release)
[[ ${CMDISTILL_WERROR:-0} == 1 ]] && args+=(-DCMDISTILL_WERROR=ON)
if [[ ! -f $build/CMakeCache.txt ]] && command -v ninja >/dev/null; then
  args+=(-G Ninja)
fi
start=$(date +%s)
cmake -S . -B "$build" "${args[@]}" >/dev/null
cmake --build "$build" -j "$jobs"
echo "build: $(( $(date +%s) - start )) s"
ctest --test-dir "$build" --output-on-failure -j "$jobs" "$@"
