//! One client connection: requests are read and answered strictly in order
//! (HTTP/1.1 pipelining), with keep-alive, `Expect: 100-continue`, and the
//! head, body and idle time-outs.
//!
//! The read buffer is the request's memory: the head and the body are split
//! off it frozen and handed on as `Bytes`, so the body that goes upstream is
//! the very allocation it arrived in. Bytes after the current request stay
//! in the buffer as the start of the next one.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;
use tollgate_protocol::http1::{BodyFraming, ChunkedDecoder, HeadScan, Method, RequestError, RequestHead};

use crate::error::GatewayError;
use crate::iov;
use crate::proxy;
use crate::proxy::authenticate::authenticate;
use crate::respond::{models_body, Client};
use crate::worker::{CoreState, Tracked, Worker};

/// Bytes asked for per client read; a typical chat request fits in one.
const READ_BYTES: usize = 16 * 1024;

/// Serves one accepted connection until it closes.
pub async fn serve(w: Rc<Worker>, stream: TcpStream, _open: Tracked) {
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
        // The request runs under the state it started with, whatever a
        // reload installs meanwhile.
        let state = w.state();
        let keep_alive = answer(&w, &state, &mut client, &mut buf, head).await;
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
    let state = w.state();
    let (limits, timeouts) = (&state.limits, &state.config.server.timeouts);
    let mut head_deadline: Option<Instant> = None;
    loop {
        if let Some(n) = scan.find_end(buf) {
            let head = buf.split_to(n).freeze();
            return RequestHead::parse(head, limits).map(Some).map_err(GatewayError::Request);
        }
        if buf.len() >= limits.head_bytes_max {
            return Err(GatewayError::Request(RequestHead::too_large(buf, limits)));
        }
        buf.reserve(READ_BYTES);
        let res = match head_deadline {
            // Between requests: idle time-out, and cancelled by a drain.
            None => {
                let read = iov::read_more_cancelable(stream, buf, w.idle_handle());
                match monoio::time::timeout(timeouts.idle_keepalive, read).await {
                    Ok(r) => r,
                    Err(_) => return Ok(None),
                }
            }
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                match monoio::time::timeout(wait, iov::read_more(stream, buf)).await {
                    Ok(r) => r,
                    Err(_) => return Err(GatewayError::HeadTimeout),
                }
            }
        };
        if !matches!(res, Ok(n) if n > 0) {
            // Closed, reset, or cancelled by a drain: no request to answer.
            return Ok(None);
        }
        head_deadline.get_or_insert_with(|| Instant::now() + timeouts.head_read);
    }
}

/// Answers one request; true when the connection may serve another.
async fn answer(w: &Worker, state: &CoreState, client: &mut Client, buf: &mut BytesMut, head: RequestHead) -> bool {
    let started = Instant::now();
    let keep_alive = head.keep_alive;
    let json = "application/json";
    match (head.method, head.path()) {
        (Method::Post, b"/v1/chat/completions") => {}
        (Method::Get, b"/healthz") => {
            return client.send(200, json, Bytes::from_static(b"{\"status\":\"ok\"}"), !keep_alive).await && keep_alive
        }
        (Method::Get, b"/readyz") => {
            let (status, body): (u16, &'static [u8]) =
                if w.is_draining() { (503, b"{\"status\":\"draining\"}") } else { (200, b"{\"status\":\"ready\"}") };
            return client.send(status, json, Bytes::from_static(body), !keep_alive).await && keep_alive;
        }
        (Method::Get, b"/v1/models") => {
            return match authenticate(state, &head) {
                Ok(key) => client.send(200, json, models_body(&state.config, key), !keep_alive).await && keep_alive,
                Err(e) => refuse(client, buf, &head, &e).await,
            };
        }
        _ => return refuse(client, buf, &head, &GatewayError::NoRoute).await,
    }
    // Authenticate before reading the body: an unknown client does not get
    // to make the gateway buffer megabytes.
    let key = match authenticate(state, &head) {
        Ok(key) => key,
        Err(e) => return refuse(client, buf, &head, &e).await,
    };
    let body = match read_body(state, client, buf, &head, started).await {
        Ok(b) => b,
        Err(e) => {
            client.send_error(&e, true).await;
            return false;
        }
    };
    let deadline = started + state.config.server.timeouts.request;
    match proxy::chat_completions(state, key, client, &head, body, deadline).await {
        Ok(end) => end.client_reusable,
        Err(e) => {
            let close = e.closes_connection() || !keep_alive;
            tracing::debug!(error = %e, status = e.status(), "request failed");
            client.send_error(&e, close).await && !close
        }
    }
}

/// Answers with an error before the body has been read. The connection
/// stays open only if the whole body is already buffered (it is skipped);
/// otherwise its unread bytes would be taken for the next request.
async fn refuse(client: &mut Client, buf: &mut BytesMut, head: &RequestHead, e: &GatewayError) -> bool {
    let body_skipped = match head.framing {
        BodyFraming::Empty => true,
        BodyFraming::Length(n) if buf.len() as u64 >= n => {
            let _ = buf.split_to(n as usize);
            true
        }
        _ => false,
    };
    let close = !body_skipped || !head.keep_alive || e.closes_connection();
    client.send_error(e, close).await && !close
}

/// Reads the whole request body (routing and, later, guardrails need all of
/// it). A Content-Length body is split off the read buffer without a copy.
async fn read_body(
    state: &CoreState,
    client: &mut Client,
    buf: &mut BytesMut,
    head: &RequestHead,
    started: Instant,
) -> Result<Bytes, GatewayError> {
    let max = state.config.server.body_bytes_max as u64;
    let deadline = started + state.config.server.timeouts.body_read;
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
    let Ok(res) = monoio::time::timeout(wait, iov::read_more(stream, buf)).await else {
        return Err(GatewayError::BodyTimeout);
    };
    match res {
        Ok(n) if n > 0 => Ok(()),
        // An error keeps a half-received request from going upstream.
        _ => Err(GatewayError::ClientClosed),
    }
}
