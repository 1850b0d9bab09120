//! The load generator: options, the per-thread run loop, and the merged
//! result.

mod client;
pub mod report;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;

use client::{Conn, Exchange};

/// What to send and how hard.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub target: SocketAddr,
    /// The request, head and body, sent as is on every exchange.
    pub request: Bytes,
    pub connections: usize,
    pub threads: usize,
    /// Requests per second across all threads; `None` is closed loop (each
    /// connection sends its next request as soon as the last is answered).
    pub rate: Option<f64>,
    pub duration: Duration,
    pub warmup: Duration,
    /// Stop after this many requests (after warm-up), if set.
    pub requests: Option<u64>,
    /// Per-request time-out; a request past it counts as an error.
    pub timeout: Duration,
    /// Print a progress line to stderr every second.
    pub progress: bool,
}

/// Latencies are recorded in microseconds, from 1 µs to 100 s.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("static histogram bounds")
}

/// What one thread (and, merged, the whole run) measured.
pub struct Measured {
    /// Request latency: from the intended send time (open loop) or the
    /// send (closed loop) to the last byte of the answer.
    pub latency: Histogram<u64>,
    /// Time to the first SSE event, for streamed answers.
    pub ttft: Histogram<u64>,
    /// Gaps between consecutive SSE events.
    pub gaps: Histogram<u64>,
    pub statuses: std::collections::BTreeMap<u16, u64>,
    /// Connection errors, time-outs and malformed answers.
    pub errors: u64,
    pub elapsed: Duration,
}

impl Measured {
    fn new() -> Measured {
        Measured {
            latency: new_histogram(),
            ttft: new_histogram(),
            gaps: new_histogram(),
            statuses: Default::default(),
            errors: 0,
            elapsed: Duration::ZERO,
        }
    }

    fn merge(&mut self, other: Measured) {
        let _ = self.latency.add(&other.latency);
        let _ = self.ttft.add(&other.ttft);
        let _ = self.gaps.add(&other.gaps);
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.errors += other.errors;
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    pub fn requests(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.errors
    }

    pub fn successes(&self) -> u64 {
        self.statuses.iter().filter(|(s, _)| (200..300).contains(*s)).map(|(_, n)| n).sum()
    }
}

/// Counters the progress line reads; the only state threads share, and
/// only the load generator's, never the system's under test.
#[derive(Default)]
struct Progress {
    done: AtomicU64,
    errors: AtomicU64,
    p99_us: AtomicU64,
}

/// Runs the load and returns what was measured.
pub fn run(opts: &LoadOptions) -> std::io::Result<Measured> {
    let threads = opts.threads.max(1).min(opts.connections.max(1));
    let progress = Arc::new(Progress::default());
    let start = Instant::now() + Duration::from_millis(50);
    let mut handles = Vec::new();
    for t in 0..threads {
        let conns = opts.connections / threads + usize::from(t < opts.connections % threads);
        let rate = opts.rate.map(|r| r / threads as f64);
        let budget = opts.requests.map(|n| n / threads as u64 + u64::from((t as u64) < n % threads as u64));
        let (opts, progress) = (opts.clone(), progress.clone());
        handles.push(std::thread::Builder::new().name(format!("load-{t}")).spawn(move || {
            let mut rt =
                monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().expect("load runtime");
            rt.block_on(thread_main(opts, conns, rate, budget, start, progress, t == 0))
        })?);
    }
    let reporter = opts.progress.then(|| {
        let (progress, duration) = (progress.clone(), opts.warmup + opts.duration);
        std::thread::spawn(move || report_progress(&progress, start, duration))
    });
    let mut total = Measured::new();
    for h in handles {
        total.merge(h.join().map_err(|_| std::io::Error::other("a load thread panicked"))?);
    }
    if let Some(r) = reporter {
        let _ = r.join();
    }
    Ok(total)
}

fn report_progress(progress: &Progress, start: Instant, total: Duration) {
    let mut last = 0;
    let mut second = 0;
    while start.elapsed() < total {
        std::thread::sleep(Duration::from_secs(1));
        second += 1;
        let done = progress.done.load(Ordering::Relaxed);
        eprintln!(
            "  {second:>3}s  {:>8} req/s  errors {:>6}  p99 so far {:>8.3} ms",
            done - last,
            progress.errors.load(Ordering::Relaxed),
            progress.p99_us.load(Ordering::Relaxed) as f64 / 1000.0
        );
        last = done;
    }
}

async fn thread_main(
    opts: LoadOptions,
    conns: usize,
    rate: Option<f64>,
    budget: Option<u64>,
    start: Instant,
    progress: Arc<Progress>,
    publishes_p99: bool,
) -> Measured {
    let shared = Rc::new(ThreadState {
        slot: Cell::new(0),
        interval: rate.map(|r| Duration::from_secs_f64(1.0 / r.max(0.001))),
        start,
        warm_until: start + opts.warmup,
        end: start + opts.warmup + opts.duration,
        budget: Cell::new(budget),
        measured: std::cell::RefCell::new(Measured::new()),
        progress,
    });
    let tasks: Vec<_> = (0..conns).map(|_| monoio::spawn(connection_loop(opts.clone(), shared.clone()))).collect();
    if publishes_p99 {
        let shared = shared.clone();
        monoio::spawn(async move {
            while Instant::now() < shared.end {
                monoio::time::sleep(Duration::from_millis(500)).await;
                let p99 = shared.measured.borrow().latency.value_at_quantile(0.99);
                shared.progress.p99_us.store(p99, Ordering::Relaxed);
            }
        });
    }
    for t in tasks {
        t.await;
    }
    let mut m = shared.measured.replace(Measured::new());
    // With a request budget the run may end early: the measured time is the
    // time it took, not the time allowed.
    m.elapsed = Instant::now().min(shared.end).saturating_duration_since(shared.warm_until);
    m
}

struct ThreadState {
    /// The next open-loop slot; connections take slots in order.
    slot: Cell<u64>,
    interval: Option<Duration>,
    start: Instant,
    warm_until: Instant,
    end: Instant,
    budget: Cell<Option<u64>>,
    measured: std::cell::RefCell<Measured>,
    progress: Arc<Progress>,
}

impl ThreadState {
    /// When the next request is meant to leave: the next free slot on the
    /// schedule (open loop), or now (closed loop).
    fn next_send(&self) -> Instant {
        match self.interval {
            Some(interval) => {
                let k = self.slot.get();
                self.slot.set(k + 1);
                self.start + interval * k as u32
            }
            None => Instant::now().max(self.start),
        }
    }

