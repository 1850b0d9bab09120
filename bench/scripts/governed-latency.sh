#!/usr/bin/env bash
# The governed lane's latency targets (issue 8), with tollgate-load:
#   - one connection, closed loop: p99 added by Tollgate (routing only and
#     governed) against nginx proxy_pass's, in the same run;
#   - open loop at 350 and 10,000 req/s (latency from the intended send
#     time, so stalls are not hidden);
#   - streams at 200 req/s: time to first token added.
# Targets alternate within each round; tables give medians over rounds and
# what each proxy adds over the direct run. Proxies on CPU 0; the mock and
# the load generator on CPU 1.
# Usage: governed-latency.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-4}
ROUNDS=${2:-3}
command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx-light)"; exit 1; }
. bench/scripts/common.sh
bench_setup
taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9106 --threads 1 --chunks 16 >"$work/mock.log" 2>&1 &
{ gateway_server 127.0.0.1:9206; mock_route 9106; bench_team_key; } >"$work/plain.toml"
governed_config 9207 9106 >"$work/governed.toml"
start_gateways plain governed
start_nginx 9106 9306 0
sleep 1
targets="direct:9106 nginx:9306 plain:9206 governed:9207"

# lane NAME LOAD_ARGS...: one table over the targets, from tollgate-load's
# JSON (field: latency_us, or ttft_us for streams).
lane() {
  local what=$1 field=$2 tp name port
  shift 2
  declare -A p50=() p99=()
  for _ in $(seq "$ROUNDS"); do
    for tp in $targets; do
      name=${tp%%:*}; port=${tp##*:}
      taskset -c 1 ./target/release/tollgate-load --url "http://127.0.0.1:$port/v1/chat/completions" \
        -d "$SECS" --warmup 1 -q --key tg-bench-key --json "$work/$name.json" "$@" >/dev/null
      p50[$name]+="$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]['p50'])" "$work/$name.json" "$field")"$'\n'
      p99[$name]+="$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]['p99'])" "$work/$name.json" "$field")"$'\n'
    done
  done
  echo
  echo "$what, ${SECS}s x $ROUNDS rounds, medians of $field (µs)"
  printf "%-10s %8s %8s %12s %12s\n" target p50 p99 added_p50 added_p99
  # shellcheck disable=SC2086
  added_rows $targets
}

lane "one connection, closed loop" latency_us -c 1
lane "open loop, 350 req/s, 4 connections" latency_us -c 4 -R 350
lane "open loop, 10,000 req/s, 32 connections" latency_us -c 32 -R 10000
lane "streams (16 events), open loop, 200 req/s, 8 connections" ttft_us -c 8 -R 200 --stream
