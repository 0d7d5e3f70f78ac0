#!/usr/bin/env bash
# bench/lsm/run-in-guest.sh [--clock icount|wall] [--rounds R] [--seconds S] [--timeout T] [--out FILE]
#
# Benchmarks the bpf-lsm backend against AppArmor (the mechanism KubeArmor
# falls back to) in the qemu guest of tests/vm (Debian's stock kernel, booted
# with lsm=lockdown,capability,landlock,yama,apparmor,bpf), side by side in
# one run: open+close, fork+exec+wait and loopback TCP connect loops
# (bench/loadgen.c) with no LSM program (the baseline), with bpf-lsm holding
# 0/100/10,000 rules, and confined by AppArmor profiles holding the same
# rules (bench/lsm/rules.js). Prints ns/op and the ratio to the baseline
# (bench/lsm/guest-bench.js describes the method).
#
#   --clock C     icount (default): one vCPU, single-threaded TCG with
#                 -icount shift=3, so guest time is 8 ns per guest instruction
#                 executed: ratios are ratios of instructions, repeatable to
#                 ~0.1% however loaded the host is, but blind to caches and
#                 memory (a 10,000-entry hash map costs what a 100-entry one
#                 does). wall: run-in-vm.sh's usual multi-threaded TCG with
#                 2 vCPUs and the guest's real clock: includes TCG's own
#                 memory effects, but on a shared host its A/A noise is tens
#                 of percent.
#   --rounds R    rounds of (baseline, each configuration, baseline...) (default 3)
#   --seconds S   length of one loop on the baseline, in guest seconds
#                 (default: 0.5 with icount, 1.5 with wall)
#   --timeout T   the whole guest run, boot included (default 2400)
#   --out FILE    also write the guest's output (table + JSON line) to FILE
#                 (default build/bench-lsm/last-run.txt)
#
# Needs: npm run build (dist/ and the addon), cc, qemu (scripts/install-deps.sh)
# and Debian's apparmor package on the host (apparmor_parser, aa-exec,
# aa-features-abi; the guest uses the host's root filesystem).
#
# The AppArmor sizes are 0/100/3,000: 10,000+10,000 distinct paths do not fit
# one AppArmor profile (bench/lsm/rules.js says why).
# AppArmor profiles are compiled here, on the host, for the guest kernel's
# AppArmor features (read from the guest once per kernel release and kept in
# build/bench-lsm/): apparmor_parser under TCG would take far too long for
# the 10,000-rule profile. The compiled profiles are cached by content.
set -euo pipefail

# The whole script is one compound command: an edit during a run cannot derail it.
{

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=$REPO/build/bench-lsm
LSM_LIST=lockdown,capability,landlock,yama,apparmor,bpf
AA_SIZES=($(node -e "process.stdout.write(require('$HERE/rules.js').AA_SIZES.join(' '))"))

clock=icount rounds=3 seconds="" timeout_s=2400 out=$CACHE/last-run.txt
die() { echo "run-in-guest: $*" >&2; exit 2; }
msg() { echo "run-in-guest: $*" >&2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --clock) case "${2:-}" in icount | wall) clock=$2 ;; *) die "--clock is icount or wall, got '${2:-}'" ;; esac; shift 2 ;;
    --rounds) [[ ${2:-} =~ ^[1-9][0-9]?$ ]] || die "--rounds needs an integer in 1..20"; rounds=$2; shift 2 ;;
    --seconds) [[ ${2:-} =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--seconds needs a number"; seconds=$2; shift 2 ;;
    --timeout) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--timeout needs seconds"; timeout_s=$2; shift 2 ;;
    --out) [ -n "${2:-}" ] || die "--out needs a file"; out=$2; shift 2 ;;
    *) die "unknown argument '$1' (usage: run-in-guest.sh [--clock icount|wall] [--rounds R] [--seconds S] [--timeout T] [--out FILE])" ;;
  esac
done
if [ -z "$seconds" ]; then
  if [ "$clock" = icount ]; then seconds=0.5; else seconds=1.5; fi
fi

cd "$REPO"
for tool in apparmor_parser aa-exec aa-features-abi; do
  command -v "$tool" >/dev/null || die "$tool not found: apt-get install apparmor (Debian's package; the guest uses it too)"
done
command -v cc >/dev/null || die "cc not found: run scripts/install-deps.sh"
[ -f dist/agent/src/lsm_enforcer.js ] || die "TypeScript not built (dist/agent/src/lsm_enforcer.js): run npm run build"
[ -f build/native/Release/edgeward.node ] || die "native addon not built: run npm run build"
mkdir -p "$CACHE/profiles"

# The guest kernel (the one run-in-vm.sh boots; same environment variables).
guest=$(bash tests/vm/prepare-guest.sh) || die "preparing the guest kernel failed"
kver=$(cat "$guest/kernel.release")
vm_env=(env "EDGEWARD_VM_APPEND=${EDGEWARD_VM_APPEND:-} lsm=$LSM_LIST")

