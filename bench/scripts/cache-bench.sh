#!/usr/bin/env bash
# The answer cache at real prompt sizes: one connection, closed loop, the
# governed lane (every policy on, as prompt-size-bench.sh) with `[cache]`,
# three ways, rounds alternating: every request a hit (the same
# temperature-0 body), every request bypassing the cache
# (`x-tollgate-cache: off`: the key is not even made), and the same
# gateway configuration without `[cache]`; p50 and p99 of each. Then the
# requests/s of the hit lane and of the no-cache lane at 32 connections.
# The gateways on CPU 0, the mock and the load on CPU 1.
# Usage: cache-bench.sh [seconds] [rounds] [sizes...]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
ROUNDS=${2:-3}
shift 2 2>/dev/null || true
SIZES=${*:-100 8192 102400}
. bench/scripts/common.sh
bench_setup

taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9100 --threads 1 >"$work/mock.log" 2>&1 &
governed_config_large 9201 9100 >"$work/plain.toml"
{ governed_config_large 9202 9100; printf '[cache]\nttl_s = 3600\nentry_bytes_max = 4194304\n'; } >"$work/cached.toml"
start_gateways plain cached
pcts() { python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['latency_us']; print(d['p50'], d['p99'])" "$1"; }
rps() { python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['requests_per_second']))" "$1"; }
load() { taskset -c 1 ./target/release/tollgate-load --key tg-bench-key -d "$SECS" --warmup 1 -q "$@" >/dev/null; }
for size in $SIZES; do
  body="$work/zero-$size.json"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1], encoding='utf-8')); d['temperature']=0; json.dump(d, open(sys.argv[2], 'w', encoding='utf-8'), ensure_ascii=False)" "bench/prompts/mixed-$size.json" "$body"
  declare -A rows=()
  for round in $(seq "$ROUNDS"); do
    load --url http://127.0.0.1:9202/v1/chat/completions -c 1 --body-file "$body" --json "$work/hit.json"
    rows[hit]+="$(pcts "$work/hit.json")"$'\n'
    load --url http://127.0.0.1:9202/v1/chat/completions -c 1 --body-file "$body" -H 'x-tollgate-cache: off' --json "$work/bypass.json"
    rows[bypass]+="$(pcts "$work/bypass.json")"$'\n'
    load --url http://127.0.0.1:9201/v1/chat/completions -c 1 --body-file "$body" --json "$work/plain.json"
    rows[plain]+="$(pcts "$work/plain.json")"$'\n'
  done
  line="$size B, one connection, p50/p99 us over $ROUNDS rounds:"
  for lane in hit bypass plain; do
    line+=" $lane $(echo -n "${rows[$lane]}" | cut -d' ' -f1 | median)/$(echo -n "${rows[$lane]}" | cut -d' ' -f2 | median);"
  done
  echo "$line"
  hits=""; plains=""
  for round in $(seq "$ROUNDS"); do
    load --url http://127.0.0.1:9202/v1/chat/completions -c 32 --body-file "$body" --json "$work/hit32.json"
    hits+="$(rps "$work/hit32.json")"$'\n'
    load --url http://127.0.0.1:9201/v1/chat/completions -c 32 --body-file "$body" --json "$work/plain32.json"
    plains+="$(rps "$work/plain32.json")"$'\n'
  done
  echo "$size B, 32 connections, req/s: hit $(echo -n "$hits" | median), no cache $(echo -n "$plains" | median)"
done
