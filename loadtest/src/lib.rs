//! Tollgate's measurement tools, and the home of the `tollgate-mock` binary.
//!
//! [`load`] is the load generator (`tollgate-load`), built like the engine:
//! a thread per core, keep-alive connections, per-thread HdrHistograms
//! merged at the end. Its open-loop mode is free of coordinated omission:
//! each request has an intended send time on a fixed schedule, and its
//! latency counts from that time, so a stall in the system under test shows
//! up in the percentiles instead of silently slowing the load (as in wrk2).
//!
//! [`mock`] is the `tollgate-mock` crate, re-exported: the mock upstream
//! lives in its own crate so that the gateway, which embeds it for its
//! `mock` provider kind, does not depend on the load generator. The
//! re-export keeps `tollgate_loadtest::mock` working for the binaries here.

pub mod load;
pub use tollgate_mock as mock;
