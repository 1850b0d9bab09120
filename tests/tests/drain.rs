//! Shutdown under load: nothing in flight is lost, and a load balancer can
//! see the drain.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use tollgate_e2e::*;

/// Streams still running when the drain's time is up are ended by the
/// gateway: the client gets an error event and `[DONE]` in a complete
/// chunked body, and each request is recorded and billed (the tokens that
/// passed, estimated).
#[test]
fn requests_cut_by_the_drain_timeout_are_ended_recorded_and_billed() {
    let mock = start_mock(&["--chunks", "20", "--chunk-delay-ms", "500"]);
    let logs = TempDir::new("drain");
    let extra = format!("[logging]\ndir = \"{}\"\n[server.timeouts]\ndrain_ms = 1000", logs.0.display());
    let mut gw = start_gateway(&config_for(mock.addr, 1, &extra), &[], &[]);
    let body = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
    let answers = std::thread::scope(|s| {
        let clients: Vec<_> = (0..3).map(|_| s.spawn(|| one_request(gw.addr, &chat_request(body, "")))).collect();
        wait_until(Duration::from_secs(10), "three streams in flight", || admin_stats(&gw)["in_flight"] == 3);
        gw.signal(libc::SIGTERM);
        clients.into_iter().map(|c| c.join().expect("client")).collect::<Vec<_>>()
    });
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    for r in &answers {
        assert_eq!(r.status, 200);
        assert!(r.chunked, "a complete chunked body");
        let data = sse_data(&r.body);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
        assert!(data.iter().any(|d| d.contains("shutting_down")), "{data:?}");
    }
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 3, "{recs:#?}");
    for rec in &recs {
        assert_eq!(rec["end"], "shutdown", "{rec}");
        assert!(rec["tokens"]["completion"].as_u64().is_some_and(|c| c > 0), "{rec}");
        assert_eq!(rec["tokens"]["estimated"], true, "{rec}");
        assert!(rec["cost_micro_usd"].as_u64().is_some_and(|c| c > 0), "{rec}");
    }
}

/// A stream stuck writing to a client that stopped reading when the
/// drain's time is up is abandoned, and billed what it had counted
/// passing, not its prompt alone (found by a review: every long stream of
/// a tenant whose clients read slowly was free on each deploy).
#[test]
fn a_stream_stuck_writing_at_the_drains_end_is_billed_what_passed() {
    use std::os::fd::AsRawFd;
    let mock = start_mock(&[]);
    let logs = TempDir::new("drain-stuck-write");
    let extra = format!("[logging]\ndir = \"{}\"\n[server.timeouts]\ndrain_ms = 500", logs.0.display());
    let mut gw = start_gateway(&config_for(mock.addr, 1, &extra), &[], &[]);
    let body = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
    let c = Client::connect(gw.addr);
    // A small window, and nothing read: the gateway's writes stop once
    // its socket's send buffer (4 MiB at most on Linux) is full, well
    // before the answer's 7 MB are out.
    let small: libc::c_int = 4096;
    // SAFETY: the socket is open; the option's value is a c_int that lives
    // for the call.
    unsafe {
        libc::setsockopt(
            c.stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let mut c = c;
    c.send(&chat_request(body, "x-mock-reply-words: 800000\r\nx-mock-chunks: 4000\r\n"));
    // Events have reached the client (so some were counted), then wait for
    // its window to fill.
    let mut one = [0u8; 1];
    wait_until(Duration::from_secs(10), "the first events", || c.stream.peek(&mut one).is_ok_and(|n| n > 0));
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_eq!(recs[0]["end"], "shutdown", "{}", recs[0]);
    assert!(recs[0]["tokens"]["completion"].as_u64().is_some_and(|c| c > 100), "{}", recs[0]);
    drop(c);
}

/// From SIGTERM on, new connections are refused at once (the listener
/// stops listening), while a request in flight finishes.
#[test]
fn new_connections_are_refused_once_the_drain_begins() {
    let mock = start_mock(&["--chunks", "4", "--chunk-delay-ms", "300"]);
    let mut gw = start_gateway(&config_for(mock.addr, 1, ""), &[], &[]);
    let body = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
    let addr = gw.addr;
    let answer = std::thread::scope(|s| {
        let client = s.spawn(|| one_request(addr, &chat_request(body, "")));
        wait_until(Duration::from_secs(10), "a stream in flight", || admin_stats(&gw)["in_flight"] == 1);
        gw.signal(libc::SIGTERM);
        let started = Instant::now();
        wait_until(Duration::from_secs(2), "new connections refused", || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
        });
        assert!(started.elapsed() < Duration::from_millis(1000), "refused within a poll of SIGTERM");
        client.join().expect("client")
    });
    assert_eq!(answer.status, 200);
    assert_eq!(sse_data(&answer.body).last().map(String::as_str), Some("[DONE]"), "the stream in flight finished");
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
}

/// A request still waiting for its answer's head when the drain's time
/// runs out is answered 503 `shutting_down`, and recorded `shutdown` with
/// its prompt billed (it had gone upstream: the provider did the work).
#[test]
fn a_request_cut_before_its_answer_is_answered_and_billed_its_prompt() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("drain-json");
    let extra = format!("[logging]\ndir = \"{}\"\n[server.timeouts]\ndrain_ms = 500", logs.0.display());
    let mut gw = start_gateway(&config_for(mock.addr, 1, &extra), &[], &[]);
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello"}]}"#;
    let answer = std::thread::scope(|s| {
        let client = s.spawn(|| one_request(gw.addr, &chat_request(body, "x-mock-latency-ms: 5000\r\n")));
        wait_until(Duration::from_secs(10), "the request in flight", || admin_stats(&gw)["in_flight"] == 1);
        gw.signal(libc::SIGTERM);
        client.join().expect("client")
    });
    assert_eq!((answer.status, answer.error_code().as_str()), (503, "shutting_down"), "{}", answer.text());
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_eq!(recs[0]["end"], "shutdown", "{}", recs[0]);
    assert!(recs[0]["tokens"]["prompt"].as_u64().is_some_and(|p| p > 0), "{}", recs[0]);
    assert_eq!(recs[0]["tokens"]["estimated"], true);
    assert!(recs[0]["cost_micro_usd"].as_u64().is_some_and(|c| c > 0), "{}", recs[0]);
}

/// A request stuck where no upstream read waits (here: its body is still
/// arriving) when the drain's time is up is stopped there and recorded,
/// not dropped with the worker.
#[test]
fn a_request_stuck_reading_its_body_at_the_drains_end_is_recorded() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("drain-body");
    let extra = format!("[logging]\ndir = \"{}\"\n[server.timeouts]\ndrain_ms = 300", logs.0.display());
    let mut gw = start_gateway(&config_for(mock.addr, 1, &extra), &[], &[]);
    let mut c = Client::connect(gw.addr);
    c.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"model\":\"gpt-4o\","
        )
        .as_bytes(),
    );
    wait_until(Duration::from_secs(10), "the request in flight", || admin_stats(&gw)["in_flight"] == 1);
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_eq!(recs[0]["end"], "shutdown", "{}", recs[0]);
    drop(c);
}
