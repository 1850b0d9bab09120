#!/usr/bin/env bash
# A/B: the governed lane of another build (BEFORE=path/to/tollgate, for
# example a worktree of an earlier commit built with CARGO_TARGET_DIR) and
# of this one, side by side on CPU 0, wrk rounds alternating on CPU 1.
# AFTER_EXTRA: TOML appended to this build's configuration only (for
# example a [telemetry] section, with BEFORE set to this same build).
# KIND=conversation|agent|tools sends bench/prompts/KIND-SIZE.json instead
# of the mixed prompts.
# Usage: BEFORE=... [KIND=...] ab-governed.sh [seconds] [rounds] [sizes...]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
ROUNDS=${2:-3}
shift 2 2>/dev/null || true
SIZES=${*:-100 8192 102400}
: "${BEFORE:?set BEFORE to the other build (a tollgate binary)}"
. bench/scripts/common.sh
bench_setup
taskset -c 1 ./target/release/tollgate-mock --listen 127.0.0.1:9100 --threads 1 >"$work/mock.log" 2>&1 &
governed_config_large 9201 9100 >"$work/after.toml"
printf '%s\n' "${AFTER_EXTRA:-}" >>"$work/after.toml"
governed_config_large 9202 9100 >"$work/before.toml"
taskset -c 0 ./target/release/tollgate --config "$work/after.toml" >"$work/after.log" 2>&1 &
taskset -c 0 "$BEFORE" --config "$work/before.toml" >"$work/before.log" 2>&1 &
sleep 1.5
for size in $SIZES; do
  export BODY=bench/prompts/${KIND:-mixed}-$size.json
  wrk_rounds bench/scripts/body.lua "$size-byte ${KIND:-mixed} prompts, governed" before:9202 after:9201
done
