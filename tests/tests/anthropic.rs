//! Models routed to an Anthropic upstream: the client speaks OpenAI
//! throughout, JSON and streams, errors and fallback included.

use std::net::SocketAddr;

use tollgate_e2e::*;

fn config(openai: SocketAddr, anthropic: SocketAddr) -> String {
    format!(
        r#"
[server]
workers = 1

[routing]
breaker_failures = 100

[[providers]]
name = "openai"
kind = "openai-compatible"
base_url = "http://{openai}/v1"
forward_headers = ["x-mock-*"]

[[providers]]
name = "claude"
kind = "anthropic"
base_url = "http://{anthropic}/v1"
forward_headers = ["x-mock-*"]
api_key_env = "TOLLGATE_E2E_ANTHROPIC_KEY"

[[models]]
name = "claude-sonnet"
targets = [{{ provider = "claude", model = "claude-sonnet-4-5" }}]

[[models]]
name = "gpt-4o-mini"
targets = [{{ provider = "openai" }}, {{ provider = "claude", model = "claude-haiku-4-5" }}]

{team_and_key}"#,
        team_and_key = team_and_key()
    )
}

fn start(openai_args: &[&str]) -> (Proc, Proc, Proc) {
    let (openai, anthropic) = (start_mock(openai_args), start_mock(&[]));
    let gw = start_gateway(&config(openai.addr, anthropic.addr), &[], &[("TOLLGATE_E2E_ANTHROPIC_KEY", "sk-ant-test")]);
    (openai, anthropic, gw)
}

const CLAUDE_CHAT: &str = r#"{"model":"claude-sonnet","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hello"}]}"#;
const CLAUDE_STREAM: &str = r#"{"model":"claude-sonnet","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}"#;

