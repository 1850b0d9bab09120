//! Attacks through the answer: an upstream (or a tenant steering one) that
//! shapes its answer so that a byte search would misread it. Each test
//! performs the attack against the real gateway and checks what was billed
//! (the record) and what the client got.

use std::net::SocketAddr;
use std::time::Duration;

use tollgate_e2e::*;

/// A gateway in front of `upstream` with priced models and records on.
fn gateway(upstream: SocketAddr, logs: &TempDir) -> Proc {
    let config = config_for(upstream, 1, &format!("[logging]\ndir = \"{}\"", logs.0.display())).replace(
        "[[models]]\nname = \"gpt-4o\"\ntargets = [{ provider = \"up\" }]",
        "[[models]]\nname = \"gpt-4o\"\ntargets = [{ provider = \"up\" }]\nprice = { input_per_mtok = 2.5, output_per_mtok = 10.0 }",
    );
    start_gateway(&config, &[], &[])
}

/// The one record, once the gateway has written it (at shutdown).
fn only_record(mut gw: Proc, logs: &TempDir) -> serde_json::Value {
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let mut recs = read_records(&logs.0);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    recs.remove(0)
}

fn json_answer(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const GPT4O: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn a_tool_named_prompt_tokens_does_not_make_an_answer_free() {
    let body = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"prompt_tokens","arguments":"{\"secret\":\"the whole answer\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":120000,"completion_tokens":245,"total_tokens":120245}}"#;
    let logs = TempDir::new("hostile");
    let gw = gateway(scripted_upstream(vec![json_answer(body)]), &logs);
    let r = one_request(gw.addr, &chat_request(GPT4O, ""));
    assert_eq!(r.status, 200);
    let rec = only_record(gw, &logs);
    assert_eq!(rec["tokens"]["prompt"], 120_000, "{rec}");
    assert_eq!(rec["tokens"]["completion"], 245, "{rec}");
    // 120,000 x 2.5 + 245 x 10 micro-dollars.
    assert_eq!(rec["cost_micro_usd"], 302_450, "{rec}");
}

#[test]
fn usage_split_across_reads_and_chunk_lines_is_still_billed() {
    let body = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":500000,"completion_tokens":250}}"#;
    // Content-Length, cut inside the prompt count.
    let whole = json_answer(body);
    let cut = whole.windows(6).position(|w| w == b"500000").expect("count") + 3;
    let logs = TempDir::new("hostile");
    let gw = gateway(scripted_upstream(vec![whole[..cut].to_vec(), whole[cut..].to_vec()]), &logs);
    assert_eq!(one_request(gw.addr, &chat_request(GPT4O, "")).status, 200);
    let rec = only_record(gw, &logs);
    assert_eq!((rec["tokens"]["prompt"].clone(), rec["cost_micro_usd"].clone()), (500_000.into(), 1_252_500.into()));

    // Chunked, with a chunk boundary (and its size line) inside each count.
    let at = body.find("500000").expect("count") + 2;
    let at2 = body.find("250}").expect("count") + 1;
    let chunks = [&body[..at], &body[at..at2], &body[at2..]];
    let mut pieces = vec![
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            .to_vec(),
    ];
    for c in chunks {
        pieces.push(format!("{:x}\r\n{c}\r\n", c.len()).into_bytes());
    }
    pieces.push(b"0\r\n\r\n".to_vec());
    let logs = TempDir::new("hostile");
    let gw = gateway(scripted_upstream(pieces), &logs);
    let r = one_request(gw.addr, &chat_request(GPT4O, ""));
    assert_eq!(r.text(), body, "relayed as it came");
    let rec = only_record(gw, &logs);
    assert_eq!((rec["tokens"]["prompt"].clone(), rec["tokens"]["completion"].clone()), (500_000.into(), 250.into()));
}

#[test]
fn absurd_usage_numbers_are_not_believed() {
    let body = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":18446744073709551615}}"#;
    let logs = TempDir::new("hostile");
    let gw = gateway(scripted_upstream(vec![json_answer(body)]), &logs);
    assert_eq!(one_request(gw.addr, &chat_request(GPT4O, "")).status, 200);
    let rec = only_record(gw, &logs);
    assert!(rec["cost_micro_usd"].as_u64().is_none_or(|c| c < 1_000_000), "{rec}");
    // Set aside, and said so: billed from the gateway's own count.
    assert_eq!(rec["tokens"]["rejected"], true, "{rec}");
    assert_eq!(rec["tokens"]["estimated"], true, "{rec}");
}

