//! The admin listener: operations that must not share a port with client
//! traffic. Loopback by default (`admin_listen`). It runs on its own
//! thread with blocking sockets: admin calls are rare, and nothing here may
//! take time from a worker.
//!
//! - `GET /admin/config`: the loaded configuration's file, SHA-256, load
//!   time and generation;
//! - `POST /admin/reload`: reload now; 200 with the new hash, or 400 with
//!   every problem in the file (the old configuration keeps serving);
//! - `GET /metrics`: Prometheus text format, from the merged per-core counts;
//! - `GET /`: the live dashboard, one self-contained page, polling
//!   `GET /admin/stats` (the same totals as JSON) and `GET /admin/series`
//!   (the last hour or day, filtered by team, key, model and provider);
//! - `GET /healthz`.
//!
//! Who may call what is [`authorize`]'s: admin tokens (`[server]
//! admin_tokens`, kept as SHA-256 digests like client keys, reloadable)
//! guard every endpoint but `/healthz` and the page; viewer tokens
//! (`[[server.viewer_tokens]]`, with their teams) read `/admin/stats` and
//! `/admin/series` for their teams only and nothing else; without any
//! token configured, reads are open and nothing that changes state is
//! served.
//!
//! What reaches it from a browser on the operator's machine is refused: a
//! `Host` that is not an address or `localhost` (DNS rebinding), and a
//! cross-origin `Origin` on anything that changes state (CSRF). At most
//! [`ADMIN_CONNECTIONS_MAX`] connections are served at once, each given
//! [`ADMIN_READ`] for its head, so idle connections cannot pile up threads
//! or take descriptors from the client listener.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tollgate_policy::config::Viewer;
use tollgate_policy::keys::{hash_key, presented_key, KeyHash};
use tollgate_protocol::http1::{HeadLimits, HeadScan, Method, RequestHead};
use tollgate_protocol::openai::{write_error_body, write_json_string};

use crate::reload::{Loaded, Reloader};
use crate::respond::reason;
use crate::stats::Totals;

/// Binds the admin listener (so that a taken port fails start-up) and
/// serves it on a new thread.
pub fn start(
    addr: SocketAddr,
    reloader: Arc<Mutex<Reloader>>,
    totals: Arc<Mutex<Totals>>,
    hosts: Vec<String>,
    explorer: Option<crate::explorer::Store>,
) -> std::io::Result<SocketAddr> {
    let hosts = Arc::new(hosts);
    let explorer = Arc::new(explorer);
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let open = Arc::new(AtomicUsize::new(0));
    let by_peer: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    std::thread::Builder::new().name("tollgate-admin".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let peer = stream.peer_addr().map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
            // Over a cap, the connection is closed at once: cheaper for
            // everyone than a thread that waits. One address holds at most
            // a few of the slots, so that a client that opens connections
            // and sends nothing cannot keep the rest out.
            let theirs = {
                let mut by_peer = by_peer.lock().unwrap_or_else(|e| e.into_inner());
                let n = by_peer.entry(peer).or_insert(0);
                *n += 1;
                *n
            };
            let slot = Slot { open: open.clone(), by_peer: by_peer.clone(), peer };
            if open.fetch_add(1, Ordering::Relaxed) >= ADMIN_CONNECTIONS_MAX || theirs > ADMIN_CONNECTIONS_PER_PEER {
                drop(slot);
                drop(stream);
                continue;
            }
            let (reloader, totals, hosts) = (reloader.clone(), totals.clone(), hosts.clone());
            let explorer = explorer.clone();
            // Gives the counts back however the thread ends (a panic too),
            // or when it never starts (the closure is dropped).
            // One thread per admin connection keeps a slow admin client from
            // blocking the next one.
            let spawned = std::thread::Builder::new().name("tollgate-admin-conn".into()).spawn(move || {
                let _slot = slot;
                let _ = serve(stream, &reloader, &totals, &hosts, explorer.as_ref().as_ref());
            });
            if spawned.is_err() {
                tracing::warn!("cannot start an admin connection thread");
            }
        }
    })?;
    Ok(bound)
}

