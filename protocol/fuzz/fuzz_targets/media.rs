//! The media estimate (a tenant's request, read for images and audio): no
//! panic and no overflow on any body or base64 header a tenant sends, and
//! never more than the dearest image per part.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_protocol::media::{image_size, media_tokens};

fuzz_target!(|data: &[u8]| {
    let t = media_tokens(data);
    // Each part is at least a few bytes: the estimate is bounded by the body.
    assert!(t <= (data.len() as u64).saturating_mul(2_000));
    let _ = image_size(data);
});
