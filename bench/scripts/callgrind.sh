#!/usr/bin/env bash
# Instruction counts of the governed pipeline in memory (tollgate-pipeline:
# head, key among 1,000, routing scan, every guardrail, prompt tokens,
# budget and rate checks; a 20-event answer stream parsed, counted,
# guarded and written), under valgrind's callgrind, which counts the same
# instructions run after run where timings on this machine wander. Only
# the per-request function is counted, not the set-up. Compares against
# the committed baseline (bench/callgrind-baseline.txt) and fails on a rise
# over 2%; `--update` records a new baseline.
# Usage: callgrind.sh [--update]
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 1; }
ITERATIONS=100
cargo build --release -q -p tollgate-bench --bin tollgate-pipeline
out=$(mktemp)
valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect='*pipeline*iterate*' \
  ./target/release/tollgate-pipeline "$ITERATIONS" >/dev/null 2>"$out.log"
total=$(awk '/^(summary|totals):/ {print $2}' "$out" | tail -1)
rm -f "$out" "$out.log"
per=$((total / ITERATIONS))
baseline_file=bench/callgrind-baseline.txt
echo "instructions per request and answer: $per"
if [ "${1:-}" = "--update" ] || [ ! -f "$baseline_file" ]; then
  echo "$per" >"$baseline_file"
  echo "baseline recorded in $baseline_file"
  exit 0
fi
base=$(cat "$baseline_file")
change=$(awk -v a="$per" -v b="$base" 'BEGIN { printf "%+.2f", (a - b) * 100 / b }')
echo "baseline: $base ($change%)"
awk -v a="$per" -v b="$base" 'BEGIN { exit !(a <= b * 1.02) }' || { echo "instruction count rose more than 2%"; exit 1; }
