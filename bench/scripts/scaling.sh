#!/usr/bin/env bash
# Throughput by worker count: the governed lane with 1 and with 2 workers
# (each pinned by the gateway to its own core), driven by wrk (-t2 -c64).
# On a 2-core machine the mock and wrk share the same two cores, so this
# shows how the gateway's share of the machine turns into requests, not
# clean per-core scaling: run it on a larger machine (taskset the mock and
# wrk away from the gateway's cores) for that.
# Usage: scaling.sh [seconds] [rounds] [workers...]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
ROUNDS=${2:-3}
shift 2 || true
WORKERS=${*:-1 2}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
. bench/scripts/common.sh
bench_setup
./target/release/tollgate-mock --listen 127.0.0.1:9108 --threads 1 >"$work/mock.log" 2>&1 &
for w in $WORKERS; do
  { printf '[server]\nlisten = "127.0.0.1:92%02d"\nadmin_listen = "off"\nworkers = %s\n' "$w" "$w"
    mock_route 9108
    printf 'price = { input_per_mtok = 0.15, output_per_mtok = 0.60 }\n'
    printf '[[guardrail_profiles]]\nname = "all"\npii = "redact"\nsecrets = "block"\ninjection = "block"\nresponses = true\n'
    bench_team_key | sed 's/^models = \["\*"\]$/models = ["*"]\nguardrails = "all"\nbudget = { daily_usd = 100000.0 }\nrate_limit = { requests_per_minute = 100000000, tokens_per_minute = 100000000000 }/'
  } >"$work/w$w.toml"
  ./target/release/tollgate --config "$work/w$w.toml" >"$work/w$w.log" 2>&1 &
done
sleep 1.5
declare -A rows=()
for _ in $(seq "$ROUNDS"); do
  for w in $WORKERS; do
    out=$(wrk -t2 -c64 -d"${SECS}s" --latency -s bench/scripts/chat.lua "http://127.0.0.1:92$(printf %02d "$w")/v1/chat/completions")
    rows[$w]+="$(echo "$out" | wrk_summary)"$'\n'
  done
done
echo "wrk -t2 -c64 -d${SECS}s, governed lane, $ROUNDS rounds, medians"
printf "%-10s %8s %8s %8s\n" workers req/s p50_us p99_us
for w in $WORKERS; do median_row 10 "$w" "${rows[$w]}"; done
