# Shared by deploy/test-compose.sh and deploy/build-cuda-image.sh (sourced, bash): rootful
# podman as it runs on these machines, and Debian base images made locally.
# As measured on this machine's kernel: runc (crun fails on its hybrid cgroups) and ulimits
# within the hard limits, set in /etc/containers/containers.conf here; Docker Hub is not
# reachable, so debian:12 / debian:13 are made with debootstrap + podman import when missing.
# Callers define say() and skip().

podman_ready() {  # installs and configures podman; skip()s where it cannot run
  [[ $(id -u) -eq 0 ]] || skip "needs root (rootful podman)"
  if ! command -v podman >/dev/null || ! command -v podman-compose >/dev/null ||
     ! command -v debootstrap >/dev/null || ! command -v runc >/dev/null; then
    command -v apt-get >/dev/null || skip "podman/podman-compose missing and no apt-get"
    say "installing podman, podman-compose, runc, debootstrap"
    apt-get install -y -qq podman podman-compose runc debootstrap >/dev/null ||
      { apt-get update -qq && apt-get install -y -qq podman podman-compose runc debootstrap >/dev/null; } ||
      skip "cannot install podman"
  fi
  local conf=/etc/containers/containers.conf
  if ! grep -qs '^runtime = "runc"' "$conf"; then
    mkdir -p /etc/containers
    [[ -f $conf ]] && cp "$conf" "$conf.before-cmdistill"
    cat >"$conf" <<'CONF'
# Written by cmdistill's deploy/podman-lib.sh: crun fails on this kernel's hybrid cgroups and
# podman's default ulimits exceed the hard limits here.
[containers]
default_ulimits = ["nofile=1024:4096", "nproc=1024:1024"]
[engine]
runtime = "runc"
CONF
  fi
  podman info >/dev/null 2>&1 || skip "podman cannot run here: $(podman info 2>&1 | tail -1)"
}

debian_base_image() {  # debian_base_image TAG SUITE [COMPONENTS]: e.g. debian:13 trixie main,contrib,non-free
  local tag=$1 suite=$2 components=${3:-main} rootfs
  podman image exists "$tag" && return
  say "making the $tag base image (debootstrap --variant=minbase $suite)"
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase --components="$components" "$suite" "$rootfs" \
    "${CMDISTILL_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
  tar -C "$rootfs" -c . | podman import - "$tag" >/dev/null
  rm -rf "$rootfs"
}
