#!/usr/bin/env bash
# Issue 16's capacity check at a real prompt size (8 KB by default): the
# open-loop p99 of the routing-only lane and the governed lane (one worker
# each on CPU 0; the mock and the generator on CPU 1) at rising rates,
# `tollgate-load -R RATE` (latency from each request's intended send time),
# ROUNDS rounds per rate with the lanes alternating, and the median p99 per
# rate. The highest rate whose median p99 is under the objective (3 ms) is
# what each lane holds (a lower rate may still miss it here: at a few
# hundred requests a second this VM's idle CPUs wake slowly, and both
# lanes' p99 rises). `tollgate-load sweep --rounds 3` judges each step the
# same way but stops at its first failing step; this script runs every
# rate for both lanes, alternating them, so that a slow minute of the
# machine falls on both.
# Usage: sweep-prompt.sh [rounds] [size] [rates...]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
SIZE=${2:-8192}
shift 2 2>/dev/null || true
RATES=${*:-500 1000 2000 3000 4000 6000 8000 10000}
SLO_US=3000
. bench/scripts/common.sh
bench_setup

start_mock_and_lanes
body=bench/prompts/mixed-$SIZE.json
# p50 and p99 in µs and the achieved rate of one open-loop run.
one() {
  taskset -c 1 ./target/release/tollgate-load --url "http://127.0.0.1:$1/v1/chat/completions" --key tg-bench-key \
    --body-file "$body" -c 32 -R "$2" -d 4 --warmup 1 -q 2>&1 |
    awk '/^run:/ {rate=$(NF-1)} /p50/ {for (i=1;i<=NF;i++) {if ($i=="p50") p50=$(i+1); if ($i=="p99") p99=$(i+1)}} END {printf "%d %d %s\n", p50*1000, p99*1000, rate}'
}
declare -A held=()
printf '%-9s %7s %9s %9s %9s  %s\n' lane rate achieved p50_us p99_us "p99 by round"
for rate in $RATES; do
  declare -A p99s=() p50s=() got=()
  for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then order="routing:9200 governed:9201"; else order="governed:9201 routing:9200"; fi
    for t in $order; do
      read -r p50 p99 achieved <<<"$(one "${t#*:}" "$rate")"
      p50s[${t%:*}]+="$p50"$'\n'; p99s[${t%:*}]+="$p99"$'\n'; got[${t%:*}]+="$achieved"$'\n'
    done
  done
  for lane in routing governed; do
    m99=$(echo -n "${p99s[$lane]}" | median)
    printf '%-9s %7s %9s %9s %9s  %s\n' "$lane" "$rate" "$(echo -n "${got[$lane]}" | median)" "$(echo -n "${p50s[$lane]}" | median)" "$m99" "$(echo -n "${p99s[$lane]}" | tr '\n' ' ')"
    if [ "$m99" -le "$SLO_US" ]; then held[$lane]=$rate; fi
  done
  unset p99s p50s got
done
echo "highest rate whose median p99 is under 3 ms: routing ${held[routing]:-none}, governed ${held[governed]:-none}"
