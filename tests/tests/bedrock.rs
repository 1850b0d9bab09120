//! Models routed to Amazon Bedrock (Converse, ConverseStream): every
//! request signed with SigV4 and checked by the mock as AWS checks it,
//! credentials from the environment, a shared credentials file and an
//! instance role; OpenAI and Anthropic clients, JSON and the binary event
//! stream, tool round trips, errors, cache reads and writes billed, and
//! fallback from Anthropic down at 2 AM.

use std::net::SocketAddr;

use tollgate_e2e::*;

const SECRET: &str = "bedrock-e2e-secret/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn config(bedrock: SocketAddr, anthropic: SocketAddr, logs: &TempDir, credentials_file: &std::path::Path) -> String {
    format!(
        r#"
[server]
workers = 1

[logging]
dir = "{logs}"

[routing]
breaker_failures = 100

[[providers]]
name = "aws"
kind = "bedrock"
region = "us-east-1"
base_url = "http://{bedrock}"
forward_headers = ["x-mock-*"]

[[providers]]
name = "aws-role"
kind = "bedrock"
region = "eu-west-1"
base_url = "http://{bedrock}"
aws_credentials = "instance"
aws_imds_url = "http://{bedrock}"
forward_headers = ["x-mock-*"]

[[providers]]
name = "aws-file"
kind = "bedrock"
region = "us-west-2"
base_url = "http://{bedrock}"
aws_credentials = "file"
aws_credentials_file = "{file}"
aws_profile = "tollgate"
forward_headers = ["x-mock-*"]

[[providers]]
name = "claude"
kind = "anthropic"
base_url = "http://{anthropic}/v1"
forward_headers = ["x-mock-*"]
api_key_env = "TOLLGATE_E2E_ANTHROPIC_KEY"

[[models]]
name = "nova"
targets = [{{ provider = "aws", model = "amazon.nova-pro-v1:0" }}]

[[models]]
name = "claude-role"
targets = [{{ provider = "aws-role", model = "us.anthropic.claude-sonnet-4-20250514-v1:0" }}]

[[models]]
name = "nova-file"
targets = [{{ provider = "aws-file", model = "amazon.nova-lite-v1:0" }}]

[[models]]
name = "llama"
targets = [{{ provider = "aws", model = "meta.llama3-2-1b-instruct-v1:0" }}]

[[models]]
name = "bedrock-first"
targets = [{{ provider = "aws", model = "anthropic.claude-sonnet-4-20250514-v1:0" }}, {{ provider = "claude", model = "claude-sonnet-4-5" }}]

[[models]]
name = "claude-first"
targets = [{{ provider = "claude", model = "claude-sonnet-4-5" }}, {{ provider = "aws", model = "anthropic.claude-sonnet-4-20250514-v1:0" }}]

{team_and_key}"#,
        logs = logs.0.display(),
        file = credentials_file.display(),
        team_and_key = team_and_key(),
    )
}

struct Setup {
    _bedrock: Proc,
    _anthropic: Proc,
    gw: Proc,
    logs: TempDir,
    _files: TempDir,
}

fn start_with(secret_in_env: &str, anthropic_args: &[&str]) -> Setup {
    start_both(secret_in_env, &[], anthropic_args)
}

fn start_both(secret_in_env: &str, bedrock_args: &[&str], anthropic_args: &[&str]) -> Setup {
    let bedrock = start_mock(&[&["--aws-secret", SECRET][..], bedrock_args].concat());
    let anthropic = start_mock(anthropic_args);
    let logs = TempDir::new("bedrock-records");
    let files = TempDir::new("bedrock-files");
    let credentials = files.0.join("credentials");
    std::fs::write(
        &credentials,
        format!("[default]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = nope\n\n[tollgate]\naws_access_key_id = AKIDFILE\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let gw = start_gateway(
        &config(bedrock.addr, anthropic.addr, &logs, &credentials),
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", secret_in_env),
            ("TOLLGATE_E2E_ANTHROPIC_KEY", "sk-ant-test"),
        ],
    );
    Setup { _bedrock: bedrock, _anthropic: anthropic, gw, logs, _files: files }
}

fn start() -> Setup {
    start_with(SECRET, &[])
}

const NOVA_CHAT: &str =
    r#"{"model":"nova","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hello"}]}"#;
const NOVA_STREAM: &str = r#"{"model":"nova","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}"#;

fn chunks_of(r: &Response) -> (Vec<serde_json::Value>, bool) {
    let data = sse_data(&r.body);
    let done = data.last().map(String::as_str) == Some("[DONE]");
    (data.iter().filter(|d| *d != "[DONE]").map(|d| serde_json::from_str(d).unwrap()).collect(), done)
}

