//! The mock upstream: the `tollgate-mock` binary answers like an OpenAI
//! upstream, and a second mock is refused an address a running one holds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

#[test]
fn mock_binary_serves_chat_completions() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-mock"))
        .args(["--listen", "127.0.0.1:0", "--reply-words", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    let body = r#"{"model":"m","messages":[]}"#;
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("\"content\":\"Tollgate counts every\""), "{out}");
    assert!(out.contains("\"completion_tokens\":3"), "{out}");
}

/// A second mock on the address of a running one is refused, instead of
/// sharing the port through SO_REUSEPORT and taking part of its requests.
#[test]
fn a_second_mock_on_a_held_address_is_refused() {
    use tollgate_loadtest::mock::{self, Behavior, MockOptions};
    let opts = |listen: SocketAddr| MockOptions { listen, threads: 2, behavior: Behavior::default(), tls: None };
    let first = mock::start(&opts("127.0.0.1:0".parse().unwrap())).unwrap();
    let e = mock::start(&opts(first.addr)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
}