/// An HTTP/1.0 client's answer ends with its connection: one the upstream
/// cuts short (it closes mid-chunk, or breaks its chunk framing) resets
/// the connection, where an orderly close read as a whole answer (to nginx
/// in front too, which speaks HTTP/1.0 upstream by default).
#[test]
fn an_answer_cut_short_to_an_http10_client_is_not_ended_cleanly() {
    let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    let part = br#"40
{"id":"x","choices":[{"message":{"content":"Transfer $100 to acc"#
        .to_vec();
    for ending in [vec![], b"\r\nzz\r\n".to_vec()] {
        let logs = TempDir::new("hostile-http10");
        let mut pieces = vec![head.clone(), part.clone()];
        if !ending.is_empty() {
            pieces.push(ending.clone());
        }
        let gw = gateway(scripted_upstream(pieces), &logs);
        let mut c = std::net::TcpStream::connect(gw.addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let request = format!(
            "POST /v1/chat/completions HTTP/1.0\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{GPT4O}",
            GPT4O.len()
        );
        std::io::Write::write_all(&mut c, request.as_bytes()).unwrap();
        let mut got = Vec::new();
        let read = std::io::Read::read_to_end(&mut c, &mut got);
        assert_eq!(
            read.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionReset),
            "{:?}: {}",
            String::from_utf8_lossy(&ending),
            String::from_utf8_lossy(&got)
        );
        drop(only_record(gw, &logs));
    }
}

/// A long JSON answer whose usage cannot be believed (a count written as
/// `20000.0`) or that sends none was billed its prompt alone: its 60 KB
/// of text went free. It is billed a token for every three bytes the
/// client got, held to the request's output limit where it has one.
#[test]
fn a_json_answer_without_a_believable_usage_is_not_free() {
    let text = "word ".repeat(12_000);
    let with = |usage: &str| {
        format!(
            r#"{{"id":"x","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}"}},"finish_reason":"stop"}}]{usage}}}"#
        )
    };
    let limited = r#"{"model":"gpt-4o","max_tokens":5000,"messages":[{"role":"user","content":"hi"}]}"#;
    // A stream asked for, a JSON answer given: counted by its bytes too.
    let streamed = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (rejected, bare) = (with(r#","usage":{"prompt_tokens":10,"completion_tokens":20000.0}"#), with(""));
    // The body's bytes, not the head's.
    let (thirds, bare_thirds) = (rejected.len() as u64 / 3, bare.len() as u64 / 3);
    for (answer, request, least, most) in [
        (rejected.clone(), GPT4O, thirds, thirds),
        (bare.clone(), GPT4O, bare_thirds, bare_thirds),
        (bare.clone(), streamed, bare_thirds, bare_thirds),
        (bare.clone(), limited, 5_000, 5_000),
    ] {
        let logs = TempDir::new("hostile");
        let gw = gateway(scripted_upstream(vec![json_answer(&answer)]), &logs);
        let r = one_request(gw.addr, &chat_request(request, ""));
        assert_eq!((r.status, r.text().len()), (200, answer.len()));
        let rec = only_record(gw, &logs);
        let completion = rec["tokens"]["completion"].as_u64().expect("a completion");
        assert!((least..=most).contains(&completion), "{completion}: {rec}");
        assert_eq!(rec["tokens"]["estimated"], true, "{rec}");
    }
}

/// A stream whose upstream reports usage twice, the second time lowering
/// it to 0 after hundreds of visible tokens: the largest report counts,
/// and a completion far under what passed is replaced by the gateway's
/// count, flagged.
#[test]
fn a_stream_cannot_lower_its_usage_at_the_end() {
    let stream = |usages: &[&str]| {
        let mut sse = String::new();
        for i in 0..200 {
            let e = format!(
                r#"{{"id":"c","object":"chat.completion.chunk","choices":[{{"index":0,"delta":{{"content":" word{i}"}},"finish_reason":null}}]}}"#
            );
            sse.push_str(&format!("data: {e}\n\n"));
        }
        sse.push_str(r#"data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#);
        sse.push_str("\n\n");
        for u in usages {
            sse.push_str(&format!(r#"data: {{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{u}}}"#));
            sse.push_str("\n\n");
        }
        sse.push_str("data: [DONE]\n\n");
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{sse}\r\n0\r\n\r\n",
            sse.len()
        )
        .into_bytes()
    };
    let body = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    // 600 then 0: the 600 stands, believed.
    let logs = TempDir::new("hostile");
    let twice = [r#"{"prompt_tokens":12,"completion_tokens":600}"#, r#"{"prompt_tokens":0,"completion_tokens":0}"#];
    let gw = gateway(scripted_upstream(vec![stream(&twice)]), &logs);
    assert_eq!(one_request(gw.addr, &chat_request(body, "")).status, 200);
    let rec = only_record(gw, &logs);
    assert_eq!(
        (rec["tokens"]["prompt"].as_u64(), rec["tokens"]["completion"].as_u64()),
        (Some(12), Some(600)),
        "{rec}"
    );
    assert!(rec["tokens"]["rejected"].is_null(), "{rec}");
    // Only 0 reported after about 400 tokens passed: not believed.
    let logs = TempDir::new("hostile");
    let gw = gateway(scripted_upstream(vec![stream(&[r#"{"prompt_tokens":12,"completion_tokens":0}"#])]), &logs);
    assert_eq!(one_request(gw.addr, &chat_request(body, "")).status, 200);
    let rec = only_record(gw, &logs);
    assert!(rec["tokens"]["completion"].as_u64().is_some_and(|c| c >= 200), "{rec}");
    assert_eq!((rec["tokens"]["rejected"].clone(), rec["tokens"]["estimated"].clone()), (true.into(), true.into()));
}

#[test]
fn a_spaced_usage_chunk_the_client_did_not_ask_for_does_not_leak() {
    // Python's json.dumps style: spaces after colons and commas.
    let events = [
        r#"{"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": null}]}"#,
        r#"{"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}"#,
        r#"{"id": "c", "object": "chat.completion.chunk", "choices": [ ], "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}}"#,
    ];
    let mut sse = String::new();
    for e in events {
        sse.push_str(&format!("data: {e}\n\n"));
    }
    sse.push_str("data: [DONE]\n\n");
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{sse}\r\n0\r\n\r\n",
        sse.len()
    );
    let logs = TempDir::new("hostile");
    let gw = gateway(scripted_upstream(vec![answer.into_bytes()]), &logs);
    let r = one_request(
        gw.addr,
        &chat_request(r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#, ""),
    );
    let data = sse_data(&r.body);
    assert!(data.iter().all(|d| !d.contains("usage")), "the client did not ask for usage: {data:?}");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let rec = only_record(gw, &logs);
    assert_eq!(rec["tokens"]["prompt"], 12, "{rec}");
    assert!(rec["tokens"]["estimated"].is_null(), "{rec}");
}

#[test]
fn a_stream_flag_that_is_not_a_boolean_is_refused() {
    let logs = TempDir::new("hostile");
    let gw = gateway(scripted_upstream(vec![json_answer("{}")]), &logs);
    for stream in [r#""true""#, "1", "{}"] {
        let body = format!(r#"{{"model":"gpt-4o","stream":{stream},"messages":[]}}"#);
        let r = one_request(gw.addr, &chat_request(&body, ""));
        assert_eq!(r.status, 400, "{stream}");
        assert!(r.json()["error"]["message"].as_str().unwrap_or("").contains("stream"), "{}", r.text());
    }
}

/// An upstream's own `x-request-id`, `x-tollgate-route`, rate-limit and
/// organisation headers never reach the client beside the gateway's: the
/// provider account's rate limits would show every tenant the others'
/// use, its organisation (OpenAI's, Anthropic's) who pays.
#[test]
fn upstream_headers_never_speak_for_the_gateway_or_the_shared_account() {
    // (Credentials by name, and headers `Connection` names, found by a
    // review: an echoing upstream handed the tenant the gateway's key.)
    let body =
        r#"{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_upstream\r\nx-tollgate-route: evil/evil\r\n\
         x-ratelimit-remaining-requests: 9321\r\nx-ratelimit-limit-tokens: 30000000\r\nanthropic-ratelimit-tokens-remaining: 5\r\n\
         openai-organization: org-shared\r\nanthropic-organization-id: 9f1c0d2e-shared\r\nopenai-processing-ms: 12\r\n\
         Set-Cookie: _oauth2_proxy=GATEWAY-SESSION; Path=/; HttpOnly\r\nwww-authenticate: Bearer\r\nalt-svc: h3=\":443\"\r\n\
         strict-transport-security: max-age=63072000\r\nauthorization: Bearer sk-gateway-key\r\nx-api-key: sk-ant-gateway\r\n\
         x-goog-api-key: AIza-gateway\r\napi-key: azure-gateway\r\nproxy-authorization: Basic Z3c=\r\n\
         x-internal-auth: s3cr3t\r\ncontent-length: {}\r\nconnection: close, X-Internal-Auth\r\n\r\n{body}",
        body.len()
    );
    let logs = TempDir::new("hostile");
    let gw = gateway(scripted_upstream(vec![answer.into_bytes()]), &logs);
    let r = one_request(gw.addr, &chat_request(GPT4O, ""));
    assert_eq!(r.status, 200);
    let named = |n: &str| r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(n)).count();
    assert_eq!(named("x-request-id"), 1, "{:?}", r.headers);
    assert!(r.header("x-request-id").is_some_and(|v| v.starts_with("tg-")), "{:?}", r.headers);
    assert_eq!(r.header("x-tollgate-route"), Some("up/gpt-4o"), "{:?}", r.headers);
    assert_eq!(named("x-tollgate-route"), 1);
    for gone in [
        "x-ratelimit-remaining-requests",
        "x-ratelimit-limit-tokens",
        "anthropic-ratelimit-tokens-remaining",
        "openai-organization",
        "anthropic-organization-id",
        "set-cookie",
        "www-authenticate",
        "alt-svc",
        "strict-transport-security",
        // Credentials an echoing upstream or sidecar sends back, and a
        // header its `Connection` names for this hop alone.
        "authorization",
        "x-api-key",
        "x-goog-api-key",
        "api-key",
        "proxy-authorization",
        "x-internal-auth",
    ] {
        assert_eq!(named(gone), 0, "{gone}: {:?}", r.headers);
    }
    assert_eq!(r.header("openai-processing-ms"), Some("12"), "ordinary headers pass");
}

/// A chunked answer's trailer fields are not passed through with its
/// chunks: they would reach the client past the header filter (found by a
/// review). The body ends with an empty trailer section of the gateway's.
#[test]
fn an_upstreams_trailer_fields_do_not_reach_the_client() {
    use std::io::{Read, Write};
    let body =
        r#"{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\nopenai-organization: org-shared\r\nx-tollgate-route: evil/evil\r\n\r\n",
        body.len()
    );
    let logs = TempDir::new("hostile-trailers");
    let gw = gateway(scripted_upstream(vec![answer.into_bytes()]), &logs);
    let mut c = std::net::TcpStream::connect(gw.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&chat_request(GPT4O, "connection: close\r\n")).unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(!raw.contains("org-shared") && !raw.contains("evil/evil"), "{raw}");
    assert!(raw.contains(body) && raw.ends_with("\r\n0\r\n\r\n"), "{raw}");
}

/// A tenant that provokes the provider's 401 or 403 (a file it may not
/// read, a forged project header) does not open the target's breaker for
/// every tenant: those are not charged to it (found by a review).
#[test]
fn refusals_a_tenant_provokes_do_not_open_the_breaker() {
    let mock = start_mock(&[]);
    let gw = start_gateway(&config_for(mock.addr, 1, "[routing]\nbreaker_failures = 2"), &[], &[]);
    for status in ["401", "403", "401", "403"] {
        let r = one_request(gw.addr, &chat_request(GPT4O, &format!("x-mock-fail: {status}\r\n")));
        assert_eq!((r.status, r.error_code().as_str()), (502, "upstream_error_status"), "{}", r.text());
    }
    let r = one_request(gw.addr, &chat_request(GPT4O, ""));
    assert_eq!(r.status, 200, "the breaker opened: {}", r.text());
}

/// The provider's rate limit, with no target left, is the gateway's own
/// 429 (with the provider's wait): OpenAI's message names the organisation
/// every tenant shares and its whole use, as the rate-limit headers the
/// relay drops do (found by a review).
#[test]
fn the_providers_rate_limit_message_is_not_relayed() {
    let body = r#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-SHARED on tokens per min (TPM): Limit 30000000, Used 29990000, Requested 12000.","type":"tokens","code":"rate_limit_exceeded"}}"#;
    for (more, code) in [("retry-after: 7\r\n", "upstream_rate_limited"), ("", "upstream_error_status")] {
        let answer = format!(
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n{more}content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let logs = TempDir::new("hostile-429");
        let gw = gateway(scripted_upstream(vec![answer.into_bytes()]), &logs);
        let r = one_request(gw.addr, &chat_request(GPT4O, ""));
        assert_eq!(r.status, 429, "{}", r.text());
        assert_eq!(r.error_code(), code, "{}", r.text());
        assert!(!r.text().contains("org-SHARED") && !r.text().contains("29990000"), "{}", r.text());
        if !more.is_empty() {
            assert_eq!(r.header("retry-after"), Some("7"));
        }
    }
}

/// A provider that refuses the gateway's own credentials (a key revoked
/// or rotated) is not relayed: its message shows part of the gateway's
/// key and sends the tenant to rotate its own (a 401 from the gateway
/// means the tenant's key). The tenant gets the gateway's 502; with
/// another target, that one serves (found by a review).
#[test]
fn the_providers_refusal_of_the_gateways_key_is_not_relayed() {
    let refusal = |status: &str| {
        let body = r#"{"error":{"message":"Incorrect API key provided: sk-proj-AbCd****WXYZ. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nwww-authenticate: Bearer realm=\"OpenAI API\"\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    for status in ["401 Unauthorized", "403 Forbidden"] {
        let logs = TempDir::new("hostile-401");
        let gw = gateway(scripted_upstream(vec![refusal(status)]), &logs);
        let r = one_request(gw.addr, &chat_request(GPT4O, ""));
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(r.error_code(), "upstream_error_status");
        assert!(!r.text().contains("sk-proj") && !r.text().contains("api-keys"), "{}", r.text());
        assert!(r.header("www-authenticate").is_none());
    }
}

/// A stream that carries the upstream's error part way through, then ends
/// as finished (the OpenAI chunk `{"error":...}` and `[DONE]`, as vLLM
/// ends a failed stream; an Anthropic `event: error`, which the gateway
/// translates into an error chunk and `[DONE]`), is not cached: kept, the
/// half answer and its error were every later asker's, for the entry's
/// life (found by a review).
#[test]
fn a_stream_that_carries_an_upstream_error_is_not_cached() {
    let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    let chunked = |events: &[&str]| {
        let mut pieces = vec![head.clone()];
        for e in events {
            pieces.push(format!("{:x}\r\n{e}\r\n", e.len()).into_bytes());
        }
        pieces.push(b"0\r\n\r\n".to_vec());
        pieces
    };
    let openai = chunked(&[
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"half an answ\"},\"finish_reason\":null}]}\n\n",
        "data: {\"error\": {\"message\": \"the model is overloaded\", \"type\": \"server_error\"}}\n\n",
        "data: [DONE]\n\n",
    ]);
    let anthropic = chunked(&[
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"half an answ\"}}\n\n",
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
    ]);
    let body =
        r#"{"model":"gpt-4o-mini","temperature":0,"stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
    for (kind, pieces) in [("openai-compatible", openai), ("anthropic", anthropic)] {
        let up = scripted_upstream(pieces);
        let config = config_for(up, 1, "")
            .replace("[[teams]]\nname = \"e2e\"", "[cache]\n\n[[teams]]\nname = \"e2e\"")
            .replacen("kind = \"openai-compatible\"", &format!("kind = \"{kind}\""), 1);
        let gw = start_gateway(&config, &[], &[]);
        let mut c = Client::connect(gw.addr);
        for _ in 0..2 {
            c.send(&chat_request(body, ""));
            let r = c.read_response().expect("a whole answer, framed");
            assert_eq!((r.status, r.header("x-tollgate-cache")), (200, Some("miss")), "{kind}: {}", r.text());
            assert!(r.text().contains("overloaded") || r.text().contains("Overloaded"), "{kind}: {}", r.text());
        }
    }
}

/// A stream whose body ends cleanly before the provider's own last event
/// (no `[DONE]`, no finish) is not an answer to keep: the answer cache
/// stores nothing, so a broken or hostile upstream cannot pin a cut answer
/// for the entry's life. An event stream with no events neither (its
/// replay would frame as the end of a chunked body).
#[test]
fn a_stream_ended_early_is_not_cached() {
    let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    let event = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"half an answ\"},\"finish_reason\":null}]}\n\n";
    let chunk = format!("{:x}\r\n{event}\r\n", event.len()).into_bytes();
    let body =
        r#"{"model":"gpt-4o-mini","temperature":0,"stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
    for pieces in [vec![head.clone(), chunk, b"0\r\n\r\n".to_vec()], vec![head.clone(), b"0\r\n\r\n".to_vec()]] {
        let up = scripted_upstream(pieces);
        let config = config_for(up, 1, "").replace("[[teams]]\nname = \"e2e\"", "[cache]\n\n[[teams]]\nname = \"e2e\"");
        let gw = start_gateway(&config, &[], &[]);
        let mut c = Client::connect(gw.addr);
        for _ in 0..2 {
            c.send(&chat_request(body, ""));
            let r = c.read_response().expect("a whole answer, framed");
            assert_eq!((r.status, r.header("x-tollgate-cache")), (200, Some("miss")), "{}", r.text());
        }
    }
}

/// A JSON answer framed by the connection's close, cut by that close
/// (an upstream that sends no length, a connection lost mid-body), is not
/// an answer to keep either: the client gets what came, the cache nothing.
#[test]
fn a_json_answer_cut_by_its_close_is_not_cached() {
    let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n".to_vec();
    let half = br#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"half an answ"#.to_vec();
    let whole = br#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#.to_vec();
    for (pieces, second) in [(vec![head.clone(), half], "miss"), (vec![head.clone(), whole], "hit")] {
        let up = scripted_upstream(pieces);
        let config = config_for(up, 1, "").replace("[[teams]]\nname = \"e2e\"", "[cache]\n\n[[teams]]\nname = \"e2e\"");
        let gw = start_gateway(&config, &[], &[]);
        for want in ["miss", second] {
            let r = one_request(gw.addr, &chat_request(ZERO_BODY, ""));
            assert_eq!((r.status, r.header("x-tollgate-cache")), (200, Some(want)), "{}", r.text());
        }
    }
}

const ZERO_BODY: &str = r#"{"model":"gpt-4o-mini","temperature":0,"messages":[{"role":"user","content":"Say hello"}]}"#;

/// An Anthropic answer that the translation cannot read (a tool's input
/// holding an integer of 2^64 or more, which its parser refuses) after a
/// long text: the client gets a 502, but the provider wrote the answer,
/// so the record bills its output (a token for every three of its bytes)
/// and not the prompt alone (found by a review: a tenant could have the
/// provider write such answers again and again for the price of prompts).
#[test]
fn an_answer_the_translation_cannot_read_is_billed_its_output() {
    let text = "All work and no play makes Jack a dull boy. ".repeat(700);
    let body = format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{{"type":"text","text":"{text}"}},{{"type":"tool_use","id":"t1","name":"f","input":{{"x":123456789012345678901234567890}}}}],"stop_reason":"tool_use","usage":{{"input_tokens":12,"output_tokens":7000}}}}"#
    );
    let logs = TempDir::new("hostile");
    let config = config_for(scripted_upstream(vec![json_answer(&body)]), 1, &format!("[logging]\ndir = \"{}\"", logs.0.display()))
        .replace("kind = \"openai-compatible\"", "kind = \"anthropic\"")
        .replace(
            "[[models]]\nname = \"gpt-4o\"\ntargets = [{ provider = \"up\" }]",
            "[[models]]\nname = \"gpt-4o\"\ntargets = [{ provider = \"up\" }]\nprice = { input_per_mtok = 2.5, output_per_mtok = 10.0 }",
        );
    let gw = start_gateway(&config, &[], &[]);
    let r = one_request(gw.addr, &chat_request(GPT4O, ""));
    assert_eq!(r.status, 502, "{}", r.text());
    let rec = only_record(gw, &logs);
    let completion = rec["tokens"]["completion"].as_u64().unwrap_or(0);
    // 31,000 bytes: about 10,300 tokens billed (the provider counted 7,000).
    assert!(completion >= body.len() as u64 / 3, "{rec}");
    assert!(rec["cost_micro_usd"].as_u64().unwrap_or(0) >= completion * 10, "{rec}");
    assert_eq!(rec["end"], "upstream_failed", "{rec}");
}

/// An answer without its input count: through the translation from
/// Anthropic's API, `message_start` with `"usage": null` then a
/// `message_delta` with output only, or a whole message with no usage at
/// all; from an OpenAI-compatible upstream, a chat answer or a stream's
/// usage chunk with `completion_tokens` alone; from Gemini, a
/// `usageMetadata` without `promptTokenCount`. Each read as a prompt of 0
/// once; then the reported output was dropped with it, and only the text
/// the gateway saw was billed, never the reasoning behind it (5,000
/// tokens reported here against about 150 of text). The prompt is the
/// gateway's count, the output the provider's (or, with no usage at all,
/// the gateway's), said to be estimated.
#[test]
fn an_answer_without_its_input_count_is_billed_its_prompt_counted_and_its_output_reported() {
    let text = "All work and no play makes Jack a dull boy. ".repeat(200);
    let message = format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{{"type":"text","text":"{text}"}}],"stop_reason":"end_turn"}}"#
    );
    let mut events = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":null}}\n\n",
    );
    events.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    for _ in 0..50 {
        events.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a dull boy \"}}\n\n");
    }
    events.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
    events.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":5000}}\n\n");
    events.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    let sse = |events: &str| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{events}",
            events.len()
        )
        .into_bytes()
    };
    // OpenAI's shapes, spaced as another server may write them.
    let chat = r#"{ "id" : "c", "object" : "chat.completion", "choices" : [ { "index" : 0, "message" : { "role" : "assistant", "content" : "a dull boy" }, "finish_reason" : "stop" } ], "usage" : { "total_tokens" : 5000, "completion_tokens" : 5000 } }"#;
    let chunk = |delta: &str| {
        format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{delta}\"}},\"finish_reason\":null}}]}}\n\n")
    };
    let mut chunks = chunk("a dull boy ").repeat(50);
    chunks.push_str("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"completion_tokens\": 5000}}\n\ndata: [DONE]\n\n");
    let prompt =
        format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{}"}}]}}"#, "tell me more ".repeat(100));
    let streamed = prompt.replace("\"messages\"", "\"stream\":true,\"messages\"");
    // Gemini's, whose `promptTokenCount` read as 0 when left out.
    let gemini = r#"{"candidates":[{"content":{"parts":[{"text":"a dull boy"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"candidatesTokenCount":5000,"totalTokenCount":5000},"modelVersion":"gemini-2.5-flash"}"#;
    let gemini_events = format!(
        "data: {}\r\n\r\ndata: {}\r\n\r\n",
        r#"{"candidates":[{"content":{"parts":[{"text":"a dull boy "}],"role":"model"},"index":0}]}"#,
        gemini.replace("a dull boy", "a dull boy again")
    );
    // A prompt of 0 beside an output is none reported.
    let zero = events.replace("\"usage\":null", "\"usage\":{\"input_tokens\":0,\"output_tokens\":1}");
    let cases = [
        (json_answer(&message), &prompt, "anthropic", 2_000),
        (sse(&events), &streamed, "anthropic", 5_000),
        (sse(&zero), &streamed, "anthropic", 5_000),
        (json_answer(chat), &prompt, "openai-compatible", 5_000),
        (sse(&chunks), &streamed, "openai-compatible", 5_000),
        (json_answer(gemini), &prompt, "gemini", 5_000),
        (sse(&gemini_events), &streamed, "gemini", 5_000),
    ];
    for (i, (answer, request, kind, least_out)) in cases.into_iter().enumerate() {
        let logs = TempDir::new("hostile");
        let config =
            config_for(scripted_upstream(vec![answer]), 1, &format!("[logging]\ndir = \"{}\"", logs.0.display()))
                .replace("kind = \"openai-compatible\"", &format!("kind = \"{kind}\""));
        let gw = start_gateway(&config, &[], &[]);
        let r = one_request(gw.addr, &chat_request(request, ""));
        assert_eq!(r.status, 200, "case {i}: {}", r.text());
        let rec = only_record(gw, &logs);
        let t = &rec["tokens"];
        assert!(t["prompt"].as_u64().is_some_and(|p| p >= 200), "case {i}: the gateway's count of the prompt: {rec}");
        assert!(t["completion"].as_u64().is_some_and(|c| c >= least_out), "case {i}: {rec}");
        assert_eq!(t["estimated"], true, "case {i}: {rec}");
    }
}

