//! The protocol stages on the request path: finding and parsing a head,
//! decoding a chunked body, parsing SSE, and scanning a chat body.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tollgate_bench::{chat_body, chunked, sse_stream, CHAT_HEAD};
use tollgate_protocol::http1::{find_head_end, ChunkedDecoder, HeadLimits, RequestHead};
use tollgate_protocol::openai::scan_request;
use tollgate_protocol::sse::SseParser;

fn head(c: &mut Criterion) {
    let mut g = c.benchmark_group("http_head");
    g.throughput(Throughput::Bytes(CHAT_HEAD.len() as u64));
    let head = Bytes::from_static(CHAT_HEAD);
    let limits = HeadLimits::default();
    g.bench_function("find_end+parse", |b| {
        b.iter(|| {
            let n = find_head_end(black_box(&head)).unwrap();
            let h = RequestHead::parse(head.slice(..n), &limits).unwrap();
            black_box(h.framing)
        })
    });
    g.finish();
}

fn chunked_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("chunked_decode");
    let payload = sse_stream(64);
    for chunk in [64usize, 1024, 16384] {
        let wire = chunked(&payload, chunk);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(format!("{chunk}B_chunks"), |b| {
            b.iter(|| {
                let mut d = ChunkedDecoder::new();
                let mut data = 0usize;
                let p = d.decode(black_box(&wire), |r| data += r.len()).unwrap();
                assert!(p.done);
                black_box(data)
            })
        });
    }
    g.finish();
}

fn sse_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("sse_parse");
    let stream = Bytes::from(sse_stream(64));
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("whole", |b| {
        b.iter(|| {
            let mut p = SseParser::new(1 << 20);
            p.push(stream.clone());
            let mut n = 0;
            while let Some(ev) = p.next_event().unwrap() {
                n += ev.data.len();
            }
            black_box(n)
        })
    });
    g.bench_function("split_every_100B", |b| {
        b.iter(|| {
            let mut p = SseParser::new(1 << 20);
            let mut n = 0;
            let mut at = 0;
            while at < stream.len() {
                let end = (at + 100).min(stream.len());
                p.push(stream.slice(at..end));
                while let Some(ev) = p.next_event().unwrap() {
                    n += ev.data.len();
                }
                at = end;
            }
            black_box(n)
        })
    });
    g.finish();
}

fn chat_scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("chat_scan");
    for size in [256usize, 2048, 32768] {
        let body = chat_body(size);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("{size}B"), |b| b.iter(|| black_box(scan_request(black_box(&body)).unwrap())));
    }
    // The prompt-size workload: prose with escapes, and a tool list (JSON
    // schemas: short strings, many brackets, escaped quotes).
    for name in ["mixed-8192", "mixed-102400", "tools-8192"] {
        let path = format!("{}/prompts/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let body = std::fs::read(&path).expect("bench/prompts: run bench/prompts/make.py");
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(scan_request(black_box(&body)).unwrap())));
    }
    g.finish();
}

/// Decoding a prompt's longest string (its escapes: `\n` and `\"` of code
/// every 40 bytes or so), as the guard decodes a text before its scan,
/// marks included. `TOLLGATE_NO_AVX512=1` measures the 32-byte decoder
/// against the 64-byte one on a machine that has both.
fn json_unescape(c: &mut Criterion) {
    let mut g = c.benchmark_group("json_unescape");
    for name in ["mixed-8192", "mixed-102400"] {
        let path = format!("{}/prompts/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let body = std::fs::read(&path).expect("bench/prompts: run bench/prompts/make.py");
        let mut longest = 0..0;
        tollgate_protocol::json::string_values(&body, |_, v| {
            if v.raw.len() > longest.len() {
                longest = v.raw.clone();
            }
        })
        .expect("JSON");
        let raw = &body[longest];
        let (mut out, mut marks) = (Vec::new(), Vec::new());
        g.throughput(Throughput::Bytes(raw.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                marks.clear();
                tollgate_protocol::json::unescape_marked(black_box(raw), &mut out, &mut marks).expect("decodes");
                black_box((out.len(), marks.len()))
            })
        });
    }
    g.finish();
}

