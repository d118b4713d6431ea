#!/usr/bin/env bash
# Builds cmdistill on Debian 13 (trixie) against its LibTorch 2.6 and runs the whole test suite
# there, in a chroot made with debootstrap from the apt mirror and kept between runs.
#
#   scripts/test-debian13.sh                 LibTorch 2.6 (CPU): configure, build, whole ctest
#   scripts/test-debian13.sh -L unit         ctest arguments pass through
#   scripts/test-debian13.sh --cuda          LibTorch 2.6 CUDA (libtorch-cuda-dev, CUDA 12.4):
#                                            configure, compile and link every target, show that
#                                            the binaries link libtorch_cuda (no GPU: no tests)
#   scripts/test-debian13.sh [--cuda] --shell CMD...   run CMD in that root, in the tree
#
# Needs root (debootstrap, chroot, mounts). The roots live under CMDISTILL_DEBIAN13_CACHE
# (default /var/cache/cmdistill): made once (~40 s + the packages), then only updated when the
# package list below changes. The tree is bind-mounted at the same relative place as here, with
# ../shared beside it when present; builds go to build-debian13/ (build-debian13-cuda/) in the
# tree, so a second run is incremental (ccache inside the root as well).
# Environment: JOBS (default: all cores), CMDISTILL_DEBIAN_MIRROR (default deb.debian.org),
# CMDISTILL_WERROR=1 (warnings are errors, as in CI).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
t0=$(date +%s)
say() { echo "test-debian13 [$(($(date +%s) - t0))s]: $*"; }
die() { echo "test-debian13: $*" >&2; exit 1; }

mode=cpu action=test
if [[ ${1:-} == --cuda ]]; then mode=cuda; shift; fi
if [[ ${1:-} == --shell ]]; then action=shell; shift; fi

