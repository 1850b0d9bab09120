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

/// The watchdog pings only while every worker makes progress: a worker
/// held on one request (counting the prompt of an 8 MB body of distinct
/// words, under a tokens-per-minute limit) stops them, and they resume
/// when it is free again. (systemd restarts a process whose pings stop
/// for `WatchdogSec`.)
#[test]
fn a_worker_that_makes_no_progress_stops_the_watchdog_pings() {
    let dir = TempDir::new("notify-stall");
    let path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mock = start_mock(&[]);
    // Pings every 50 ms while all is well.
    let env = [("NOTIFY_SOCKET", path.to_str().unwrap()), ("WATCHDOG_USEC", "100000")];
    let config = config_for(mock.addr, 1, "body_bytes_max = 16777216").replace(
        "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]",
        // Near enough to the limit that the prompt is counted, not bounded.
        "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]\nrate_limit = { tokens_per_minute = 20000000 }",
    );
    let gw = start_gateway(&config, &[], &env);
    let mut seen = Vec::new();
    expect(&sock, "WATCHDOG=1", &mut seen);
    let mut words = String::with_capacity(9 << 20);
    for i in 0..1_000_000u32 {
        words.push_str(&format!(" w{i:x}q"));
    }
    let body = format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{words}"}}]}}"#);
    let addr = gw.addr;
    std::thread::scope(|s| {
        let request = s.spawn(move || one_request(addr, &chat_request(&body, "")));
        // The longest silence between pings while the request runs.
        let mut buf = [0u8; 512];
        let (mut last, mut longest) = (Instant::now(), Duration::ZERO);
        while !request.is_finished() {
            if let Ok(n) = sock.recv(&mut buf) {
                if buf[..n].starts_with(b"WATCHDOG=1") {
                    longest = longest.max(last.elapsed());
                    last = Instant::now();
                }
            }
        }
        longest = longest.max(last.elapsed());
        let r = request.join().expect("request");
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(longest >= Duration::from_millis(150), "pings went on while the worker was held: {longest:?}");
    });
    // Free again: pings resume.
    expect(&sock, "WATCHDOG=1", &mut seen);
}

/// `tollgate reload` (the unit's `ExecReload`) exits 0 when the gateway
/// takes the new configuration and 1, naming the problem, when it refuses
/// it: `systemctl reload` reports what happened.
#[test]
fn the_reload_command_reports_a_refused_configuration() {
    let mock = start_mock(&[]);
    let gw = start_gateway(&config_for(mock.addr, 1, ""), &[], &[]);
    let admin = gw.admin.expect("admin listener").to_string();
    let dir = TempDir::new("token");
    let token_file = dir.0.join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).expect("token file");
    // Without the token the reload fails, and says why.
    let bare = std::process::Command::new(bin("tollgate")).args(["reload", "--admin", &admin]).output().expect("runs");
    assert_eq!(bare.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bare.stderr).contains("admin token"));
    // The unit's way: the token file named in the environment.
    let reload = || {
        std::process::Command::new(bin("tollgate"))
            .args(["reload", "--admin", &admin])
            .env("TOLLGATE_ADMIN_TOKEN_FILE", &token_file)
            .output()
            .expect("runs")
    };
    let ok = reload();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let path = gw.config_path.clone().expect("config file");
    std::fs::write(&path, "[[models]]\nname = \"x\"\ntargets = [{ provider = \"nowhere\" }]\n").expect("write config");
    let refused = reload();
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("reload refused") && err.contains("nowhere"), "{err}");
    // Nothing listening: a failure too.
    let gone =
        std::process::Command::new(bin("tollgate")).args(["reload", "--admin", "127.0.0.1:1"]).output().expect("runs");
    assert_eq!(gone.status.code(), Some(1));
}
