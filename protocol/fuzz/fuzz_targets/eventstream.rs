//! AWS's event stream framing and the ConverseStream translation on any
//! bytes, split at any point: no panic, no message past its bound, and
//! every chat chunk the translation writes is valid JSON (or `[DONE]`).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tollgate_protocol::bedrock::StreamTranslator;
use tollgate_protocol::eventstream::{encode, Decoder, MESSAGE_BYTES_MAX};
use tollgate_protocol::sse::SseParser;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else { return };
    let at = (split as usize * body.len()) / 255;
    let mut decoder = Decoder::new();
    let mut t = StreamTranslator::new("m", 0);
    let mut out = BytesMut::new();
    for piece in [&body[..at], &body[at..]] {
        decoder.push(piece);
        while let Ok(Some(m)) = decoder.next_message() {
            assert!(m.payload.len() <= MESSAGE_BYTES_MAX);
            let _ = t.message(&m, &mut out);
        }
    }
    // The same bytes as payloads of well-framed messages (split at 0xff,
    // each kind in turn), so that the translation sees what the CRCs
    // would otherwise keep from it.
    const KINDS: [&str; 7] =
        ["messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata", "x"];
    let mut framed = BytesMut::new();
    for (i, payload) in body.split(|&b| b == 0xff).enumerate() {
        let kind = KINDS[(i + split as usize) % KINDS.len()];
        let message_type = if kind == "x" { "exception" } else { "event" };
        encode(&[(":event-type", kind), (":message-type", message_type)], payload, &mut framed);
    }
    decoder = Decoder::new();
    decoder.push(&framed);
    while let Ok(Some(m)) = decoder.next_message() {
        let _ = t.message(&m, &mut out);
    }
    t.finish(&mut out);
    let mut p = SseParser::new(1 << 30);
    p.push(Bytes::from(out));
    while let Ok(Some(ev)) = p.next_event() {
        let mut d = ev.data.to_vec();
        assert!(&d[..] == b"[DONE]" || simd_json::to_borrowed_value(&mut d).is_ok());
    }
});
