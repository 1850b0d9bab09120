//! The end-to-end harness: starts the real `tollgate` and `tollgate-mock`
//! binaries on loopback ports and talks to them over real sockets with a
//! small blocking HTTP/1.1 client written independently of the gateway's
//! own parser, so that a bug there cannot hide itself here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where cargo put the workspace's binaries: next to this test's `deps/`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds every binary first",
        path.display()
    );
    path
}

/// A running binary, killed when dropped.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin listener's address, for a gateway that has one.
    pub admin: Option<SocketAddr>,
    pub log: mpsc::Receiver<String>,
    /// The gateway's configuration file, which tests may rewrite and reload.
    pub config_path: Option<PathBuf>,
    _dir: Option<TempDir>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the process logged: a connection that
        // closed without an answer in one CI run could not be explained
        // afterwards. The reader thread ends at the closed pipe's end, so
        // the wait is short.
        if std::thread::panicking() {
            let mut lines = Vec::new();
            while let Ok(line) = self.log.recv_timeout(Duration::from_millis(500)) {
                lines.push(line);
            }
            let from = lines.len().saturating_sub(200);
            eprintln!(
                "--- the process on {} (pid {}), its last {} lines:",
                self.addr,
                self.child.id(),
                lines.len() - from
            );
            for line in &lines[from..] {
                eprintln!("{line}");
            }
        }
    }
}

impl Proc {
    /// Sends a signal to the process.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with a child pid we own and a valid signal number.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    /// Waits for the exit status, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Log lines seen so far (and until `limit`) that contain `needle`.
    pub fn log_contains(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while let Ok(line) = self.log.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if line.contains(needle) {
                return true;
            }
        }
        false
    }
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tollgate-e2e-{}-{tag}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The address after `marker` in a log line.
fn addr_after(line: &str, marker: &str) -> Option<String> {
    let i = line.find(marker)?;
    Some(line[i + marker.len()..].chars().take_while(|c| !c.is_whitespace()).collect())
}

/// Spawns `cmd` and waits for a line containing `marker` (`... listening on
/// http://`), taking the address from it; a line with `admin listening on
/// http://` before it gives the admin address. Every line goes to `log`.
fn spawn_listening(mut cmd: Command, from_stderr: bool, marker: &'static str, dir: Option<TempDir>) -> Proc {
    if from_stderr {
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    }
    let mut child = cmd.spawn().expect("spawn binary");
    let out: Box<dyn Read + Send> = if from_stderr {
        Box::new(child.stderr.take().expect("stderr"))
    } else {
        Box::new(child.stdout.take().expect("stdout"))
    };
    let (addr_tx, addr_rx) = mpsc::channel();
    let (log_tx, log_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut addr_tx = Some(addr_tx);
        let mut admin = None;
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(a) = addr_after(&line, "admin listening on http://") {
                admin = Some(a);
            } else if let Some(a) = addr_after(&line, marker) {
                if let Some(tx) = addr_tx.take() {
                    let _ = tx.send((a, admin.clone()));
                }
            }
            let _ = log_tx.send(line);
        }
    });
    let (addr, admin) = match addr_rx.recv_timeout(Duration::from_secs(20)) {
        Ok((a, admin)) => {
            (a.parse().expect("address in the listening line"), admin.map(|a| a.parse().expect("admin address")))
        }
        Err(_) => {
            let _ = child.kill();
            let status = child.wait();
            panic!("binary did not report a listening address (exit: {status:?})");
        }
    };
    let config_path = dir.as_ref().map(|d| d.0.join("tollgate.toml"));
    Proc { child, addr, admin, log: log_rx, config_path, _dir: dir }
}

/// Starts `tollgate-mock` on a free port with extra arguments.
/// An address nothing serves: port 1 (tcpmux), which no test machine
/// runs. A port bound and let go can be taken by another test's server
/// (they run in parallel) before the gateway connects, which then answers
/// something instead of refusing (a classifier read "unreadable" for
/// "unreachable" once).
pub fn closed_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1))
}

