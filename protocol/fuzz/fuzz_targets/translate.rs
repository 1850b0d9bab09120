//! The OpenAI/Anthropic translation, both ways: no panic on any input, and
//! whatever it writes is valid JSON.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tollgate_protocol::anthropic::{self, front, StreamTranslator};
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
    let mut parser = SseParser::new(1 << 16);
    parser.push(Bytes::copy_from_slice(data));
    let mut to_openai = StreamTranslator::new(0, true);
    let mut to_anthropic = front::FrontStream::new();
    while let Ok(Some(ev)) = parser.next_event() {
        let _ = to_openai.event(&ev, &mut out);
        let _ = to_anthropic.event(&ev, &mut out);
    }
    to_openai.finish(&mut out);
    to_anthropic.finish(&mut out);
});
