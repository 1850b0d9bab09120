# Shared by the benchmark scripts (sourced, not run): set-up, the gateway
# configuration they all start from, and the numbers they all compute.

# Builds the binaries, makes $work, and cleans up (background jobs, an nginx
# started with $work/nginx.pid, $work) on exit. Run from the repository root.
bench_setup() {
  cargo build --release --bins -q
  work=$(mktemp -d)
  trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true; rm -rf "$work"' EXIT
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

# The median of numbers, one per line.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# "req/s p50_us p99_us" from wrk --latency output.
wrk_summary() {
  awk 'function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return (v+0)*1000; return (v+0)*1e6 }
    / 50%/ { p50=us($2) } / 99%/ { p99=us($2) } /Requests\/sec/ { rps=$2 }
    END { printf "%d %d %d\n", rps, p50, p99 }'
}
