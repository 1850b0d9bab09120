//! The chat body scan: no panic on any input, the model span it reports
//! always lies inside the body, and the last message's span is one object.
//! The output limits' value spans are `null` or digits, and a body with
//! each replaced by another number (as a request ceiling writes them)
//! scans again, its limit that number. A tool the provider runs is
//! flagged exactly when the walk of the body's tools names one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_protocol::openai::{hosted_tools, scan_request};

fuzz_target!(|data: &[u8]| {
    if let Ok(fields) = scan_request(data) {
        assert!(fields.model.end as usize <= data.len());
        assert!(!fields.model.get(data).contains(&b'"'));
        if let Some(last) = fields.last_message {
            assert!(last.end as usize <= data.len());
            let m = last.get(data);
            assert!(m.first() == Some(&b'{') && m.last() == Some(&b'}'), "{m:?}");
        }
        if let Some(b) = fields.thinking_budget {
            assert!(b.start <= b.end && b.end as usize <= data.len());
        }
        assert!(fields.choices >= 1);
        let mut named = false;
        hosted_tools(data, |_| named = true);
        assert_eq!(fields.hosted_tools, named);
        let mut spans: Vec<_> = fields.max_tokens_at.into_iter().flatten().collect();
        spans.sort_by_key(|s| s.start);
        let mut edited = Vec::with_capacity(data.len());
        let mut at = 0;
        for s in &spans {
            let v = s.get(data);
            assert!(v == b"null" || (!v.is_empty() && v.iter().all(u8::is_ascii_digit)), "{v:?}");
            assert!(s.start as usize >= at);
            edited.extend_from_slice(&data[at..s.start as usize]);
            edited.extend_from_slice(b"7");
            at = s.end as usize;
        }
        edited.extend_from_slice(&data[at..]);
        let again = scan_request(&edited).expect("the edited body scans");
        assert_eq!(again.max_tokens, if spans.is_empty() { None } else { Some(7) });
    }
});
