#!/bin/sh
# guest-jest.sh COMPILED_DIR [--expect-backend B] [--json] TEST.js... — runs
# INSIDE the guest (tests/vm/run-conformance.sh starts it through
# run-in-vm.sh). COMPILED_DIR holds the test sources already compiled to JS
# on the host (the repository's layout: tests/..., agent/src/... for what
# the tests import), with a snapshot of the build (dist/, the addon). They are copied next to their .ts sources in the guest's
# writable overlay — the host's tree is untouched — so that require() and
# paths computed from __dirname (REPO, fixtures) resolve as under ts-jest, and
# jest runs them without a transform: ts-jest in a TCG guest spends a minute
# type-checking before the first test.
#   --expect-backend B  first check that `bin/edgeward probe --json` picks B
#                       (exit 3 with the probe's reasons otherwise)
#   --json              jest's JSON report on stdout (human report on stderr)
set -eu

# The whole script is one compound command: the shell reads all of it before
# running any, so an edit of this file during a (long) run cannot derail it.
{

say() { echo "guest-jest: $*" >&2; }
if [ ! -d /run/edgeward-vm ] || [ "$(hostname)" != edgeward-vm ]; then
  say "refusing to run outside the edgeward qemu guest (it writes compiled tests into tests/)"
  exit 2
fi
[ $# -ge 1 ] || { say "usage: guest-jest.sh COMPILED_DIR [--expect-backend B] [--json] TEST.js..."; exit 2; }
compiled=$1
shift
expect="" json=""
while [ $# -gt 0 ]; do
  case "$1" in
    --expect-backend) expect=$2; shift 2 ;;
    --json) json=--json; shift ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { say "no test files given"; exit 2; }
[ -d "$compiled/tests" ] || { say "no compiled tests in $compiled/tests"; exit 2; }
case "$(cd "$compiled" && pwd)" in "$(pwd)"/build/*) ;; *) say "$compiled is not under build/"; exit 2 ;; esac

uptime_s() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v s="$1" '{ printf "%.1f", $1 - s }' /proc/uptime; }

t0=$(uptime_s)
# The build snapshot is bind-mounted (copying it through 9p takes seconds);
# the compiled sources are copied next to their .ts files.
for p in dist build/native/Release/edgeward.node; do
  if [ -e "$compiled/$p" ]; then mount --bind "$compiled/$p" "$p" || { say "bind-mounting the snapshot of $p failed"; exit 2; }; fi
done
(cd "$compiled" && find . -path ./dist -prune -o -path ./build -prune -o -type f -print) | while IFS= read -r f; do
  mkdir -p "$(dirname "$f")"
  cp "$compiled/$f" "$f"
done
say "laid the compiled tests and the build snapshot over the tree in $(since "$t0") s"

if [ -n "$expect" ]; then
  t0=$(uptime_s)
  probe=$(node bin/edgeward probe --json) || { say "bin/edgeward probe failed in the guest"; exit 3; }
  got=$(printf '%s' "$probe" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s);console.log(r.backend)})')
  say "probe picked '$got' in $(since "$t0") s"
  if [ "$got" != "$expect" ]; then
    say "the guest's probe picked '$got', not '$expect':"
    printf '%s\n' "$probe" >&2
    exit 3
  fi
fi

repo=$(pwd)
config=$(printf '{"rootDir":"%s","roots":["<rootDir>/tests"],"testMatch":["**/*.test.js"],"testEnvironment":"node","transform":{},"testTimeout":300000,"cacheDirectory":"/tmp/jest-cache"}' "$repo")
t0=$(uptime_s)
status=0
node node_modules/jest/bin/jest.js --ci --runInBand --config "$config" $json "$@" || status=$?
say "jest ran $* in $(since "$t0") s (exit $status)"
exit $status
exit
}
