#!/usr/bin/env bash
# Two builds of a criterion bench binary side by side: A and B run in
# alternated rounds (the machine's speed drifts between minutes), and the
# medians of criterion's middle estimates are printed with B/A. For
# changes that callgrind cannot judge (AVX-512, which valgrind lacks;
# fewer mispredicted branches for more instructions). Make a binary with
# `cargo bench -p tollgate-bench --bench guard --no-run` and copy
# target/release/deps/guard-* out (the other build in a worktree; a
# binary reads its prompts from the bench directory it was built in).
# Usage: criterion-ab.sh BIN_A BIN_B [ROUNDS] [FILTER] [SECONDS]
set -euo pipefail
A=$1 B=$2 ROUNDS=${3:-5} FILTER=${4:-guard_request} SECS=${5:-2}
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
for _ in $(seq "$ROUNDS"); do
  for x in A B; do
    bin=$A
    [ "$x" = B ] && bin=$B
    "$bin" --bench "$FILTER" --measurement-time "$SECS" --warm-up-time 1 --noplot 2>/dev/null |
      awk -v l="$x" '/^[a-z_]+\// {name=$1} /time:/ {for (i = 1; i <= NF; i++) if ($i == "time:" && $(i + 4) ~ /^(ns|µs|us|ms)$/) print l, name, $(i + 3), $(i + 4)}' >>"$rows"
  done
done
python3 - "$rows" <<'PY'
import sys, statistics, collections
unit = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3}
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    label, name, value, u = line.split()
    rows[(name, label)].append(float(value) * unit[u])
print(f"{'bench':34} {'A µs':>10} {'B µs':>10} {'B/A':>6}")
for n in sorted({n for n, _ in rows}):
    a, b = statistics.median(rows[(n, "A")]), statistics.median(rows[(n, "B")])
    print(f"{n:34} {a:10.3f} {b:10.3f} {b / a:6.3f}")
PY
