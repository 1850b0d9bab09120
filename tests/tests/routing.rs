//! Routing across targets: fallback when the primary fails before any byte
//! reached the client, circuit breakers, load sharing by weight.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tollgate_e2e::*;

/// `gpt-4o-mini` served by `primary`, then `backup` (model `backup-model`).
fn two_targets(primary: SocketAddr, backup: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[server]
workers = 1
[server.timeouts]
upstream_first_byte_ms = 400

[routing]
max_attempts = 3
retry_backoff_ms = 5
breaker_failures = 3
breaker_cooldown_ms = 500
{extra}

[[providers]]
name = "primary"
kind = "openai-compatible"
base_url = "http://{primary}/v1"
forward_headers = ["x-mock-*"]

[[providers]]
name = "backup"
kind = "openai-compatible"
base_url = "http://{backup}/v1"
forward_headers = ["x-mock-*"]

[[models]]
name = "gpt-4o-mini"
targets = [{{ provider = "primary" }}, {{ provider = "backup", model = "backup-model" }}]

{team_and_key}"#,
        team_and_key = team_and_key()
    )
}

fn assert_served_by_backup(r: &Response, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    assert_eq!(r.header("x-tollgate-route"), Some("backup/backup-model"), "{what}");
}

#[test]
fn every_primary_failure_falls_back_to_the_backup() {
    let backup = start_mock(&[]);
    for (what, primary_args) in
        [("500", vec!["--fail", "500"]), ("reset", vec!["--fail", "reset"]), ("hang", vec!["--fail", "hang"])]
    {
        let primary = start_mock(&primary_args);
        let gw = start_gateway(&two_targets(primary.addr, backup.addr, ""), &[], &[]);
        let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
        assert_served_by_backup(&r, what);
        assert_eq!(r.json()["model"], "backup-model", "{what}: the backup's model name went upstream");
        let s = one_request(gw.addr, &chat_request(STREAM_CHAT, ""));
        assert_served_by_backup(&s, what);
        assert_eq!(sse_data(&s.body).last().map(String::as_str), Some("[DONE]"));
    }
    let gw = start_gateway(&two_targets(closed_addr(), backup.addr, ""), &[], &[]);
    assert_served_by_backup(&one_request(gw.addr, &chat_request(SMALL_CHAT, "")), "down");
    assert_served_by_backup(&one_request(gw.addr, &chat_request(STREAM_CHAT, "")), "down, streaming");
}

/// An attempt that timed out after its request was written, followed by
/// another that answers, is billed its prompt at its own target's price
/// as well as the answer (found by a review: only the last attempt was
/// billed, and the provider may bill each). Here the backup has no price:
/// the request's whole cost is the primary's prompt.
#[test]
fn an_attempt_that_timed_out_after_its_request_was_sent_is_billed_its_prompt() {
    let backup = start_mock(&[]);
    let primary = start_mock(&["--fail", "hang"]);
    let logs = TempDir::new("routing-unanswered");
    let gw = start_gateway(
        &two_targets(primary.addr, backup.addr, &format!("[logging]\ndir = \"{}\"", logs.0.display())),
        &[],
        &[],
    );
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
    assert_served_by_backup(&r, "hang");
    let rec = &wait_records(&logs.0, 1)[0];
    assert_eq!(rec["attempts"].as_array().map(Vec::len), Some(2), "{rec}");
    // gpt-4o-mini's $0.15 a million: a dozen prompt tokens round up to 2.
    assert!(rec["cost_micro_usd"].as_u64().is_some_and(|c| c >= 1), "{rec}");
}

