#!/usr/bin/env bash
# How far one node passes a team budget under full load, against the
# documented bound, with and without `strict` (issue 17.3).
#
# One gateway with W workers (default 2), gpt-4o priced 2.50/10.00, a team
# budget of $0.01 a day; tollgate-load drives 64 keep-alive connections
# for 2 s. Admitted requests and their cost come from the records. The
# bound (ARCHITECTURE.md, "How far a budget can be passed"): a core sees
# its own spend at once and the other cores' within 250 ms, so
#   spent <= limit + (W - 1) x (rate per core) x 0.25 s x cost + in flight x cost.
# With strict = true (a [cluster] on a local redis-server) every request
# first reserves its estimate: never past the limit.
# Usage: overshoot.sh [workers] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
W=${1:-2}
ROUNDS=${2:-3}
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)"; exit 1; }
. bench/scripts/common.sh
bench_setup

redis-server --bind 127.0.0.1 --port 9479 --save '' --appendonly no >"$work/redis.log" 2>&1 &
./target/release/tollgate-mock --listen 127.0.0.1:9110 --threads 1 >"$work/mock.log" 2>&1 &
sleep 0.5

config() { # $1: budget fields, $2: records dir, $3: extra sections
  printf '[server]\nlisten = "127.0.0.1:9211"\nadmin_listen = "off"\nworkers = %s\n' "$W"
  printf '[logging]\ndir = "%s"\n' "$2"
  printf '[[providers]]\nname = "mock"\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:9110/v1"\n'
  printf '[[models]]\nname = "gpt-4o"\ntargets = [{ provider = "mock" }]\nprice = { input_per_mtok = 2.5, output_per_mtok = 10.0 }\n'
  bench_team_key | sed "s/^models = \\[\"\\*\"\\]\$/models = [\"*\"]\nbudget = { $1 }/"
  printf '%b' "$3"
}
printf '{"model":"gpt-4o","max_tokens":16,"messages":[{"role":"user","content":"Say hello"}]}' >"$work/body.json"

for mode in "daily_usd = 0.01" "daily_usd = 0.01, strict = true" "daily_usd = 0.01, strict = true (closed)"; do
  for round in $(seq "$ROUNDS"); do
    rm -rf "$work/rec" && mkdir -p "$work/rec"
    redis-cli -p 9479 FLUSHALL >/dev/null
    extra=""
    case "$mode" in *strict*) extra='[cluster]\nredis_urls = ["redis://127.0.0.1:9479/0"]\nnode_id = "n1"\n' ;; esac
    case "$mode" in *closed*) extra="${extra}on_stale = \"closed\"\n" ;; esac
    config "${mode% (closed)}" "$work/rec" "$extra" >"$work/gw.toml"
    ./target/release/tollgate --config "$work/gw.toml" >"$work/gw.log" 2>&1 &
    gw=$!
    for _ in $(seq 50); do grep -q "tollgate listening" "$work/gw.log" && break; sleep 0.1; done
    ./target/release/tollgate-load --url http://127.0.0.1:9211/v1/chat/completions --key tg-bench-key \
      --body-file "$work/body.json" -c 64 -d 2 --warmup 0 -q --json "$work/load.json" >/dev/null 2>&1 || true
    kill -TERM "$gw"; wait "$gw" 2>/dev/null || true
    python3 - "$work/rec" "$work/load.json" "$W" "$mode" <<'PY'
import json, pathlib, sys
recs = [json.loads(l) for f in pathlib.Path(sys.argv[1]).glob("*") for l in open(f) if l.strip()]
ok = [r for r in recs if r.get("status") == 200]
spent = sum(r.get("cost_micro_usd") or 0 for r in ok)
cost = max((r.get("cost_micro_usd") or 0 for r in ok), default=0)
load = json.load(open(sys.argv[2]))
rate = load["requests_per_second"]
w = int(sys.argv[3])
bound = 10_000 + (w - 1) * (rate / w) * 0.25 * cost + 64 * cost
print(f"{sys.argv[4]:<34} workers {w}: {len(ok):4d} admitted of {len(recs):6d} at {rate:8.0f} req/s, "
      f"spent {spent:7d} µ$ of 10000 ({(spent - 10000) * 100 / 10000:+6.0f}%), bound {bound:8.0f} µ$")
PY
  done
done
