#!/bin/sh
# The edgeward hub service's entry point (same image as the agent; the Horizon hub
# service's deployment selects it). Writes the hub configuration from the environment
# (Horizon userInput) and secrets, then runs `edgeward hub serve`.
#   EDGEWARD_BROKER_URL       mqtts://broker:8884 (password listener)
#   EDGEWARD_BROKER_USERNAME  the hub's MQTT user name
#   EDGEWARD_ORGANIZATION     default organization of `policy push` (default: HZN_ORGANIZATION)
#   EDGEWARD_INSTANCE         this hub instance's name (default: the user name)
# Secrets (/open-horizon-secrets, JSON {"key","value"}): hub_broker_ca (PEM),
# hub_broker_password, hub_signing_key (PEM private key from `edgeward hub keygen`).
# The database lives in /var/lib/edgeward-hub (bind it to keep alerts across restarts).
set -eu
SECRETS_IN=${EDGEWARD_SECRETS_DIR:-/open-horizon-secrets}
NODE=/opt/edgeward/node/bin/node
RUN=/run/edgeward-hub
DB=/var/lib/edgeward-hub

die() {
  echo "edgeward hub entrypoint: $*" >&2
  exit 1
}
[ -n "${EDGEWARD_BROKER_URL:-}" ] || die "EDGEWARD_BROKER_URL is not set"
[ -n "${EDGEWARD_BROKER_USERNAME:-}" ] || die "EDGEWARD_BROKER_USERNAME is not set"

mkdir -p "$RUN" "$DB"
chmod 0700 "$RUN" "$DB"
secret_to() {
  [ -s "$SECRETS_IN/$1" ] || die "secret $1 is missing or empty"
  "$NODE" -e '
    const fs = require("fs");
    const raw = fs.readFileSync(process.argv[1], "utf8");
    let v;
    try { const j = JSON.parse(raw); v = typeof j === "object" && j !== null && "value" in j ? String(j.value) : raw; }
    catch { v = raw; }
    fs.writeFileSync(process.argv[2], v, { mode: 0o600 });
  ' "$SECRETS_IN/$1" "$2"
}
q() { "$NODE" -e 'process.stdout.write(JSON.stringify(process.argv[1]))' "$1"; }

secret_to hub_broker_ca "$RUN/ca.crt"
secret_to hub_broker_password "$RUN/password"
secret_to hub_signing_key "$RUN/signing.key"
org=${EDGEWARD_ORGANIZATION:-${HZN_ORGANIZATION:-}}
{
  echo "# written by the edgeward hub image's entrypoint at every start"
  echo "broker:"
  echo "  url: $(q "$EDGEWARD_BROKER_URL")"
  echo "  username: $(q "$EDGEWARD_BROKER_USERNAME")"
  echo "  passwordFile: $RUN/password"
  echo "  tls:"
  echo "    ca: $RUN/ca.crt"
  [ -z "${EDGEWARD_INSTANCE:-}" ] || echo "instance: $(q "$EDGEWARD_INSTANCE")"
  [ -z "$org" ] || echo "organization: $(q "$org")"
  echo "database: $DB/hub.db"
  echo "signingKey: $RUN/signing.key"
} >"$RUN/hub.yaml"
exec "$NODE" /opt/edgeward/bin/edgeward hub serve --config "$RUN/hub.yaml" "$@"
