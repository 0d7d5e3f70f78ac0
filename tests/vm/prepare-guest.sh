#!/usr/bin/env bash
# prepare-guest.sh: makes (or reuses) a bootable BPF-LSM guest for
# run-in-vm.sh and prints its directory on stdout (messages go to stderr).
#
# The guest is Debian's own generic kernel package (linux-image-<ver>-amd64),
# fetched with `apt-get download` and unpacked with `dpkg -x` under
# build/vm/ — never installed into the host's /boot — plus an initramfs made
# of busybox-static, the kernel's 9p/virtio/overlay modules and
# tests/vm/guest-init.sh.
#
# Which kernel: the newest package of Debian's stock series for this release
# (the series `linux-image-amd64` depends on: 6.1 on Debian 12), because that
# is what edge nodes run and the oldest kernel the bpf-lsm backend must
# support. Package versions vanish from the mirror when a new ABI is
# published, so no version is ever hard-coded. Overrides:
#   EDGEWARD_VM_KERNEL_SERIES=6.12   newest package of another series
#   EDGEWARD_VM_KERNEL_SERIES=newest newest generic package of any series
#   EDGEWARD_VM_KERNEL=linux-image-6.1.0-56-amd64   exactly this package
#   EDGEWARD_VM_OFFLINE=1            do not ask apt; reuse the last guest
# When apt cannot resolve or download anything, the last prepared guest of
# the same selection is reused (with a warning).
#
# Output layout (build/vm/ is gitignored):
#   build/vm/debs/<package>.deb              the downloaded package
#   build/vm/guests/<kernel release>/        vmlinux (or bzImage), initramfs.cpio,
#                                            config, kernel.release, modules.txt, stamp
#   build/vm/last-<selection>                name of the last guest of that selection
# x86_64 only: arm64 needs qemu-system-aarch64 -M virt and a kernel >= 6.4 for
# BPF-LSM attachment (Debian 6.1 arm64 refuses it with ENOTSUPP).
set -euo pipefail

