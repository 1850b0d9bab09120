#!/usr/bin/env bash
# Tollgate against the gateways a user would otherwise pick, on one core
# each, same load: small non-streaming chat requests from wrk (-t1 -c32,
# bench/scripts/chat.lua) to the bundled mock. Each proxy is pinned to CPU
# 0; the mock and wrk share CPU 1. Rounds alternate; medians.
#
# Peers are installed by hand, outside the repository (they are not test
# dependencies):
#   python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install 'litellm[proxy]'
#   mkdir -p /tmp/portkey && cd /tmp/portkey && npm install @portkey-ai/gateway
# and found through LITELLM (the litellm executable) and PORTKEY_DIR; a
# peer that is not installed is skipped. nginx proxy_pass is the reference
# for a proxy that understands nothing of the content.
# Usage: peers.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
ROUNDS=${2:-3}
LITELLM=${LITELLM:-/tmp/litellm-venv/bin/litellm}
PORTKEY_DIR=${PORTKEY_DIR:-/tmp/portkey}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
. bench/scripts/common.sh
bench_setup
taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9109 --threads 1 >"$work/mock.log" 2>&1 &
{ gateway_server 127.0.0.1:9209; mock_route 9109; bench_team_key; } >"$work/plain.toml"
governed_config 9210 9109 >"$work/governed.toml"
start_gateways plain governed
targets="tollgate:9209 governed:9210"
if command -v nginx >/dev/null; then
  start_nginx 9109 9309 0
  targets="$targets nginx:9309"
fi
if [ -x "$LITELLM" ]; then
  cat >"$work/litellm.yaml" <<YAML
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:9109/v1
      api_key: none
YAML
  # Authentication off: it would not take the bench key, and a lighter
  # LiteLLM only flatters it.
  LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true \
    taskset -c 0 "$LITELLM" --config "$work/litellm.yaml" --port 4009 --num_workers 1 >"$work/litellm.log" 2>&1 &
  targets="$targets litellm:4009"
fi
if [ -f "$PORTKEY_DIR/node_modules/@portkey-ai/gateway/build/start-server.js" ]; then
  taskset -c 0 node "$PORTKEY_DIR/node_modules/@portkey-ai/gateway/build/start-server.js" --port=8709 --headless \
    >"$work/portkey.log" 2>&1 &
  targets="$targets portkey:8709"
fi
# The Python and Node gateways take seconds to start.
for tp in $targets; do
  for _ in $(seq 60); do
    curl -s -o /dev/null -m 2 "http://127.0.0.1:${tp#*:}/" && break
    sleep 1
  done
done
declare -A rows=()
for _ in $(seq "$ROUNDS"); do
  for tp in $targets; do
    name=${tp%%:*}
    # Portkey takes the upstream from headers.
    headers=()
    [ "$name" = portkey ] && headers=(-H "x-portkey-provider: openai" -H "x-portkey-custom-host: http://127.0.0.1:9109/v1")
    out=$(taskset -c 1 wrk -t1 -c32 -d"${SECS}s" --latency "${headers[@]}" -s bench/scripts/chat.lua \
      "http://127.0.0.1:${tp#*:}/v1/chat/completions")
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    rows[$name]+="$(echo "$out" | wrk_summary)"$'\n'
    [ -n "$non2xx" ] && echo "$name: $non2xx non-2xx answers in a round" >&2
  done
done
echo "wrk -t1 -c32 -d${SECS}s, small chat requests, one core per proxy, $ROUNDS rounds, medians"
printf "%-10s %8s %8s %8s\n" target req/s p50_us p99_us
for tp in $targets; do median_row 10 "${tp%%:*}" "${rows[${tp%%:*}]}"; done
