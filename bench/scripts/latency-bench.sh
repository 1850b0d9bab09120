#!/usr/bin/env bash
# Open-loop latency (free of coordinated omission) at fixed rates, straight
# to the mock, through Tollgate and through nginx, with tollgate-load.
# Targets alternate within each round; the table reports medians over
# rounds and the latency each proxy adds over the direct run.
# Usage: latency-bench.sh [seconds] [rounds] [rates...]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-4}
ROUNDS=${2:-3}
shift 2 || true
RATES=${*:-350 10000 20000}
. bench/scripts/common.sh
bench_setup
taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9104 --threads 1 >"$work/mock.log" 2>&1 &
{ gateway_server 127.0.0.1:9204; mock_route 9104; bench_team_key; } >"$work/gw.toml"
taskset -c 0 ./target/release/tollgate --config "$work/gw.toml" >"$work/gw.log" 2>&1 &
targets="direct:9104 tollgate:9204"
if command -v nginx >/dev/null; then
  start_nginx 9104 9304 0
  targets="$targets nginx:9304"
fi
sleep 1
for rate in $RATES; do
  conns=$(( rate >= 1000 ? 32 : 4 ))
  declare -A p50=() p99=()
  for r in $(seq "$ROUNDS"); do
    for tp in $targets; do
      name=${tp%%:*}; port=${tp##*:}
      taskset -c 1 ./target/release/tollgate-load --url "http://127.0.0.1:$port/v1/chat/completions" \
        -c "$conns" -R "$rate" -d "$SECS" --warmup 1 -q --key tg-bench-key --json "$work/$name.json" >/dev/null
      p50[$name]+="$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['latency_us']['p50'])" "$work/$name.json")"$'\n'
      p99[$name]+="$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['latency_us']['p99'])" "$work/$name.json")"$'\n'
    done
  done
  echo
  echo "open loop, $rate req/s, $conns connections, ${SECS}s x $ROUNDS rounds, medians (µs)"
  printf "%-10s %8s %8s %12s %12s\n" target p50 p99 added_p50 added_p99
  # shellcheck disable=SC2086
  added_rows $targets
  unset p50 p99
done
