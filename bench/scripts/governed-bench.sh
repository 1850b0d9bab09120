#!/usr/bin/env bash
# The plain lane against the governed lane on one core: the same wrk load
# (small chat requests, bench/scripts/chat.lua) straight to the mock,
# through a gateway with authentication only, and through one with every
# policy on: access, a priced model, team and key budgets (day, month,
# per-request ceilings), rate limits (requests and tokens per minute, so
# every prompt is counted and reserved), guardrails on requests and
# answers, a record per request and the usage ledger. Each gateway has one
# worker pinned to CPU 0; the mock and wrk share CPU 1. Rounds alternate;
# the table reports medians. Usage: governed-bench.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
ROUNDS=${2:-3}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
. bench/scripts/common.sh
bench_setup

taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9100 --threads 1 >"$work/mock.log" 2>&1 &
{ gateway_server 127.0.0.1:9200; mock_route 9100; bench_team_key; } >"$work/plain.toml"
governed_config 9201 9100 >"$work/governed.toml"
start_gateways plain governed
wrk_rounds bench/scripts/chat.lua "small chat requests" mock:9100 plain:9200 governed:9201
echo "records written: $(cat "$work"/records-9201/* 2>/dev/null | wc -l)"
