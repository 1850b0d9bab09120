//! What the gateway's exporter threads (spans to a collector, records to
//! ClickHouse) share: one blocking HTTP/1.1 POST ([`post`]: connect to
//! each address the name resolves to in turn, write the head and the
//! body's parts, read the status and as much of the answer as asked; reads
//! and writes wait in short slices and ask `give_up` between them, so that
//! the caller's time-out, or the end of its shutdown grace, stops a try
//! wherever it is); the bounded queue's counters ([`Counters`]); the
//! tries with back-off ([`deliver`], a few tries or until the process
//! stops: [`Patience`]) and the shutdown grace ([`Grace`]).

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A blocked read or write looks at the clock this often.
pub const SLICE: Duration = Duration::from_millis(100);
/// An export or insert is tried this many times, waiting
/// [`FIRST_BACKOFF`] before the second, doubling.
pub const TRIES: u32 = 4;
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two tries of a [`Patience::UntilStopping`]
/// delivery: an outage's end is noticed within it.
pub const LONGEST_BACKOFF: Duration = Duration::from_secs(8);
/// A delivery held by an outage says so this often in the log.
const HELD_LOG_EVERY: Duration = Duration::from_secs(60);
/// Once the process stops, an exporter's last tries (back-off included)
/// get this long in all; what is left after it is dropped and counted.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// An exporter's queue and what became of what it carried, for
/// `/metrics`. The queue is bounded in bytes: what is handed over and not
/// yet taken by the thread is counted, and a batch that would pass the
/// bound is dropped by whoever hands it over, never waited for.
#[derive(Debug, Default)]
pub struct Counters {
    pub queued_bytes: AtomicUsize,
    pub queue_bytes_max: usize,
    /// Items (spans, rows) the other end took.
    pub delivered: AtomicU64,
    /// Items dropped: past the queue's bound, or after the last try.
    pub dropped: AtomicU64,
    /// Deliveries given up after their last try.
    pub failed: AtomicU64,
    /// Tries that failed, the last of each given-up delivery included.
    pub tries_failed: AtomicU64,
    /// Items of a delivery the other end has not taken yet and that is
    /// tried again ([`Patience::UntilStopping`]): what an outage holds
    /// outside the queue.
    pub held: AtomicU64,
}

impl Counters {
    pub fn new(queue_bytes_max: usize) -> Arc<Counters> {
        Arc::new(Counters { queue_bytes_max, ..Counters::default() })
    }

    /// Takes `len` bytes into the queue; false (nothing counted but the
    /// caller's drop) when they would pass its bound. Checked and added in
    /// two steps: senders racing past the bound by one batch each is the
    /// most it can be passed by.
    pub fn admit(&self, len: usize) -> bool {
        if self.queued_bytes.load(Ordering::Relaxed) + len > self.queue_bytes_max {
            return false;
        }
        self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        true
    }

    /// `len` bytes left the queue: taken by the thread, or never sent.
    pub fn taken(&self, len: usize) {
        self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
    }

    pub fn drop_items(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }
}

/// What one try of a delivery came to.
pub enum Try {
    Delivered,
    /// Worth another try, but the other end may have taken it (no answer
    /// came: a time-out, a connection closed after the request went): why.
    /// Tried again [`TRIES`] times at most whatever the [`Patience`], so
    /// that a server that takes each insert and answers too late does not
    /// get it again without end.
    Again(String),
    /// Not taken: the other end could not be reached, or answered that it
    /// did not take it (429, 5xx): why. Safe to send again.
    Untaken(String),
    /// Another try would fare no better (the other end refused what was
    /// sent): why.
    Hopeless(String),
}

/// How long a delivery goes on trying when the other end fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patience {
    /// [`TRIES`] tries, then dropped and counted: spans, which a
    /// collector's outage may cost.
    Tries,
    /// Until it is delivered, refused for good ([`Try::Hopeless`]), or the
    /// process's shutdown grace ends, while each failure says it was not
    /// taken ([`Try::Untaken`]; [`TRIES`] of those that may have been), the
    /// back-off doubling up to
    /// [`LONGEST_BACKOFF`]: request records for ClickHouse, which a restart
    /// of the server (tens of seconds) or an outage of minutes must not
    /// cost. While it waits, the thread takes nothing new: what comes
    /// meanwhile waits in the queue, whose bound (`queue_bytes_max`) is
    /// what an outage can hold; past it, rows are dropped and counted,
    /// and stay in the record files.
    UntilStopping,
}