/// An attempt that failed after its request went out is billed its prompt
/// once, also where no attempt follows it: here the backup is too dear
/// for the key's cost ceiling (its prompt alone, at Claude Opus 4's $15 a
/// million, passes $0.00005), so the loop turns once more and sends
/// nothing. Billed at that turn's top and again by the request's end, the
/// primary's prompt was billed twice.
#[test]
fn a_sent_attempt_with_no_attempt_after_it_is_billed_its_prompt_once() {
    let backup = start_mock(&[]);
    let primary = start_mock(&["--fail", "hang"]);
    let logs = TempDir::new("routing-unanswered-once");
    let config = two_targets(primary.addr, backup.addr, &format!("[logging]\ndir = \"{}\"", logs.0.display()))
        .replace("model = \"backup-model\"", "model = \"claude-opus-4\"")
        .replace(
            "name = \"e2e\"\nmodels = [\"*\"]",
            "name = \"e2e\"\nmodels = [\"*\"]\nbudget = { request_usd = 0.00005 }",
        );
    assert!(config.contains("request_usd") && config.contains("claude-opus-4"), "{config}");
    let gw = start_gateway(&config, &[], &[]);
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
    assert_eq!(r.status, 504, "the primary's time-out is the answer: {}", r.text());
    let rec = &wait_records(&logs.0, 1)[0];
    assert_eq!(rec["attempts"].as_array().map(Vec::len), Some(1), "{rec}");
    // gpt-4o-mini's $0.15 a million, rounded up to the micro-dollar.
    let prompt = rec["tokens"]["prompt"].as_u64().expect("the prompt counted");
    assert!(prompt > 0, "{rec}");
    assert_eq!(rec["cost_micro_usd"].as_u64(), Some((prompt * 15).div_ceil(100)), "{rec}");
}

#[test]
fn a_healthy_primary_serves_and_a_client_error_does_not_fall_back() {
    let (primary, backup) = (start_mock(&[]), start_mock(&[]));
    let gw = start_gateway(&two_targets(primary.addr, backup.addr, ""), &[], &[]);
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
    assert_eq!(r.header("x-tollgate-route"), Some("primary/gpt-4o-mini"));
    // 400 is not in fallback_on_status: the client sees the primary's answer.
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, "x-mock-fail: 400\r\n"));
    assert_eq!((r.status, r.header("x-tollgate-route")), (400, Some("primary/gpt-4o-mini")));
}

#[test]
fn when_every_target_fails_the_last_answer_or_error_reaches_the_client() {
    let (primary, backup) = (start_mock(&["--fail", "503"]), start_mock(&["--fail", "503"]));
    let gw = start_gateway(&two_targets(primary.addr, backup.addr, ""), &[], &[]);
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
    assert_eq!(r.status, 503, "the last attempt's own answer is relayed");
    assert_eq!(r.error_code(), "mock_failure");
    let gw = start_gateway(&two_targets(closed_addr(), closed_addr(), ""), &[], &[]);
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
    assert_eq!((r.status, r.error_code().as_str()), (502, "upstream_unreachable"));
}

#[test]
fn the_breaker_opens_costs_nothing_then_recovers() {
    let backup = start_mock(&[]);
    // A primary that fails slowly: each attempt on it costs 150 ms.
    let mut primary = start_mock(&["--fail", "500", "--latency-ms", "150"]);
    let primary_addr = primary.addr;
    let gw = start_gateway(&two_targets(primary_addr, backup.addr, ""), &[], &[]);
    for _ in 0..3 {
        let started = Instant::now();
        assert_served_by_backup(&one_request(gw.addr, &chat_request(SMALL_CHAT, "")), "breaker closed");
        assert!(started.elapsed() >= Duration::from_millis(150));
    }
    // Three failures: open. The primary is skipped without waiting for it.
    let started = Instant::now();
    assert_served_by_backup(&one_request(gw.addr, &chat_request(SMALL_CHAT, "")), "breaker open");
    assert!(started.elapsed() < Duration::from_millis(100), "open breaker still cost {:?}", started.elapsed());

    // The primary recovers on the same port; after the cool-down one probe
    // goes to it, succeeds, and closes the breaker.
    let _ = primary.child.kill();
    let _ = primary.child.wait();
    let healthy = start_mock_at(primary_addr, &[]);
    // The cool-down ends: the breaker reads half-open.
    let state =
        "tollgate_breaker_state{model=\"gpt-4o-mini\",provider=\"primary\",target=\"gpt-4o-mini\",worker=\"0\"}";
    wait_until(Duration::from_secs(5), "the primary's breaker half-open", || metric(&gw, state) == Some(2.0));
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
    assert_eq!(r.header("x-tollgate-route"), Some("primary/gpt-4o-mini"), "probe after cool-down");
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
    assert_eq!(r.header("x-tollgate-route"), Some("primary/gpt-4o-mini"), "closed again");
    drop(healthy);
}

