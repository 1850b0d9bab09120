//! The chat pipeline, as named phases run in this order:
//!
//! 1. `route`: read the model from the body, find its route and target;
//! 2. `upstream_request`: render the upstream head and slice the body
//!    (only the model span is replaced, the rest is borrowed as is);
//! 3. `call`: send on a pooled connection (once more on a fresh one if a
//!    pooled connection turns out dead before any answer byte), read the
//!    answer head within `upstream_first_byte_ms`;
//! 4. `relay`: stream the answer to the client as it arrives ([`crate::relay`]).
//!
//! Keys, access control, budgets, guardrails and the request record join as
//! phases between these, each in its own module; the connection loop in
//! [`crate::conn`] does not change.

use std::time::Instant;

use bytes::Bytes;
use monoio::io::AsyncReadRent;
use tollgate_policy::Target;
use tollgate_protocol::http1::{RequestHead, ResponseHead};
use tollgate_protocol::openai::{scan_request, ChatRequestFields};

use crate::error::GatewayError;
use crate::iov;
use crate::relay::{self, RelayEnd};
use crate::respond::Client;
use crate::upstream::{UpConn, Upstream, UPSTREAM_READ_BYTES};
use crate::worker::Worker;

/// Runs a chat completion request through the pipeline. An `Err` means no
/// byte of an answer has reached the client yet, so the caller can still
/// answer with an error status.
pub async fn chat_completions(
    w: &Worker,
    client: &mut Client,
    head: &RequestHead,
    body: Bytes,
    deadline: Instant,
) -> Result<RelayEnd, GatewayError> {
    let (fields, target) = route(w, &body)?;
    let upstream = &w.upstreams[target.provider];
    let parts = upstream_request(client, head, &body, &fields, target, upstream);
    let (mut conn, response) = call(w, upstream, parts.as_slice(), deadline).await?;
    let end = relay::relay(client, &mut conn, response, head, deadline, &upstream.name).await;
    if end.upstream_reusable {
        upstream.give_back(conn);
    }
    Ok(end)
}

/// Phase 1: the model decides the target.
fn route<'w>(w: &'w Worker, body: &[u8]) -> Result<(ChatRequestFields, &'w Target), GatewayError> {
    let fields = scan_request(body).map_err(GatewayError::Body)?;
    let model = fields.model.get(body);
    let route = w
        .config
        .routes
        .find(model)
        .ok_or_else(|| GatewayError::UnknownModel(String::from_utf8_lossy(model).into_owned()))?;
    // Fallback across targets arrives with the providers stage; today the
    // first target serves.
    let target = route.targets.first().ok_or_else(|| GatewayError::UnknownModel(route.name.clone()))?;
    Ok((fields, target))
}

/// Headers that describe one hop, not the message (RFC 9110 7.6.1), plus
/// the client's credentials, which never leave the gateway.
fn forwarded(name: &[u8]) -> bool {
    const DROP: &[&[u8]] = &[
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"expect",
        b"authorization",
        b"proxy-authorization",
        b"x-api-key",
    ];
    !DROP.iter().any(|d| d.eq_ignore_ascii_case(name))
}

/// An upstream request as at most six slices, held inline so that building
/// it allocates nothing beyond the rendered header lines.
struct Parts {
    slices: [Bytes; 6],
    len: usize,
}

impl Parts {
    fn push(&mut self, b: Bytes) {
        self.slices[self.len] = b;
        self.len += 1;
    }

    fn as_slice(&self) -> &[Bytes] {
        &self.slices[..self.len]
    }
}

/// Phase 2: the upstream request as slices: a rendered head, then the body
/// borrowed from the client's read buffer with only the model replaced.
fn upstream_request(
    client: &mut Client,
    head: &RequestHead,
    body: &Bytes,
    fields: &ChatRequestFields,
    target: &Target,
    upstream: &Upstream,
) -> Parts {
    let model = fields.model;
    let replace = model.get(body) != target.upstream_model.as_bytes();
    let body_len = if replace { body.len() - model.len() + target.upstream_model.len() } else { body.len() };
    let s = &mut client.scratch;
    for (name, value) in head.headers().filter(|(n, _)| forwarded(n)) {
        s.extend_from_slice(name);
        s.extend_from_slice(b": ");
        s.extend_from_slice(value);
        s.extend_from_slice(b"\r\n");
    }
    s.extend_from_slice(b"content-length: ");
    s.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
    s.extend_from_slice(b"\r\n\r\n");
    let mut parts = Parts { slices: Default::default(), len: 0 };
    parts.push(upstream.chat_request_line.clone());
    parts.push(upstream.fixed_headers.clone());
    parts.push(s.split().freeze());
    if replace {
        parts.push(body.slice(..model.start as usize));
        parts.push(Bytes::copy_from_slice(target.upstream_model.as_bytes()));
        parts.push(body.slice(model.end as usize..));
    } else {
        parts.push(body.clone());
    }
    parts
}

