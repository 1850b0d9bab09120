#!/usr/bin/env bash
# Instructions the guardrail scan spends on 640 KiB of clean English prose
# (ten scans of 64 KiB, every detector on), under callgrind. Run it before
# and after a change to the phrase list or the anchors: a word that joins
# the main automaton can cost every clean text (stop 27 measured 13.6M
# instructions before, 21.7M with 30 more anchor words in it).
# Usage: callgrind-guard.sh [FILE]
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 1; }
cargo build --release -q -p tollgate-bench --bin tollgate-guard-scan
out=$(mktemp)
valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect='*scan_it*' \
  ./target/release/tollgate-guard-scan "$@" >/dev/null 2>"$out.log"
echo "instructions for ten scans: $(awk '/^(summary|totals):/ {print $2}' "$out" | tail -1)"
rm -f "$out" "$out.log"
