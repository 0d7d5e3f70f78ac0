#!/usr/bin/env bash
# run-in-vm.sh [options] -- CMD [ARG...]
#
# Boots Debian's stock kernel (BPF-LSM on: lsm=lockdown,capability,landlock,
# yama,bpf) in a qemu guest that sees the host's root filesystem read-only
# (virtio-9p, tmpfs overlay on top; /tmp, /run, /var/tmp are plain tmpfs),
# runs CMD there as root and returns its stdout, stderr and exit status.
#
# Options:
#   --timeout S     whole run, boot included (default 600); then exit 124
#   --mem M         guest memory in MiB (default 1024)
#   --cpus N        guest CPUs (default: host CPUs, at most 4)
#   --cwd DIR       where CMD starts (default: the repository root)
#   --env NAME=VAL  set a variable for CMD (repeatable); CMD otherwise gets
#                   PATH, HOME=/root, USER, LOGNAME, LANG=C.UTF-8, TERM=dumb
#   --log FILE      the harness's own messages (timings, failures) go to FILE
#                   instead of stderr, so stderr carries only CMD's bytes
#   --result FILE   write a JSON summary: outcome, exitCode, bootSeconds,
#                   runSeconds, accel, kernel (see below)
#   --accel A       auto (default: KVM if it really works, else TCG) | kvm | tcg
#   --keep          keep the job directory (console log, raw streams)
# Environment: EDGEWARD_VM_KERNEL / EDGEWARD_VM_KERNEL_SERIES pick the kernel
# (tests/vm/prepare-guest.sh), EDGEWARD_VM_ACCEL is the --accel default,
# EDGEWARD_VM_QEMU_ARGS is appended to qemu's arguments (experiments; a later
# -cpu or -accel replaces the harness's), EDGEWARD_VM_APPEND to the kernel's
# command line, EDGEWARD_VM_BOOT_TIMEOUT (default 180 s) bounds the boot.
#
# stdout/stderr: CMD's, byte for byte, streamed while it runs (each stream
# exact; their interleaving is not preserved). stdin: /dev/null.
# Exit status and outcome (--result "outcome"):
#   CMD's own status    "exited"     (a signal: 128+N, as sh reports it)
#   127                 "not-found"  CMD does not exist in the guest
#   124                 "timeout"    --timeout passed (boot or command)
#   125                 "boot-failed" the guest never started CMD (kernel,
#                       init, 9p...), or a usage/setup error ("harness-error")
#   123                 "guest-died" the guest stopped while CMD ran, or its
#                       output could not be collected completely
# The harness prints "run-in-vm: ..." lines to stderr (or --log): the boot
# time, the run time, and for a failure the reason and the serial console's
# last lines. x86_64 only (arm64: not implemented; see prepare-guest.sh).
set -uo pipefail

# The whole script is one compound command: the shell reads all of it before
# running any, so an edit of this file during a (long) run cannot derail it.
{

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VM_DIR=${EDGEWARD_VM_DIR:-$REPO/build/vm}

timeout_s=600 mem=1024 cwd=$REPO log_file="" result_file="" keep=0
accel=${EDGEWARD_VM_ACCEL:-auto}
cpus=$(nproc 2>/dev/null || echo 1)
[ "$cpus" -gt 4 ] && cpus=4
envs=()
BOOT_TIMEOUT_S=${EDGEWARD_VM_BOOT_TIMEOUT:-180}

exec 3>&2 # the harness's messages
msg() { echo "run-in-vm: $*" >&3; }
usage_error() { msg "usage error: $*"; msg "usage: run-in-vm.sh [--timeout S] [--mem M] [--cpus N] [--cwd DIR] [--env NAME=VAL] [--log FILE] [--result FILE] [--accel auto|kvm|tcg] [--keep] -- CMD [ARG...]"; exit 125; }
positive_int() { [[ $2 =~ ^[1-9][0-9]*$ ]] || usage_error "$1 needs a positive integer, got '$2'"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) positive_int "$1" "${2:-}"; timeout_s=$2; shift 2 ;;
    --mem) positive_int "$1" "${2:-}"; mem=$2; shift 2 ;;
    --cpus) positive_int "$1" "${2:-}"; cpus=$2; shift 2 ;;
    --cwd) [ -n "${2:-}" ] || usage_error "--cwd needs a directory"; cwd=$(cd "$2" 2>/dev/null && pwd) || usage_error "--cwd: no directory '$2'"; shift 2 ;;
    --env) [[ ${2:-} =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || usage_error "--env needs NAME=VALUE, got '${2:-}'"; envs+=("$2"); shift 2 ;;
    --log) # opened at once, so that later usage errors land there too
      [ -n "${2:-}" ] || usage_error "--log needs a file"
      log_file=$2
      exec 3>>"$log_file" || { exec 3>&2; usage_error "cannot write $log_file"; }
      shift 2 ;;
    --result) [ -n "${2:-}" ] || usage_error "--result needs a file"; result_file=$2; shift 2 ;;
    --accel) case "${2:-}" in auto | kvm | tcg) accel=$2 ;; *) usage_error "--accel is auto, kvm or tcg, got '${2:-}'" ;; esac; shift 2 ;;
    --keep) keep=1; shift ;;
    --) shift; break ;;
    *) usage_error "unknown option '$1' (the command follows --)" ;;
  esac
