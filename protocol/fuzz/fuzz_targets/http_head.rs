//! Request and response heads: any bytes, found and parsed incrementally,
//! must never panic, and the resumable scan must agree with a whole scan.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tollgate_protocol::http1::{find_head_end, HeadLimits, HeadScan, RequestHead, ResponseHead};

fuzz_target!(|data: &[u8]| {
    let whole = find_head_end(data);
    // Feed in two pieces at a cut derived from the input.
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let mut scan = HeadScan::default();
    let split = scan.find_end(&data[..cut]).or_else(|| scan.find_end(data));
    assert_eq!(whole, split);
    if let Some(end) = whole {
        let head = Bytes::copy_from_slice(&data[..end]);
        match RequestHead::parse(head.clone(), &HeadLimits::default()) {
            Ok(req) => {
                let _ = (req.path(), req.header(b"host"), req.headers().count());
            }
            Err(e) => assert!(matches!(e.status(), 400 | 413 | 414 | 431 | 501 | 505)),
        }
        let _ = ResponseHead::parse(head, false);
    } else {
        let _ = RequestHead::too_large(data, &HeadLimits::default());
    }
});
