//! One client connection: requests are read and answered strictly in order
//! (HTTP/1.1 pipelining), with keep-alive and the head and idle time-outs.
//! Each request is dispatched here: the gateway's own routes are answered
//! at once, an API front goes through [`crate::pipeline`].
//!
//! The read buffer is the request's memory: the head and the body are split
//! off it frozen and handed on as `Bytes`, so the body that goes upstream is
//! the very allocation it arrived in. Bytes after the current request stay
//! in the buffer as the start of the next one.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;
use tollgate_protocol::http1::{BodyFraming, HeadScan, Method, RequestHead};

use crate::error::GatewayError;
use crate::iov;
use crate::pipeline::{self, Core, Exchange, READ_BYTES};
use crate::proxy::Front;
use crate::respond::{models_body, Client, Reply};
use crate::worker::{Tracked, Worker};

/// Buffer a connection holds while it waits for its first request. io_uring
/// owns a read's buffer until data arrives, so this is the memory an idle
/// connection costs: 10,000 idle clients hold 20 MB of it, not 160 MB.
const IDLE_READ_BYTES: usize = 2 * 1024;

/// How often a failing accept is logged.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Accepts connections on this worker's own listener until the drain
/// begins, and serves each as a task on the same core.
pub async fn accept(worker: Rc<Worker>, listener: std::net::TcpListener) {
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(worker = worker.index, error = %e, "cannot register the listener");
            return;
        }
    };
    if worker.is_draining() {
        // A SIGTERM came before this task first ran: nothing to accept.
        return;
    }
    worker.listening_on(std::os::fd::AsRawFd::as_raw_fd(&listener));
    let (mut backoff, mut failures, mut last_logged) = (Duration::from_millis(10), 0u64, None);
    loop {
        match listener.cancelable_accept(worker.accept_handle()).await {
            Ok((stream, peer)) => {
                let Some(open) = worker.track_connection(peer.ip()) else {
                    // Over a cap (the worker's, or this client's): closing
                    // at once is cheaper for everyone than a connection
                    // that waits.
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                match worker.state().tls.clone() {
                    Some(acceptor) => monoio::spawn(Contained::new(serve_tls(worker.clone(), stream, acceptor, open))),
                    None => monoio::spawn(Contained::new(serve(
                        worker.clone(),
                        crate::downstream::ClientStream::plain(stream),
                        open,
                    ))),
                };
            }
            Err(_) if worker.is_draining() => break,
            Err(e) => {
                // Out of descriptors (EMFILE, ENFILE) or memory: idle
                // keep-alive connections are shed to make room, the loop
                // backs off (10 ms, doubling to 1 s) instead of spinning,
                // and the log says so once per 10 s, with a count.
                failures += 1;
                worker.accept_failed();
                if last_logged.is_none_or(|t: Instant| t.elapsed() >= ACCEPT_LOG_EVERY) {
                    tracing::warn!(worker = worker.index, error = %e, failures, "accept failed; shedding idle connections and backing off");
                    last_logged = Some(Instant::now());
                }
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) {
                    // The longest-idle first; the next failure sheds the
                    // next generation.
                    worker.shed_idle();
                }
                monoio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        }
        backoff = Duration::from_millis(10);
    }
    // Dropping the listener closes this core's socket; the kernel sends new
    // connections to listeners still open.
    drop(listener);
}

/// Handshakes TLS on an accepted connection (within `head_read_ms`: a
/// client that stalls its handshake is a slow client), then serves it.
pub async fn serve_tls(w: Rc<Worker>, tcp: TcpStream, acceptor: monoio_rustls::TlsAcceptor, open: Tracked) {
    let limit = w.state().config.server.timeouts.head_read;
    match monoio::time::timeout(limit, crate::downstream::accept(&acceptor, tcp)).await {
        Ok(Ok(stream)) => serve(w, stream, open).await,
        Ok(Err(e)) => tracing::debug!(error = %e, "client TLS handshake failed"),
        Err(_) => tracing::debug!("client TLS handshake timed out"),
    }
}

