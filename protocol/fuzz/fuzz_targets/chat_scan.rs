//! The chat body scan: no panic on any input, and the model span it reports
//! always lies inside the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_protocol::openai::scan_request;

fuzz_target!(|data: &[u8]| {
    if let Ok(fields) = scan_request(data) {
        assert!(fields.model.end as usize <= data.len());
        assert!(!fields.model.get(data).contains(&b'"'));
    }
});
