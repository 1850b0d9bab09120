//! systemd's notify protocol (`Type=notify`), spoken directly: datagrams
//! to the socket in `NOTIFY_SOCKET` (a path, or `@` for the abstract
//! namespace). READY when every worker serves, RELOADING and READY around
//! a SIGHUP reload, STOPPING at the start of a drain, and WATCHDOG pings at
//! half of `WATCHDOG_USEC` from a thread of their own, sent only while
//! every worker shows progress: each bumps its heartbeat from its main
//! loop (every 10 ms), so a worker stuck on a request stops the pings and
//! systemd restarts the process after `WatchdogSec`. Without
//! `NOTIFY_SOCKET` (not under systemd) every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

fn socket() -> Option<(UnixDatagram, std::os::unix::net::SocketAddr)> {
    let path = std::env::var_os("NOTIFY_SOCKET")?;
    let path = path.to_str()?;
    let addr = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
        }
        None => std::os::unix::net::SocketAddr::from_pathname(path).ok()?,
    };
    Some((UnixDatagram::unbound().ok()?, addr))
}

/// Sends one notification (`READY=1`, `STOPPING=1`, ...); best effort.
pub fn notify(state: &str) {
    if let Some((sock, addr)) = socket() {
        if let Err(e) = sock.send_to_addr(state.as_bytes(), &addr) {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }
}

/// `RELOADING=1` with the monotonic time systemd asks for.
pub fn reloading() {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}

/// Starts the watchdog pings when systemd asked for them (`WatchdogSec=`).
/// `beats` are the workers' heartbeats.
pub fn start_watchdog(beats: Heartbeats) {
    let Some(usec) = std::env::var("WATCHDOG_USEC").ok().and_then(|v| v.parse::<u64>().ok()) else { return };
    if usec == 0 {
        return;
    }
    let every = Duration::from_micros(usec / 2);
    let _ = std::thread::Builder::new().name("tollgate-watchdog".into()).spawn(move || {
        let mut last = beats.read();
        let mut stalled_logged = false;
        loop {
            std::thread::sleep(every);
            let now = beats.read();
            let stalled: Vec<usize> = last.iter().zip(&now).enumerate().filter(|(_, (a, b))| a == b).map(|(i, _)| i).collect();
            if stalled.is_empty() {
                notify("WATCHDOG=1");
                stalled_logged = false;
            } else if !stalled_logged {
                tracing::error!(workers = ?stalled, "a worker shows no progress: watchdog pings stop, systemd will restart the process");
                stalled_logged = true;
            }
            last = now;
        }
    });
}

/// One heartbeat per worker: bumped by the worker's own main loop (one
/// writer each, off the request path), read by the watchdog thread.
#[derive(Clone, Default)]
pub struct Heartbeats(std::sync::Arc<Vec<std::sync::atomic::AtomicU64>>);

impl Heartbeats {
    pub fn new(workers: usize) -> Heartbeats {
        Heartbeats(std::sync::Arc::new((0..workers).map(|_| std::sync::atomic::AtomicU64::new(0)).collect()))
    }

    /// Worker `i` is making progress.
    pub fn beat(&self, i: usize) {
        if let Some(b) = self.0.get(i) {
            b.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn read(&self) -> Vec<u64> {
        self.0.iter().map(|b| b.load(std::sync::atomic::Ordering::Relaxed)).collect()
    }
}
