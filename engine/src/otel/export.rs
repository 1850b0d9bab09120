//! The span exporter: each worker encodes its requests' spans into a
//! buffer of its own ([`CoreSpans`], no lock) and hands it over whole
//! every 100 ms or at 64 KiB, as records are; one thread (`tollgate-otel`)
//! gathers the batches and POSTs them to the collector as an OTLP/HTTP
//! `ExportTraceServiceRequest` (protobuf), at most 1 MiB or one second
//! apart.
//!
//! Bounded: the bytes handed over and not yet taken by the thread are
//! counted, and a worker whose batch would pass `queue_bytes_max` drops it
//! (counted as dropped spans) instead of waiting or growing. A collector
//! that refuses (429, 502, 503, 504) or cannot be reached is tried again
//! with back-off (four tries, 250 ms doubling); meanwhile the queue fills
//! and what passes its bound is dropped. Once the process stops, what is
//! left is exported within [`crate::post::SHUTDOWN_GRACE`] (each try's time-out cut to
//! what remains of it), and the rest dropped and counted, so that a dead
//! collector cannot hold the exit. Nothing here is on a worker's
//! path but a buffer append and, every 100 ms, a channel send.

use std::cell::{Cell, RefCell};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tollgate_policy::config::telemetry::Telemetry;

use crate::post::Counters;

use super::proto::{self, attribute, Value};

/// A worker's batch is handed over at this size, or every
/// [`crate::record::FLUSH_EVERY`].
const BATCH_BYTES: usize = 64 * 1024;
/// One export carries at most this much (plus the last batch taken).
const EXPORT_BYTES: usize = 1 << 20;
/// An export is made at least this often while spans wait.
const EXPORT_EVERY: Duration = Duration::from_secs(1);

/// A worker's spans, encoded, and how many.
pub struct Batch {
    bytes: BytesMut,
    spans: u64,
}

/// A worker's span buffer and its line to the exporter.
pub struct CoreSpans {
    buf: RefCell<BytesMut>,
    spans: Cell<u64>,
    tx: mpsc::Sender<Batch>,
    counters: Arc<Counters>,
    pub settings: Arc<Telemetry>,
}

impl crate::record::SpanSink for CoreSpans {
    fn sample_ratio(&self) -> f64 {
        self.settings.sample_ratio
    }

    fn add(&self, trace: &crate::record::Trace<'_>, ctx: &super::Context, config: &tollgate_policy::Config) {
        CoreSpans::add(self, trace, ctx, config)
    }

    fn flush(&self) {
        CoreSpans::flush(self)
    }
}

impl CoreSpans {
    pub fn new(line: &Line) -> CoreSpans {
        CoreSpans {
            buf: RefCell::new(BytesMut::new()),
            spans: Cell::new(0),
            tx: line.tx.clone(),
            counters: line.counters.clone(),
            settings: line.settings.clone(),
        }
    }

    /// Appends a finished request's spans; hands the buffer over when full.
    pub fn add(&self, trace: &crate::record::Trace<'_>, ctx: &super::Context, config: &tollgate_policy::Config) {
        let end_ns = crate::unix_now().as_nanos() as u64;
        let full = {
            let mut buf = self.buf.borrow_mut();
            let n = super::spans::write(trace, ctx, config, end_ns, &mut buf);
            self.spans.set(self.spans.get() + u64::from(n));
            buf.len() >= BATCH_BYTES
        };
        if full {
            self.flush();
        }
    }

    /// Hands the buffer over, or drops it when the queue is at its bound.
    pub fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let spans = self.spans.replace(0);
        let len = buf.len();
        let c = &self.counters;
        if !c.admit(len) {
            c.drop_items(spans);
            buf.clear();
            return;
        }
        if self.tx.send(Batch { bytes: buf.split(), spans }).is_err() {
            c.taken(len);
            c.drop_items(spans);
        }
    }
}

/// What each worker is given: a sender to the exporter and its counters;
/// and the flag the process sets when it begins to stop.
#[derive(Clone)]
pub struct Line {
    tx: mpsc::Sender<Batch>,
    pub counters: Arc<Counters>,
    settings: Arc<Telemetry>,
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
}

/// Starts the exporter thread. It exits, after a last export, once every
/// [`Line`] and [`CoreSpans`] is gone.
pub fn start(settings: Telemetry) -> std::io::Result<(Line, std::thread::JoinHandle<()>)> {
    let counters = Counters::new(settings.queue_bytes_max);
    let (tx, rx) = mpsc::channel();
    let settings = Arc::new(settings);
    let (grace, stopping) = crate::post::Grace::new();
    let exporter = Exporter { settings: settings.clone(), counters: counters.clone(), grace };
    let handle = std::thread::Builder::new().name("tollgate-otel".into()).spawn(move || exporter.run(rx))?;
    Ok((Line { tx, counters, settings, stopping }, handle))
}