fn text_of(chunks: &[serde_json::Value]) -> String {
    chunks.iter().filter_map(|c| c["choices"].get(0).and_then(|c| c["delta"]["content"].as_str())).collect()
}

#[test]
fn a_signed_converse_request_comes_back_as_a_chat_completion_billed_from_its_usage() {
    let s = start();
    let r = one_request(s.gw.addr, &chat_request(NOVA_CHAT, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-route"), Some("aws/amazon.nova-pro-v1:0"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().starts_with("Tollgate counts every token café"));
    assert_eq!(v["usage"]["completion_tokens"], 16);
    let prompt = v["usage"]["prompt_tokens"].as_u64().unwrap();
    let records = wait_records(&s.logs.0, 1);
    assert!(records[0]["tokens"]["estimated"].is_null(), "{}", records[0]);
    // amazon.nova-pro's built-in price: $0.80 in, $3.20 out per million.
    assert_eq!(records[0]["cost_micro_usd"].as_u64().unwrap(), (prompt * 800_000 + 16 * 3_200_000).div_ceil(1_000_000));
    // What reached AWS: the model percent-encoded in the path, the date
    // and signature of the body as sent, no client key.
    let head = one_request(s.gw.addr, &chat_request(NOVA_CHAT, "x-mock-echo: head\r\n")).text();
    assert!(head.starts_with("POST /model/amazon.nova-pro-v1%3A0/converse HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{head}");
    assert!(head.contains("/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature="), "{head}");
    assert!(!head.contains(KEY));
    let body = one_request(s.gw.addr, &chat_request(NOVA_CHAT, "x-mock-echo: body\r\n")).json();
    assert_eq!(body["system"], serde_json::json!([{"text": "Be brief."}]));
    assert_eq!(body["messages"], serde_json::json!([{"role": "user", "content": [{"text": "Say hello"}]}]));
}

/// AWS refusing the gateway's own signature is the gateway's problem, not
/// the tenant's: the tenant is told in OpenAI's shape that the provider
/// refused (502), not AWS's words about the gateway's credentials, which
/// the gateway's log and record keep for its operator.
#[test]
fn a_wrong_secret_is_refused_by_aws_and_the_client_is_told_in_openai_shape() {
    let s = start_with("not-the-secret", &[]);
    let r = one_request(s.gw.addr, &chat_request(NOVA_CHAT, ""));
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error_code(), "upstream_error_status");
    assert!(r.text().contains("answered 403"), "{}", r.text());
    assert!(!r.text().contains("signature"), "{}", r.text());
}

#[test]
fn an_event_stream_becomes_chunks_with_usage_wherever_aws_splits_it() {
    let s = start();
    let json = one_request(s.gw.addr, &chat_request(NOVA_CHAT, "")).json();
    for split in ["", "x-mock-split: 1\r\n"] {
        let r = one_request(s.gw.addr, &chat_request(NOVA_STREAM, split));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        let (chunks, done) = chunks_of(&r);
        assert!(done, "split {split:?}: {}", r.text());
        assert_eq!(text_of(&chunks), json["choices"][0]["message"]["content"].as_str().unwrap());
        assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 16);
    }
    let quiet = NOVA_STREAM.replace(r#""stream_options":{"include_usage":true},"#, "");
    let (chunks, done) = chunks_of(&one_request(s.gw.addr, &chat_request(&quiet, "")));
    assert!(done && chunks.iter().all(|c| c.get("usage").is_none_or(|u| u.is_null())));
    let records = wait_records(&s.logs.0, 4);
    let rec = records.iter().rev().find(|r| r["stream"] == true).unwrap();
    assert_eq!((rec["tokens"]["completion"].as_u64(), rec["end"].as_str()), (Some(16), Some("completed")), "{rec}");
    assert!(rec["tokens"]["estimated"].is_null(), "{rec}");
    let head = one_request(s.gw.addr, &chat_request(NOVA_STREAM, "x-mock-echo: head\r\n")).text();
    assert!(head.starts_with("POST /model/amazon.nova-pro-v1%3A0/converse-stream HTTP/1.1\r\n"), "{head}");
}

#[test]
fn a_stream_cut_by_aws_fails_and_errors_keep_their_status() {
    let s = start();
    let r = one_request(s.gw.addr, &chat_request(NOVA_STREAM, "x-mock-fail: reset-mid-stream\r\n"));
    let (chunks, _) = chunks_of(&r);
    assert!(chunks.iter().any(|c| c.get("error").is_some()), "{}", r.text());
    let r = one_request(s.gw.addr, &chat_request(NOVA_CHAT, "x-mock-fail: 429\r\n"));
    assert_eq!(r.status, 429);
    // The gateway's own 429: the provider's message speaks for the shared
    // account.
    assert_eq!(r.error_code(), "upstream_error_status");
    let r = one_request(s.gw.addr, &chat_request(NOVA_CHAT, "x-mock-fail: 400\r\n"));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("mock upstream injected status 400"));
}

#[test]
fn a_tool_round_trip_through_converse() {
    let s = start();
    let ask = r#"{"model":"nova","messages":[{"role":"user","content":"Weather in Paris?"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}"#;
    for stream in [false, true] {
        let body = if stream { ask.replace("{\"model\"", "{\"stream\":true,\"model\"") } else { ask.to_string() };
        let r = one_request(s.gw.addr, &chat_request(&body, "x-mock-tool: get_weather\r\n"));
        assert_eq!(r.status, 200, "{}", r.text());
        let (id, args) = if stream {
            let (chunks, done) = chunks_of(&r);
            assert!(done);
            let id = chunks
                .iter()
                .find_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["id"].as_str().map(str::to_string));
            let args: String = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
                .collect();
            (id.unwrap(), args)
        } else {
            let v = r.json();
            assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
            let call = &v["choices"][0]["message"]["tool_calls"][0];
            (call["id"].as_str().unwrap().to_string(), call["function"]["arguments"].as_str().unwrap().to_string())
        };
        assert_eq!(args, r#"{"city":"Paris"}"#);
        let next = serde_json::json!({"model": "nova", "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function", "function": {"name": "get_weather", "arguments": args}}]},
            {"role": "tool", "tool_call_id": id, "content": "21 degrees"}
        ]})
        .to_string();
        let sent = one_request(s.gw.addr, &chat_request(&next, "x-mock-echo: body\r\n")).json();
        assert_eq!(sent["messages"][2]["content"][0]["toolResult"]["toolUseId"], id.as_str());
        let answer = one_request(s.gw.addr, &chat_request(&next, "x-mock-tool: get_weather\r\n")).json();
        assert_eq!(answer["choices"][0]["finish_reason"], "stop", "a tool's result is answered with words");
    }
}

