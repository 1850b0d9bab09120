//! Golden tests of the translation, on samples written in each provider's
//! documented format, compared as JSON values (key order is free).

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use super::*;
use crate::sse::SseParser;

fn request(openai: Value) -> (Value, RequestInfo) {
    let mut scratch = serde_json::to_vec(&openai).unwrap();
    let mut out = BytesMut::new();
    let info = request_from_openai(&mut scratch, "claude-sonnet-4-5", &mut out).unwrap();
    (serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out))), info)
}

#[test]
fn request_text_system_defaults_and_sampling() {
    let (a, info) = request(json!({
        "model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
        "temperature": 0.5, "top_p": 1, "stop": "END",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]}
        ]
    }));
    assert_eq!(info, RequestInfo { stream: true, include_usage: true });
    assert_eq!(
        a,
        json!({
            "model": "claude-sonnet-4-5", "max_tokens": 4096, "stream": true,
            "system": "Be brief.\n\nAnswer in English.",
            "temperature": 0.5, "top_p": 1, "stop_sequences": ["END"],
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
                ]}
            ]
        })
    );
}

#[test]
fn request_tools_tool_calls_and_results() {
    let (a, info) = request(json!({
        "model": "gpt-4o", "max_tokens": 300, "stop": ["a", "b"],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "9C"},
            {"role": "assistant", "content": "Paris 18C, Oslo 9C."}
        ]
    }));
    assert!(!info.stream);
    assert_eq!(
        a,
        json!({
            "model": "claude-sonnet-4-5", "max_tokens": 300, "stop_sequences": ["a", "b"],
            "tools": [{"name": "get_weather", "description": "Weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "messages": [
                {"role": "user", "content": "Weather in Paris and Oslo?"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Oslo"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "9C"}
                ]},
                {"role": "assistant", "content": "Paris 18C, Oslo 9C."}
            ]
        })
    );
    for (choice, want) in
        [("auto", json!({"type": "auto"})), ("required", json!({"type": "any"})), ("none", json!({"type": "none"}))]
    {
        let (a, _) =
            request(json!({"model": "m", "tool_choice": choice, "messages": [{"role": "user", "content": "x"}]}));
        assert_eq!(a["tool_choice"], want);
    }
}

#[test]
fn request_errors() {
    let mut out = BytesMut::new();
    let mut bad = b"{\"messages\":3}".to_vec();
    assert_eq!(
        request_from_openai(&mut bad, "m", &mut out),
        Err(TranslateError::Unsupported("messages must be an array"))
    );
    let mut bad = b"not json".to_vec();
    assert_eq!(request_from_openai(&mut bad, "m", &mut out), Err(TranslateError::NotJson));
}

#[test]
fn response_text_and_tool_use() {
    let mut body = serde_json::to_vec(&json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": 5}
    }))
    .unwrap();
    let mut out = BytesMut::new();
    let (usage, finish) = response_to_openai(&mut body, 1_700_000_000, &mut out).unwrap();
    assert_eq!(usage, Usage { input: 20, output: 7, cache_read: 5, input_reported: true, ..Usage::default() });
    assert_eq!(finish, "tool_calls");
    let o: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        o,
        json!({
            "id": "msg_01", "object": "chat.completion", "created": 1_700_000_000u64, "model": "claude-sonnet-4-5",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Let me check.",
                "tool_calls": [{"id": "toolu_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 25, "completion_tokens": 7, "total_tokens": 32,
                "prompt_tokens_details": {"cached_tokens": 5}}
        })
    );
    assert_eq!(finish_reason("end_turn"), "stop");
    assert_eq!(finish_reason("max_tokens"), "length");
}

#[test]
fn errors_map_to_openai_shape() {
    let mut body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#.to_vec();
    let mut out = BytesMut::new();
    error_to_openai(&mut body, 529, &mut out);
    let o: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(o["error"]["message"], "Overloaded");
    assert_eq!(o["error"]["type"], "overloaded_error");
    let mut out = BytesMut::new();
    error_to_openai(&mut b"<html>".to_vec(), 502, &mut out);
    assert_eq!(serde_json::from_slice::<Value>(&out).unwrap()["error"]["message"], "upstream answered 502");
}

