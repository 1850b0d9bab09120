//! The RESP decoder: no panic on any input, and a reply that decodes from
//! the whole buffer never decodes from a shorter prefix of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_protocol::resp::decode;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((reply, used))) = decode(data) {
        assert!(used <= data.len());
        assert_eq!(decode(&data[..used]), Ok(Some((reply, used))));
        if used > 0 {
            assert_eq!(decode(&data[..used - 1]), Ok(None));
        }
    }
});