#[test]
fn instance_role_and_credentials_file_sign_too_and_cache_writes_are_billed() {
    let s = start();
    let body = NOVA_CHAT.replace("\"nova\"", "\"claude-role\"");
    let head = one_request(s.gw.addr, &chat_request(&body, "x-mock-echo: head\r\n")).text();
    assert!(head.contains("Credential=ASIAMOCKROLE"), "{head}");
    assert!(head.contains("/eu-west-1/bedrock/aws4_request"), "{head}");
    assert!(head.contains("x-amz-security-token: mock-role-session-token\r\n"), "{head}");
    // 30 of the 40 written for an hour (Bedrock's `cacheDetails`).
    let r = one_request(s.gw.addr, &chat_request(&body, "x-mock-cache: 100,40,30\r\n"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
    let records = wait_records(&s.logs.0, 2);
    let rec = records.iter().find(|r| r["tokens"]["estimated"].is_null()).unwrap();
    let t = &rec["tokens"];
    assert_eq!(
        (t["cached"].as_u64(), t["cache_write"].as_u64(), t["cache_write_1h"].as_u64()),
        (Some(100), Some(40), Some(30)),
        "{rec}"
    );
    // Claude Sonnet 4 on Bedrock: $3 in, $0.30 read, $3.75 written for five
    // minutes, $6 for an hour, $15 out.
    let (prompt, completion) = (t["prompt"].as_u64().unwrap(), t["completion"].as_u64().unwrap());
    let want = ((prompt - 140) * 3_000_000 + 100 * 300_000 + 10 * 3_750_000 + 30 * 6_000_000 + completion * 15_000_000)
        .div_ceil(1_000_000);
    assert_eq!(rec["cost_micro_usd"].as_u64(), Some(want), "{rec}");
    // An Anthropic client's stream, translated from Bedrock's through
    // chat's, is billed the same writes.
    let stream = r#"{"model":"claude-role","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = one_request(s.gw.addr, &messages_request(stream, "x-mock-cache: 100,40,30\r\n"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(r#""cache_creation_input_tokens":40"#), "{}", r.text());
    let records = wait_records(&s.logs.0, 3);
    let t = &records[2]["tokens"];
    assert_eq!((t["cache_write"].as_u64(), t["cache_write_1h"].as_u64()), (Some(40), Some(30)), "{}", records[2]);
    let file = NOVA_CHAT.replace("\"nova\"", "\"nova-file\"");
    let r = one_request(s.gw.addr, &chat_request(&file, "x-mock-echo: head\r\n"));
    assert!(r.text().contains("Credential=AKIDFILE/"), "{}", r.text());
    assert_eq!(one_request(s.gw.addr, &chat_request(&file, "")).status, 200);
}

fn messages_request(body: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST /v1/messages HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nx-api-key: {KEY}\r\nanthropic-version: 2023-06-01\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn anthropic_down_at_2am_falls_back_to_bedrock_for_openai_and_anthropic_clients() {
    let s = start_with(SECRET, &["--fail", "503"]);
    let body = NOVA_CHAT.replace("\"nova\"", "\"claude-first\"");
    let r = one_request(s.gw.addr, &chat_request(&body, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-route"), Some("aws/anthropic.claude-sonnet-4-20250514-v1:0"));
    let m =
        r#"{"model":"claude-first","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
    let r = one_request(s.gw.addr, &messages_request(m, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(text.contains("event: message_start") && text.contains("event: message_stop"), "{text}");
    assert!(text.contains("\"output_tokens\":16"), "{text}");
    // A thinking block Anthropic signed, in the conversation so far, is not
    // forwarded to the provider the request falls back to.
    let signature = "EqQBCkgIARABGAIiQNn5u2k0Y7sZbH3q9c8pSIGNEDBYANTHROPIC";
    let history = serde_json::json!({"model": "claude-first", "max_tokens": 64, "messages": [
        {"role": "user", "content": "Think, then say hello"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "The user wants a greeting.", "signature": signature},
            {"type": "text", "text": "Hello"}
        ]},
        {"role": "user", "content": "Again"}
    ]})
    .to_string();
    let mut req = messages_request(&history, "");
    let at = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    req.splice(at + 2..at + 2, b"x-mock-echo: reply\r\n".iter().copied());
    let r = one_request(s.gw.addr, &req);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-route"), Some("aws/anthropic.claude-sonnet-4-20250514-v1:0"));
    let sent = r.json()["content"][0]["text"].as_str().unwrap_or_default().to_string();
    assert!(sent.contains("Hello") && sent.contains("Again"), "{sent}");
    assert!(!sent.contains(signature) && !sent.contains("The user wants a greeting"), "{sent}");
}

#[test]
fn bedrock_down_at_2am_falls_back_to_anthropic_direct() {
    let s = start_both(SECRET, &["--fail", "503"], &[]);
    let body = NOVA_CHAT.replace("\"nova\"", "\"bedrock-first\"");
    let r = one_request(s.gw.addr, &chat_request(&body, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-route"), Some("claude/claude-sonnet-4-5"));
    let stream = NOVA_STREAM.replace("\"nova\"", "\"bedrock-first\"");
    let r = one_request(s.gw.addr, &chat_request(&stream, ""));
    assert_eq!(r.header("x-tollgate-route"), Some("claude/claude-sonnet-4-5"));
    assert!(chunks_of(&r).1);
    let records = wait_records(&s.logs.0, 2);
    let attempts = records[0]["attempts"].as_array().unwrap();
    assert_eq!((attempts[0]["provider"].as_str(), attempts[0]["status"].as_u64()), (Some("aws"), Some(503)));
}

#[test]
fn a_target_no_price_covers_is_named_at_start() {
    // Llama 3.2 1B on Bedrock has no built-in price (no two sources
    // agree): the operator is told which target records $0.
    let s = start();
    assert!(
        s.gw.log_contains("target aws/meta.llama3-2-1b-instruct-v1:0 has no price", std::time::Duration::from_secs(5)),
        "the start-up log names the unpriced target"
    );
}

/// A client that hangs up on a ConverseStream's last text, by a reset,
/// before the `metadata` event that carries its usage, is billed that
/// usage (the gateway reads a stream whose client left for a quarter of a
/// second more, `relay::USAGE_GRACE`), not its own count of the prompt
/// (OpenAI's tokenizer for a model AWS counts with its own).
#[test]
fn a_client_that_hangs_up_before_the_metadata_is_billed_its_usage() {
    let s = start();
    let headers = "x-mock-cache: 90000,0\r\nx-mock-reply: alpha beta omega\r\nx-mock-chunk-delay-ms: 50\r\n";
    let mut c = Client::connect(s.gw.addr);
    c.send(&post_json("/v1/chat/completions", NOVA_STREAM, headers));
    c.read_until("omega");
    c.reset();
    let rec = &wait_records(&s.logs.0, 1)[0];
    assert_eq!(rec["end"], "client_gone", "{rec}");
    assert!(rec["tokens"]["prompt"].as_u64().unwrap() >= 90_000, "billed AWS's usage: {rec}");
    assert!(rec["tokens"]["estimated"].is_null(), "{rec}");
}
