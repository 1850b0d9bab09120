#!/usr/bin/env bash
# The guard's request check (criterion's guard_request group: 2 KB bodies
# and the prompt-size workload's mixed 8 KB and 100 KB) with the anchors'
# pass on AVX2 (A: TOLLGATE_NO_AVX512 set) and on AVX-512 (B), one build,
# in alternated rounds (criterion-ab.sh); B/A under 1 is AVX-512's gain.
# Valgrind has no AVX-512, so callgrind cannot compare them.
# Usage: avx512-vs-avx2.sh [ROUNDS] [SECONDS_PER_BENCH]
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -q avx512bw /proc/cpuinfo || { echo "this CPU has no AVX-512 BW: nothing to compare"; exit 1; }
cargo bench -p tollgate-bench --bench guard --offline --no-run >/dev/null 2>&1
bin=$(ls -t target/release/deps/guard-* | grep -v '\.d$' | head -1)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf '#!/bin/sh\nTOLLGATE_NO_AVX512=1 exec %s "$@"\n' "$PWD/$bin" >"$dir/avx2"
chmod +x "$dir/avx2"
cd bench
../bench/scripts/criterion-ab.sh "$dir/avx2" "$PWD/../$bin" "${1:-3}" guard_request "${2:-3}"
rm -rf target
