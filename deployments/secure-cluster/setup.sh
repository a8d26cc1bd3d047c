#!/usr/bin/env bash
# Makes everything a secure three-gateway cluster needs, in DIR: a cluster
# CA, a certificate per gateway, an admin client certificate (role
# operate), a device certificate (press-1), a gossip key, an admin token
# (role read), a broker password file (device press-2, reader dashboard)
# and the three gateway configurations gw1.yaml, gw2.yaml, gw3.yaml.
#
#   deployments/secure-cluster/setup.sh path/to/millstream DIR
#
# Every address is on 127.0.0.1 so that it runs on one machine; on real
# machines put each gateway's own address in GWn_* (and in --host of its
# certificate). Any of GW1_MQTT, GW1_MQTTS, GW1_HTTP, GW1_GOSSIP,
# GW1_REMOTE (and GW2_*, GW3_*) overrides an address.
set -euo pipefail
bin=$(realpath "${1:?usage: setup.sh path/to/millstream DIR}")
mkdir -p "${2:?usage: setup.sh path/to/millstream DIR}"
dir=$(cd "$2" && pwd)
certs=$dir/certs
umask 077

"$bin" cert ca --dir "$certs"
for i in 1 2 3; do
  "$bin" cert gateway "gw$i" --dir "$certs" --host 127.0.0.1
done
"$bin" cert admin ops --role operate --dir "$certs"
"$bin" cert device press-1 --dir "$certs"
head -c 32 /dev/urandom | base64 > "$dir/gossip.key"

# An admin token for dashboards (read only): the token goes to the
# client, its hash to the gateways.
"$bin" token viewer --role read > "$dir/viewer-token.out"
sed -n 's/^token (shown once; give it to viewer): //p' "$dir/viewer-token.out" > "$dir/viewer.token"
tail -n 1 "$dir/viewer-token.out" > "$dir/admin-tokens"
rm "$dir/viewer-token.out"

# Broker users: a device with a password, and a reader for job outputs.
head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dir/press-2.password"
"$bin" passwd press-2 --role device < "$dir/press-2.password" > "$dir/mqtt-users"
head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dir/dashboard.password"
"$bin" passwd dashboard --role reader < "$dir/dashboard.password" >> "$dir/mqtt-users"

for i in 1 2 3; do
  mqtt_var=GW${i}_MQTT mqtts_var=GW${i}_MQTTS http_var=GW${i}_HTTP gossip_var=GW${i}_GOSSIP remote_var=GW${i}_REMOTE
  mqtt=${!mqtt_var:-127.0.0.1:189$i}
  mqtts=${!mqtts_var:-127.0.0.1:889$i}
  http=${!http_var:-127.0.0.1:844$i}
  gossip=${!gossip_var:-127.0.0.1:79${i}6}
  remote=${!remote_var:-127.0.0.1:79${i}7}
  seeds=""
  if [ "$i" != 1 ]; then
    seeds="seeds: [${GW1_GOSSIP:-127.0.0.1:7916}]"
  fi
  tls="{cert_file: $certs/gateway-gw$i.crt, key_file: $certs/gateway-gw$i.key, ca_file: $certs/ca.crt}"
  cat > "$dir/gw$i.yaml" <<YAML
# Gateway $i of a secure three-gateway cluster (made by setup.sh).
name: gw$i
data_dir: $dir/gw$i/data
sequence_field: seq
mqtt_listen: $mqtt
mqtt:
  tls_listen: $mqtts
  tls: $tls
  password_file: $dir/mqtt-users
http_listen: $http
admin:
  tls: $tls
  tokens_file: $dir/admin-tokens
cluster:
  gossip_listen: $gossip
  remote_listen: $remote
  $seeds
  tls: $tls
  gossip_key_file: $dir/gossip.key
  probe_interval: 0.2s
  probe_timeout: 0.1s
  suspicion_mult: 2
YAML
  mkdir -p "$dir/gw$i"
done
echo "secure cluster material and configurations are in $dir"
