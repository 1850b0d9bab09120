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
    pub log: mpsc::Receiver<String>,
    _dir: Option<TempDir>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// Spawns `cmd` and waits for a line containing `listening on http://`,
/// taking the address from it. Every line goes to `log`.
fn spawn_listening(mut cmd: Command, from_stderr: bool, dir: Option<TempDir>) -> Proc {
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
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(i) = line.find("listening on http://") {
                let rest = &line[i + "listening on http://".len()..];
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                if let Some(tx) = addr_tx.take() {
                    let _ = tx.send(addr);
                }
            }
            let _ = log_tx.send(line);
        }
    });
    let addr = match addr_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(a) => a.parse().expect("address in the listening line"),
        Err(_) => {
            let _ = child.kill();
            let status = child.wait();
            panic!("binary did not report a listening address (exit: {status:?})");
        }
    };
    Proc { child, addr, log: log_rx, _dir: dir }
}

/// Starts `tollgate-mock` on a free port with extra arguments.
pub fn start_mock(args: &[&str]) -> Proc {
    let mut cmd = Command::new(bin("tollgate-mock"));
    cmd.args(["--listen", "127.0.0.1:0"]).args(args);
    spawn_listening(cmd, false, None)
}

/// Starts `tollgate` with `config` (TOML text) on a free port.
pub fn start_gateway(config: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let dir = TempDir::new("gw");
    let path = dir.0.join("tollgate.toml");
    std::fs::write(&path, config).expect("write config");
    let mut cmd = Command::new(bin("tollgate"));
    cmd.arg("--config").arg(&path).args(["--listen", "127.0.0.1:0", "--log", "info"]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    spawn_listening(cmd, true, Some(dir))
}

/// A configuration routing `gpt-4o-mini` (and `alias`, renamed upstream to
/// `real-model`) to an OpenAI-compatible upstream at `upstream`.
pub fn config_for(upstream: SocketAddr, workers: usize, extra_server: &str) -> String {
    format!(
        r#"
[server]
workers = {workers}
{extra_server}

[[providers]]
name = "up"
kind = "openai-compatible"
base_url = "http://{upstream}/v1"

[[models]]
name = "gpt-4o-mini"
targets = [{{ provider = "up" }}]

[[models]]
name = "alias"
targets = [{{ provider = "up", model = "real-model" }}]
"#
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

    /// True when the peer has closed (EOF or reset) within the read timeout.
    pub fn is_closed(&mut self) -> bool {
        self.buf.clear();
        !self.fill()
    }
}

/// A chat completion request with extra header lines (each ending in CRLF).
pub fn chat_request(body: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
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