/// A chat stream's events carry deltas: one past 1 MiB ends the stream as
/// the upstream's failure rather than being held whole (several copies of
/// it at once), which only a Responses upstream's last events may be
/// (`a_responses_stream_whose_last_events_pass_a_mebibyte_is_billed_its_usage`).
#[test]
fn a_chat_stream_event_past_a_mebibyte_ends_the_stream() {
    let event = |content: &str| {
        format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n"
        )
    };
    let sse = format!("{}{}{}data: [DONE]\n\n", event("hello "), event(&"x".repeat(2 << 20)), event("world"));
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{sse}",
        sse.len()
    );
    let logs = TempDir::new("hostile");
    let gw = gateway(scripted_upstream(vec![answer.into_bytes()]), &logs);
    let body = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = one_request(gw.addr, &chat_request(body, ""));
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.len() < 1 << 20, "{} bytes reached the client", text.len());
    assert!(text.contains("hello") && text.contains("upstream_stream_error"), "{text}");
    assert_eq!(only_record(gw, &logs)["end"], "upstream_failed");
}

/// An upstream that says `100 Continue` to a request on a pooled
/// connection and then closes it has the request: it is not sent again on
/// a fresh connection (as a request on a connection that was already
/// closed is), where the provider could bill it twice.
#[test]
fn a_request_an_upstream_acknowledged_is_not_sent_twice() {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    let addr = upstream(move |mut c| {
        let mut buf = Vec::new();
        while read_request(&mut c, &mut buf).is_some() {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                let body = r#"{"id":"c","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                c.write_all(answer.as_bytes()).unwrap();
            } else {
                // Acknowledged, then gone.
                let _ = c.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
                return;
            }
        }
    });
    let logs = TempDir::new("hostile-continue");
    let mut gw = gateway(addr, &logs);
    assert_eq!(one_request(gw.addr, &chat_request(GPT4O, "")).status, 200);
    let r = one_request(gw.addr, &chat_request(GPT4O, ""));
    assert_eq!(r.status, 502, "{}", r.text());
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    let attempts = recs[1]["attempts"].as_array().expect("attempts").len();
    // Each of the route's attempts is one send, recorded and billed its
    // prompt; none went twice.
    assert_eq!(requests.load(Ordering::SeqCst), 1 + attempts, "an acknowledged request was sent again: {}", recs[1]);
}

