//! The chat pipeline, as named phases run in this order:
//!
//! 1. [`authenticate`]: the virtual key from `Authorization: Bearer` or
//!    `x-api-key`, before the body is read;
//! 2. [`route`]: the model from the body decides the route and target, and
//!    the key's team must be allowed that model (`authorize`);
//! 3. [`upstream_request`]: the upstream head is rendered and the body
//!    sliced (only the model span is replaced, the rest is borrowed);
//! 4. [`call`]: send on a pooled connection (once more on a fresh one if a
//!    pooled connection turns out dead before any answer byte), read the
//!    answer head within `upstream_first_byte_ms`;
//! 5. [`relay`]: stream the answer to the client as it arrives.
//!
//! Budgets, guardrails and the request record join as phases between these,
//! each in its own module; the connection loop in [`crate::conn`] does not
//! change. Every phase reads the [`CoreState`] the request started with, so
//! a reload never changes the rules under a request in flight.

pub mod authenticate;
pub mod call;
pub mod relay;
pub mod route;
pub mod upstream_request;

use std::time::Instant;

use bytes::Bytes;
use tollgate_policy::VirtualKey;
use tollgate_protocol::http1::RequestHead;

use crate::error::GatewayError;
use crate::respond::Client;
use crate::worker::CoreState;
use relay::RelayEnd;

/// Runs an authenticated chat completion request through the pipeline. An
/// `Err` means no byte of an answer has reached the client yet, so the
/// caller can still answer with an error status.
pub async fn chat_completions(
    state: &CoreState,
    key: &VirtualKey,
    client: &mut Client,
    head: &RequestHead,
    body: Bytes,
    deadline: Instant,
) -> Result<RelayEnd, GatewayError> {
    let routed = route::route(state, key, &body)?;
    let upstream = &state.upstreams[routed.target.provider];
    let parts = upstream_request::build(client, head, &body, &routed, upstream);
    let (mut conn, response) = call::call(state, upstream, parts.as_slice(), deadline).await?;
    let end = relay::relay(client, &mut conn, response, head, deadline, &upstream.name).await;
    if end.upstream_reusable {
        upstream.give_back(conn);
    }
    Ok(end)
}