/// The answer cache's key: the body's canonical form and its SHA-256, on
/// the prompt-size workload (`bench/prompts`).
fn cache_key(c: &mut Criterion) {
    use sha2::{Digest, Sha256};
    let mut g = c.benchmark_group("cache_key");
    for size in [100usize, 8192, 102400] {
        let path = format!("{}/prompts/mixed-{size}.json", env!("CARGO_MANIFEST_DIR"));
        let body = std::fs::read(&path).expect("bench/prompts: run bench/prompts/make.py");
        g.throughput(Throughput::Bytes(body.len() as u64));
        let skip: &[&[u8]] = &[b"user", b"stream"];
        // What the gateway does: the form, then BLAKE3 of it in one call.
        let mut out = Vec::with_capacity(body.len());
        g.bench_function(format!("canonical+blake3_{size}B"), |b| {
            b.iter(|| {
                out.clear();
                tollgate_protocol::canonical::canonical(black_box(&body), skip, &mut out).unwrap();
                black_box(blake3::hash(&out))
            })
        });
        g.bench_function(format!("canonical_{size}B"), |b| {
            b.iter(|| {
                out.clear();
                tollgate_protocol::canonical::canonical(black_box(&body), skip, &mut out).unwrap();
            })
        });
        g.bench_function(format!("blake3_{size}B"), |b| b.iter(|| black_box(blake3::hash(black_box(&body)))));
        g.bench_function(format!("sha256_{size}B"), |b| b.iter(|| black_box(Sha256::digest(black_box(&body)))));
    }
    g.finish();
}

fn translate(c: &mut Criterion) {
    use tollgate_protocol::anthropic::{request_from_openai, StreamTranslator};
    let mut g = c.benchmark_group("translate");
    let body = chat_body(2048);
    g.throughput(Throughput::Bytes(body.len() as u64));
    let mut out = bytes::BytesMut::with_capacity(4096);
    g.bench_function("openai_to_anthropic_request_2KB", |b| {
        b.iter(|| {
            out.clear();
            let mut scratch = body.clone();
            black_box(request_from_openai(&mut scratch, "claude-sonnet-4-5", &mut out).unwrap())
        })
    });
    // One Anthropic text delta event into one OpenAI chunk.
    let event = tollgate_protocol::sse::SseEvent {
        event: None,
        data: Bytes::from_static(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" token café"}}"#.as_bytes(),
        ),
        id: None,
        retry: None,
    };
    let mut t = StreamTranslator::new(1, false);
    g.throughput(Throughput::Elements(1));
    g.bench_function("anthropic_to_openai_stream_event", |b| {
        b.iter(|| {
            out.clear();
            t.event(black_box(&event), &mut out).unwrap();
            black_box(out.len())
        })
    });
    translate_responses(&mut g, &body);
    translate_gemini(&mut g, &body);
    translate_bedrock(&mut g, &body);
    g.finish();
}

