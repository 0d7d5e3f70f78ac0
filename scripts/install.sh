#!/usr/bin/env bash
# Installs edgeward as a systemd service, from a built checkout or a release tarball.
#
#   install.sh [--from DIR|TARBALL] [--enable] [--runtime-hook|--no-runtime-hook]
#                                                 install (default --from: this checkout)
#   install.sh --runtime-hook-only | --remove-runtime-hook
#                                                 only install / remove runc's wrapper
#   install.sh --uninstall [--purge]              remove the service and /opt/edgeward
#                                                 (--purge: also /etc, /var/lib, /var/log/edgeward)
#   install.sh --pack OUT.tar.gz [--with-node]    make a release tarball from this built checkout
#                                                 (--with-node: bundle this machine's node binary)
#   install.sh --deb OUTDIR [--with-node]         make a Debian package (.deb) instead
#
# Layout: /opt/edgeward (program; node/bin/node is the bundled node or a link to the
# system's, >= 20), /etc/edgeward/config.yaml and /etc/edgeward/policies (kept across
# upgrades), /var/lib/edgeward (state), /var/log/edgeward, /etc/systemd/system/edgeward.service,
# /usr/local/bin/edgeward. Then: systemctl enable --now edgeward (or pass --enable).
# A checkout must be built first (npm run build). DESTDIR=DIR installs under DIR without
# touching systemd (for packaging). Needs libbpf1 and libelf1 (Debian, Ubuntu, RPi OS).
#
# Runtime hook (docs/DEPLOYMENT.md): with dpkg's runc installed, install puts
# scripts/edgeward-runc AT runc's path (dpkg-divert renames the packaged runc
# to runc.edgeward-real; runc upgrades go there), so every container start,
# whatever runtime name resolves to runc, waits until its rules are in force.
# On by default when runc is a dpkg package (a security agent should not leave
# `docker run --runtime runc` around it); --no-runtime-hook leaves runc alone.
# Under DESTDIR only with --runtime-hook (dpkg-divert --root DESTDIR). The .deb
# does the same in postinst unless /etc/edgeward/no-runtime-hook exists.
# uninstall removes the diversion and puts runc back.
set -euo pipefail

PREFIX=/opt/edgeward
here=$(cd "$(dirname "$0")" && pwd)
DESTDIR=${DESTDIR:-}

die() {
  echo "install.sh: $*" >&2
  exit 1
}
usage() {
  sed -n '2,30p' "$0" >&2
  exit 2
}

# What the agent needs at run time, relative to a checkout or a release tree.
RUNTIME=(package.json package-lock.json bin dist build/native/Release/edgeward.node node_modules policies
  systemd/edgeward.service scripts/install.sh scripts/uninstall.sh scripts/prune-dev-modules.js scripts/edgeward-runc README.md docs/DEPLOYMENT.md)

# Copies the runtime files of SRC (checkout or release tree) into DEST, without dev dependencies.
stage() {
  local src=$1 dest=$2
  [ -f "$src/dist/agent/src/cli.js" ] || die "$src is not built (no dist/agent/src/cli.js): run npm run build"
  [ -f "$src/build/native/Release/edgeward.node" ] || die "$src has no native addon: run npm run build"
  [ -d "$src/node_modules" ] || die "$src has no node_modules: run npm ci"
  mkdir -p "$dest"
  local f
  for f in "${RUNTIME[@]}"; do
    [ -e "$src/$f" ] || die "$src/$f is missing"
    mkdir -p "$dest/$(dirname "$f")"
    cp -a "$src/$f" "$dest/$f"
  done
  # the Docker runtime hook (docs/DEPLOYMENT.md): finds ../node and ../dist relative to itself
  install -m 0755 "$src/scripts/edgeward-runc" "$dest/bin/edgeward-runc"
  [ -e "$src/node/bin/node" ] && { mkdir -p "$dest/node/bin"; cp -aL "$src/node/bin/node" "$dest/node/bin/node"; }
  node_for "$dest" "$src/scripts/prune-dev-modules.js" "$dest" >/dev/null
}

# Runs the node binary that will run the agent: DIR/node/bin/node when bundled, else the system's.
node_for() {
  local dir=$1
  shift
  if [ -x "$dir/node/bin/node" ] && [ ! -L "$dir/node/bin/node" ]; then
    "$dir/node/bin/node" "$@"
  else
    command -v node >/dev/null || die "node (>= 20) is not installed and the release bundles none (apt-get install nodejs, or --pack --with-node)"
    node "$@"
  fi
}

check_node() {
  local dir=$1 major
  major=$(node_for "$dir" -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] || die "node $major is too old: edgeward needs node >= 20"
}