/// Phase 3: send and read the answer head. A pooled connection that fails
/// before any answer byte was probably closed by the upstream while idle;
/// the request goes once more on a fresh connection, which is safe because
/// the upstream cannot have acted on it.
async fn call(
    w: &Worker,
    upstream: &Upstream,
    parts: &[Bytes],
    deadline: Instant,
) -> Result<(UpConn, ResponseHead), GatewayError> {
    let t = &w.config.server.timeouts;
    let mut conn = match upstream.take_idle() {
        Some(c) => c,
        None => upstream.connect(t.upstream_connect).await?,
    };
    loop {
        match attempt(w, upstream, &mut conn, parts, deadline).await {
            Ok(head) => return Ok((conn, head)),
            Err(Attempt::DeadBeforeAnswer(_)) if conn.reused => {
                conn = upstream.connect(t.upstream_connect).await?;
            }
            Err(Attempt::DeadBeforeAnswer(cause)) => {
                return Err(GatewayError::UpstreamClosed { provider: upstream.name.clone(), cause })
            }
            Err(Attempt::Failed(e)) => return Err(e),
        }
    }
}

enum Attempt {
    /// Nothing came back: the connection was dead or died at once.
    DeadBeforeAnswer(Option<std::io::Error>),
    Failed(GatewayError),
}

async fn attempt(
    w: &Worker,
    upstream: &Upstream,
    conn: &mut UpConn,
    parts: &[Bytes],
    deadline: Instant,
) -> Result<ResponseHead, Attempt> {
    for p in parts {
        conn.out.push(p.clone());
    }
    if let Err(e) = iov::write_all(&mut conn.stream, &mut conn.out).await {
        return Err(Attempt::DeadBeforeAnswer(Some(e)));
    }
    let first_byte = Instant::now() + w.config.server.timeouts.upstream_first_byte;
    let until = first_byte.min(deadline);
    let timeout = || Attempt::Failed(GatewayError::UpstreamTimeout { provider: upstream.name.clone() });
    loop {
        // Skip interim 1xx answers; the final head follows on the same connection.
        let head_len = loop {
            if let Some(n) = conn.scan.find_end(&conn.buf) {
                break n;
            }
            if conn.buf.len() > w.limits.head_bytes_max {
                return Err(Attempt::Failed(GatewayError::UpstreamProtocol {
                    provider: upstream.name.clone(),
                    cause: tollgate_protocol::http1::ResponseError::HeadTooLarge,
                }));
            }
            let had_bytes = !conn.buf.is_empty();
            conn.buf.reserve(UPSTREAM_READ_BYTES);
            let wait = until.saturating_duration_since(Instant::now());
            let read = monoio::time::timeout(wait, conn.stream.read(std::mem::take(&mut conn.buf))).await;
            let Ok((res, buf)) = read else { return Err(timeout()) };
            conn.buf = buf;
            match res {
                Ok(0) if !had_bytes => return Err(Attempt::DeadBeforeAnswer(None)),
                Err(e) if !had_bytes => return Err(Attempt::DeadBeforeAnswer(Some(e))),
                Ok(0) => {
                    return Err(Attempt::Failed(GatewayError::UpstreamClosed {
                        provider: upstream.name.clone(),
                        cause: None,
                    }))
                }
                Err(e) => {
                    return Err(Attempt::Failed(GatewayError::UpstreamClosed {
                        provider: upstream.name.clone(),
                        cause: Some(e),
                    }))
                }
                Ok(_) => {}
            }
        };
        let raw = conn.buf.split_to(head_len).freeze();
        let head = ResponseHead::parse(raw, false).map_err(|cause| {
            Attempt::Failed(GatewayError::UpstreamProtocol { provider: upstream.name.clone(), cause })
        })?;
        if (100..200).contains(&head.status) && head.status != 101 {
            continue;
        }
        return Ok(head);
    }
}

#[cfg(test)]
mod tests {
    use super::forwarded;

    #[test]
    fn hop_by_hop_and_credentials_stay() {
        for h in ["Host", "connection", "Transfer-Encoding", "Authorization", "X-Api-Key", "content-length", "Expect"] {
            assert!(!forwarded(h.as_bytes()), "{h}");
        }
        for h in ["content-type", "accept", "user-agent", "x-mock-latency-ms", "openai-organization"] {
            assert!(forwarded(h.as_bytes()), "{h}");
        }
    }
}