/// One admin connection's place under the caps.
struct Slot {
    open: Arc<AtomicUsize>,
    by_peer: Arc<Mutex<HashMap<IpAddr, usize>>>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        let mut by_peer = self.by_peer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                by_peer.remove(&self.peer);
            }
        }
    }
}

/// Admin connections served at once.
pub const ADMIN_CONNECTIONS_MAX: usize = 32;
/// Of those, from one address.
pub const ADMIN_CONNECTIONS_PER_PEER: usize = 8;

/// Time an admin connection has to send its head.
const ADMIN_READ: Duration = Duration::from_secs(5);

/// Whether `host` (a `Host` header) names this listener the way a person
/// would: an IP address or `localhost`, with or without a port. A name
/// that resolves here through someone else's DNS (rebinding) does not.
fn host_allowed(host: &[u8]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else { return false };
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => return rest.split_once(']').is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok()),
        None => {
            host.rsplit_once(':').map_or(host, |(name, port)| if port.parse::<u16>().is_ok() { name } else { host })
        }
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Whether a request that changes state comes from the admin's own origin:
/// no `Origin` (not a browser, or a same-origin navigation), or one whose
/// host is the request's own `Host`.
fn same_origin(origin: Option<&[u8]>, host: &[u8]) -> bool {
    let Some(origin) = origin else { return true };
    let rest = origin.strip_prefix(b"http://").or_else(|| origin.strip_prefix(b"https://"));
    rest.is_some_and(|r| r.eq_ignore_ascii_case(host))
}

/// The live dashboard page, embedded: no CDN, no build step.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The dashboard's content security policy, as a header line: its one
/// script runs by its hash, nothing else does (no inline handler, no
/// script a tenant's text could bring through a slip of `innerHTML`), it
/// talks to its own origin only, and loads nothing from elsewhere. The
/// page escapes every tenant's text already (`textContent`); this is the
/// second wall (from a review).
fn dashboard_policy() -> &'static str {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let script = DASHBOARD.split_once("<script>").and_then(|(_, rest)| rest.split_once("</script>")).map_or("", |(s, _)| s);
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(script.as_bytes()));
        format!(
            "content-security-policy: default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"
        )
    })
}

/// The heaviest admin request is a few hundred bytes.
const ADMIN_HEAD_BYTES_MAX: usize = 16 * 1024;

