#!/usr/bin/env bash
# Where CPU 0's time goes per request, routing lane against governed lane,
# at one prompt: each lane (one worker pinned to CPU 0; the mock and
# tollgate-load on CPU 1, 32 connections) is profiled with
# `perf record -C 0` (software clock, call graphs off) while under load,
# and every sample is put in a group: the kernel (split into idle and
# busy), the guard's passes, the JSON walks, the record, copies,
# allocation, the rest. A group's µs per request is its share of the
# samples times the run's time over its requests, so the columns add up to
# 1 s / req/s (idle included: a lane whose idle is not near 0 is held
# back by CPU 1, not by the gateway). The last column is governed minus
# routing: what governance costs CPU 0 per request, and in what.
# BENCHMARKS.md ("Stop 52", "Stop 53") quotes this breakdown; the
# prompt-size benchmark's cpu0_us column is the same total under wrk.
# Under perf the lanes run a few percent slower than without it.
# Usage: [TOP=N] cpu0-breakdown.sh [BODY_FILE] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
BODY=${1:-bench/prompts/mixed-8192.json}
SECS=${2:-8}
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)"; exit 1; }
source bench/scripts/common.sh
bench_setup
taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9100 --threads 1 >"$work/mock.log" 2>&1 &
profile() { # lane port
  local lane=$1 port=$2
  if [ "$lane" = routing ]; then routing_config_large "$port" 9100; else governed_config_large "$port" 9100; fi >"$work/$lane.toml"
  taskset -c 0 ./target/release/tollgate --config "$work/$lane.toml" >"$work/$lane.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do grep -q "tollgate listening" "$work/$lane.log" && break; sleep 0.1; done
  # The load runs past the profile on both sides: warm-up before, none
  # of its ramp-down inside.
  taskset -c 1 ./target/release/tollgate-load --url "http://127.0.0.1:$port/v1/chat/completions" --key tg-bench-key \
    -c 32 -d $((SECS + 5)) --body-file "$BODY" -q >"$work/$lane.load" &
  local load=$!
  sleep 2
  perf record -q -e cpu-clock -C 0 -o "$work/$lane.data" -- sleep "$SECS" >/dev/null 2>&1
  wait "$load"
  kill -INT "$pid"
  wait "$pid" 2>/dev/null || true
  # The lane's rate over the whole load run, from tollgate-load's summary.
  awk '/^run:/ {for (i = 1; i <= NF; i++) if ($i == "req/s") print $(i - 1)}' "$work/$lane.load" >"$work/$lane.rate"
  perf report -i "$work/$lane.data" --no-children --sort comm,sym -g none 2>/dev/null | grep -v '^#' | grep '%' >"$work/$lane.syms"
}
profile routing 9201
profile governed 9202
python3 - "$work" "${TOP:-0}" <<'PY'
import re, sys
work = sys.argv[1]
groups = [
    ("idle", lambda c, k, s: k and re.search(r"safe_halt|default_idle|poll_idle|intel_idle", s)),
    ("record thread", lambda c, k, s: c.startswith("tollgate-record")),
    ("kernel", lambda c, k, s: k),
    ("guard", lambda c, k, s: re.search(r"guard::|unescape|national::", s)),
    ("json walks", lambda c, k, s: re.search(r"json::|openai::|canonical|simdutf8", s)),
    ("record", lambda c, k, s: re.search(r"record::|itoa|ryu", s)),
    ("copies", lambda c, k, s: re.search(r"memmove|memcpy|memset", s)),
    ("allocation", lambda c, k, s: re.search(r"\bmi_|_mi_|malloc|free\b|alloc::", s)),
    ("other", lambda c, k, s: True),
]
top = {}
def breakdown(lane):
    rate = float(open(f"{work}/{lane}.rate").read().split()[0])
    out = dict.fromkeys([g for g, _ in groups], 0.0)
    top[lane] = []
    for line in open(f"{work}/{lane}.syms"):
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
        if not m:
            continue
        pct, comm, kind, sym = float(m[1]), m[2], m[3], m[4]
        for g, test in groups:
            if test(comm, kind == "k", sym):
                out[g] += pct / 100 * 1e6 / rate
                top[lane].append((pct / 100 * 1e6 / rate, g, sym))
                break
    return rate, out
r_rate, r = breakdown("routing")
g_rate, g = breakdown("governed")
print(f"{'CPU 0, µs per request':24} {'routing':>9} {'governed':>9} {'more':>7}")
print(f"{'req/s (under perf)':24} {r_rate:>9.0f} {g_rate:>9.0f}")
for name, _ in groups:
    print(f"{name:24} {r[name]:>9.2f} {g[name]:>9.2f} {g[name] - r[name]:>+7.2f}")
busy = lambda d: sum(v for k, v in d.items() if k != "idle")
print(f"{'busy':24} {busy(r):>9.2f} {busy(g):>9.2f} {busy(g) - busy(r):>+7.2f}")
# TOP=N: the governed lane's N costliest symbols outside the guard, the
# idle loop and the kernel, with their groups.
for us, grp, sym in sorted((t for t in top["governed"] if t[1] not in ("guard", "idle", "kernel")), reverse=True)[: int(sys.argv[2])]:
    print(f"  {us:6.2f} µs  {grp:14} {sym[:90]}")
PY
