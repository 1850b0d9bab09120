#!/usr/bin/env bash
# Soak: the gateway under a steady open-loop load (by default half of the
# rate one core sustains, BENCHMARKS.md) for a long time (default 30 min),
# sampling its resident memory every 10 s, so that a leak shows as a slope.
# Writes a CSV (seconds, rss_kb) and prints the first and last samples and
# the load generator's summary. Usage: soak.sh [minutes] [rate]
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES=${1:-30}
RATE=${2:-20000}
. bench/scripts/common.sh
bench_setup
taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9100 --threads 1 >"$work/mock.log" 2>&1 &
{ gateway_server 127.0.0.1:9200; mock_route 9100; bench_team_key; printf '[logging]\ndir = "%s/records"\n' "$work"; } >"$work/gw.toml"
taskset -c 0 ./target/release/tollgate --config "$work/gw.toml" >"$work/gw.log" 2>&1 &
sleep 1
pid=$(pgrep -f "release/tollgate --config $work" | head -1)
out=${SOAK_CSV:-soak-rss.csv}
echo "seconds,rss_kb" >"$out"
start=$(date +%s)
( while kill -0 "$pid" 2>/dev/null; do
    echo "$(( $(date +%s) - start )),$(awk '/VmRSS/ {print $2}' /proc/$pid/status)" >>"$out"
    sleep 10
  done ) &
taskset -c 1 ./target/release/tollgate-load run --url http://127.0.0.1:9200/v1/chat/completions \
  --key tg-bench-key -c 64 --rate "$RATE" --duration "$((MINUTES * 60))" | tail -15
echo "RSS samples in $out: first $(sed -n 2p "$out"), last $(tail -1 "$out")"
