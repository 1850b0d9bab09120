//! The upstream side of the pipeline ([`crate::pipeline`] lists every
//! phase in order): the phases a request goes through once it is admitted,
//! and the pieces the earlier phases call.
//!
//! The upstream phase ([`crate::pipeline::forward`]) runs these:
//! [`fallback`] orders the route's targets for this request and skips
//! those whose breaker is open; then, once per attempt, [`upstream_request`] renders the upstream head and
//! slices the body (at most the model and `stream_options` spans are replaced, the rest is
//! borrowed), [`call`] sends it on a pooled connection (once more on a
//! fresh one if a pooled connection turns out dead before any answer
//! byte) and reads the answer head within `upstream_first_byte_ms`. A
//! connect error, a time-out to the first byte or a status in
//! `fallback_on_status` moves the request to the next target, as long as
//! nothing has reached the client. The answer then goes through [`relay`]
//! as it arrives, or through [`translate`] when it is translated, guarded,
//! counted or captured on its way ([`stream`] holds the stream relay's
//! states).
//!
//! [`authenticate`], [`route`] and [`guard`] hold the pieces of the
//! earlier phases of the same names. Every phase reads the
//! [`crate::state::CoreState`]
//! the request started with, so a reload never changes the rules under a
//! request in flight.

pub mod answer;
pub mod authenticate;
pub mod call;
pub mod classify;
pub mod fallback;
pub mod guard;
pub mod relay;
pub mod route;
pub mod stream;
pub mod translate;
pub mod upstream_request;

pub use upstream_request::Front;
