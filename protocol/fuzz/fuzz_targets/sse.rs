//! The SSE parser: no panic on any input, and the same events whether the
//! stream arrives whole or in two pieces.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tollgate_protocol::sse::{SseEvent, SseParser};

fn parse(pieces: &[&[u8]]) -> Result<Vec<SseEvent>, ()> {
    let mut p = SseParser::new(4096);
    let mut out = Vec::new();
    for piece in pieces {
        p.push(Bytes::copy_from_slice(piece));
        while let Some(ev) = p.next_event().map_err(|_| ())? {
            out.push(ev);
        }
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let whole = parse(&[data]);
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let split = parse(&[&data[..cut], &data[cut..]]);
    // Bounds can trip at different points when the carry grows, but the
    // events before that point must agree.
    if let (Ok(w), Ok(s)) = (&whole, &split) {
        assert_eq!(w, s);
    }
});
