#!/usr/bin/env bash
# docker-compose.yml for real, with Debian's podman + podman-compose (no Docker engine needed):
# builds the CPU and Prometheus images, runs `prepare`, brings the stack up with 2 actors,
# waits for the learner's FINISHED, checks that Prometheus scraped every role (both actors
# included) and that the trained student in the volume loads and generates, then tears
# everything down (containers, network, volume).
#
#   bash deploy/test-compose.sh            (as root; ctest -L deploy runs it as compose_stack)
#
# Exit 77 (skipped, with the reason) where podman cannot run: not root, no podman and no apt.
# Podman's settings and the locally made debian:12 base: deploy/podman-lib.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
t0=$(date +%s)
say() { echo "test-compose [$(( $(date +%s) - t0 ))s]: $*"; }
skip() { echo "SKIPPED: $*"; exit 77; }

source deploy/podman-lib.sh
podman_ready
debian_base_image debian:12 bookworm

say "building localhost/cmdistill:cpu (deploy/docker/Dockerfile.cpu)"
podman build --pull=never -q -f deploy/docker/Dockerfile.cpu -t localhost/cmdistill:cpu . >/dev/null
say "building localhost/cmdistill-prometheus:latest"
podman build --pull=never -q -f deploy/docker/Dockerfile.prometheus \
  -t localhost/cmdistill-prometheus:latest . >/dev/null

project="cmdistill-test-$$"
export CMDISTILL_PROMETHEUS_PORT
CMDISTILL_PROMETHEUS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
compose() { podman-compose -p "$project" -f docker-compose.yml "$@"; }
logs=$(mktemp -d)
cleanup() {
  compose logs >"$logs/all.log" 2>&1 || true
  compose down -v >/dev/null 2>&1 || true
  podman volume rm -f "${project}_runs" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# `prepare` first and alone (podman-compose 1.0 does not wait for depends_on conditions;
# docker compose does): the services then find the models; its rerun in `up` is a cache hit.
say "prepare: data, tokenizer, teacher and warm student into the volume"
compose up -d --no-build prepare >"$logs/prepare.log" 2>&1 || { cat "$logs/prepare.log"; exit 1; }
code=$(podman wait "${project}_prepare_1")
[[ $code == 0 ]] || { podman logs "${project}_prepare_1"; echo "FAIL: prepare exited $code"; exit 1; }
say "up: learner, teacher, reward, 2 actors, prometheus"
compose up -d --no-build >"$logs/up.log" 2>&1 || { cat "$logs/up.log"; exit 1; }

learner="${project}_learner_1"
deadline=$(( $(date +%s) + ${CMDISTILL_COMPOSE_TIMEOUT:-900} ))
until podman logs "$learner" 2>&1 | grep -q '^FINISHED '; do
  if (( $(date +%s) > deadline )); then
    podman ps -a --filter "name=$project" --format '{{.Names}} {{.Status}}'
    podman logs --tail 30 "$learner" 2>&1 || true
    echo "FAIL: the learner did not report FINISHED in time"; exit 1
  fi
  sleep 2
done
say "learner: $(podman logs "$learner" 2>&1 | grep '^FINISHED ' | tail -1)"

# The learner and the actors keep /metrics up for services.final_scrape_seconds after they
# end: once the learner's container has exited, that window is over for everyone, and every
# role's last values must be in Prometheus however fast the run was.
podman wait --condition=exited "$learner" >/dev/null 2>&1 || true
for a in $(podman ps -a --filter "name=${project}_actor" --format '{{.Names}}'); do
  podman wait --condition=exited "$a" >/dev/null 2>&1 || true
done
say "learner and actors exited (after their final scrape window)"
# Every role scraped, both actors among them (max over the run: actors exit when done).
query='count by (role) (max_over_time(up[15m]) == 1)'
got=$(curl -sf "http://127.0.0.1:$CMDISTILL_PROMETHEUS_PORT/api/v1/query" --data-urlencode "query=$query")
echo "$got" | python3 -c '
import json, sys
doc = json.load(sys.stdin)
counts = {r["metric"].get("role"): int(float(r["value"][1])) for r in doc["data"]["result"]}
print("test-compose: targets scraped by role:", counts)
want = {"learner": 1, "teacher": 1, "reward": 1, "actor": 2}
bad = {k: counts.get(k, 0) for k, v in want.items() if counts.get(k, 0) < v}
sys.exit(f"FAIL: roles not scraped (or too few): {bad}" if bad else 0)' || {
  curl -sf "http://127.0.0.1:$CMDISTILL_PROMETHEUS_PORT/api/v1/targets?state=any" | head -c 3000; echo
  exit 1; }
rules=$(curl -sf "http://127.0.0.1:$CMDISTILL_PROMETHEUS_PORT/api/v1/rules" |
  python3 -c 'import json,sys; print(sum(len(g["rules"]) for g in json.load(sys.stdin)["data"]["groups"]))')
[[ $rules -ge 10 ]] || { echo "FAIL: only $rules rules loaded"; exit 1; }
say "prometheus: $rules rules loaded"

say "the trained student in the volume loads and generates"
out=$(podman run --rm -v "${project}_runs:/runs" localhost/cmdistill:cpu generate \
  --model /runs/compose/final --prompt $'Question: Ann has 2 apples and gets 1 more. How many?\nAnswer:' \
  --max-new-tokens 16 --temperature 0 --json)
echo "$out" | python3 -c '
import json, sys
s = json.loads(sys.stdin.readline())
assert s["ids"], "no tokens generated"
print("test-compose: student says:", repr(s["text"]))'
say "PASS (whole run $(( $(date +%s) - t0 )) s; logs in $logs)"