fn serve(
    mut stream: TcpStream,
    reloader: &Mutex<Reloader>,
    totals: &Mutex<Totals>,
    hosts: &[String],
    explorer: Option<&crate::explorer::Store>,
) -> std::io::Result<()> {
    // The whole head within ADMIN_READ (each read gets what is left), and
    // no answer held by a client that does not read.
    let head_by = std::time::Instant::now() + ADMIN_READ;
    stream.set_write_timeout(Some(ADMIN_READ))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    // Resumed where the last read's search stopped: searched from the
    // start after every read, a head sent a byte at a time cost the
    // admin thread quadratic work in its length (found by a review).
    let mut scan = HeadScan::default();
    let end = loop {
        if let Some(n) = scan.find_end(&buf) {
            break n;
        }
        if buf.len() > ADMIN_HEAD_BYTES_MAX {
            return respond(&mut stream, 431, &error_json("request head too large", "head_too_large"));
        }
        let left = head_by.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let limits = HeadLimits { head_bytes_max: ADMIN_HEAD_BYTES_MAX, uri_bytes_max: 4096 };
    let head = match RequestHead::parse(bytes::Bytes::copy_from_slice(&buf[..end]), &limits) {
        Ok(h) => h,
        Err(e) => return respond(&mut stream, e.status(), &error_json(e.message(), e.code())),
    };
    let host = head.header(b"host").unwrap_or(b"");
    // `[server] admin_hosts` (read at start): names besides addresses.
    let named = |h: &[u8]| {
        let name = h.split(|&b| b == b':').next().unwrap_or(h);
        hosts.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name))
    };
    if !host_allowed(host) && !named(host) {
        return respond(
            &mut stream,
            421,
            &error_json("the admin listener answers only to an IP address or localhost in Host", "host_not_allowed"),
        );
    }
    if head.method != Method::Get && !same_origin(head.header(b"origin"), host) {
        return respond(&mut stream, 403, &error_json("cross-origin request refused", "cross_origin"));
    }
    let (tokens, viewers) = {
        let r = lock(reloader);
        (r.current().admin_tokens.clone(), r.current().viewers.clone())
    };
    let role = match authorize(&head, &tokens, &viewers) {
        Ok(role) => role,
        Err(refusal) => {
            return respond_as_with(
                &mut stream,
                401,
                "application/json",
                "www-authenticate: Bearer realm=\"tollgate-admin\"\r\n",
                &error_json(refusal, "invalid_admin_token"),
            );
        }
    };
    let open = matches!(
        (head.method, head.path()),
        (Method::Get, b"/healthz" | b"/" | b"/admin/stats" | b"/admin/series" | b"/admin/requests")
    );
    if let (Role::Viewer { .. }, false) = (&role, open) {
        return respond(
            &mut stream,
            403,
            &error_json(
                "a viewer token reads /admin/stats, /admin/series, /admin/requests and the dashboard for its teams only; this endpoint needs an admin token",
                "admin_token_required",
            ),
        );
    }
    match (head.method, head.path()) {
        (Method::Get, b"/healthz") => respond(&mut stream, 200, "{\"status\":\"ok\"}"),
        (Method::Get, b"/") => {
            respond_as_with(&mut stream, 200, "text/html; charset=utf-8", dashboard_policy(), DASHBOARD)
        }
        (Method::Get, b"/admin/stats") => {
            let now = crate::unix_now().as_millis();
            let scope = role.scope();
            let json = totals.lock().unwrap_or_else(|e| e.into_inner()).dashboard_json(now as u64, scope);
            respond(&mut stream, 200, &json)
        }
        (Method::Get, b"/admin/series") => {
            match series_json(&head, role.scope(), totals) {
                Ok(json) => respond(&mut stream, 200, &json),
                Err(problem) => respond(&mut stream, 400, &error_json(&problem, "invalid_query")),
            }
        }
        (Method::Get, b"/admin/requests") => {
            let Some(store) = explorer else {
                return respond(
                    &mut stream,
                    501,
                    &error_json(
                        "the request explorer reads the request records: set [logging] dir (this node's records) or add a [clickhouse] section (every node's), docs/configuration.md",
                        "explorer_needs_records",
                    ),
                );
            };
            let query = query_pairs(&head).and_then(|pairs| crate::explorer::parse(&pairs));
            match query {
                Ok(q) => {
                    let (status, content_type, body) = crate::explorer::answer(store, &q, role.scope(), role.sees_bodies());
                    respond_as(&mut stream, status, content_type, &body)
                }
                Err(problem) => respond(&mut stream, 400, &error_json(&problem, "invalid_query")),
            }
        }
        (Method::Get, b"/metrics") => {
            let text = totals.lock().unwrap_or_else(|e| e.into_inner()).prometheus();
            respond_as(&mut stream, 200, "text/plain; version=0.0.4", &text)
        }
        (Method::Get, b"/admin/config") => {
            let loaded = lock(reloader).current().clone();
            respond(&mut stream, 200, &loaded_json(&loaded, &[]))
        }
        (Method::Post, b"/admin/reload") => {
            let result = lock(reloader).reload();
            match result {
                Ok(r) => {
                    tracing::info!(sha256 = %r.loaded.sha256, generation = r.loaded.generation, "configuration reloaded");
                    respond(&mut stream, 200, &loaded_json(&r.loaded, &r.notes))
                }
                Err(problems) => {
                    tracing::error!("reload refused, the old configuration keeps serving:\n{problems}");
                    respond(&mut stream, 400, &error_json(&problems, "invalid_config"))
                }
            }
        }
        _ => respond(
            &mut stream,
            404,
            &error_json(
                "admin endpoints: GET /admin/stats, GET /admin/series, GET /admin/requests, GET /admin/config, POST /admin/reload, GET /metrics",
                "unknown_url",
            ),
        ),
    }
}