/// Serves one accepted connection until it closes.
pub async fn serve(w: Rc<Worker>, stream: crate::downstream::ClientStream, _open: Tracked) {
    let mut client =
        Client::new(stream, w.state().config.server.timeouts.write_idle, w.state().config.server.timeouts.write_stall);
    let mut buf = BytesMut::with_capacity(IDLE_READ_BYTES);
    let mut scan = HeadScan::default();
    let mut first = true;
    loop {
        let head = match read_head(&w, &mut client.stream, &mut buf, &mut scan, first).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                let reply = Reply::bare(Instant::now() + w.state().config.server.timeouts.head_read);
                // Boxed: a connection's future should not carry it.
                // Not after a head that did not come in time: a slow
                // client is not given more of it.
                let slow = matches!(e, GatewayError::HeadTimeout);
                if crate::boxed::boxed(|| client.send_error(&reply, &e, true)).await && !slow {
                    linger(&w, &mut client, &mut buf).await;
                }
                return;
            }
        };
        first = false;
        let in_flight = w.track_request();
        // The request runs under the state it started with, whatever a
        // reload installs meanwhile.
        let state = w.state();
        let core = w.core(&state);
        // A draining worker closes every connection after its answer, and
        // says so, so that no client reuses a connection that is about to
        // close.
        let keep_alive = head.keep_alive && !core.draining;
        // Each answer is boxed: an idle connection should not carry its
        // state machine between requests. A future is copied whole each
        // time it is made and awaited, at every level above it, so the
        // exchange is made here, on the heap, and what is boxed is small:
        // the pipeline's future is 1.4 KB, its phases that wait on the
        // network boxed where they are awaited (`RUSTC_BOOTSTRAP=1 cargo
        // rustc -p tollgate-engine --lib --release -- -Zprint-type-sizes`;
        // it was 18 KB, and its copies were 38% of a cache hit's
        // instructions: `bench/scripts/callgrind-gateway.sh`).
        let keep_alive = match front_of(&head) {
            Some(front) => {
                let id = w.recorder.next_id();
                let request_time = state.config.server.timeouts.request;
                let mut ex = Box::new(Exchange::new(head, front, id, keep_alive, request_time));
                ex.trace.otel = w.recorder.trace_context(crate::otel::traceparent_of(&ex.head), &state.rng);
                crate::boxed::boxed(|| pipeline::run(&core, &mut client, &mut buf, ex)).await
            }
            None => crate::boxed::boxed(|| answer_locally(&w, &core, &mut client, &mut buf, head, keep_alive)).await,
        };
        if !keep_alive || w.is_draining() {
            // A lingering connection has no request in flight.
            drop(in_flight);
            if !client.aborted {
                linger(&w, &mut client, &mut buf).await;
            }
            return;
        }
    }
}

/// How long a closing connection reads and drops what the client still
/// sends ([`linger`]), and how much at most.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 16 << 20;

/// After an answer that closes the connection: the sending side is shut
/// (the client has the answer whole, then its end), and what the client
/// still sends, the rest of a body refused before it was read (413, 401,
/// 429), is read and dropped for a while, as nginx's lingering close does.
/// Closed with bytes unread, the socket sends a reset, which can erase the
/// answer and its `retry-after` from the client's buffers before its
/// application reads them, and the client's write fails (RFC 9112 9.6;
/// found by a review). A client that closes its side ends it at once; the
/// drain ends it within a read's wait ([`LINGER_READ`]).
async fn linger(w: &Worker, client: &mut Client, buf: &mut BytesMut) {
    client.stream.shut_write();
    let until = Instant::now() + LINGER;
    let mut dropped = 0;
    while dropped < LINGER_BYTES && !w.is_draining() {
        let wait = until.saturating_duration_since(Instant::now()).min(LINGER_READ);
        if wait.is_zero() {
            break;
        }
        buf.clear();
        buf.reserve(READ_BYTES);
        match monoio::time::timeout(wait, iov::read_more(&mut client.stream, buf)).await {
            Ok(Ok(n)) if n > 0 => dropped += n,
            // A quiet client between two reads: go on while there is time.
            Err(_) => {}
            _ => break,
        }
    }
}

/// The longest one read of a lingering connection waits.
const LINGER_READ: Duration = Duration::from_millis(250);

