//! OpenTelemetry traces end to end: the real gateway exports to a
//! collector started here (a plain HTTP listener that keeps each export's
//! body), and every export is decoded with the official OTLP protobuf
//! definitions (the `opentelemetry-proto` Python package,
//! `sdk/decode_otlp.py`): GenAI attributes, the client's trace continued,
//! the attempt's span named upstream, hostile `traceparent` values, a
//! collector that refuses or is gone, the queue's bound, and the last
//! spans on shutdown.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tollgate_e2e::*;

/// One export as the collector received it.
struct Export {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// An OTLP/HTTP receiver: keeps every POST's body; answers 503 to the first
/// `refuse` exports, 200 after.
struct Collector {
    addr: SocketAddr,
    exports: Arc<Mutex<Vec<Export>>>,
    refused: Arc<AtomicUsize>,
}

impl Collector {
    fn start(refuse: usize) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let exports = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicUsize::new(0));
        let (kept, count) = (exports.clone(), refused.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let Some(export) = read_post(&mut conn) else { continue };
                if count.load(Ordering::SeqCst) < refuse {
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
                    continue;
                }
                kept.lock().unwrap().push(export);
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n");
            }
        });
        Collector { addr, exports, refused }
    }

    /// Every span received so far, decoded.
    fn spans(&self) -> Vec<Value> {
        let exports = self.exports.lock().unwrap();
        for e in exports.iter() {
            assert_eq!(e.path, "/v1/traces");
            assert_eq!(e.content_type, "application/x-protobuf");
        }
        let bodies: Vec<&[u8]> = exports.iter().map(|e| e.body.as_slice()).collect();
        decode(&bodies).iter().flat_map(|e| e["spans"].as_array().cloned().unwrap_or_default()).collect()
    }

    fn decoded(&self) -> Vec<Value> {
        let exports = self.exports.lock().unwrap();
        let bodies: Vec<&[u8]> = exports.iter().map(|e| e.body.as_slice()).collect();
        decode(&bodies)
    }
}

fn read_post(conn: &mut std::net::TcpStream) -> Option<Export> {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let len: usize = header("content-length")?.parse().ok()?;
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let path = head.split_whitespace().nth(1)?.to_string();
    Some(Export { path, content_type: header("content-type")?, body: buf[head_end..head_end + len].to_vec() })
}

fn decode(bodies: &[&[u8]]) -> Vec<Value> {
    if bodies.is_empty() {
        return Vec::new();
    }
    let dir = TempDir::new("otlp");
    let mut files = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        let f = dir.0.join(format!("{i}.pb"));
        std::fs::write(&f, b).expect("write export");
        files.push(f);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/decode_otlp.py");
    let out = Command::new("python3").arg(script).args(&files).output().expect("python3");
    assert!(
        out.status.success(),
        "the official definitions refused an export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("decoder JSON")
}

/// False (with a notice) where the official definitions are not installed;
/// CI requires them.
fn have_decoder() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import opentelemetry.proto.collector.trace.v1.trace_service_pb2"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("TOLLGATE_REQUIRE_SDK").is_none(), "opentelemetry-proto is required");
        eprintln!("skipped: python3 -c 'import opentelemetry.proto' failed (pip install opentelemetry-proto)");
    }
    ok
}

