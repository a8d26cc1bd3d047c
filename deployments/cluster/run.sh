#!/usr/bin/env bash
# Starts a three-gateway cluster on 127.0.0.1 and deploys the
# temperature-monitoring job through the first gateway (the others get it
# from the cluster). Ctrl-C drains and stops all three.
#
#   go build -o /tmp/millstream ./cmd/millstream
#   deployments/cluster/run.sh /tmp/millstream [work-dir]
#
# Devices publish to any of 127.0.0.1:1883, :1884, :1885, e.g.
#   /tmp/millstream simulate --broker tcp://127.0.0.1:1884 --devices 50
set -euo pipefail
bin=$(realpath "${1:?usage: run.sh path/to/millstream [work-dir]}")
here=$(cd "$(dirname "$0")" && pwd)
work=${2:-$(mktemp -d /tmp/millstream-cluster.XXXXXX)}
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for i in 1 2 3; do
  mkdir -p "$work/gw$i"
  (cd "$work/gw$i" && exec "$bin" gateway --config "$here/gw$i.yaml" >"$work/gw$i/gateway.log" 2>&1) &
  pids+=($!)
  until curl -sf "http://127.0.0.1:808$i/readyz?exclude=cluster" >/dev/null; do sleep 0.2; done
done
"$bin" job deploy --admin http://127.0.0.1:8081 "$here/../jobs/temperature-monitoring/job.yaml"
echo "cluster up; logs and data under $work. Ctrl-C stops it."
"$bin" cluster status --admin 127.0.0.1:8081 || true
wait
