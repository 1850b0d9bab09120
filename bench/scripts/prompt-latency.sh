#!/usr/bin/env bash
# What the governed lane adds to one request at real prompt sizes: one
# connection, closed loop, the routing-only lane and the governed lane
# (every policy on, as prompt-size-bench.sh) side by side, rounds
# alternating; p50 and p99 of each, and the difference. Streams too: time
# to first token added. The gateway on CPU 0, the mock and the load on
# CPU 1.
# KIND=conversation sends bench/prompts/conversation-SIZE.json instead.
# Usage: [KIND=mixed|conversation] prompt-latency.sh [seconds] [rounds] [sizes...]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
ROUNDS=${2:-3}
shift 2 2>/dev/null || true
SIZES=${*:-8192 102400}
. bench/scripts/common.sh
bench_setup

start_mock_and_lanes
# "p50 p99" in microseconds from a tollgate-load --json result.
pcts() { python3 -c "import json,sys; d=json.load(open(sys.argv[1]))[sys.argv[2]]; print(d['p50'], d['p99'])" "$1" "$2"; }
for size in $SIZES; do
  for mode in json stream; do
    body="bench/prompts/${KIND:-mixed}-$size.json"
    extra=()
    if [ "$mode" = stream ]; then
      # The same body with "stream": true, its text as written (no \u escapes).
      python3 -c "import json,sys; d=json.load(open(sys.argv[1], encoding='utf-8')); d['stream']=True; json.dump(d, open(sys.argv[2], 'w', encoding='utf-8'), ensure_ascii=False)" "$body" "$work/stream-$size.json"
      body="$work/stream-$size.json"
    fi
    field=latency_us; [ "$mode" = stream ] && field=ttft_us
    declare -A rows=()
    for round in $(seq "$ROUNDS"); do
      for lane in routing:9200 governed:9201; do
        name=${lane%%:*}; port=${lane##*:}
        taskset -c 1 ./target/release/tollgate-load --url "http://127.0.0.1:$port/v1/chat/completions" --key tg-bench-key \
          -c 1 -d "$SECS" --warmup 1 -q --body-file "$body" --json "$work/$name.json" >/dev/null
        rows[$name]+="$(pcts "$work/$name.json" "$field")"$'\n'
      done
    done
    r50=$(echo -n "${rows[routing]}" | cut -d' ' -f1 | median); r99=$(echo -n "${rows[routing]}" | cut -d' ' -f2 | median)
    g50=$(echo -n "${rows[governed]}" | cut -d' ' -f1 | median); g99=$(echo -n "${rows[governed]}" | cut -d' ' -f2 | median)
    echo "$size B $mode ($field, one connection, $ROUNDS rounds): routing p50 $r50 p99 $r99; governed p50 $g50 p99 $g99; added p50 $((g50 - r50)) us, p99 $((g99 - r99)) us"
  done
done
