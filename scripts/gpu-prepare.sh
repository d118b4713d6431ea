#!/usr/bin/env bash
# Run HERE (a Debian 12 machine with apt), before scripts/gpu-check.sh runs on a GPU machine that
# has a CUDA PyTorch but no apt and no network: downloads the Debian 12 packages the LibTorch
# subset needs besides LibTorch (protobuf with protoc, Abseil, nlohmann-json, GoogleTest, Google
# Benchmark) and unpacks them with `dpkg -x` into .gpu-deps/root (ignored by git; name
# .gpu-deps in the device run's `carry`). Nothing is installed into / here or there.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deps=$root/.gpu-deps
PACKAGES=(
  libprotobuf-dev libprotobuf32 libprotoc32 protobuf-compiler
  libabsl-dev libabsl20220623
  nlohmann-json3-dev
  libgtest-dev libgmock-dev
  libbenchmark-dev libbenchmark1debian
)
rm -rf "$deps"
mkdir -p "$deps/debs" "$deps/root"
if ! (cd "$deps/debs" && apt-get download "${PACKAGES[@]}" >/dev/null 2>&1); then
  echo "gpu-prepare: apt-get download failed; run 'apt-get update' once and retry" >&2
  exit 1
fi
for f in "$deps"/debs/*.deb; do dpkg -x "$f" "$deps/root"; done
rm -rf "$deps/debs" "$deps/root/usr/share/doc" "$deps/root/usr/share/man"
# Shared libraries are what the build links; the static protobuf and Abseil archives only
# weigh on the 64 MiB a device run carries (GoogleTest and Benchmark ship static only: kept).
find "$deps/root" \( -name 'libprotobuf*.a' -o -name 'libprotoc.a' -o -name 'libabsl_*.a' \) -delete
echo "gpu-prepare: $(du -sh "$deps" | cut -f1) in $deps (carry .gpu-deps)"
