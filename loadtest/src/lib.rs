//! Tollgate's test and measurement tools.
//!
//! [`mock`] is an OpenAI-compatible upstream built to never be the
//! bottleneck of a benchmark: thread per core on io_uring like the gateway,
//! keep-alive, and replies generated from a few integers. It also misbehaves
//! on request (latency, slow streams, failure statuses, resets, hangs,
//! trickles, SSE events and UTF-8 characters split across writes) so that
//! every fault path of the gateway is tested against real sockets. The
//! gateway embeds it for its `mock` provider kind.
//!
//! [`load`] is the load generator (`tollgate-load`), built like the engine:
//! a thread per core, keep-alive connections, per-thread HdrHistograms
//! merged at the end. Its open-loop mode is free of coordinated omission:
//! each request has an intended send time on a fixed schedule, and its
//! latency counts from that time, so a stall in the system under test shows
//! up in the percentiles instead of silently slowing the load (as in wrk2).

pub mod load;
pub mod mock;