fn telemetry(collector: SocketAddr, extra: &str) -> String {
    format!("\n[telemetry]\notlp_endpoint = \"http://{collector}\"\nservice_name = \"gw-e2e\"\n{extra}\n")
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

fn spans_of(spans: &[Value], trace_id: &str) -> Vec<Value> {
    spans.iter().filter(|s| s["trace_id"] == trace_id).cloned().collect()
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[test]
fn spans_follow_the_genai_conventions_and_continue_the_clients_trace() {
    if !have_decoder() {
        return;
    }
    let collector = Collector::start(0);
    let mock = start_mock(&[]);
    let dir = TempDir::new("otel-records");
    let config = priced(config_for(mock.addr, 2, ""))
        + &format!("\n[logging]\ndir = \"{}\"\n", dir.0.display())
        + &telemetry(collector.addr, "");
    let gw = start_gateway(&config, &[], &[]);
    let traceparent = format!("traceparent: 00-{CLIENT_TRACE}-{CLIENT_SPAN}-01\r\n");
    // The upstream's view of the request: its head, echoed.
    let echoed = one_request(gw.addr, &chat_request(SMALL_CHAT, &format!("{traceparent}x-mock-echo: head\r\n")));
    assert_eq!(echoed.status, 200);
    let upstream_head = echoed.text().to_ascii_lowercase();
    let sent: Vec<&str> = upstream_head.lines().filter(|l| l.starts_with("traceparent:")).collect();
    assert_eq!(sent.len(), 1, "one traceparent upstream, the gateway's: {upstream_head}");
    let sent = sent[0].trim_start_matches("traceparent:").trim();
    assert!(sent.starts_with(&format!("00-{CLIENT_TRACE}-")), "the client's trace goes on: {sent}");
    assert!(sent.ends_with("-01"));
    let attempt_id = &sent[36..52];
    assert_ne!(attempt_id, CLIENT_SPAN, "the provider's parent is the gateway's attempt, not the client");
    // A priced request with usage, in the same trace; a stream in a new one.
    let priced = one_request(gw.addr, &chat_request(SMALL_CHAT, &traceparent));
    assert_eq!(priced.status, 200);
    let request_id = priced.header("x-request-id").expect("x-request-id").to_string();
    let streamed = one_request(gw.addr, &chat_request(STREAM_CHAT, ""));
    assert_eq!(streamed.status, 200);
    let stream_id = streamed.header("x-request-id").expect("x-request-id").to_string();
    let mut spans = Vec::new();
    wait_until(Duration::from_secs(10), "six spans at the collector", || {
        spans = collector.spans();
        spans.len() >= 6
    });
    let records = wait_records(&dir.0, 3);
    let ours = spans_of(&spans, CLIENT_TRACE);
    let roots: Vec<&Value> = ours.iter().filter(|s| s["kind"] == "SPAN_KIND_SERVER").collect();
    assert_eq!(roots.len(), 2, "{ours:#?}");
    for root in &roots {
        assert_eq!(root["parent_span_id"], CLIENT_SPAN, "the client's span is the parent");
        assert_eq!(root["name"], "chat gpt-4o-mini");
        assert_eq!(attr(root, "gen_ai.operation.name"), "chat");
        assert_eq!(attr(root, "gen_ai.request.model"), "gpt-4o-mini");
        assert_eq!(attr(root, "gen_ai.provider.name"), "openai");
        assert_eq!(attr(root, "gen_ai.response.model"), "gpt-4o-mini");
        assert_eq!(attr(root, "tollgate.team"), "e2e");
        assert_eq!(attr(root, "tollgate.key"), "e2e");
        assert_eq!(attr(root, "tollgate.provider"), "up");
        assert_eq!(attr(root, "http.response.status_code"), 200);
        assert_eq!(root["status"], "STATUS_CODE_UNSET");
        // Sampled, and its parent is remote (bits 8 and 9).
        assert_eq!(root["flags"], 0x301);
        assert!(root["end"].as_u64() > root["start"].as_u64());
    }
    // The priced one: its tokens and cost are the record's.
    let root =
        roots.iter().find(|r| attr(r, "tollgate.request_id") == request_id.as_str()).expect("the priced request");
    let record = records.iter().find(|r| r["id"] == request_id.as_str()).expect("its record");
    assert_eq!(attr(root, "gen_ai.usage.input_tokens"), &record["tokens"]["prompt"]);
    assert_eq!(attr(root, "gen_ai.usage.output_tokens"), &record["tokens"]["completion"]);
    assert_eq!(attr(root, "gen_ai.response.finish_reasons"), &serde_json::json!(["stop"]));
    assert_eq!(record["finish_reasons"], serde_json::json!(["stop"]), "the record says it too");
    let cost = record["cost_micro_usd"].as_f64().expect("priced") / 1e6;
    assert!((attr(root, "tollgate.cost_usd").as_f64().unwrap() - cost).abs() < 1e-9);
    // Each root has one attempt under it; the echoed one is the span the
    // provider was told about.
    for root in &roots {
        let attempts: Vec<&Value> = ours.iter().filter(|s| s["parent_span_id"] == root["span_id"]).collect();
        assert_eq!(attempts.len(), 1, "{ours:#?}");
        let a = attempts[0];
        assert_eq!(a["kind"], "SPAN_KIND_CLIENT");
        assert_eq!(a["name"], "chat gpt-4o-mini");
        assert_eq!(attr(a, "gen_ai.provider.name"), "openai");
        assert_eq!(attr(a, "http.response.status_code"), 200);
        assert_eq!(attr(a, "tollgate.attempt"), 0);
        assert!(a["start"].as_u64() >= root["start"].as_u64() && a["end"].as_u64() <= root["end"].as_u64());
    }
    assert!(ours.iter().any(|s| s["span_id"] == attempt_id), "the attempt the provider saw is exported: {ours:#?}");
    // The stream began a trace of its own, with the gateway's span first.
    let stream_root =
        spans.iter().find(|s| attr(s, "tollgate.request_id") == stream_id.as_str()).expect("the stream's span");
    assert_ne!(stream_root["trace_id"], CLIENT_TRACE);
    assert_eq!(stream_root["parent_span_id"], "");
    assert_eq!(stream_root["flags"], 0x101);
    assert_eq!(attr(stream_root, "tollgate.stream"), true);
    assert!(attr(stream_root, "gen_ai.usage.output_tokens").as_i64().unwrap() > 0);
    assert_eq!(attr(stream_root, "gen_ai.response.finish_reasons"), &serde_json::json!(["stop"]));
    let export = &collector.decoded()[0];
    assert_eq!(export["resource"]["service.name"], "gw-e2e");
    assert_eq!(export["scope"], "tollgate");
    // Counted as exported once the collector took them.
    wait_until(Duration::from_secs(5), "exported spans counted", || {
        metric(&gw, "tollgate_otel_spans_total{result=\"exported\"}").unwrap_or(0.0) >= 6.0
    });
    assert_eq!(metric(&gw, "tollgate_otel_spans_total{result=\"dropped\"}"), Some(0.0));
}

#[test]
fn blocked_requests_and_failed_attempts_have_their_spans() {
    if !have_decoder() {
        return;
    }
    let collector = Collector::start(0);
    let (bad, good) = (start_mock(&["--fail", "503"]), start_mock(&[]));
    let config = format!(
        r#"
[server]
workers = 1
admin_tokens = ["{admin}"]

[routing]
retry_backoff_ms = 5

[[providers]]
name = "bad"
kind = "openai-compatible"
base_url = "http://{bad}/v1"

[[providers]]
name = "good"
kind = "openai-compatible"
base_url = "http://{good}/v1"

[[models]]
name = "gpt-4o-mini"
targets = [{{ provider = "bad" }}, {{ provider = "good" }}]

[[guardrail_profiles]]
name = "strict"
secrets = "block"
deny_words = ["project falcon"]

[[teams]]
name = "e2e"
models = ["*"]
guardrails = "strict"

[[keys]]
name = "e2e"
team = "e2e"
sha256 = "{key}"
{telemetry}"#,
        admin = key_hash(ADMIN_TOKEN),
        bad = bad.addr,
        good = good.addr,
        key = key_hash(KEY),
        telemetry = telemetry(collector.addr, ""),
    );
    let gw = start_gateway(&config, &[], &[]);
    let blocked = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"tell me about project falcon"}]}"#;
    let r = one_request(gw.addr, &chat_request(blocked, ""));
    assert_eq!(r.status, 400, "{}", r.text());
    let blocked_id = r.header("x-request-id").unwrap().to_string();
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    let served_id = r.header("x-request-id").unwrap().to_string();
    let mut spans = Vec::new();
    wait_until(Duration::from_secs(10), "both requests' spans", || {
        spans = collector.spans();
        let roots = spans.iter().filter(|s| s["kind"] == "SPAN_KIND_SERVER").count();
        // Two roots; the blocked one's guardrail span; the served one's two
        // attempts and guardrail span.
        roots >= 2 && spans.len() >= 6
    });
    let root = |id: &str| spans.iter().find(|s| attr(s, "tollgate.request_id") == id).expect("root").clone();
    let children = |root: &Value| -> Vec<Value> {
        spans.iter().filter(|s| s["parent_span_id"] == root["span_id"]).cloned().collect()
    };
    let b = root(&blocked_id);
    assert_eq!(attr(&b, "error.type"), "blocked");
    assert_eq!(attr(&b, "http.response.status_code"), 400);
    assert_eq!(b["status"], "STATUS_CODE_UNSET", "a refusal is the client's error, not the server's");
    assert_eq!(attr(&b, "tollgate.guardrail.rules"), &serde_json::json!(["custom.word.0"]));
    let kids = children(&b);
    assert_eq!(kids.len(), 1, "no attempt for a blocked request: {kids:#?}");
    assert_eq!(kids[0]["name"], "tollgate.guardrails");
    assert_eq!(kids[0]["kind"], "SPAN_KIND_INTERNAL");
    assert_eq!(attr(&kids[0], "tollgate.guardrail.profile"), "strict");
    assert_eq!(attr(&kids[0], "tollgate.guardrail.blocked"), true);
    assert_eq!(attr(&kids[0], "tollgate.guardrail.hits"), 1);
    let s = root(&served_id);
    let mut kids = children(&s);
    kids.sort_by_key(|k| k["start"].as_u64());
    let attempts: Vec<&Value> = kids.iter().filter(|k| k["kind"] == "SPAN_KIND_CLIENT").collect();
    assert_eq!(attempts.len(), 2, "{kids:#?}");
    assert_eq!(attr(attempts[0], "tollgate.provider"), "bad");
    assert_eq!(attr(attempts[0], "http.response.status_code"), 503);
    assert_eq!(attempts[0]["status"], "STATUS_CODE_ERROR");
    assert_eq!(attr(attempts[1], "tollgate.provider"), "good");
    assert_eq!(attempts[1]["status"], "STATUS_CODE_UNSET");
    assert!(attempts[0]["end"].as_u64() <= attempts[1]["start"].as_u64(), "attempts in order");
    assert_ne!(attempts[0]["span_id"], attempts[1]["span_id"]);
    assert!(kids.iter().any(|k| k["name"] == "tollgate.guardrails" && attr(k, "tollgate.guardrail.hits") == 0));
}

