#!/usr/bin/env bash
# The guard's request check (criterion's guard_request group: 2 KB bodies
# and the prompt-size workload's mixed 8 KB and 100 KB) with the anchors'
# pass on AVX-512 and on AVX2 (TOLLGATE_NO_AVX512), on this machine, in
# alternated rounds; prints each round's median times and the medians of
# the rounds. Valgrind has no AVX-512, so callgrind cannot compare them.
# Usage: avx512-vs-avx2.sh [ROUNDS] [SECONDS_PER_BENCH]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
SECS=${2:-3}
grep -q avx512bw /proc/cpuinfo || { echo "this CPU has no AVX-512 BW: nothing to compare"; exit 1; }
cargo bench -p tollgate-bench --bench guard --offline --no-run >/dev/null 2>&1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() { # label [env...]
  local label=$1
  shift
  env "$@" cargo bench -p tollgate-bench --bench guard --offline -- guard_request \
    --measurement-time "$SECS" --warm-up-time 1 --noplot 2>/dev/null |
    awk -v l="$label" '/^guard_request\// {name=$1} /time:/ {for (i = 1; i <= NF; i++) if ($i == "time:" && $(i + 4) ~ /^(ns|µs|us|ms)$/) print l, name, $(i + 3), $(i + 4)}'
}
for r in $(seq "$ROUNDS"); do
  run avx512 >>"$out/rows"
  run avx2 TOLLGATE_NO_AVX512=1 >>"$out/rows"
done
echo "median of $ROUNDS rounds (criterion's middle estimate each round):"
python3 - "$out/rows" <<'EOF'
import sys, statistics, collections
unit = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3}
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    label, name, value, u = line.split()
    rows[(name, label)].append(float(value) * unit[u])
names = sorted({n for n, _ in rows})
print(f"{'bench':32} {'avx512 µs':>10} {'avx2 µs':>10} {'avx512/avx2':>12}")
for n in names:
    a, b = statistics.median(rows[(n, "avx512")]), statistics.median(rows[(n, "avx2")])
    print(f"{n:32} {a:10.3f} {b:10.3f} {a / b:12.3f}")
EOF
