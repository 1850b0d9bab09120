//! Answers the gateway makes itself: errors, health, the model list.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::error::GatewayError;
use crate::iov::{self, IoSlices};
use crate::record::RequestId;

/// The client side of a connection and its reusable write buffers. What
/// belongs to one request (its id, rate-limit headers, deadline) is in
/// that request's [`Reply`], not here.
pub struct Client {
    pub stream: crate::downstream::ClientStream,
    pub out: IoSlices,
    /// Heads the gateway writes are rendered here, then split off frozen.
    pub scratch: BytesMut,
    /// A write that takes no byte for this long ends the connection
    /// (`[server.timeouts] write_idle_ms`).
    pub write_idle: std::time::Duration,
    /// The most the writes of one relayed stream wait for the client, in
    /// all (`[server.timeouts] write_stall_ms`; [`Client::write_relayed`]).
    pub write_stall: std::time::Duration,
    /// The connection's last key, hashed once.
    pub key_memo: crate::proxy::authenticate::KeyMemo,
    /// Some of the current request's answer was given to the socket (a
    /// `100 Continue` is not an answer): a request that fails after
    /// that cannot be answered with an error ([`crate::fault`]).
    pub answered: bool,
    /// The connection is to be reset, not closed in order
    /// ([`Client::abort`]).
    pub aborted: bool,
}

/// What every answer to one request carries, whichever phase writes it:
/// the gateway's own answers ([`Client::send`]) and relayed ones alike.
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    /// Writes to the client give up at this instant: the request's
    /// deadline, or the head time-out while no request is under way.
    pub deadline: Instant,
    /// The request was HEAD: answers carry no body.
    pub head_only: bool,
    /// Sent back as `x-request-id`; the same id is in the request record.
    pub request_id: Option<RequestId>,
    /// `retry-after` seconds, on a refusal the client should wait out.
    pub retry_after: Option<u64>,
    /// The `x-ratelimit-*` headers, when the key or its team has a limit.
    pub rate: Option<tollgate_policy::ratelimit::Headroom>,
    /// `x-tollgate-cache`, when the answer cache was consulted.
    pub cache: Option<crate::cache::Outcome>,
}

impl Reply {
    /// An answer to no request (a head that could not be read or parsed).
    pub fn bare(deadline: Instant) -> Reply {
        Reply { deadline, head_only: false, request_id: None, retry_after: None, rate: None, cache: None }
    }
}

/// What one write of a relayed stream may wait for its client without
/// counting towards `write_stall` ([`Client::write_relayed`]).
pub const WRITE_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

impl Client {
    pub fn new(
        stream: crate::downstream::ClientStream,
        write_idle: std::time::Duration,
        write_stall: std::time::Duration,
    ) -> Client {
        Client {
            stream,
            out: IoSlices::default(),
            // Allocated on the first answer, not by idle connections.
            scratch: BytesMut::new(),
            write_idle,
            write_stall,
            key_memo: Default::default(),
            answered: false,
            aborted: false,
        }
    }

    /// [`Client::write`] for a stream relayed as it comes: what a write
    /// waits for the client past [`WRITE_GRACE`] is added to `stalled`,
    /// and a write gives up once that passes `write_stall`. A client that
    /// takes a byte before each `write_idle` runs out, and no more, would
    /// otherwise hold the upstream waiting (the answer unread, its usage
    /// with it) until the request's deadline. The grace keeps a busy
    /// core's turns, and a large event on a slow link, from counting.
    pub async fn write_relayed(&mut self, deadline: Instant, stalled: &mut std::time::Duration) -> std::io::Result<()> {
        let start = Instant::now();
        let by = deadline.min(start + WRITE_GRACE + self.write_stall.saturating_sub(*stalled));
        let written = self.write(by).await;
        *stalled += start.elapsed().saturating_sub(WRITE_GRACE);
        written
    }

    /// Writes what `out` holds, before `deadline` and with no write idle
    /// past `write_idle`.
    pub async fn write(&mut self, deadline: Instant) -> std::io::Result<()> {
        self.answered |= !self.out.is_empty();
        iov::write_all_until(&mut self.stream, &mut self.out, deadline, self.write_idle).await
    }

    /// Marks the connection to be reset when it closes (`SO_LINGER` 0, no
    /// lingering close): after part of an answer, an orderly close (a FIN,
    /// a TLS close_notify) would read as the end of an answer delimited by
    /// the close.
    pub fn abort(&mut self) {
        self.stream.reset_on_close();
        self.aborted = true;
    }

    /// Sends a complete answer; false when the client has gone or stopped
    /// reading until the deadline.
    pub async fn send(&mut self, reply: &Reply, status: u16, content_type: &str, body: Bytes, close: bool) -> bool {
        let s = &mut self.scratch;
        write_status_and_type(s, status, content_type);
        s.extend_from_slice(b"\r\ncontent-length: ");
        s.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        s.extend_from_slice(b"\r\n");
        write_request_id(reply.request_id, s);
        write_rate(reply.rate, s);
        if let Some(secs) = reply.retry_after {
            s.extend_from_slice(b"retry-after: ");
            s.extend_from_slice(itoa::Buffer::new().format(secs).as_bytes());
            s.extend_from_slice(b"\r\n");
        }
        s.truncate(s.len() - 2);
        s.extend_from_slice(if close { b"\r\nconnection: close\r\n\r\n" as &[u8] } else { b"\r\n\r\n" });
        let head = s.split().freeze();
        self.out.push(head);
        if !reply.head_only {
            self.out.push(body);
        }
        self.write(reply.deadline).await.is_ok()
    }

