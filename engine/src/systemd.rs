//! systemd's notify protocol (`Type=notify`), spoken directly: datagrams
//! to the socket in `NOTIFY_SOCKET` (a path, or `@` for the abstract
//! namespace). READY when every worker serves, RELOADING and READY around
//! a SIGHUP reload, STOPPING at the start of a drain, and WATCHDOG pings at
//! half of `WATCHDOG_USEC` from a thread of their own while the process is
//! alive. Without `NOTIFY_SOCKET` (not under systemd) every call is a no-op.

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
pub fn start_watchdog() {
    let Some(usec) = std::env::var("WATCHDOG_USEC").ok().and_then(|v| v.parse::<u64>().ok()) else { return };
    if usec == 0 {
        return;
    }
    let every = Duration::from_micros(usec / 2);
    let _ = std::thread::Builder::new().name("tollgate-watchdog".into()).spawn(move || loop {
        notify("WATCHDOG=1");
        std::thread::sleep(every);
    });
}
