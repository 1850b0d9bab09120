//! The admin listener cannot be driven from a browser on the operator's
//! machine, nor exhausted by idle connections.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tollgate_e2e::*;

#[test]
fn cross_origin_and_rebound_requests_are_refused() {
    let mock = start_mock(&[]);
    let gw = start_gateway(&config_for(mock.addr, 1, ""), &[], &[]);
    let admin = gw.admin.expect("admin listener");
    // DNS rebinding: the attacker's name resolves to the admin's address.
    let r = one_request(admin, b"POST /admin/reload HTTP/1.1\r\nHost: attacker.example\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((r.status, r.error_code().as_str()), (421, "host_not_allowed"), "{}", r.text());
    let r = one_request(admin, b"GET /admin/stats HTTP/1.1\r\nHost: attacker.example:9090\r\n\r\n");
    assert_eq!(r.status, 421, "read-only pages too: {}", r.text());
    // CSRF: a page elsewhere posts to the admin's own address.
    let csrf = format!(
        "POST /admin/reload HTTP/1.1\r\nHost: {admin}\r\nOrigin: http://attacker.example\r\nContent-Length: 0\r\n\r\n"
    );
    let r = one_request(admin, csrf.as_bytes());
    assert_eq!((r.status, r.error_code().as_str()), (403, "cross_origin"), "{}", r.text());
    // The operator: curl, or the dashboard's own origin, with the token.
    let own = format!(
        "POST /admin/reload HTTP/1.1\r\nHost: {admin}\r\nOrigin: http://{admin}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(one_request(admin, own.as_bytes()).status, 200);
    assert_eq!(admin_reload(&gw).status, 200);
}

/// A same-origin request without the token (a page served by the listener
/// itself, or anyone who reaches the port) cannot reload or read figures.
#[test]
fn the_admin_token_guards_reads_and_reloads() {
    let mock = start_mock(&[]);
    let gw = start_gateway(&config_for(mock.addr, 1, ""), &[], &[]);
    let admin = gw.admin.expect("admin listener");
    for auth in ["", "Authorization: Bearer tga-guess\r\n", "Authorization: Bearer tg-e2e-0123456789abcdef\r\n"] {
        let reload = format!("POST /admin/reload HTTP/1.1\r\nHost: {admin}\r\n{auth}Content-Length: 0\r\n\r\n");
        let r = one_request(admin, reload.as_bytes());
        assert_eq!((r.status, r.error_code().as_str()), (401, "invalid_admin_token"), "{auth}: {}", r.text());
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"tollgate-admin\""));
        for path in ["/metrics", "/admin/stats", "/admin/config"] {
            let get = format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\n{auth}\r\n");
            assert_eq!(one_request(admin, get.as_bytes()).status, 401, "{path} {auth}");
        }
    }
    for path in ["/metrics", "/admin/stats", "/admin/config"] {
        assert_eq!(admin_get(admin, path).status, 200, "{path}");
    }
    // Health and the page (no figures in it) stay open to probes.
    assert_eq!(one_request(admin, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").status, 200);
    assert_eq!(one_request(admin, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").status, 200);
    // A reload that drops the token revokes it at once.
    let path = gw.config_path.clone().expect("config file");
    let text = std::fs::read_to_string(&path).expect("config");
    let other = "tga-e2e-rotated";
    std::fs::write(&path, text.replace(&key_hash(ADMIN_TOKEN), &key_hash(other))).expect("write config");
    assert_eq!(admin_reload(&gw).status, 200);
    assert_eq!(admin_get(admin, "/metrics").status, 401);
}

/// With no admin token configured, reads stay open (on loopback) and a
/// reload over HTTP is refused; SIGHUP still reloads.
#[test]
fn without_admin_tokens_nothing_changes_state() {
    let mock = start_mock(&[]);
    let config = config_for(mock.addr, 1, "").replace(&format!("admin_tokens = [\"{}\"]", key_hash(ADMIN_TOKEN)), "");
    let gw = start_gateway(&config, &[], &[]);
    let admin = gw.admin.expect("admin listener");
    let r = admin_reload(&gw);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("keygen --admin"), "the refusal names the fix: {}", r.text());
    let open = one_request(admin, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(open.status, 200);
}

#[test]
fn configured_names_are_answered() {
    let mock = start_mock(&[]);
    let config = config_for(mock.addr, 1, "admin_hosts = [\"tollgate.internal\"]");
    let gw = start_gateway(&config, &[], &[]);
    let admin = gw.admin.expect("admin listener");
    let raw =
        format!("GET /metrics HTTP/1.1\r\nHost: tollgate.internal:9090\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n");
    let r = one_request(admin, raw.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn idle_admin_connections_are_capped() {
    let mock = start_mock(&[]);
    let gw = start_gateway(&config_for(mock.addr, 1, ""), &[], &[]);
    let admin = gw.admin.expect("admin listener");
    let threads = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", gw.child.id())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .expect("threads")
    };
    let before = threads();
    // From one address: 8 of the slots, no more; another address is
    // served meanwhile.
    let one: Vec<TcpStream> = (0..50).filter_map(|_| TcpStream::connect(admin).ok()).collect();
    wait_until(Duration::from_secs(10), "one address's threads started", || threads() >= before + 8);
    let over = holds_within(Duration::from_millis(500), || threads() > before + 9);
    assert!(!over, "{} threads for 50 idle admin connections from one address", threads() - before);
    let mut other = connect_from([127, 0, 0, 2].into(), admin).expect("from 127.0.0.2");
    other.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    other.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(one);
    wait_until(Duration::from_secs(10), "their threads gone", || threads() <= before + 1);
    // From many: each accepted connection is either served by a thread (up
    // to the cap) or closed at once: the threads reach the cap, and never
    // pass it while the rest are accepted.
    // (The count of threads before may include one of start-up's.)
    let idle: Vec<TcpStream> =
        (0..300).filter_map(|i| connect_from([127, 0, 0, 10 + (i % 10) as u8].into(), admin).ok()).collect();
    wait_until(Duration::from_secs(10), "the cap's threads started", || threads() >= before + 30);
    let over = holds_within(Duration::from_millis(500), || threads() > before + 33);
    assert!(!over, "{} threads for 300 idle admin connections", threads() - before);
    // The listener still answers once they go.
    drop(idle);
    wait_until(Duration::from_secs(10), "the admin listener answers again", || {
        one_request(admin, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").status == 200
    });
}

/// A head sent a few bytes at a time, its headers past 2 KB, is answered
/// (the search for its end resumes where each read's stopped: from the
/// start after every read, such a head cost quadratic work; found by a
/// review).
#[test]
fn a_head_dribbled_in_small_pieces_is_answered() {
    let mock = start_mock(&[]);
    let gw = start_gateway(&config_for(mock.addr, 1, ""), &[], &[]);
    let admin = gw.admin.expect("admin listener");
    let padding: String = (0..40).map(|i| format!("X-Pad-{i}: {}\r\n", "a".repeat(50))).collect();
    let raw = format!("GET /healthz HTTP/1.1\r\nHost: {admin}\r\n{padding}\r\n");
    let mut c = TcpStream::connect(admin).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.set_nodelay(true).unwrap();
    for piece in raw.as_bytes().chunks(7) {
        c.write_all(piece).unwrap();
        // Pieces in reads of their own: the scenario, not a wait.
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"status\":\"ok\""), "{answer}");
}
