//! The guard's walk of a document's texts (`string_texts_marked`, which
//! decodes a kept string with escapes while it looks for its end) against
//! the two passes it replaced: every string `string_values` ends, decoded
//! by `unescape_marked`. Same strings, ranges, texts, errors and marks, on
//! any bytes a tenant or an upstream sends, with one decoding room for
//! every input, as a core lends one to every request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_protocol::json::{
    string_texts_marked, string_values, unescape, unescape_marked, TextsRoom, MARKED_BYTES_MAX,
};

thread_local! {
    static ROOM: std::cell::RefCell<TextsRoom> = std::cell::RefCell::new(TextsRoom::default());
}

fuzz_target!(|data: &[u8]| {
    // Kept by key, and by contents (a data URL is not text).
    let keep = |key: &[u8], raw: &[u8]| key != b"type" && !raw.starts_with(b"data:");
    let mut one = Vec::new();
    let r1 = ROOM.with_borrow_mut(|room| {
        string_texts_marked(data, keep, room, |key, v, text, marks| {
            // Numbers read as text are the walk's own (`Visit::number`):
            // the strings are what the two must agree on.
            if !v.number {
                one.push((key.to_vec(), v, text.map(<[u8]>::to_vec), std::mem::take(marks)));
            }
        })
    });
    let mut two = Vec::new();
    let r2 = string_values(data, |key, v| {
        let raw = &data[v.raw.clone()];
        if !keep(key, raw) {
            return;
        }
        let (mut text, mut marks) = (Vec::new(), Vec::new());
        let t = if !v.escaped {
            Ok(raw.to_vec())
        } else if raw.len() <= MARKED_BYTES_MAX {
            unescape_marked(raw, &mut text, &mut marks).map(|()| text)
        } else {
            unescape(raw, &mut text).map(|()| text)
        };
        two.push((key.to_vec(), v, t, marks));
    });
    assert_eq!(r1, r2);
    assert_eq!(one, two);
});
