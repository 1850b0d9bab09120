//! Alerts for people: a budget's soft threshold passed is POSTed as JSON to
//! the configured webhook, from a thread of its own, so that a slow or dead
//! receiver never touches a request. Delivery is best effort (one try,
//! two-second time-outs, failures logged): the log line and the metric are
//! the record, the webhook is the nudge.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);

/// Starts the alert thread for `url` (validated `http://host:port/path`).
pub fn start(url: &str) -> Option<mpsc::Sender<String>> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let authority = authority.to_string();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::Builder::new()
        .name("tollgate-alerts".into())
        .spawn(move || {
            for body in rx {
                if let Err(e) = post(&authority, &path, &body) {
                    tracing::warn!(webhook = %authority, error = %e, "alert webhook failed");
                }
            }
        })
        .ok()?;
    Some(tx)
}

fn post(authority: &str, path: &str, body: &str) -> std::io::Result<()> {
    let addr = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nuser-agent: tollgate\r\n\r\n{body}",
        body.len()
    )?;
    let mut status = [0u8; 12];
    s.read_exact(&mut status)?;
    if status.starts_with(b"HTTP/1.1 2") || status.starts_with(b"HTTP/1.0 2") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("answered {}", String::from_utf8_lossy(&status[9..12]))))
    }
}