/// A tenant's `traceparent` is outside bytes: whatever it holds, the
/// request is served, a malformed one starts a new trace, and the
/// provider receives a well-formed header (never the tenant's bytes).
#[test]
fn hostile_traceparent_values_start_a_new_trace() {
    if !have_decoder() {
        return;
    }
    let collector = Collector::start(0);
    let mock = start_mock(&[]);
    let gw = start_gateway(&(config_for(mock.addr, 1, "") + &telemetry(collector.addr, "")), &[], &[]);
    let long = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01{}", "-x".repeat(3000));
    let hostile = [
        format!("00-{}-{CLIENT_SPAN}-01", CLIENT_TRACE.to_uppercase()),
        format!("00-{}-{CLIENT_SPAN}-01", "0".repeat(32)),
        format!("00-{CLIENT_TRACE}-{}-01", "0".repeat(16)),
        format!("ff-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
        format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01\r\ntraceparent: 00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
        long,
        "00-4bf92f3577b34da6a3ce929d0e0e47\u{e9}-00f067aa0ba902b7-01".to_string(),
        "garbage".to_string(),
    ];
    let mut ids = Vec::new();
    for (i, value) in hostile.iter().enumerate() {
        let r =
            one_request(gw.addr, &chat_request(SMALL_CHAT, &format!("x-mock-echo: head\r\ntraceparent: {value}\r\n")));
        assert_eq!(r.status, 200, "{i}: {}", r.text());
        let head = r.text();
        let sent: Vec<&str> = head.lines().filter(|l| l.to_ascii_lowercase().starts_with("traceparent:")).collect();
        assert_eq!(sent.len(), 1, "{i}: {head}");
        let sent = sent[0].split_once(':').unwrap().1.trim();
        assert_eq!(sent.len(), 55, "{i}: {sent}");
        // Case 4 carries two headers, both valid: W3C says neither is
        // continued.
        assert!(!sent.contains(CLIENT_TRACE), "{i}: a malformed parent was continued: {sent}");
        ids.push(r.header("x-request-id").unwrap().to_string());
    }
    let mut spans = Vec::new();
    wait_until(Duration::from_secs(10), "every request's span", || {
        spans = collector.spans();
        ids.iter().all(|id| spans.iter().any(|s| attr(s, "tollgate.request_id") == id.as_str()))
    });
    for (i, id) in ids.iter().enumerate() {
        let root = spans.iter().find(|s| attr(s, "tollgate.request_id") == id.as_str()).unwrap();
        assert_eq!(root["parent_span_id"], "", "{i}: a new trace has no parent");
        assert_eq!(root["flags"], 0x101, "{i}");
    }
}

#[test]
fn an_unsampled_parent_is_not_traced_and_goes_upstream_as_sent() {
    if !have_decoder() {
        return;
    }
    let collector = Collector::start(0);
    let mock = start_mock(&[]);
    let gw =
        start_gateway(&(config_for(mock.addr, 1, "") + &telemetry(collector.addr, "sample_ratio = 0.0")), &[], &[]);
    let unsampled = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");
    let r =
        one_request(gw.addr, &chat_request(SMALL_CHAT, &format!("x-mock-echo: head\r\ntraceparent: {unsampled}\r\n")));
    assert!(r.text().contains(&format!("traceparent: {unsampled}")), "{}", r.text());
    // No parent and a ratio of 0: not traced either. A sampled parent is,
    // but not for a client without a valid key (it could crowd out the
    // spans of others).
    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    let forged = format!("Authorization: Bearer tg-nope\r\ntraceparent: 00-{CLIENT_TRACE}-{CLIENT_SPAN}-01\r\n");
    assert_eq!(one_request(gw.addr, &chat_request_with_key(SMALL_CHAT, &forged)).status, 401);
    let sampled = one_request(
        gw.addr,
        &chat_request(SMALL_CHAT, &format!("traceparent: 00-{CLIENT_TRACE}-{CLIENT_SPAN}-01\r\n")),
    );
    let id = sampled.header("x-request-id").unwrap().to_string();
    let mut spans = Vec::new();
    wait_until(Duration::from_secs(10), "the sampled request's spans", || {
        spans = collector.spans();
        spans.len() >= 2
    });
    // One more export interval: nothing else arrives.
    std::thread::sleep(Duration::from_millis(1200));
    let spans = collector.spans();
    assert_eq!(spans.len(), 2, "only the sampled request: {spans:#?}");
    assert!(spans.iter().any(|s| attr(s, "tollgate.request_id") == id.as_str()));
}

#[test]
fn a_refusing_collector_is_retried_and_a_dead_one_costs_requests_nothing() {
    if !have_decoder() {
        return;
    }
    // Two 503s, then the export goes through on its third try.
    let collector = Collector::start(2);
    let mock = start_mock(&[]);
    let gw = start_gateway(&(config_for(mock.addr, 1, "") + &telemetry(collector.addr, "")), &[], &[]);
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
    assert_eq!(r.status, 200);
    wait_until(Duration::from_secs(10), "the span after two refusals", || !collector.spans().is_empty());
    assert_eq!(collector.refused.load(Ordering::SeqCst), 2);
    assert_eq!(metric(&gw, "tollgate_otel_spans_total{result=\"dropped\"}"), Some(0.0));
    drop(gw);

    // A collector that is gone: requests are served as ever, and the
    // exports that fail are counted as dropped.
    let gone = closed_addr();
    let gw = start_gateway(&(config_for(mock.addr, 1, "") + &telemetry(gone, "")), &[], &[]);
    for i in 0..20 {
        assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200, "request {i}");
    }
    wait_until(Duration::from_secs(10), "failed exports counted", || {
        metric(&gw, "tollgate_otel_spans_total{result=\"dropped\"}").unwrap_or(0.0) >= 40.0
    });
    assert_eq!(metric(&gw, "tollgate_otel_spans_total{result=\"exported\"}"), Some(0.0));
}

