#!/usr/bin/env bash
# Side-by-side proxy benchmark on one machine: the same wrk load straight to
# the mock, through Tollgate (one worker pinned to CPU 0), and through nginx
# proxy_pass (one worker pinned to CPU 0). The mock and wrk share CPU 1.
# Rounds alternate between targets so that machine noise hits all alike;
# the table reports medians. Usage: proxy-bench.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
ROUNDS=${2:-3}
GW_CPU=${GW_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
CONNS=${CONNS:-32}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
. bench/scripts/common.sh
bench_setup

taskset -c "$LOAD_CPU" ./target/release/tollgate-mock --listen 127.0.0.1:9100 --threads 1 >"$work/mock.log" 2>&1 &
{ gateway_server 127.0.0.1:9200; mock_route 9100; bench_team_key; } >"$work/gw.toml"
taskset -c "$GW_CPU" ./target/release/tollgate --config "$work/gw.toml" >"$work/gw.log" 2>&1 &
have_nginx=0
if command -v nginx >/dev/null; then
  have_nginx=1
  start_nginx 9100 9300 "$GW_CPU"
fi
sleep 1
grep -q "tollgate listening" "$work/gw.log" || { echo "tollgate did not start:"; cat "$work/gw.log"; exit 1; }

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
pid_of() {
  case $1 in
    mock) pgrep -f "tollgate-mock --listen 127.0.0.1:9100" | head -1 ;;
    tollgate) pgrep -f "release/tollgate --config $work" | head -1 ;;
    nginx) pgrep -f "nginx: worker process" | head -1 ;;
  esac
}
port_of() { case $1 in mock) echo 9100 ;; tollgate) echo 9200 ;; nginx) echo 9300 ;; esac; }
targets="mock tollgate"
[ $have_nginx = 1 ] && targets="$targets nginx"

run() { # target conns -> "rps p50_us p99_us cpu%"
  local t=$1 c=$2 pid before after out
  pid=$(pid_of "$t"); before=$(ticks "$pid")
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$c" -d"${SECS}s" --latency -s bench/scripts/chat.lua "http://127.0.0.1:$(port_of "$t")/v1/chat/completions")
  after=$(ticks "$pid")
  echo "$out" | awk -v cpu="$(( (after - before) / SECS ))" '
    function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return (v+0)*1000; return (v+0)*1e6 }
    /Requests\/sec/ { rps=$2 } / 50%/ { p50=us($2) } / 99%/ { p99=us($2) }
    END { printf "%d %d %d %d\n", rps, p50, p99, cpu }'
}

for conns in "$CONNS" 1; do
  declare -A rows=()
  for r in $(seq "$ROUNDS"); do
    for t in $targets; do rows[$t]+="$(run "$t" "$conns")"$'\n'; done
  done
  echo
  echo "wrk -t1 -c$conns -d${SECS}s, $ROUNDS rounds, medians (server CPU % of one core)"
  printf "%-10s %10s %9s %9s %6s %14s\n" target req/s p50_us p99_us cpu% req/s_per_core
  for t in $targets; do
    rps=$(echo -n "${rows[$t]}" | cut -d' ' -f1 | median)
    p50=$(echo -n "${rows[$t]}" | cut -d' ' -f2 | median)
    p99=$(echo -n "${rows[$t]}" | cut -d' ' -f3 | median)
    cpu=$(echo -n "${rows[$t]}" | cut -d' ' -f4 | median)
    per=$(( cpu > 0 ? rps * 100 / cpu : 0 ))
    printf "%-10s %10s %9s %9s %6s %14s\n" "$t" "$rps" "$p50" "$p99" "$cpu" "$per"
  done
  unset rows
done
