//! Models routed to a Gemini (or Vertex AI) upstream: OpenAI, Anthropic and
//! Responses clients, JSON and streams, tool round trips with thought
//! signatures, errors, fallback between kinds, billing from
//! `usageMetadata`, guardrails on translated streams, and Vertex's bearer
//! token refreshed on reload.

use std::net::SocketAddr;
use std::time::Duration;

use tollgate_e2e::*;

const GEMINI_KEY: &str = "AIza-e2e-gemini-key";

fn config(openai: SocketAddr, gemini: SocketAddr, logs: &TempDir, token_file: &std::path::Path) -> String {
    format!(
        r#"
[server]
workers = 1
admin_tokens = ["{admin}"]

[logging]
dir = "{logs}"

[routing]
breaker_failures = 100

[[providers]]
name = "openai"
kind = "openai-compatible"
base_url = "http://{openai}/v1"
forward_headers = ["x-mock-*"]

[[providers]]
name = "google"
kind = "gemini"
base_url = "http://{gemini}/v1beta"
forward_headers = ["x-mock-*"]
api_key_env = "TOLLGATE_E2E_GEMINI_KEY"

[[providers]]
name = "vertex"
kind = "vertex"
base_url = "http://{gemini}/v1/projects/p1/locations/us-central1/publishers/google"
forward_headers = ["x-mock-*"]
api_key_file = "{token}"

[[models]]
name = "flash"
targets = [{{ provider = "google", model = "gemini-2.5-flash" }}]

[[models]]
name = "on-vertex"
targets = [{{ provider = "vertex", model = "gemini-2.5-pro" }}]

[[models]]
name = "gemini-first"
targets = [{{ provider = "google", model = "gemini-2.5-flash" }}, {{ provider = "openai", model = "gpt-4o-mini" }}]

[[models]]
name = "openai-first"
targets = [{{ provider = "openai", model = "gpt-4o-mini" }}, {{ provider = "google", model = "gemini-2.0-flash" }}]

[[guardrail_profiles]]
name = "strict"
secrets = "redact"
responses = true

[[teams]]
name = "e2e"
models = ["*"]

[[keys]]
name = "e2e"
team = "e2e"
sha256 = "{key}"

[[teams]]
name = "guarded"
models = ["*"]
guardrails = "strict"

[[keys]]
name = "guarded"
team = "guarded"
sha256 = "{guarded}"
"#,
        admin = key_hash(ADMIN_TOKEN),
        logs = logs.0.display(),
        token = token_file.display(),
        key = key_hash(KEY),
        guarded = key_hash(GUARDED_KEY),
    )
}

const GUARDED_KEY: &str = "tg-e2e-guarded-0123456789";

struct Setup {
    _openai: Proc,
    _gemini: Proc,
    gw: Proc,
    logs: TempDir,
    _secrets: TempDir,
    token_file: std::path::PathBuf,
}

fn start(openai_args: &[&str], gemini_args: &[&str]) -> Setup {
    let (openai, gemini) = (start_mock(openai_args), start_mock(gemini_args));
    let secrets = TempDir::new("gemini-secrets");
    let token_file = secrets.0.join("vertex-token");
    std::fs::write(&token_file, "ya29.first-token\n").unwrap();
    let logs_dir = TempDir::new("gemini-records");
    let gw = start_gateway(
        &config(openai.addr, gemini.addr, &logs_dir, &token_file),
        &[],
        &[("TOLLGATE_E2E_GEMINI_KEY", GEMINI_KEY)],
    );
    Setup { _openai: openai, _gemini: gemini, gw, logs: logs_dir, _secrets: secrets, token_file }
}

const FLASH_CHAT: &str =
    r#"{"model":"flash","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hello"}]}"#;
const FLASH_STREAM: &str = r#"{"model":"flash","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}"#;

fn chunks_of(r: &Response) -> (Vec<serde_json::Value>, bool) {
    let data = sse_data(&r.body);
    let done = data.last().map(String::as_str) == Some("[DONE]");
    let chunks = data.iter().filter(|d| *d != "[DONE]").map(|d| serde_json::from_str(d).unwrap()).collect();
    (chunks, done)
}

fn text_of(chunks: &[serde_json::Value]) -> String {
    chunks.iter().filter_map(|c| c["choices"].get(0).and_then(|c| c["delta"]["content"].as_str())).collect()
}

