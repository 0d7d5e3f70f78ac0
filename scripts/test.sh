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
mkdir -p build
status=0
npx jest --runInBand --json --outputFile=build/jest-results.json "$@" || status=$?
# One closing line any CI can read.
node -e '
  const r = require("./build/jest-results.json");
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' || status=1
exit $status
