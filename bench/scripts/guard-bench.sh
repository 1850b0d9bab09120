#!/usr/bin/env bash
# Guardrails on one core: the same wrk load (a ~2 KB prompt, a JSON answer
# of 24 words) straight to the mock, through a gateway without guardrails,
# and through one whose team profile checks requests and answers with every
# detector on. Each gateway has one worker pinned to CPU 0; the mock and wrk
# share CPU 1. Rounds alternate; the table reports medians.
# Usage: guard-bench.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
ROUNDS=${2:-3}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
. bench/scripts/common.sh
bench_setup

taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9100 --threads 1 >"$work/mock.log" 2>&1 &
{ gateway_server 127.0.0.1:9200; mock_route 9100; bench_team_key; } >"$work/plain.toml"
{ gateway_server 127.0.0.1:9201; mock_route 9100
  printf '[[guardrail_profiles]]\nname = "all"\npii = "redact"\nsecrets = "block"\ninjection = "block"\nresponses = true\n'
  bench_team_key | sed 's/^models = \["\*"\]$/models = ["*"]\nguardrails = "all"/'; } >"$work/guard.toml"
start_gateways plain guard
wrk_rounds bench/scripts/chat2k.lua "2 KB prompt" mock:9100 plain:9200 guarded:9201