/// Delivers `items` items by `attempt`, tried again with back-off from
/// [`FIRST_BACKOFF`], doubling, as long as `patience` says and within the
/// grace; counts them delivered, or dropped with a failure. `what` names
/// them in the log.
pub fn deliver(
    grace: &Grace,
    counters: &Counters,
    items: u64,
    what: &str,
    patience: Patience,
    mut attempt: impl FnMut() -> Try,
) {
    let mut backoff = FIRST_BACKOFF;
    let started = Instant::now();
    let mut logged: Option<Instant> = None;
    let mut n = 0u32;
    // Counted in `held` from the first failed try to the end.
    let mut holding = false;
    // Tries that may have been taken (no answer came), counted apart: they
    // are limited whatever the patience.
    let mut uncertain = 0u32;
    let last_why = loop {
        n += 1;
        if grace.over() {
            break "the process is stopping and the other end took too long".to_string();
        }
        let (why, untaken) = match attempt() {
            Try::Delivered => {
                counters.delivered.fetch_add(items, Ordering::Relaxed);
                if logged.is_some() {
                    let waited_s = started.elapsed().as_secs();
                    tracing::info!(items, what, tries = n, waited_s, "delivered after an outage");
                }
                if holding {
                    counters.held.fetch_sub(items, Ordering::Relaxed);
                }
                return;
            }
            Try::Hopeless(why) => {
                counters.tries_failed.fetch_add(1, Ordering::Relaxed);
                break why;
            }
            Try::Again(why) => (why, false),
            Try::Untaken(why) => (why, true),
        };
        counters.tries_failed.fetch_add(1, Ordering::Relaxed);
        uncertain += u32::from(!untaken);
        let again = match patience {
            Patience::Tries => n < TRIES,
            Patience::UntilStopping => untaken || uncertain < TRIES,
        };
        if !again {
            break why;
        }
        if !holding {
            holding = true;
            counters.held.fetch_add(items, Ordering::Relaxed);
        }
        if patience == Patience::UntilStopping && logged.is_none_or(|t| t.elapsed() >= HELD_LOG_EVERY) {
            let waited_s = started.elapsed().as_secs();
            tracing::warn!(items, what, why = %why, waited_s, "not delivered; held and tried again until it is");
            logged = Some(Instant::now());
        } else {
            tracing::debug!(items, what, why = %why, try_ = n, "trying again");
        }
        grace.sleep(backoff);
        backoff = (backoff * 2).min(LONGEST_BACKOFF);
    };
    tracing::warn!(items, what, why = %last_why, "cannot deliver; dropped");
    if holding {
        counters.held.fetch_sub(items, Ordering::Relaxed);
    }
    counters.failed.fetch_add(1, Ordering::Relaxed);
    counters.drop_items(items);
}

/// An exporter thread's shutdown grace: the flag the process sets once
/// the exporter has been given everything it will get, and the deadline
/// that starts when the exporter first sees it.
pub struct Grace {
    stopping: Arc<AtomicBool>,
    deadline: Cell<Option<Instant>>,
}

impl Grace {
    /// The grace, and the flag for the process to set.
    pub fn new() -> (Grace, Arc<AtomicBool>) {
        let stopping = Arc::new(AtomicBool::new(false));
        (Grace { stopping: stopping.clone(), deadline: Cell::new(None) }, stopping)
    }

    /// The process is stopping and the grace has run out.
    pub fn over(&self) -> bool {
        if !self.stopping.load(Ordering::Relaxed) {
            return false;
        }
        let deadline = self.deadline.get().unwrap_or_else(|| Instant::now() + SHUTDOWN_GRACE);
        self.deadline.set(Some(deadline));
        Instant::now() >= deadline
    }