pub fn start_mock(args: &[&str]) -> Proc {
    start_mock_at("127.0.0.1:0".parse().expect("literal"), args)
}

/// Starts `tollgate-mock` on a given address (to bring an upstream back).
pub fn start_mock_at(addr: SocketAddr, args: &[&str]) -> Proc {
    let mut cmd = Command::new(bin("tollgate-mock"));
    cmd.arg("--listen").arg(addr.to_string()).args(args);
    let marker = if args.contains(&"--tls-cert") {
        "tollgate-mock listening on https://"
    } else {
        "tollgate-mock listening on http://"
    };
    spawn_listening(cmd, false, marker, None)
}

/// Starts `tollgate` with `config` (TOML text) on a free port.
pub fn start_gateway(config: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    start_gateway_as(config, args, env, "tollgate listening on http://")
}

/// [`start_gateway`] for a configuration with `[server.tls]`.
pub fn start_gateway_tls(config: &str) -> Proc {
    start_gateway_as(config, &[], &[], "tollgate listening on https://")
}

/// [`start_gateway`] with the process's descriptor limit set to `nofile`.
pub fn start_gateway_with_nofile(config: &str, nofile: u64) -> Proc {
    start_gateway_cmd(config, &[], &[], "tollgate listening on http://", Some(nofile))
}

fn start_gateway_as(config: &str, args: &[&str], env: &[(&str, &str)], marker: &'static str) -> Proc {
    start_gateway_cmd(config, args, env, marker, None)
}

fn start_gateway_cmd(
    config: &str,
    args: &[&str],
    env: &[(&str, &str)],
    marker: &'static str,
    nofile: Option<u64>,
) -> Proc {
    let dir = TempDir::new("gw");
    let path = dir.0.join("tollgate.toml");
    std::fs::write(&path, config).expect("write config");
    let mut cmd = Command::new(bin("tollgate"));
    if let Some(n) = nofile {
        use std::os::unix::process::CommandExt;
        // SAFETY: only setrlimit (async-signal-safe) runs between fork and
        // exec, on a local struct.
        unsafe {
            cmd.pre_exec(move || {
                let l = libc::rlimit { rlim_cur: n, rlim_max: n };
                libc::setrlimit(libc::RLIMIT_NOFILE, &l);
                Ok(())
            });
        }
    }
    cmd.arg("--config").arg(&path).args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log", "info"]);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    spawn_listening(cmd, true, marker, Some(dir))
}

/// The key [`config_for`] configures for team `e2e` (all models).
pub const KEY: &str = "tg-e2e-0123456789abcdef";

/// SHA-256 of a key, in hex, as the configuration stores it.
pub fn key_hash(key: &str) -> String {
    let out = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
    let mut child = out.expect("sha256sum");
    child.stdin.take().expect("stdin").write_all(key.as_bytes()).expect("write key");
    let out = child.wait_with_output().expect("sha256sum output");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("hash").to_string()
}

/// A configuration routing `gpt-4o-mini`, `gpt-4o` and `alias` (renamed
/// upstream to `real-model`) to an OpenAI-compatible upstream at
/// `upstream`, with team `e2e` holding [`KEY`].
pub fn config_for(upstream: SocketAddr, workers: usize, extra_server: &str) -> String {
    format!(
        r#"
[server]
workers = {workers}
admin_tokens = ["{admin_token}"]
{extra_server}

[[providers]]
name = "up"
kind = "openai-compatible"
base_url = "http://{upstream}/v1"
forward_headers = ["x-mock-*"]

[[models]]
name = "gpt-4o-mini"
targets = [{{ provider = "up" }}]

[[models]]
name = "gpt-4o"
targets = [{{ provider = "up" }}]

[[models]]
name = "alias"
targets = [{{ provider = "up", model = "real-model" }}]

{team_and_key}"#,
        team_and_key = team_and_key(),
        admin_token = key_hash(ADMIN_TOKEN),
    )
}

