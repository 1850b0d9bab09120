//! Golden tests of the Gemini translation, on samples in the shapes of
//! Google's API reference (ai.google.dev/api/generate-content), compared as
//! JSON values (key order is free), and the attacks a hostile upstream
//! would try.

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use super::*;
use crate::sse::SseParser;

fn request(openai: Value) -> Result<(Value, RequestInfo), TranslateError> {
    let mut scratch = serde_json::to_vec(&openai).unwrap();
    let mut out = BytesMut::new();
    let info = request_from_openai(&mut scratch, &mut out)?;
    let v = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
    Ok((v, info))
}

fn answer(gemini: &str) -> (Value, Option<Usage>) {
    let mut scratch = gemini.as_bytes().to_vec();
    let mut out = BytesMut::new();
    let usage = response_to_openai(&mut scratch, "gemini-2.5-flash", 1_700_000_000, &mut out).unwrap();
    (serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out))), usage)
}

#[test]
fn a_request_moves_system_turns_and_sampling_where_gemini_wants_them() {
    let (g, info) = request(json!({
        "model": "gemini", "stream": true, "stream_options": {"include_usage": true},
        "temperature": 0.2, "top_p": 0.9, "max_completion_tokens": 500, "n": 2, "seed": 7,
        "stop": "END", "response_format": {"type": "json_object"},
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": "A cat."}
        ]
    }))
    .unwrap();
    assert_eq!(info, RequestInfo { stream: true, include_usage: true });
    assert_eq!(
        g,
        json!({
            "contents": [
                {"role": "user", "parts": [
                    {"text": "Hi"},
                    {"text": "What is this?"},
                    {"fileData": {"fileUri": "https://example.com/cat.png"}},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
                ]},
                {"role": "model", "parts": [{"text": "A cat."}]}
            ],
            "systemInstruction": {"parts": [{"text": "Be brief.\n\nAnswer in English."}]},
            "generationConfig": {
                "temperature": 0.2, "topP": 0.9, "maxOutputTokens": 500, "candidateCount": 2, "seed": 7,
                "stopSequences": ["END"], "responseMimeType": "application/json"
            }
        })
    );
}

#[test]
fn a_tool_round_trip_names_each_result_after_its_call_and_returns_the_signature() {
    let (g, _) = request(json!({
        "model": "gemini",
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                           "additionalProperties": false}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_0~ts~c2lnbmF0dXJl", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_0~ts~c2lnbmF0dXJl", "content": "{\"temp\":21}"},
            {"role": "tool", "tool_call_id": "call_1", "content": "cold"},
            {"role": "user", "content": "Thanks"}
        ]
    }))
    .unwrap();
    assert_eq!(
        g,
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Weather in Paris and Oslo?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnbmF0dXJl"},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                    {"functionResponse": {"name": "get_weather", "response": {"content": "cold"}}},
                    {"text": "Thanks"}
                ]}
            ],
            "tools": [{"functionDeclarations": [{
                "name": "get_weather", "description": "Weather for a city",
                "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}},
                                         "required": ["city"], "additionalProperties": false}
            }]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
        })
    );
    for (choice, mode) in [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")] {
        let (g, _) = request(json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": choice})).unwrap();
        assert_eq!(g["toolConfig"]["functionCallingConfig"], json!({"mode": mode}));
    }
}

#[test]
fn requests_gemini_cannot_take_are_refused_by_name() {
    let cases = [
        (json!({"messages": "hi"}), "messages must be an array"),
        (json!({"messages": [{"content": "x"}]}), "a message has no role"),
        (json!({"messages": [{"role": "robot", "content": "x"}]}), "message role must be"),
        (json!({"messages": [{"role": "tool", "tool_call_id": "nobody", "content": "x"}]}), "names no tool call"),
        (json!({"messages": [{"role": "user", "content": [{"type": "file", "file": {}}]}]}), "content parts must be"),
        (json!({"messages": [], "stop": 3}), "stop must be"),
        (json!({"messages": [], "response_format": {"type": "grammar"}}), "response_format type"),
    ];
    for (body, why) in cases {
        match request(body.clone()) {
            Err(e) => assert!(e.message().contains(why), "{body}: {}", e.message()),
            Ok((g, _)) => panic!("{body} translated to {g}"),
        }
    }
    let mut not_json = b"{\"messages\":[".to_vec();
    assert_eq!(request_from_openai(&mut not_json, &mut BytesMut::new()), Err(TranslateError::NotJson));
}