/// Anthropic's documented stream for a tool call, as it arrives on the wire.
const TOOL_STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_9\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"usage\":{\"input_tokens\":472,\"output_tokens\":2}}}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\n\
data: {\"type\": \"ping\"}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking the weather\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"get_weather\",\"input\":{}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Par\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"is\\\"}\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

fn translate_stream(wire: &str, include_usage: bool) -> (Vec<String>, Usage) {
    let mut parser = SseParser::new(1 << 16);
    let mut t = StreamTranslator::new(7, include_usage);
    let mut out = BytesMut::new();
    parser.push(Bytes::copy_from_slice(wire.as_bytes()));
    while let Some(ev) = parser.next_event().unwrap() {
        t.event(&ev, &mut out).unwrap();
    }
    assert!(t.finished());
    let mut back = SseParser::new(1 << 16);
    back.push(out.freeze());
    let mut data = Vec::new();
    while let Some(ev) = back.next_event().unwrap() {
        data.push(String::from_utf8(ev.data.to_vec()).unwrap());
    }
    (data, t.usage())
}

#[test]
fn stream_with_text_and_tool_call_deltas() {
    let (data, usage) = translate_stream(TOOL_STREAM, true);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let deltas: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"].get(0).map(|c| &c["delta"])).collect();
    assert_eq!(deltas[0], &json!({"role": "assistant", "content": ""}));
    assert_eq!(deltas[1], &json!({"content": "Checking the weather"}));
    assert_eq!(
        deltas[2],
        &json!({"tool_calls": [{"index": 0, "id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]})
    );
    let args: String = deltas[3..5]
        .iter()
        .map(|d| d["tool_calls"][0]["function"]["arguments"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(args, "{\"city\": \"Paris\"}");
    let finish = chunks.iter().find_map(|c| c["choices"].get(0).and_then(|c| c["finish_reason"].as_str()));
    assert_eq!(finish, Some("tool_calls"));
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], "msg_9");
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 89);
    assert_eq!(last["usage"]["prompt_tokens"], 472);
    assert_eq!(usage.output, 89);
    // Without include_usage there is no usage chunk.
    let (data, _) = translate_stream(TOOL_STREAM, false);
    assert!(data.iter().all(|d| !d.contains("\"usage\"")));
}

/// A stream's usage is each count's largest report: a later
/// `message_delta` reporting 0 hour-long writes (or 0 input) lowers none;
/// a count that is not a whole number sets the report aside.
#[test]
fn a_translated_streams_usage_keeps_each_counts_largest_report() {
    let start = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","usage":{"input_tokens":20,"cache_creation_input_tokens":300,"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},"output_tokens":1}}}"#;
    let delta = |usage: &str| {
        format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{usage}}}"#
        )
    };
    let wire = |usage: &str| {
        format!(
            "event: message_start\ndata: {start}\n\nevent: message_delta\ndata: {}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n",
            delta(usage)
        )
    };
    let (_, u) = translate_stream(
        &wire(
            r#"{"input_tokens":0,"cache_creation_input_tokens":0,"cache_creation":{"ephemeral_1h_input_tokens":0},"output_tokens":9}"#,
        ),
        true,
    );
    assert_eq!((u.input, u.cache_write, u.cache_write_1h, u.output, u.unreadable), (20, 300, 200, 9, false));
    for bad in [r#"{"output_tokens":-9}"#, r#"{"output_tokens":9.5}"#, r#"{"output_tokens":"9"}"#] {
        let (_, u) = translate_stream(&wire(bad), true);
        assert!(u.unreadable, "{bad}");
    }
    let (_, u) = translate_stream(&wire(r#"{"output_tokens":9,"cache_read_input_tokens":null}"#), true);
    assert!(!u.unreadable, "null is not reported, not unreadable");
}

#[test]
fn stream_error_event_ends_the_stream() {
    let wire = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let (data, _) = translate_stream(wire, false);
    assert_eq!(data.len(), 2);
    let e: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(e["error"]["type"], "overloaded_error");
    assert_eq!(data[1], "[DONE]");
}

// ---- The other direction: Anthropic clients, OpenAI upstreams ------------

#[test]
fn front_request_to_openai() {
    let mut scratch = serde_json::to_vec(&json!({
        "model": "claude-x", "max_tokens": 100, "stream": true, "stop_sequences": ["END"], "temperature": 0.2,
        "system": [{"type": "text", "text": "Be brief."}],
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "any"},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}}
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "get_weather", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "9C"}]}
        ]
    }))
    .unwrap();
    let mut out = BytesMut::new();
    let info = front::request_to_openai(&mut scratch, "gpt-4o", &mut out).unwrap();
    assert!(info.stream && info.include_usage);
    let o: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        o,
        json!({
            "model": "gpt-4o", "max_tokens": 100, "stop": ["END"], "temperature": 0.2,
            "stream": true, "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {}}}}],
            "tool_choice": "required",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "tu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "tu_1", "content": "9C"}
            ]
        })
    );
}

