#!/usr/bin/env bash
# A mosquitto broker for the edgeward hub, from policies/hub/mosquitto.conf.template.
#
#   hub-broker.sh setup DIR [--mtls-port N] [--password-port N] [--bind ADDR] [--san SANS]
#       DIR/tls (CA + broker certificate, via hub-certs.sh), DIR/mosquitto.conf, DIR/data,
#       empty DIR/passwords and DIR/acl unless present. Defaults: 8883, 8884, 0.0.0.0,
#       SANS "DNS:localhost,IP:127.0.0.1".
#   hub-broker.sh user DIR NAME PASSWORD      add or change a password user
#   hub-broker.sh cert DIR NAME CN            issue a client certificate (CN = MQTT user name)
#   hub-broker.sh run DIR                     run mosquitto in the foreground
#
# Write DIR/acl with `edgeward hub acl --config hub.yaml > DIR/acl` and send the broker SIGHUP
# to reload it. When run as root, mosquitto drops to user "mosquitto": DIR is chown'd to it.
# The CA key is created in DIR/tls for a quick start; in production move DIR/tls/ca.key off the
# broker (issue certificates elsewhere with hub-certs.sh) and hand node keys to their nodes only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
template="$here/../policies/hub/mosquitto.conf.template"

usage() {
  sed -n '2,15p' "$0" >&2
  exit 2
}

[ $# -ge 2 ] || usage
cmd=$1
dir=$2
shift 2

own() {
  if [ "$(id -u)" -eq 0 ] && id mosquitto >/dev/null 2>&1; then
    chown -R mosquitto: "$dir"
  fi
}

case "$cmd" in
  setup)
    mtls=8883 pw=8884 bind=0.0.0.0 san="DNS:localhost,IP:127.0.0.1"
    while [ $# -gt 0 ]; do
      case "$1" in
        --mtls-port) mtls=$2; shift 2 ;;
        --password-port) pw=$2; shift 2 ;;
        --bind) bind=$2; shift 2 ;;
        --san) san=$2; shift 2 ;;
        *) usage ;;
      esac
    done
    command -v mosquitto >/dev/null || { echo "hub-broker: mosquitto is not installed (scripts/install-deps.sh)" >&2; exit 1; }
    mkdir -p "$dir/data" "$dir/tls"
    dir=$(cd "$dir" && pwd)
    [ -f "$dir/tls/ca.crt" ] || bash "$here/hub-certs.sh" "$dir/tls" ca
    [ -f "$dir/tls/broker.crt" ] || bash "$here/hub-certs.sh" "$dir/tls" server broker "$san"
    [ -f "$dir/passwords" ] || : >"$dir/passwords"
    [ -f "$dir/acl" ] || printf '# no users yet: edgeward hub acl --config hub.yaml > %s/acl\n' "$dir" >"$dir/acl"
    chmod 600 "$dir/passwords"
    sed -e "s#@DIR@#$dir#g" -e "s#@MTLS_PORT@#$mtls#g" -e "s#@PASSWORD_PORT@#$pw#g" -e "s#@BIND@#$bind#g" \
      "$template" >"$dir/mosquitto.conf"
    own
    echo "$dir/mosquitto.conf"
    ;;
  user)
    [ $# -eq 2 ] || usage
    mosquitto_passwd -b "$dir/passwords" "$1" "$2"
    own
    ;;
  cert)
    [ $# -eq 2 ] || usage
    bash "$here/hub-certs.sh" "$dir/tls" client "$1" "$2"
    ;;
  run)
    exec mosquitto -c "$dir/mosquitto.conf"
    ;;
  *)
    usage
    ;;
esac
