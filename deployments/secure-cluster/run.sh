#!/usr/bin/env bash
# Starts a secure three-gateway cluster on 127.0.0.1 (README, "Securing a
# gateway cluster"): setup.sh makes the CA, certificates, keys, token,
# passwords and configurations in the work directory, then the three
# gateways start and the temperature-monitoring job is deployed through
# the first one's HTTPS admin API with the admin client certificate.
# Ctrl-C drains and stops all three.
#
#   go build -o /tmp/millstream ./cmd/millstream
#   deployments/secure-cluster/run.sh /tmp/millstream [work-dir]
#
# A device with a certificate then publishes over MQTTS, e.g.
#   mosquitto_pub -h 127.0.0.1 -p 8892 --cafile WORK/certs/ca.crt \
#     --cert WORK/certs/device-press-1.crt --key WORK/certs/device-press-1.key \
#     -i press-1 -t devices/press-1/messages/events -q 1 \
#     -m '{"deviceId":"press-1","seq":1,"temperature":120,"timeCreated":"2026-12-05T10:00:00Z"}'
set -euo pipefail
bin=$(realpath "${1:?usage: run.sh path/to/millstream [work-dir]}")
here=$(cd "$(dirname "$0")" && pwd)
work=${2:-$(mktemp -d /tmp/millstream-secure.XXXXXX)}
"$here/setup.sh" "$bin" "$work"
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for i in 1 2 3; do
  (cd "$work/gw$i" && exec "$bin" gateway --config "$work/gw$i.yaml" >"$work/gw$i/gateway.log" 2>&1) &
  pids+=($!)
  until curl -sf --cacert "$work/certs/ca.crt" "https://127.0.0.1:844$i/readyz?exclude=cluster" >/dev/null; do sleep 0.2; done
done
admin=(--admin https://127.0.0.1:8441 --ca "$work/certs/ca.crt" --cert "$work/certs/admin-ops.crt" --key "$work/certs/admin-ops.key")
"$bin" job deploy "${admin[@]}" "$here/../jobs/temperature-monitoring/job.yaml"
echo "secure cluster up; material, logs and data under $work. Ctrl-C stops it."
"$bin" cluster status "${admin[@]}" || true
wait
