//! The governed pipeline in memory, for instruction counts (callgrind) and
//! profiles: a request's head parsed, its key authenticated among 1,000,
//! its body scanned for routing, checked by every guardrail and its prompt
//! counted (tokens per minute), budgets and rate limits checked; then a
//! 20-event answer stream parsed, guarded event by event, its deltas
//! counted, and written out as the client would get it. No socket, no
//! clock-dependent branch: the same run always executes the same
//! instructions, so `bench/scripts/callgrind.sh` can compare it against a
//! committed baseline. Usage: tollgate-pipeline [ITERATIONS]

use bytes::BytesMut;
use tollgate_bench::pipeline::{iterate, world};

fn main() {
    let iterations: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let world = world();
    let mut out = BytesMut::new();
    let mut checksum = 0u64;
    for _ in 0..iterations {
        checksum += iterate(&world, &mut out);
    }
    println!("{iterations} iterations, checksum {checksum}");
}