# The whole script is one compound command: the shell reads all of it before
# running any, so an edit of this file during a (long) run cannot derail it.
{

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VM_DIR=${EDGEWARD_VM_DIR:-$REPO/build/vm}
BUSYBOX=${EDGEWARD_VM_BUSYBOX:-/bin/busybox}
# Modules the guest init needs. The ones a kernel builds in are skipped.
WANTED_MODULES=(virtio_pci virtio_console 9pnet_virtio 9p overlay)

log() { echo "prepare-guest: $*" >&2; }
die() { echo "prepare-guest: error: $*" >&2; exit 1; }

[ "$(uname -m)" = x86_64 ] || die "only x86_64 hosts are supported (arm64 guests are not implemented yet)"
for tool in apt-get apt-cache dpkg dpkg-deb depmod cpio xz zstd flock sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found: run scripts/install-deps.sh"
done
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: run scripts/install-deps.sh (busybox-static)"
file_is_static() { ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'INTERP'; }
if command -v readelf >/dev/null; then
  file_is_static "$BUSYBOX" || die "$BUSYBOX is dynamically linked; the initramfs needs busybox-static"
fi

mkdir -p "$VM_DIR/debs" "$VM_DIR/guests"
# One preparation at a time (jest workers, parallel CI jobs, the other helper).
exec 9>"$VM_DIR/.lock"
flock 9

selection=${EDGEWARD_VM_KERNEL:-${EDGEWARD_VM_KERNEL_SERIES:-stock}}
last_file="$VM_DIR/last-$(printf '%s' "$selection" | tr -c 'A-Za-z0-9.+-' _)"

reuse_last() {
  local why=$1 last
  last=$(cat "$last_file" 2>/dev/null || true)
  if [ -n "$last" ] && [ -f "$VM_DIR/guests/$last/stamp" ]; then
    log "warning: $why; reusing the last prepared guest ($last)"
    echo "$VM_DIR/guests/$last"
    exit 0
  fi
  die "$why, and no guest was prepared before (selection '$selection')"
}

# Generic (not cloud, not rt) kernel image packages with a real ABI version:
# linux-image-6.1.0-56-amd64, linux-image-6.12.117+deb12-amd64 — not the
# meta packages linux-image-amd64 / linux-image-6.12-amd64.
list_generic() {
  # search lists only packages with a record (downloadable), not virtual names.
  apt-cache search --names-only '^linux-image-[0-9].*-amd64$' 2>/dev/null | awk '{print $1}' |
    grep -E '^linux-image-[0-9]+\.[0-9]+\.[0-9][^-]*(-[0-9]+)?-amd64$'
}

series_of() { echo "$1" | sed -E 's/^linux-image-([0-9]+\.[0-9]+)[.].*/\1/'; }

resolve_package() {
  if [ -n "${EDGEWARD_VM_KERNEL:-}" ]; then
    echo "$EDGEWARD_VM_KERNEL"
    return
  fi
  local all series
  all=$(list_generic | sort -V)
  [ -n "$all" ] || return 1
  series=${EDGEWARD_VM_KERNEL_SERIES:-}
  if [ -z "$series" ]; then
    local stock
    stock=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
    [ -n "$stock" ] && series=$(series_of "$stock")
  fi
  if [ -z "$series" ] || [ "$series" = newest ]; then
    echo "$all" | tail -n 1
  else
    echo "$all" | awk -v s="$series" '{ if (index($0, "linux-image-" s ".") == 1) print }' | tail -n 1
  fi
}

if [ "${EDGEWARD_VM_OFFLINE:-0}" = 1 ]; then
  reuse_last "EDGEWARD_VM_OFFLINE=1"
fi

# Resolving costs ~1 s of apt-cache; its answer only changes with the package
# lists, so it is remembered per state of /var/lib/apt/lists.
lists_state=$(stat -c '%n %Y %s' /var/lib/apt/lists/*Packages* 2>/dev/null | sha256sum | cut -c1-16)
resolved_file="$VM_DIR/resolved-$(basename "$last_file" | sed 's/^last-//')"
pkg=""
if [ "$(sed -n 1p "$resolved_file" 2>/dev/null)" = "$lists_state" ]; then
  pkg=$(sed -n 2p "$resolved_file")
else
  pkg=$(resolve_package || true)
  [ -n "$pkg" ] && printf '%s\n%s\n' "$lists_state" "$pkg" >"$resolved_file"
fi
[ -n "$pkg" ] || reuse_last "apt knows no linux-image-*-amd64 package for selection '$selection' (apt-get update needed?)"

# The .deb, downloaded once.
deb=$(ls "$VM_DIR/debs/${pkg}_"*.deb 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$deb" ]; then
  log "downloading $pkg"
  (cd "$VM_DIR/debs" && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) || true
  deb=$(ls "$VM_DIR/debs/${pkg}_"*.deb 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$deb" ] && [ "$(id -u)" -eq 0 ]; then
    # Stale package lists point at files the mirror already removed.
    log "download failed; refreshing the package lists (apt-get update) and retrying"
    apt-get update -qq >&2 || true
    pkg=$(resolve_package || true)
    [ -n "$pkg" ] && (cd "$VM_DIR/debs" && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) || true
    deb=$(ls "$VM_DIR/debs/${pkg}_"*.deb 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  [ -n "$deb" ] || reuse_last "could not download $pkg"
fi

# Everything that shapes the guest; a change rebuilds it.
stamp=$(cat "$HERE/prepare-guest.sh" "$HERE/extract-vmlinux.sh" "$HERE/guest-init.sh" "$BUSYBOX" | sha256sum | cut -c1-16)-$(basename "$deb")
# Listing the package decompresses all of it (seconds): done once per .deb.
if [ ! -s "$deb.kver" ]; then
  dpkg-deb -c "$deb" | sed -nE 's#.*\./(usr/)?boot/vmlinuz-([^ ]+)$#\2#p' | head -n 1 >"$deb.kver"
fi
kver=$(cat "$deb.kver")
[ -n "$kver" ] || die "$deb has no /boot/vmlinuz-*: not a kernel image package"
guest="$VM_DIR/guests/$kver"
if [ "$(cat "$guest/stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$kver" >"$last_file"
  echo "$guest"
  exit 0
fi

log "building the guest for $kver from $(basename "$deb")"
work=$(mktemp -d "$VM_DIR/tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
dpkg -x "$deb" "$work/pkg"
# The first of the given paths that exists (merged-/usr packages use usr/lib).
first_existing() { for f in "$@"; do [ -e "$f" ] && echo "$f" && return 0; done; return 0; }
moddir=$(first_existing "$work/pkg/lib/modules/$kver" "$work/pkg/usr/lib/modules/$kver")
[ -n "$moddir" ] || die "$deb has no modules directory for $kver"
vmlinuz=$(first_existing "$work/pkg/boot/vmlinuz-$kver" "$moddir/vmlinuz")
[ -n "$vmlinuz" ] || die "$deb has no vmlinuz for $kver"
config=$(first_existing "$work/pkg/boot/config-$kver" "$moddir/config")

rm -rf "$guest.new"
mkdir -p "$guest.new"
if bash "$HERE/extract-vmlinux.sh" "$vmlinuz" "$guest.new/vmlinux"; then
  log "extracted an uncompressed vmlinux ($(($(stat -c %s "$guest.new/vmlinux") / 1048576)) MiB)"
else
  log "warning: no vmlinux could be extracted; booting the compressed bzImage (slower boot)"
  cp "$vmlinuz" "$guest.new/bzImage"
fi
[ -n "$config" ] && cp "$config" "$guest.new/config"
if [ -n "$config" ] && ! grep -q '^CONFIG_BPF_LSM=y' "$config"; then
  die "$kver is built without CONFIG_BPF_LSM"
fi
echo "$kver" >"$guest.new/kernel.release"

# Module dependencies: the package ships no modules.dep (depmod runs at
# install time), so depmod runs on the unpacked tree.
basedir=${moddir%/lib/modules/$kver}
depmod -b "$basedir" "$kver" 2>/dev/null || die "depmod failed on the unpacked $kver modules"

declare -A path_of=() deps_of=() loaded=()
while IFS= read -r line; do
  mod=${line%%:*}
  name=$(basename "$mod")
  name=${name%%.ko*}
  name=${name//-/_}
  path_of[$name]=$mod
  deps_of[$name]=${line#*:}
done <"$moddir/modules.dep"
is_builtin() { grep -qE "/$1\.ko$" "$moddir/modules.builtin" 2>/dev/null || grep -qE "/${1//_/[-_]}\.ko$" "$moddir/modules.builtin" 2>/dev/null; }

order=()
add_module() { # depth-first: dependencies before the module
  local name=$1 dep dname
  [ -n "${loaded[$name]:-}" ] && return 0
  loaded[$name]=1
  for dep in ${deps_of[$name]}; do
    dname=$(basename "$dep")
    dname=${dname%%.ko*}
    add_module "${dname//-/_}"
  done
  order+=("$name")
}
for m in "${WANTED_MODULES[@]}"; do
  if [ -n "${path_of[$m]:-}" ]; then
    add_module "$m"
  elif is_builtin "$m"; then
    log "$m is built into $kver"
  else
    die "$kver has no module $m (neither built in nor in modules.dep)"
  fi
done

root="$work/initramfs"
mkdir -p "$root"/{bin,dev,proc,sys,lower,rw,newroot,modules}
cp "$BUSYBOX" "$root/bin/busybox"
cp "$HERE/guest-init.sh" "$root/init"
chmod 755 "$root/init" "$root/bin/busybox"
: >"$root/modules/order"
for name in "${order[@]}"; do
  src="$moddir/${path_of[$name]}"
  case "$src" in
    *.ko) cp "$src" "$root/modules/$name.ko" ;;
    *.ko.xz) xz -dc "$src" >"$root/modules/$name.ko" ;;
    *.ko.zst) zstd -qdc "$src" >"$root/modules/$name.ko" ;;
    *.ko.gz) gzip -dc "$src" >"$root/modules/$name.ko" ;;
    *) die "unknown module format: $src" ;;
  esac
  echo "$name" >>"$root/modules/order"
done
cp "$root/modules/order" "$guest.new/modules.txt"
log "initramfs modules: ${order[*]}"
# Uncompressed: unpacking a compressed initramfs is slow under TCG.
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) >"$guest.new/initramfs.cpio"
echo "$stamp" >"$guest.new/stamp"

rm -rf "$guest"
mv "$guest.new" "$guest"
echo "$kver" >"$last_file"
log "guest ready: $guest"

# Superseded kernels (a newer ABI came out): drop the guests and packages no
# selection uses any more, so build/vm does not grow with every release.
keep=$(cat "$VM_DIR"/last-* 2>/dev/null | sort -u)
for g in "$VM_DIR"/guests/*/; do
  g=${g%/}
  echo "$keep" | grep -qxF "$(basename "$g")" || { log "removing superseded guest $(basename "$g")"; rm -rf "$g"; }
done
for k in "$VM_DIR"/debs/*.deb.kver; do
  [ -f "$k" ] || continue
  echo "$keep" | grep -qxF "$(cat "$k")" || { log "removing superseded package $(basename "${k%.kver}")"; rm -f "${k%.kver}" "$k"; }
done
echo "$guest"
exit
}