/// A documented answer: text, thought summary, usage with thinking, a
/// cache read and a prompt's tokens by modality (audio priced apart).
const ANSWER: &str = r#"{
  "candidates": [{
    "content": {"parts": [{"text": "Thinking about it", "thought": true}, {"text": "Hello"}, {"text": " there"}], "role": "model"},
    "finishReason": "STOP", "index": 0,
    "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
  }],
  "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 9, "totalTokenCount": 150,
                    "cachedContentTokenCount": 100, "thoughtsTokenCount": 21,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 80}, {"modality": "AUDIO", "tokenCount": 40}]},
  "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"
}"#;

#[test]
fn an_answer_becomes_a_chat_completion_billed_with_its_thinking() {
    let (c, usage) = answer(ANSWER);
    assert_eq!(
        usage,
        Some(Usage {
            prompt: 120,
            completion: 30,
            cached: 100,
            reasoning: 21,
            audio: 40,
            unreadable: false,
            prompt_reported: true
        })
    );
    assert_eq!(
        c,
        json!({
            "id": "resp-1", "object": "chat.completion", "created": 1_700_000_000u64, "model": "gemini-2.5-flash",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
                      "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 40},
                      "completion_tokens_details": {"reasoning_tokens": 21}}
        })
    );
    // What the gateway bills from: the audio apart.
    assert_eq!(usage.map(|u| u.to_openai().audio_prompt), Some(40));
}

/// A report without `promptTokenCount` (or with it `null`) is a prompt
/// not reported, not one of 0: the chat usage written says `null`, and
/// both readers mark the prompt for the gateway to count.
#[test]
fn an_answer_without_its_prompt_count_leaves_the_prompt_unreported() {
    let cached = r#"{"candidatesTokenCount":9,"cachedContentTokenCount":700,"promptTokensDetails":[{"modality":"AUDIO","tokenCount":40}]}"#;
    for metadata in
        [r#"{"candidatesTokenCount":9}"#, r#"{ "promptTokenCount" : null, "candidatesTokenCount" : 9 }"#, cached]
    {
        let (c, usage) = answer(&format!(
            r#"{{"candidates":[{{"content":{{"parts":[{{"text":"Hello"}}],"role":"model"}},"finishReason":"STOP"}}],"usageMetadata":{metadata}}}"#
        ));
        let u = usage.expect("a usage").to_openai();
        assert!(u.prompt_unreported && u.completion == 9, "{metadata}: {u:?}");
        assert!(c["usage"]["prompt_tokens"].is_null(), "{metadata}: {c}");
        let written = serde_json::to_vec(&c).unwrap();
        let read = crate::openai::read_answer(&written).and_then(|f| f.usage()).expect("read back");
        assert!(read.prompt_unreported && read.completion == 9, "{metadata}: {read:?}");
        // The cache's and the audio's shares are kept, read directly or
        // back from chat (held to a prompt of 0 they billed at full rate).
        if metadata == cached {
            assert_eq!((u.cached, u.audio_prompt), (700, 40), "{u:?}");
            assert_eq!((read.cached, read.audio_prompt), (700, 40), "{read:?}");
        }
    }
}

#[test]
fn an_answers_function_calls_become_tool_calls_carrying_their_signature() {
    let (c, _) = answer(
        r#"{"candidates":[{"content":{"role":"model","parts":[
            {"functionCall":{"name":"get_weather","args":{"city":"Paris","usageMetadata":{"promptTokenCount":0}}},"thoughtSignature":"c2ln"},
            {"functionCall":{"id":"own-id","name":"get_time","args":{}}}]},"finishReason":"STOP"}],
           "usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":5}}"#,
    );
    let choice = &c["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls[0]["id"], "call_0~ts~c2ln");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["city"], "Paris");
    assert_eq!(calls[1]["id"], "own-id");
    // A usage-looking key inside a call's arguments is an argument, not
    // the answer's usage.
    assert_eq!(c["usage"]["prompt_tokens"], 10);
}

