#!/bin/sh
# The edgeward agent image's entry point (Open Horizon service or plain docker run).
#
# Policies name host paths (/etc/shadow, /usr/bin/nc): fanotify marks must land on the
# host's inodes, not the image's. So the agent runs chrooted into the host's root,
# bound at /host (read-only), with the state directory /var/lib/edgeward bound
# read-write: the same program, configuration and policy store as a systemd install.
# The image itself is bound (in this container's mount namespace only) at
# /var/lib/edgeward/.image, and node runs through the image's dynamic loader and
# libraries, so the host needs neither node nor libbpf.
#
# Configuration from the environment (Horizon userInput):
#   EDGEWARD_HUB_URL      mqtts://hub:8883 (empty: no hub, local policies only)
#   EDGEWARD_NODE_GROUPS  comma-separated policy groups (e.g. cameras,all)
#   EDGEWARD_BACKEND      auto | bpf-lsm | compat | audit-only
#   EDGEWARD_LOG_FORMAT   json | pretty
#   EDGEWARD_HOSTNAME     the node's host name in alerts (default: the host's /etc/hostname)
#   EDGEWARD_STATE_DIR    the state directory on the host (default /var/lib/edgeward)
#   EDGEWARD_POLICIES     the operator's policy directory on the host (default /etc/edgeward/policies;
#                         when absent, the bundled defaults copied to /var/lib/edgeward/horizon/policies)
# Credentials (Horizon secrets, files under /open-horizon-secrets, JSON {"key","value"}):
#   hub_ca           PEM of the CA that signed the hub broker's certificate
#   hub_credentials  a password, or a PEM client certificate followed by its private key
#   hub_policy_key   PEM public key that signs policy bundles
# HZN_ORGANIZATION and HZN_NODE_ID (set by Horizon) name the node at the hub.
set -eu

HOST=${EDGEWARD_HOST_ROOT:-/host}
# The state directory, a host path bound read-write at $HOST$STATE (the policy store).
STATE=${EDGEWARD_STATE_DIR:-/var/lib/edgeward}
WORK=$STATE/horizon
SECRETS_IN=${EDGEWARD_SECRETS_DIR:-/open-horizon-secrets}

die() {
  echo "edgeward entrypoint: $*" >&2
  exit 1
}

[ -d "$HOST/proc/1" ] || die "the host's root is not bound at $HOST (bind /:$HOST:ro,rslave)"
[ -d "$HOST$STATE" ] || die "$STATE is not bound at $HOST$STATE (bind $STATE:$HOST$STATE:rw)"
touch "$HOST$STATE/.writable" 2>/dev/null || die "$HOST$STATE is not writable (bind it rw)"
rm -f "$HOST$STATE/.writable"

case "${EDGEWARD_BACKEND:-auto}" in auto|bpf-lsm|compat|audit-only) ;; *) die "EDGEWARD_BACKEND must be auto, bpf-lsm, compat or audit-only, not '${EDGEWARD_BACKEND}'" ;; esac
case "${EDGEWARD_LOG_FORMAT:-json}" in json|pretty) ;; *) die "EDGEWARD_LOG_FORMAT must be json or pretty, not '${EDGEWARD_LOG_FORMAT}'" ;; esac

# The image at a path inside the host's root (this namespace only: not the host's mounts).
IMG=$STATE/.image
mkdir -p "$HOST$IMG"
mountpoint -q "$HOST$IMG" || mount --bind / "$HOST$IMG"
mkdir -p "$HOST$WORK"
chmod 0700 "$HOST$STATE" "$HOST$WORK"

# Scratch files (the probe's) on a tmpfs: the host's /tmp is read-only here.
mkdir -p "$HOST$WORK/tmp"
mountpoint -q "$HOST$WORK/tmp" || mount -t tmpfs -o mode=0700,size=4m tmpfs "$HOST$WORK/tmp"
export TMPDIR=$WORK/tmp

# Secrets stay in memory: a tmpfs in this namespace, never on the host's disk.
SECRETS=$WORK/secrets
mkdir -p "$HOST$SECRETS"
mountpoint -q "$HOST$SECRETS" || mount -t tmpfs -o mode=0700,size=1m tmpfs "$HOST$SECRETS"

# Value of Horizon secret $1 into file $2 (empty when the secret is absent or empty).
secret_to() {
  f="$SECRETS_IN/$1"
  if [ -s "$f" ]; then
    "$IMG_NODE" -e '
      const fs = require("fs");
      const raw = fs.readFileSync(process.argv[1], "utf8");
      let v;
      try { const j = JSON.parse(raw); v = typeof j === "object" && j !== null && "value" in j ? String(j.value) : raw; }
      catch { v = raw; }
      fs.writeFileSync(process.argv[2], v, { mode: 0o600 });
    ' "$f" "$2"
  else
    : >"$2"
  fi
}
IMG_NODE=/opt/edgeward/node/bin/node

yaml_string() {
  # JSON strings are YAML strings: quoting done by node, not by hand.
  "$IMG_NODE" -e 'process.stdout.write(JSON.stringify(process.argv[1]))' "$1"
}

