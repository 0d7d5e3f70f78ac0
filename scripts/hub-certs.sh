#!/usr/bin/env bash
# TLS material for the hub's MQTT broker and its nodes (openssl, ECDSA P-256).
#
#   hub-certs.sh DIR ca                              DIR/ca.crt, DIR/ca.key (10 years)
#   hub-certs.sh DIR server NAME SAN[,SAN...]        DIR/NAME.crt/.key signed by DIR/ca,
#                                                    e.g. broker DNS:hub.example,IP:10.0.0.5
#   hub-certs.sh DIR client NAME COMMON_NAME         DIR/NAME.crt/.key; the broker takes
#                                                    COMMON_NAME as the MQTT user name
#                                                    (use_identity_as_username), e.g. node1@myorg
#
# Node user names are <node>@<org>: '@' never occurs in an organisation or node id, so no two
# nodes can share a user name (and so an ACL block). Keys are written mode 0600; existing files
# are never overwritten (delete them to re-issue).
set -euo pipefail

usage() {
  sed -n '2,12p' "$0" >&2
  exit 2
}

[ $# -ge 2 ] || usage
dir=$1
what=$2
shift 2
mkdir -p "$dir"
umask 077

refuse_existing() {
  for f in "$@"; do
    if [ -e "$f" ]; then
      echo "hub-certs: $f exists; not overwriting" >&2
      exit 1
    fi
  done
}

need_ca() {
  [ -f "$dir/ca.crt" ] && [ -f "$dir/ca.key" ] || {
    echo "hub-certs: no CA in $dir (run: $0 $dir ca)" >&2
    exit 1
  }
}

# Issues DIR/NAME.crt for a fresh key; $3 is the extensions file.
issue() {
  local name=$1 subject=$2 ext=$3
  openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$name.key"
  openssl req -new -key "$dir/$name.key" -subj "$subject" -out "$dir/$name.csr"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 825 -sha256 -extfile "$ext" -out "$dir/$name.crt" 2>/dev/null
  rm -f "$dir/$name.csr" "$ext"
  chmod 600 "$dir/$name.key"
  chmod 644 "$dir/$name.crt"
}

# openssl -subj separates RDNs with '/': escape it (and backslashes) inside a value.
subj_escape() {
  printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's#/#\\/#g'
}

case "$what" in
  ca)
    [ $# -eq 0 ] || usage
    refuse_existing "$dir/ca.crt" "$dir/ca.key"
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca.key"
    openssl req -new -x509 -key "$dir/ca.key" -sha256 -days 3650 -subj "/CN=edgeward hub CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$dir/ca.crt"
    chmod 600 "$dir/ca.key"
    chmod 644 "$dir/ca.crt"
    ;;
  server)
    [ $# -eq 2 ] || usage
    need_ca
    refuse_existing "$dir/$1.crt" "$dir/$1.key"
    ext=$(mktemp)
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$2" >"$ext"
    issue "$1" "/CN=$(subj_escape "$1")" "$ext"
    ;;
  client)
    [ $# -eq 2 ] || usage
    need_ca
    refuse_existing "$dir/$1.crt" "$dir/$1.key"
    ext=$(mktemp)
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >"$ext"
    issue "$1" "/CN=$(subj_escape "$2")" "$ext"
    ;;
  *)
    usage
    ;;
esac
