#!/usr/bin/env bash
# Cache misses per request through the real gateway binary, by lane:
# callgrind's cache simulation (L1 instruction and data caches of 32 KiB,
# 8-way, and a last level of 512 KiB standing for Zen 3's L2) over what
# runs under the connection's task, while `tollgate-load` sends N
# requests on one keep-alive connection (after 5 that warm it up). Prints,
# per request and for the routing and governed lanes: instructions (Ir),
# first-level misses (I1, D1 reads and writes) and last-level misses (LL),
# then the governed lane's functions with the most data misses. The
# simulation sees only the gateway's user-space work, not the kernel's
# between requests (which evicts more in a real run): the counts are a
# floor, and repeat exactly, where the wall clock on this machine wanders.
# Stop 60 (BENCHMARKS.md) found half of the governed lane's cost at 8 KB
# outside its instructions: here is where.
# Usage: cachesim-gateway.sh [N] [BODY_FILE]
# VG_EXTRA adds valgrind options: VG_EXTRA="--separate-callers3=*memcpy*"
# splits the copies' misses by the three functions above them.
# LANES=routing,governed lists both lanes' functions, TOP=N of them, RANK=Ir
# ranks them by instructions (or any events of callgrind's, comma-separated).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 1; }
N=${1:-300}
BODY=${2:-bench/prompts/mixed-8192.json}
source bench/scripts/common-keep.sh
for port in 9151 9152; do
  if ss -ltnH "sport = :$port" | grep -q .; then echo "port $port is in use"; exit 1; fi
done
bench_setup
./target/release/tollgate-mock --listen 127.0.0.1:9152 --threads 1 >"$work/mock.log" 2>&1 &
for lane in routing governed; do
  if [ "$lane" = routing ]; then routing_config_large 9151 9152; else governed_config_large 9151 9152; fi >"$work/$lane.toml"
  valgrind --tool=callgrind --cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=524288,8,64 \
    --callgrind-out-file="$work/$lane.cg" --toggle-collect='*conn*serve*' ${VG_EXTRA:-} \
    ./target/release/tollgate --config "$work/$lane.toml" >"$work/$lane.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do grep -q "tollgate listening" "$work/$lane.log" && break; sleep 0.1; done
  ./target/release/tollgate-load --url http://127.0.0.1:9151/v1/chat/completions --key tg-bench-key \
    -c 1 -n 5 --warmup 0 --body-file "$BODY" -q >/dev/null
  callgrind_control -d "$pid" >/dev/null 2>&1
  ./target/release/tollgate-load --url http://127.0.0.1:9151/v1/chat/completions --key tg-bench-key \
    -c 1 -n "$N" --warmup 0 -d 600 --body-file "$BODY" -q >/dev/null
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  # Wait for the port, so that the next lane can listen on it.
  for _ in $(seq 100); do ss -ltnH "sport = :9151" | grep -q . || break; sleep 0.1; done
done
python3 - "$work" "$N" <<'PY'
import collections, os, re, sys
work, n = sys.argv[1], int(sys.argv[2])
def load(path):
    events, fn, skip, names = None, None, False, {}
    cost = collections.defaultdict(collections.Counter)
    for line in open(path, errors="replace"):
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith(("fn=", "cfn=")):
            kind, value = line.split("=", 1)
            m = re.match(r"\((\d+)\)(?: (.*))?", value.strip())
            name = value.strip()
            if m:
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                name = names.get(m.group(1), name)
            if kind == "fn":
                fn = name
        elif line.startswith("calls="):
            skip = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            if skip:
                skip = False
                continue
            for i, e in enumerate(events):
                parts = line.split()
                if len(parts) > i + 1:
                    cost[e][fn] += int(parts[i + 1])
    return cost
lanes = {lane: load(f"{work}/{lane}.cg.2") for lane in ("routing", "governed")}
rows = [("instructions (Ir)", ["Ir"]), ("I1 misses", ["I1mr"]), ("D1 misses", ["D1mr", "D1mw"]),
        ("LL misses, instructions", ["ILmr"]), ("LL misses, data", ["DLmr", "DLmw"])]
print(f"{'per request':26} {'routing':>9} {'governed':>9}")
for label, events in rows:
    vals = [sum(sum(lanes[l][e].values()) for e in events) / n for l in ("routing", "governed")]
    print(f"{label:26} {vals[0]:>9.0f} {vals[1]:>9.0f}")
top = int(os.environ.get("TOP", "10"))
width = int(os.environ.get("WIDTH", "90"))
# LANES=routing,governed lists both lanes' functions; the governed one's by default.
for lane in os.environ.get("LANES", "governed").split(","):
    data = collections.Counter()
    # RANK=Ir (or another event, comma-separated) ranks by that instead.
    events = os.environ.get("RANK", "DLmr,DLmw,D1mr,D1mw").split(",")
    for e in events:
        data.update(lanes[lane][e])
    print(f"{lane}, {'+'.join(events)} by function:")
    for name, v in data.most_common(top):
        print(f"  {v / n:7.1f}  {name[:width]}")
PY
