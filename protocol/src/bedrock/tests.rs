//! Golden tests of the Converse translation, on samples in the shapes of
//! the Bedrock API reference (Converse, ConverseStream), and the attacks a
//! hostile upstream would try.

use bytes::BytesMut;
use serde_json::{json, Value};

use super::*;
use crate::eventstream::{encode, Decoder};
use crate::sse::SseParser;

fn request(openai: Value) -> Result<Value, TranslateError> {
    let mut scratch = serde_json::to_vec(&openai).unwrap();
    let mut out = BytesMut::new();
    request_from_openai(&mut scratch, &mut out)?;
    Ok(serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out))))
}

#[test]
fn a_request_becomes_alternating_messages_with_system_tools_and_config() {
    let c = request(json!({
        "model": "m", "max_tokens": 300, "temperature": 0.5, "top_p": 0.9, "stop": ["END"],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "tooluse_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "{\"temp\":21}"},
            {"role": "user", "content": "Thanks"}
        ]
    }))
    .unwrap();
    assert_eq!(
        c,
        json!({
            "messages": [
                {"role": "user", "content": [{"text": "Weather?"}, {"image": {"format": "png", "source": {"bytes": "iVBO"}}}]},
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"temp": 21}}]}},
                    {"text": "Thanks"}
                ]}
            ],
            "system": [{"text": "Be brief."}],
            "inferenceConfig": {"maxTokens": 300, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
            "toolConfig": {
                "tools": [{"toolSpec": {"name": "get_weather", "description": "Weather",
                           "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}],
                "toolChoice": {"any": {}}
            }
        })
    );
    for (body, why) in [
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
            "data: URLs",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AA"}}]}]}),
            "png, jpeg",
        ),
        (json!({"messages": [{"role": "robot", "content": "x"}]}), "message role"),
    ] {
        assert!(request(body.clone()).unwrap_err().message().contains(why), "{body}");
    }
}

#[test]
fn an_answer_becomes_a_chat_completion_billed_with_the_caches_reads_and_writes() {
    let answer = r#"{"output":{"message":{"role":"assistant","content":[
        {"reasoningContent":{"reasoningText":{"text":"hmm","signature":"sig"}}},
        {"text":"It is "},{"text":"sunny."},
        {"toolUse":{"toolUseId":"tooluse_x","name":"get_weather","input":{"city":"Paris","usage":{"inputTokens":0}}}}]}},
        "stopReason":"tool_use",
        "usage":{"inputTokens":100,"outputTokens":20,"totalTokens":1320,"cacheReadInputTokens":1000,"cacheWriteInputTokens":200,
            "cacheDetails":[{"ttl":"1h","inputTokens":150},{"ttl":"5m","inputTokens":50}]},
        "metrics":{"latencyMs":420}}"#;
    let mut scratch = answer.as_bytes().to_vec();
    let mut out = BytesMut::new();
    let usage = response_to_openai(&mut scratch, "anthropic.claude-sonnet-4", 7, &mut out).unwrap();
    assert_eq!(
        usage,
        Some(Usage {
            input: 100,
            output: 20,
            cache_read: 1000,
            cache_write: 200,
            cache_write_1h: 150,
            unreadable: false,
            input_reported: true,
        })
    );
    let c: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(c["choices"][0]["message"]["content"], "It is sunny.");
    assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
    let call = &c["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "tooluse_x");
    assert_eq!(c["usage"]["prompt_tokens"], 1300);
    // The hour-long writes, in Anthropic's name, for the gateway to bill.
    assert_eq!(c["usage"]["cache_creation"]["ephemeral_1h_input_tokens"], 150);
    // What the gateway bills from: the cache's reads and writes apart.
    let facts = crate::openai::read_answer(&out).unwrap().usage().unwrap();
    assert_eq!((facts.prompt, facts.completion, facts.cached, facts.cache_write), (1300, 20, 1000, 200));
    assert_eq!(facts.cache_write_1h, 150);
    let mut bad = b"[1]".to_vec();
    assert!(response_to_openai(&mut bad, "m", 0, &mut BytesMut::new()).is_err());
    // Without `inputTokens` the prompt is not reported (it read as 0):
    // `null` in the chat usage written, marked for the gateway to count.
    let mut scratch = answer.replace("\"inputTokens\":100,", "").into_bytes();
    let mut out = BytesMut::new();
    let usage = response_to_openai(&mut scratch, "anthropic.claude-sonnet-4", 7, &mut out).unwrap();
    assert!(usage.is_some_and(|u| !u.input_reported && u.to_openai().prompt_unreported));
    let c: Value = serde_json::from_slice(&out).unwrap();
    assert!(c["usage"]["prompt_tokens"].is_null(), "{c}");
    let facts = crate::openai::read_answer(&out).unwrap().usage().unwrap();
    assert!(facts.prompt_unreported && facts.completion == 20, "{facts:?}");
    // The cache's reads and writes stay shares of the prompt to count.
    assert_eq!((facts.prompt, facts.cached, facts.cache_write), (1200, 1000, 200), "{facts:?}");
}

