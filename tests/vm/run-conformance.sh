#!/usr/bin/env bash
# run-conformance.sh [--backend B] [--no-probe-check] [--json FILE] [--timeout S]
#                    [--log FILE] [--result FILE] [TEST.ts...]
#
# Runs jest test files (default: the enforcement conformance suite,
# tests/integration/agent.test.ts) inside the BPF-LSM guest with
# EDGEWARD_BACKEND=B (default bpf-lsm), on the host's build unchanged.
#
# The tests are compiled to JS on the host first (tsc, with the repository's
# tsconfig.test.json: type errors stop here), because ts-jest inside a TCG
# guest costs over a minute per run; tests/vm/guest-jest.sh runs them there.
# The build (dist/ and the addon) is copied at the same moment and laid over
# the guest's view of the tree, so a rebuild on the host during the
# run cannot change what the guest executes.
# Unless --no-probe-check, the guest's `bin/edgeward probe --json` must pick
# backend B before any test runs (exit 3 otherwise: no silent fallback).
#   --json FILE    jest's JSON report is written to FILE
#   --timeout S    the whole guest run (default 900)
#   --log/--result as for run-in-vm.sh (harness messages / JSON summary)
# Exit status: jest's, or run-in-vm.sh's codes (123/124/125/127), or 2 for a
# usage or compile error, 3 when the probe picked another backend.
set -euo pipefail

# The whole script is one compound command: the shell reads all of it before
# running any, so an edit of this file during a (long) run cannot derail it.
{

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VM_DIR=${EDGEWARD_VM_DIR:-$REPO/build/vm}

backend=bpf-lsm probe_check=1 json_file="" timeout_s=900 vm_args=()
die() { echo "run-conformance: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) [ -n "${2:-}" ] || die "--backend needs a name"; backend=$2; shift 2 ;;
    --no-probe-check) probe_check=0; shift ;;
    --json) [ -n "${2:-}" ] || die "--json needs a file"; json_file=$2; shift 2 ;;
    --timeout) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--timeout needs seconds"; timeout_s=$2; shift 2 ;;
    --log | --result | --mem | --cpus) [ -n "${2:-}" ] || die "$1 needs a value"; vm_args+=("$1" "$2"); shift 2 ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(tests/integration/agent.test.ts)

cd "$REPO"
for t in "${tests[@]}"; do
  case "$t" in tests/*.test.ts) ;; *) die "$t: give test files as tests/....test.ts relative to the repository" ;; esac
  [ -f "$t" ] || die "$t: no such test file"
done
[ -f dist/agent/src/cli.js ] || die "TypeScript not built (dist/agent/src/cli.js): run npm run build"
[ -f build/native/Release/edgeward.node ] || die "native addon not built: run npm run build"

# Compile the tests and everything they import (tests/helpers, agent/src...)
# into a directory of their own (several runs may happen at once), laid out
# like the repository.
mkdir -p "$VM_DIR"
out=$(mktemp -d "$VM_DIR/tests-js.XXXXXX")
trap 'rm -rf "$out"' EXIT
files_json=$(printf '"%s",' "${tests[@]/#/$REPO/}")
cat >"$out/tsconfig.json" <<EOF
{
  "extends": "$REPO/tsconfig.test.json",
  "compilerOptions": { "noEmit": false, "outDir": "$out/tree", "rootDir": "$REPO", "sourceMap": false, "inlineSourceMap": true, "inlineSources": true },
  "include": [],
  "files": [${files_json%,}]
}
EOF
t0=$(date +%s%N)
node node_modules/typescript/bin/tsc -p "$out/tsconfig.json" >&2 || die "compiling ${tests[*]} failed"
echo "run-conformance: compiled ${tests[*]} in $((($(date +%s%N) - t0) / 1000000)) ms" >&2

# A snapshot of the build goes along: the guest reads the host's tree lazily
# for minutes, and a rebuild on the host meanwhile would hand it a mix of old
# and new files (or a half-written addon). Retried until nothing changed
# during the copy.
# (The BPF objects are inside the addon, as skeletons.)
snapshot_state() { find dist build/native/Release/edgeward.node -type f -printf '%p %s %T@\n' 2>/dev/null | sort | sha256sum; }
for attempt in 1 2 3 4 5; do
  before=$(snapshot_state)
  rm -rf "$out/tree/dist" "$out/tree/build"
  mkdir -p "$out/tree/build/native/Release"
  cp -a dist "$out/tree/"
  cp -a build/native/Release/edgeward.node "$out/tree/build/native/Release/"
  [ "$(snapshot_state)" = "$before" ] && break
  [ $attempt = 5 ] && die "the build kept changing while it was copied (a rebuild is running?)"
  sleep 2
done

js=()
for t in "${tests[@]}"; do js+=("${t%.ts}.js"); done
guest_args=("$out/tree")
[ "$probe_check" = 1 ] && guest_args+=(--expect-backend "$backend")
[ -n "$json_file" ] && guest_args+=(--json)

# The agent starts 10-25x slower in a TCG guest than on the host: tests
# that start it (tests/helpers/agent_process.ts) wait this long for "ready".
vm_args+=(--env "EDGEWARD_TEST_AGENT_READY_MS=${EDGEWARD_TEST_AGENT_READY_MS:-180000}")
vm_args+=(--env "EDGEWARD_TEST_AGENT_STOP_MS=${EDGEWARD_TEST_AGENT_STOP_MS:-120000}")

status=0
if [ -n "$json_file" ]; then
  bash "$HERE/run-in-vm.sh" --timeout "$timeout_s" "${vm_args[@]}" --env "EDGEWARD_BACKEND=$backend" --env CI=true \
    -- sh tests/vm/guest-jest.sh "${guest_args[@]}" "${js[@]}" >"$json_file" || status=$?
else
  bash "$HERE/run-in-vm.sh" --timeout "$timeout_s" "${vm_args[@]}" --env "EDGEWARD_BACKEND=$backend" --env CI=true \
    -- sh tests/vm/guest-jest.sh "${guest_args[@]}" "${js[@]}" || status=$?
fi
exit $status
exit
}