struct Exporter {
    settings: Arc<Telemetry>,
    counters: Arc<Counters>,
    grace: crate::post::Grace,
}

impl Exporter {
    fn run(self, rx: mpsc::Receiver<Batch>) {
        // Batches as the workers encoded them: sent one after the other
        // behind one header, never copied together.
        let mut pending: Vec<BytesMut> = Vec::new();
        let mut pending_len = 0;
        let mut spans = 0u64;
        let mut since = Instant::now();
        loop {
            let wait = EXPORT_EVERY.saturating_sub(since.elapsed());
            let done = match rx.recv_timeout(wait) {
                Ok(b) => {
                    self.counters.taken(b.bytes.len());
                    pending_len += b.bytes.len();
                    pending.push(b.bytes);
                    spans += b.spans;
                    false
                }
                Err(mpsc::RecvTimeoutError::Timeout) => false,
                Err(mpsc::RecvTimeoutError::Disconnected) => true,
            };
            let due = pending_len >= EXPORT_BYTES || since.elapsed() >= EXPORT_EVERY || done;
            if due {
                if !pending.is_empty() {
                    self.export(&pending, pending_len, spans);
                    pending.clear();
                    pending_len = 0;
                    spans = 0;
                }
                since = Instant::now();
            }
            if done {
                return;
            }
        }
    }

    /// One export of `spans` spans ([`crate::post::deliver`]): a 2xx takes
    /// them; 429 and 502–504 are tried again, as transport errors are.
    fn export(&self, batches: &[BytesMut], len: usize, spans: u64) {
        use crate::post::Try;
        let prefix = self.request_prefix(len);
        let patience = crate::post::Patience::Tries;
        crate::post::deliver(&self.grace, &self.counters, spans, "spans to the collector", patience, || {
            let started = Instant::now();
            let timeout = self.settings.timeout;
            let mut give_up = || started.elapsed() >= timeout || self.grace.over();
            match post(&self.settings, &prefix, batches, &mut give_up) {
                Ok(status) if (200..300).contains(&status) => Try::Delivered,
                Ok(status) if matches!(status, 429 | 502 | 503 | 504) => {
                    Try::Again(format!("the collector answered {status}"))
                }
                Ok(status) => Try::Hopeless(format!("the collector answered {status}")),
                Err(e) => Try::Again(format!("{} at {}", e, self.settings.authority)),
            }
        });
    }

    /// `ExportTraceServiceRequest { resource_spans: [{ resource, scope_spans:
    /// [{ scope, spans }] }] }` up to the spans, which follow it on the
    /// wire: `len` bytes of `ScopeSpans.spans` fields.
    fn request_prefix(&self, len: usize) -> BytesMut {
        let mut resource = BytesMut::with_capacity(256);
        proto::message(&mut resource, 1, |out| {
            attribute(out, 1, "service.name", Value::Str(&self.settings.service_name));
            attribute(out, 1, "service.version", Value::Str(env!("CARGO_PKG_VERSION")));
            attribute(out, 1, "telemetry.sdk.name", Value::Str("tollgate"));
            attribute(out, 1, "telemetry.sdk.language", Value::Str("rust"));
        });
        let mut scope = BytesMut::with_capacity(64);
        proto::message(&mut scope, 1, |out| {
            proto::bytes(out, 1, b"tollgate");
            proto::bytes(out, 2, env!("CARGO_PKG_VERSION").as_bytes());
        });
        let scope_spans = scope.len() + len;
        let mut scope_spans_head = BytesMut::with_capacity(16);
        proto::header(&mut scope_spans_head, 2, scope_spans);
        let resource_spans = resource.len() + scope_spans_head.len() + scope_spans;
        let mut out = BytesMut::with_capacity(resource.len() + scope.len() + 32);
        proto::header(&mut out, 1, resource_spans);
        out.extend_from_slice(&resource);
        out.extend_from_slice(&scope_spans_head);
        out.extend_from_slice(&scope);
        out
    }
}

/// POSTs one export; the collector's status.
fn post(
    settings: &Telemetry,
    prefix: &[u8],
    batches: &[BytesMut],
    give_up: &mut dyn FnMut() -> bool,
) -> std::io::Result<u16> {
    let parts: Vec<&[u8]> = std::iter::once(prefix).chain(batches.iter().map(|b| &b[..])).collect();
    let headers = "content-type: application/x-protobuf\r\n";
    let connect = settings.timeout.min(Duration::from_secs(2));
    crate::post::post(
        &settings.authority,
        &settings.path,
        headers,
        &parts,
        connect,
        crate::post::Reading::Status,
        give_up,
    )
    .map(|a| a.status)
}
