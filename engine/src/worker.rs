//! A worker: one thread, one core, one monoio runtime, and everything the
//! requests on that core touch.
//!
//! A worker owns its configuration copy, its upstream pools and its
//! counters. Other threads reach it only through the shutdown flag, which
//! it polls off the request path. Counters are `Cell`s: one thread, no
//! atomics.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::io::{CancelHandle, Canceller};
use monoio::net::TcpListener;
use tollgate_policy::Config;
use tollgate_protocol::http1::HeadLimits;

use crate::respond::models_body;
use crate::upstream::Upstream;

/// How often a worker looks at the process-wide shutdown flag. Only the
/// start of a drain waits on it, never a request.
const SHUTDOWN_POLL: Duration = Duration::from_millis(20);

pub struct Worker {
    pub index: usize,
    pub config: Config,
    pub limits: HeadLimits,
    pub upstreams: Vec<Upstream>,
    pub models_body: Bytes,
    draining: Cell<bool>,
    /// Cancels everything that waits for a *new* request (accept, idle
    /// keep-alive reads) when the drain starts; requests in flight finish.
    idle: RefCell<Canceller>,
    connections: Cell<usize>,
    in_flight: Cell<usize>,
}

impl Worker {
    pub fn new(index: usize, config: Config, provider_addrs: &[SocketAddr]) -> Worker {
        let limits =
            HeadLimits { head_bytes_max: config.server.head_bytes_max, uri_bytes_max: config.server.uri_bytes_max };
        Worker {
            index,
            limits,
            upstreams: Upstream::table(&config, provider_addrs),
            models_body: models_body(&config),
            config,
            draining: Cell::new(false),
            idle: RefCell::new(Canceller::new()),
            connections: Cell::new(0),
            in_flight: Cell::new(0),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    pub fn idle_handle(&self) -> CancelHandle {
        self.idle.borrow().handle()
    }

    pub fn connections(&self) -> usize {
        self.connections.get()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Stops taking new requests: the listener and idle connections are
    /// cancelled; requests in flight run on.
    pub fn begin_drain(&self) {
        if !self.draining.replace(true) {
            let old = std::mem::take(&mut *self.idle.borrow_mut());
            *self.idle.borrow_mut() = old.cancel();
        }
    }

    pub fn track_connection(self: &Rc<Self>) -> Tracked {
        self.connections.set(self.connections.get() + 1);
        Tracked { worker: self.clone(), which: Which::Connection }
    }

    pub fn track_request(self: &Rc<Self>) -> Tracked {
        self.in_flight.set(self.in_flight.get() + 1);
        Tracked { worker: self.clone(), which: Which::Request }
    }
}

enum Which {
    Connection,
    Request,
}

/// Decrements its counter when dropped, whichever way the task ends.
pub struct Tracked {
    worker: Rc<Worker>,
    which: Which,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let c = match self.which {
            Which::Connection => &self.worker.connections,
            Which::Request => &self.worker.in_flight,
        };
        c.set(c.get() - 1);
    }
}

/// The worker's main task: accept until shutdown, then drain.
pub async fn run(worker: Rc<Worker>, listener: std::net::TcpListener, shutdown: Arc<AtomicBool>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(worker = worker.index, error = %e, "cannot register the listener");
            return;
        }
    };
    monoio::spawn(accept_loop(worker.clone(), listener));
    while !shutdown.load(Ordering::Relaxed) {
        monoio::time::sleep(SHUTDOWN_POLL).await;
    }
    worker.begin_drain();
    let deadline = Instant::now() + worker.config.server.timeouts.drain;
    while worker.connections() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    if worker.connections() > 0 {
        tracing::warn!(
            worker = worker.index,
            connections = worker.connections(),
            in_flight = worker.in_flight(),
            "drain time-out: closing connections with requests in flight"
        );
    }
}

async fn accept_loop(worker: Rc<Worker>, listener: TcpListener) {
    let max = worker.config.server.connections_per_worker_max;
    loop {
        match listener.cancelable_accept(worker.idle_handle()).await {
            Ok((stream, _peer)) => {
                if worker.connections() >= max {
                    // Over the cap: closing at once is cheaper for everyone
                    // than a connection that waits.
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let open = worker.track_connection();
                monoio::spawn(crate::conn::serve(worker.clone(), stream, open));
            }
            Err(_) if worker.is_draining() => break,
            Err(e) => {
                tracing::warn!(worker = worker.index, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    // Dropping the listener closes this core's socket; the kernel sends new
    // connections to listeners still open.
    drop(listener);
}