#[test]
fn a_blocked_prompt_is_a_filtered_answer_and_candidates_keep_their_index() {
    let (c, usage) = answer(r#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":8}}"#);
    assert_eq!(c["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(usage.unwrap().prompt, 8);
    let (c, _) = answer(
        r#"{"candidates":[{"index":1,"content":{"parts":[{"text":"b"}]},"finishReason":"MAX_TOKENS"},
                          {"index":0,"content":{"parts":[{"text":"a"}]},"finishReason":"SAFETY"}]}"#,
    );
    assert_eq!(c["choices"][0]["index"], 1);
    assert_eq!(c["choices"][0]["finish_reason"], "length");
    assert_eq!(c["choices"][1]["finish_reason"], "content_filter");
    assert!(c.get("usage").is_none(), "no usage reported, none made up");
}

#[test]
fn a_hostile_answer_is_refused_rather_than_misread() {
    for bad in [
        r#"{"candidates":[{"index":1000000,"content":{"parts":[{"text":"x"}]}}]}"#,
        r#"{"candidates":[{"index":0,"content":{"parts":[{"text":"x"}]}},{"index":0,"content":{"parts":[{"text":"y"}]}}]}"#,
        r#"[{"candidates":[]}]"#,
        "not json",
    ] {
        let mut scratch = bad.as_bytes().to_vec();
        assert!(response_to_openai(&mut scratch, "m", 0, &mut BytesMut::new()).is_err(), "{bad}");
    }
}

#[test]
fn google_errors_become_openai_errors() {
    for body in [
        r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#,
        r#"[{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}]"#,
    ] {
        let mut scratch = body.as_bytes().to_vec();
        let mut out = BytesMut::new();
        error_to_openai(&mut scratch, 429, &mut out);
        let e: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(e["error"]["message"], "Resource has been exhausted (e.g. check quota).");
        assert_eq!(e["error"]["type"], "rate_limit_error");
        assert_eq!(e["error"]["code"], "resource_exhausted");
    }
    let mut html = b"<html>bad gateway</html>".to_vec();
    let mut out = BytesMut::new();
    assert!(!error_to_openai(&mut html, 502, &mut out));
    let e: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(e["error"]["message"], "upstream answered 502");
}

/// Google's answer to an invalid or expired API key (400, with an
/// `ErrorInfo` reason), as its documentation and clients show it, with
/// its members in another order and spaced: the key refused is the
/// gateway's; another 400 (a bad request) is not.
#[test]
fn a_refused_api_key_is_told_apart_from_a_bad_request() {
    let refused = [
        r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com"}}]}}"#,
        r#"[ { "error" : { "details" : [ { "metadata" : { } , "reason" : "API_KEY_EXPIRED" , "@type" : "type.googleapis.com/google.rpc.ErrorInfo" } ] , "status" : "INVALID_ARGUMENT" , "message" : "API key expired. Please renew the API key." , "code" : 400 } } ]"#,
    ];
    for body in refused {
        let mut scratch = body.as_bytes().to_vec();
        assert!(error_to_openai(&mut scratch, 400, &mut BytesMut::new()), "{body}");
    }
    let not = [
        r#"{"error":{"code":400,"message":"* GenerateContentRequest.contents: contents is not specified","status":"INVALID_ARGUMENT"}}"#,
        // A reason elsewhere than an `ErrorInfo`'s, or in the message alone.
        r#"{"error":{"code":400,"message":"reason API_KEY_INVALID","status":"INVALID_ARGUMENT","details":[{"reason":"OTHER"}],"reason":"API_KEY_INVALID"}}"#,
    ];
    for body in not {
        let mut scratch = body.as_bytes().to_vec();
        assert!(!error_to_openai(&mut scratch, 400, &mut BytesMut::new()), "{body}");
    }
}

/// A documented stream: text in pieces, usage growing, the last event with
/// the finish.
const STREAM: &str = concat!(
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"},\"index\": 0}],",
    "\"usageMetadata\": {\"promptTokenCount\": 7,\"candidatesTokenCount\": 1},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r9\"}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo, caf\u{e9} \u{65e5}\u{672c}\"}],\"role\": \"model\"},\"index\": 0}],",
    "\"usageMetadata\": {\"promptTokenCount\": 7,\"candidatesTokenCount\": 3}}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"!\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],",
    "\"usageMetadata\": {\"promptTokenCount\": 7,\"candidatesTokenCount\": 4,\"thoughtsTokenCount\": 2,\"totalTokenCount\": 13}}\r\n\r\n",
);