    pub async fn send_error(&mut self, reply: &Reply, e: &GatewayError, close: bool) -> bool {
        let mut body = BytesMut::with_capacity(256);
        e.write_body(&mut body);
        self.send(reply, e.status(), "application/json", body.freeze(), close).await
    }

    /// `100 Continue`, for a client that waits for it before its body,
    /// before `deadline` (the body's) and with no write idle past
    /// `write_idle`: written with no limit, a client that read nothing
    /// held its connection and its task until it left (found by a
    /// review).
    pub async fn send_continue(&mut self, deadline: Instant) -> bool {
        self.out.push(Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"));
        iov::write_all_until(&mut self.stream, &mut self.out, deadline, self.write_idle).await.is_ok()
    }
}

/// How an answer's body is delimited for the client.
pub enum Delimit {
    Length(usize),
    Chunked,
    /// HTTP/1.0 clients: the body ends when the connection closes.
    Close,
}

/// The head of an answer the gateway writes itself around a provider's
/// (translated or inspected) or the cache's body: status, type, framing,
/// the request's own headers, `x-tollgate-route` (the pieces of `route`
/// joined), an extra header, and `connection: close` when `close`.
#[allow(clippy::too_many_arguments)]
pub fn write_answer_head(
    client: &mut Client,
    status: u16,
    content_type: &str,
    length: Delimit,
    close: bool,
    reply: &Reply,
    route: &[&[u8]],
    extra: Option<(&[u8], &[u8])>,
) {
    let s = &mut client.scratch;
    write_status_and_type(s, status, content_type);
    match length {
        Delimit::Length(n) => {
            s.extend_from_slice(b"\r\ncontent-length: ");
            s.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        }
        Delimit::Chunked => s.extend_from_slice(b"\r\ncache-control: no-cache\r\ntransfer-encoding: chunked"),
        Delimit::Close => s.extend_from_slice(b"\r\ncache-control: no-cache"),
    }
    s.extend_from_slice(b"\r\n");
    write_request_id(reply.request_id, s);
    write_rate(reply.rate, s);
    write_cache(reply.cache, s);
    s.extend_from_slice(b"x-tollgate-route: ");
    for piece in route {
        s.extend_from_slice(piece);
    }
    if let Some((name, value)) = extra {
        s.extend_from_slice(b"\r\n");
        s.extend_from_slice(name);
        s.extend_from_slice(b": ");
        s.extend_from_slice(value);
    }
    if close {
        s.extend_from_slice(b"\r\nconnection: close");
    }
    s.extend_from_slice(b"\r\n\r\n");
    let head = s.split().freeze();
    client.out.push(head);
}

/// The status line and content type every answer starts with; the caller
/// adds framing headers after it.
pub(crate) fn write_status_and_type(s: &mut BytesMut, status: u16, content_type: &str) {
    s.extend_from_slice(b"HTTP/1.1 ");
    s.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    s.extend_from_slice(b" ");
    s.extend_from_slice(reason(status).as_bytes());
    s.extend_from_slice(b"\r\ncontent-type: ");
    s.extend_from_slice(content_type.as_bytes());
}

/// Appends `x-request-id: ...\r\n` when there is an id.
pub fn write_request_id(id: Option<RequestId>, out: &mut BytesMut) {
    if let Some(id) = id {
        out.extend_from_slice(b"x-request-id: ");
        id.render(out);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `x-tollgate-cache: hit|miss` when the cache was consulted.
pub fn write_cache(outcome: Option<crate::cache::Outcome>, out: &mut BytesMut) {
    if let Some(o) = outcome {
        out.extend_from_slice(b"x-tollgate-cache: ");
        o.write(out);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends OpenAI's `x-ratelimit-*` headers when the key or its team has
/// a rate limit.
pub fn write_rate(rate: Option<tollgate_policy::ratelimit::Headroom>, out: &mut BytesMut) {
    let Some(h) = rate else { return };
    let mut n = itoa::Buffer::new();
    for (what, pair) in [("requests", h.requests), ("tokens", h.tokens)] {
        let Some((limit, remaining)) = pair else { continue };
        for (field, value) in [("limit", limit), ("remaining", remaining)] {
            out.extend_from_slice(b"x-ratelimit-");
            out.extend_from_slice(field.as_bytes());
            out.extend_from_slice(b"-");
            out.extend_from_slice(what.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(n.format(value).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"x-ratelimit-reset-");
        out.extend_from_slice(what.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(n.format(h.reset_secs).as_bytes());
        out.extend_from_slice(b"s\r\n");
    }
}

/// The `GET /v1/models` body: the models this key may use.
pub fn models_body(config: &tollgate_policy::Config, key: &tollgate_policy::VirtualKey) -> Bytes {
    let mut out = BytesMut::new();
    out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    let routes = config.routes.all();
    for (i, route) in key.models.iter().filter_map(|m| routes.get(m)).enumerate() {
        if i > 0 {
            out.extend_from_slice(b",");
        }
        out.extend_from_slice(b"{\"id\":");
        tollgate_protocol::openai::write_json_string(&mut out, &route.name);
        out.extend_from_slice(b",\"object\":\"model\",\"created\":0,\"owned_by\":\"tollgate\"}");
    }
    out.extend_from_slice(b"]}");
    out.freeze()
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