#[test]
fn a_json_answer_comes_back_in_openai_format() {
    let (_o, _a, gw) = start(&[]);
    let r = one_request(gw.addr, &chat_request(CLAUDE_CHAT, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-route"), Some("claude/claude-sonnet-4-5"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with("Tollgate counts every token café"), "{text}");
    assert_eq!(v["usage"]["completion_tokens"], 16);
}

#[test]
fn the_upstream_sees_an_anthropic_request_with_the_provider_key() {
    let (_o, _a, gw) = start(&[]);
    let head = one_request(gw.addr, &chat_request(CLAUDE_CHAT, "x-mock-echo: head\r\n")).text();
    assert!(head.starts_with("POST /v1/messages HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("x-api-key: sk-ant-test\r\n"), "{head}");
    assert!(head.contains("anthropic-version: 2023-06-01\r\n"), "{head}");
    assert!(!head.contains(KEY), "the client's key must not be forwarded");
    let body = one_request(gw.addr, &chat_request(CLAUDE_CHAT, "x-mock-echo: body\r\n")).json();
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["system"], "Be brief.");
    assert_eq!(body["max_tokens"], 4096);
    assert_eq!(body["messages"], serde_json::json!([{"role": "user", "content": "Say hello"}]));
}

#[test]
fn a_stream_becomes_openai_chunks_ending_in_done() {
    let (_o, anthropic, gw) = start(&[]);
    for split in ["", "x-mock-split: 1\r\n"] {
        let r = one_request(gw.addr, &chat_request(CLAUDE_STREAM, split));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        let data = sse_data(&r.body);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
        let chunks: Vec<serde_json::Value> =
            data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
        let text: String =
            chunks.iter().filter_map(|c| c["choices"].get(0).and_then(|c| c["delta"]["content"].as_str())).collect();
        let json = one_request(gw.addr, &chat_request(CLAUDE_CHAT, "")).json();
        assert_eq!(text, json["choices"][0]["message"]["content"].as_str().unwrap(), "split: {split:?}");
        assert!(chunks.iter().any(|c| c["choices"].get(0).is_some_and(|c| c["finish_reason"] == "stop")));
        let usage = &chunks.last().unwrap()["usage"];
        assert_eq!(usage["completion_tokens"], 16, "include_usage gives a final usage chunk");
    }
    drop(anthropic);
}

#[test]
fn anthropic_errors_keep_their_status_in_openai_shape() {
    let (_o, _a, gw) = start(&[]);
    let r = one_request(gw.addr, &chat_request(CLAUDE_CHAT, "x-mock-fail: 400\r\n"));
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_request_error");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("mock upstream injected status 400"));
}

#[test]
fn an_openai_target_failing_falls_back_to_anthropic_and_the_client_sees_openai() {
    let (_o, _a, gw) = start(&["--fail", "503"]);
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-route"), Some("claude/claude-haiku-4-5"));
    assert_eq!(r.json()["object"], "chat.completion");
    let s = one_request(gw.addr, &chat_request(STREAM_CHAT, ""));
    assert_eq!(s.header("x-tollgate-route"), Some("claude/claude-haiku-4-5"));
    let data = sse_data(&s.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let first: serde_json::Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
}

/// An Anthropic client's request, with the gateway key in `x-api-key`.
fn messages_request(body: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST /v1/messages HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nx-api-key: {KEY}\r\nanthropic-version: 2023-06-01\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn the_messages_front_serves_anthropic_clients_from_an_openai_upstream() {
    let (_o, _a, gw) = start(&[]);
    let body = r#"{"model":"gpt-4o-mini","max_tokens":64,"system":"Be brief.","messages":[{"role":"user","content":"Say hello"}]}"#;
    let r = one_request(gw.addr, &messages_request(body, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-route"), Some("openai/gpt-4o-mini"));
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["content"][0]["text"].as_str().unwrap().starts_with("Tollgate counts every"));
    assert_eq!(v["usage"]["output_tokens"], 16);
    // What the OpenAI upstream received.
    let sent = one_request(gw.addr, &messages_request(body, "x-mock-echo: body\r\n")).json();
    assert_eq!(sent["messages"][0], serde_json::json!({"role": "system", "content": "Be brief."}));
    assert_eq!(sent["max_tokens"], 64);

    let stream = body.replace("\"max_tokens\":64", "\"max_tokens\":64,\"stream\":true");
    let s = one_request(gw.addr, &messages_request(&stream, ""));
    assert_eq!(s.status, 200);
    let text = String::from_utf8_lossy(&s.body).to_string();
    assert!(text.starts_with("event: message_start\n"), "{text}");
    assert!(text.contains("event: content_block_delta\n"));
    assert!(text.trim_end().ends_with("data: {\"type\":\"message_stop\"}"), "{text}");
}

#[test]
fn the_messages_front_passes_anthropic_targets_through() {
    let (_o, _a, gw) = start(&[]);
    let body = r#"{"model":"claude-sonnet","max_tokens":64,"messages":[{"role":"user","content":"Say hello"}]}"#;
    let r = one_request(gw.addr, &messages_request(body, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-route"), Some("claude/claude-sonnet-4-5"));
    assert_eq!(r.json()["type"], "message");
    assert_eq!(r.json()["model"], "claude-sonnet-4-5");
    let head = one_request(gw.addr, &messages_request(body, "x-mock-echo: head\r\n")).text();
    assert_eq!(head.matches("anthropic-version").count(), 1, "{head}");
    assert!(head.contains("x-api-key: sk-ant-test\r\n"), "{head}");
}

#[test]
fn official_anthropic_sdk_talks_to_the_messages_front() {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import anthropic"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("TOLLGATE_REQUIRE_SDK").is_none(), "the anthropic SDK is required");
        eprintln!("skipped: python3 -c 'import anthropic' failed");
        return;
    }
    let (_o, _a, gw) = start(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/anthropic_messages.py");
    let out =
        std::process::Command::new("python3").arg(script).arg(format!("http://{}", gw.addr)).arg(KEY).output().unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_http10_client_gets_a_translated_stream_delimited_by_close() {
    let (_o, _a, gw) = start(&[]);
    let raw = format!(
        "POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\nAuthorization: Bearer {KEY}\r\nContent-Length: {}\r\n\r\n{CLAUDE_STREAM}",
        CLAUDE_STREAM.len()
    );
    let r = one_request(gw.addr, raw.as_bytes());
    assert_eq!(r.status, 200);
    assert!(!r.chunked && r.header("transfer-encoding").is_none());
    assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));
}

/// Native `/v1/messages` to an Anthropic provider is billed from
/// Anthropic's own usage fields (JSON answers and streams alike), so a
/// budget holds: the same model is refused after as many calls through
/// either front.
#[test]
fn the_messages_front_to_an_anthropic_target_is_billed_and_budgeted() {
    let (openai, anthropic) = (start_mock(&[]), start_mock(&[]));
    let logs = TempDir::new("anthropic-billing");
    // claude-sonnet-4-5's built-in price: $3 in, $15 out; a few hundred µ$
    // a call here, so a $0.0025 budget admits several calls, then refuses.
    let config = config(openai.addr, anthropic.addr)
        .replace("[server]\nworkers = 1", &format!("[server]\nworkers = 1\n[logging]\ndir = \"{}\"", logs.0.display()))
        .replace(
            "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]",
            "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]\nbudget = { daily_usd = 0.0025 }",
        );
    let mut gw = start_gateway(&config, &[], &[("TOLLGATE_E2E_ANTHROPIC_KEY", "sk-ant-test")]);
    let json = r#"{"model":"claude-sonnet","max_tokens":64,"messages":[{"role":"user","content":"Say hello"}]}"#;
    let stream =
        r#"{"model":"claude-sonnet","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
    let mut served = 0;
    let mut refused = false;
    for i in 0..12 {
        let r = one_request(gw.addr, &messages_request(if i % 2 == 0 { json } else { stream }, ""));
        match r.status {
            200 => served += 1,
            429 => {
                refused = true;
                break;
            }
            other => panic!("{other}: {}", r.text()),
        }
        // Each answer's spend is counted on the core before the next.
    }
    assert!(refused, "a spent budget must refuse: {served} served");
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(std::time::Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    let costs: Vec<u64> =
        recs.iter().filter(|r| r["status"] == 200).map(|r| r["cost_micro_usd"].as_u64().unwrap_or(0)).collect();
    assert_eq!(costs.len(), served);
    for rec in recs.iter().filter(|r| r["status"] == 200) {
        assert!(rec["tokens"]["prompt"].as_u64().is_some_and(|p| p > 0), "{rec}");
        assert!(rec["tokens"]["completion"].as_u64().is_some_and(|p| p > 0), "{rec}");
        assert!(rec["tokens"]["estimated"].is_null(), "billed from Anthropic's own counts: {rec}");
        assert!(rec["cost_micro_usd"].as_u64().is_some_and(|c| c > 0), "{rec}");
    }
    // Refused once the spend reached the budget, or near it once the next
    // request's estimate (its prompt and 64 output tokens at $15 a
    // million: under 1,000 µ$) no longer fit; never more than one call
    // past it.
    let (spent, most) = (costs.iter().sum::<u64>(), costs.iter().copied().max().unwrap_or(0));
    assert!(spent + 1_000 > 2_500 && spent < 2_500 + most, "{served} calls spent {spent} µ$ of a 2,500 µ$ budget");
}

/// Cache reads and writes are billed at their own prices: an Anthropic
/// answer reporting 2,000 tokens read from the cache and 1,000 written
/// (claude-sonnet-4-5: $3 in, $0.30 read, $3.75 written, $15 out), and an
/// OpenAI one reporting cached tokens (gpt-4o-mini: $0.15 in, $0.075
/// cached), JSON and streamed, through both fronts.
#[test]
fn cache_reads_and_writes_are_priced_at_their_own_rates() {
    let (openai, anthropic) = (start_mock(&[]), start_mock(&[]));
    let logs = TempDir::new("anthropic-cache");
    let config = config(openai.addr, anthropic.addr)
        .replace("[server]\nworkers = 1", &format!("[server]\nworkers = 1\n[logging]\ndir = \"{}\"", logs.0.display()));
    let mut gw = start_gateway(&config, &[], &[("TOLLGATE_E2E_ANTHROPIC_KEY", "sk-ant-test")]);
    let cache = "x-mock-cache: 2000,1000\r\n";
    let native = r#"{"model":"claude-sonnet","max_tokens":64,"messages":[{"role":"user","content":"Say hello"}]}"#;
    let native_stream = native.replace("\"max_tokens\":64", "\"max_tokens\":64,\"stream\":true");
    for body in [native, native_stream.as_str()] {
        assert_eq!(one_request(gw.addr, &messages_request(body, cache)).status, 200);
    }
    assert_eq!(one_request(gw.addr, &chat_request(CLAUDE_CHAT, cache)).status, 200);
    let openai_body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
    assert_eq!(one_request(gw.addr, &chat_request(openai_body, "x-mock-cache: 2000,0\r\n")).status, 200);
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(std::time::Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 4, "{recs:#?}");
    for rec in &recs {
        let t = &rec["tokens"];
        let (prompt, completion) = (t["prompt"].as_u64().unwrap(), t["completion"].as_u64().unwrap());
        let cost = rec["cost_micro_usd"].as_u64().unwrap();
        if rec["model"] == "claude-sonnet" {
            assert_eq!((t["cached"].as_u64(), t["cache_write"].as_u64()), (Some(2000), Some(1000)), "{rec}");
            let fresh = prompt - 3000;
            // Rounded down once, from micro-dollars times millions.
            let want =
                (fresh * 3_000_000 + 2000 * 300_000 + 1000 * 3_750_000 + completion * 15_000_000).div_ceil(1_000_000);
            assert_eq!(cost, want, "{rec}");
        } else {
            assert_eq!(t["cached"].as_u64(), Some(2000), "{rec}");
            let want = ((prompt - 2000) * 150_000 + 2000 * 75_000 + completion * 600_000).div_ceil(1_000_000);
            assert_eq!(cost, want, "{rec}");
        }
    }
}

/// Anthropic bills hour-long cache writes at twice the input price, and a
/// request whose prompt passes 200K tokens (cache reads and writes
/// included) at its long-context rates, every token of it: for
/// claude-sonnet-4-5, $6 in, $0.60 read, $7.50 and $12 written, $22.50
/// out. Native JSON and streamed answers and the translated chat front
/// are billed so; a prompt of 200K exactly is not.
#[test]
fn hour_long_cache_writes_and_long_prompts_are_billed_at_their_rates() {
    let (openai, anthropic) = (start_mock(&[]), start_mock(&[]));
    let logs = TempDir::new("anthropic-long");
    let config = config(openai.addr, anthropic.addr)
        .replace("[server]\nworkers = 1", &format!("[server]\nworkers = 1\n[logging]\ndir = \"{}\"", logs.0.display()));
    let mut gw = start_gateway(&config, &[], &[("TOLLGATE_E2E_ANTHROPIC_KEY", "sk-ant-test")]);
    let native = r#"{"model":"claude-sonnet","max_tokens":64,"messages":[{"role":"user","content":"Say hello"}]}"#;
    let native_stream = native.replace("\"max_tokens\":64", "\"max_tokens\":64,\"stream\":true");
    // (read, written, of which for an hour) as the mock reports them.
    let caches = [(2_000, 1_000, 600), (150_000, 60_000, 20_000), (199_000, 1_000, 0), (250_000, 0, 0)];
    for (read, write, hour) in caches {
        let header = format!("x-mock-cache: {read},{write},{hour}\r\n");
        for body in [native, native_stream.as_str()] {
            assert_eq!(one_request(gw.addr, &messages_request(body, &header)).status, 200);
        }
        assert_eq!(one_request(gw.addr, &chat_request(CLAUDE_CHAT, &header)).status, 200);
    }
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(std::time::Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 12, "{recs:#?}");
    let mut long = 0;
    for rec in &recs {
        let t = &rec["tokens"];
        let n = |k: &str| t[k].as_u64().unwrap_or(0);
        let (prompt, completion, read, write, hour) =
            (n("prompt"), n("completion"), n("cached"), n("cache_write"), n("cache_write_1h"));
        assert!(caches.contains(&(read, write, hour)), "{rec}");
        // Micro-dollars per million tokens: in, read, written, for an
        // hour, out.
        let rates = if prompt > 200_000 {
            long += 1;
            [6_000_000, 600_000, 7_500_000, 12_000_000, 22_500_000]
        } else {
            [3_000_000, 300_000, 3_750_000, 6_000_000, 15_000_000]
        };
        let fresh = prompt - read - write;
        let want =
            (fresh * rates[0] + read * rates[1] + (write - hour) * rates[2] + hour * rates[3] + completion * rates[4])
                .div_ceil(1_000_000);
        assert_eq!(rec["cost_micro_usd"].as_u64(), Some(want), "{rec}");
    }
    assert_eq!(long, 6, "two of the four prompts pass 200K, through three paths each");
}

/// Under a cost ceiling, the output limit a request is sent is what the
/// ceiling leaves once the prompt is paid for as it may be billed: a body
/// that marks a part for Anthropic's cache pays its prompt at the
/// hour-long write price (claude-sonnet-4-5: $6 a million, not $3), so it
/// is sent a lower limit than the same request unmarked.
#[test]
fn a_cost_ceiling_prices_a_prompt_that_marks_the_cache_at_the_write_price() {
    let (openai, anthropic) = (start_mock(&[]), start_mock(&[]));
    let config = config(openai.addr, anthropic.addr).replace(
        "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]",
        "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]\nbudget = { request_usd = 0.01 }",
    );
    let gw = start_gateway(&config, &[], &[("TOLLGATE_E2E_ANTHROPIC_KEY", "sk-ant-test")]);
    let text = "Summarise the quarterly figures for the finance team. ".repeat(40);
    let plain = format!(
        r#"{{"model":"claude-sonnet","max_tokens":4000,"system":[{{"type":"text","text":"{text}"}}],"messages":[{{"role":"user","content":"go"}}]}}"#
    );
    let marked =
        plain.replace(r#""}],"messages""#, r#"","cache_control":{"type":"ephemeral","ttl":"1h"}}],"messages""#);
    assert_ne!(plain, marked);
    let limit = |body: &str| {
        let r = one_request(gw.addr, &messages_request(body, "x-mock-echo: body\r\n"));
        assert_eq!(r.status, 200, "{}", r.text());
        let sent: serde_json::Value = serde_json::from_slice(&r.body).expect("the body the provider got");
        sent["max_tokens"].as_u64().expect("a limit")
    };
    let (plain, marked) = (limit(&plain), limit(&marked));
    // About 500 prompt tokens: 10,000 µ$ leave some 560 tokens at $15
    // after $3 a million, some 460 after $6.
    assert!(plain < 4000 && marked < plain, "{plain} {marked}");
    assert!((plain - marked) * 15 >= 400 * 3, "the prompt's tokens at twice the price: {plain} {marked}");
}

fn count_tokens_request(body: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST /v1/messages/count_tokens HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nx-api-key: {KEY}\r\nanthropic-version: 2023-06-01\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `POST /v1/messages/count_tokens`: passed to an Anthropic provider (the
/// mock counts a token per four bytes of the body it got); for any other
/// target answered with the gateway's own count, no upstream asked (a
/// failing one would show).
#[test]
fn token_counts_go_to_anthropic_or_are_answered_by_the_gateway() {
    let (_o, _a, gw) = start(&[]);
    let body = r#"{"model":"claude-sonnet","system":"Be brief.","messages":[{"role":"user","content":"Say hello to everyone on the finance team"}]}"#;
    let r = one_request(gw.addr, &count_tokens_request(body, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-route"), Some("claude/claude-sonnet-4-5"));
    let sent = body.replace("claude-sonnet", "claude-sonnet-4-5");
    assert_eq!(r.json()["input_tokens"].as_u64(), Some(sent.len().div_ceil(4) as u64), "the provider's count");
    let local = body.replace("claude-sonnet", "gpt-4o-mini");
    let r = one_request(gw.addr, &count_tokens_request(&local, "x-mock-fail: 500\r\n"));
    assert_eq!(r.status, 200, "answered without the upstream: {}", r.text());
    let n = r.json()["input_tokens"].as_u64().expect("a count");
    assert!((10..40).contains(&n), "the gateway's count of a short prompt: {n}");
    let longer = local.replace("Say hello", "Say hello, then summarise the quarterly report in three bullet points,");
    let m = one_request(gw.addr, &count_tokens_request(&longer, "")).json()["input_tokens"].as_u64().expect("a count");
    assert!(m > n, "{m} > {n}");
    // An unknown model is refused as for messages.
    let r = one_request(gw.addr, &count_tokens_request(r#"{"model":"nope","messages":[]}"#, ""));
    assert_eq!(r.status, 404, "{}", r.text());
}

/// A token count is free also where its provider failed after it was
/// asked (timed out waiting for the count): the record bills nothing.
/// The prompt was billed at the model's input price before (found by a
/// review).
#[test]
fn a_token_count_that_timed_out_at_the_provider_is_free() {
    let (openai, anthropic) = (start_mock(&[]), start_mock(&["--fail", "hang"]));
    let logs = TempDir::new("anthropic-count-timeout");
    let config = config(openai.addr, anthropic.addr).replace(
        "[routing]",
        &format!(
            "[server.timeouts]\nupstream_first_byte_ms = 300\n\n[logging]\ndir = \"{}\"\n\n[routing]",
            logs.0.display()
        ),
    );
    let gw = start_gateway(&config, &[], &[("TOLLGATE_E2E_ANTHROPIC_KEY", "sk-ant-test")]);
    let body = r#"{"model":"claude-sonnet","messages":[{"role":"user","content":"Say hello to everyone on the finance team"}]}"#;
    let r = one_request(gw.addr, &count_tokens_request(body, ""));
    assert_eq!(r.status, 504, "{}", r.text());
    let rec = &wait_records(&logs.0, 1)[0];
    assert_eq!(rec["end"], "upstream_failed", "{rec}");
    assert_eq!(rec["cost_micro_usd"].as_u64().unwrap_or(0), 0, "{rec}");
    assert_eq!(rec["provider"], "claude", "the record names the provider asked: {rec}");
}

/// Thinking blocks and their signatures reach an Anthropic client byte for
/// byte through a guarded team (the signature holds a run shaped like an
/// AWS key: a guard that scanned signatures as text would block or change
/// it, and the next turn's signature check would fail), JSON and streamed.
#[test]
fn thinking_signatures_pass_a_guarded_team_byte_for_byte() {
    let (openai, anthropic) = (start_mock(&[]), start_mock(&[]));
    let config = config(openai.addr, anthropic.addr).replace(
        "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]",
        "[[guardrail_profiles]]\nname = \"g\"\npii = \"redact\"\nsecrets = \"block\"\n\n[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]\nguardrails = \"g\"",
    );
    let gw = start_gateway(&config, &[], &[("TOLLGATE_E2E_ANTHROPIC_KEY", "sk-ant-test")]);
    // The mock's (`mock/src/reply.rs`, THINKING_SIGNATURE).
    let signature = "EqQBCkgIARABGAIiQNn5u2k0Y7sZbH3q9c8p+AKIAZ3MBL4NQUJR7QH5X/F4Wm+T1xQ2e6vJ0aKLdR8oUiGs5Nf1tYhB3wCp/Xz7E9rMgVbIk4nQy6OuAjSdPl0HeZcEgx==";
    let body = r#"{"model":"claude-sonnet","max_tokens":1024,"thinking":{"type":"enabled","budget_tokens":512},"messages":[{"role":"user","content":"Say hello"}]}"#;
    let r = one_request(gw.addr, &messages_request(body, "x-mock-thinking: 1\r\n"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["content"][0]["type"], "thinking", "{v}");
    assert_eq!(v["content"][0]["signature"].as_str(), Some(signature), "{v}");
    assert!(v["content"][1]["text"].as_str().unwrap_or_default().starts_with("Tollgate"), "{v}");
    let stream = body.replace("\"max_tokens\"", "\"stream\":true,\"max_tokens\"");
    let r = one_request(gw.addr, &messages_request(&stream, "x-mock-thinking: 1\r\n"));
    assert_eq!(r.status, 200, "{}", r.text());
    let data = sse_data(&r.body);
    let signed = data
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .find(|v| v["delta"]["type"] == "signature_delta")
        .unwrap_or_else(|| panic!("a signature_delta: {}", r.text()));
    assert_eq!(signed["delta"]["signature"].as_str(), Some(signature));
    assert!(r.text().contains("event: message_stop"), "{}", r.text());
}

/// With `prompt_cache_marks`, a long system prompt translated for an
/// Anthropic provider goes as a text block marked `cache_control`, so that
/// the provider caches the prefix every turn repeats; without it, as text.
#[test]
fn long_system_prompts_are_marked_for_the_prompt_cache_where_configured() {
    let (openai, anthropic) = (start_mock(&[]), start_mock(&[]));
    let system = "Follow the repository's conventions. ".repeat(200);
    let body = CLAUDE_CHAT.replace("Be brief.", &system);
    for (marks, marked) in [("prompt_cache_marks = true\n", true), ("", false)] {
        let config = config(openai.addr, anthropic.addr).replace(
            "api_key_env = \"TOLLGATE_E2E_ANTHROPIC_KEY\"\n",
            &format!("api_key_env = \"TOLLGATE_E2E_ANTHROPIC_KEY\"\n{marks}"),
        );
        let gw = start_gateway(&config, &[], &[("TOLLGATE_E2E_ANTHROPIC_KEY", "sk-ant-test")]);
        let sent = one_request(gw.addr, &chat_request(&body, "x-mock-echo: body\r\n")).json();
        if marked {
            assert_eq!(
                sent["system"],
                serde_json::json!([{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}])
            );
        } else {
            assert_eq!(sent["system"], serde_json::json!(system));
        }
    }
}

/// A request with no output limit, for a model served by Anthropic, is
/// sent the 4,096 tokens Anthropic's API requires: its tokens-per-minute
/// reservation is that, not the 1,024 a request with no limit reserves
/// elsewhere (read from the headroom the answer reports); and `n`, which
/// Anthropic does not honour, does not multiply it there.
#[test]
fn a_request_with_no_limit_reserves_what_the_translation_sends() {
    let (openai, anthropic) = (start_mock(&[]), start_mock(&[]));
    let config = config(openai.addr, anthropic.addr).replace(
        "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]",
        "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]\nrate_limit = { tokens_per_minute = 100000 }",
    );
    let gw = start_gateway(&config, &[], &[("TOLLGATE_E2E_ANTHROPIC_KEY", "sk-ant-test")]);
    for (model, reserve) in [("claude-sonnet", 4096), ("gpt-4o-mini", 4096)] {
        let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"Say hello"}}]}}"#);
        let r = one_request(gw.addr, &chat_request(&body, ""));
        assert_eq!(r.status, 200, "{}", r.text());
        let remaining: u64 = r.header("x-ratelimit-remaining-tokens").expect("headroom").parse().unwrap();
        // What earlier requests used (the provider's counts, a few dozen
        // tokens each) is gone from the minute too.
        let reserved = 100_000 - remaining;
        let bound = body.len() as u64 + 3;
        assert!((bound + reserve..bound + reserve + 200).contains(&reserved), "{model}: {reserved}");
    }
    // Anthropic answers once, whatever `n` asks: eight answers of 50 are
    // reserved only where a target honours `n`.
    for (model, reserve) in [("claude-sonnet", 50), ("gpt-4o-mini", 400)] {
        let body = format!(
            r#"{{"model":"{model}","n":8,"max_tokens":50,"messages":[{{"role":"user","content":"Say hello"}}]}}"#
        );
        let r = one_request(gw.addr, &chat_request(&body, ""));
        assert_eq!(r.status, 200, "{}", r.text());
        let remaining: u64 = r.header("x-ratelimit-remaining-tokens").expect("headroom").parse().unwrap();
        let reserved = 100_000 - remaining;
        let bound = body.len() as u64 + 3;
        assert!((bound + reserve..bound + reserve + 250).contains(&reserved), "{model}: {reserved}");
    }
}

/// A tool call's arguments written with `\u` escapes inside their JSON
/// string (`alice\u0040example.com`) reach an Anthropic provider decoded,
/// as the `input` object the translation writes: a guarded team's
/// addresses there are redacted all the same, and the upstream never sees
/// one (found by a review: the guard read the arguments once decoded, the
/// escapes still in them).
#[test]
fn escapes_inside_tool_call_arguments_do_not_carry_an_address_upstream() {
    let (openai, anthropic) = (start_mock(&[]), start_mock(&[]));
    let config = config(openai.addr, anthropic.addr).replace(
        "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]",
        "[[guardrail_profiles]]\nname = \"g\"\npii = \"redact\"\nresponses = false\nsecrets = \"block\"\n\n[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]\nguardrails = \"g\"",
    );
    let gw = start_gateway(&config, &[], &[("TOLLGATE_E2E_ANTHROPIC_KEY", "sk-ant-test")]);
    let args = r#"{"to":"alice\u0040example.com","note":"call me"}"#;
    let body = serde_json::json!({"model": "claude-sonnet", "tools": [{"type": "function", "function": {"name": "send",
        "parameters": {"type": "object", "properties": {"to": {"type": "string"}, "note": {"type": "string"}}}}}],
        "messages": [{"role": "user", "content": "Mail her"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "send", "arguments": args}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sent"}]})
    .to_string();
    // The answer's text is the body the provider received (answers are
    // not guarded here, so that it is read as it was sent).
    let r = one_request(gw.addr, &chat_request(&body, "x-mock-echo: reply\r\n"));
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = r.json()["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string();
    assert!(!sent.contains("alice") && !sent.contains("example.com"), "{sent}");
    let v: serde_json::Value = serde_json::from_str(&sent).unwrap_or_else(|e| panic!("{e}: {sent}"));
    let input = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .find(|b| b["type"] == "tool_use")
        .unwrap_or_else(|| panic!("a tool_use block: {v}"))["input"]
        .clone();
    assert_eq!(input, serde_json::json!({"to": "[EMAIL]", "note": "call me"}), "{v}");
}
