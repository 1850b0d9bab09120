#!/usr/bin/env bash
# The cluster tier's cost and its overshoot, with a real redis-server.
#
# 1. Throughput: the governed lane (every policy on, as governed-bench.sh)
#    on one core, with a [cluster] section pushing to Redis every 100 ms,
#    and without it twice (single, single2: the pair shows this machine's
#    noise floor); wrk rounds alternate, the table reports medians.
# 2. Overshoot at full load: three one-worker nodes share a team budget;
#    wrk drives all three at once until they refuse; the cluster's total
#    spend (read from Redis) against the limit, without and with `strict`.
#
# Gateways on CPU 0; the mock, Redis and wrk on CPU 1.
# Usage: cluster-bench.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
ROUNDS=${2:-3}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)"; exit 1; }
. bench/scripts/common.sh
bench_setup

taskset -c 1 redis-server --bind 127.0.0.1 --port 9379 --save '' --appendonly no >"$work/redis.log" 2>&1 &
taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9100 --threads 1 >"$work/mock.log" 2>&1 &
sleep 0.5

# The governed lane's configuration on port $1, the team's budget $2.
governed() {
  gateway_server "127.0.0.1:$1"
  mock_route 9100
  printf 'price = { input_per_mtok = 1000.0, output_per_mtok = 1000.0 }\n'
  printf '[[guardrail_profiles]]\nname = "all"\npii = "redact"\nsecrets = "block"\ninjection = "block"\nresponses = true\n'
  bench_team_key | sed "s/^models = \\[\"\\*\"\\]\$/models = [\"*\"]\nguardrails = \"all\"\nbudget = { $2 }\nrate_limit = { requests_per_minute = 100000000, tokens_per_minute = 100000000000 }/"
}
cluster() {
  printf '[cluster]\nredis_urls = ["redis://127.0.0.1:9379/0"]\nnode_id = "%s"\n' "$1"
}

{ governed 9201 "daily_usd = 100000000.0"; } >"$work/single.toml"
{ governed 9203 "daily_usd = 100000000.0"; } >"$work/single2.toml"
{ governed 9202 "daily_usd = 100000000.0"; cluster n0; } >"$work/clustered.toml"
start_gateways single clustered single2
wrk_rounds bench/scripts/chat.lua "governed lane, one core" clustered:9202 single:9201 single2:9203
for n in single single2 clustered; do kill "$(pgrep -f "$work/$n.toml")" 2>/dev/null || true; done
sleep 0.5

# Overshoot: budget $300 (about 7,000 requests at this price), three nodes.
for mode in "daily_usd = 300.0" "daily_usd = 300.0, strict = true"; do
  redis-cli -p 9379 FLUSHALL >/dev/null
  for i in 1 2 3; do { governed "930$i" "$mode"; cluster "n$i"; } >"$work/node$i.toml"; done
  start_gateways node1 node2 node3
  for i in 1 2 3; do
    taskset -c 1 wrk -t1 -c16 -d"${SECS}s" -s bench/scripts/chat.lua "http://127.0.0.1:930$i/v1/chat/completions" >"$work/wrk$i.log" &
  done
  wait $(jobs -p | tail -3) 2>/dev/null || sleep "$SECS"
  sleep 1
  day=$(( $(date +%s) / 86400 ))
  spent=$(redis-cli -p 9379 GET "{tollgate}:d:$day:team:bench")
  ok=$(for i in 1 2 3; do awk '/requests in/ {r=$1} /Non-2xx/ {n=$NF} END {print r-n}' "$work/wrk$i.log"; done | paste -sd+ | bc)
  rps=$(for i in 1 2 3; do awk '/Requests\/sec/ {print $2}' "$work/wrk$i.log"; done | paste -sd+ | bc)
  echo "budget { $mode } over 3 nodes at $rps req/s offered: $ok admitted, spent \$$(echo "scale=4; $spent/1000000" | bc) of \$300 (overshoot $(echo "scale=2; ($spent-300000000)*100/300000000" | bc)%)"
  for i in 1 2 3; do kill "$(pgrep -f "$work/node$i.toml")" 2>/dev/null || true; done
  sleep 0.5
done
