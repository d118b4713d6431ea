#!/usr/bin/env bash
# The main job on the embedded default: installs what is missing, builds cmdistill and runs
# `cmdistill local --config configs/quickstart.yaml` (extra arguments are passed on).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/setup.sh

build=${CMDISTILL_BUILD_DIR:-build}
# The same configuration as scripts/test.sh (one build/, nothing rebuilt when alternating).
args=(-DCMAKE_BUILD_TYPE=Release)
if [[ ! -f $build/CMakeCache.txt ]] && command -v ninja >/dev/null; then
  args+=(-G Ninja)
fi
cmake -S . -B "$build" "${args[@]}" >/dev/null
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target cmdistill

echo "quickstart: cmdistill local --config configs/quickstart.yaml $*"
echo "  (data -> tokenizer -> teacher SFT [cached] -> student warm start -> learner, teacher,"
echo "   reward and two actors as processes -> cmdp training -> evaluation table)"
exec "$build/app/cli/cmdistill" local --config configs/quickstart.yaml "$@"
