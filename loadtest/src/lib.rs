//! Tollgate's test and measurement tools.
//!
//! [`mock`] is an OpenAI-compatible upstream built to never be the
//! bottleneck of a benchmark: thread per core on io_uring like the gateway,
//! keep-alive, and replies generated from a few integers. It also misbehaves
//! on request (latency, slow streams, failure statuses, resets, hangs,
//! trickles, SSE events and UTF-8 characters split across writes) so that
//! every fault path of the gateway is tested against real sockets. The
//! gateway embeds it for its `mock` provider kind.

pub mod mock;