#[test]
fn front_response_and_error_from_openai() {
    let mut body = serde_json::to_vec(&json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "Hi"}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "prompt_tokens_details": {"cached_tokens": 4}}
    }))
    .unwrap();
    let mut out = BytesMut::new();
    front::response_from_openai(&mut body, &mut out).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap(),
        json!({
            "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-4o",
            "content": [{"type": "text", "text": "Hi"}], "stop_reason": "max_tokens", "stop_sequence": null,
            "usage": {"input_tokens": 6, "output_tokens": 2, "cache_read_input_tokens": 4}
        })
    );
    let mut out = BytesMut::new();
    front::error_from_openai(&mut br#"{"error":{"message":"slow down","type":"rate_limit"}}"#.to_vec(), 429, &mut out);
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap(),
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    );
}

#[test]
fn a_stream_survives_the_round_trip_through_both_translations() {
    // Anthropic -> OpenAI chunks -> Anthropic events: the text, the tool
    // call and the stop reason come back.
    let mut parser = SseParser::new(1 << 16);
    let mut to_openai = StreamTranslator::new(1, true);
    let mut openai = BytesMut::new();
    parser.push(Bytes::copy_from_slice(TOOL_STREAM.as_bytes()));
    while let Some(ev) = parser.next_event().unwrap() {
        to_openai.event(&ev, &mut openai).unwrap();
    }
    let mut parser = SseParser::new(1 << 16);
    let mut back = front::FrontStream::new();
    let mut anthropic = BytesMut::new();
    parser.push(openai.freeze());
    while let Some(ev) = parser.next_event().unwrap() {
        back.event(&ev, &mut anthropic).unwrap();
    }
    assert!(back.finished());
    let mut parser = SseParser::new(1 << 16);
    parser.push(anthropic.freeze());
    let mut names = Vec::new();
    let mut text = String::new();
    let mut args = String::new();
    let mut stop = None;
    while let Some(ev) = parser.next_event().unwrap() {
        let name = String::from_utf8(ev.event.clone().unwrap().to_vec()).unwrap();
        let v: Value = serde_json::from_slice(&ev.data).unwrap();
        assert_eq!(v["type"], name.as_str());
        match name.as_str() {
            "content_block_delta" if v["delta"]["type"] == "text_delta" => {
                text.push_str(v["delta"]["text"].as_str().unwrap())
            }
            "content_block_delta" => args.push_str(v["delta"]["partial_json"].as_str().unwrap()),
            "content_block_start" if v["content_block"]["type"] == "tool_use" => {
                assert_eq!(v["content_block"]["name"], "get_weather")
            }
            "message_delta" => {
                stop = v["delta"]["stop_reason"].as_str().map(str::to_string);
                assert_eq!(v["usage"]["output_tokens"], 89);
            }
            _ => {}
        }
        names.push(name);
    }
    assert_eq!(text, "Checking the weather");
    assert_eq!(args, "{\"city\": \"Paris\"}");
    assert_eq!(stop.as_deref(), Some("tool_use"));
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert_eq!(names.iter().filter(|n| *n == "content_block_start").count(), 2);
    assert_eq!(names.iter().filter(|n| *n == "content_block_stop").count(), 2);
}

