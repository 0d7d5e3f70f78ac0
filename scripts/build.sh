#!/usr/bin/env bash
# Installs what is missing (system packages, npm packages) and builds
# everything: BPF objects and skeletons, the native addon, the TypeScript.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# npm ci only when the installed tree is older than the lock file.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build
