#!/usr/bin/env bash
# The Prometheus rules of deploy/prometheus: valid, and every alert fires and stays quiet as
# rules_test.yml says (promtool from Debian's `prometheus` package; scripts/setup.sh installs it).
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../deploy/prometheus" && pwd)"
if ! command -v promtool >/dev/null; then
  echo "SKIPPED: promtool not found (apt-get install prometheus)"
  exit 77
fi
promtool check rules "$dir/rules.yml"
cd "$dir" && promtool test rules rules_test.yml