/// The API front a request's method and path name; `None` for the
/// gateway's own routes.
fn front_of(head: &RequestHead) -> Option<Front> {
    match (head.method, head.path()) {
        (Method::Post, b"/v1/chat/completions") => Some(Front::OpenAi),
        (Method::Post, b"/v1/messages") => Some(Front::Anthropic),
        (Method::Post, b"/v1/completions") => Some(Front::Completions),
        (Method::Post, b"/v1/responses") => Some(Front::Responses),
        (Method::Post, b"/v1/embeddings") => Some(Front::Embeddings),
        (Method::Post, b"/v1/messages/count_tokens") => Some(Front::CountTokens),
        _ => None,
    }
}

/// Reads until a whole head is buffered. `Ok(None)`: the client closed, went
/// idle past the limit, or the worker is draining, with no request begun.
async fn read_head(
    w: &Worker,
    stream: &mut crate::downstream::ClientStream,
    buf: &mut BytesMut,
    scan: &mut HeadScan,
    first: bool,
) -> Result<Option<RequestHead>, GatewayError> {
    let state = w.state();
    let (limits, timeouts) = (&state.limits, &state.config.server.timeouts);
    // A new connection gets less time to start than a keep-alive one
    // between requests: one that never sends holds a descriptor for
    // nothing.
    let idle = if first { timeouts.first_request } else { timeouts.idle_keepalive };
    // Bytes of this request have arrived: the head time-out runs, from
    // the first wait after them (a head that came whole needs no clock).
    let mut begun = false;
    let mut head_deadline: Option<Instant> = None;
    loop {
        if let Some(n) = scan.find_end(buf) {
            let head = buf.split_to(n).freeze();
            return RequestHead::parse(head, limits).map(Some).map_err(GatewayError::Request);
        }
        if buf.len() >= limits.head_bytes_max {
            return Err(GatewayError::Request(RequestHead::too_large(buf, limits)));
        }
        // Small while nothing has arrived; a full read size once a request
        // is under way.
        buf.reserve(if !begun && buf.is_empty() { IDLE_READ_BYTES } else { READ_BYTES });
        if begun && head_deadline.is_none() {
            head_deadline = Some(Instant::now() + timeouts.head_read);
        }
        let res = match head_deadline {
            // Between requests: idle time-out, and cancelled by a drain. A
            // connection that reaches its first wait after the drain began
            // (its TLS handshake was still running) would wait on a fresh
            // handle no one cancels: it closes instead.
            None if w.is_draining() && buf.is_empty() => return Ok(None),
            None => {
                let (cancel, _ticket) = w.idle_wait();
                // Pinned where it is made and awaited through the pin: an
                // IO step under a time-out is 1.6 KB, and `.await` on the
                // value itself copies it once more (see `crate::boxed`).
                let read = std::pin::pin!(monoio::time::timeout(idle, iov::read_more_cancelable(stream, buf, cancel)));
                match read.await {
                    Ok(r) => r,
                    Err(_) => return Ok(None),
                }
            }
            Some(deadline) => {
                match std::pin::pin!(monoio::time::timeout_at(deadline.into(), iov::read_more(stream, buf))).await {
                    Ok(r) => r,
                    Err(_) => return Err(GatewayError::HeadTimeout),
                }
            }
        };
        if !matches!(res, Ok(n) if n > 0) {
            // Closed, reset, or cancelled by a drain: no request to answer.
            return Ok(None);
        }
        begun = true;
    }
}