/// A collector that takes the connection and never answers holds the
/// exporter in its first export (for `timeout_ms`): nothing drains the
/// queue, so it fills to `queue_bytes_max`, and what comes after is dropped
/// at the worker, counted, without the queue growing past its bound.
#[test]
fn a_stuck_collector_fills_the_queue_to_its_bound_and_no_further() {
    let stuck = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = stuck.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in stuck.incoming() {
            held.push(conn);
        }
    });
    let mock = start_mock(&[]);
    let max = 262_144u64;
    let extra = format!("queue_bytes_max = {max}\ntimeout_ms = 60000");
    let gw = start_gateway(&(config_for(mock.addr, 1, "") + &telemetry(addr, &extra)), &[], &[]);
    let dropped = || metric(&gw, "tollgate_otel_spans_total{result=\"dropped\"}").unwrap_or(0.0);
    let mut c = Client::connect(gw.addr);
    let mut queued_max = 0.0f64;
    let mut sent = 0;
    // About 600 bytes of spans a request: the bound holds ~400 requests'.
    while dropped() == 0.0 {
        for _ in 0..20 {
            c.send(&chat_request(SMALL_CHAT, ""));
            assert_eq!(c.read_response().expect("answer").status, 200);
        }
        sent += 20;
        queued_max = queued_max.max(metric(&gw, "tollgate_otel_queue_bytes").unwrap_or(0.0));
        assert!(sent < 5_000, "nothing dropped after {sent} requests; queue at {queued_max}");
    }
    for _ in 0..10 {
        for _ in 0..20 {
            c.send(&chat_request(SMALL_CHAT, ""));
            assert_eq!(c.read_response().expect("answer").status, 200);
        }
        std::thread::sleep(Duration::from_millis(30));
        queued_max = queued_max.max(metric(&gw, "tollgate_otel_queue_bytes").unwrap_or(0.0));
    }
    // Full: within one batch of the bound (a batch is dropped only when it
    // would pass it), and never past it (one worker: no race between
    // cores).
    assert!(queued_max <= max as f64, "queue reached {queued_max} bytes over a {max} bound");
    wait_until(Duration::from_secs(5), "the queue holding what it took", || {
        metric(&gw, "tollgate_otel_queue_bytes").is_some_and(|q| q > (max / 2) as f64)
    });
    assert!(dropped() > 0.0);
    assert_eq!(metric(&gw, "tollgate_otel_spans_total{result=\"exported\"}"), Some(0.0));
    // The collector still holds the export (for 60 s): the process stops
    // within the exporter's 5 s grace all the same.
    let mut gw = gw;
    let asked = std::time::Instant::now();
    gw.signal(libc::SIGTERM);
    let status = gw.wait_exit(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
}

