#!/usr/bin/env bash
# Added latency of a route whose first target is down (its breaker open)
# against a healthy route, through one Tollgate worker, side by side.
# Usage: breaker-bench.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
ROUNDS=${2:-3}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
. bench/scripts/common.sh
bench_setup
dead=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9101 --threads 1 >"$work/mock.log" 2>&1 &
{ gateway_server 127.0.0.1:9201; mock_route 9101; cat <<TOML
[routing]
breaker_cooldown_ms = 600000
[[providers]]
name = "dead"
kind = "openai-compatible"
base_url = "http://127.0.0.1:$dead/v1"
[[models]]
name = "failover"
targets = [{ provider = "dead" }, { provider = "mock" }]
TOML
bench_team_key; } >"$work/gw.toml"
taskset -c 0 ./target/release/tollgate --config "$work/gw.toml" >"$work/gw.log" 2>&1 &
sleep 1
# Open the dead target's breaker (5 refused connects).
taskset -c 1 wrk -t1 -c1 -d1s -s bench/scripts/failover.lua http://127.0.0.1:9201/v1/chat/completions >/dev/null
run() {
  taskset -c 1 wrk -t1 -c1 -d"${SECS}s" --latency -s "bench/scripts/$1.lua" http://127.0.0.1:9201/v1/chat/completions |
    wrk_summary
}
healthy=""; failover=""
for r in $(seq "$ROUNDS"); do
  healthy+="$(run chat)"$'\n'
  failover+="$(run failover)"$'\n'
done
echo "wrk -t1 -c1 -d${SECS}s, $ROUNDS rounds, medians"
printf "%-28s %8s %8s %8s\n" route req/s p50_us p99_us
for name in healthy failover; do
  median_row 28 "$name" "${!name}"
done
