//! OpenTelemetry traces (`[telemetry]`): a request's trace context, taken
//! from the client's W3C `traceparent` or started here
//! ([`crate::trace_context`]), the
//! ids of the spans the gateway makes for it, and the `traceparent` each
//! upstream attempt carries, so that a provider's own spans (and an
//! upstream gateway's) hang under the attempt that called it.
//!
//! The spans themselves are encoded on the worker when the request's
//! record is written ([`spans`], protobuf by hand: [`proto`]) and handed in
//! batches to one exporter thread ([`export`]) that POSTs them over
//! OTLP/HTTP; nothing here waits for the collector.

pub mod export;
pub mod proto;
pub mod spans;

pub use crate::trace_context::{
    parse_traceparent, sampled_by_id, traceparent_of, Context, SALT_CACHE, SALT_GUARDRAILS,
};