/// The admin token [`config_for`]'s configurations accept.
pub const ADMIN_TOKEN: &str = "tga-e2e-0123456789abcdef";

/// `GET path` on an admin listener, with [`ADMIN_TOKEN`].
pub fn admin_get(admin: SocketAddr, path: &str) -> Response {
    admin_get_as(admin, path, ADMIN_TOKEN)
}

/// `GET path` on the admin listener with another token (a viewer's).
pub fn admin_get_as(admin: SocketAddr, path: &str, token: &str) -> Response {
    one_request(
        admin,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n").as_bytes(),
    )
}

/// Tokens and keys the explorer's tests give another team and viewers.
pub const OTHER_KEY: &str = "tg-e2e-other-0123456789";
pub const VIEWER: &str = "tgv-e2e-viewer-0123456789";
/// A viewer granted captured bodies.
pub const AUDITOR: &str = "tgv-e2e-auditor-0123456789";

/// `config` with `gpt-4o-mini` priced at $1,000 per million tokens in and
/// out, so that a handful of small requests moves a budget.
pub fn priced(config: String) -> String {
    config.replace(
        "[[models]]\nname = \"gpt-4o-mini\"\ntargets = [{ provider = \"up\" }]",
        "[[models]]\nname = \"gpt-4o-mini\"\ntargets = [{ provider = \"up\" }]\nprice = { input_per_mtok = 1000.0, output_per_mtok = 1000.0 }",
    )
}

/// `config` with team `e2e`'s budget set to `budget` (an inline table).
pub fn team_budget(config: String, budget: &str) -> String {
    config.replace(
        "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]",
        &format!("[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]\nbudget = {budget}"),
    )
}

