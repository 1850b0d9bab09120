//! The answer cache's canonical form: no panic and no stack overflow on
//! any body a tenant sends; the form is a fixed point (canonical of
//! canonical is itself), whitespace around the document changes nothing,
//! and whatever it accepts serde_json reads as the same document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_protocol::canonical::canonical;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let Ok(()) = canonical(data, &[b"user"], &mut out) else { return };
    let mut again = Vec::new();
    canonical(&out, &[], &mut again).expect("the canonical form is JSON");
    assert_eq!(again, out, "a fixed point");
    let mut padded = b" \n".to_vec();
    padded.extend_from_slice(data);
    padded.extend_from_slice(b"\t ");
    let mut shifted = Vec::new();
    canonical(&padded, &[b"user"], &mut shifted).expect("whitespace around the document");
    assert_eq!(shifted, out);
    // Another implementation reads the same values (a document with a
    // repeated key is refused, so serde_json's reading is the only one).
    if let (Ok(a), Ok(b)) = (serde_json::from_slice::<serde_json::Value>(data), serde_json::from_slice::<serde_json::Value>(&out)) {
        let mut a = a;
        if let Some(o) = a.as_object_mut() {
            o.remove("user");
        }
        if !data.windows(2).any(|w| w == b"\\u") {
            assert_eq!(a, b);
        }
    }
});