    fn take_budget(&self) -> bool {
        match self.budget.get() {
            None => true,
            Some(0) => false,
            Some(n) => {
                self.budget.set(Some(n - 1));
                true
            }
        }
    }
}

async fn connection_loop(opts: LoadOptions, s: Rc<ThreadState>) {
    let mut conn: Option<Conn> = None;
    loop {
        let intended = s.next_send();
        // Slots still queued when the time is up are not sent late: the
        // achieved rate must show what the target could not keep up with.
        if intended >= s.end || Instant::now() >= s.end {
            return;
        }
        // Latency counts from the intended send time when the request is
        // late because every connection was busy (a stall of the system
        // under test: counting it is what avoids coordinated omission). When
        // a connection was idle and slept for its slot, it counts from the
        // wake-up instead: the runtime's timer ticks in milliseconds, and its
        // lateness belongs to the generator, not to the system measured.
        let now = Instant::now();
        let intended = if intended > now {
            monoio::time::sleep(intended - now).await;
            Instant::now()
        } else {
            intended
        };
        let warm = intended < s.warm_until;
        if !warm && !s.take_budget() {
            return;
        }
        if conn.is_none() {
            conn = monoio::time::timeout(opts.timeout, Conn::connect(opts.target)).await.ok().and_then(Result::ok);
        }
        let result = match conn.as_mut() {
            Some(c) => monoio::time::timeout(opts.timeout, c.exchange(&opts.request)).await.unwrap_or(Err(())),
            None => Err(()),
        };
        let done = Instant::now();
        if !warm {
            let mut m = s.measured.borrow_mut();
            match &result {
                Ok(ex) => {
                    m.latency.saturating_record(micros(done - intended));
                    *m.statuses.entry(ex.status).or_default() += 1;
                    // Like latency, from the intended send time (corrected for
                    // the generator's own lateness, as above).
                    if let Some(first) = ex.first_event {
                        m.ttft.saturating_record(micros(first.saturating_duration_since(intended)));
                    }
                    for gap in &ex.gaps {
                        m.gaps.saturating_record(micros(*gap));
                    }
                }
                Err(()) => m.errors += 1,
            }
            s.progress.done.fetch_add(1, Ordering::Relaxed);
            if result.is_err() {
                s.progress.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        match result {
            Ok(Exchange { reusable: true, .. }) => {}
            Ok(_) => conn = None,
            Err(()) => {
                conn = None;
                // A refused connection fails at once; do not spin on it.
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(interval: Option<Duration>, budget: Option<u64>) -> ThreadState {
        let start = Instant::now();
        ThreadState {
            slot: Cell::new(0),
            interval,
            start,
            warm_until: start,
            end: start + Duration::from_secs(1),
            budget: Cell::new(budget),
            measured: std::cell::RefCell::new(Measured::new()),
            progress: Arc::new(Progress::default()),
        }
    }

    #[test]
    fn open_loop_slots_follow_a_fixed_schedule() {
        let s = state(Some(Duration::from_micros(250)), None);
        let times: Vec<Duration> = (0..4).map(|_| s.next_send() - s.start).collect();
        assert_eq!(times, [0, 250, 500, 750].map(Duration::from_micros));
    }

    #[test]
    fn a_request_budget_is_spent_exactly() {
        let s = state(None, Some(2));
        assert!(s.take_budget() && s.take_budget());
        assert!(!s.take_budget());
    }

    #[test]
    fn merged_results_add_up() {
        let mut a = Measured::new();
        a.latency.saturating_record(100);
        a.statuses.insert(200, 1);
        let mut b = Measured::new();
        b.latency.saturating_record(300);
        b.statuses.insert(200, 2);
        b.statuses.insert(429, 1);
        b.errors = 1;
        a.merge(b);
        assert_eq!((a.requests(), a.successes(), a.latency.len()), (5, 3, 2));
        let json = report::json(&a);
        assert!(json.contains("\"statuses\":{\"200\":3,\"429\":1}"), "{json}");
        assert!(report::hgrm(&a.latency).contains("Total count"));
        assert!(report::svg(&[("a", &a.latency)]).starts_with("<svg"));
    }
}
