#!/usr/bin/env bash
# Builds edgeward and runs every test (unit and integration, as root, on the
# real kernel). Integration tests fail with a clear message when a kernel
# feature they need is missing; none is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: integration tests need root (they attach kernel programs)" >&2
  exit 1
fi
# The agent mounts these itself; tests that drive the addon directly need them too.
grep -qs ' /sys/kernel/security securityfs ' /proc/mounts || mount -t securityfs none /sys/kernel/security || true
grep -qs ' /sys/kernel/tracing tracefs ' /proc/mounts || mount -t tracefs none /sys/kernel/tracing || true
mkdir -p build
status=0
npx jest --runInBand --json --outputFile=build/jest-results.json "$@" || status=$?
# One closing line any CI can read.
node -e '
  const r = require("./build/jest-results.json");
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' || status=1
exit $status
