//! The answer reader (usage and the usage chunk, by structure): no panic
//! on any input a hostile upstream sends, counts always within bounds, the
//! cached count never above the prompt (nor the hour-long writes above the
//! writes, the audio above what it details), and the same facts whatever
//! whitespace surrounds the document. The Responses event reader with
//! it: its text delta always a string's contents inside the document.
//! And the top-level members picked out of an answer too large to keep
//! (`TopMembers`): fed in pieces, they read as the whole document reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_protocol::openai::{read_answer, TopMembers, USAGE_TOKENS_MAX};

fuzz_target!(|data: &[u8]| {
    let facts = read_answer(data);
    if let Some(u) = facts.and_then(|f| f.usage()) {
        assert!(u.completion <= USAGE_TOKENS_MAX);
        assert!(u.prompt <= 3 * USAGE_TOKENS_MAX);
        assert!(u.cached.saturating_add(u.cache_write) <= u.prompt);
        // The hour-long writes and the audio are shares of what holds them.
        assert!(u.cache_write_1h <= u.cache_write);
        assert!(u.audio_prompt <= u.prompt && u.audio_completion <= u.completion);
    }
    let mut padded = b" \n".to_vec();
    padded.extend_from_slice(data);
    padded.extend_from_slice(b"\t ");
    assert_eq!(read_answer(&padded), facts);
    // A response's id is a plain string's contents inside the document.
    if let Some(id) = tollgate_protocol::responses::response_id(data) {
        assert!(!id.is_empty() && id.len() <= 128 && !id.contains(&b'\\') && !id.contains(&b'"'));
        assert!(data.windows(id.len()).any(|w| w == id));
    }
    let picked = |pieces: &[&[u8]]| {
        let mut top = TopMembers::new(&[b"usage", b"id", b"message", b"response"]);
        pieces.iter().for_each(|p| top.feed(p));
        top.document()
    };
    let whole = picked(&[data]);
    let cut = data.first().map_or(0, |&b| usize::from(b) % (data.len() + 1));
    assert_eq!(picked(&[&data[..cut], &data[cut..]]), whole);
    if let Some(facts) = &facts {
        // A fuzzer's document is far under the members' bound.
        let doc = whole.expect("the members of an object read whole");
        let read = read_answer(&doc).expect("an object");
        assert_eq!((read.usage(), read.reported.unreadable), (facts.usage(), facts.reported.unreadable));
        assert_eq!(tollgate_protocol::responses::response_id(&doc), tollgate_protocol::responses::response_id(data));
    }
    let event = tollgate_protocol::responses::read_event(data);
    if let Some((raw, escaped)) = event.as_ref().and_then(|e| e.delta.clone()) {
        assert!(raw.start >= 1 && raw.end < data.len());
        assert_eq!((data[raw.start - 1], data[raw.end]), (b'"', b'"'));
        assert_eq!(escaped, data[raw].contains(&b'\\'));
    }
    let shifted = tollgate_protocol::responses::read_event(&padded).map(|mut e| {
        e.delta = e.delta.map(|(r, esc)| (r.start - 2..r.end - 2, esc));
        e.sequence = e.sequence.map(|r| r.start - 2..r.end - 2);
        e.text_type = e.text_type.map(|r| r.start - 2..r.end - 2);
        e
    });
    assert_eq!(shifted, event);
});
