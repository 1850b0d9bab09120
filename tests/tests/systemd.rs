//! systemd's notify protocol, against a test socket standing in for
//! systemd: READY once serving, RELOADING then READY around a SIGHUP,
//! watchdog pings, STOPPING on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use tollgate_e2e::*;

/// The next notification containing `want` (others, such as watchdog
/// pings, are skipped), within five seconds.
fn expect(sock: &UnixDatagram, want: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            seen.push(msg.clone());
            if msg.contains(want) {
                return;
            }
        }
    }
    panic!("no {want} within 5 s; got {seen:?}");
}

#[test]
fn ready_reloading_watchdog_and_stopping_are_notified() {
    let dir = TempDir::new("notify");
    let path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mock = start_mock(&[]);
    let env = [("NOTIFY_SOCKET", path.to_str().unwrap()), ("WATCHDOG_USEC", "200000")];
    let mut gw = start_gateway(&config_for(mock.addr, 1, ""), &[], &env);
    let mut seen = Vec::new();
    expect(&sock, "READY=1", &mut seen);
    // Ready means serving.
    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    expect(&sock, "WATCHDOG=1", &mut seen);
    gw.signal(libc::SIGHUP);
    expect(&sock, "RELOADING=1\nMONOTONIC_USEC=", &mut seen);
    expect(&sock, "READY=1", &mut seen);
    gw.signal(libc::SIGTERM);
    expect(&sock, "STOPPING=1", &mut seen);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
}