#[test]
fn equal_priorities_share_load_by_weight() {
    let (a, b) = (start_mock(&[]), start_mock(&[]));
    let config = two_targets(a.addr, b.addr, "").replace(
        r#"targets = [{ provider = "primary" }, { provider = "backup", model = "backup-model" }]"#,
        r#"targets = [{ provider = "primary", priority = 0, weight = 3 }, { provider = "backup", model = "backup-model", priority = 0, weight = 1 }]"#,
    );
    let gw = start_gateway(&config, &[], &[]);
    let mut c = Client::connect(gw.addr);
    let mut primary = 0;
    // Four hundred conversations (a request of one keeps to one target).
    for i in 0..400 {
        c.send(&chat_request(&SMALL_CHAT.replace("Say hello", &format!("Say hello {i}")), ""));
        let r = c.read_response().unwrap();
        primary += usize::from(r.header("x-tollgate-route") == Some("primary/gpt-4o-mini"));
    }
    assert!((240..360).contains(&primary), "3:1 weights gave {primary} of 400 to the primary");
}

/// One client's failing requests charge a target's breaker once each,
/// however many attempts they make: two requests of three attempts do not
/// open a breaker that needs three failures, and another request is served.
/// Their back-off is not counted as the gateway's latency, and an answer
/// that stayed 500 after every attempt is recorded as the upstream failing.
#[test]
fn a_request_charges_a_breaker_once_and_its_retries_are_not_gateway_latency() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("breaker");
    let extra = format!(
        "[logging]\ndir = \"{}\"\n[routing]\nmax_attempts = 3\nbreaker_failures = 3\nretry_backoff_ms = 100\nfallback_on_status = [500]",
        logs.0.display()
    );
    let mut gw = start_gateway(&config_for(mock.addr, 1, &extra), &[], &[]);
    for _ in 0..2 {
        let r = one_request(gw.addr, &chat_request(SMALL_CHAT, "x-mock-fail: 500\r\n"));
        assert_eq!(r.status, 500, "{}", r.text());
    }
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
    assert_eq!(r.status, 200, "two requests opened the breaker: {}", r.text());
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    let failed: Vec<_> = recs.iter().filter(|r| r["status"] == 500).collect();
    assert_eq!(failed.len(), 2, "{recs:#?}");
    for r in failed {
        assert_eq!(r["end"], "upstream_failed", "{r}");
        assert_eq!(r["attempts"].as_array().map(Vec::len), Some(3), "{r}");
        // Two back-offs of up to 100 and 200 ms (150 ms on average), and
        // three attempts: none of it is the gateway's. (The bound leaves
        // room for a debug build on a loaded machine: 20 ms failed once
        // with the whole suite running on two cores.)
        let gateway = r["latency_ms"]["gateway"].as_f64().expect("gateway latency");
        assert!(gateway < 50.0, "retries counted as gateway latency: {r}");
    }
}

