//! What a bug costs: a request whose handling panics (made to, in the
//! debug binary, by `TOLLGATE_DEBUG_PANIC` and a marker in its body) is
//! recorded and billed like one whose upstream failed, answered 500 where
//! nothing of its answer went yet, and costs no other request anything.
//! (The panic points exist in debug builds only.)
#![cfg(debug_assertions)]

use std::time::Duration;

use tollgate_e2e::*;

const SPENT_TODAY: &str = "tollgate_budget_spent_usd{team=\"e2e\",window=\"day\"}";

/// A priced route, a budgeted team (so that its spend is a metric),
/// records in `logs`, and the gateway set to panic at `point`.
fn faulty_gateway(mock: &Proc, logs: &TempDir, point: &str) -> Proc {
    let config = priced(config_for(mock.addr, 1, &format!("[logging]\ndir = \"{}\"", logs.0.display()))).replace(
        "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]",
        "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]\nbudget = { daily_usd = 1000.0 }",
    );
    start_gateway(&config, &[], &[("TOLLGATE_DEBUG_PANIC", point)])
}

fn marked(stream: bool) -> String {
    format!(
        r#"{{"model":"gpt-4o-mini","stream":{stream},"messages":[{{"role":"user","content":"tollgate-debug-panic: {}"}}]}}"#,
        "a prompt the provider read and bills. ".repeat(40)
    )
}

/// The provider answered, then the gateway panicked before it relayed a
/// byte: the client gets a 500 in OpenAI's error shape, the record says
/// `gateway_fault` with the prompt billed (estimated), the spend counts
/// it, and the next request is served. Before the request's phases were
/// caught, the connection closed with no answer, no record and no spend.
#[test]
fn a_request_that_panics_after_its_provider_answered_is_answered_recorded_and_billed() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("fault-after-upstream");
    let gw = faulty_gateway(&mock, &logs, "after-upstream");
    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    let r = one_request(gw.addr, &chat_request(&marked(false), ""));
    assert_eq!(r.status, 500, "{}", r.text());
    let error = &r.json()["error"];
    assert_eq!(error["code"], "gateway_fault", "{error}");
    assert_eq!(error["type"], "server_error", "{error}");
    assert_eq!(r.header("connection"), Some("close"), "a panicked request's connection is not reused");
    // The worker goes on: the next request, on a new connection, is served.
    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    let recs = wait_records(&logs.0, 3);
    let fault = recs.iter().find(|r| r["end"] == "gateway_fault").unwrap_or_else(|| panic!("{recs:#?}"));
    assert_eq!(fault["status"], 500, "{fault}");
    assert_eq!(fault["provider"], "up", "{fault}");
    assert_eq!(fault["tokens"]["estimated"], true, "{fault}");
    assert!(fault["tokens"]["prompt"].as_u64().is_some_and(|p| p > 300), "the prompt is billed: {fault}");
    let costs: u64 = recs.iter().map(|r| r["cost_micro_usd"].as_u64().expect("priced")).sum();
    assert!(fault["cost_micro_usd"].as_u64().expect("priced") * 2 > costs, "{recs:#?}");
    // The team's spend is every record's, the faulted one's included.
    let want = costs as f64 / 1e6;
    wait_until(Duration::from_secs(5), "the fault's spend in the team's total", || {
        metric(&gw, SPENT_TODAY).is_some_and(|usd| (usd - want).abs() < 1e-6)
    });
}

/// A stream that panics after its first events went: the client's
/// connection closes mid-answer (no error can follow a 200 that began),
/// the record says `gateway_fault`, billed its prompt and the tokens that
/// passed.
#[test]
fn a_stream_that_panics_mid_answer_is_cut_recorded_and_billed() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("fault-mid-stream");
    let gw = faulty_gateway(&mock, &logs, "mid-stream");
    let mut c = Client::connect(gw.addr);
    c.send(&chat_request(&marked(true), "x-mock-chunks: 20\r\nx-mock-chunk-delay-ms: 5\r\n"));
    assert_eq!(c.read_head().map(|h| h.0), Some(200));
    // To its end, which must come before the stream's own, as a reset: an
    // orderly close would read as the end of an answer delimited by it.
    let mut rest = Vec::new();
    let ended = std::io::Read::read_to_end(&mut c.stream, &mut rest);
    assert_eq!(ended.map_err(|e| e.kind()), Err(std::io::ErrorKind::ConnectionReset));
    assert!(!String::from_utf8_lossy(&rest).contains("[DONE]"), "the stream was cut");
    assert_eq!(one_request(gw.addr, &chat_request(STREAM_CHAT, "")).status, 200);
    let recs = wait_records(&logs.0, 2);
    let fault = recs.iter().find(|r| r["end"] == "gateway_fault").unwrap_or_else(|| panic!("{recs:#?}"));
    assert_eq!(fault["tokens"]["estimated"], true, "{fault}");
    assert!(fault["tokens"]["prompt"].as_u64().is_some_and(|p| p > 300), "the prompt is billed: {fault}");
    assert!(fault["tokens"]["completion"].as_u64().is_some_and(|c| c > 0), "what passed is billed: {fault}");
    assert!(fault["cost_micro_usd"].as_u64().is_some_and(|c| c > 0), "{fault}");
}

/// A panic after the request went upstream and before its answer's head
/// was read (inside the upstream call): the provider has it, so its
/// prompt is billed, once, at the target it went to.
#[test]
fn a_request_that_panics_while_its_provider_works_is_billed_once() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("fault-in-call");
    let gw = faulty_gateway(&mock, &logs, "after-request-written");
    let r = one_request(gw.addr, &chat_request(&marked(false), ""));
    assert_eq!(r.status, 500, "{}", r.text());
    let recs = wait_records(&logs.0, 1);
    let fault = &recs[0];
    assert_eq!(fault["end"], "gateway_fault", "{fault}");
    assert_eq!(fault["provider"], "up", "{fault}");
    let prompt = fault["tokens"]["prompt"].as_u64().expect("billed");
    assert!((300..700).contains(&prompt), "the prompt once: {fault}");
    // $1,000 a million tokens: a micro-dollar and a thousandth per token.
    let cost = fault["cost_micro_usd"].as_u64().expect("priced");
    assert!(cost.abs_diff(prompt * 1000) <= 1000, "{fault}");
}

/// A panic after the answer went whole, while it is kept for later
/// (the answer cache, Responses turns): the client has its answer, and
/// the request is recorded completed and billed from the provider's
/// usage, not an estimate.
#[test]
fn a_panic_while_keeping_a_whole_answer_leaves_its_bill_exact() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("fault-keeping");
    let gw = faulty_gateway(&mock, &logs, "keeping");
    let r = one_request(gw.addr, &chat_request(&marked(false), ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    let recs = wait_records(&logs.0, 2);
    for rec in &recs {
        assert_eq!(rec["end"], "completed", "{rec}");
        assert!(rec["tokens"]["estimated"].is_null(), "the provider's usage: {rec}");
        assert!(rec["tokens"]["completion"].as_u64().is_some_and(|c| c > 0), "{rec}");
    }
}
