# Shared by the benchmark scripts (sourced, not run): set-up, the gateway
# configuration they all start from, and the numbers they all compute.

# Builds the binaries, makes $work, and cleans up (background jobs, an nginx
# started with $work/nginx.pid, $work) on exit. Run from the repository root.
bench_setup() {
  cargo build --release --bins -q
  work=$(mktemp -d)
  trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true; cp -r "$work"/*.cg* /tmp/cg/ 2>/dev/null; rm -rf "$work"' EXIT
}

# The [server] section of a one-worker gateway listening on $1, admin off.
gateway_server() {
  printf '[server]\nlisten = "%s"\nadmin_listen = "off"\nworkers = 1\n' "$1"
}

# The provider "mock" at 127.0.0.1:$1 and the model gpt-4o-mini routed to it:
# the route the load in every script goes through.
mock_route() {
  printf '[[providers]]\nname = "mock"\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:%s/v1"\n[[models]]\nname = "gpt-4o-mini"\ntargets = [{ provider = "mock" }]\n' "$1"
}

# The team and key every script's load uses: Authorization: Bearer tg-bench-key.
bench_team_key() {
  printf '[[teams]]\nname = "bench"\nmodels = ["*"]\n[[keys]]\nname = "bench"\nteam = "bench"\nsha256 = "%s"\n' \
    "$(printf '%s' tg-bench-key | sha256sum | cut -d' ' -f1)"
}

# Starts nginx as the reference proxy, pinned to CPU $3: 127.0.0.1:$2 to the
# mock at 127.0.0.1:$1 over kept-alive HTTP/1.1, unbuffered as Tollgate is.
start_nginx() {
  cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
worker_cpu_affinity 1$(printf '%*s' "$3" '' | tr ' ' 0);
daemon on;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 8192; }
http {
  access_log off;
  # Bodies up to 1 MB are kept in memory (as the gateway keeps them), not
  # written to temporary files.
  client_body_buffer_size 1m; client_max_body_size 16m;
  client_body_temp_path $work/cb; proxy_temp_path $work/pt; fastcgi_temp_path $work/ft; uwsgi_temp_path $work/ut; scgi_temp_path $work/st;
  upstream mock { server 127.0.0.1:$1; keepalive 128; }
  server {
    listen 127.0.0.1:$2;
    location / { proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
NGINX
  nginx -p "$work" -c "$work/nginx.conf"
}

# One table row: the name $2 padded to $1, then the medians of the three
# columns of the "req/s p50 p99" lines in $3.
median_row() {
  local f fields
  printf "%-${1}s" "$2"
  fields=$(echo -n "$3" | head -1 | wc -w)
  for f in $(seq "$fields"); do printf " %8s" "$(echo -n "$3" | cut -d' ' -f"$f" | median)"; done
  printf "\n"
}

# CPU 0's busy and idle time so far, in ticks of /proc/stat (1/100 s):
# "busy idle" (busy: user, nice, system, irq, softirq, steal; idle: idle
# and iowait).
cpu0_ticks() { awk '/^cpu0 / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat; }

# "busy% busy_us_per_request" of CPU 0 between two `cpu0_ticks` readings,
# for N requests: what the proxy on CPU 0 cost a request, whether CPU 0 or
# the client and mock on CPU 1 set the rate (a lane that leaves CPU 0 idle
# is held back by CPU 1, and its req/s is CPU 1's figure).
cpu0_cost() { # before after requests
  echo "$1 $2 $3" | awk '{b = $3 - $1; i = $4 - $2; printf "%d %.1f\n", (b + i > 0 ? 100 * b / (b + i) : 0), ($5 > 0 ? b * 10000 / $5 : 0)}'
}

# The median of numbers, one per line.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# "req/s p50_us p99_us" from wrk --latency output.
wrk_summary() {
  awk 'function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return (v+0)*1000; return (v+0)*1e6 }
    / 50%/ { p50=us($2) } / 99%/ { p99=us($2) } /Requests\/sec/ { rps=$2 }
    END { printf "%d %d %d\n", rps, p50, p99 }'
}

# Exits with a message if one of the ports is taken (a gateway or mock left
# by an earlier run would otherwise answer in place of the one measured, or
# leave the new one's log empty and the script ending without a word).
ports_free() {
  local port
  for port in "$@"; do
    if ss -ltnH "sport = :$port" | grep -q .; then
      echo "port $port is in use: $(ss -ltnpH "sport = :$port" | grep -o 'users:.*')"; exit 1
    fi
  done
}

# Starts one-worker gateways on CPU 0 from $work/NAME.toml for each NAME
# given, and waits until each listens.
start_gateways() {
  for name in "$@"; do
    taskset -c 0 ./target/release/tollgate --config "$work/$name.toml" >"$work/$name.log" 2>&1 &
  done
  sleep 1
  for name in "$@"; do grep -q "tollgate listening" "$work/$name.log" || { cat "$work/$name.log"; exit 1; }; done
}

# The mock on CPU 1 (127.0.0.1:9100) and the two lanes the prompt-size
# scripts compare on CPU 0: the routing-only gateway on 9200 and the
# governed one on 9201, both taking bodies up to 16 MB.
start_mock_and_lanes() {
  ports_free 9100 9200 9201
  taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9100 --threads 1 >"$work/mock.log" 2>&1 &
  routing_config_large 9200 9100 >"$work/routing.toml"
  governed_config_large 9201 9100 >"$work/governed.toml"
  start_gateways routing governed
}

# Alternates wrk (-t1 -c32, on CPU 1) over NAME:PORT targets for $ROUNDS
# rounds of $SECS seconds with the Lua script $1, then prints the medians.
# A target NAME:PORT:SCRIPT is loaded with its own Lua script instead (a
# peer with another path or model name).
# Usage: wrk_rounds SCRIPT "DESCRIPTION" NAME:PORT[:SCRIPT]...
# Waits (5 s at most) until CPU 0, where the proxies run, is idle: a proxy
# that queued more requests than it served (TensorZero at 100 KB answers
# in 18 ms at the median) may go on serving them after wrk stops, and the
# next round must not share CPU 0 with that.
cpu0_quiet() {
  local b0 i0 b1 i1 busy idle
  for _ in $(seq 50); do
    read -r b0 i0 < <(cpu0_ticks)
    sleep 0.1
    read -r b1 i1 < <(cpu0_ticks)
    busy=$((b1 - b0)) idle=$((i1 - i0))
    [ $((busy * 10)) -le $((busy + idle)) ] && return 0
  done
  echo "CPU 0 still busy after 5 s" >&2
}

wrk_rounds() {
  local script=$1 what=$2 t out name rest before row
  shift 2
  declare -A rows=()
  local round order
  for round in $(seq "$ROUNDS"); do
    # Every other round in reverse order (A B, B A, ...), so that no
    # target always runs right after the same other one.
    order=("$@")
    if [ $((round % 2)) = 0 ]; then
      order=()
      for t in "$@"; do order=("$t" "${order[@]}"); done
    fi
    for t in "${order[@]}"; do
      name=${t%%:*} rest=${t#*:}
      cpu0_quiet
      before=$(cpu0_ticks)
      out=$(taskset -c 1 wrk -t1 -c32 -d"${SECS}s" --latency -s "$( [ "$rest" != "${rest#*:}" ] && echo "${rest#*:}" || echo "$script")" \
        "http://127.0.0.1:${rest%%:*}/v1/chat/completions")
      row="$(echo "$out" | wrk_summary) $(cpu0_cost "$before" "$(cpu0_ticks)" "$(echo "$out" | awk '/requests in/ {print $1}')")"
      rows[$name]+="$row"$'\n'
      # ROUNDS_VERBOSE=1: each round's figures on stderr, with the time, to
      # lay beside vmstat or perf when a round is slow.
      [ -z "${ROUNDS_VERBOSE:-}" ] || echo "$(date +%T) round $round $name $row" >&2
    done
  done
  echo "wrk -t1 -c32 -d${SECS}s, $what, $ROUNDS rounds, medians"
  # cpu0%: CPU 0 busy (the proxy, the kernel's work for its sockets, its
  # other threads); cpu0_us: CPU 0's busy time a request.
  printf "%-10s %8s %8s %8s %8s %8s\n" target req/s p50_us p99_us cpu0% cpu0_us
  for t in "$@"; do median_row 10 "${t%%:*}" "${rows[${t%%:*}]}"; done
}

# Table rows: for each NAME:PORT target, the medians of the caller's
# associative arrays p50 and p99 (one figure per line per target name) and
# what the target adds over "direct". Usage: added_rows NAME:PORT...
added_rows() {
  local d50 d99 m50 m99 tp name
  d50=$(echo -n "${p50[direct]}" | median); d99=$(echo -n "${p99[direct]}" | median)
  for tp in "$@"; do
    name=${tp%%:*}
    m50=$(echo -n "${p50[$name]}" | median); m99=$(echo -n "${p99[$name]}" | median)
    printf "%-10s %8s %8s %12s %12s\n" "$name" "$m50" "$m99" "$((m50 - d50))" "$((m99 - d99))"
  done
}

# The governed lane's configuration on 127.0.0.1:$1, routed to the mock on
# port $2: every policy on. Access, a priced model, team and key budgets
# (day, month, per-request ceilings), requests- and tokens-per-minute
# limits (so every prompt is counted and reserved), guardrails on requests
# and answers, a record per request (in $work/records-$1) and the usage
# ledger.
# The prompt-size lanes on port $1 in front of the mock on $2: bodies up to
# 16 MB. `routing_config_large` has keys and routing only; the governed
# one every policy (governed_config).
routing_config_large() {
  gateway_server "127.0.0.1:$1"; printf 'body_bytes_max = 16777216\n'; mock_route "$2"; bench_team_key
}
governed_config_large() {
  governed_config "$1" "$2" | sed 's/^workers = 1$/workers = 1\nbody_bytes_max = 16777216/'
}

governed_config() {
  gateway_server "127.0.0.1:$1"
  printf 'ledger_file = "%s/ledger-%s"\n' "$work" "$1"
  mock_route "$2"
  printf 'price = { input_per_mtok = 0.15, output_per_mtok = 0.60 }\n'
  printf '[logging]\ndir = "%s/records-%s"\n' "$work" "$1"
  printf '[[guardrail_profiles]]\nname = "all"\npii = "redact"\nsecrets = "block"\ninjection = "block"\nresponses = true\n'
  # CLASSIFIER=builtin: the profile also scores requests with the built-in
  # injection model (what a team that lists it pays).
  if [ "${CLASSIFIER:-}" = builtin ]; then
    printf '[[guardrail_profiles.classifiers]]\nname = "model"\nkind = "builtin"\n'
  fi
  bench_team_key | sed 's/^models = \["\*"\]$/models = ["*"]\nguardrails = "all"\nbudget = { daily_usd = 100000.0, monthly_usd = 1000000.0, request_usd = 1.0, request_output_tokens = 100000 }\nrate_limit = { requests_per_minute = 100000000, tokens_per_minute = 100000000000 }/'
  printf 'budget = { daily_usd = 100000.0 }\nrate_limit = { requests_per_minute = 100000000, tokens_per_minute = 100000000000 }\n'
}