[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot and bind mounts)"
mirror=${CMDISTILL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${CMDISTILL_DEBIAN13_CACHE:-/var/cache/cmdistill}
jobs=${JOBS:-$(nproc)}

# What the root needs beyond scripts/setup.sh's list (which runs inside it: the same package
# names exist in trixie).
if [[ $mode == cuda ]]; then
  name=debian13-cuda
  # libtorch-cuda-dev replaces libtorch-dev; nvidia-cuda-toolkit brings nvcc and the CUDA
  # headers and libraries (cudart, cublas, cufft, curand, cusparse, cusolver, nvrtc, nvtx).
  extra=(libtorch-cuda-dev nvidia-cuda-toolkit)
  libtorch=libtorch-cuda-dev
else
  libtorch=libtorch-dev
  name=debian13
  # ip, for the netns_partitions test (network namespaces; skipped without it)
  extra=(iproute2)
fi
chroot_dir=$cache/$name

ensure_tools() {
  command -v debootstrap >/dev/null && command -v unshare >/dev/null && return
  say "installing debootstrap"
  apt-get install -y -qq debootstrap >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
}

make_root() {
  ensure_tools
  local tmp=$chroot_dir.partial
  rm -rf "$tmp"
  mkdir -p "$cache"
  say "debootstrap --variant=minbase trixie -> $chroot_dir"
  debootstrap --variant=minbase --components=main,contrib,non-free trixie "$tmp" "$mirror" \
    >"$cache/$name.debootstrap.log" 2>&1 || {
      tail -20 "$cache/$name.debootstrap.log" >&2; die "debootstrap failed"; }
  mv "$tmp" "$chroot_dir"
}

[[ -x $chroot_dir/usr/bin/apt-get ]] || make_root
cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf" 2>/dev/null || true
cp /etc/hosts "$chroot_dir/etc/hosts" 2>/dev/null || true

# The tree (and ../shared) appear inside the root at the same path as here.
shared=$(cd "$root/.." && pwd)/shared
inner=$(cat <<'INNER'
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
cd "$TREE"
stamp=/var/lib/cmdistill-packages
want="$(cat scripts/setup.sh) ${EXTRA}"
if [[ ! -f $stamp ]] || [[ $(cat "$stamp") != "$(echo "$want" | sha256sum)" ]]; then
  if [[ -n ${EXTRA} ]]; then
    apt-get update -qq
    # libtorch-cuda-2.6 depends on nvidia-cudnn, an installer that downloads cuDNN from NVIDIA
    # (unreachable here): an empty stand-in of that name satisfies it (see the script).
    [[ $CMDISTILL_MODE == cuda ]] && sh deploy/docker/cudnn-standin.sh
    apt-get install -y -qq --no-install-recommends ${EXTRA} >/dev/null
  fi
  # The tree's node_modules (the reference tokenizer) come from the host's set-up when it ran;
  # otherwise setup.sh installs npm here and makes them.
  skip_npm=0
  [[ -d tests/reference/node_modules/@huggingface/tokenizers ]] && skip_npm=1
  CMDISTILL_SETUP_SKIP_NODE_MODULES=$skip_npm CMDISTILL_SETUP_LIBTORCH=${LIBTORCH} \
    bash scripts/setup.sh
  echo "$want" | sha256sum >"$stamp"
fi
INNER
)

# The mounts live in a private mount namespace, so they vanish with it. Inside a chroot (/ is
# not a mount point, e.g. ../shared/tools/fresh-machine-test) no namespace can make its
# propagation private: there the mounts are made in this namespace, with no recursive bind
# (unmounting an rbind's copies would propagate to the host's /dev), and unmounted on exit.
if unshare --mount --propagation private true 2>/dev/null; then
  namespace=(unshare --mount --propagation private)
  export OWN_NAMESPACE=1
else
  namespace=()
  export OWN_NAMESPACE=0
fi
run_in_root() {  # run_in_root SCRIPT [ARGS...]: bash -c SCRIPT inside the root, tree mounted
  local script=$1
  shift
  "${namespace[@]}" bash -s -- "$chroot_dir" "$root" "$shared" "$script" "$@" <<'MOUNTS'
set -euo pipefail
r=$1 tree=$2 shared=$3 script=$4
mounted=()
if [[ $OWN_NAMESPACE == 0 ]]; then
  trap 'for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" || true; done' EXIT
fi
mnt() { mount "$@"; mounted+=("${@: -1}"); }
# The root a mount point of its own: `ip netns exec` remounts / (--make-rslave) inside it.
mnt --bind "$r" "$r"
mnt -t proc proc "$r/proc"
mnt -t sysfs sysfs "$r/sys"
if [[ $OWN_NAMESPACE == 1 ]]; then
  mnt --rbind /dev "$r/dev"
else
  mnt --bind /dev "$r/dev"
  mnt --bind /dev/pts "$r/dev/pts"
fi
mkdir -p "$r/run" "$r/tmp"
mnt -t tmpfs tmpfs "$r/run"
mnt -t tmpfs -o size=8g tmpfs "$r/tmp"
mkdir -p "$r$tree"
mnt --bind "$tree" "$r$tree"
if [[ -d $shared ]]; then mkdir -p "$r$shared"; mnt --bind "$shared" "$r$shared"; fi
# kubectl (a static binary; not packaged by Debian) for the k8s_manifests test, from the host.
if [[ -n $KUBECTL ]]; then
  touch "$r/usr/local/bin/kubectl"
  mnt --bind "$KUBECTL" "$r/usr/local/bin/kubectl"
fi
chroot "$r" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TREE="$tree" EXTRA="$EXTRA" \
  LIBTORCH="$LIBTORCH" \
  JOBS="$JOBS" CMDISTILL_WERROR="${CMDISTILL_WERROR:-0}" CMDISTILL_MODE="$MODE" \
  /bin/bash -c "$script" bash "${@:5}"
MOUNTS
}
KUBECTL=$(command -v kubectl >/dev/null && readlink -f "$(command -v kubectl)" || true)
export EXTRA="${extra[*]}" KUBECTL LIBTORCH="$libtorch" JOBS="$jobs" MODE="$mode"

say "packages ($name)"
run_in_root "$inner"

build_script=$(cat <<'BUILD'
set -euo pipefail
cd "$TREE"
build=build-$([[ $CMDISTILL_MODE == cuda ]] && echo debian13-cuda || echo debian13)
args=(-DCMAKE_BUILD_TYPE=Release -DCMDISTILL_WERROR=$([[ $CMDISTILL_WERROR == 1 ]] && echo ON || echo OFF))
[[ -f $build/CMakeCache.txt ]] || args+=(-G Ninja)
# No cuDNN in the CUDA root (the stand-in): the link is told that libcudnn.so.9 is absent. lld
# links without it; GNU ld reports cuDNN's 83 symbols in libtorch_cuda.so as undefined.
[[ $CMDISTILL_MODE == cuda ]] && args+=(-DCMDISTILL_LINK_WITHOUT_CUDNN=ON)
dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\n' 'libtorch*-dev' 2>/dev/null |
  awk '$1 == "ii" { print "LibTorch: " $2 " " $3 }'
start=$(date +%s)
cmake -S . -B "$build" "${args[@]}" >/dev/null
cmake --build "$build" -j "$JOBS"
echo "build: $(( $(date +%s) - start )) s"
if [[ $CMDISTILL_MODE == cuda ]]; then
  n=0 total=0
  while read -r f; do
    total=$((total + 1))
    if readelf -d "$f" | grep -q 'NEEDED.*libtorch_cuda\.so'; then n=$((n + 1)); fi
  done < <(find "$build" -type f -executable \( -name '*_test' -o -name '*_bench' \
             -o -name '*_fuzz' -o -name cmdistill \) | sort)
  echo "executables whose NEEDED list has libtorch_cuda.so: $n of $total"
  echo "app/cli/cmdistill:"
  readelf -d "$build/app/cli/cmdistill" | grep -E 'NEEDED.*(torch|c10)'
  echo "as the loader resolves it (no GPU driver, no cuDNN here):"
  ldd "$build/app/cli/cmdistill" | grep -E 'torch_cuda|cudart|cublas\.|cudnn'
  readelf -d "$build/app/cli/cmdistill" | grep -q 'NEEDED.*libtorch_cuda\.so' ||
    { echo "cmdistill does not link libtorch_cuda" >&2; exit 1; }
  exit 0
fi
ctest --test-dir "$build" --output-on-failure -j "$JOBS" "$@"
BUILD
)

case $action in
shell)
  run_in_root 'cd "$TREE" && exec "$@"' "$@"
  ;;
test)
  say "build and test ($mode)"
  run_in_root "$build_script" "$@"
  say "done"
  ;;
esac
