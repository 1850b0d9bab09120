//! Phase 4: send the request upstream and read the answer head.

use std::time::Instant;

use bytes::Bytes;
use tollgate_protocol::http1::ResponseHead;

use crate::error::GatewayError;
use crate::iov;
use crate::state::CoreState;
use crate::upstream::{UpConn, Upstream, UPSTREAM_READ_BYTES};

/// Phase 3: send and read the answer head. A pooled connection is sent on
/// only if it is quiet (`UpConn::quiet`: not idle past the time servers
/// keep one, nothing waiting on it), and one whose write fails, or that
/// dies at once after it ([`DIED_AT_ONCE`]: the upstream had closed it),
/// gets the request once more on a fresh connection. Otherwise a request
/// written whole is never sent again: a connection that dies after it (a
/// load balancer's idle time-out during a long answer) may have had it
/// acted on and billed, and sending it twice billed it twice (found by a
/// review); that is the 502 `upstream_closed`, or the next target.
pub async fn call(
    state: &CoreState,
    upstream: &Upstream,
    parts: &[Bytes],
    deadline: Instant,
    cut: &crate::cut::Cut,
) -> Result<(UpConn, ResponseHead), GatewayError> {
    let t = &state.config.server.timeouts;
    // Connecting may not outlast the request.
    let connect_within = || t.upstream_connect.min(deadline.saturating_duration_since(Instant::now()));
    // Pooled connections with something waiting are let go, unsent on.
    let idle = std::iter::from_fn(|| upstream.take_idle()).find(UpConn::quiet);
    let mut conn = match idle {
        Some(c) => c,
        None => upstream.connect(connect_within()).await?,
    };
    loop {
        match attempt(state, upstream, &mut conn, parts, deadline, cut).await {
            Ok(head) => return Ok((conn, head)),
            Err(Attempt::Unsent(_)) if conn.reused && Instant::now() < deadline => {
                conn = upstream.connect(connect_within()).await?;
            }
            Err(Attempt::Unsent(cause)) => {
                return Err(GatewayError::UpstreamClosed { provider: upstream.name.clone(), cause, sent: false })
            }
            // Dead at once after the write, on a pooled connection: the
            // upstream had closed it before the request arrived (its end
            // was on the way as the request was written: a restart under
            // load), and sends it again on a fresh one, once. Later, the
            // request may have been acted on.
            Err(Attempt::DeadBeforeAnswer(_, after))
                if conn.reused && after < DIED_AT_ONCE && Instant::now() < deadline =>
            {
                conn = upstream.connect(connect_within()).await?;
            }
            Err(Attempt::DeadBeforeAnswer(cause, _)) => {
                return Err(GatewayError::UpstreamClosed { provider: upstream.name.clone(), cause, sent: true })
            }
            Err(Attempt::Failed(e)) => return Err(e),
        }
    }
}

/// A pooled connection that dies sooner than this after the request was
/// written had been closed by the upstream before it arrived (see
/// [`call`]): no upstream acts on a request and drops its connection
/// unanswered that fast, while the end of a connection it closed is there
/// at once (or within the time the network takes to bring it).
const DIED_AT_ONCE: std::time::Duration = std::time::Duration::from_millis(100);

enum Attempt {
    /// The request could not be written: the connection was dead.
    Unsent(Option<std::io::Error>),
    /// Written, and nothing came back: the connection died after it, this
    /// long after the write.
    DeadBeforeAnswer(Option<std::io::Error>, std::time::Duration),
    Failed(GatewayError),
}

async fn attempt(
    state: &CoreState,
    upstream: &Upstream,
    conn: &mut UpConn,
    parts: &[Bytes],
    deadline: Instant,
    cut: &crate::cut::Cut,
) -> Result<ResponseHead, Attempt> {
    // A TLS upstream gets them joined (`iov::Sink`).
    for p in parts {
        conn.out.push(p.clone());
    }
    if let Err(e) = iov::write_all_until(&mut conn.stream, &mut conn.out, deadline, std::time::Duration::MAX).await {
        if e.kind() == std::io::ErrorKind::TimedOut {
            return Err(Attempt::Failed(GatewayError::UpstreamTimeout {
                provider: upstream.name.clone(),
                sent: false,
            }));
        }
        return Err(Attempt::Unsent(Some(e)));
    }
    #[cfg(debug_assertions)]
    for p in parts {
        crate::fault::inject("after-request-written", p);
    }
    let written = Instant::now();
    let first_byte = written + state.config.server.timeouts.upstream_first_byte;
    let until = first_byte.min(deadline);
    let timeout = || Attempt::Failed(GatewayError::UpstreamTimeout { provider: upstream.name.clone(), sent: true });
    // An interim answer (`100 Continue`, `102`, `103`) says the upstream
    // has the request: a close after it is no stale pooled connection, and
    // the request is not sent again (the provider may bill it twice).
    let mut answered = false;
    loop {
        // Skip interim 1xx answers; the final head follows on the same connection.
        let head_len = loop {
            if let Some(n) = conn.scan.find_end(&conn.buf) {
                break n;
            }
            if conn.buf.len() > state.limits.head_bytes_max {
                return Err(Attempt::Failed(GatewayError::UpstreamProtocol {
                    provider: upstream.name.clone(),
                    cause: tollgate_protocol::http1::ResponseError::HeadTooLarge,
                }));
            }
            let had_bytes = answered || !conn.buf.is_empty();
            conn.buf.reserve(UPSTREAM_READ_BYTES);
            let wait = until.saturating_duration_since(Instant::now());
            // Pinned where they are made and passed on as pins: each move of
            // the read under its time-out (1.5 KB) and of the cut's wait
            // around it (3 KB) was a copy (see `crate::boxed`).
            let read = std::pin::pin!(monoio::time::timeout(wait, iov::read_more(&mut conn.stream, &mut conn.buf)));
            let read = std::pin::pin!(cut.or(read)).await;
            // The drain's time is up: nothing was answered yet, so the
            // client is told the gateway is shutting down.
            let Some(read) = read else { return Err(Attempt::Failed(GatewayError::Draining)) };
            let Ok(res) = read else { return Err(timeout()) };
            match res {
                Ok(0) if !had_bytes => return Err(Attempt::DeadBeforeAnswer(None, written.elapsed())),
                Err(e) if !had_bytes => return Err(Attempt::DeadBeforeAnswer(Some(e), written.elapsed())),
                Ok(0) => {
                    return Err(Attempt::Failed(GatewayError::UpstreamClosed {
                        provider: upstream.name.clone(),
                        cause: None,
                        sent: true,
                    }))
                }
                Err(e) => {
                    return Err(Attempt::Failed(GatewayError::UpstreamClosed {
                        provider: upstream.name.clone(),
                        cause: Some(e),
                        sent: true,
                    }))
                }
                Ok(_) => {}
            }
        };
        let raw = conn.buf.split_to(head_len).freeze();
        let head = ResponseHead::parse(raw, false).map_err(|cause| {
            Attempt::Failed(GatewayError::UpstreamProtocol { provider: upstream.name.clone(), cause })
        })?;
        if head.status == 101 {
            // The gateway never asks to switch protocols; a 101 would leave
            // the connection in a state nothing here can relay or pool.
            return Err(Attempt::Failed(GatewayError::UpstreamProtocol {
                provider: upstream.name.clone(),
                cause: tollgate_protocol::http1::ResponseError::Syntax("unexpected 101 Switching Protocols"),
            }));
        }
        if (100..200).contains(&head.status) {
            answered = true;
            continue;
        }
        return Ok(head);
    }
}
