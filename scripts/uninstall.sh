#!/usr/bin/env bash
# Removes edgeward (service, /opt/edgeward); --purge also removes /etc/edgeward,
# /var/lib/edgeward and /var/log/edgeward. Same as install.sh --uninstall.
set -euo pipefail
exec bash "$(cd "$(dirname "$0")" && pwd)/install.sh" --uninstall "$@"