#[test]
fn hostile_stream_indices_are_refused_not_allocated() {
    let mut t = StreamTranslator::new(0, false);
    let mut out = BytesMut::new();
    for index in ["18446744073709551615", "4000000000", "1024"] {
        let data = format!(
            r#"{{"type":"content_block_start","index":{index},"content_block":{{"type":"tool_use","id":"x","name":"f"}}}}"#
        );
        let ev = crate::sse::SseEvent { data: Bytes::from(data), ..Default::default() };
        assert!(t.event(&ev, &mut out).is_err(), "{index}");
    }
    let mut front = front::FrontStream::new();
    let err =
        crate::sse::SseEvent { data: Bytes::from_static(br#"{"error":{"message":"boom"}}"#), ..Default::default() };
    front.event(&err, &mut out).unwrap();
    assert!(front.finished());
    assert!(String::from_utf8_lossy(&out).contains("event: error\ndata: {\"type\":\"error\""));
}

/// An Anthropic client's stream over chat is billed from the chat usage
/// chunk whole: the cache's writes and their hour-long share, the audio
/// (Gemini's chat form), each held to what holds it, and the dearest tier
/// the chunks reported, which OpenAI writes at their top level.
#[test]
fn the_front_streams_usage_keeps_writes_audio_and_tier() {
    let mut front = front::FrontStream::new();
    let mut out = BytesMut::new();
    for data in [
        r#"{"id":"c","service_tier":"priority","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}"#,
        r#"{"id":"c","service_tier":"default","choices":[],"usage":{"prompt_tokens":100,"completion_tokens":20,"prompt_tokens_details":{"cached_tokens":10,"audio_tokens":30},"completion_tokens_details":{"audio_tokens":900},"cache_creation_input_tokens":40,"cache_creation":{"ephemeral_1h_input_tokens":25}}}"#,
    ] {
        front.event(&crate::sse::SseEvent { data: Bytes::from(data), ..Default::default() }, &mut out).unwrap();
    }
    let u = front.usage();
    assert_eq!((u.prompt, u.completion, u.cached, u.cache_write, u.cache_write_1h), (100, 20, 10, 40, 25));
    assert_eq!((u.audio_prompt, u.audio_completion), (30, 20), "audio held to the completion");
    assert_eq!(u.tier, crate::openai::Tier::Priority);
}

/// An Anthropic client's stream over chat: each count is the largest any
/// usage chunk reported (a last chunk of 0, or without the prompt's count,
/// bills no less), and a count not to believe sets the report aside, as
/// every other reader does (read as 0, `1.2e4` billed a prompt of none;
/// found by a review).
#[test]
fn the_front_streams_usage_is_read_as_strictly_as_chats() {
    let run = |chunks: &[&str]| {
        let mut front = front::FrontStream::new();
        let mut out = BytesMut::new();
        for data in chunks {
            let ev = crate::sse::SseEvent { data: Bytes::from(data.to_string()), ..Default::default() };
            front.event(&ev, &mut out).unwrap();
        }
        (front.usage(), front.unreadable())
    };
    let chunk = |usage: &str| format!(r#"{{"id":"c","choices":[],"usage":{usage}}}"#);
    let (u, unreadable) = run(&[
        &chunk(r#"{"prompt_tokens":900,"completion_tokens":5}"#),
        &chunk(r#"{"prompt_tokens":0,"completion_tokens":40}"#),
        &chunk(r#"{"completion_tokens":41}"#),
    ]);
    assert_eq!((u.prompt, u.completion, unreadable), (900, 40, false));
    for bad in [
        r#"{"prompt_tokens":1.2e4,"completion_tokens":5}"#,
        r#"{"prompt_tokens":"12000","completion_tokens":5}"#,
        r#"{"prompt_tokens":-1,"completion_tokens":5}"#,
        r#"{"prompt_tokens":12,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":99999999999}}"#,
    ] {
        let (_, unreadable) = run(&[&chunk(r#"{"prompt_tokens":10,"completion_tokens":1}"#), &chunk(bad)]);
        assert!(unreadable, "{bad}");
    }
    let (u, unreadable) = run(&[&chunk(r#"{"completion_tokens":41}"#)]);
    assert_eq!((u.prompt, u.completion, unreadable), (0, 0, false), "no report without both counts");
}

#[test]
fn request_mapping_edge_cases() {
    let (a, _) = request(json!({"model": "m", "max_completion_tokens": null, "max_tokens": 500, "temperature": 1.6,
        "messages": [{"role": "user", "content": "x"}]}));
    assert_eq!(a["max_tokens"], 500);
    assert_eq!(a["temperature"], 1);
}

#[test]
fn long_system_prompts_and_tool_lists_are_marked_for_the_prompt_cache_when_asked() {
    let marked = |openai: &Value, marks: bool| {
        let mut scratch = serde_json::to_vec(openai).unwrap();
        let mut out = BytesMut::new();
        request_from_openai_marked(&mut scratch, "claude-sonnet-4-5", marks, &mut out).unwrap();
        serde_json::from_slice::<Value>(&out).unwrap()
    };
    let long = "Follow the repository's conventions. ".repeat(200);
    let tool = |name: &str, description: &str| json!({"type": "function", "function": {"name": name, "description": description, "parameters": {"type": "object", "properties": {}}}});
    let body = json!({
        "model": "m",
        "messages": [{"role": "system", "content": long}, {"role": "user", "content": "hi"}],
        "tools": [tool("read", &"Reads a file. ".repeat(400)), tool("write", "Writes a file.")]
    });
    let a = marked(&body, true);
    assert_eq!(a["system"], json!([{"type": "text", "text": long, "cache_control": {"type": "ephemeral"}}]));
    assert_eq!(a["tools"][1]["cache_control"], json!({"type": "ephemeral"}), "the last tool carries the mark");
    assert!(a["tools"][0].get("cache_control").is_none());
    // Without marks, or with short prefixes, the request is as before.
    let plain = marked(&body, false);
    assert_eq!(plain["system"], json!(long));
    assert!(plain["tools"][1].get("cache_control").is_none());
    let short = json!({
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "tools": [tool("read", "Reads a file.")]
    });
    let s = marked(&short, true);
    assert_eq!(s["system"], json!("Be brief."));
    assert!(s["tools"][0].get("cache_control").is_none());
}

/// A model that reasons gets its output limit as `max_completion_tokens`
/// (OpenAI's reasoning models refuse `max_tokens`); any other, `max_tokens`.
#[test]
fn a_reasoning_models_limit_is_written_by_the_name_it_takes() {
    for (reasons, name, other) in
        [(true, "max_completion_tokens", "max_tokens"), (false, "max_tokens", "max_completion_tokens")]
    {
        let mut scratch = br#"{"model":"m","max_tokens":300,"messages":[{"role":"user","content":"hi"}]}"#.to_vec();
        let mut out = BytesMut::new();
        front::request_to_openai_for(&mut scratch, "o3", reasons, &mut out).unwrap();
        let o: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(o[name], 300, "{o}");
        assert!(o.get(other).is_none(), "{o}");
        let mut scratch = br#"{"model":"m","max_output_tokens":300,"input":"hi"}"#.to_vec();
        let mut out = BytesMut::new();
        crate::responses::chat::request_to_chat_for(&mut scratch, "o3", false, reasons, &mut out).unwrap();
        let o: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(o[name], 300, "{o}");
        assert!(o.get(other).is_none(), "{o}");
    }
}

/// An upstream's absurd counts neither panic nor wrap in the usage the
/// client is told: 2^64-1 prompt tokens plus a cached one stay 2^64-1
/// (found by a review: a plain `+` panicked in a debug build and told a
/// release build's client 0).
#[test]
fn absurd_counts_saturate_in_the_translated_usage() {
    let mut body = br#"{"id":"m","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":18446744073709551615,"output_tokens":1,"cache_read_input_tokens":1}}"#.to_vec();
    let mut out = BytesMut::new();
    response_to_openai(&mut body, 1_700_000_000, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], u64::MAX, "{v}");
    assert_eq!(v["usage"]["total_tokens"], u64::MAX, "{v}");
}