#[test]
fn a_json_answer_comes_back_as_a_chat_completion_billed_from_usage_metadata() {
    let s = start(&[], &[]);
    let r = one_request(s.gw.addr, &chat_request(FLASH_CHAT, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-route"), Some("google/gemini-2.5-flash"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gemini-2.5-flash");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().starts_with("Tollgate counts every token café"));
    assert_eq!(v["usage"]["completion_tokens"], 16);
    let prompt = v["usage"]["prompt_tokens"].as_u64().unwrap();
    let records = wait_records(&s.logs.0, 1);
    let rec = &records[0];
    assert_eq!(rec["tokens"]["prompt"], prompt, "{rec}");
    assert_eq!(rec["tokens"]["completion"], 16);
    assert!(rec["tokens"]["estimated"].is_null(), "billed from the provider's counts: {rec}");
    // gemini-2.5-flash's built-in price: $0.30 in, $2.50 out per million.
    assert_eq!(rec["cost_micro_usd"].as_u64().unwrap(), (prompt * 300_000 + 16 * 2_500_000).div_ceil(1_000_000));
}

#[test]
fn the_upstream_sees_generate_content_with_the_provider_key_and_the_model_in_the_url() {
    let s = start(&[], &[]);
    let head = one_request(s.gw.addr, &chat_request(FLASH_CHAT, "x-mock-echo: head\r\n")).text();
    assert!(head.starts_with("POST /v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("x-goog-api-key: {GEMINI_KEY}\r\n")), "{head}");
    assert!(!head.contains(KEY), "the client's key must not be forwarded");
    assert!(!head.to_ascii_lowercase().contains("authorization"), "{head}");
    let head = one_request(s.gw.addr, &chat_request(FLASH_STREAM, "x-mock-echo: head\r\n")).text();
    assert!(
        head.starts_with("POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse HTTP/1.1\r\n"),
        "{head}"
    );
    let body = one_request(s.gw.addr, &chat_request(FLASH_CHAT, "x-mock-echo: body\r\n")).json();
    assert_eq!(
        body,
        serde_json::json!({
            "contents": [{"role": "user", "parts": [{"text": "Say hello"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]}
        })
    );
    // A client cannot put its own key in the provider's key header.
    let head =
        one_request(s.gw.addr, &chat_request(FLASH_CHAT, "x-mock-echo: head\r\nx-goog-api-key: stolen\r\n")).text();
    assert!(!head.contains("stolen"), "{head}");
}

#[test]
fn a_stream_becomes_chunks_with_usage_only_for_clients_that_asked_and_is_billed_either_way() {
    let s = start(&[], &[]);
    let json = one_request(s.gw.addr, &chat_request(FLASH_CHAT, "")).json();
    for split in ["", "x-mock-split: 1\r\n"] {
        let r = one_request(s.gw.addr, &chat_request(FLASH_STREAM, split));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        let (chunks, done) = chunks_of(&r);
        assert!(done, "split {split:?}: {}", r.text());
        assert_eq!(text_of(&chunks), json["choices"][0]["message"]["content"].as_str().unwrap(), "split {split:?}");
        assert!(chunks.iter().any(|c| c["choices"].get(0).is_some_and(|c| c["finish_reason"] == "stop")));
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], serde_json::json!([]));
        assert_eq!(last["usage"]["completion_tokens"], 16);
    }
    let quiet = FLASH_STREAM.replace(r#""stream_options":{"include_usage":true},"#, "");
    let r = one_request(s.gw.addr, &chat_request(&quiet, ""));
    let (chunks, done) = chunks_of(&r);
    assert!(done);
    assert!(chunks.iter().all(|c| c.get("usage").is_none_or(|u| u.is_null())), "{chunks:?}");
    let records = wait_records(&s.logs.0, 4);
    let rec = records.iter().rev().find(|r| r["stream"] == true).unwrap();
    assert_eq!(rec["tokens"]["completion"], 16, "{rec}");
    assert!(rec["tokens"]["estimated"].is_null(), "{rec}");
    assert_eq!(rec["end"], "completed");
}

#[test]
fn google_errors_keep_their_status_in_openai_shape_and_fall_back_between_kinds() {
    let s = start(&["--fail", "503"], &[]);
    let r = one_request(s.gw.addr, &chat_request(FLASH_CHAT, "x-mock-fail: 429\r\n"));
    // The provider's rate limit is the gateway's own 429: its message
    // speaks for the account every tenant shares.
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "upstream_error_status");
    let r = one_request(s.gw.addr, &chat_request(FLASH_CHAT, "x-mock-fail: 400\r\n"));
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("mock upstream injected status 400"));
    // The OpenAI target is down: the answer comes from Gemini, in OpenAI's
    // shape, JSON and streamed.
    let body = FLASH_CHAT.replace("\"flash\"", "\"openai-first\"");
    let r = one_request(s.gw.addr, &chat_request(&body, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-route"), Some("google/gemini-2.0-flash"));
    assert_eq!(r.json()["object"], "chat.completion");
    let stream = FLASH_STREAM.replace("\"flash\"", "\"openai-first\"");
    let r = one_request(s.gw.addr, &chat_request(&stream, ""));
    assert_eq!(r.header("x-tollgate-route"), Some("google/gemini-2.0-flash"));
    assert!(chunks_of(&r).1);
}

#[test]
fn gemini_down_at_2am_falls_back_to_openai() {
    let s = start(&[], &["--fail", "503"]);
    let body = FLASH_CHAT.replace("\"flash\"", "\"gemini-first\"");
    let r = one_request(s.gw.addr, &chat_request(&body, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-route"), Some("openai/gpt-4o-mini"));
    let records = wait_records(&s.logs.0, 1);
    let attempts = records[0]["attempts"].as_array().unwrap();
    assert_eq!((attempts[0]["provider"].as_str(), attempts[0]["status"].as_u64()), (Some("google"), Some(503)));
}

#[test]
fn a_tool_round_trip_keeps_the_thought_signature_and_names_the_result() {
    let s = start(&[], &[]);
    let ask = r#"{"model":"flash","messages":[{"role":"user","content":"Weather in Paris?"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}"#;
    for stream in [false, true] {
        let body = if stream { ask.replace("{\"model\"", "{\"stream\":true,\"model\"") } else { ask.to_string() };
        let r = one_request(s.gw.addr, &chat_request(&body, "x-mock-tool: get_weather\r\nx-mock-thinking: 1\r\n"));
        assert_eq!(r.status, 200, "{}", r.text());
        let call = if stream {
            let (chunks, done) = chunks_of(&r);
            assert!(done);
            assert_eq!(chunks.iter().rev().find_map(|c| c["choices"][0]["finish_reason"].as_str()), Some("tool_calls"));
            chunks.iter().find_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0).cloned()).unwrap()
        } else {
            let v = r.json();
            assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
            assert!(v["usage"]["completion_tokens_details"]["reasoning_tokens"].as_u64().unwrap() > 0);
            v["choices"][0]["message"]["tool_calls"][0].clone()
        };
        assert_eq!(call["function"]["name"], "get_weather");
        assert_eq!(call["function"]["arguments"], r#"{"city":"Paris"}"#);
        let id = call["id"].as_str().unwrap().to_string();
        assert!(id.contains("~ts~"), "the signature rides in the id: {id}");
        // The next turn, as an OpenAI client writes it.
        let next = serde_json::json!({"model": "flash", "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": id, "content": "{\"temp_c\":21}"}
        ]})
        .to_string();
        let sent = one_request(s.gw.addr, &chat_request(&next, "x-mock-echo: body\r\n")).json();
        let model_turn = &sent["contents"][1];
        assert_eq!(model_turn["role"], "model");
        assert_eq!(model_turn["parts"][0]["functionCall"]["name"], "get_weather");
        assert_eq!(model_turn["parts"][0]["thoughtSignature"], "bW9jay10aG91Z2h0LXNpZ25hdHVyZQ==");
        assert_eq!(
            sent["contents"][2]["parts"][0]["functionResponse"],
            serde_json::json!({"name": "get_weather", "response": {"temp_c": 21}})
        );
        let answer = one_request(s.gw.addr, &chat_request(&next, "x-mock-tool: get_weather\r\n")).json();
        assert_eq!(answer["choices"][0]["finish_reason"], "stop", "a tool's result is answered with words");
    }
}

fn messages_request(body: &str) -> Vec<u8> {
    format!(
        "POST /v1/messages HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nx-api-key: {KEY}\r\nanthropic-version: 2023-06-01\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn anthropic_and_responses_clients_are_served_by_gemini() {
    let s = start(&[], &[]);
    let body =
        r#"{"model":"flash","max_tokens":64,"system":"Be brief.","messages":[{"role":"user","content":"Say hello"}]}"#;
    let r = one_request(s.gw.addr, &messages_request(body));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["content"][0]["text"].as_str().unwrap().starts_with("Tollgate counts"));
    assert_eq!(v["usage"]["output_tokens"], 16);
    let stream = body.replace("{\"model\"", "{\"stream\":true,\"model\"");
    let r = one_request(s.gw.addr, &messages_request(&stream));
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(text.contains("event: message_start") && text.contains("event: message_stop"), "{text}");
    assert!(text.contains("\"output_tokens\":16"), "{text}");

    let responses = r#"{"model":"flash","instructions":"Be brief.","input":"Say hello"}"#;
    let r = one_request(s.gw.addr, &post_json("/v1/responses", responses, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["usage"]["output_tokens"], 16);
    let r = one_request(
        s.gw.addr,
        &post_json("/v1/responses", &responses.replace("{\"model\"", "{\"stream\":true,\"model\""), ""),
    );
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(text.contains("response.output_text.delta") && text.contains("response.completed"), "{text}");
    // What Gemini has no API for is refused by name, not sent.
    let r = one_request(s.gw.addr, &post_json("/v1/embeddings", r#"{"model":"flash","input":"x"}"#, ""));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("Gemini provider"), "{}", r.text());
}

#[test]
fn a_secret_in_a_translated_stream_is_redacted_wherever_gemini_splits_it() {
    let s = start(&[], &[]);
    let secret = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z";
    let headers =
        format!("Authorization: Bearer {GUARDED_KEY}\r\nx-mock-reply: the key is {secret} ok\r\nx-mock-chunks: 5\r\n");
    for body in [FLASH_CHAT, FLASH_STREAM] {
        let r = one_request(s.gw.addr, &chat_request_with_key(body, &headers));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(!r.text().contains(secret), "{}", r.text());
        let text = if body == FLASH_STREAM {
            text_of(&chunks_of(&r).0)
        } else {
            r.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string()
        };
        assert!(text.contains("the key is [") && text.ends_with("ok"), "{text}");
    }
}

#[test]
fn vertex_takes_a_bearer_token_from_a_file_read_again_on_reload() {
    let s = start(&[], &[]);
    let body = FLASH_CHAT.replace("\"flash\"", "\"on-vertex\"");
    let head = one_request(s.gw.addr, &chat_request(&body, "x-mock-echo: head\r\n")).text();
    assert!(
        head.starts_with(
            "POST /v1/projects/p1/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent HTTP/1.1\r\n"
        ),
        "{head}"
    );
    assert!(head.contains("authorization: Bearer ya29.first-token\r\n"), "{head}");
    assert!(!head.contains("x-goog-api-key"), "{head}");
    std::fs::write(&s.token_file, "ya29.second-token\n").unwrap();
    assert_eq!(admin_reload(&s.gw).status, 200);
    wait_until(Duration::from_secs(5), "the new token", || {
        one_request(s.gw.addr, &chat_request(&body, "x-mock-echo: head\r\n"))
            .text()
            .contains("authorization: Bearer ya29.second-token\r\n")
    });
    let r = one_request(s.gw.addr, &chat_request(&body, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], "gemini-2.5-pro");
}

/// Google answers the gateway's own invalid or expired key with 400 (an
/// `ErrorInfo` reason `API_KEY_INVALID`), not 401: the tenant gets the
/// gateway's 502, as for any provider's refusal of its credentials, never
/// Google's message about "your" API key (found by a review).
#[test]
fn googles_refusal_of_the_gateways_key_is_the_gateways_502() {
    let refusal = r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{refusal}",
        refusal.len()
    );
    let google = scripted_upstream(vec![answer.into_bytes()]);
    let openai = start_mock(&[]);
    let logs = TempDir::new("gemini-key-refused");
    let secrets = TempDir::new("gemini-key-refused-secrets");
    let token_file = secrets.0.join("vertex-token");
    std::fs::write(&token_file, "ya29.token\n").unwrap();
    let gw = start_gateway(
        &config(openai.addr, google, &logs, &token_file),
        &[],
        &[("TOLLGATE_E2E_GEMINI_KEY", GEMINI_KEY)],
    );
    let r = one_request(gw.addr, &chat_request(FLASH_CHAT, ""));
    assert_eq!((r.status, r.error_code().as_str()), (502, "upstream_error_status"), "{}", r.text());
    assert!(!r.text().contains("API key"), "{}", r.text());
}