/// The request records (JSON lines) of every record file in a `[logging] dir`.
pub fn read_records(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("records dir") {
        // The record files, as `tollgate report` picks them (beside them
        // may be the retention thread's list).
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if !(name.starts_with("tollgate-requests-") && name.ends_with(".jsonl")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("records file");
        // The writer thread may be in the middle of appending a batch: what
        // follows the last newline is a record still being written, read
        // again on the next try (as a log shipper would).
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        lines.extend(whole.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON record")));
    }
    lines
}

/// The records in `dir` once there are at least `n` (waiting up to 5 s).
pub fn wait_records(dir: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let mut records = Vec::new();
    wait_until(Duration::from_secs(5), "records", || {
        records = read_records(dir);
        records.len() >= n
    });
    records
}

/// Team `e2e`, allowed every model, holding [`KEY`]: the tail of every
/// test configuration.
pub fn team_and_key() -> String {
    format!(
        "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]\n\n[[keys]]\nname = \"e2e\"\nteam = \"e2e\"\nsha256 = \"{}\"\n",
        key_hash(KEY)
    )
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Asserts the OpenAI error shape and returns `error.code`.
    pub fn error_code(&self) -> String {
        let v = self.json();
        let e = &v["error"];
        assert!(e["message"].is_string() && e["type"].is_string(), "not an OpenAI error body: {v}");
        e["code"].as_str().unwrap_or_default().to_string()
    }
}

/// A blocking client connection.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write request");
    }

    /// Reads more bytes into the buffer; false on EOF or reset.
    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 16384];
        match self.stream.read(&mut tmp) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    /// Reads one response head; `None` if the connection closed first.
    pub fn read_head(&mut self) -> Option<(u16, Vec<(String, String)>)> {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..i].to_vec()).expect("ASCII head");
                self.buf.drain(..i + 4);
                let mut lines = head.split("\r\n");
                let status_line = lines.next().expect("status line");
                let status = status_line.split(' ').nth(1).expect("status").parse().expect("status code");
                let headers = lines
                    .map(|l| {
                        let (n, v) = l.split_once(':').expect("header colon");
                        (n.trim().to_string(), v.trim().to_string())
                    })
                    .collect();
                return Some((status, headers));
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Reads one whole response, skipping `100 Continue`.
    pub fn read_response(&mut self) -> Option<Response> {
        self.read_response_with(|_| {})
    }

    /// Like `read_response`, calling `on_data` with each body piece as it
    /// arrives (for timing streams).
    pub fn read_response_with(&mut self, mut on_data: impl FnMut(&[u8])) -> Option<Response> {
        let (mut status, mut headers) = self.read_head()?;
        while status == 100 {
            (status, headers) = self.read_head()?;
        }
        let get = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
        let chunked = get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let mut body = Vec::new();
        if chunked {
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    if !self.fill() {
                        return None;
                    }
                };
                let size = usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).ok()?.trim(), 16).ok()?;
                self.buf.drain(..line_end + 2);
                while self.buf.len() < size + 2 {
                    if !self.fill() {
                        return None;
                    }
                }
                on_data(&self.buf[..size]);
                body.extend_from_slice(&self.buf[..size]);
                self.buf.drain(..size + 2);
                if size == 0 {
                    break;
                }
            }
        } else if let Some(len) = get("content-length") {
            let len: usize = len.parse().ok()?;
            while self.buf.len() < len {
                if !self.fill() {
                    return None;
                }
            }
            body = self.buf.drain(..len).collect();
            on_data(&body);
        } else if !matches!(status, 204 | 304) {
            while self.fill() {}
            body = std::mem::take(&mut self.buf);
        }
        Some(Response { status, headers, body, chunked })
    }

    /// Reads until the bytes read so far hold `needle` (the response's
    /// head and body as they came, chunk lines included); panics if the
    /// connection ends first.
    pub fn read_until(&mut self, needle: &str) -> String {
        while !String::from_utf8_lossy(&self.buf).contains(needle) {
            assert!(self.fill(), "ended before {needle:?}: {}", String::from_utf8_lossy(&self.buf));
        }
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Closes the connection with a reset (`SO_LINGER` 0), as a client
    /// that hangs up at once does: the server's next write fails.
    pub fn reset(self) {
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: a valid socket and a `linger` of the right size.
        let set = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&self.stream),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0, "SO_LINGER");
    }

    /// True when the peer closes (EOF or reset) within the read timeout;
    /// false when bytes arrive or the timeout passes with the connection open.
    /// Whether the server has closed the connection by now, without
    /// waiting: false while it is open and silent.
    pub fn closed_now(&self) -> bool {
        self.stream.set_nonblocking(true).expect("nonblocking");
        let mut one = [0u8; 1];
        let closed = match self.stream.peek(&mut one) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        };
        self.stream.set_nonblocking(false).expect("blocking");
        closed
    }

    pub fn is_closed(&mut self) -> bool {
        self.buf.clear();
        let mut tmp = [0u8; 1024];
        match self.stream.read(&mut tmp) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }
}

/// A chat completion request with [`KEY`] and extra header lines (each
/// ending in CRLF).
pub fn chat_request(body: &str, extra_headers: &str) -> Vec<u8> {
    chat_request_with_key(body, &format!("Authorization: Bearer {KEY}\r\n{extra_headers}"))
}