/// The gateway's own routes: health, readiness, the key's model list, and
/// the 404 for anything else. Answered without reading a body: the
/// connection stays open only if the whole body is already buffered (it is
/// skipped); otherwise its unread bytes would be taken for the next
/// request.
async fn answer_locally(
    w: &Worker,
    core: &Core<'_>,
    client: &mut Client,
    buf: &mut BytesMut,
    head: RequestHead,
    keep_alive: bool,
) -> bool {
    let id = w.recorder.next_id();
    // Every `/v1` request leaves a record and is counted, answered here or
    // not; health checks do not.
    let mut trace = head.path().starts_with(b"/v1/").then(|| crate::record::Trace::new(id));
    let local = |status: u16, body: &'static [u8]| Ok((status, Bytes::from_static(body)));
    let answer: Result<(u16, Bytes), GatewayError> = match (head.method, head.path()) {
        (Method::Get | Method::Head, b"/healthz") => local(200, b"{\"status\":\"ok\"}"),
        (Method::Get | Method::Head, b"/readyz") if core.draining => local(503, b"{\"status\":\"draining\"}"),
        // Still ready: keys under no budget or limit are served, and every
        // node is in the same state, so a 503 would only empty the pool.
        (Method::Get | Method::Head, b"/readyz") if core.accounts.cluster_refusing() => {
            local(200, b"{\"status\":\"ready\",\"cluster\":\"refusing\"}")
        }
        (Method::Get | Method::Head, b"/readyz") if core.accounts.cluster_degraded() => {
            local(200, b"{\"status\":\"ready\",\"cluster\":\"degraded\"}")
        }
        (Method::Get | Method::Head, b"/readyz") => local(200, b"{\"status\":\"ready\"}"),
        (Method::Get | Method::Head, b"/v1/models") => {
            let now = crate::unix_now().as_secs();
            crate::proxy::authenticate::authenticate(core.state, &head, now, &mut Default::default()).map(|key| {
                if let Some(t) = trace.as_mut() {
                    t.key = Some(key);
                }
                (200, models_body(&core.state.config, key))
            })
        }
        _ => Err(GatewayError::NoRoute),
    };
    let started = Instant::now();
    let reply = Reply {
        deadline: started + core.state.config.server.timeouts.request,
        head_only: head.method == Method::Head,
        request_id: Some(id),
        retry_after: None,
        rate: None,
        cache: None,
    };
    let answer = answer.map_err(|e| {
        let mut body = bytes::BytesMut::with_capacity(256);
        e.write_body(&mut body);
        (e, body.freeze())
    });
    let body_skipped = match head.framing {
        BodyFraming::Empty => true,
        BodyFraming::Length(n) if buf.len() as u64 >= n => {
            let _ = buf.split_to(n as usize);
            true
        }
        _ => false,
    };
    let closes = matches!(&answer, Err((e, _)) if e.closes_connection());
    let close = !body_skipped || !keep_alive || closes;
    let (status, body) = match answer {
        Ok(ok) => ok,
        Err((e, body)) => (e.status(), body),
    };
    if let Some(t) = trace.as_mut() {
        t.status = status;
        t.end = if status < 300 { crate::record::End::Completed } else { crate::record::End::Rejected };
        t.bytes_out = if reply.head_only { 0 } else { body.len() as u64 };
        pipeline::settle(core, t);
    }
    client.send(&reply, status, "application/json", body, close).await && !close
}

/// A connection's task, kept from taking its worker down. Bad input is
/// answered with a 4xx, never a panic; but a panic while serving one
/// connection (a bug) would unwind out of the runtime's `block_on` (monoio
/// does not catch its tasks' panics) and end the worker thread, with every
/// connection on its core, other tenants' included, and nothing to restart
/// it. Caught here, it ends this connection alone: its task's state is
/// dropped as a finished task's is (holds released, counters decremented
/// by their guards), and the log says so. A request's phases are caught
/// closer, in `pipeline::run`, where the request can still be recorded and
/// billed ([`crate::fault`]); this catches the rest (reading heads,
/// writing records).
struct Contained<F>(crate::fault::Caught<F>);

impl<F> Contained<F> {
    fn new(f: F) -> Contained<F> {
        Contained(crate::fault::Caught(f))
    }
}

impl<F: std::future::Future<Output = ()>> std::future::Future for Contained<F> {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        // SAFETY: the only field is pinned structurally: it is never moved
        // out of `self`, and `Contained` has no `Drop` of its own.
        let inner = unsafe { self.map_unchecked_mut(|c| &mut c.0) };
        inner.poll(cx).map(|caught| {
            if let Err(why) = caught {
                tracing::error!(panic = %why, "a connection's task panicked: closed that connection only (a bug; please report it with this line)");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    /// A task that panics ends alone: the runtime goes on and the next
    /// task runs to its end.
    #[test]
    fn a_panicking_connection_task_ends_alone() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().expect("runtime");
        let done = rt.block_on(async {
            let panicked = monoio::spawn(super::Contained::new(async { panic!("a bug while serving") }));
            panicked.await;
            let (tx, rx) = std::sync::mpsc::channel();
            monoio::spawn(super::Contained::new(async move { tx.send(7).unwrap() })).await;
            rx.recv().unwrap()
        });
        assert_eq!(done, 7);
    }
}
