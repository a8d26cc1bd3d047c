#!/usr/bin/env bash
# Makes the cluster CA, a certificate per gateway pod, the gossip key, an
# admin token, a device password and client material under
# deployments/kubernetes/secrets/, and creates (or replaces) the Secrets
# the StatefulSet mounts: millstream-certs and millstream-secrets.
#
#   deployments/kubernetes/secrets.sh path/to/millstream
#
# NAMESPACE (millstream), REPLICAS (3) and CLUSTER_DOMAIN (cluster.local)
# must match kustomization.yaml and statefulset.yaml. HOSTS="a b" adds
# names to the gateways' certificates (a load balancer's name, for
# devices). Run it again with REPLICAS=5 before scaling to five: it keeps
# the CA and the certificates it has and issues the missing ones.
set -euo pipefail
bin=$(realpath "${1:?usage: secrets.sh path/to/millstream}")
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/credentials.sh
. "$here/../lib/credentials.sh"
ns=${NAMESPACE:-millstream}
replicas=${REPLICAS:-3}
domain=${CLUSTER_DOMAIN:-cluster.local}
kubectl=${KUBECTL:-kubectl}
out=$here/secrets
umask 077
mkdir -p "$out/pki" "$out/certs" "$out/etc" "$out/client"

[ -e "$out/pki/ca.key" ] || "$bin" cert ca --dir "$out/pki"
for ((i = 0; i < replicas; i++)); do
  pod=millstream-$i
  if [ ! -e "$out/pki/gateway-$pod.crt" ]; then
    hosts=(--host "$pod.millstream-peers.$ns.svc.$domain" --host "$pod.millstream-peers.$ns.svc"
      --host "millstream.$ns.svc.$domain" --host "millstream.$ns.svc" --host millstream)
    for h in ${HOSTS:-}; do hosts+=(--host "$h"); done
    "$bin" cert gateway "$pod" --dir "$out/pki" "${hosts[@]}"
  fi
  cp "$out/pki/gateway-$pod.crt" "$out/pki/gateway-$pod.key" "$out/certs/"
done
cp "$out/pki/ca.crt" "$out/certs/"
[ -e "$out/etc/gossip.key" ] || ms_credentials "$bin" "$out"

# ca.key stays in secrets/pki, never in the cluster.
"$kubectl" get namespace "$ns" >/dev/null 2>&1 || "$kubectl" create namespace "$ns"
for s in certs:millstream-certs etc:millstream-secrets; do
  "$kubectl" -n "$ns" create secret generic "${s#*:}" --from-file="$out/${s%%:*}" --dry-run=client -o yaml |
    "$kubectl" -n "$ns" apply -f -
done
echo "Secrets millstream-certs and millstream-secrets are in namespace $ns; client material in $out/client"
