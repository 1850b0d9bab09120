//! The token counter on any text a tenant or upstream sends: no panic, the
//! piece cache answers as the merges do, and both encodings count exactly
//! what tiktoken-rs (another implementation, with the look-ahead pattern
//! this crate rewrites) counts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_protocol::tokens::Encoding;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (e, tik) in [
        (Encoding::O200kBase, tiktoken_rs::o200k_base_singleton()),
        (Encoding::Cl100kBase, tiktoken_rs::cl100k_base_singleton()),
    ] {
        let n = e.count(&text);
        assert_eq!(n, e.count_uncached(&text), "{e:?}: the cache");
        assert_eq!(n, tik.encode_ordinary(&text).len() as u64, "{e:?}: tiktoken on {text:?}");
        assert_eq!(e.count_bytes(data), n);
    }
});
