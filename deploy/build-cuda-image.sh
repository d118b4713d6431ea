#!/usr/bin/env bash
# Builds the GPU image (deploy/docker/Dockerfile.cuda) with podman on a machine without Docker
# Hub or NVIDIA's servers: the debian:13 base is made with debootstrap (main, contrib,
# non-free), and cuDNN is the empty stand-in (CUDNN=standin), so the image builds and its binary
# links against Debian 13's CUDA LibTorch 2.6 but it cannot run CUDA. Prints the build time,
# the image size and the binary's CUDA libraries.
#   bash deploy/build-cuda-image.sh [TAG]        (as root; default localhost/cmdistill:cuda)
# CUDNN=download builds what a GPU user runs (cuDNN fetched from NVIDIA during the build).
# Where scripts/test-debian13.sh --cuda has run, its root's downloaded .deb files are lent to
# apt inside the build (a read-only cache), so the ~4 GB of CUDA packages come once.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tag=${1:-localhost/cmdistill:cuda}
t0=$(date +%s)
say() { echo "build-cuda-image [$(( $(date +%s) - t0 ))s]: $*"; }
skip() { echo "SKIPPED: $*"; exit 77; }
source deploy/podman-lib.sh
podman_ready
debian_base_image debian:13 trixie main,contrib,non-free

vols=()
debs=${CMDISTILL_DEBIAN13_CACHE:-/var/cache/cmdistill}/debian13-cuda/var/cache/apt/archives
if [[ -d $debs ]] && compgen -G "$debs/*.deb" >/dev/null; then
  say "lending apt the .deb files of $debs"
  mkdir -p /var/cache/cmdistill/cuda-image-debs
  cp -lu "$debs"/*.deb /var/cache/cmdistill/cuda-image-debs/ 2>/dev/null ||
    cp -u "$debs"/*.deb /var/cache/cmdistill/cuda-image-debs/
  vols=(-v /var/cache/cmdistill/cuda-image-debs:/var/cache/apt/archives)
fi
say "podman build -f deploy/docker/Dockerfile.cuda --build-arg CUDNN=${CUDNN:-standin} -t $tag"
podman build --pull=never "${vols[@]}" --build-arg CUDNN="${CUDNN:-standin}" \
  ${JOBS:+--build-arg JOBS=$JOBS} -f deploy/docker/Dockerfile.cuda -t "$tag" .
say "built $tag: $(podman image inspect "$tag" --format '{{.Size}}' |
  awk '{ printf "%.2f GB", $1 / 1e9 }')"
say "the binary's LibTorch and CUDA libraries, as the image's loader resolves them:"
podman run --rm --entrypoint sh "$tag" -c \
  'ldd /usr/local/bin/cmdistill | grep -E "torch|c10|cuda|cudnn|cublas"' || true
say "done"