/// The Responses API's translations (issue 20's table): a 2 KiB request
/// to chat and to Anthropic, a 1 KiB chat answer to a response, one chat
/// text chunk to its Responses event, and one Anthropic text event through
/// chat to its Responses event; and the other pairs' answers.
fn translate_responses(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, chat: &[u8]) {
    use tollgate_protocol::anthropic::{front, response_to_openai, StreamTranslator};
    use tollgate_protocol::responses::chat::{
        request_to_anthropic, request_to_chat, response_from_chat, ResponsesStream,
    };
    use tollgate_protocol::sse::{SseEvent, SseParser};
    let request = String::from_utf8_lossy(chat)
        .replacen("\"messages\":", "\"instructions\":\"Be brief.\",\"input\":", 1)
        .into_bytes();
    let mut out = bytes::BytesMut::with_capacity(8192);
    g.throughput(Throughput::Bytes(request.len() as u64));
    g.bench_function("responses_to_chat_request_2KB", |b| {
        b.iter(|| {
            out.clear();
            let mut scratch = request.clone();
            black_box(request_to_chat(&mut scratch, "llama", true, &mut out).unwrap())
        })
    });
    g.bench_function("responses_to_anthropic_request_2KB", |b| {
        b.iter(|| {
            out.clear();
            let mut scratch = request.clone();
            black_box(request_to_anthropic(&mut scratch, "claude-sonnet-4-5", &mut out).unwrap())
        })
    });
    // A valid Anthropic request: the chat body translated.
    let mut anthropic = bytes::BytesMut::new();
    tollgate_protocol::anthropic::request_from_openai(&mut chat.to_vec(), "claude", &mut anthropic).unwrap();
    g.bench_function("anthropic_to_openai_request_2KB", |b| {
        b.iter(|| {
            out.clear();
            let mut scratch = anthropic.to_vec();
            black_box(front::request_to_openai(&mut scratch, "gpt-4o", &mut out).unwrap())
        })
    });
    let text = "Tollgate counts every token café naïve 日本語 through the gateway ".repeat(16);
    let answer = format!(
        r#"{{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"llama","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":500,"completion_tokens":200,"total_tokens":700}}}}"#
    )
    .into_bytes();
    let message = format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{{"type":"text","text":"{text}"}}],"stop_reason":"end_turn","usage":{{"input_tokens":500,"output_tokens":200}}}}"#
    )
    .into_bytes();
    g.throughput(Throughput::Bytes(answer.len() as u64));
    g.bench_function("chat_to_responses_answer_1KB", |b| {
        b.iter(|| {
            out.clear();
            let mut scratch = answer.clone();
            response_from_chat(&mut scratch, &mut out).unwrap();
            black_box(out.len())
        })
    });
    g.bench_function("chat_to_anthropic_answer_1KB", |b| {
        b.iter(|| {
            out.clear();
            let mut scratch = answer.clone();
            front::response_from_openai(&mut scratch, &mut out).unwrap();
            black_box(out.len())
        })
    });
    g.bench_function("anthropic_to_chat_answer_1KB", |b| {
        b.iter(|| {
            out.clear();
            let mut scratch = message.clone();
            black_box(response_to_openai(&mut scratch, 1, &mut out).unwrap())
        })
    });
    let event =
        |data: &'static str| SseEvent { event: None, data: Bytes::from_static(data.as_bytes()), id: None, retry: None };
    let chunk = event(
        r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"llama","choices":[{"index":0,"delta":{"content":" token café"},"finish_reason":null}]}"#,
    );
    let delta = event(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" token café"}}"#);
    g.throughput(Throughput::Elements(1));
    let mut to_responses = ResponsesStream::new();
    to_responses.event(&chunk, &mut out).unwrap();
    g.bench_function("chat_to_responses_stream_event", |b| {
        b.iter(|| {
            out.clear();
            to_responses.event(black_box(&chunk), &mut out).unwrap();
            black_box(out.len())
        })
    });
    let mut to_anthropic = front::FrontStream::new();
    to_anthropic.event(&chunk, &mut out).unwrap();
    g.bench_function("chat_to_anthropic_stream_event", |b| {
        b.iter(|| {
            out.clear();
            to_anthropic.event(black_box(&chunk), &mut out).unwrap();
            black_box(out.len())
        })
    });
    // As the engine chains them: the Anthropic translator's chunk parsed
    // again and translated on.
    let (mut first, mut parser, mut then) =
        (StreamTranslator::new(1, true), SseParser::new(1 << 20), ResponsesStream::new());
    g.bench_function("anthropic_to_responses_stream_event", |b| {
        let mut chunks = bytes::BytesMut::new();
        b.iter(|| {
            out.clear();
            first.event(black_box(&delta), &mut chunks).unwrap();
            parser.push(chunks.split().freeze());
            while let Ok(Some(ev)) = parser.next_event() {
                then.event(&ev, &mut out).unwrap();
            }
            black_box(out.len())
        })
    });
}

/// The Gemini translations (issue 20's table): a 2 KiB chat request to
/// `generateContent`, a 1 KiB answer to a chat completion, one stream
/// event to its chat chunk, and one event on through chat to an Anthropic
/// client's event, as the engine chains them.
fn translate_gemini(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, chat: &[u8]) {
    use tollgate_protocol::anthropic::front::FrontStream;
    use tollgate_protocol::gemini::{request_from_openai, response_to_openai, StreamTranslator};
    use tollgate_protocol::sse::{SseEvent, SseParser};
    let mut out = bytes::BytesMut::with_capacity(8192);
    g.throughput(Throughput::Bytes(chat.len() as u64));
    g.bench_function("openai_to_gemini_request_2KB", |b| {
        b.iter(|| {
            out.clear();
            let mut scratch = chat.to_vec();
            black_box(request_from_openai(&mut scratch, &mut out).unwrap())
        })
    });
    let text = "Tollgate counts every token café naïve 日本語 through the gateway ".repeat(16);
    let answer = format!(
        r#"{{"candidates":[{{"content":{{"parts":[{{"text":"{text}"}}],"role":"model"}},"finishReason":"STOP","index":0}}],"usageMetadata":{{"promptTokenCount":500,"candidatesTokenCount":200,"totalTokenCount":700}},"modelVersion":"gemini-2.5-flash","responseId":"r1"}}"#
    )
    .into_bytes();
    g.throughput(Throughput::Bytes(answer.len() as u64));
    g.bench_function("gemini_to_chat_answer_1KB", |b| {
        b.iter(|| {
            out.clear();
            let mut scratch = answer.clone();
            black_box(response_to_openai(&mut scratch, "gemini-2.5-flash", 1, &mut out).unwrap())
        })
    });
    let event = SseEvent {
        data: Bytes::from_static(
            r#"{"candidates":[{"content":{"parts":[{"text":" token café"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":500,"candidatesTokenCount":3},"modelVersion":"gemini-2.5-flash","responseId":"r1"}"#
                .as_bytes(),
        ),
        ..SseEvent::default()
    };
    g.throughput(Throughput::Elements(1));
    let mut to_chat = StreamTranslator::new("gemini-2.5-flash", 1);
    g.bench_function("gemini_to_chat_stream_event", |b| {
        b.iter(|| {
            out.clear();
            to_chat.event(black_box(&event), &mut out).unwrap();
            black_box(out.len())
        })
    });
    let (mut first, mut parser, mut then) =
        (StreamTranslator::new("gemini-2.5-flash", 1), SseParser::new(1 << 20), FrontStream::new());
    g.bench_function("gemini_to_anthropic_stream_event", |b| {
        let mut chunks = bytes::BytesMut::new();
        b.iter(|| {
            out.clear();
            first.event(black_box(&event), &mut chunks).unwrap();
            parser.push(chunks.split().freeze());
            while let Ok(Some(ev)) = parser.next_event() {
                then.event(&ev, &mut out).unwrap();
            }
            black_box(out.len())
        })
    });
}