/// A chat completion request with exactly the given extra headers.
pub fn chat_request_with_key(body: &str, headers: &str) -> Vec<u8> {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `POST path` with a JSON body, [`KEY`] and extra header lines (each
/// ending in CRLF).
pub fn post_json(path: &str, body: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nAuthorization: Bearer {KEY}\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `GET path` with [`KEY`].
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\n\r\n").into_bytes()
}

/// `POST /admin/reload` on the admin listener.
pub fn admin_reload(gw: &Proc) -> Response {
    let raw = format!("POST /admin/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n");
    one_request(gw.admin.expect("admin listener"), raw.as_bytes())
}

/// One request on a fresh connection.
pub fn one_request(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut c = Client::connect(addr);
    c.send(raw);
    c.read_response().expect("a response")
}

pub const SMALL_CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
pub const STREAM_CHAT: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")).map(str::to_string))
        .collect()
}

/// A test certificate authority and a server certificate it signed, as PEM
/// files in a temporary directory, made fresh for each test.
pub struct TestPki {
    pub dir: TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestPki {
    /// A CA, and a certificate for `names` (DNS names or IP addresses).
    pub fn new(names: &[&str]) -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Tollgate test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key")).expect("CA");
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        let cert = params.signed_by(&key, &ca).expect("server certificate");
        let dir = TempDir::new("pki");
        let (ca_path, cert_path, key_path) = (dir.0.join("ca.pem"), dir.0.join("server.pem"), dir.0.join("server.key"));
        std::fs::write(&ca_path, ca.pem()).expect("write CA");
        std::fs::write(&cert_path, cert.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        TestPki { dir, ca: ca_path, cert: cert_path, key: key_path }
    }

    /// Arguments that make `tollgate-mock` serve HTTPS with this certificate.
    pub fn mock_args(&self) -> Vec<String> {
        vec!["--tls-cert".into(), self.cert.display().to_string(), "--tls-key".into(), self.key.display().to_string()]
    }
}

/// A `redis-server` on a free loopback port, killed when dropped. Its data
/// lives in a temporary directory, appended and synced on every write, so
/// that a test can kill it and bring it back with its totals.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
    /// Extra server arguments (TLS, a password), kept for restarts.
    args: Vec<String>,
    /// What `redis-cli` needs to reach it.
    cli_args: Vec<String>,
    tls: bool,
}

impl Redis {
    /// `None` when `redis-server` is not installed, unless
    /// `TOLLGATE_REQUIRE_REDIS` is set (CI sets it), which makes that a
    /// failure instead.
    pub fn start() -> Option<Redis> {
        Redis::start_with(None, None)
    }

    /// With `pki`, TLS only (its certificate, no client certificates);
    /// with `password`, `requirepass`.
    pub fn start_with(pki: Option<&TestPki>, password: Option<&str>) -> Option<Redis> {
        let found = Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success());
        if !found {
            assert!(std::env::var_os("TOLLGATE_REQUIRE_REDIS").is_none(), "redis-server is required");
            eprintln!("skipped: no redis-server");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let (mut args, mut cli_args) = (Vec::new(), Vec::new());
        if let Some(pki) = pki {
            let path = |p: &PathBuf| p.display().to_string();
            args.extend(["--port".into(), "0".into(), "--tls-port".into(), port.to_string()]);
            args.extend(["--tls-cert-file".into(), path(&pki.cert), "--tls-key-file".into(), path(&pki.key)]);
            args.extend(["--tls-ca-cert-file".into(), path(&pki.ca), "--tls-auth-clients".into(), "no".into()]);
            cli_args.extend(["--tls".into(), "--cacert".into(), path(&pki.ca), "-h".into(), "localhost".into()]);
        }
        if let Some(pw) = password {
            args.extend(["--requirepass".into(), pw.to_string()]);
            cli_args.extend(["-a".into(), pw.to_string(), "--no-auth-warning".into()]);
        }
        let mut r = Redis { port, child: None, dir: TempDir::new("redis"), args, cli_args, tls: pki.is_some() };
        r.restart();
        Some(r)
    }

    /// Starts (again) on the same port, with the same data.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(&self.dir.0)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let what = format!("redis-server to answer PING on port {}", self.port);
        wait_until(Duration::from_secs(10), &what, || self.cli(&["PING"]) == "PONG");
    }

    /// SIGKILL: gone at once, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal (SIGSTOP makes Redis hang with its sockets open).
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) with a child pid we own and a valid signal number.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    pub fn url(&self) -> String {
        match self.tls {
            true => format!("rediss://localhost:{}/0", self.port),
            false => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// A command through `redis-cli`, its raw output trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--raw"])
            .args(&self.cli_args)
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A counter's value (0 when absent).
    pub fn counter(&self, key: &str) -> u64 {
        let v = self.cli(&["GET", key]);
        if v.is_empty() {
            0
        } else {
            v.parse().unwrap_or_else(|_| panic!("counter {key} is {v:?}"))
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.kill();
    }
}

/// A `/metrics` sample's value from a gateway's admin listener, by its
/// full name with labels as written (`tollgate_cluster_degraded{node="a"}`).
pub fn metric(gw: &Proc, sample: &str) -> Option<f64> {
    let text = admin_get(gw.admin.expect("admin listener"), "/metrics").text();
    text.lines().find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `GET /admin/stats` on the admin listener: the dashboard's numbers
/// (`requests`, `errors`, `in_flight`, ...) as the merger has them.
pub fn admin_stats(gw: &Proc) -> serde_json::Value {
    admin_get(gw.admin.expect("admin listener"), "/admin/stats").json()
}

/// How often [`holds_within`] and [`wait_until`] look again.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// Polls `cond` every few milliseconds until it holds: true then, false
/// once `limit` has passed without it (for a caller that reports what it
/// saw in its own words).
pub fn holds_within(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Polls `cond` every few milliseconds until it holds, and fails the test
/// naming `what` if `limit` passes first. Tests wait this way for what
/// they need (a port, a record, a metric, a log line) instead of sleeping
/// for a guess at how long it takes.
pub fn wait_until(limit: Duration, what: &str, cond: impl FnMut() -> bool) {
    assert!(holds_within(limit, cond), "timed out after {limit:?} waiting for {what}");
}

/// The worker that answered, from the `x-request-id` the gateway puts on
/// every answer (`tg-{epoch}-{worker}-{seq}`).
pub fn worker_of(r: &Response) -> usize {
    let id = r.header("x-request-id").unwrap_or_else(|| panic!("no x-request-id: {:?}", r.headers));
    let mut parts = id.rsplit('-');
    let _seq = parts.next();
    parts.next().and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("no worker in x-request-id {id:?}"))
}

/// Sends `raw` on fresh connections (which the kernel spreads over the
/// workers' listeners) until each of the gateway's `workers` has answered
/// it once in a way `seen` accepts; fails the test naming `what` after
/// `limit`. For what only grows (a day's spend, a minute's requests, a
/// reload applied), one such answer from a worker means that worker has
/// caught up.
pub fn wait_every_worker(
    gw: &Proc,
    workers: usize,
    limit: Duration,
    what: &str,
    raw: &[u8],
    mut seen: impl FnMut(&Response) -> bool,
) {
    let mut caught_up = vec![false; workers];
    let all = holds_within(limit, || {
        let r = one_request(gw.addr, raw);
        if seen(&r) {
            let w = worker_of(&r);
            assert!(w < workers, "worker {w} answered; the gateway was started with {workers}");
            caught_up[w] = true;
        }
        caught_up.iter().all(|&c| c)
    });
    assert!(all, "timed out after {limit:?} waiting for every worker to {what}; caught up: {caught_up:?}");
}

/// A key of team `e2e` that is itself never admitted.
pub const PROBE_KEY: &str = "tg-probe-0123456789abcdef";

/// The `[[keys]]` table of [`PROBE_KEY`], to append to a configuration:
/// a second key of team `e2e` whose own `limits` refuse everything
/// (`budget = { daily_usd = 0.0 }` or `rate_limit = { requests_per_minute
/// = 0 }`). The team is checked before the key, so a request with it is
/// refused naming the team once the worker that answers sees the team at
/// its limit, and naming the key until then; either way nothing is
/// admitted, spent or sent upstream. It shows what each worker sees
/// without changing it.
pub fn probe_key(limits: &str) -> String {
    format!("\n[[keys]]\nname = \"probe\"\nteam = \"e2e\"\nsha256 = \"{}\"\n{limits}\n", key_hash(PROBE_KEY))
}

/// A chat completion request with [`PROBE_KEY`].
pub fn probe_request() -> Vec<u8> {
    chat_request_with_key(SMALL_CHAT, &format!("Authorization: Bearer {PROBE_KEY}\r\n"))
}

/// Whether `r` refuses a request naming team `e2e` (for a probe: the
/// worker that answered sees the team at its limit).
pub fn refused_for_team(r: &Response) -> bool {
    r.status == 429 && r.json()["error"]["message"].as_str().is_some_and(|m| m.starts_with("team \"e2e\" "))
}

/// A process's resident memory in MB, from /proc.
pub fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

/// The admin listener's dashboard as headless Chromium renders it for a
/// token (its DOM after five seconds of virtual time); `None` where no
/// Chromium is installed (a failure where `TOLLGATE_REQUIRE_CHROMIUM` is
/// set, as in CI).
pub fn dashboard_dom(admin: SocketAddr, token: &str) -> Option<String> {
    dashboard_dom_at(admin, "/", token)
}

/// [`dashboard_dom`] of the page at `path` (`/?request=ID`, say).
pub fn dashboard_dom_at(admin: SocketAddr, path: &str, token: &str) -> Option<String> {
    let Some(browser) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
    else {
        assert!(std::env::var_os("TOLLGATE_REQUIRE_CHROMIUM").is_none(), "chromium is required");
        eprintln!("skipped the page: no chromium");
        return None;
    };
    let url = format!("http://{admin}{path}#token={token}");
    let headless =
        ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=5000"];
    let out =
        std::process::Command::new(browser).args(headless).arg("--dump-dom").arg(&url).output().expect("chromium runs");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits, when the minute is in its last ten seconds, for the next one:
/// a test of per-minute limits then does not straddle two minutes. The
/// wait is the clock's own, computed, not guessed.
pub fn start_early_in_a_minute() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    if now.as_secs() % 60 > 50 {
        std::thread::sleep(std::time::Duration::from_secs(61 - now.as_secs() % 60));
    }
}

/// An upstream that answers every request with `pieces`, written one by
/// one with a pause between, so that the gateway reads them separately.
/// A TCP connection to `to` from the loopback address `from` (any of
/// 127.0.0.0/8), as a client on another machine would come from its own.
pub fn connect_from(from: std::net::Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = to else { return Err(std::io::ErrorKind::Unsupported.into()) };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket, owned by the `TcpStream` made from it (which
    // closes it) or closed here on failure; the addresses are valid
    // `sockaddr_in`s of the length given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(from, 0);
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sockaddr(*to.ip(), to.port());
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// Reads one request (its head, then its Content-Length body) from `c`
/// for a test's upstream; `buf` keeps what came after it, for the next.
/// `None` when the connection ends first.
pub fn read_request(c: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(h) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..h]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= h + 4 + len {
                return Some(buf.drain(..h + 4 + len).collect());
            }
        }
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

pub fn scripted_upstream(pieces: Vec<Vec<u8>>) -> SocketAddr {
    upstream(move |mut c| {
        let mut buf = Vec::new();
        if read_request(&mut c, &mut buf).is_none() {
            return;
        }
        for p in &pieces {
            if c.write_all(p).is_err() {
                return;
            }
            let _ = c.flush();
            // Part of the scenario: the next piece comes in another
            // read of the gateway's.
            std::thread::sleep(Duration::from_millis(30));
        }
    })
}

/// An upstream on a port of its own that serves each connection with
/// `serve`, on a thread of its own.
pub fn upstream(serve: impl Fn(std::net::TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let serve = std::sync::Arc::new(serve);
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(c) = conn else { return };
            let serve = serve.clone();
            std::thread::spawn(move || serve(c));
        }
    });
    addr
}
