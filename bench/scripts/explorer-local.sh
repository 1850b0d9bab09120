#!/usr/bin/env bash
# The request explorer over a day of local records (issue 21.3, no
# [clickhouse]): writes a day at 100 requests/s (8,640,000 lines,
# bench/scripts/explorer-day.py) into DIR unless it is there, starts a
# release gateway on it, times the index's first build (the first query
# answers 503 until it is built), then each query with curl, the median of ROUNDS.
# Usage: bench/scripts/explorer-local.sh [DIR] [ROUNDS]
set -euo pipefail
source "$(dirname "$0")/common.sh"
dir=${1:-/tmp/tollgate-explorer-day}
rounds=${2:-5}
bench_setup
mkdir -p "$dir"
day="$dir/tollgate-requests-2026-12-02.jsonl"
[ -s "$day" ] || python3 bench/scripts/explorer-day.py "$day"
admin_hash=$(printf '%s' tg-bench-admin | sha256sum | cut -d' ' -f1)
{
  printf '[server]\nlisten = "127.0.0.1:18300"\nadmin_listen = "127.0.0.1:18301"\nworkers = 1\nadmin_tokens = ["%s"]\n' "$admin_hash"
  printf '[logging]\ndir = "%s"\n' "$dir"
  mock_route 18302
  bench_team_key
} >"$work/gw.toml"
./target/release/tollgate --config "$work/gw.toml" >"$work/gw.log" 2>&1 &
t0=$(date +%s.%N)
until curl -sf -o /dev/null -H 'Authorization: Bearer tg-bench-admin' "http://127.0.0.1:18301/admin/requests?limit=1"; do sleep 0.2; done
t1=$(date +%s.%N)
echo "first answer (index built): $(echo "$t1 - $t0" | bc) s; index $(du -sh "$dir/.index" | cut -f1), records $(du -sh "$day" | cut -f1)"
q() { # name, query
  local times=()
  for _ in $(seq "$rounds"); do
    times+=("$(curl -s -o "$work/answer" -w '%{time_total}' -H 'Authorization: Bearer tg-bench-admin' "http://127.0.0.1:18301/admin/requests?$2")")
  done
  printf '| %s | %s | %s |\n' "$1" "$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((rounds + 1) / 2))p")" "$(du -b "$work/answer" | cut -f1)"
}
echo "| query | seconds (median of $rounds) | answer bytes |"
echo "|---|---|---|"
q "the newest 100, no filter" "limit=100"
next=$(curl -s -H 'Authorization: Bearer tg-bench-admin' "http://127.0.0.1:18301/admin/requests?limit=100" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next"])')
q "the next page (before=)" "limit=100&before=$next"
q "status=500" "status=500&limit=100"
q "rule=pii.email" "rule=pii.email&limit=100"
q "team=team-42" "team=team-42&limit=100"
q "min_latency_ms=598&min_cost_usd=0.0149" "min_latency_ms=598&min_cost_usd=0.0149&limit=100"
q "no match (team=nobody)" "team=nobody&limit=100"
q "one request by id" "id=tg-41eb0-0-270000"
q "one request by id and ts" "id=tg-41eb0-0-270000&ts=$(grep -m1 -o '"id":"tg-41eb0-0-270000","ts":[0-9]*' "$day" | cut -d: -f3)"
q "CSV export of a team's day (86,400 rows)" "team=team-42&format=csv"
q "CSV export of the 500s" "status=500&format=csv"