check_libraries() {
  local lib
  for lib in libbpf.so.1 libelf.so.1; do
    ldconfig -p 2>/dev/null | grep -q "$lib" || die "$lib is missing: apt-get install libbpf1 libelf1"
  done
}

# The version a tree carries (package.json).
version_of() {
  sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$1/package.json" | head -1
}

pack() {
  local out=$1 with_node=$2 src tmp name
  src=$(cd "$here/.." && pwd)
  name="edgeward-$(version_of "$src")"
  tmp=$(mktemp -d)
  stage "$src" "$tmp/$name"
  if [ "$with_node" = 1 ]; then
    mkdir -p "$tmp/$name/node/bin"
    cp -L "$(command -v node)" "$tmp/$name/node/bin/node"
  fi
  mkdir -p "$(dirname "$out")"
  tar -C "$tmp" --owner=0 --group=0 -czf "$out" "$name"
  rm -rf "$tmp"
  echo "$out"
}

# Installs the tree SRC (staged or checkout) under $DESTDIR.
install_tree() {
  local src=$1 root="$DESTDIR" new="$DESTDIR$PREFIX.new" node_link
  rm -rf "$new"
  stage "$src" "$new"
  if [ ! -e "$new/node/bin/node" ]; then
    # No bundled node: the unit's fixed path points at the system's.
    node_link=$(readlink -f "$(command -v node)" || true)
    [ -n "$node_link" ] || die "node (>= 20) is not installed: apt-get install nodejs, or install a release made with --with-node"
    mkdir -p "$new/node/bin"
    ln -s "$node_link" "$new/node/bin/node"
  fi
  check_node "$new"
  chmod -R go-w "$new"
  # Replace the program in one step; a running agent keeps its open files.
  rm -rf "$root$PREFIX.old"
  [ -e "$root$PREFIX" ] && mv "$root$PREFIX" "$root$PREFIX.old"
  mv "$new" "$root$PREFIX"
  rm -rf "$root$PREFIX.old"

  # Configuration and policies: created once, an operator's edits are never overwritten.
  install -d -m 0755 "$root/etc/edgeward"
  if [ ! -e "$root/etc/edgeward/config.yaml" ]; then
    install -m 0644 "$root$PREFIX/policies/config.example.yaml" "$root/etc/edgeward/config.yaml"
  fi
  if [ ! -e "$root/etc/edgeward/policies" ]; then
    install -d -m 0755 "$root/etc/edgeward/policies"
    install -m 0644 "$root$PREFIX"/policies/default/*.yaml "$root/etc/edgeward/policies/"
  fi
  install -d -m 0700 "$root/var/lib/edgeward"
  install -d -m 0750 "$root/var/log/edgeward"
  install -D -m 0644 "$root$PREFIX/systemd/edgeward.service" "$root/etc/systemd/system/edgeward.service"
  install -d -m 0755 "$root/usr/local/bin"
  printf '#!/bin/sh\nexec %s/node/bin/node %s/bin/edgeward "$@"\n' "$PREFIX" "$PREFIX" >"$root/usr/local/bin/edgeward"
  chmod 0755 "$root/usr/local/bin/edgeward"
}

# --- the runtime hook installed as runc (dpkg-divert) ---
RUNC_DIVERT_SUFFIX=.edgeward-real

# runc's packaged path under ROOT: the regular file (on Debian /usr/bin/runc links to ../sbin/runc),
# or the one already diverted to runc.edgeward-real; RUNC_PATH overrides. Empty: no runc.
runc_path() {
  local root=$1 p
  if [ -n "${RUNC_PATH:-}" ]; then echo "$RUNC_PATH"; return; fi
  for p in /usr/sbin/runc /usr/bin/runc; do
    if [ -e "$root$p$RUNC_DIVERT_SUFFIX" ] || { [ -f "$root$p" ] && [ ! -L "$root$p" ]; }; then
      echo "$p"
      return
    fi
  done
}

dpkg_divert() {
  local root=$1
  shift
  if [ -n "$root" ]; then dpkg-divert --root "$root" "$@"; else dpkg-divert "$@"; fi
}

# true when PATH's diversion under ROOT is this one (local, to PATH.edgeward-real)
diverted_by_us() {
  local root=$1 p=$2
  [ "$(dpkg_divert "$root" --listpackage "$p" 2>/dev/null)" = LOCAL ] &&
    [ "$(dpkg_divert "$root" --truename "$p" 2>/dev/null)" = "$p$RUNC_DIVERT_SUFFIX" ]
}

is_our_wrapper() {
  [ -f "$1" ] && head -n 3 "$1" 2>/dev/null | grep -q '^# edgeward-runc:'
}

# Puts the wrapper at runc's path; the packaged runc stays at runc.edgeward-real. Idempotent.
# No moment without a runc at the path: the real one is linked to the diverted name first,
# the diversion recorded without renaming, then the wrapper renamed over the path.
install_runtime_hook() {
  local root=$1 wrapper=$2 p real owner
  command -v dpkg-divert >/dev/null ||
    die "dpkg-divert is not available (not a Debian-family system): runc cannot be replaced by the runtime hook; register $PREFIX/bin/edgeward-runc in /etc/docker/daemon.json instead (docs/DEPLOYMENT.md), or pass --no-runtime-hook"
  [ -f "$wrapper" ] || die "$wrapper is missing"
  p=$(runc_path "$root")
  [ -n "$p" ] || die "runc is not installed under ${root:-/} (/usr/sbin/runc, /usr/bin/runc): apt-get install runc (docker.io), or pass --no-runtime-hook"
  real="$p$RUNC_DIVERT_SUFFIX"
  owner=$(dpkg_divert "$root" --listpackage "$p" 2>/dev/null || true)
  if [ -n "$owner" ] && ! diverted_by_us "$root" "$p"; then
    die "$p is already diverted ($(dpkg_divert "$root" --truename "$p"), by ${owner}): not replacing it; use daemon.json (docs/DEPLOYMENT.md)"
  fi
  if ! diverted_by_us "$root" "$p"; then
    is_our_wrapper "$root$p" && die "$root$p is edgeward-runc but no diversion records the real runc: reinstall runc (apt-get install --reinstall runc) first"
    [ ! -e "$root$real" ] || die "$root$real exists but is not a recorded diversion: move it away first"
    ln "$root$p" "$root$real" 2>/dev/null || cp -a "$root$p" "$root$real"
    dpkg_divert "$root" --local --no-rename --divert "$real" --add "$p" >/dev/null
  fi
  [ -x "$root$real" ] || die "$root$real (the real runc) is missing: apt-get install --reinstall runc"
  [ "$root$real" -ef "$root$p" ] || is_our_wrapper "$root$p" || [ ! -e "$root$p" ] ||
    die "$root$p is neither the diverted runc nor edgeward-runc: not overwriting it"
  install -m 0755 "$wrapper" "$root$p.edgeward-new"
  mv -f "$root$p.edgeward-new" "$root$p"
  echo "install.sh: runtime hook installed as $p (the packaged runc is $real)"
}

# Puts the packaged runc back at its path and removes the diversion. Idempotent.
remove_runtime_hook() {
  local root=$1 p real
  command -v dpkg-divert >/dev/null || return 0
  for p in /usr/sbin/runc /usr/bin/runc ${RUNC_PATH:-}; do
    diverted_by_us "$root" "$p" || continue
    real="$p$RUNC_DIVERT_SUFFIX"
    if [ -e "$root$real" ]; then
      # one rename: the path is the wrapper, then runc, never absent
      mv -f "$root$real" "$root$p"
    elif is_our_wrapper "$root$p"; then
      rm -f "$root$p"
      echo "install.sh: warning: $real was missing; $p removed (apt-get install --reinstall runc)" >&2
    fi
    dpkg_divert "$root" --local --no-rename --remove "$p" >/dev/null
    echo "install.sh: runtime hook removed; $p is the packaged runc again"
  done
}

# Whether install puts the hook in: yes/no asked, else (auto) when runc is a dpkg package here.
want_runtime_hook() {
  local choice=$1 p
  case "$choice" in
    1) return 0 ;;
    0) return 1 ;;
  esac
  [ -z "$DESTDIR" ] || return 1
  p=$(runc_path "")
  [ -n "$p" ] && command -v dpkg-divert >/dev/null && dpkg -S "$p" >/dev/null 2>&1
}

systemd_running() {
  [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]
}

do_install() {
  local from=$1 enable=$2 hook=$3 tmp="" src
  [ "$(id -u)" -eq 0 ] || [ -n "$DESTDIR" ] || die "run as root"
  [ -n "$DESTDIR" ] || check_libraries
  if [ -f "$from" ]; then
    tmp=$(mktemp -d)
    tar -C "$tmp" -xzf "$from"
    src=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -1)
    [ -n "$src" ] || die "$from holds no edgeward-* directory"
  elif [ -d "$from" ]; then
    src=$(cd "$from" && pwd)
  else
    die "--from $from: no such file or directory"
  fi
  install_tree "$src"
  [ -z "$tmp" ] || rm -rf "$tmp"
  echo "install.sh: edgeward $(version_of "$DESTDIR$PREFIX") installed in $DESTDIR$PREFIX"
  if want_runtime_hook "$hook"; then
    if [ "$hook" = 1 ]; then
      install_runtime_hook "$DESTDIR" "$DESTDIR$PREFIX/bin/edgeward-runc"
    else
      # by default: the agent is installed either way; what stopped the hook is said
      (install_runtime_hook "$DESTDIR" "$DESTDIR$PREFIX/bin/edgeward-runc") ||
        echo "install.sh: warning: runtime hook not installed as runc (above); containers can start before their rules (docs/DEPLOYMENT.md)" >&2
    fi
  elif [ "$hook" = auto ] && [ -z "$DESTDIR" ]; then
    echo "install.sh: runc is not a dpkg package here: runtime hook not installed as runc (register $PREFIX/bin/edgeward-runc in /etc/docker/daemon.json: docs/DEPLOYMENT.md)" >&2
  fi
  if systemd_running; then
    systemctl daemon-reload
    if [ "$enable" = 1 ]; then
      systemctl enable --now edgeward.service
    else
      # An upgrade restarts a running agent on the new program.
      systemctl try-restart edgeward.service
      echo "install.sh: start it with: systemctl enable --now edgeward"
    fi
  elif [ -z "$DESTDIR" ]; then
    echo "install.sh: systemd is not running here: start the agent with /usr/local/bin/edgeward agent" >&2
  fi
}

do_uninstall() {
  local purge=$1 root="$DESTDIR"
  [ "$(id -u)" -eq 0 ] || [ -n "$DESTDIR" ] || die "run as root"
  # runc first: with the agent gone, the wrapper would make every create try it
  remove_runtime_hook "$root"
  if systemd_running; then
    systemctl disable --now edgeward.service 2>/dev/null || true
  fi
  # bpf-lsm rules stay pinned in the kernel after the agent exits (the next agent adopts
  # them): with the program gone, nothing would, so they are removed here.
  if [ -z "$DESTDIR" ] && [ -x "$PREFIX/node/bin/node" ] && [ -f "$PREFIX/bin/edgeward" ]; then
    "$PREFIX/node/bin/node" "$PREFIX/bin/edgeward" unload ||
      echo "install.sh: warning: edgeward unload failed; pinned rules may remain under /sys/fs/bpf" >&2
  fi
  rm -f "$root/etc/systemd/system/edgeward.service" "$root/usr/local/bin/edgeward"
  systemd_running && systemctl daemon-reload
  rm -rf "$root$PREFIX" "$root$PREFIX.new" "$root$PREFIX.old"
  if [ "$purge" = 1 ]; then
    rm -rf "$root/etc/edgeward" "$root/var/lib/edgeward" "$root/var/log/edgeward"
    echo "install.sh: edgeward removed with its configuration, state and logs"
  else
    echo "install.sh: edgeward removed; kept /etc/edgeward, /var/lib/edgeward, /var/log/edgeward (--purge removes them)"
  fi
}

# A .deb of the staged tree: the same layout; the unit goes to /lib/systemd/system.
make_deb() {
  local outdir=$1 with_node=$2 src tmp version arch pkg deps
  command -v dpkg-deb >/dev/null || die "dpkg-deb is needed for --deb"
  src=$(cd "$here/.." && pwd)
  version=$(version_of "$src")
  arch=$(dpkg --print-architecture)
  tmp=$(mktemp -d)
  pkg="$tmp/pkg"
  stage "$src" "$pkg$PREFIX"
  deps="libbpf1, libelf1"
  if [ "$with_node" = 1 ]; then
    mkdir -p "$pkg$PREFIX/node/bin"
    cp -L "$(command -v node)" "$pkg$PREFIX/node/bin/node"
  else
    mkdir -p "$pkg$PREFIX/node/bin"
    ln -s /usr/bin/node "$pkg$PREFIX/node/bin/node"
    deps="$deps, nodejs (>= 20)"
  fi
  install -D -m 0644 "$src/systemd/edgeward.service" "$pkg/lib/systemd/system/edgeward.service"
  install -D -m 0644 "$src/policies/config.example.yaml" "$pkg/etc/edgeward/config.yaml"
  install -d "$pkg/etc/edgeward/policies"
  install -m 0644 "$src"/policies/default/*.yaml "$pkg/etc/edgeward/policies/"
  install -d -m 0755 "$pkg/usr/bin"
  printf '#!/bin/sh\nexec %s/node/bin/node %s/bin/edgeward "$@"\n' "$PREFIX" "$PREFIX" >"$pkg/usr/bin/edgeward"
  chmod 0755 "$pkg/usr/bin/edgeward"
  mkdir -p "$pkg/DEBIAN"
  cat >"$pkg/DEBIAN/control" <<EOF
Package: edgeward
Version: $version
Architecture: $arch
Maintainer: edgeward maintainers <edgeward@users.noreply.github.com>
Depends: $deps
Section: admin
Priority: optional
Description: runtime security agent for Open Horizon edge nodes
 Enforces KubeArmor policies in the kernel (fanotify, cgroup-bpf, BPF-LSM)
 and reports violations as KubeArmor alerts.
EOF
  (cd "$pkg" && find etc -type f | sed 's#^#/#') >"$pkg/DEBIAN/conffiles"
  cat >"$pkg/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
install -d -m 0700 /var/lib/edgeward
install -d -m 0750 /var/log/edgeward
# the runtime hook as runc (install.sh --runtime-hook), unless opted out; refreshed on upgrades
if [ ! -e /etc/edgeward/no-runtime-hook ] && { dpkg-query -S /usr/sbin/runc >/dev/null 2>&1 || dpkg-query -S /usr/bin/runc >/dev/null 2>&1; }; then
  bash /opt/edgeward/scripts/install.sh --runtime-hook-only ||
    echo "edgeward: warning: runc not replaced by the runtime hook (docs/DEPLOYMENT.md: daemon.json)" >&2
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl try-restart edgeward.service || true
fi
echo "edgeward: start it with: systemctl enable --now edgeward"
EOF
  cat >"$pkg/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl disable --now edgeward.service || true
fi
# runc back first (the wrapper copy at runc's path would outlive the hook it runs)
if [ "$1" = remove ]; then
  bash /opt/edgeward/scripts/install.sh --remove-runtime-hook || echo "edgeward: warning: runc diversion not removed (dpkg-divert --list runc)" >&2
fi
# pinned bpf-lsm rules outlive the agent; with the program going, remove them
if [ "$1" = remove ]; then
  /usr/bin/edgeward unload || echo "edgeward: unload failed; pinned rules may remain under /sys/fs/bpf" >&2
fi
EOF
  cat >"$pkg/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
[ -d /run/systemd/system ] && systemctl daemon-reload || true
if [ "$1" = purge ]; then rm -rf /var/lib/edgeward /var/log/edgeward; fi
EOF
  chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm" "$pkg/DEBIAN/postrm"
  mkdir -p "$outdir"
  # gzip: xz takes minutes on a board for a bundled node
  dpkg-deb -Zgzip --root-owner-group --build "$pkg" "$outdir/edgeward_${version}_${arch}.deb" >/dev/null
  rm -rf "$tmp"
  echo "$outdir/edgeward_${version}_${arch}.deb"
}

mode=install from="$here/.." enable=0 purge=0 with_node=0 out="" hook=auto
while [ $# -gt 0 ]; do
  case "$1" in
    --from) [ $# -ge 2 ] || usage; from=$2; shift 2 ;;
    --enable) enable=1; shift ;;
    --uninstall) mode=uninstall; shift ;;
    --purge) purge=1; shift ;;
    --pack) [ $# -ge 2 ] || usage; mode=pack; out=$2; shift 2 ;;
    --deb) [ $# -ge 2 ] || usage; mode=deb; out=$2; shift 2 ;;
    --with-node) with_node=1; shift ;;
    --runtime-hook) hook=1; shift ;;
    --no-runtime-hook) hook=0; shift ;;
    --runtime-hook-only) mode=hook; shift ;;
    --remove-runtime-hook) mode=unhook; shift ;;
    -h|--help) usage ;;
    *) echo "install.sh: unknown argument $1" >&2; usage ;;
  esac
done

case "$mode" in
  install) do_install "$from" "$enable" "$hook" ;;
  hook)
    [ "$(id -u)" -eq 0 ] || [ -n "$DESTDIR" ] || die "run as root"
    [ -x "$DESTDIR$PREFIX/bin/edgeward-runc" ] || die "$DESTDIR$PREFIX/bin/edgeward-runc is missing: install edgeward first"
    install_runtime_hook "$DESTDIR" "$DESTDIR$PREFIX/bin/edgeward-runc" ;;
  unhook)
    [ "$(id -u)" -eq 0 ] || [ -n "$DESTDIR" ] || die "run as root"
    remove_runtime_hook "$DESTDIR" ;;
  uninstall) do_uninstall "$purge" ;;
  pack) pack "$out" "$with_node" ;;
  deb) make_deb "$out" "$with_node" ;;
esac