#[test]
fn the_last_spans_reach_the_collector_on_shutdown() {
    if !have_decoder() {
        return;
    }
    let collector = Collector::start(0);
    let mock = start_mock(&[]);
    // Tried until the signal beats the exporter's once-a-second export
    // (else the export, not the shutdown, delivered the spans).
    for round in 0..5 {
        let mut gw = start_gateway(&(config_for(mock.addr, 2, "") + &telemetry(collector.addr, "")), &[], &[]);
        let ids: Vec<String> = (0..5)
            .map(|_| one_request(gw.addr, &chat_request(SMALL_CHAT, "")).header("x-request-id").unwrap().to_string())
            .collect();
        let before = collector.spans();
        let delivered = |spans: &[Value], id: &str| spans.iter().any(|s| attr(s, "tollgate.request_id") == id);
        gw.signal(libc::SIGTERM);
        assert!(gw.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()));
        let spans = collector.spans();
        for id in &ids {
            assert!(delivered(&spans, id), "{id} lost on shutdown");
        }
        if ids.iter().any(|id| !delivered(&before, id)) {
            return;
        }
        eprintln!("round {round}: every span was exported before the signal; again");
    }
    panic!("the shutdown path was never the one that delivered");
}

/// The cache lookup has its span; a semantic lookup's embedding call is a
/// client span under it, billed and traced like any request.
#[test]
fn cache_lookups_and_their_embedding_calls_have_spans() {
    if !have_decoder() {
        return;
    }
    let collector = Collector::start(0);
    let mock = start_mock(&[]);
    let config = config_for(mock.addr, 1, "").replace(
        "[[teams]]\nname = \"e2e\"",
        "[[models]]\nname = \"embed\"\ntargets = [{ provider = \"up\", model = \"text-embedding-3-small\" }]\n\n\
         [cache]\nsemantic_model = \"embed\"\nsemantic_threshold = 0.9\n\n[[teams]]\nname = \"e2e\"",
    ) + &telemetry(collector.addr, "");
    let gw = start_gateway(&config, &[], &[]);
    let body = r#"{"model":"gpt-4o-mini","temperature":0,"messages":[{"role":"user","content":"What is the capital of France?"}]}"#;
    let miss = one_request(gw.addr, &chat_request(body, ""));
    assert_eq!(miss.header("x-tollgate-cache"), Some("miss"));
    let hit = one_request(gw.addr, &chat_request(body, ""));
    assert_eq!(hit.header("x-tollgate-cache"), Some("hit"));
    let ids = [miss.header("x-request-id").unwrap().to_string(), hit.header("x-request-id").unwrap().to_string()];
    let mut spans = Vec::new();
    wait_until(Duration::from_secs(10), "both requests' spans", || {
        spans = collector.spans();
        ids.iter().all(|id| spans.iter().any(|s| attr(s, "tollgate.request_id") == id.as_str()))
            && spans.iter().any(|s| s["name"] == "embeddings embed")
    });
    let root = |id: &str| spans.iter().find(|s| attr(s, "tollgate.request_id") == id).unwrap().clone();
    let under = |parent: &Value| -> Vec<Value> {
        spans.iter().filter(|s| s["parent_span_id"] == parent["span_id"]).cloned().collect()
    };
    let m = root(&ids[0]);
    let cache: Vec<Value> = under(&m).into_iter().filter(|s| s["name"] == "tollgate.cache").collect();
    assert_eq!(cache.len(), 1, "{spans:#?}");
    assert_eq!(attr(&cache[0], "tollgate.cache.outcome"), "miss");
    // The miss's lookup asked for an embedding: a client span of the same
    // trace under the lookup, its attempt under it, inside the lookup's time.
    let embed = under(&cache[0]);
    assert_eq!(embed.len(), 1, "{spans:#?}");
    let e = &embed[0];
    assert_eq!(e["name"], "embeddings embed");
    assert_eq!(e["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(e["trace_id"], m["trace_id"]);
    assert_eq!(attr(e, "gen_ai.operation.name"), "embeddings");
    assert!(
        e["start"].as_u64() >= cache[0]["start"].as_u64() && e["end"].as_u64() <= cache[0]["end"].as_u64(),
        "{e:#?} {cache:#?}"
    );
    let attempt = under(e);
    assert_eq!(attempt.len(), 1);
    assert!(attempt[0]["start"].as_u64() >= e["start"].as_u64() && attempt[0]["end"].as_u64() <= e["end"].as_u64());
    // The hit: its lookup, no attempt.
    let h = root(&ids[1]);
    let kids = under(&h);
    assert_eq!(kids.len(), 1, "{kids:#?}");
    assert_eq!(kids[0]["name"], "tollgate.cache");
    assert_eq!(attr(&kids[0], "tollgate.cache.outcome"), "hit");
    assert_eq!(attr(&h, "tollgate.cache.outcome"), "hit");
}

#[test]
fn a_bad_telemetry_section_names_its_line_and_the_fix() {
    let mock = start_mock(&[]);
    for (section, needle) in [
        ("otlp_endpoint = \"https://collector:4318\"", "must be http://host:port"),
        ("otlp_endpoint = \"http://collector\"", "needs a host and a port"),
        ("otlp_endpoint = \"http://127.0.0.1:4318\"\nsample_ratio = 1.5", "sample_ratio 1.5 must be between 0 and 1"),
        ("otlp_endpoint = \"http://127.0.0.1:4318\"\nqueue_bytes_max = 10", "queue_bytes_max 10 is below 262144"),
    ] {
        let config = config_for(mock.addr, 1, "") + "\n[telemetry]\n" + section + "\n";
        let dir = TempDir::new("otel-config");
        let path = dir.0.join("gw.toml");
        std::fs::write(&path, &config).unwrap();
        let out = Command::new(bin("tollgate")).arg("check-config").arg(&path).output().expect("tollgate");
        let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{section}: accepted");
        assert!(text.contains("gw.toml:") && text.contains(needle), "{section}: {text}");
    }
}
