//! The chat body scan: no panic on any input, the model span it reports
//! always lies inside the body, and the last message's span is one object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_protocol::openai::scan_request;

fuzz_target!(|data: &[u8]| {
    if let Ok(fields) = scan_request(data) {
        assert!(fields.model.end as usize <= data.len());
        assert!(!fields.model.get(data).contains(&b'"'));
        if let Some(last) = fields.last_message {
            assert!(last.end as usize <= data.len());
            let m = last.get(data);
            assert!(m.first() == Some(&b'{') && m.last() == Some(&b'}'), "{m:?}");
        }
    }
});