    /// Sleeps `d` in slices, ending early when the grace runs out.
    pub fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.over() {
            std::thread::sleep(SLICE.min(until.saturating_duration_since(Instant::now())));
        }
    }
}

/// How much of an answer a caller reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// The status and the start of the body, for the logs (an exporter):
    /// reading stops once the head is in and the server goes quiet.
    Status,
    /// The whole body, up to this many bytes (head included), read until
    /// the server closes.
    Whole(usize),
}

/// What [`Reading::Status`] keeps of an answer.
const STATUS_BYTES: usize = 1024;

/// The status, and the answer's body (its first bytes, for an exporter).
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// The whole body was read: the server closed after it (and a chunked
    /// one ended with its last chunk), within [`Reading::Whole`]'s bound.
    pub complete: bool,
}

/// POSTs `parts` (the body, in order) to `authority` and `target` (path
/// and query), with `headers` (whole lines, each ending in CRLF).
pub fn post(
    authority: &str,
    target: &str,
    headers: &str,
    parts: &[&[u8]],
    connect_timeout: Duration,
    read: Reading,
    give_up: &mut dyn FnMut() -> bool,
) -> std::io::Result<Answer> {
    // Until a connection is made nothing is sent: a failure then is said so
    // by its kind, `NotConnected` (`Try::Untaken` to a caller that tries
    // again), with the cause in its words.
    let unsent = |why: std::fmt::Arguments<'_>| std::io::Error::new(ErrorKind::NotConnected, why.to_string());
    let timed_out = || std::io::Error::new(ErrorKind::TimedOut, "no answer in time");
    let mut last = std::io::Error::new(ErrorKind::NotFound, "the name resolves to no address");
    let mut connected = None;
    let addrs = authority.to_socket_addrs().map_err(|e| unsent(format_args!("cannot resolve {authority}: {e}")))?;
    // `localhost` may give `::1` first to a server on 127.0.0.1 only.
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, connect_timeout) {
            Ok(s) => {
                connected = Some(s);
                break;
            }
            Err(e) => last = e,
        }
        if give_up() {
            return Err(unsent(format_args!("no connection in time: {last}")));
        }
    }
    let mut s = connected.ok_or_else(|| unsent(format_args!("cannot connect: {last}")))?;
    s.set_write_timeout(Some(SLICE))?;
    s.set_read_timeout(Some(SLICE))?;
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let head = format!(
        "POST {target} HTTP/1.1\r\nhost: {authority}\r\n{headers}content-length: {len}\r\nconnection: close\r\nuser-agent: tollgate/{}\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let waiting =
        |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted);
    // A server may answer before it has read the body (a refusal, a
    // proxy's limit) and close: its answer, not the broken pipe, is what
    // the caller needs.
    let mut write_error = None;
    'writing: for mut data in std::iter::once(head.as_bytes()).chain(parts.iter().copied()) {
        while !data.is_empty() {
            match s.write(data) {
                Ok(0) => {
                    write_error = Some(ErrorKind::WriteZero.into());
                    break 'writing;
                }
                Ok(n) => data = &data[n..],
                Err(e) if waiting(&e) => {
                    if give_up() {
                        return Err(timed_out());
                    }
                }
                Err(e) => {
                    write_error = Some(e);
                    break 'writing;
                }
            }
        }
    }
    // The status line, and as much of the rest as fits: the server closes
    // (`connection: close`) once it has answered. An exporter, which
    // needs the status only, stops once the head is in and the server
    // goes quiet; a caller that wants the body reads to the close.
    let (status_only, answer_max) = match read {
        Reading::Status => (true, STATUS_BYTES),
        Reading::Whole(max) => (false, max),
    };
    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0u8; 16 * 1024];
    let mut closed = false;
    loop {
        match s.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => {
                answer.extend_from_slice(&chunk[..n.min(answer_max.saturating_sub(answer.len()))]);
                if answer.len() >= answer_max {
                    break;
                }
            }
            Err(e) if waiting(&e) => {
                if status_only && answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.len() >= 12 {
                    break;
                }
                if give_up() {
                    return Err(timed_out());
                }
            }
            Err(_) if answer.len() >= 12 || write_error.is_some() => break,
            Err(e) => return Err(e),
        }
    }
    match (parse(&answer), write_error) {
        (Some(mut a), _) => {
            a.complete &= closed;
            Ok(a)
        }
        (None, Some(e)) => Err(e),
        (None, None) => Err(std::io::Error::new(ErrorKind::InvalidData, "not an HTTP answer")),
    }
}