hostname=${EDGEWARD_HOSTNAME:-$(cat "$HOST/etc/hostname" 2>/dev/null || hostname)}
policies=${EDGEWARD_POLICIES:-/etc/edgeward/policies}
case "$policies" in /*) ;; *) die "EDGEWARD_POLICIES must be an absolute path on the host, not '$policies'" ;; esac
if [ -n "${EDGEWARD_POLICIES:-}" ] && [ ! -d "$HOST$policies" ]; then
  die "EDGEWARD_POLICIES=$policies is not a directory on the host"
fi
if [ ! -d "$HOST$policies" ]; then
  # No operator policies on this host: the bundled defaults, kept in the state directory.
  policies=$WORK/policies
  if [ ! -d "$HOST$policies" ]; then
    mkdir -p "$HOST$policies"
    cp /opt/edgeward/policies/default/*.yaml "$HOST$policies/"
  fi
fi

config=$HOST$WORK/config.yaml
{
  echo "# written by the edgeward image's entrypoint at every start (Horizon userInput)"
  echo "node:"
  echo "  hostname: $(yaml_string "$hostname")"
  echo "backend: ${EDGEWARD_BACKEND:-auto}"
  echo "policyDirectory: $policies"
  echo "stateDirectory: $STATE"
  echo "control:"
  echo "  socket: $WORK/control.sock   # on the host too: edgeward status --socket $WORK/control.sock"
  echo "logging:"
  echo "  format: ${EDGEWARD_LOG_FORMAT:-json}"
} >"$config"

if [ -n "${EDGEWARD_HUB_URL:-}" ]; then
  secret_to hub_ca "$HOST$SECRETS/ca.crt"
  secret_to hub_policy_key "$HOST$SECRETS/signing.pub"
  secret_to hub_credentials "$HOST$SECRETS/credentials"
  [ -s "$HOST$SECRETS/ca.crt" ] || die "EDGEWARD_HUB_URL is set but secret hub_ca is missing or empty"
  [ -s "$HOST$SECRETS/signing.pub" ] || die "EDGEWARD_HUB_URL is set but secret hub_policy_key is missing or empty"
  [ -s "$HOST$SECRETS/credentials" ] || die "EDGEWARD_HUB_URL is set but secret hub_credentials is missing or empty"
  {
    echo "hub:"
    echo "  url: $(yaml_string "$EDGEWARD_HUB_URL")"
    if [ -n "${EDGEWARD_NODE_GROUPS:-}" ]; then
      printf '  groups: ['
      echo "$EDGEWARD_NODE_GROUPS" | tr ',' '\n' | sed 's/^ *//;s/ *$//' | grep -v '^$' |
        while read -r g; do printf '%s, ' "$(yaml_string "$g")"; done | sed 's/, $//'
      echo ']'
    fi
    echo "  tls:"
    echo "    ca: $SECRETS/ca.crt"
  } >>"$config"
  if grep -q -- '-----BEGIN' "$HOST$SECRETS/credentials"; then
    # certificate(s) first, then the private key
    sed -n '/-----BEGIN [A-Z ]*PRIVATE KEY-----/,/-----END [A-Z ]*PRIVATE KEY-----/p' "$HOST$SECRETS/credentials" >"$HOST$SECRETS/node.key"
    sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' "$HOST$SECRETS/credentials" >"$HOST$SECRETS/node.crt"
    [ -s "$HOST$SECRETS/node.key" ] && [ -s "$HOST$SECRETS/node.crt" ] ||
      die "secret hub_credentials holds PEM but not both a CERTIFICATE and a PRIVATE KEY"
    echo "    cert: $SECRETS/node.crt" >>"$config"
    echo "    key: $SECRETS/node.key" >>"$config"
  else
    echo "  passwordFile: $SECRETS/credentials" >>"$config"
  fi
  echo "  policyPublicKeys: [$SECRETS/signing.pub]" >>"$config"
  chmod 0600 "$HOST$SECRETS"/*
fi

# node through the image's own loader and libraries (absolute symlinks resolved here,
# since inside the chroot they would name the host's files).
loader=""
for l in /lib64/ld-linux-x86-64.so.2 /lib/ld-linux-aarch64.so.1 /lib/ld-linux-armhf.so.3; do
  [ -e "$l" ] && { loader=$(readlink -f "$l"); break; }
done
[ -n "$loader" ] || die "no dynamic loader found in the image"
libpath=""
for d in /usr/lib/*-linux-gnu* /lib/*-linux-gnu*; do
  [ -d "$d" ] || continue
  d=$(readlink -f "$d")
  case ":$libpath:" in *":$IMG$d:"*) ;; *) libpath="${libpath:+$libpath:}$IMG$d" ;; esac
done

echo "edgeward entrypoint: agent chrooted to $HOST, config $WORK/config.yaml, policies $policies" >&2
exec chroot "$HOST" "$IMG$loader" --library-path "$libpath" \
  "$IMG/opt/edgeward/node/bin/node" "$IMG/opt/edgeward/bin/edgeward" agent --config "$WORK/config.yaml" "$@"