/// The query string's pairs, percent-decoded (`+` as a space).
fn query_pairs(head: &RequestHead) -> Result<Vec<(String, String)>, String> {
    let target = std::str::from_utf8(head.target()).map_err(|_| "the query is not UTF-8".to_string())?;
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = String::from_utf8(tollgate_protocol::sigv4::percent_decode(&value.replace('+', " ")))
            .map_err(|_| format!("{name} is not UTF-8 once decoded"))?;
        pairs.push((name.to_string(), value));
    }
    Ok(pairs)
}

/// `GET /admin/series?window=hour|day&team=&key=&model=&provider=`: the
/// history summed over what the filters match, within the caller's scope.
fn series_json(head: &RequestHead, scope: Option<&[String]>, totals: &Mutex<Totals>) -> Result<String, String> {
    use crate::stats::series::{Filter, Window};
    let mut window = Window::Hour;
    let mut values: [Option<String>; 4] = Default::default();
    for (name, value) in query_pairs(head)? {
        let slot = match name.as_str() {
            "window" => {
                window = match value.as_str() {
                    "hour" => Window::Hour,
                    "day" => Window::Day,
                    other => return Err(format!("window {other:?} is not \"hour\" or \"day\"")),
                };
                continue;
            }
            "team" => 0,
            "key" => 1,
            "model" => 2,
            "provider" => 3,
            other => {
                return Err(format!(
                    "unknown parameter {other:?}: window, team, key, model and provider filter the history"
                ))
            }
        };
        values[slot] = Some(value).filter(|v| !v.is_empty());
    }
    let [team, key, model, provider] = &values;
    let filter = Filter {
        team: team.as_deref(),
        key: key.as_deref(),
        model: model.as_deref(),
        provider: provider.as_deref(),
        scope,
    };
    let now = crate::unix_now().as_secs();
    let key = format!("{window:?}|{team:?}|{key:?}|{model:?}|{provider:?}|{scope:?}");
    Ok(SERIES_ANSWERS.get_or_walk(key, std::time::Instant::now(), || {
        totals.lock().unwrap_or_else(|e| e.into_inner()).series.json(window, &filter, now)
    }))
}

/// The history's recent answers. A walk over a day of buckets holds the
/// totals' mutex for milliseconds, and the merger waits for that mutex: so
/// one walk runs at a time, and a query asked again within
/// [`SeriesAnswers::FRESH`] (every open dashboard polls) gets the answer
/// already made.
struct SeriesAnswers {
    /// (made at, query and scope, answer); at most [`SeriesAnswers::KEPT`].
    answers: Mutex<Vec<(std::time::Instant, String, Arc<str>)>>,
}

static SERIES_ANSWERS: SeriesAnswers = SeriesAnswers { answers: Mutex::new(Vec::new()) };

impl SeriesAnswers {
    const FRESH: Duration = Duration::from_secs(1);
    const KEPT: usize = 32;

    /// The answer to `key` made within [`Self::FRESH`] of `now`, or a new
    /// one from `walk`, made while holding the cache (one walk at a time).
    fn get_or_walk(&self, key: String, now: std::time::Instant, walk: impl FnOnce() -> String) -> String {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers.retain(|(at, ..)| now.saturating_duration_since(*at) < Self::FRESH);
        if let Some((_, _, answer)) = answers.iter().find(|(_, k, _)| *k == key) {
            return answer.to_string();
        }
        let answer: Arc<str> = walk().into();
        if answers.len() >= Self::KEPT {
            answers.remove(0);
        }
        answers.push((now, key, answer.clone()));
        answer.to_string()
    }
}

