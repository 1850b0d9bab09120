//! One client connection: requests are read and answered strictly in order
//! (HTTP/1.1 pipelining), with keep-alive, `Expect: 100-continue`, and the
//! head, body and idle time-outs.
//!
//! The read buffer is the request's memory: the head and the body are split
//! off it frozen and handed on as `Bytes`, so the body that goes upstream is
//! the very allocation it arrived in. Bytes after the current request stay
//! in the buffer as the start of the next one.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncReadRent, CancelableAsyncReadRent};
use monoio::net::TcpStream;
use tollgate_protocol::http1::{BodyFraming, ChunkedDecoder, HeadScan, Method, RequestError, RequestHead};

use crate::error::GatewayError;
use crate::proxy;
use crate::respond::Client;
use crate::worker::{Tracked, Worker};

/// Bytes asked for per client read; a typical chat request fits in one.
const READ_BYTES: usize = 16 * 1024;

/// Serves one accepted connection until it closes.
pub async fn serve(w: std::rc::Rc<Worker>, stream: TcpStream, _open: Tracked) {
    let mut client = Client::new(stream);
    let mut buf = BytesMut::with_capacity(READ_BYTES);
    let mut scan = HeadScan::default();
    loop {
        let head = match read_head(&w, &mut client.stream, &mut buf, &mut scan).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                client.send_error(&e, true).await;
                return;
            }
        };
        let _in_flight = w.track_request();
        let keep_alive = answer(&w, &mut client, &mut buf, head).await;
        if !keep_alive || w.is_draining() {
            return;
        }
    }
}

/// Reads until a whole head is buffered. `Ok(None)`: the client closed, went
/// idle past the limit, or the worker is draining, with no request begun.
async fn read_head(
    w: &Worker,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    scan: &mut HeadScan,
) -> Result<Option<RequestHead>, GatewayError> {
    let mut head_deadline: Option<Instant> = None;
    loop {
        if let Some(n) = scan.find_end(buf) {
            let head = buf.split_to(n).freeze();
            return RequestHead::parse(head, &w.limits).map(Some).map_err(GatewayError::Request);
        }
        if buf.len() >= w.limits.head_bytes_max {
            return Err(GatewayError::Request(RequestHead::too_large(buf, &w.limits)));
        }
        buf.reserve(READ_BYTES);
        let taken = std::mem::take(buf);
        let (res, back) = match head_deadline {
            // Between requests: idle time-out, and cancelled by a drain.
            None => {
                let idle = w.config.server.timeouts.idle_keepalive;
                match monoio::time::timeout(idle, stream.cancelable_read(taken, w.idle_handle())).await {
                    Ok(r) => r,
                    Err(_) => return Ok(None),
                }
            }
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                match monoio::time::timeout(wait, stream.read(taken)).await {
                    Ok(r) => r,
                    Err(_) => return Err(GatewayError::HeadTimeout),
                }
            }
        };
        *buf = back;
        if !matches!(res, Ok(n) if n > 0) {
            // Closed, reset, or cancelled by a drain: no request to answer.
            return Ok(None);
        }
        head_deadline.get_or_insert_with(|| Instant::now() + w.config.server.timeouts.head_read);
    }
}

/// Answers one request; true when the connection may serve another.
async fn answer(w: &Worker, client: &mut Client, buf: &mut BytesMut, head: RequestHead) -> bool {
    let started = Instant::now();
    let has_body = head.framing != BodyFraming::Empty;
    match (head.method, head.path()) {
        (Method::Post, b"/v1/chat/completions") => {}
        (Method::Get, b"/healthz") => {
            return client
                .send(200, "application/json", Bytes::from_static(b"{\"status\":\"ok\"}"), !head.keep_alive)
                .await
                && head.keep_alive
        }
        (Method::Get, b"/readyz") => {
            let (status, body): (u16, &'static [u8]) =
                if w.is_draining() { (503, b"{\"status\":\"draining\"}") } else { (200, b"{\"status\":\"ready\"}") };
            return client.send(status, "application/json", Bytes::from_static(body), !head.keep_alive).await
                && head.keep_alive;
        }
        (Method::Get, b"/v1/models") => {
            return client.send(200, "application/json", w.models_body.clone(), !head.keep_alive).await
                && head.keep_alive
        }
        _ => {
            // An unread body would be taken for the next request: close.
            let close = has_body || !head.keep_alive;
            return client.send_error(&GatewayError::NoRoute, close).await && !close;
        }
    }
    let body = match read_body(w, client, buf, &head, started).await {
        Ok(b) => b,
        Err(e) => {
            client.send_error(&e, true).await;
            return false;
        }
    };
    let deadline = started + w.config.server.timeouts.request;
    match proxy::chat_completions(w, client, &head, body, deadline).await {
        Ok(end) => end.client_reusable,
        Err(e) => {
            let close = e.closes_connection() || !head.keep_alive;
            tracing::debug!(error = %e, status = e.status(), "request failed");
            client.send_error(&e, close).await && !close
        }
    }
}

/// Reads the whole request body (routing and, later, guardrails need all of
/// it). A Content-Length body is split off the read buffer without a copy.
async fn read_body(
    w: &Worker,
    client: &mut Client,
    buf: &mut BytesMut,
    head: &RequestHead,
    started: Instant,
) -> Result<Bytes, GatewayError> {
    let max = w.config.server.body_bytes_max as u64;
    let deadline = started + w.config.server.timeouts.body_read;
    match head.framing {
        BodyFraming::Empty | BodyFraming::CloseDelimited => Ok(Bytes::new()),
        BodyFraming::Length(n) => {
            if n > max {
                return Err(GatewayError::Request(RequestError::BodyTooLarge));
            }
            let n = n as usize;
            if head.expect_continue && buf.len() < n && !client.send_continue().await {
                return Err(GatewayError::ClientClosed);
            }
            while buf.len() < n {
                buf.reserve((n - buf.len()).min(1 << 20));
                fill(&mut client.stream, buf, deadline).await?;
            }
            Ok(buf.split_to(n).freeze())
        }
        BodyFraming::Chunked => {
            if head.expect_continue && buf.is_empty() && !client.send_continue().await {
                return Err(GatewayError::ClientClosed);
            }
            let mut decoder = ChunkedDecoder::new();
            let mut body = BytesMut::new();
            loop {
                let input = &buf[..];
                let p = decoder.decode(input, |r| body.extend_from_slice(&input[r])).map_err(GatewayError::Request)?;
                let _ = buf.split_to(p.consumed);
                if body.len() as u64 > max {
                    return Err(GatewayError::Request(RequestError::BodyTooLarge));
                }
                if p.done {
                    return Ok(body.freeze());
                }
                buf.reserve(READ_BYTES);
                fill(&mut client.stream, buf, deadline).await?;
            }
        }
    }
}

/// One read into `buf` before `deadline`.
async fn fill(stream: &mut TcpStream, buf: &mut BytesMut, deadline: Instant) -> Result<(), GatewayError> {
    let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let Ok((res, back)) = monoio::time::timeout(wait, stream.read(std::mem::take(buf))).await else {
        return Err(GatewayError::BodyTimeout);
    };
    *buf = back;
    match res {
        Ok(n) if n > 0 => Ok(()),
        // An error keeps a half-received request from going upstream.
        _ => Err(GatewayError::ClientClosed),
    }
}
