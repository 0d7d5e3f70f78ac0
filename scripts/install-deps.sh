#!/usr/bin/env bash
# Installs every system package edgeward's build and tests need. Idempotent:
# installs only what is missing. Debian 12 / Ubuntu / Raspberry Pi OS, as root.
set -euo pipefail

PACKAGES=(
  clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config   # BPF programs, skeletons
  cmake make g++                                                  # native addon (cmake-js)
  nodejs npm                                                      # runtime (skipped if node exists)
  busybox-static util-linux procps iproute2                       # tests: test binaries, unshare, ps
  qemu-system-x86 cpio xz-utils zstd kmod                         # tests/vm: BPF-LSM kernel in a guest
  mosquitto mosquitto-clients openssl                             # hub sync tests: real broker, TLS
  docker.io                                                       # container identity tests: real dockerd
  apparmor                                                        # bench/lsm: AppArmor profiles beside bpf-lsm
  debootstrap systemd python3-minimal                              # deployment tests: systemd-in-docker rootfs, systemd-analyze, notify receiver
)

missing=()
for p in "${PACKAGES[@]}"; do
  case "$p" in
    nodejs|npm) command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all system packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
