#!/bin/busybox sh
# The guest's init (busybox sh, PID 1), in two stages.
#
# Stage 1 (/init of the initramfs): loads the 9p/virtio/overlay modules,
# mounts the host's root read-only over virtio-9p with a tmpfs overlay on top,
# copies the job the host wrote (edgeward.job=DIR on the kernel command line;
# DIR is a host path) and switch_roots into the overlay.
# Stage 2 (the same file, run from /run/edgeward-vm): mounts the kernel
# filesystems the agent needs, runs the job with its stdout and stderr on two
# virtio serial ports and reports on a third one (edgeward.status):
#   BOOTED <uptime>                 the command is about to start
#   NOTFOUND <name>                 the command does not exist in the guest
#   EXIT <status> <out> <err>       the command ended; <out>/<err>: bytes the
#                                   guest queued on the stdout/stderr ports
#   ERROR <message>                 the guest could not run the command
# After EXIT it waits for the host's "ACK" (sent once the host has received
# all the bytes: anything still queued when qemu exits would be lost) and
# powers off.
export PATH=/run/edgeward-vm/bin:/bin:/usr/sbin:/usr/bin:/sbin
B=/bin/busybox
[ "$1" = stage2 ] && B=/run/edgeward-vm/busybox

say() { echo "edgeward-vm: $*" >/dev/console 2>/dev/null || echo "edgeward-vm: $*"; }

# Reports a failure on the status port when it exists, then powers off.
fail() {
  say "ERROR $*"
  if [ -n "$STATUS" ] && [ -c "$STATUS" ]; then echo "ERROR $*" >"$STATUS"; fi
  $B sync
  $B poweroff -f
  $B sleep 5
  exit 1
}

# Device node of the virtio serial port called $1 ("" when absent).
port() {
  for p in /sys/class/virtio-ports/*; do
    [ "$($B cat "$p/name" 2>/dev/null)" = "$1" ] && echo "/dev/${p##*/}" && return 0
  done
  return 1
}

# Waits up to $2 tenths of a second for port $1, prints its device node.
wait_port() {
  i=0
  while [ $i -lt "$2" ]; do
    d=$(port "$1") && [ -c "$d" ] && echo "$d" && return 0
    $B usleep 100000
    i=$((i + 1))
  done
  return 1
}

cmdline_value() {
  for word in $($B cat /proc/cmdline); do
    case "$word" in "$1="*) echo "${word#*=}" ;; esac
  done
}

stage1() {
  $B mkdir -p /proc /sys /dev
  $B mount -t proc proc /proc
  $B mount -t sysfs sysfs /sys
  $B mount -t devtmpfs devtmpfs /dev
  for m in $($B cat /modules/order); do
    $B insmod "/modules/$m.ko" || fail "insmod $m failed"
  done
  STATUS=$(wait_port edgeward.status 100) || fail "no virtio serial port edgeward.status"

  # cache=loose: the host tree does not change under a short-lived guest, and
  # page-cached reads make node start several times faster than cache=none.
  # (edgeward.9pcache= on the command line overrides it, for measurements.)
  cache=$(cmdline_value edgeward.9pcache)
  $B mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=${cache:-loose} hostroot /lower ||
    fail "mounting the host root over virtio-9p failed"
  $B mount -t tmpfs -o mode=755 rw /rw
  $B mkdir -p /rw/upper /rw/work
  $B mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
    fail "mounting the overlay on the host root failed"

  job=$(cmdline_value edgeward.job)
  [ -n "$job" ] || fail "no edgeward.job= on the kernel command line"
  # Read through /lower: the job may live in the host's /tmp, which the
  # guest's own tmpfs hides below.
  [ -r "/lower$job/job.sh" ] || fail "job $job/job.sh is not readable through 9p"

  # Places that must be really writable and not on the overlay (inode-keyed
  # rules: overlay files report the upper layer's device in stat()).
  # The command's directory (e.g. a clone under the host's /tmp) stays visible:
  # its overlay view is set aside before the tmpfs hides it, then put back.
  keep=$(cmdline_value edgeward.keep) kept=""
  case "$keep" in
    /tmp/?*|/run/?*|/var/tmp/?*)
      if [ -d "/newroot$keep" ]; then
        $B mkdir -p /rw/keep
        $B mount --bind "/newroot$keep" /rw/keep || fail "setting $keep aside failed"
        kept=1
      fi ;;
  esac
  for d in /tmp /run /var/tmp; do
    $B mkdir -p "/newroot$d" 2>/dev/null
    $B mount -t tmpfs -o mode=1777 tmpfs "/newroot$d" || fail "tmpfs on $d failed"
  done
  if [ -n "$kept" ]; then
    $B mkdir -p "/newroot$keep"
    $B mount --move /rw/keep "/newroot$keep" || fail "putting $keep back failed"
  fi
  $B chmod 755 /newroot/run
  R=/newroot/run/edgeward-vm
  $B mkdir -p $R/bin
  $B cp /bin/busybox $R/busybox
  $B cp /init $R/init
  $B cp "/lower$job/job.sh" $R/job.sh
  $R/busybox --install -s $R/bin
  $B mount --move /dev /newroot/dev
  $B mount --move /proc /newroot/proc
  $B mount --move /sys /newroot/sys
  exec $B switch_root /newroot /run/edgeward-vm/busybox sh /run/edgeward-vm/init stage2
}

stage2() {
  STATUS=$(port edgeward.status) || fail "status port vanished"
  OUT=$(port edgeward.stdout) || fail "no virtio serial port edgeward.stdout"
  ERR=$(port edgeward.stderr) || fail "no virtio serial port edgeward.stderr"
  mount_fs() { # type target [options]
    $B mkdir -p "$2"
    $B mount -t "$1" ${3:+-o "$3"} "$1" "$2" || fail "mounting $1 on $2 failed"
  }
  mount_fs securityfs /sys/kernel/security
  mount_fs bpf /sys/fs/bpf mode=700
  mount_fs tracefs /sys/kernel/tracing
  mount_fs debugfs /sys/kernel/debug
  mount_fs cgroup2 /sys/fs/cgroup nsdelegate
  mount_fs devpts /dev/pts gid=5,mode=620,ptmxmode=666
  mount_fs tmpfs /dev/shm mode=1777
  [ -e /dev/fd ] || $B ln -s /proc/self/fd /dev/fd
  $B ip link set lo up || fail "bringing up lo failed"
  $B hostname edgeward-vm

  exec 7<>"$STATUS"
  echo "BOOTED $($B cut -d' ' -f1 /proc/uptime)" >&7

  # The command runs under the host's own /bin/sh with a clean environment
  # (job.sh sets the caller's cwd and variables).
  sh=/bin/sh
  [ -x "$sh" ] || sh=/run/edgeward-vm/bin/sh
  $B env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root USER=root \
    LOGNAME=root LANG=C.UTF-8 TERM=dumb "$sh" /run/edgeward-vm/job.sh </dev/null >"$OUT" 2>"$ERR"
  rc=$?
  if [ -f /run/edgeward-vm/notfound ]; then
    echo "NOTFOUND $($B cat /run/edgeward-vm/notfound)" >&7
  fi
  # Bytes the guest queued per port (the host waits until it has them all).
  sent() { $B awk '/^bytes_sent:/ {print $2}' "/sys/kernel/debug/virtio-ports/${1#/dev/}"; }
  echo "EXIT $rc $(sent "$OUT") $(sent "$ERR")" >&7
  read -t 60 ack <&7
  $B poweroff -f
}

if [ "$1" = stage2 ]; then stage2; else stage1; fi
