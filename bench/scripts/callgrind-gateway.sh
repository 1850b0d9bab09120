#!/usr/bin/env bash
# Instructions per request through the real gateway binary (one worker,
# the governed configuration of `governed_config_large`), counted by
# valgrind's callgrind while `tollgate-load` sends N requests on one
# keep-alive connection: a cache hit (with `[cache]`, temperature 0, the
# answer stored by a first request) and a miss (the same lane, no cache)
# to the bundled mock. Only what runs under the connection's task is
# counted (`conn::serve` and below: parsing, the pipeline, the futures'
# moves, the answer's write), not the runtime's loop or the other
# threads. Wall-clock rates on this machine wander; these counts repeat.
# LANE=routing counts the lane of keys and routing only (issue 19's hit
# against nginx) instead of the governed one.
# The body keeps its text as written (UTF-8), as the prompt-size
# benchmark sends it; ESCAPES=ascii writes every non-ASCII character as a
# \u escape instead, as Python's json.dumps does by default.
# STREAM=1 asks for a streamed answer (the mock's 20-odd events).
# CLASSIFIER=builtin adds the built-in injection model to the governed profile.
# Usage: [LANE=routing] [ESCAPES=ascii] [STREAM=1] [CLASSIFIER=builtin] callgrind-gateway.sh [N] [BODY_FILE]
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 1; }
N=${1:-2000}
BODY=${2:-bench/prompts/mixed-100.json}
source bench/scripts/common.sh
# A gateway left under valgrind by an interrupted run keeps its port and
# drains slowly on SIGTERM: say so rather than count against it.
for port in 9131 9132 9133; do
  if ss -ltnH "sport = :$port" | grep -q .; then
    echo "port $port is in use (a valgrind left from an earlier run? pkill -9 -f valgrind)"; exit 1
  fi
done
bench_setup
./target/release/tollgate-mock --listen 127.0.0.1:9131 --threads 1 >"$work/mock.log" 2>&1 &
python3 -c "import json,sys; d=json.load(open(sys.argv[1], encoding='utf-8')); d['temperature']=0; d.pop('stream', None); d.update({'stream': True} if sys.argv[4] == '1' else {}); json.dump(d, open(sys.argv[2], 'w', encoding='utf-8'), ensure_ascii=(sys.argv[3] == 'ascii'))" "$BODY" "$work/body.json" "${ESCAPES:-utf8}" "${STREAM:-0}"
count() { # name port config-suffix
  local name=$1 port=$2
  if [ "${LANE:-governed}" = routing ]; then
    { routing_config_large "$port" 9131; printf '%b' "$3"; } >"$work/$name.toml"
  else
    { governed_config_large "$port" 9131; printf '%b' "$3"; } >"$work/$name.toml"
  fi
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.cg" --toggle-collect='*conn*serve*' --compress-strings=no --compress-pos=no \
    ./target/release/tollgate --config "$work/$name.toml" >"$work/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do grep -q "tollgate listening" "$work/$name.log" && break; sleep 0.1; done
  # One request first, so that a hit lane has its entry and both lanes
  # have their upstream connection; then the counted ones.
  if ! ./target/release/tollgate-load --url "http://127.0.0.1:$port/v1/chat/completions" --key tg-bench-key \
    -c 1 -n 1 --warmup 0 --body-file "$work/body.json" -q >/dev/null; then
    echo "$name: the first request failed; the gateway said:"; tail -5 "$work/$name.log"
    kill -9 "$pid"; exit 1
  fi
  callgrind_control -d "$pid" >/dev/null 2>&1
  ./target/release/tollgate-load --url "http://127.0.0.1:$port/v1/chat/completions" --key tg-bench-key \
    -c 1 -n "$N" --warmup 0 -d 600 --body-file "$work/body.json" -q >"$work/$name.load"
  # The counted requests' profile is the second dump.
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  local total
  total=$(awk '/^totals:/ {print $2}' "$work/$name.cg.2")
  echo "$name: $(( total / N )) instructions per request ($N requests)"
  # CG_KEEP=DIR keeps the profiles, for callgrind_annotate.
  if [ -n "${CG_KEEP:-}" ]; then mkdir -p "$CG_KEEP"; cp "$work/$name.cg"* "$CG_KEEP/"; fi
}
count hit 9132 '[cache]\nttl_s = 3600\n'
count miss 9133 ''
