#!/usr/bin/env bash
# An exact cache hit against nginx answering the same bytes as a static
# response (`return 200`), both on CPU 0, the load on CPU 1 (issue 19's
# speed target): p50/p99 at one connection and requests/s at 32,
# alternated, medians. The gateway lane: keys, routing and `[cache]`
# (every request after the first a hit); the body: the 100 B prompt with
# "temperature": 0.
# BEFORE=path/to/tollgate adds the same lane served by another build
# ("before"), alternated with the others.
# Usage: [BEFORE=...] cache-nginx.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
ROUNDS=${2:-3}
. bench/scripts/common.sh
bench_setup

taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9100 --threads 1 >"$work/mock.log" 2>&1 &
{ gateway_server 127.0.0.1:9210; mock_route 9100; bench_team_key; printf '[cache]\nttl_s = 3600\n'; } >"$work/hit.toml"
start_gateways hit
lanes="nginx:9310 hit:9210"
if [ -n "${BEFORE:-}" ]; then
  sed 's/9210/9211/' "$work/hit.toml" >"$work/before.toml"
  taskset -c 0 "$BEFORE" --config "$work/before.toml" >"$work/before.log" 2>&1 &
  for _ in $(seq 50); do grep -q "tollgate listening" "$work/before.log" && break; sleep 0.1; done
  lanes="$lanes before:9211"
fi
body="$work/zero.json"
python3 -c "import json,sys; d=json.load(open(sys.argv[1], encoding='utf-8')); d['temperature']=0; json.dump(d, open(sys.argv[2], 'w', encoding='utf-8'), ensure_ascii=False)" bench/prompts/mixed-100.json "$body"
# The answer, as the cache holds it; the first request stores it.
curl -sS -H 'authorization: Bearer tg-bench-key' -H 'content-type: application/json' --data-binary "@$body" http://127.0.0.1:9210/v1/chat/completions >"$work/answer.json"
grep -q "'" "$work/answer.json" && { echo "the answer holds a quote nginx's return cannot"; exit 1; }
cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
worker_cpu_affinity 1;
daemon on;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_buffer_size 1m;
  client_body_temp_path $work/cb; proxy_temp_path $work/pt; fastcgi_temp_path $work/ft; uwsgi_temp_path $work/ut; scgi_temp_path $work/st;
  server {
    listen 127.0.0.1:9310;
    location / { default_type application/json; return 200 '$(cat "$work/answer.json")'; }
  }
}
NGINX
nginx -p "$work" -c "$work/nginx.conf"
sleep 0.5
pcts() { python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['latency_us']; print(d['p50'], d['p99'])" "$1"; }
rps() { python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['requests_per_second']))" "$1"; }
load() { taskset -c 1 ./target/release/tollgate-load --key tg-bench-key -d "$SECS" --warmup 1 -q --body-file "$body" "$@" >/dev/null; }
declare -A lat=() tput=()
for round in $(seq "$ROUNDS"); do
  for lane in $lanes; do
    name=${lane%%:*}; port=${lane##*:}
    load --url "http://127.0.0.1:$port/v1/chat/completions" -c 1 --json "$work/$name-1.json"
    lat[$name]+="$(pcts "$work/$name-1.json")"$'\n'
    load --url "http://127.0.0.1:$port/v1/chat/completions" -c 32 --json "$work/$name-32.json"
    tput[$name]+="$(rps "$work/$name-32.json")"$'\n'
  done
done
for lane in $lanes; do
  name=${lane%%:*}
  echo "$name: one connection p50 $(echo -n "${lat[$name]}" | cut -d' ' -f1 | median) us, p99 $(echo -n "${lat[$name]}" | cut -d' ' -f2 | median) us; 32 connections $(echo -n "${tput[$name]}" | median) req/s"
done
