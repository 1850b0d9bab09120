#!/usr/bin/env bash
# What a kill -9 loses (OPERATIONS.md, "What a crash loses"), measured.
#
# A gateway with two workers, records and a ledger, serves an open-loop
# load of R requests/s (default 1,900); after 3 s it is killed with
# SIGKILL. The answers the client received (200s) are compared with the
# records on disk and with the spend in the ledger.
# Usage: kill9.sh [rate] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
RATE=${1:-1900}
ROUNDS=${2:-3}
. bench/scripts/common.sh
bench_setup

./target/release/tollgate-mock --listen 127.0.0.1:9120 --threads 1 >"$work/mock.log" 2>&1 &
sleep 0.3
for round in $(seq "$ROUNDS"); do
  rm -rf "$work/rec" "$work/ledger" && mkdir -p "$work/rec"
  {
    printf '[server]\nlisten = "127.0.0.1:9221"\nadmin_listen = "off"\nworkers = 2\nledger_file = "%s"\n' "$work/ledger"
    printf '[logging]\ndir = "%s"\n' "$work/rec"
    mock_route 9120
    printf 'price = { input_per_mtok = 1000.0, output_per_mtok = 1000.0 }\n'
    bench_team_key
  } >"$work/gw.toml"
  ./target/release/tollgate --config "$work/gw.toml" >"$work/gw.log" 2>&1 &
  gw=$!
  for _ in $(seq 50); do grep -q "tollgate listening" "$work/gw.log" && break; sleep 0.1; done
  ./target/release/tollgate-load --url http://127.0.0.1:9221/v1/chat/completions --key tg-bench-key \
    -R "$RATE" -c 32 -d 5 --warmup 0 --timeout 2 -q --json "$work/load.json" >/dev/null 2>&1 &
  load=$!
  sleep 3
  kill -KILL "$gw"
  wait "$load" || true
  python3 - "$work/rec" "$work/ledger" "$work/load.json" "$RATE" <<'PY'
import json, pathlib, sys
recs = [json.loads(l) for f in pathlib.Path(sys.argv[1]).glob("*") for l in open(f) if l.strip()]
ok = [r for r in recs if r.get("status") == 200]
ledger = sum(json.loads(l)["u"] for l in open(sys.argv[2]) if l.strip() and '"o":"team"' in l)
load = json.load(open(sys.argv[3]))
got = load["statuses"].get("200", 0)
cost = max(r["cost_micro_usd"] for r in ok)
rate = float(sys.argv[4])
lost_recs = got - len(ok)
lost_spend = got * cost - ledger
print(f"{got} answers received; records lost {lost_recs} ({lost_recs * 100 / got:.1f}%, "
      f"{lost_recs * 1000 / rate:.0f} ms); spend lost {lost_spend} µ$ ({lost_spend / cost * 1000 / rate:.0f} ms of spend)")
PY
done
