//! The answer reader (usage and the usage chunk, by structure): no panic
//! on any input a hostile upstream sends, counts always within bounds, the
//! cached count never above the prompt, and the same facts whatever
//! whitespace surrounds the document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_protocol::openai::{read_answer, USAGE_TOKENS_MAX};

fuzz_target!(|data: &[u8]| {
    let facts = read_answer(data);
    if let Some(u) = facts.and_then(|f| f.usage()) {
        assert!(u.completion <= USAGE_TOKENS_MAX);
        assert!(u.prompt <= 3 * USAGE_TOKENS_MAX);
        assert!(u.cached.saturating_add(u.cache_write) <= u.prompt);
    }
    let mut padded = b" \n".to_vec();
    padded.extend_from_slice(data);
    padded.extend_from_slice(b"\t ");
    assert_eq!(read_answer(&padded), facts);
});
