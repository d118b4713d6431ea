#!/bin/sh
# Installs an empty package named nvidia-cudnn, so that Debian 13's libtorch-cuda-2.6 (which
# depends on it) installs where NVIDIA's servers cannot be reached. Debian's own nvidia-cudnn is
# an installer that downloads cuDNN 9 from developer.download.nvidia.com; this stand-in
# contains no cuDNN library or header. What it allows: configuring, compiling and linking
# against the CUDA LibTorch (the link is told that libcudnn.so.9 is absent). What it does not:
# running anything on a GPU, since libtorch_cuda.so needs libcudnn.so.9 at load time.
# Used by scripts/test-debian13.sh --cuda and deploy/docker/Dockerfile.cuda (CUDNN=standin).
set -eu
if dpkg-query -W -f='${Version}' nvidia-cudnn 2>/dev/null | grep -q cmdistill; then exit 0; fi
d=$(mktemp -d)
mkdir -p "$d/DEBIAN"
cat >"$d/DEBIAN/control" <<'CONTROL'
Package: nvidia-cudnn
Version: 9.0.0.312~cuda12+cmdistill.standin
Architecture: all
Maintainer: cmdistill <cmdistill@localhost>
Description: empty stand-in for Debian's cuDNN downloader (cmdistill's CUDA build check)
 Satisfies libtorch-cuda-2.6's dependency on nvidia-cudnn; contains no cuDNN.
CONTROL
dpkg-deb --build "$d" "$d.deb" >/dev/null
dpkg -i "$d.deb" >/dev/null
apt-mark hold nvidia-cudnn >/dev/null
rm -rf "$d" "$d.deb"
