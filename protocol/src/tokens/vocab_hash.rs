//! The hash that places a vocabulary's tokens in their table: shared by
//! the build script, which lays the table out, and the counter, which
//! looks pieces up in it (`include!`d by one, a module of the other, so
//! the two cannot drift apart).
//!
//! No seed: the table is laid out at build time and holds only the
//! vocabulary's own tokens, so the longest run of occupied slots is fixed
//! (the build script measures it and fails above its bound). A lookup of
//! any bytes a tenant sends reads at most that many slots.

/// Bits of a slot that hold `rank + 1` (o200k's 199,998 ranks fit in 18).
pub const RANK_BITS: u32 = 18;

/// The slot of a table of `1 << bits` that `bytes` hashes to first, and a
/// tag of 14 more bits of the hash, kept in the slot beside the rank so
/// that a lookup of bytes that are no token (most of a merge's lookups)
/// rarely reads a token's bytes to find out.
pub fn vocab_slot(bytes: &[u8], bits: u32) -> (usize, u32) {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |h: u64, word: u64| (h.rotate_left(23) ^ word).wrapping_mul(K);
    let n = bytes.len();
    let mut h = (n as u64).wrapping_mul(K);
    // Whole words, then the last up-to-eight bytes read as overlapping
    // fixed-size loads (no padding copy: a variable-length copy is a call
    // to memcpy, and most lookups are of two to eight bytes).
    let mut at = 0;
    while at + 8 < n {
        h = mix(h, word8(&bytes[at..at + 8]));
        at += 8;
    }
    let tail = &bytes[at..];
    let last = match tail.len() {
        0 => 0,
        1..=3 => u64::from(tail[0]) << 16 | u64::from(tail[tail.len() / 2]) << 8 | u64::from(tail[tail.len() - 1]),
        4..=7 => u64::from(word4(&tail[..4])) | u64::from(word4(&tail[tail.len() - 4..])) << 32,
        _ => word8(tail),
    };
    h = mix(h, last);
    // The multiply mixes upwards: the top bits are the best mixed.
    let tag = (h >> (64 - bits - (32 - RANK_BITS))) as u32 & ((1 << (32 - RANK_BITS)) - 1);
    ((h >> (64 - bits)) as usize, tag)
}

fn word8(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

fn word4(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[..4]);
    u32::from_le_bytes(w)
}
