#!/usr/bin/env bash
# Builds edgeward and runs the agent in the foreground on the bundled default
# host policies. Extra arguments go to `edgeward agent` (e.g. --log-format json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >&2
exec ./bin/edgeward agent --policies policies/default "$@"
