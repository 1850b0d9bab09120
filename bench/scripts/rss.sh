#!/usr/bin/env bash
# Resident memory of the governed gateway (one worker, every policy on, so
# token counting and the guardrails are configured): idle after start,
# during SECS seconds of 8 KB prompts from wrk (32 connections), after
# them, and with 10,000 idle client connections. Each line gives VmRSS,
# its anonymous and file-backed parts, and the anonymous memory in
# transparent huge pages (/proc/PID/status and smaps_rollup).
# Usage: rss.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
. bench/scripts/common.sh
bench_setup

ports_free 9100 9201
taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9100 --threads 1 >"$work/mock.log" 2>&1 &
# The connections all come from 127.0.0.1: the per-client cap (1,024 by
# default) is lifted so that the 10,000 are held.
governed_config_large 9201 9100 | sed 's/^workers = 1$/workers = 1\nconnections_per_client_max = 0\nconnections_per_worker_max = 20000/' >"$work/governed.toml"
start_gateways governed
pid=$(pgrep -f "tollgate --config $work/governed.toml" | head -1)
rss() {
  printf "%-34s %s %s\n" "$1" "$(grep -E 'VmRSS|RssAnon|RssFile' "/proc/$pid/status" | tr -s ' \t' ' ' | tr '\n' ' ')" \
    "$(grep AnonHugePages "/proc/$pid/smaps_rollup" | tr -s ' ') fds: $(ls "/proc/$pid/fd" | wc -l)"
}
sleep 2
rss "idle, started"
export BODY=bench/prompts/mixed-8192.json
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer tg-bench-key' -H 'Content-Type: application/json' \
  --data-binary @"$BODY" http://127.0.0.1:9201/v1/chat/completions)
[ "$code" = 200 ] || { echo "the gateway answered $code"; exit 1; }
taskset -c 1 wrk -t1 -c32 -d"${SECS}s" -s bench/scripts/body.lua http://127.0.0.1:9201/v1/chat/completions >"$work/wrk.log" &
sleep $((SECS / 2))
rss "under load (8 KB prompts, 32 conns)"
wait $!
grep -E "Requests/sec|Non-2xx" "$work/wrk.log" || true
sleep 2
rss "after the load"
python3 - <<'PY' &
import resource, socket, time
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
s = [socket.create_connection(("127.0.0.1", 9201)) for _ in range(10000)]
time.sleep(8)
PY
sleep 6
rss "10,000 idle client connections"
wait $!
