#!/usr/bin/env bash
# The main job on the embedded default: installs what is missing, builds cmdistill and runs
# `cmdistill local --config configs/quickstart.yaml` (extra arguments are passed on).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/setup.sh

build=${CMDISTILL_BUILD_DIR:-build}
args=(-DCMAKE_BUILD_TYPE=Release)
if [[ ! -f $build/CMakeCache.txt ]] && command -v ninja >/dev/null; then
  args+=(-G Ninja)
fi
cmake -S . -B "$build" "${args[@]}" >/dev/null
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target cmdistill

cat <<'PLAN'
cmdistill quickstart — the plan:
  1. make a synthetic GSM8K-style task (cmdistill datagen)
  2. train a tiny teacher on its worked solutions (cmdistill sft, cached)
  3. warm-start a smaller student
  4. start learner, teacher, reward and two actors as processes on loopback
  5. constrained distillation with the cmdp method
  6. evaluate teacher, student before and student after; print the table
PLAN
exec "$build/services/cli/cmdistill" local --config configs/quickstart.yaml "$@"