/// The stream through a parser and the translator, the input split at
/// `at`; the chunks' data, and the usage.
fn translate_stream(input: &str, at: usize) -> (Vec<Value>, bool, Option<Usage>) {
    let mut parser = SseParser::new(1 << 20);
    let mut t = StreamTranslator::new("gemini-2.5-flash", 1);
    let mut out = BytesMut::new();
    for piece in [&input.as_bytes()[..at], &input.as_bytes()[at..]] {
        parser.push(Bytes::copy_from_slice(piece));
        while let Some(ev) = parser.next_event().unwrap() {
            t.event(&ev, &mut out).unwrap();
        }
    }
    t.finish(&mut out);
    let mut chunks = SseParser::new(1 << 20);
    chunks.push(out.freeze());
    let mut data = Vec::new();
    let mut done = false;
    while let Some(ev) = chunks.next_event().unwrap() {
        if &ev.data[..] == b"[DONE]" {
            done = true;
        } else {
            data.push(serde_json::from_slice(&ev.data).unwrap());
        }
    }
    (data, done, t.usage())
}

#[test]
fn a_stream_becomes_chunks_ending_in_usage_and_done_wherever_it_is_split() {
    let whole = translate_stream(STREAM, STREAM.len());
    for at in 0..=STREAM.len() {
        assert_eq!(translate_stream(STREAM, at), whole, "split at {at}");
    }
    let (chunks, done, usage) = whole;
    assert!(done);
    assert_eq!(
        usage,
        Some(Usage {
            prompt: 7,
            completion: 6,
            cached: 0,
            reasoning: 2,
            audio: 0,
            unreadable: false,
            prompt_reported: true
        })
    );
    let text: String =
        chunks.iter().filter_map(|c| c["choices"].get(0).and_then(|c| c["delta"]["content"].as_str())).collect();
    assert_eq!(text, "Hello, café 日本!");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["id"], "r9");
    assert!(chunks.iter().any(|c| c["choices"].get(0).is_some_and(|c| c["finish_reason"] == "stop")));
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 6);
}

#[test]
fn a_stream_cut_before_its_finish_gets_no_done_and_an_error_event_ends_it() {
    let cut = &STREAM[..STREAM.rfind("data:").unwrap()];
    let (_, done, usage) = translate_stream(cut, 0);
    assert!(!done, "a body that ended before a finish is not a whole answer");
    assert_eq!(usage.unwrap().completion, 3, "what was reported is still billed");
    let error = "data: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}\n\n";
    let (chunks, done, _) = translate_stream(error, 0);
    assert!(done);
    assert_eq!(chunks[0]["error"]["message"], "The model is overloaded.");
}

