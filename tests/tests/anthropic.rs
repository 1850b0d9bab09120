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

[[providers]]
name = "claude"
kind = "anthropic"
base_url = "http://{anthropic}/v1"
api_key_env = "TOLLGATE_E2E_ANTHROPIC_KEY"

[[models]]
name = "claude-sonnet"
targets = [{{ provider = "claude", model = "claude-sonnet-4-5" }}]

[[models]]
name = "gpt-4o-mini"
targets = [{{ provider = "openai" }}, {{ provider = "claude", model = "claude-haiku-4-5" }}]

[[teams]]
name = "e2e"
models = ["*"]

[[keys]]
name = "e2e"
team = "e2e"
sha256 = "{hash}"
"#,
        hash = key_hash(KEY)
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
