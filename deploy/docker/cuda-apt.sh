#!/bin/sh
# apt for deploy/docker/Dockerfile.cuda: enables contrib and non-free (the CUDA LibTorch and the
# CUDA toolkit live there), provides cuDNN as asked, installs the given packages, cleans up.
#   cuda-apt.sh download|standin PACKAGE...
#     download  Debian's nvidia-cudnn: downloads cuDNN 9 from NVIDIA while installing
#     standin   deploy/docker/cudnn-standin.sh: an empty package, no cuDNN (build and link only)
set -eu
cudnn=$1
shift
for f in /etc/apt/sources.list.d/debian.sources; do
  [ -f "$f" ] && sed -i 's/^Components: main$/Components: main contrib non-free/' "$f"
done
[ -f /etc/apt/sources.list ] && sed -i -E 's/^(deb .* trixie[a-z-]*) main$/\1 main contrib non-free/' /etc/apt/sources.list
apt-get update -qq
case $cudnn in
  standin) sh "$(dirname "$0")/cudnn-standin.sh" ;;
  download) apt-get install -y -qq --no-install-recommends ca-certificates curl nvidia-cudnn ;;
  *) echo "cuda-apt.sh: CUDNN must be download or standin, not '$cudnn'" >&2; exit 2 ;;
esac
apt-get install -y -qq --no-install-recommends "$@"
# The OpenMP OpenBLAS (one thread pool with LibTorch's; scripts/setup.sh says why) where
# installed, also when a package pulled in the pthreads one too.
for a in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
  f=/usr/lib/$(uname -m)-linux-gnu/openblas-openmp/$a
  if [ -e "$f" ]; then update-alternatives --set "$a-$(uname -m)-linux-gnu" "$f"; fi
done
rm -rf /var/lib/apt/lists/*