/// A JSON answer whose usage reports far fewer tokens than its output
/// holds (3,000 tokens of prose, `"completion_tokens": 1`) is billed the
/// output's count, as a stream is, and the record says the report was set
/// aside: before, JSON answers were never counted and such an upstream's
/// answers cost a token each. Through the translation of an Anthropic
/// answer too, its text or its tool's input; a Responses answer's output
/// (not the instructions it repeats) and a legacy completion's text, each
/// relayed as it came. An honest count, one within
/// half of the output's, or one beside input the answer carries under a
/// `content` key (Azure's citations) is believed.
#[test]
fn a_json_answer_reporting_far_fewer_tokens_than_its_text_is_billed_its_text() {
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(300);
    let chat = |completion: u64, extra: &str| {
        format!(
            r#"{{ "id": "x", "object": "chat.completion", "choices": [ {{ "index": 0, "message": {{ "role": "assistant", "content": "{extra}" }}, "finish_reason": "stop" }} ], "usage": {{ "completion_tokens": {completion}, "prompt_tokens": 9 }} }}"#
        )
    };
    let cited = format!(
        r#"{{"id":"x","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"The dog is lazy.","context":{{"citations":[{{"content":"{text}","title":"fox"}}]}}}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":3100,"completion_tokens":5}}}}"#
    );
    let anthropic = |block: &str| {
        format!(
            r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{block}],"stop_reason":"end_turn","usage":{{"input_tokens":9,"output_tokens":1}}}}"#
        )
    };
    let priced = "[[models]]\nname = \"gpt-4o\"\ntargets = [{ provider = \"up\" }]\nprice = { input_per_mtok = 2.5, output_per_mtok = 10.0 }";
    let tool = anthropic(&format!(r#"{{"type":"tool_use","id":"t","name":"f","input":{{"q":"{text}"}}}}"#));
    let messages = post_json(
        "/v1/messages",
        r#"{"model":"gpt-4o","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#,
        "anthropic-version: 2023-06-01\r\n",
    );
    // vLLM's chat `echo`: the last message comes back as content, unbilled.
    let echo = chat_request(
        &format!(
            r#"{{"model":"gpt-4o","echo":true,"messages":[{{"role":"user","content":"hi"}},{{"role":"assistant","content":"{text}"}}]}}"#
        ),
        "",
    );
    let chat_client = chat_request(GPT4O, "");
    // The Responses API's answer and a legacy completion, each relayed as
    // it came (a provider of kind `responses`: chat's, serving it).
    let response = |extra: &str| {
        format!(
            r#"{{"id":"resp_1","object":"response","status":"completed","model":"gpt-4o","instructions":"{text}","output":[{{"type":"message","id":"msg_1","role":"assistant","status":"completed","content":[{{"type":"output_text","text":"{extra}","annotations":[]}}]}}],"usage":{{"input_tokens":9,"output_tokens":1,"total_tokens":10}}}}"#
        )
    };
    let responses_client = post_json("/v1/responses", r#"{"model":"gpt-4o","input":"hi"}"#, "");
    let legacy = format!(
        r#"{{"id":"cmpl-1","object":"text_completion","choices":[{{"index":0,"text":"{text}","finish_reason":"stop"}}],"usage":{{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}}}"#
    );
    let legacy_client = post_json("/v1/completions", r#"{"model":"gpt-4o","prompt":"hi"}"#, "");
    // (the provider's kind, its answer, the request, the completion billed;
    // None: set aside, about 3,000 counted)
    for (kind, answer, request, billed) in [
        ("openai-compatible", chat(1, &text), &chat_client, None),
        ("anthropic", anthropic(&format!(r#"{{"type":"text","text":"{text}"}}"#)), &chat_client, None),
        ("anthropic", tool.clone(), &chat_client, None),
        // An Anthropic client, the answer relayed as it came: the tool's
        // input alone, whose strings have no text key.
        ("anthropic", tool, &messages, None),
        ("openai-compatible", chat(3_000, &text), &chat_client, Some(3_000)),
        ("openai-compatible", chat(1_600, &text), &chat_client, Some(1_600)),
        ("openai-compatible", cited, &chat_client, Some(5)),
        ("openai-compatible", chat(5, &text), &echo, Some(5)),
        ("responses", response(&text), &responses_client, None),
        // A short answer beside the long instructions it repeats (the
        // request's, not output: counted, the first case would bill twice
        // the text) is believed.
        ("responses", response("The dog is lazy."), &responses_client, Some(1)),
        ("openai-compatible", legacy, &legacy_client, None),
    ] {
        let logs = TempDir::new("hostile");
        let config = config_for(
            scripted_upstream(vec![json_answer(&answer)]),
            1,
            &format!("[logging]\ndir = \"{}\"", logs.0.display()),
        )
        .replace(
            "kind = \"openai-compatible\"",
            &match kind {
                "responses" => "kind = \"openai-compatible\"\nresponses_api = true".to_string(),
                kind => format!("kind = \"{kind}\""),
            },
        )
        .replace("[[models]]\nname = \"gpt-4o\"\ntargets = [{ provider = \"up\" }]", priced);
        let gw = start_gateway(&config, &[], &[]);
        let r = one_request(gw.addr, request);
        assert_eq!(r.status, 200, "{kind}: {}", r.text());
        assert!(r.text().contains("lazy dog") || r.text().contains("dog is lazy"), "{kind}");
        let rec = only_record(gw, &logs);
        let completion = rec["tokens"]["completion"].as_u64().unwrap_or(0);
        match billed {
            Some(n) => {
                assert_eq!(completion, n, "{kind}: {rec}");
                assert!(rec["tokens"]["rejected"].is_null(), "{kind}: {rec}");
            }
            None => {
                // 300 sentences of 10 tokens each (and the tool's name and
                // the input's braces).
                assert!((2_900..=3_100).contains(&completion), "{kind}: {rec}");
                assert_eq!(
                    (rec["tokens"]["rejected"].clone(), rec["tokens"]["estimated"].clone()),
                    (true.into(), true.into()),
                    "{kind}: {rec}"
                );
                assert!(rec["cost_micro_usd"].as_u64().unwrap_or(0) >= 29_000, "{kind}: {rec}");
            }
        }
    }
}

/// Bytes an upstream writes unasked on a kept-alive connection, 50 ms
/// after its answer, are not served as the next request's answer (another
/// tenant's, perhaps): a pooled connection idle 10 ms or more is peeked
/// before it is reused, and one with bytes waiting let go. With a second's
/// grace before the peek, the next request got "A-SECRET" (found by a
/// review).
#[test]
fn bytes_an_upstream_sends_unasked_never_answer_the_next_request() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    let answer = |text: &str| {
        let body = format!(
            r#"{{"id":"x","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":1,"completion_tokens":1}}}}"#
        );
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len())
    };
    let injected = AtomicBool::new(false);
    let (first, second, unasked) = (answer("A-FIRST"), answer("B-OK"), answer("A-SECRET"));
    let up = upstream(move |mut c| {
        let mut buf = Vec::new();
        while read_request(&mut c, &mut buf).is_some() {
            buf.clear();
            if !injected.swap(true, Ordering::SeqCst) {
                let _ = c.write_all(first.as_bytes());
                std::thread::sleep(Duration::from_millis(50));
                let _ = c.write_all(unasked.as_bytes());
            } else {
                let _ = c.write_all(second.as_bytes());
            }
        }
    });
    let logs = TempDir::new("hostile-unasked");
    let gw = gateway(up, &logs);
    let a = one_request(gw.addr, &chat_request(GPT4O, ""));
    assert!(a.status == 200 && a.text().contains("A-FIRST"), "{}", a.text());
    std::thread::sleep(Duration::from_millis(150));
    let b = one_request(gw.addr, &chat_request(GPT4O, ""));
    assert!(!b.text().contains("A-SECRET"), "the unasked answer was served: {}", b.text());
    assert!(b.status == 200 && b.text().contains("B-OK"), "{}", b.text());
}

/// The provider's key under the header its configuration names
/// (`api_key_header`, any name: an API gateway's subscription key), sent
/// back by an upstream that echoes request headers, is not relayed to the
/// tenant (found by a review: the fixed list of credential names missed it).
#[test]
fn the_providers_own_key_header_is_never_relayed() {
    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nOcp-Apim-Subscription-Key: gateway-secret\r\nx-echo: ok\r\ncontent-length: 2\r\n\r\n{}";
    let up = scripted_upstream(vec![answer.as_bytes().to_vec()]);
    let config = config_for(up, 1, "").replace(
        &format!("base_url = \"http://{up}/v1\""),
        &format!("base_url = \"http://{up}/v1\"\napi_key_env = \"TOLLGATE_E2E_KEY\"\napi_key_header = \"ocp-apim-subscription-key\""),
    );
    let gw = start_gateway(&config, &[], &[("TOLLGATE_E2E_KEY", "gateway-secret")]);
    let r = one_request(gw.addr, &chat_request(GPT4O, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("ocp-apim-subscription-key").is_none(), "{:?}", r.headers);
    assert_eq!(r.header("x-echo"), Some("ok"), "other headers pass");
}
