//! Alerts for people: a budget's soft threshold passed is POSTed as JSON to
//! the configured webhook, from a thread of its own, so that a slow or dead
//! receiver never touches a request. Delivery is best effort (one try,
//! two seconds to connect and four in all, failures logged): the log line
//! and the metric are the record, the webhook is the nudge. The POST is
//! the exporters' ([`crate::post`]).

use std::sync::mpsc;
use std::time::{Duration, Instant};

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
    let started = Instant::now();
    let mut give_up = || started.elapsed() >= 2 * TIMEOUT;
    let headers = "content-type: application/json\r\n";
    let reading = crate::post::Reading::Status;
    let answer = crate::post::post(authority, path, headers, &[body.as_bytes()], TIMEOUT, reading, &mut give_up)?;
    if (200..300).contains(&answer.status) {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("answered {}", answer.status)))
    }
}