# Its AppArmor features, read in the guest once per kernel release.
features=$CACHE/aa-features-$kver
if [ ! -s "$features" ]; then
  msg "reading the AppArmor features of $kver in the guest (once)"
  "${vm_env[@]}" bash tests/vm/run-in-vm.sh --timeout 300 -- aa-features-abi -x >"$features.tmp" ||
    die "reading the guest's AppArmor features failed (is apparmor in its LSM list?)"
  grep -q '^file' "$features.tmp" || die "the guest's AppArmor features look wrong: $(head -c 200 "$features.tmp")"
  mv "$features.tmp" "$features"
fi

# The profiles, compiled for those features (cached by profile, features and parser).
parser_version=$(apparmor_parser --version 2>&1 | head -n 1)
declare -A bin_of=()
for n in "${AA_SIZES[@]}"; do
  profile=$CACHE/profiles/ewbench-$n.profile
  node bench/lsm/rules.js profile "$n" >"$profile.tmp"
  mv "$profile.tmp" "$profile"
  key=$(cat "$profile" "$features" <(echo "$parser_version") | sha256sum | cut -c1-16)
  bin=$CACHE/profiles/ewbench-$n-$key.bin
  if [ ! -s "$bin" ]; then
    msg "compiling the AppArmor profile with $n+$n rules (apparmor_parser on the host)"
    t0=$(date +%s%N)
    apparmor_parser -Q -K -M "$features" -o "$bin.tmp" "$profile" 2> >(grep -v 'Cache read/write disabled' >&2) ||
      die "apparmor_parser failed on $profile"
    t1=$(date +%s%N)
    mv "$bin.tmp" "$bin"
    echo "$(((t1 - t0) / 1000000))" >"$bin.ms"
  fi
  bin_of[$n]=$bin
  msg "profile ewbench-$n: $(stat -c %s "$bin") bytes, compiled in $(cat "$bin.ms" 2>/dev/null || echo '?') ms (host wall clock)"
done

# A snapshot of what the guest runs: a rebuild on the host during the run
# cannot hand the guest a mix of old and new files.
snap=$(mktemp -d "$CACHE/run.XXXXXX")
trap 'rm -rf "$snap"' EXIT
mkdir -p "$snap/tools" "$snap/apparmor" "$snap/lsm"
snapshot_state() { find dist build/native/Release/edgeward.node -type f -printf '%p %s %T@\n' 2>/dev/null | sort | sha256sum; }
for attempt in 1 2 3 4 5; do
  before=$(snapshot_state)
  rm -rf "$snap/tree"
  mkdir -p "$snap/tree/build/native/Release"
  cp -a dist "$snap/tree/"
  cp -a build/native/Release/edgeward.node "$snap/tree/build/native/Release/"
  [ "$(snapshot_state)" = "$before" ] && break
  [ $attempt = 5 ] && die "the build kept changing while it was copied (a rebuild is running?)"
  sleep 2
done
cp bench/lsm/guest-bench.js bench/lsm/rules.js "$snap/lsm/"
cc -O2 -Wall -Wextra -Werror -o "$snap/tools/loadgen" bench/loadgen.c -lpthread || die "compiling bench/loadgen.c failed"
cc -O2 -static -o "$snap/tools/noop" bench/noop.c || die "compiling bench/noop.c failed (static: needs libc6-dev)"
cp "$features" "$snap/apparmor/features"
for n in "${AA_SIZES[@]}"; do cp "${bin_of[$n]}" "$snap/apparmor/ewbench-$n.bin"; done

vm_args=(--timeout "$timeout_s" --result "$snap/result.json")
if [ "$clock" = icount ]; then
  # run-in-vm.sh always asks for multi-threaded TCG, which -icount refuses: a
  # stand-in qemu first in PATH turns it into single-threaded TCG.
  real_qemu=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 not found: run scripts/install-deps.sh"
  mkdir -p "$snap/qemu"
  ln -s "$HERE/qemu-single-thread.sh" "$snap/qemu/qemu-system-x86_64"
  vm_env+=("PATH=$snap/qemu:$PATH" "EWBENCH_REAL_QEMU=$real_qemu" "EDGEWARD_VM_QEMU_ARGS=${EDGEWARD_VM_QEMU_ARGS:-} -icount shift=3")
  vm_args+=(--accel tcg --cpus 1)
fi
msg "running in the guest ($kver, lsm=$LSM_LIST, clock $clock): $rounds rounds, ${seconds} s loops"
status=0
"${vm_env[@]}" bash tests/vm/run-in-vm.sh "${vm_args[@]}" -- \
  node "$snap/lsm/guest-bench.js" --snap "$snap" --clock "$clock" --rounds "$rounds" --seconds "$seconds" --json >"$snap/out.txt" || status=$?
grep -v '^JSON ' "$snap/out.txt" || true
{
  cat "$snap/out.txt"
  echo "RESULT $(cat "$snap/result.json" 2>/dev/null)"
  for n in "${AA_SIZES[@]}"; do echo "PROFILE ewbench-$n bytes=$(stat -c %s "${bin_of[$n]}") compile_ms=$(cat "${bin_of[$n]}.ms" 2>/dev/null || echo '?')"; done
} >"$out"
msg "guest run: $(cat "$snap/result.json" 2>/dev/null); output kept in $out"
exit $status
exit
}