/// The Bedrock translations: a 2 KiB chat request to Converse, a 1 KiB
/// Converse answer to chat, one ConverseStream message (framed as AWS
/// frames it, CRCs checked) to its chat chunk, and the SigV4 signature of
/// the 2 KiB request.
fn translate_bedrock(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, chat: &[u8]) {
    use tollgate_protocol::bedrock::{request_from_openai, response_to_openai, StreamTranslator};
    use tollgate_protocol::eventstream::{encode, Decoder};
    use tollgate_protocol::sigv4;
    let mut out = bytes::BytesMut::with_capacity(8192);
    g.throughput(Throughput::Bytes(chat.len() as u64));
    g.bench_function("openai_to_bedrock_request_2KB", |b| {
        b.iter(|| {
            out.clear();
            let mut scratch = chat.to_vec();
            black_box(request_from_openai(&mut scratch, &mut out).unwrap())
        })
    });
    let mut converse = bytes::BytesMut::new();
    request_from_openai(&mut chat.to_vec(), &mut converse).unwrap();
    let creds = sigv4::Credentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        session_token: None,
    };
    g.bench_function("sigv4_sign_2KB", |b| {
        b.iter(|| {
            let req = sigv4::Request {
                method: "POST",
                host: "bedrock-runtime.us-east-1.amazonaws.com",
                path: "/model/amazon.nova-pro-v1%3A0/converse",
                query: "",
                headers: &[],
                payload: black_box(&converse),
            };
            black_box(sigv4::sign(&req, &creds, "us-east-1", "bedrock", 1_796_000_000))
        })
    });
    let text = "Tollgate counts every token café naïve 日本語 through the gateway ".repeat(16);
    let answer = format!(
        r#"{{"output":{{"message":{{"role":"assistant","content":[{{"text":"{text}"}}]}}}},"stopReason":"end_turn","usage":{{"inputTokens":500,"outputTokens":200,"totalTokens":700}},"metrics":{{"latencyMs":300}}}}"#
    )
    .into_bytes();
    g.throughput(Throughput::Bytes(answer.len() as u64));
    g.bench_function("bedrock_to_chat_answer_1KB", |b| {
        b.iter(|| {
            out.clear();
            let mut scratch = answer.clone();
            black_box(response_to_openai(&mut scratch, "amazon.nova-pro-v1:0", 1, &mut out).unwrap())
        })
    });
    let mut frame = bytes::BytesMut::new();
    encode(
        &[(":event-type", "contentBlockDelta"), (":content-type", "application/json"), (":message-type", "event")],
        r#"{"contentBlockIndex":0,"delta":{"text":" token café"},"p":"abcdefgh"}"#.as_bytes(),
        &mut frame,
    );
    g.throughput(Throughput::Elements(1));
    let (mut decoder, mut t) = (Decoder::new(), StreamTranslator::new("amazon.nova-pro-v1:0", 1));
    g.bench_function("bedrock_to_chat_stream_event", |b| {
        b.iter(|| {
            out.clear();
            decoder.push(black_box(&frame));
            while let Ok(Some(m)) = decoder.next_message() {
                t.message(&m, &mut out).unwrap();
            }
            black_box(out.len())
        })
    });
}

criterion_group!(benches, head, chunked_decode, sse_parse, chat_scan, json_unescape, cache_key, translate);
criterion_main!(benches);