/// `HTTP/1.x NNN ...`, then the body after the blank line.
fn parse(answer: &[u8]) -> Option<Answer> {
    if answer.len() < 12 || !answer.starts_with(b"HTTP/1.") || answer[8] != b' ' {
        return None;
    }
    let digits = &answer[9..12];
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = digits.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let Some(i) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Some(Answer { status, body: Vec::new(), complete: false });
    };
    let head = String::from_utf8_lossy(&answer[..i]).to_ascii_lowercase();
    let body = &answer[i + 4..];
    let chunked = head
        .lines()
        .any(|l| l.split_once(':').is_some_and(|(n, v)| n.trim() == "transfer-encoding" && v.contains("chunked")));
    // A cut answer keeps what decoded, and says it is cut.
    let (body, complete) = if chunked { dechunk(body) } else { (body.to_vec(), true) };
    Some(Answer { status, body, complete })
}

/// The data of a chunked body, as far as it is whole, and whether its
/// last (empty) chunk was there.
fn dechunk(mut body: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(body.len());
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else { return (out, false) };
        let size = std::str::from_utf8(&body[..eol]).ok().map(|s| s.split(';').next().unwrap_or("").trim());
        let Some(n) =
            size.filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit())).and_then(|s| usize::from_str_radix(s, 16).ok())
        else {
            return (out, false);
        };
        if n == 0 {
            return (out, true);
        }
        let data = eol + 2;
        match data.checked_add(n).filter(|&end| end <= body.len()) {
            Some(end) => {
                out.extend_from_slice(&body[data..end]);
                body = body.get(end + 2..).unwrap_or(&[]);
            }
            None => {
                out.extend_from_slice(&body[data.min(body.len())..]);
                return (out, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().status, 200);
        let a = parse(b"HTTP/1.0 500 Oops\r\ncontent-length: 3\r\n\r\nbad").unwrap();
        assert_eq!((a.status, a.body.as_slice()), (500, &b"bad"[..]));
        for bad in [
            &b""[..],
            b"HTTP/1.1 20",
            b"HTTP/1.1 +20 x\r\n",
            b"HTTP/2.0 200 OK\r\n",
            b"HTTP/1.1  200 OK",
            b"garbage here",
        ] {
            assert!(parse(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
        // Every prefix of a good answer, and non-ASCII where digits go: no panic.
        let good = "HTTP/1.1 204 No Content\r\n\r\n";
        for n in 0..good.len() {
            let _ = parse(&good.as_bytes()[..n]);
        }
        assert!(parse("HTTP/1.1 2\u{e9}0 x\r\n".as_bytes()).is_none());
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n";
        let a = parse(chunked).unwrap();
        assert_eq!((a.body.as_slice(), a.complete), (&b"hello world"[..], true));
        assert!(!parse(&chunked[..chunked.len() - 5]).unwrap().complete, "no last chunk: cut");
        // Cut anywhere: what decoded, never a panic.
        for n in 0..chunked.len() {
            let _ = parse(&chunked[..n]);
        }
        assert_eq!(dechunk(b"zz\r\nabc"), (Vec::new(), false));
        assert_eq!(dechunk(b"+5\r\nabcde\r\n0\r\n\r\n"), (Vec::new(), false));
        assert_eq!(dechunk(b"ffffffffffffffffff\r\nabc"), (Vec::new(), false));
        assert_eq!(dechunk(b"fffffffffffffff\r\nabc"), (b"abc".to_vec(), false), "a size past the body: what there is");
    }
}