done
[ $# -gt 0 ] || usage_error "no command given after --"
[ "$(uname -m)" = x86_64 ] || { msg "only x86_64 hosts are supported (arm64 is not implemented yet)"; exit 125; }
command -v qemu-system-x86_64 >/dev/null || { msg "qemu-system-x86_64 not found: run scripts/install-deps.sh"; exit 125; }

# --- result reporting ---------------------------------------------------------
outcome="" exit_code=125 boot_s=null run_s=null kernel="" used_accel=""
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }
json_str() { printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr -d '\000-\037')"; }
write_result() {
  [ -n "$result_file" ] || return 0
  printf '{"outcome":%s,"exitCode":%d,"bootSeconds":%s,"runSeconds":%s,"accel":%s,"kernel":%s}\n' \
    "$(json_str "$outcome")" "$exit_code" "$boot_s" "$run_s" "$(json_str "$used_accel")" "$(json_str "$kernel")" >"$result_file"
}
finish() { # outcome exit-code
  outcome=$1 exit_code=$2
  write_result
  exit "$exit_code"
}

# --- the guest ------------------------------------------------------------------
guest=$(bash "$HERE/prepare-guest.sh" 2>&3) || { msg "preparing the guest kernel failed (see above)"; finish harness-error 125; }
kernel=$(cat "$guest/kernel.release")
if [ -f "$guest/vmlinux" ]; then kernel_image=$guest/vmlinux; else kernel_image=$guest/bzImage; fi

job=$(mktemp -d "${TMPDIR:-/tmp}/edgeward-vm.XXXXXX") || { msg "mktemp failed"; finish harness-error 125; }
job=$(cd "$job" && pwd -P) # the guest resolves it through 9p: no symlinks
pids=()
qemu_pid=""
cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "$keep" = 1 ]; then msg "job directory kept: $job"; else rm -rf "$job"; fi
}
trap cleanup EXIT
trap 'msg "interrupted"; exit 130' INT TERM

# The command, as a script for the guest's /bin/sh. Single quotes keep every
# byte of every argument literal.
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
{
  echo "cd $(quote "$cwd") || exit 125"
  for e in "${envs[@]}"; do echo "export $(quote "$e")"; done
  echo "if ! command -v $(quote "$1") >/dev/null 2>&1; then"
  echo "  printf '%s\\n' $(quote "$1") >/run/edgeward-vm/notfound"
  echo "  echo $(quote "run-in-vm: $1: command not found in the guest") >&2"
  echo "  exit 127"
  echo "fi"
  printf 'exec'
  for a in "$@"; do printf ' %s' "$(quote "$a")"; done
  echo
} >"$job/job.sh"

