#!/usr/bin/env bash
# Records Tollgate's worker under load with perf (software clock sampling,
# which works on VMs without hardware counters) and renders flamegraphs
# with inferno: one of small non-streaming requests, one of streams.
# Needs: perf (Debian linux-perf), inferno (cargo install inferno).
# With "governed", the gateway runs every policy (as
# bench/scripts/governed-bench.sh) and the files are governed-json.svg and
# governed-stream.svg.
# With BODY=FILE, only the JSON lane is recorded, sending that body
# (bench/prompts), into governed-<NAME>.svg (NAME: env, default "body");
# BIN=DIR takes the gateway from another build (a "before" worktree).
# Usage: flamegraphs/record.sh [seconds] [governed]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
MODE=${2:-plain}
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)"; exit 1; }
command -v inferno-flamegraph >/dev/null || { echo "needs inferno (cargo install inferno)"; exit 1; }
. bench/scripts/common.sh
bench_setup
taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9105 --threads 1 --chunks 16 >"$work/mock.log" 2>&1 &
prefix=""
if [ "$MODE" = governed ]; then
  prefix="governed-"
  governed_config 9205 9105 >"$work/gw.toml"
else
  { gateway_server 127.0.0.1:9205; mock_route 9105; bench_team_key; } >"$work/gw.toml"
fi
taskset -c 0 "${BIN:-./target/release}/tollgate" --config "$work/gw.toml" >"$work/gw.log" 2>&1 &
sleep 1
gw=$(pgrep -f "tollgate --config $work" | head -1)
body_args=()
if [ -n "${BODY:-}" ]; then
  body_args=(--body-file "$BODY")
  prefix="${prefix}${NAME:-body}-"
fi
lanes="json stream"
[ -n "${BODY:-}" ] && lanes=json
for lane in $lanes; do
  extra=""
  [ "$lane" = stream ] && extra="--stream"
  taskset -c 1 ./target/release/tollgate-load --url http://127.0.0.1:9205/v1/chat/completions --key tg-bench-key \
    -c 32 -d $((SECS + 2)) --warmup 0 -q $extra "${body_args[@]}" >"$work/load-$lane.txt" &
  load=$!
  sleep 1
  perf record -F 997 -g -p "$gw" -o "$work/perf-$lane.data" -- sleep "$SECS" 2>/dev/null
  wait $load
  perf script -i "$work/perf-$lane.data" 2>/dev/null | inferno-collapse-perf >"$work/$lane.folded"
  inferno-flamegraph --title "tollgate ($MODE${BODY:+, $BODY}${NAME:+, $NAME}): $lane requests, one worker" <"$work/$lane.folded" >"flamegraphs/$prefix$lane.svg"
  head -1 "$work/load-$lane.txt"
  echo "wrote flamegraphs/$prefix$lane.svg"
  # Where the samples were taken, by object (kernel, tollgate, libc).
  perf report -i "$work/perf-$lane.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -4
done
