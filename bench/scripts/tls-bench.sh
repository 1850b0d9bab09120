#!/usr/bin/env bash
# Requests/s and latency through one Tollgate worker to the same mock over
# plain TCP and over TLS (a fresh CA made with openssl), side by side; and
# through a second gateway that terminates TLS from the client (wrk over
# https) and forwards over plain TCP.
# Usage: tls-bench.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
ROUNDS=${2:-3}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
. bench/scripts/common.sh
bench_setup
(
  cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-ca \
    -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost\n' >ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out server.pem 2>/dev/null
)
taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9102 --threads 1 >"$work/plain.log" 2>&1 &
taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9103 --threads 1 \
  --tls-cert "$work/server.pem" --tls-key "$work/server.key" >"$work/tls.log" 2>&1 &
{ gateway_server 127.0.0.1:9202; mock_route 9102; cat <<TOML
[[providers]]
name = "tls"
kind = "openai-compatible"
base_url = "https://localhost:9103/v1"
ca_file = "$work/ca.pem"
[[models]]
name = "via-tls"
targets = [{ provider = "tls" }]
TOML
bench_team_key; } >"$work/gw.toml"
{ gateway_server 127.0.0.1:9203; mock_route 9102
  printf '[server.tls]\ncert_file = "%s/server.pem"\nkey_file = "%s/server.key"\n' "$work" "$work"
  bench_team_key; } >"$work/gw-tls.toml"
taskset -c 0 ./target/release/tollgate --config "$work/gw.toml" >"$work/gw.log" 2>&1 &
taskset -c 0 ./target/release/tollgate --config "$work/gw-tls.toml" >"$work/gw-tls.log" 2>&1 &
sleep 1
grep -q "tollgate listening" "$work/gw.log" || { cat "$work/gw.log"; exit 1; }
grep -q "tollgate listening on https" "$work/gw-tls.log" || { cat "$work/gw-tls.log"; exit 1; }
run() {
  taskset -c 1 wrk -t1 -c"$2" -d"${SECS}s" --latency -s "bench/scripts/$1.lua" "${3:-http://127.0.0.1:9202}/v1/chat/completions" |
    wrk_summary
}
for conns in 32 1; do
  plain=""; tls=""; tls_client=""
  for r in $(seq "$ROUNDS"); do
    plain+="$(run chat "$conns")"$'\n'
    tls+="$(run tls "$conns")"$'\n'
    tls_client+="$(run chat "$conns" https://localhost:9203)"$'\n'
  done
  echo "wrk -t1 -c$conns -d${SECS}s, $ROUNDS rounds, medians"
  printf "%-20s %8s %8s %8s\n" path req/s p50_us p99_us
  for name in plain tls tls_client; do
    median_row 20 "$name" "${!name}"
  done
done
