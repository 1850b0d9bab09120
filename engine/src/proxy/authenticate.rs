//! Who is asking ([`crate::pipeline::authenticate`] runs it). The key is looked up by its SHA-256 (see
//! `tollgate_policy::keys`); the client's key never leaves the gateway (the
//! upstream request drops `authorization` and `x-api-key`).

use tollgate_policy::keys::presented_key;
use tollgate_policy::{AuthError, VirtualKey};
use tollgate_protocol::http1::RequestHead;

use crate::error::GatewayError;
use crate::state::CoreState;

/// `now`: Unix seconds, the request's start (expiry is judged then).
pub fn authenticate<'s>(state: &'s CoreState, head: &RequestHead, now: u64) -> Result<&'s VirtualKey, GatewayError> {
    let presented = presented_key(head.header(b"authorization"), head.header(b"x-api-key"))
        .ok_or(GatewayError::Auth(AuthError::Missing))?;
    state.config.keys.authenticate(presented, now).map_err(GatewayError::Auth)
}
