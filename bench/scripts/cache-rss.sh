#!/usr/bin/env bash
# The answer cache's memory under many distinct prompts: one worker with
# `[cache] bytes_max` = $2 bytes, N requests ($1) each with a prompt of its
# own (so each is a miss and a new entry), and the gateway's RSS before,
# along the way and after. The store must stay within its bound: RSS
# levels off once it is full.
# Usage: cache-rss.sh [requests] [bytes_max]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-150000}
BYTES=${2:-16777216}
. bench/scripts/common.sh
bench_setup
taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9100 --threads 1 >"$work/mock.log" 2>&1 &
{ gateway_server 127.0.0.1:9220; mock_route 9100; bench_team_key; printf '[cache]\nttl_s = 3600\nbytes_max = %s\n' "$BYTES"; } >"$work/rss.toml"
start_gateways rss
pid=$(pgrep -f "tollgate --config $work/rss.toml" | head -1)
taskset -c 1 python3 - "$N" "$pid" <<'PY'
import http.client, json, sys
n, pid = int(sys.argv[1]), sys.argv[2]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
conn = http.client.HTTPConnection("127.0.0.1", 9220)
headers = {"authorization": "Bearer tg-bench-key", "content-type": "application/json"}
print(f"before: {rss()} MB")
for i in range(n):
    body = json.dumps({"model": "gpt-4o-mini", "temperature": 0,
                       "messages": [{"role": "user", "content": f"Prompt number {i}: say something about it."}]})
    conn.request("POST", "/v1/chat/completions", body, headers)
    r = conn.getresponse()
    r.read()
    assert r.status == 200 and r.getheader("x-tollgate-cache") == "miss", (r.status, r.getheader("x-tollgate-cache"))
    if (i + 1) % (n // 6) == 0:
        print(f"after {i + 1} distinct prompts: {rss()} MB")
PY
