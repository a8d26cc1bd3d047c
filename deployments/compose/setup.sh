#!/usr/bin/env bash
# Makes what compose.yaml mounts, under deployments/compose/secrets:
#   pki/    the cluster CA (ca.key: keep it offline) and every certificate
#   certs/  ca.crt and gw1..gw3's certificates and keys (mounted read-only)
#   etc/    gossip.key, admin-tokens (hashes), mqtt-users (bcrypt lines)
#   client/ what clients use: the admin certificate (role operate), the
#           viewer token (role read), device press-1's certificate and
#           device press-2's password
# and .env with your group id (the gateways join it to read the keys).
#
#   deployments/compose/setup.sh path/to/millstream
#
# Extra names for the gateways' certificates (a DNS name or address of the
# Docker host, for devices on other machines): HOSTS="plant-gw.example 10.0.0.5".
set -euo pipefail
bin=$(realpath "${1:?usage: setup.sh path/to/millstream}")
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/credentials.sh
. "$here/../lib/credentials.sh"
out=$here/secrets
if [ -e "$out/pki/ca.key" ]; then
  echo "$out already holds a CA; remove $out to start over" >&2
  exit 1
fi
umask 027
mkdir -p "$out/pki" "$out/certs" "$out/etc" "$out/client"

"$bin" cert ca --dir "$out/pki"
for i in 1 2 3; do
  hosts=(--host "gw$i")  # localhost and 127.0.0.1 are always in
  for h in ${HOSTS:-}; do hosts+=(--host "$h"); done
  "$bin" cert gateway "gw$i" --dir "$out/pki" "${hosts[@]}"
  cp "$out/pki/gateway-gw$i.crt" "$out/pki/gateway-gw$i.key" "$out/certs/"
done
cp "$out/pki/ca.crt" "$out/certs/"
ms_credentials "$bin" "$out"

# The gateways run as uid 65532: the files they read are group-readable
# (and only that), and the containers join this group (group_add).
chmod 0640 "$out"/certs/* "$out"/etc/*
chmod 0750 "$out/certs" "$out/etc"
echo "MILLSTREAM_GID=$(id -g)" > "$here/.env"
echo "wrote $out and $here/.env; next: docker compose -f $here/compose.yaml up -d --build"
