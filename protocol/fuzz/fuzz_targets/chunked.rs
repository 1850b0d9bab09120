//! The chunked decoder: no panic on any input, and decoding in two pieces
//! gives the same data, end and verdict as decoding whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_protocol::http1::ChunkedDecoder;

fn decode(pieces: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), ()> {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut consumed = 0;
    for piece in pieces {
        let p = d.decode(piece, |r| out.extend_from_slice(&piece[r])).map_err(|_| ())?;
        consumed += p.consumed;
        if p.done {
            return Ok((out, consumed, true));
        }
    }
    Ok((out, consumed, false))
}

fuzz_target!(|data: &[u8]| {
    let whole = decode(&[data]);
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let split = decode(&[&data[..cut], &data[cut..]]);
    assert_eq!(whole, split);
});
