#!/usr/bin/env bash
# Throughput at the prompt sizes real traffic carries (bench/prompts:
# 100 B, 8 KB and 100 KB of mixed prose, code and CJK): nginx proxy_pass,
# the routing-only lane (keys and routing) and the governed lane (every
# policy on: access, a priced model, budgets with per-request ceilings,
# request and token limits, guardrails on requests and answers, records,
# the ledger), side by side in one run. Each proxy is pinned to CPU 0; the
# mock and wrk share CPU 1. Rounds alternate; the table gives medians.
# KIND=conversation sends bench/prompts/conversation-SIZE.json instead (a
# history of turns sent again with each request, then a new message).
# TENSORZERO=<its gateway binary> adds TensorZero (pinned to CPU 0 like the
# others, observability off, the mock as an OpenAI provider) to the same
# rounds. It builds from its repository: `git checkout 2025.5.7 && cargo
# build --release -p gateway` (about 15 minutes on two cores).
# Usage: [KIND=mixed|conversation] [TENSORZERO=path] prompt-size-bench.sh [seconds] [rounds] [sizes...]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
ROUNDS=${2:-3}
shift 2 2>/dev/null || true
SIZES=${*:-100 8192 102400}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx)"; exit 1; }
. bench/scripts/common.sh
bench_setup

ports_free 9100 9200 9201 9300 9400
taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9100 --threads 1 >"$work/mock.log" 2>&1 &
start_nginx 9100 9300 0
routing_config_large 9200 9100 >"$work/routing.toml"
governed_config_large 9201 9100 >"$work/governed.toml"
start_gateways routing governed
targets="nginx:9300 routing:9200 governed:9201"
if [ -n "${TENSORZERO:-}" ]; then
  cat >"$work/tensorzero.toml" <<TOML
[gateway]
bind_address = "127.0.0.1:9400"
observability.enabled = false

[models."gpt-4o-mini"]
routing = ["mock"]

[models."gpt-4o-mini".providers.mock]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "http://127.0.0.1:9100/v1/"
api_key_location = "none"
TOML
  # Pinned to one core, tokio runs one worker thread.
  taskset -c 0 "$TENSORZERO" --config-file "$work/tensorzero.toml" >"$work/tensorzero.log" 2>&1 &
  for _ in $(seq 50); do ss -ltnH "sport = :9400" | grep -q . && break; sleep 0.1; done
  targets="$targets tensorzero:9400:bench/scripts/body-tensorzero.lua"
fi
for size in $SIZES; do
  export BODY=bench/prompts/${KIND:-mixed}-$size.json
  # Every lane must answer 200: a refusal is cheap and would flatter it.
  for port in 9300 9200 9201; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer tg-bench-key' -H 'Content-Type: application/json' \
      --data-binary @"$BODY" "http://127.0.0.1:$port/v1/chat/completions")
    [ "$code" = 200 ] || { echo "port $port answered $code to $BODY"; exit 1; }
  done
  if [ -n "${TENSORZERO:-}" ]; then
    code=$(sed 's/"model": *"gpt-4o-mini"/"model": "tensorzero::model_name::gpt-4o-mini"/' "$BODY" \
      | curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @- \
      http://127.0.0.1:9400/openai/v1/chat/completions)
    [ "$code" = 200 ] || { echo "tensorzero answered $code to $BODY"; cat "$work/tensorzero.log"; exit 1; }
  fi
  # shellcheck disable=SC2086
  wrk_rounds bench/scripts/body.lua "$size-byte prompts (${KIND:-mixed}: prose, code, CJK)" $targets
done