/// A provider at its rate limit says when to come back (`retry-after`):
/// the request falls back to the backup, and until then the primary gets
/// no attempt at all (the backup serves at once, nothing is spent on a
/// 429); after it, the primary is tried again.
#[test]
fn retry_after_rests_the_target_and_the_backup_serves_meanwhile() {
    let (primary, backup) = (start_mock(&["--fail", "429"]), start_mock(&[]));
    let logs = TempDir::new("retry-after");
    let extra = format!("[logging]\ndir = \"{}\"", logs.0.display());
    let config = two_targets(primary.addr, backup.addr, "").replacen("[routing]", &format!("{extra}\n[routing]"), 1);
    let gw = start_gateway(&config, &[], &[]);
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, "x-mock-retry-after: 2\r\n"));
    assert_served_by_backup(&r, "a 429 with retry-after");
    let rested = Instant::now();
    for _ in 0..3 {
        assert_served_by_backup(&one_request(gw.addr, &chat_request(SMALL_CHAT, "")), "while the primary rests");
    }
    let records = wait_records(&logs.0, 4);
    assert_eq!(records[0]["attempts"].as_array().map(Vec::len), Some(2));
    for r in &records[1..4] {
        assert_eq!(r["attempts"].as_array().map(Vec::len), Some(1), "an attempt on the resting primary: {r}");
    }
    // Once the rest is over, a request tries the primary first again.
    let mut n = 4;
    wait_until(Duration::from_secs(5), "the primary to be tried again", || {
        one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
        n += 1;
        wait_records(&logs.0, n).last().and_then(|r| r["attempts"].as_array().map(Vec::len)) == Some(2)
    });
    assert!(rested.elapsed() >= Duration::from_millis(1900), "the rest was cut short: {:?}", rested.elapsed());
}

/// A model with one target: the provider's 429 reaches the client with its
/// `retry-after`, and until then the gateway answers 429 itself, with the
/// time left, instead of sending more requests into the provider's limit.
#[test]
fn with_every_target_resting_the_gateway_answers_429_with_the_time_left() {
    let mock = start_mock(&[]);
    let gw = start_gateway(&config_for(mock.addr, 1, ""), &[], &[]);
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, "x-mock-fail: 429\r\nx-mock-retry-after: 30\r\n"));
    assert_eq!((r.status, r.header("retry-after")), (429, Some("30")), "{}", r.text());
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
    assert_eq!((r.status, r.error_code().as_str()), (429, "upstream_rate_limited"), "{}", r.text());
    let wait: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).expect("a retry-after");
    assert!((28..=30).contains(&wait), "{wait}");
    // A header that is not a number rests nothing.
    let other = start_mock(&[]);
    let gw = start_gateway(&config_for(other.addr, 1, ""), &[], &[]);
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, "x-mock-fail: 429\r\nx-mock-retry-after: soon\r\n"));
    assert_eq!(r.status, 429);
    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
}

/// Retries are budgeted per target: with no budget, a failing request
/// makes one attempt, however high `max_attempts`; with the default, the
/// banked retries let the first requests retry.
#[test]
fn the_retry_budget_keeps_retries_from_multiplying_an_outage() {
    let mock = start_mock(&["--fail", "500"]);
    let logs = TempDir::new("retry-budget");
    let config = |budget: &str| {
        format!(
            "[logging]\ndir = \"{}\"\n[routing]\nmax_attempts = 3\nretry_backoff_ms = 1\nbreaker_failures = 100\nfallback_on_status = [500]\n{budget}",
            logs.0.display()
        )
    };
    let gw = start_gateway(&config_for(mock.addr, 1, &config("retry_budget = 0.0\nretry_budget_min = 0")), &[], &[]);
    for _ in 0..5 {
        assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 500);
    }
    let records = wait_records(&logs.0, 5);
    for r in &records {
        assert_eq!(r["attempts"].as_array().map(Vec::len), Some(1), "a retry went out without budget: {r}");
    }
    drop(gw);
    std::fs::remove_dir_all(&logs.0).unwrap();
    std::fs::create_dir_all(&logs.0).unwrap();
    let gw = start_gateway(&config_for(mock.addr, 1, &config("retry_budget = 0.2\nretry_budget_min = 4")), &[], &[]);
    for _ in 0..5 {
        assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 500);
    }
    let records = wait_records(&logs.0, 5);
    let attempts: usize = records.iter().map(|r| r["attempts"].as_array().map_or(0, Vec::len)).sum();
    // Four banked retries and a fifth of five first attempts (one more).
    assert_eq!(attempts, 5 + 4 + 1, "{records:#?}");
}

