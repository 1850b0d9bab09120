//! Listening sockets: the one SO_REUSEPORT bind shared by the gateway's
//! workers and the mock's threads, and the check that an address is not
//! already held by another process.
//!
//! Each thread owns its own listener on the same address (SO_REUSEPORT), and
//! the kernel spreads new connections over them; no thread hands accepted
//! sockets to another. The same option has a trap: any other process that
//! also sets it may bind the same port, and the kernel then spreads the
//! connections over both programs without a word. A second gateway started
//! by mistake on a port in use would start "fine" and take a share of the
//! first one's traffic. [`ensure_free`] closes that trap; call it once per
//! address before the per-thread [`bind_reuseport`]s.
//!
//! The gateway's engine lives in another crate and binds through this
//! module too, so that both programs keep the same rules.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// The accept queue of each listener. The kernel caps it at
/// `net.core.somaxconn` (4096 by default since Linux 5.4); asking for that
/// much lets a burst of connections wait instead of being refused.
const BACKLOG: i32 = 4096;

/// A non-blocking listener on `addr`, bound with SO_REUSEPORT (and
/// SO_REUSEADDR, so that a restart is not refused by the last run's
/// connections in TIME_WAIT). Every thread of the gateway or of the mock
/// calls it on the same address and keeps the listener it gets.
///
/// For port 0, bind the first listener, then bind the others on its
/// `local_addr`: each bind on port 0 would pick a port of its own.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Fails with [`io::ErrorKind::AddrInUse`] when another socket listens on
/// `addr` (another gateway, another mock, any other server), even one that
/// set SO_REUSEPORT and would let [`bind_reuseport`] share its port.
///
/// How: a probe socket is bound to `addr` without SO_REUSEPORT. Linux lets
/// a bind share a port with a listener only when both sockets set
/// SO_REUSEPORT, so the probe is refused whatever the listener set. The
/// probe does set SO_REUSEADDR, like the listeners: without it, sockets of
/// a stopped gateway still in TIME_WAIT would refuse the probe and a quick
/// restart would fail. Sockets still closing on the port (a program just
/// stopped) can refuse it too, so a refused probe is confirmed by a
/// connection: only a listener answers one. The probe never listens and is
/// closed on return, so it leaves nothing behind.
///
/// Port 0 always passes: every bind on it gets a port of its own.
pub fn ensure_free(addr: SocketAddr) -> io::Result<()> {
    // A program killed a moment ago can leave its listener open for a few
    // milliseconds more: io_uring tears a dead process's rings (and the
    // sockets they hold) down asynchronously. A listener still there after
    // this grace belongs to a live program.
    let grace = std::time::Instant::now() + LISTENER_GRACE;
    loop {
        match probe(addr) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && std::time::Instant::now() < grace => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

/// How long [`ensure_free`] waits for a listener to go away before it calls
/// the address taken.
const LISTENER_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn probe(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && !answers(addr) => {
            // Refused by sockets that listen no more: the connections of a
            // program just stopped, still closing on that port. Nothing
            // would share the new listeners' traffic.
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("address {addr} is already in use by another process"),
        )),
        Err(e) => Err(e),
    }
}

/// Whether something accepts connections on `addr` (on loopback, for a
/// wildcard address).
fn answers(addr: SocketAddr) -> bool {
    let mut target = addr;
    if addr.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    std::net::TcpStream::connect_timeout(&target, std::time::Duration::from_secs(1)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_any_port() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[test]
    fn a_reuseport_listener_holds_its_address_until_closed() {
        let held = bind_reuseport(loopback_any_port()).unwrap();
        let addr = held.local_addr().unwrap();

        let e = ensure_free(addr).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains(&addr.to_string()), "{e}");

        // The probe leaves the workers' own binds alone: a second reuseport
        // listener still shares the port, and the probe still sees it taken.
        let sibling = bind_reuseport(addr).unwrap();
        assert_eq!(ensure_free(addr).unwrap_err().kind(), io::ErrorKind::AddrInUse);

        drop(sibling);
        drop(held);
        ensure_free(addr).unwrap();
        // Nor does a passed probe keep the address: the listeners bind it.
        let again = bind_reuseport(addr).unwrap();
        assert_eq!(again.local_addr().unwrap(), addr);
    }

    #[test]
    fn a_plain_listener_holds_its_address() {
        let held = std::net::TcpListener::bind(loopback_any_port()).unwrap();
        let addr = held.local_addr().unwrap();
        assert_eq!(ensure_free(addr).unwrap_err().kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn port_zero_is_always_free() {
        let _held = bind_reuseport(loopback_any_port()).unwrap();
        ensure_free(loopback_any_port()).unwrap();
    }
}