/// What a caller of the admin listener may see and do.
#[derive(Debug, PartialEq, Eq)]
enum Role {
    /// Everything: an admin token, or no token configured (reads only,
    /// then; [`authorize`] refuses the rest). `token`: one was presented
    /// (captured bodies need it).
    Operator { token: bool },
    /// The figures of these teams, and nothing that changes state.
    Viewer { teams: Vec<String>, bodies: bool },
}

impl Role {
    /// The teams whose figures the caller sees; `None`: every team.
    fn scope(&self) -> Option<&[String]> {
        match self {
            Role::Viewer { teams, .. } => Some(teams),
            Role::Operator { .. } => None,
        }
    }

    /// Whether the caller sees captured prompts and answers: an admin
    /// token, or a viewer's granted them; never a listener without
    /// tokens, whoever can reach it.
    fn sees_bodies(&self) -> bool {
        match self {
            Role::Viewer { bodies, .. } => *bodies,
            Role::Operator { token } => *token,
        }
    }
}

/// Who may call what. `GET /healthz` and the dashboard page (which holds
/// no figures) are open. With admin or viewer tokens configured,
/// everything else needs one (a viewer's reads `/admin/stats` scoped to
/// its teams, see `serve`); with none, reads stay open (the listener is on
/// loopback by default) and every call that changes state is refused: a
/// reload over HTTP needs a token, or SIGHUP, which only the process's
/// owner can send.
fn authorize(head: &RequestHead, tokens: &[KeyHash], viewers: &[Viewer]) -> Result<Role, &'static str> {
    if matches!((head.method, head.path()), (Method::Get, b"/healthz") | (Method::Get, b"/")) {
        return Ok(Role::Operator { token: false });
    }
    // Digests are compared, so timing can reveal something about a guess's
    // digest at most, never about a token (as for client keys).
    let presented = presented_key(head.header(b"authorization"), None).map(hash_key);
    if presented.is_some_and(|p| tokens.contains(&p)) {
        return Ok(Role::Operator { token: true });
    }
    if let Some(v) = presented.and_then(|p| viewers.iter().find(|v| v.token == p)) {
        return Ok(Role::Viewer { teams: v.teams.clone(), bodies: v.bodies });
    }
    match (tokens.is_empty() && viewers.is_empty(), head.method == Method::Get) {
        (true, true) => Ok(Role::Operator { token: false }),
        (true, false) => Err(
            "calls that change state need an admin token: make one with `tollgate keygen --admin`, put its hash in [server] admin_tokens, and send it as Authorization: Bearer; SIGHUP reloads without one",
        ),
        (false, _) => Err("this admin listener needs an admin or viewer token: send Authorization: Bearer <token>"),
    }
}

fn lock(reloader: &Mutex<Reloader>) -> std::sync::MutexGuard<'_, Reloader> {
    // A panic while reloading leaves the Reloader as it was before the
    // reload began (it commits last), so a poisoned lock is still usable.
    reloader.lock().unwrap_or_else(|e| e.into_inner())
}

fn loaded_json(l: &Loaded, notes: &[String]) -> String {
    let mut out = BytesMut::new();
    out.extend_from_slice(b"{\"file\":");
    write_json_string(&mut out, &l.file);
    out.extend_from_slice(
        format!(
            ",\"sha256\":\"{}\",\"loaded_at\":{},\"generation\":{},\"keys\":{},\"models\":{},\"notes\":[",
            l.sha256, l.loaded_at_unix, l.generation, l.keys, l.models
        )
        .as_bytes(),
    );
    for (i, n) in notes.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b",");
        }
        write_json_string(&mut out, n);
    }
    out.extend_from_slice(b"]}");
    String::from_utf8_lossy(&out).into_owned()
}

