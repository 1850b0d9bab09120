//! The OpenAI/Anthropic and OpenAI/Gemini translations, both ways, and the
//! Responses API's to and from chat: no panic on any input, and whatever it writes is valid
//! JSON (each event of a translated Responses stream too).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tollgate_protocol::anthropic::{self, front, StreamTranslator};
use tollgate_protocol::gemini;
use tollgate_protocol::responses::chat;
use tollgate_protocol::sse::SseParser;

fn valid(out: &BytesMut) {
    let mut copy = out.to_vec();
    assert!(simd_json::to_borrowed_value(&mut copy).is_ok(), "{}", String::from_utf8_lossy(out));
}

fuzz_target!(|data: &[u8]| {
    let mut out = BytesMut::new();
    if anthropic::request_from_openai(&mut data.to_vec(), "m", &mut out).is_ok() {
        valid(&out);
    }
    out.clear();
    if front::request_to_openai(&mut data.to_vec(), "m", &mut out).is_ok() {
        valid(&out);
    }
    out.clear();
    let _ = anthropic::response_to_openai(&mut data.to_vec(), 0, &mut out);
    out.clear();
    let _ = front::response_from_openai(&mut data.to_vec(), &mut out);
    out.clear();
    if chat::request_to_chat(&mut data.to_vec(), "m", true, &mut out).is_ok() {
        valid(&out);
    }
    out.clear();
    if chat::request_to_anthropic(&mut data.to_vec(), "m", &mut out).is_ok() {
        valid(&out);
    }
    out.clear();
    if chat::response_from_chat(&mut data.to_vec(), &mut out).is_ok() {
        valid(&out);
    }
    out.clear();
    if gemini::request_from_openai(&mut data.to_vec(), &mut out).is_ok() {
        valid(&out);
    }
    out.clear();
    if gemini::response_to_openai(&mut data.to_vec(), "m", 0, &mut out).is_ok() {
        valid(&out);
    }
    out.clear();
    gemini::error_to_openai(&mut data.to_vec(), 500, &mut out);
    valid(&out);
    out.clear();
    let mut parser = SseParser::new(1 << 16);
    parser.push(Bytes::copy_from_slice(data));
    let mut to_openai = StreamTranslator::new(0, true);
    let mut to_anthropic = front::FrontStream::new();
    let mut to_responses = chat::ResponsesStream::new();
    let mut from_gemini = gemini::StreamTranslator::new("m", 0);
    let mut events = BytesMut::new();
    // What the Gemini stream became: chat chunks, each valid JSON, and `[DONE]`.
    let mut chunks = BytesMut::new();
    while let Ok(Some(ev)) = parser.next_event() {
        let _ = from_gemini.event(&ev, &mut chunks);
        let _ = to_openai.event(&ev, &mut out);
        let _ = to_anthropic.event(&ev, &mut out);
        let _ = to_responses.event(&ev, &mut events);
    }
    to_openai.finish(&mut out);
    to_anthropic.finish(&mut out);
    from_gemini.finish(&mut chunks);
    to_responses.finish(&mut events);
    let mut written = SseParser::new(1 << 30);
    written.push(chunks.freeze());
    while let Ok(Some(ev)) = written.next_event() {
        let mut data = ev.data.to_vec();
        assert!(&data[..] == b"[DONE]" || simd_json::to_borrowed_value(&mut data).is_ok());
    }
    let mut written = SseParser::new(1 << 30);
    written.push(events.freeze());
    while let Ok(Some(ev)) = written.next_event() {
        let mut data = ev.data.to_vec();
        assert!(simd_json::to_borrowed_value(&mut data).is_ok(), "{}", String::from_utf8_lossy(&ev.data));
    }
});
