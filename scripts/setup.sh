#!/usr/bin/env bash
# Installs every Debian 12 package cmdistill needs to build, test and run.
# Idempotent: packages already installed are not touched and `apt-get update` runs only when
# something is missing. Works as root (CI, a fresh machine) and with sudo otherwise.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config ccache lld git ca-certificates clang-format
  # the stack
  libtorch-dev libopenblas0-openmp
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev libyaml-cpp-dev nlohmann-json3-dev libssl-dev libicu-dev
  libxxhash-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev openssl curl prometheus
  # the independent reference for model tests (Debian's /usr/bin/python3)
  python3-torch
  # plots of `cmdistill experiment` and scripts/plot_*.py
  python3-matplotlib
  # the deploy tests (tests/deploy: Kubernetes and compose manifests)
  python3-yaml
)

# scripts/test-debian13.sh --cuda builds against Debian 13's CUDA LibTorch instead
# (CMDISTILL_SETUP_LIBTORCH=libtorch-cuda-dev): that root compiles and links only, so it needs
# no python3-torch reference (whose CPU LibTorch conflicts with the CUDA one).
if [[ ${CMDISTILL_SETUP_LIBTORCH:-libtorch-dev} != libtorch-dev ]]; then
  keep=()
  for p in "${PACKAGES[@]}"; do
    case $p in libtorch-dev) keep+=("$CMDISTILL_SETUP_LIBTORCH") ;; python3-torch) ;; *) keep+=("$p") ;; esac
  done
  PACKAGES=("${keep[@]}")
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node.js runs the independent reference tokenizer in the tests (tests/reference/package.json).
# A machine that already has a node keeps it; otherwise Debian's nodejs and npm.
# Inside scripts/test-debian13.sh's root the tree's node_modules already exist (made by the
# host's setup): node alone runs them (CMDISTILL_SETUP_SKIP_NODE_MODULES=1).
node_pkgs=(nodejs npm)
[[ ${CMDISTILL_SETUP_SKIP_NODE_MODULES:-0} == 1 ]] && node_pkgs=(nodejs)
if ! command -v node >/dev/null || ! command -v "${node_pkgs[-1]/nodejs/node}" >/dev/null; then
  for p in "${node_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi

install_node_modules() {
  [[ ${CMDISTILL_SETUP_SKIP_NODE_MODULES:-0} == 1 ]] && return
  local ref
  ref="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/reference"
  if [[ ! -d $ref/node_modules/@huggingface/tokenizers ]]; then
    echo "setup: installing the reference tokenizer and tokenizer files (npm ci in tests/reference)"
    # Only the reference comparisons need these; without the registry they are skipped (and
    # say so), everything else still builds and runs.
    (cd "$ref" && npm ci --no-audit --no-fund --loglevel=error) ||
      echo "setup: WARNING: npm ci failed (no registry?); the tokenizer reference tests will be skipped" >&2
  fi
}

# LibTorch falls back to reference BLAS (~10x slower) unless an optimised one is selected; the
# OpenMP build of OpenBLAS shares LibTorch's OpenMP thread pool, where the pthreads build keeps a
# second pool whose threads spin against LibTorch's (2 threads were 0.2-0.4x of 1 at decode
# batch 8/64: docs/benchmarks.md, "Thread scaling").
select_blas() {
  command -v update-alternatives >/dev/null || return 0
  local alt cand arch
  arch=$(uname -m)-linux-gnu
  for alt in "libblas.so.3-$arch" "liblapack.so.3-$arch" "libopenblas.so.0-$arch"; do
    cand=$(update-alternatives --list "$alt" 2>/dev/null | grep -m1 openblas-openmp || true)
    [[ -z $cand ]] && continue
    update-alternatives --query "$alt" 2>/dev/null | grep -qx "Value: $cand" && continue
    "${SUDO[@]}" update-alternatives --set "$alt" "$cand" >/dev/null ||
      echo "setup: WARNING: could not select $cand for $alt (not root, no sudo?):" \
        "two threads may be slower than one (docs/architecture.md, 'One thread pool')" >&2
  done
}

SUDO=()
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then SUDO=(sudo -n); fi

if [[ ${#missing[@]} -eq 0 ]]; then
  select_blas
  install_node_modules
  echo "setup: all packages present"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi

echo "setup: installing ${#missing[@]} package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

select_blas
install_node_modules
echo "setup: done"