fn error_json(message: &str, code: &str) -> String {
    let mut out = BytesMut::new();
    write_error_body(&mut out, message, "invalid_request_error", code);
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(stream: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    respond_as(stream, status, "application/json", body)
}

fn respond_as(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) -> std::io::Result<()> {
    respond_as_with(stream, status, content_type, "", body)
}

/// `headers`: extra header lines, each ending in CRLF. Every answer says
/// its type is not to be guessed (a tenant writes some of the texts the
/// JSON and CSV answers hold) and that no other site may frame it (the
/// dashboard acts with the operator's token).
fn respond_as_with(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    headers: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nx-content-type-options: nosniff\r\nx-frame-options: DENY\r\n{headers}connection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let by = std::time::Instant::now() + answer_time(head.len() + body.len());
    write_by(stream, head.as_bytes(), by)?;
    write_by(stream, body.as_bytes(), by)
}

/// The time an answer of `bytes` may take to reach its client: 30 s, and
/// a second more a MiB. Each write's own timeout (`ADMIN_READ`) let a
/// client that reads a few kilobytes every few seconds hold its connection
/// and a 64 MiB export for as long as it liked, and four addresses hold
/// every admin connection, `/metrics` and reloads locked out (found by a
/// review).
fn answer_time(bytes: usize) -> Duration {
    Duration::from_secs(30) + Duration::from_secs((bytes >> 20) as u64)
}

/// Writes `bytes` in pieces, each with the time left until `by`; a
/// `TimedOut` error once it has passed.
fn write_by(stream: &mut TcpStream, mut bytes: &[u8], by: std::time::Instant) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let left = by.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client reads too slowly"));
        }
        stream.set_write_timeout(Some(left.min(ADMIN_READ)))?;
        // A write that timed out having sent nothing is `WouldBlock` on
        // Linux (EAGAIN): the same end as the time passed.
        let n = match stream.write(&bytes[..bytes.len().min(64 * 1024)]) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client reads too slowly"))
            }
            n => n?,
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to a client that reads nothing (or a trickle) ends at its
    /// time, not one write timeout after its last progress.
    #[test]
    fn an_answer_to_a_client_that_does_not_read_ends_at_its_time() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let body = vec![b'x'; 32 << 20];
        let started = std::time::Instant::now();
        let by = started + Duration::from_millis(300);
        let e = write_by(&mut server, &body, by).expect_err("not all written");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < ADMIN_READ, "{:?}", started.elapsed());
        drop(peer);
        assert_eq!(answer_time(64 << 20), Duration::from_secs(94));
    }

    #[test]
    fn hosts_and_origins() {
        for ok in ["127.0.0.1:9090", "127.0.0.1", "localhost:9090", "LOCALHOST", "[::1]:9090", "10.0.0.5:80"] {
            assert!(host_allowed(ok.as_bytes()), "{ok}");
        }
        for bad in ["attacker.example", "attacker.example:9090", "user@127.0.0.1", "127.0.0.1 x", "", "[::1"] {
            assert!(!host_allowed(bad.as_bytes()), "{bad}");
        }
        assert!(same_origin(None, b"127.0.0.1:9090"));
        assert!(same_origin(Some(b"http://127.0.0.1:9090"), b"127.0.0.1:9090"));
        assert!(!same_origin(Some(b"http://attacker.example"), b"127.0.0.1:9090"));
        assert!(!same_origin(Some(b"null"), b"127.0.0.1:9090"));
    }

    /// The policy names the hash of the page's one script (whatever it
    /// becomes), and allows no script by any other way.
    #[test]
    fn the_dashboards_policy_runs_its_own_script_only() {
        use base64::Engine as _;
        use sha2::Digest as _;
        let policy = dashboard_policy();
        let script = &DASHBOARD[DASHBOARD.find("<script>").unwrap() + 8..DASHBOARD.find("</script>").unwrap()];
        assert!(script.len() > 1000, "the page's script: {} bytes", script.len());
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(script.as_bytes()));
        assert!(policy.contains(&format!("script-src 'sha256-{hash}';")), "{policy}");
        assert!(!policy.contains("unsafe-eval") && !policy.contains("script-src 'unsafe-inline'"), "{policy}");
        assert!(policy.ends_with("\r\n") && !policy[..policy.len() - 2].contains('\n'));
    }

    #[test]
    fn series_answers_are_reused_for_a_second_and_bounded() {
        let cache = SeriesAnswers { answers: Mutex::new(Vec::new()) };
        let t0 = std::time::Instant::now();
        let walks = std::cell::Cell::new(0);
        let walk = || {
            walks.set(walks.get() + 1);
            format!("answer {}", walks.get())
        };
        assert_eq!(cache.get_or_walk("q".into(), t0, walk), "answer 1");
        assert_eq!(cache.get_or_walk("q".into(), t0 + Duration::from_millis(900), walk), "answer 1");
        assert_eq!(cache.get_or_walk("other scope".into(), t0, walk), "answer 2", "each query and scope its own");
        assert_eq!(cache.get_or_walk("q".into(), t0 + Duration::from_millis(1001), walk), "answer 3", "stale");
        for i in 0..100 {
            cache.get_or_walk(format!("q{i}"), t0 + Duration::from_millis(1001), walk);
        }
        assert!(cache.answers.lock().unwrap().len() <= SeriesAnswers::KEPT);
    }

    fn head(raw: &str) -> RequestHead {
        let limits = HeadLimits { head_bytes_max: 4096, uri_bytes_max: 1024 };
        RequestHead::parse(bytes::Bytes::copy_from_slice(raw.as_bytes()), &limits).expect("head")
    }

    /// Every combination of token set, presented token and method.
    #[test]
    fn who_may_call_what() {
        let token = "tga-0123456789";
        let tokens = [hash_key(token.as_bytes())];
        let get = |path: &str, auth: &str| head(&format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n"));
        let post = |auth: &str| head(&format!("POST /admin/reload HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n"));
        let good = format!("Authorization: Bearer {token}\r\n");
        let bad = "Authorization: Bearer tga-guess\r\n";
        // No tokens configured: reads open, state changes refused, even
        // with a token in hand.
        assert_eq!(authorize(&get("/metrics", ""), &[], &[]), Ok(Role::Operator { token: false }));
        assert!(!Role::Operator { token: false }.sees_bodies(), "an open listener shows no captured bodies");
        assert!(authorize(&post(""), &[], &[]).is_err());
        assert!(authorize(&post(&good), &[], &[]).is_err());
        // Tokens configured: the right one opens everything.
        for path in ["/metrics", "/admin/stats", "/admin/config"] {
            assert!(authorize(&get(path, ""), &tokens, &[]).is_err(), "{path}");
            assert!(authorize(&get(path, bad), &tokens, &[]).is_err(), "{path}");
            assert_eq!(authorize(&get(path, &good), &tokens, &[]), Ok(Role::Operator { token: true }), "{path}");
        }
        assert!(authorize(&post(bad), &tokens, &[]).is_err());
        assert_eq!(authorize(&post(&good), &tokens, &[]), Ok(Role::Operator { token: true }));
        // Open whatever is configured.
        assert!(authorize(&get("/healthz", ""), &tokens, &[]).is_ok());
        assert!(authorize(&get("/", ""), &tokens, &[]).is_ok());

        // A viewer token is a viewer's, whatever it calls (`serve` then
        // refuses all but the stats); with only viewers configured,
        // reads need a token too.
        let viewer = "tgv-0123456789";
        let viewers = [Viewer { token: hash_key(viewer.as_bytes()), teams: vec!["a".into()], bodies: false }];
        let as_viewer = format!("Authorization: Bearer {viewer}\r\n");
        let scoped = Ok(Role::Viewer { teams: vec!["a".into()], bodies: false });
        assert_eq!(authorize(&get("/admin/stats", &as_viewer), &tokens, &viewers), scoped);
        assert_eq!(authorize(&post(&as_viewer), &tokens, &viewers), scoped);
        assert_eq!(authorize(&get("/admin/stats", &good), &tokens, &viewers), Ok(Role::Operator { token: true }));
        assert!(authorize(&get("/admin/stats", ""), &[], &viewers).is_err());
        assert!(authorize(&get("/admin/stats", &as_viewer), &tokens, &[]).is_err(), "a revoked viewer");
    }
}