#[test]
fn streamed_function_calls_are_whole_tool_call_deltas() {
    let input = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"a\",\"args\":{\"x\":1}},\"thoughtSignature\":\"s1\"}]}}]}\n\n\
                 data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"b\",\"args\":{}}}]},\"finishReason\":\"STOP\"}]}\n\n";
    let (chunks, done, usage) = translate_stream(input, 0);
    assert!(done);
    assert_eq!(usage, None);
    let calls: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"].get(0).and_then(|c| c["delta"]["tool_calls"].get(0))).collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["index"], 0);
    assert_eq!(calls[0]["id"], "call_0~ts~s1");
    assert_eq!(calls[0]["function"]["arguments"], "{\"x\":1}");
    assert_eq!(calls[1]["index"], 1);
    assert_eq!(calls[1]["function"]["name"], "b");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn a_hostile_stream_fails_rather_than_sizing_a_table() {
    let mut t = StreamTranslator::new("m", 0);
    let ev = SseEvent {
        data: Bytes::from_static(
            b"{\"candidates\":[{\"index\":4294967296,\"content\":{\"parts\":[{\"text\":\"x\"}]}}]}",
        ),
        ..SseEvent::default()
    };
    assert!(t.event(&ev, &mut BytesMut::new()).is_err());
    let nested = SseEvent {
        data: Bytes::from_static(
            b"{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hi\",\"usageMetadata\":{\"promptTokenCount\":1}}]}}]}",
        ),
        ..SseEvent::default()
    };
    t.event(&nested, &mut BytesMut::new()).unwrap();
    assert_eq!(t.usage(), None, "usage is read at the top level only");
}

/// The documented answer with its keys in random order and random
/// whitespace translates alike.
#[test]
fn reserialized_answers_translate_alike() {
    use proptest::prelude::*;
    let expected = answer(ANSWER);
    let doc: Value = serde_json::from_str(ANSWER).unwrap();
    proptest!(|(seed in 1..u64::MAX)| {
        let mut text = String::new();
        reserialize(&doc, &mut { seed }, &mut text);
        prop_assert_eq!(answer(&text), expected.clone());
    });
}

/// Writes `v` with its keys in an order, and whitespace, drawn from `rng`
/// (xorshift).
fn reserialize(v: &Value, rng: &mut u64, out: &mut String) {
    fn draw(rng: &mut u64) -> u64 {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    }
    let space = |n: u64, out: &mut String| out.push_str([" ", "", "\n ", "\t", "\r\n"][(n % 5) as usize]);
    match v {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            for i in (1..entries.len()).rev() {
                entries.swap(i, (draw(rng) % (i as u64 + 1)) as usize);
            }
            out.push('{');
            for (n, (k, v)) in entries.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                space(draw(rng), out);
                out.push_str(&serde_json::to_string(k).unwrap());
                space(draw(rng), out);
                out.push(':');
                reserialize(v, rng, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                space(draw(rng), out);
                reserialize(item, rng, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap()),
    }
}

/// A model that gives no ids gets `call_0` anew each turn: each result is
/// named after the latest call with its id before it.
#[test]
fn a_repeated_call_id_names_the_latest_call_before_its_result() {
    let call = |name: &str| {
        json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": name, "arguments": "{}"}}]})
    };
    let (g, _) = request(json!({"messages": [
        {"role": "user", "content": "weather, then time"},
        call("get_weather"),
        {"role": "tool", "tool_call_id": "call_0", "content": "sunny"},
        call("get_time"),
        {"role": "tool", "tool_call_id": "call_0", "content": "noon"},
        {"role": "assistant", "content": ""}
    ]}))
    .unwrap();
    let contents = g["contents"].as_array().unwrap();
    assert_eq!(contents[2]["parts"][0]["functionResponse"]["name"], "get_weather");
    assert_eq!(contents[4]["parts"][0]["functionResponse"]["name"], "get_time");
    assert_eq!(contents[5]["parts"], json!([{"text": " "}]), "an empty turn keeps one space");
    // A result before its call names nothing.
    let early = json!({"messages": [{"role": "tool", "tool_call_id": "call_0", "content": "x"}, call("f")]});
    assert!(request(early).is_err());
}

/// A `data:` URL the guardrails pass over as a file may not carry text or
/// a document to Gemini under `image_url`, nor an audio part a media type
/// of the tenant's choosing.
#[test]
fn files_the_guardrails_do_not_read_are_not_sent_as_images_or_audio() {
    for url in [
        "data:text/plain;base64,aWdub3JlIGFsbA==",
        "data:application/pdf;base64,JVBERi0=",
        "data:image/svg+xml;base64,PHN2Zz4=",
    ] {
        let r = request(json!({"model": "g", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}
        ]}]}));
        assert!(matches!(r, Err(TranslateError::Unsupported(m)) if m.contains("must be an image")), "{url}: {r:?}");
    }
    let r = request(json!({"model": "g", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "../text/plain"}}
    ]}]}));
    assert!(matches!(r, Err(TranslateError::Unsupported(m)) if m.contains("format")), "{r:?}");
    let (g, _) = request(json!({"model": "g", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "mp3"}}
    ]}]}))
    .unwrap();
    assert_eq!(g["contents"][0]["parts"][0]["inlineData"]["mimeType"], "image/jpeg");
    assert_eq!(g["contents"][0]["parts"][1]["inlineData"]["mimeType"], "audio/mp3");
}

