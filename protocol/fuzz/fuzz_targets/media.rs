//! The media estimate (a tenant's request, read for images and audio): no
//! panic and no overflow on any body or base64 header a tenant sends, and
//! never more than the dearest image per part. Whether a count is partial
//! (asked when a client leaves) with it: no panic, and never partial for a
//! body that names no medium, file, tool list, reasoning, thinking or
//! escape. A body
//! the route's scan calls text-only has no media.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_protocol::media::{counted_in_part, image_size, media_tokens};
use tollgate_protocol::openai::scan_request;

fuzz_target!(|data: &[u8]| {
    let t = media_tokens(data);
    // The route's scan skips the estimate for a text-only body: it must
    // have been 0.
    assert!(t == 0 || !scan_request(data).is_ok_and(|f| f.text_only));
    // Each part is at least a few bytes: the estimate is bounded by the body.
    assert!(t <= (data.len() as u64).saturating_mul(2_000));
    let _ = image_size(data);
    let named =
        ["image", "audio", "video", "file", "document", "item_reference", "tools", "mcp_servers", "reasoning", "thinking", "\\u00"]
            .iter()
            .any(|n| data.windows(n.len()).any(|w| w == n.as_bytes()));
    assert!(named || !counted_in_part(data));
});
