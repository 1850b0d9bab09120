//! Tollgate's engine: the only crate that does IO.
//!
//! One worker thread per core, each with its own monoio runtime (io_uring,
//! or epoll where io_uring is unavailable), its own SO_REUSEPORT listener,
//! its own upstream connection pools and its own copy of the configuration.
//! Nothing on the request path is shared between cores: no lock, no
//! contended atomic. ARCHITECTURE.md draws the life of a request; in code:
//!
//! - [`server`] starts the workers and waits for signals;
//! - [`worker`] runs a core's thread: accepting, the drain, reloads, the
//!   hand-offs to the merger; [`state`] is the core's configuration
//!   snapshot, pools and breakers; [`accounts`] its spend, holds and
//!   reservations;
//! - [`conn`] reads requests from one client connection in order, over
//!   plain TCP or TLS ([`downstream`]); [`idle`] keeps the connections
//!   waiting for their next request in the order they began, so that the
//!   oldest go first when descriptors run out;
//! - [`pipeline`] lists the phases a request goes through, in order, over a
//!   per-request [`pipeline::Exchange`]; [`proxy`] holds the upstream
//!   phase (fallback, call, relay, translation) and the pieces of the
//!   others;
//! - [`upstream`] holds the per-core pools of upstream connections, plain or
//!   TLS ([`tls`]);
//! - [`reload`] swaps the configuration on every core; [`admin`] serves the
//!   admin listener;
//! - [`record`] renders a JSON line per request; [`logwriter`] writes them;
//! - [`stats`] counts per core, merges the counts, and renders `/metrics`;
//!   [`cluster`] shares budget and rate-limit totals with other nodes
//!   through Redis;
//! - [`error`] is the one place an error becomes an HTTP status and body.

pub mod accounts;
pub mod admin;
pub mod alerts;
pub mod boxed;
pub mod breaker;
pub mod cache;
pub mod cli;
pub mod clickhouse;
pub mod cluster;
pub mod conn;
pub mod cut;
pub mod downstream;
pub mod error;
pub mod explorer;
pub mod fault;
pub mod flat;
pub mod idle;
pub mod imds;
pub(crate) mod iov;
pub mod ledger;
pub mod logwriter;
pub mod otel;
pub mod pipeline;
pub mod post;
pub mod proxy;
pub mod record;
pub mod record_index;
pub mod reload;
pub mod report;
pub mod respond;
pub mod retention;
pub mod runs;
pub mod server;
pub mod state;
pub mod stats;
pub mod systemd;
pub mod tls;
pub mod trace_context;
pub mod turns;
pub mod upstream;
pub mod verdicts;
pub mod worker;

/// SplitMix64's finalizer: spreads a hash's bits evenly.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// xorshift64: a per-core generator for load sharing, jitter and trace
/// ids, which need spread, not secrecy.
pub fn next_random(state: &std::cell::Cell<u64>) -> u64 {
    let mut x = state.get();
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    state.set(x);
    x
}

/// Time since the Unix epoch by the wall clock (zero if the clock is set
/// before 1970): windows, records and reservations are all in it.
pub fn unix_now() -> std::time::Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

/// The file beside `path` named `path` and `suffix` (`spend` and `.lock`:
/// `spend.lock`; `spend.tmp` and `.lock`: `spend.tmp.lock`): unlike
/// `with_extension`, never the name of another file the path could be
/// (a ledger named `spend.tmp` was the scratch of `with_extension("tmp")`).
pub fn beside(path: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}