/// The usage of an answer too large to keep, from its top-level
/// `usageMetadata` alone, reads as the whole answer's would; a nested
/// one, or none, is no usage.
#[test]
fn the_usage_of_an_answer_reads_from_its_top_level_metadata() {
    let doc = br#"{"usageMetadata":{"promptTokenCount":90000,"candidatesTokenCount":300,"thoughtsTokenCount":700,"cachedContentTokenCount":500,"totalTokenCount":91000}}"#;
    let u = answer_usage(doc).expect("usage");
    assert_eq!((u.prompt, u.completion, u.cached), (90000, 1000, 500));
    assert_eq!(answer_usage(br#"{"candidates":[{"usageMetadata":{"promptTokenCount":1}}]}"#), None);
    assert_eq!(answer_usage(b"{}"), None);
    assert_eq!(answer_usage(b"not json"), None);
}

/// A count that is not a whole number sets the report aside, as chat's
/// reader does (found by a review: `90000.0` was read as 0, believed, and
/// the prompt billed as nothing); `null` is no report; a stream's counts
/// are each the largest reported, so a later 0 lowers none.
#[test]
fn counts_that_are_not_whole_numbers_set_the_report_aside() {
    for bad in [r#""promptTokenCount":90000.0"#, r#""promptTokenCount":"90000""#, r#""promptTokenCount":-2"#] {
        let doc = format!(r#"{{"usageMetadata":{{{bad},"candidatesTokenCount":2}}}}"#);
        let u = answer_usage(doc.as_bytes()).expect("usage");
        assert!(u.prompt > crate::openai::USAGE_TOKENS_MAX, "{bad}: {u:?}");
    }
    let u = answer_usage(br#"{"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":null}}"#).expect("usage");
    assert_eq!((u.prompt, u.completion), (9, 0));
    let ev = |usage: &str| {
        format!("data: {{\"candidates\": [{{\"content\": {{\"parts\": [{{\"text\": \"hi\"}}],\"role\": \"model\"}},\"index\": 0}}],\"usageMetadata\": {usage}}}\r\n\r\n")
    };
    let input = ev(r#"{"promptTokenCount": 7,"candidatesTokenCount": 3}"#)
        + &ev(r#"{"promptTokenCount": 0,"candidatesTokenCount": 4}"#);
    let (chunks, _, usage) = translate_stream(&input, input.len());
    assert_eq!(usage.map(|u| (u.prompt, u.completion, u.unreadable)), Some((7, 4, false)));
    assert_eq!(chunks.last().unwrap()["usage"]["prompt_tokens"], 7);
    let input = ev(r#"{"promptTokenCount": 7.5,"candidatesTokenCount": 3}"#);
    let (chunks, _, usage) = translate_stream(&input, input.len());
    assert!(usage.is_some_and(|u| u.unreadable));
    let last = serde_json::to_vec(chunks.last().unwrap()).unwrap();
    assert_eq!(crate::openai::read_answer(&last).and_then(|f| f.usage()), None, "set aside by chat's reader");
}