#[test]
fn aws_errors_become_openai_errors() {
    let mut body = br#"{"message":"Rate exceeded"}"#.to_vec();
    let mut out = BytesMut::new();
    error_to_openai(&mut body, 429, &mut out);
    let e: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        (e["error"]["message"].as_str(), e["error"]["type"].as_str()),
        (Some("Rate exceeded"), Some("rate_limit_error"))
    );
    assert_eq!(e["error"]["code"], "throttling_exception");
}

fn frame(kind: &str, payload: &str, out: &mut BytesMut) {
    encode(
        &[(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")],
        payload.as_bytes(),
        out,
    );
}

/// A documented ConverseStream: text in two deltas, a tool call whose input
/// arrives in pieces, the stop, then the usage.
fn converse_stream() -> BytesMut {
    let mut b = BytesMut::new();
    frame("messageStart", r#"{"p":"abcd","role":"assistant"}"#, &mut b);
    frame("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"Hello, café"},"p":"ab"}"#, &mut b);
    frame("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":" 日本"},"p":"ab"}"#, &mut b);
    frame("contentBlockStop", r#"{"contentBlockIndex":0,"p":"a"}"#, &mut b);
    frame(
        "contentBlockStart",
        r#"{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tooluse_9","name":"get_weather"}},"p":"a"}"#,
        &mut b,
    );
    frame("contentBlockDelta", r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"city\":"}},"p":"a"}"#, &mut b);
    frame("contentBlockDelta", r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"\"Paris\"}"}},"p":"a"}"#, &mut b);
    frame("contentBlockStop", r#"{"contentBlockIndex":1,"p":"a"}"#, &mut b);
    frame("messageStop", r#"{"stopReason":"tool_use","p":"abc"}"#, &mut b);
    frame(
        "metadata",
        r#"{"usage":{"inputTokens":12,"outputTokens":9,"totalTokens":21},"metrics":{"latencyMs":300},"p":"a"}"#,
        &mut b,
    );
    b
}

fn translate(body: &[u8], at: usize) -> (Vec<Value>, bool, Option<Usage>) {
    let mut d = Decoder::new();
    let mut t = StreamTranslator::new("amazon.nova-pro-v1:0", 1);
    let mut out = BytesMut::new();
    for piece in [&body[..at], &body[at..]] {
        d.push(piece);
        while let Some(m) = d.next_message().unwrap() {
            t.message(&m, &mut out).unwrap();
        }
    }
    t.finish(&mut out);
    let mut p = SseParser::new(1 << 20);
    p.push(out.freeze());
    let (mut chunks, mut done) = (Vec::new(), false);
    while let Some(ev) = p.next_event().unwrap() {
        if &ev.data[..] == b"[DONE]" {
            done = true;
        } else {
            chunks.push(serde_json::from_slice(&ev.data).unwrap());
        }
    }
    (chunks, done, t.usage())
}

#[test]
fn a_stream_becomes_chunks_ending_in_usage_and_done_wherever_it_is_split() {
    let body = converse_stream();
    let whole = translate(&body, body.len());
    for at in 0..=body.len() {
        assert_eq!(translate(&body, at), whole, "split at {at}");
    }
    let (chunks, done, usage) = whole;
    assert!(done);
    assert_eq!(usage, Some(Usage { input: 12, output: 9, input_reported: true, ..Usage::default() }));
    let text: String =
        chunks.iter().filter_map(|c| c["choices"].get(0).and_then(|c| c["delta"]["content"].as_str())).collect();
    assert_eq!(text, "Hello, café 日本");
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0).and_then(|c| c["delta"]["tool_calls"][0]["function"]["arguments"].as_str()))
        .collect();
    assert_eq!(args, r#"{"city":"Paris"}"#);
    assert!(chunks.iter().any(|c| c["choices"].get(0).is_some_and(|c| c["finish_reason"] == "tool_calls")));
    assert_eq!(chunks.last().unwrap()["usage"]["prompt_tokens"], 12);
}

#[test]
fn an_exception_ends_the_stream_and_a_cut_one_gets_no_done() {
    let mut b = BytesMut::new();
    frame("messageStart", r#"{"role":"assistant"}"#, &mut b);
    encode(
        &[(":exception-type", "throttlingException"), (":message-type", "exception")],
        br#"{"message":"Too many requests"}"#,
        &mut b,
    );
    let (chunks, done, _) = translate(&b, 0);
    assert!(done);
    assert_eq!(chunks.last().unwrap()["error"]["type"], "rate_limit_error");
    let full = converse_stream();
    let mut cut = BytesMut::new();
    frame("messageStart", r#"{"role":"assistant"}"#, &mut cut);
    frame("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"Hel"}}"#, &mut cut);
    assert!(!translate(&cut, 3).1, "a body that ended before messageStop is not whole");
    assert!(translate(&full, 5).1);
}

#[test]
fn a_hostile_stream_cannot_size_a_table_or_bill_from_inside_a_delta() {
    let mut t = StreamTranslator::new("m", 0);
    let mut b = BytesMut::new();
    frame(
        "contentBlockStart",
        r#"{"contentBlockIndex":4294967296,"start":{"toolUse":{"toolUseId":"x","name":"y"}}}"#,
        &mut b,
    );
    let mut d = Decoder::new();
    d.push(&b);
    let m = d.next_message().unwrap().unwrap();
    assert!(t.message(&m, &mut BytesMut::new()).is_err());
    let mut b = BytesMut::new();
    frame(
        "contentBlockDelta",
        r#"{"contentBlockIndex":0,"delta":{"text":"x","usage":{"inputTokens":1}},"usage":{"inputTokens":1}}"#,
        &mut b,
    );
    d.push(&b);
    let m = d.next_message().unwrap().unwrap();
    t.message(&m, &mut BytesMut::new()).unwrap();
    assert_eq!(t.usage(), None, "usage comes from the metadata event only");
}

/// The framing's own error frame ends the stream with an error event, and
/// tool input for a block no start opened is dropped.
#[test]
fn an_error_frame_ends_the_stream_and_orphan_tool_input_is_dropped() {
    let mut b = BytesMut::new();
    frame("messageStart", r#"{"role":"assistant"}"#, &mut b);
    frame("contentBlockDelta", r#"{"contentBlockIndex":3,"delta":{"toolUse":{"input":"{\"x\":1}"}}}"#, &mut b);
    encode(
        &[(":message-type", "error"), (":error-code", "InternalFailure"), (":error-message", "it broke")],
        b"",
        &mut b,
    );
    let (chunks, done, _) = translate(&b, 0);
    assert!(done);
    assert!(
        chunks.iter().all(|c| c["choices"].get(0).is_none_or(|c| c["delta"].get("tool_calls").is_none())),
        "{chunks:?}"
    );
    assert_eq!(chunks.last().unwrap()["error"]["message"], "it broke");
}

/// The usage of an answer too large to keep, from its top-level `usage`
/// alone, reads as the whole answer's would (cache reads and writes in the
/// prompt); a nested one, or none, is no usage.
#[test]
fn the_usage_of_an_answer_reads_from_its_top_level_usage() {
    let doc = br#"{"usage":{"inputTokens":100,"outputTokens":3000000,"cacheReadInputTokens":900,"cacheWriteInputTokens":50,"totalTokens":3001050}}"#;
    let u = answer_usage(doc).expect("usage");
    assert_eq!((u.prompt, u.completion, u.cached, u.cache_write), (1050, 3000000, 900, 50));
    assert_eq!(answer_usage(br#"{"output":{"usage":{"inputTokens":1}}}"#), None);
    assert_eq!(answer_usage(b"{}"), None);
}

/// A count that is not a whole number sets the report aside, as chat's
/// reader does (found by a review: it was read as 0, and believed).
#[test]
fn counts_that_are_not_whole_numbers_set_the_report_aside() {
    for bad in [r#""inputTokens":100.0"#, r#""inputTokens":"100""#, r#""inputTokens":-1"#] {
        let doc = format!(r#"{{"usage":{{{bad},"outputTokens":3}}}}"#);
        let u = answer_usage(doc.as_bytes()).expect("usage");
        assert!(u.prompt > crate::openai::USAGE_TOKENS_MAX, "{bad}: {u:?}");
    }
    let u = answer_usage(br#"{"usage":{"inputTokens":100,"outputTokens":3,"cacheReadInputTokens":null}}"#).unwrap();
    assert_eq!((u.prompt, u.completion), (100, 3));
}