# --- accelerator ----------------------------------------------------------------
# KVM only when it really runs a guest here: /dev/kvm can exist and still
# fail (nested virtualisation refusing MSRs, emulation errors). A 64 KiB
# "BIOS" whose reset vector writes to isa-debug-exit proves -cpu host starts;
# a KVM guest that then does not boot is remembered and TCG used instead.
kvm_broken_file="$VM_DIR/kvm-broken"
kvm_works() {
  [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || { kvm_reason="/dev/kvm is missing or not accessible"; return 1; }
  if [ -f "$kvm_broken_file" ]; then kvm_reason="a KVM guest failed before: $(cat "$kvm_broken_file")"; return 1; fi
  local bios="$job/kvm-probe.bin" rc
  { head -c 65520 /dev/zero; printf '\xb0\x42\xe6\xf4\xf4\xeb\xfd\0\0\0\0\0\0\0\0\0'; } >"$bios"
  # stderr off meanwhile: bash reports a qemu abort ("Aborted") on its own stderr.
  exec 4>&2 2>/dev/null
  timeout 20 qemu-system-x86_64 -M q35 -accel kvm -cpu host -bios "$bios" -nodefaults -no-user-config \
    -display none -device isa-debug-exit,iobase=0xf4,iosize=0x04 >"$job/kvm-probe.log" 2>&1
  rc=$?
  exec 2>&4 4>&-
  [ "$rc" = 133 ] && return 0 # (0x42 << 1) | 1
  kvm_reason="qemu -accel kvm -cpu host exited $rc: $(head -n 1 "$job/kvm-probe.log" | cut -c1-160)"
  return 1
}
case "$accel" in
  tcg) used_accel=tcg ;;
  kvm) used_accel=kvm ;;
  auto) if kvm_works; then used_accel=kvm; else used_accel=tcg; msg "accel: TCG ($kvm_reason)"; fi ;;
esac