/// Requests of one conversation keep to one target among equals, on every
/// worker, so that the provider deployment holding its prompt cache serves
/// each turn; `x-tollgate-session` names a session outright; with
/// `affinity = false` the model shares its requests at random again.
#[test]
fn a_conversation_keeps_to_one_target_on_every_worker() {
    let (a, b) = (start_mock(&[]), start_mock(&[]));
    let shared = r#"targets = [{ provider = "primary", priority = 0, weight = 1 }, { provider = "backup", model = "backup-model", priority = 0, weight = 1 }]"#;
    let config = two_targets(a.addr, b.addr, "")
        .replace(r#"targets = [{ provider = "primary" }, { provider = "backup", model = "backup-model" }]"#, shared)
        .replace("workers = 1", "workers = 2");
    let gw = start_gateway(&config, &[], &[]);
    let system = "You are a coding agent. ".repeat(200);
    let turn = |n: usize| {
        let turns: String = (0..n).map(|i| format!(r#",{{"role":"user","content":"step {i}"}}"#)).collect();
        format!(r#"{{"model":"gpt-4o-mini","messages":[{{"role":"system","content":"{system}"}}{turns}]}}"#)
    };
    let routes: std::collections::BTreeSet<String> = (1..30)
        .map(|n| one_request(gw.addr, &chat_request(&turn(n), "")).header("x-tollgate-route").unwrap_or("").to_string())
        .collect();
    assert_eq!(routes.len(), 1, "one conversation went to {routes:?}");
    let named: std::collections::BTreeSet<String> = (0..30)
        .map(|i| {
            let body = SMALL_CHAT.replace("Say hello", &format!("Say hello {i}"));
            let r = one_request(gw.addr, &chat_request(&body, "x-tollgate-session: agent-7\r\n"));
            r.header("x-tollgate-route").unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(named.len(), 1, "one named session went to {named:?}");
    let off = config.replace("name = \"gpt-4o-mini\"\n", "name = \"gpt-4o-mini\"\naffinity = false\n");
    let gw = start_gateway(&off, &[], &[]);
    let spread: std::collections::BTreeSet<String> = (0..40)
        .map(|_| one_request(gw.addr, &chat_request(&turn(1), "")).header("x-tollgate-route").unwrap_or("").to_string())
        .collect();
    assert_eq!(spread.len(), 2, "without affinity the same prompt is shared: {spread:?}");
}

/// A provider's refusal (a 400, as OpenAI's `content_policy_violation`
/// and Azure's `content_filter` are) reaches the client rather than being
/// routed around to a laxer provider; a model whose own
/// `fallback_on_status` lists 400 moves on instead (configured per model).
#[test]
fn a_refusal_is_not_routed_around_unless_the_model_says_so() {
    let (primary, backup) = (start_mock(&["--fail", "400"]), start_mock(&[]));
    let config = two_targets(primary.addr, backup.addr, "");
    let gw = start_gateway(&config, &[], &[]);
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
    assert_eq!((r.status, r.header("x-tollgate-route")), (400, Some("primary/gpt-4o-mini")), "{}", r.text());
    let per_model =
        config.replace("name = \"gpt-4o-mini\"\n", "name = \"gpt-4o-mini\"\nfallback_on_status = [400, 500]\n");
    let gw = start_gateway(&per_model, &[], &[]);
    assert_served_by_backup(&one_request(gw.addr, &chat_request(SMALL_CHAT, "")), "a model that routes around 400s");
}