# --- one boot ---------------------------------------------------------------------
# Sets boot_ms/run_ms and returns via $outcome/$exit_code (without exiting).
boot_once() {
  local accel_args cpu status_line
  rm -f "$job"/*.in "$job"/*.out "$job"/stdout.bin "$job"/stderr.bin "$job"/status.log "$job"/console.log "$job"/notfound
  for ch in status out err; do mkfifo "$job/$ch.in" "$job/$ch.out"; done
  : >"$job/stdout.bin"
  : >"$job/stderr.bin"
  : >"$job/status.log"
  # Readers first: qemu's open of each .out fifo waits for its reader.
  tee -a "$job/stdout.bin" <"$job/out.out" &
  pids+=($!)
  tee -a "$job/stderr.bin" <"$job/err.out" >&2 &
  pids+=($!)
  cat <"$job/status.out" >>"$job/status.log" &
  pids+=($!)
  exec 8<>"$job/status.in" # held open: the ACK write never blocks

  if [ "$used_accel" = kvm ]; then
    accel_args=(-accel kvm -cpu host)
  else
    accel_args=(-accel tcg,thread=multi,tb-size=256 -cpu max)
  fi
  local start_ms=$(now_ms) booted_ms="" exit_line="" deadline_ms boot_deadline_ms
  deadline_ms=$((start_ms + timeout_s * 1000))
  boot_deadline_ms=$((start_ms + BOOT_TIMEOUT_S * 1000))
  qemu-system-x86_64 -M q35 "${accel_args[@]}" -smp "$cpus" -m "$mem" \
    -nodefaults -no-user-config -display none -no-reboot -nic none \
    -kernel "$kernel_image" -initrd "$guest/initramfs.cpio" \
    -append "console=ttyS0 panic=-1 lsm=lockdown,capability,landlock,yama,bpf edgeward.job=$job edgeward.keep=$cwd ${EDGEWARD_VM_APPEND:-}" \
    -chardev file,id=console,path="$job/console.log" -serial chardev:console \
    -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
    -device virtio-serial-pci,id=vser \
    -chardev pipe,id=status,path="$job/status" -device virtserialport,bus=vser.0,chardev=status,name=edgeward.status \
    -chardev pipe,id=out,path="$job/out" -device virtserialport,bus=vser.0,chardev=out,name=edgeward.stdout \
    -chardev pipe,id=err,path="$job/err" -device virtserialport,bus=vser.0,chardev=err,name=edgeward.stderr \
    ${EDGEWARD_VM_QEMU_ARGS:-} >"$job/qemu.log" 2>&1 </dev/null &
  qemu_pid=$!

  local now
  outcome=""
  while :; do
    now=$(now_ms)
    if [ -z "$booted_ms" ] && grep -q '^BOOTED ' "$job/status.log"; then
      booted_ms=$now
      boot_s=$(secs $((booted_ms - start_ms)))
      msg "guest booted in ${boot_s} s ($used_accel, $kernel, guest uptime $(sed -n 's/^BOOTED //p' "$job/status.log" | head -n 1) s)"
    fi
    if grep -q '^EXIT ' "$job/status.log"; then
      exit_line=$(grep -m1 '^EXIT ' "$job/status.log")
      break
    fi
    if grep -q '^ERROR ' "$job/status.log"; then
      outcome=boot-failed exit_code=125
      msg "guest could not run the command: $(sed -n 's/^ERROR //p' "$job/status.log" | head -n 1)"
      break
    fi
    if ! kill -0 "$qemu_pid" 2>/dev/null; then
      sleep 0.2 # the last status line may still be in flight
      grep -q '^EXIT ' "$job/status.log" && continue
      if [ -n "$booted_ms" ]; then
        outcome=guest-died exit_code=123
        msg "the guest stopped while the command ran (no exit status came back)"
      else
        outcome=boot-failed exit_code=125
        msg "the guest failed to boot (qemu exited before the command started)"
      fi
      break
    fi
    if [ "$now" -ge "$deadline_ms" ]; then
      outcome=timeout exit_code=124
      [ -n "$booted_ms" ] && run_s=$(secs $((now - booted_ms)))
      msg "timeout: ${timeout_s} s passed ($([ -n "$booted_ms" ] && echo "the command was still running" || echo "the guest had not booted yet"))"
      break
    fi
    if [ -z "$booted_ms" ] && [ "$now" -ge "$boot_deadline_ms" ]; then
      outcome=boot-failed exit_code=125
      msg "the guest failed to boot: no start of the command after ${BOOT_TIMEOUT_S} s"
      break
    fi
    sleep 0.05
  done

  if [ -n "$exit_line" ]; then
    local rc want_out want_err waited=0
    read -r _ rc want_out want_err <<<"$exit_line"
    run_s=$(secs $(($(now_ms) - booted_ms)))
    if ! [[ $want_out =~ ^[0-9]+$ && $want_err =~ ^[0-9]+$ ]]; then
      msg "warning: the guest did not report its byte counts (debugfs?); output may be incomplete"
      want_out=0 want_err=0
      sleep 1
    fi
    # Everything the guest queued must have arrived before it powers off.
    while [ "$(stat -c %s "$job/stdout.bin")" -lt "$want_out" ] || [ "$(stat -c %s "$job/stderr.bin")" -lt "$want_err" ]; do
      if [ $waited -ge 600 ] || ! kill -0 "$qemu_pid" 2>/dev/null; then
        outcome=guest-died exit_code=123
        msg "output incomplete: received $(stat -c %s "$job/stdout.bin")/$want_out stdout and $(stat -c %s "$job/stderr.bin")/$want_err stderr bytes"
        break
      fi
      sleep 0.1
      waited=$((waited + 1))
    done
    echo ACK >&8
    if [ -z "$outcome" ]; then
      if grep -q '^NOTFOUND ' "$job/status.log"; then
        outcome=not-found exit_code=127
        msg "command not found in the guest: $(sed -n 's/^NOTFOUND //p' "$job/status.log" | head -n 1)"
      else
        outcome=exited exit_code=$rc
        msg "command exited with status $rc after ${run_s} s (boot ${boot_s} s)"
      fi
    fi
  fi

  # After EXIT qemu powers off by itself (given a few seconds); otherwise
  # there is nothing left to wait for.
  local i=0
  while [ -n "$exit_line" ] && kill -0 "$qemu_pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  kill "$qemu_pid" 2>/dev/null
  wait "$qemu_pid" 2>/dev/null
  qemu_pid=""
  # qemu is gone: every reader has its EOF (or never got a writer).
  i=0
  while [ $i -lt 50 ]; do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
    i=$((i + 1))
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  pids=()
  exec 8>&-
}

console_tail() {
  msg "---- serial console (last 40 lines) ----"
  tail -n 40 "$job/console.log" 2>/dev/null | tr -d '\r' | sed 's/^/run-in-vm: | /' >&3
  if [ -s "$job/qemu.log" ]; then
    msg "---- qemu ----"
    tail -n 20 "$job/qemu.log" | sed 's/^/run-in-vm: | /' >&3
  fi
}

boot_once
if [ "$outcome" = boot-failed ] && [ "$used_accel" = kvm ] && [ "$accel" = auto ]; then
  msg "the KVM guest did not boot; remembering that ($kvm_broken_file) and retrying with TCG"
  tail -n 5 "$job/console.log" 2>/dev/null | tr -d '\r' | tr '\n' ' ' | cut -c1-300 >"$kvm_broken_file"
  used_accel=tcg boot_s=null
  boot_once
fi
case "$outcome" in
  exited | not-found) ;;
  *) console_tail ;;
esac
finish "$outcome" "$exit_code"
exit
}
