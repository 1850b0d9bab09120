//! OpenAI's byte-pair vocabularies as the build script laid them out
//! (`protocol/build.rs`): read-only tables in the binary, so a gateway that
//! counts tokens holds no vocabulary on its heap, and only the pages its
//! lookups touch are resident (clean, file-backed, shared by every worker
//! and every process running the binary).
//!
//! A piece's count follows tiktoken's rule: a piece that is a token is one
//! token; otherwise, starting from its bytes, the adjacent pair whose
//! concatenation has the lowest rank is merged, leftmost first, until no
//! pair is a token. Short pieces (almost all) merge in arrays on the
//! stack by scanning for the lowest pair, as tiktoken does; a long one
//! (a run of letters with no space, a blob of base64) keeps its pairs in a
//! heap, so that a tenant's 100 KB word costs n log n lookups, not n².

use super::vocab_hash::{vocab_slot, RANK_BITS};

// Sizes and bounds: the counts and probe bounds are read by the tests.
#[allow(dead_code)]
mod tables {
    include!(concat!(env!("OUT_DIR"), "/vocab_tables.rs"));
}

/// One encoding's tables (see `protocol/build.rs` for their layout).
pub(crate) struct Vocab {
    bytes: &'static [u8],
    starts: &'static [u8],
    slots: &'static [u8],
    pairs: &'static [u8],
    bits: u32,
    longest: usize,
}

macro_rules! vocab {
    ($name:literal, $bits:expr, $longest:expr) => {
        Vocab {
            bytes: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".bytes")),
            starts: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".starts")),
            slots: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".slots")),
            pairs: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".pairs")),
            bits: $bits,
            longest: $longest,
        }
    };
}

pub(crate) static O200K_BASE: Vocab = vocab!("o200k_base", tables::O200K_BASE_SLOT_BITS, tables::O200K_BASE_LONGEST);
pub(crate) static CL100K_BASE: Vocab =
    vocab!("cl100k_base", tables::CL100K_BASE_SLOT_BITS, tables::CL100K_BASE_LONGEST);

/// No rank: the pair is not a token.
const NONE: u32 = u32::MAX;

/// Pieces up to this many bytes merge on the stack.
const SHORT: usize = 64;

fn u32_at(table: &[u8], i: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&table[4 * i..4 * i + 4]);
    u32::from_le_bytes(word)
}

impl Vocab {
    /// Tokens in the vocabulary.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.starts.len() / 4 - 1
    }

    /// The bytes of the token of rank `rank`.
    #[cfg(test)]
    pub(crate) fn token(&self, rank: u32) -> &'static [u8] {
        let r = rank as usize;
        &self.bytes[u32_at(self.starts, r) as usize..u32_at(self.starts, r + 1) as usize]
    }

    /// The rank of the token whose bytes are `bytes`, [`NONE`] if none is.
    /// Reads at most the table's `PROBE_MAX` slots, whatever `bytes` are.
    fn rank(&self, bytes: &[u8]) -> u32 {
        if let [a, b] = *bytes {
            return u32_at(self.pairs, usize::from(a) << 8 | usize::from(b));
        }
        if bytes.len() > self.longest {
            return NONE;
        }
        let mask = (1usize << self.bits) - 1;
        let (mut at, tag) = vocab_slot(bytes, self.bits);
        loop {
            let slot = u32_at(self.slots, at);
            if slot == 0 {
                return NONE;
            }
            if slot >> RANK_BITS == tag {
                let r = ((slot & ((1 << RANK_BITS) - 1)) - 1) as usize;
                let (from, to) = (u32_at(self.starts, r) as usize, u32_at(self.starts, r + 1) as usize);
                if &self.bytes[from..to] == bytes {
                    return r as u32;
                }
            }
            at = (at + 1) & mask;
        }
    }

    /// Tokens in one piece of pre-tokenized text.
    pub(crate) fn count(&self, piece: &[u8]) -> usize {
        if piece.len() <= 1 || self.rank(piece) != NONE {
            return piece.len().min(1);
        }
        if piece.len() <= SHORT {
            self.merge_short(piece)
        } else {
            self.merge_long(piece)
        }
    }

    /// tiktoken's merge: `start[..=parts]` are the parts' boundaries,
    /// `pair[i]` the rank of parts `i` and `i + 1` together.
    fn merge_short(&self, piece: &[u8]) -> usize {
        let n = piece.len();
        let mut start = [0u8; SHORT + 1];
        let mut pair = [NONE; SHORT];
        for (i, s) in start.iter_mut().enumerate().take(n + 1) {
            *s = i as u8;
        }
        for i in 0..n - 1 {
            pair[i] = self.rank(&piece[i..i + 2]);
        }
        let mut parts = n;
        loop {
            let (mut best, mut at) = (NONE, 0);
            for (i, &r) in pair[..parts - 1].iter().enumerate() {
                if r < best {
                    (best, at) = (r, i);
                }
            }
            if best == NONE {
                return parts;
            }
            // Part `at + 1` joins part `at`: its boundary goes, and the
            // pairs after it move down one.
            start.copy_within(at + 2..=parts, at + 1);
            if at + 2 < parts {
                pair.copy_within(at + 2..parts - 1, at + 1);
            }
            parts -= 1;
            let span = |i: usize| &piece[start[i] as usize..start[i + 2] as usize];
            pair[at] = if at + 1 < parts { self.rank(span(at)) } else { NONE };
            if at > 0 {
                pair[at - 1] = self.rank(span(at - 1));
            }
        }
    }

    /// The same merges in the same order with the pairs in a heap ordered
    /// by (rank, position): the lowest rank, leftmost among equals, as the
    /// scan finds it. A popped pair is current if the rank recorded for its
    /// start still matches (a rank is one token, so one end).
    fn merge_long(&self, piece: &[u8]) -> usize {
        use std::cmp::Reverse;
        let n = piece.len();
        // next[i] / prev[i]: where the part after / before the part that
        // starts at i starts (n: none after).
        let mut next: Vec<u32> = (1..=n as u32).collect();
        let mut prev: Vec<u32> = (0..n as u32).map(|i| i.wrapping_sub(1)).collect();
        let mut pair: Vec<u32> = vec![NONE; n];
        let mut heap = std::collections::BinaryHeap::with_capacity(n);
        for i in 0..n - 1 {
            pair[i] = self.rank(&piece[i..i + 2]);
            if pair[i] != NONE {
                heap.push(Reverse((pair[i], i as u32)));
            }
        }
        let mut parts = n;
        while let Some(Reverse((r, i))) = heap.pop() {
            let i = i as usize;
            if pair[i] != r {
                continue;
            }
            let j = next[i] as usize;
            let k = next[j] as usize;
            next[i] = k as u32;
            if k < n {
                prev[k] = i as u32;
            }
            pair[j] = NONE;
            parts -= 1;
            pair[i] = if k < n { self.rank(&piece[i..next[k] as usize]) } else { NONE };
            if pair[i] != NONE {
                heap.push(Reverse((pair[i], i as u32)));
            }
            if i > 0 {
                let p = prev[i] as usize;
                pair[p] = self.rank(&piece[p..k]);
                if pair[p] != NONE {
                    heap.push(Reverse((pair[p], p as u32)));
                }
            }
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every token is found at its own rank, and the tables are the sizes
    /// the build script says.
    #[test]
    fn every_token_is_found_at_its_rank() {
        for (v, n, probe_max) in [
            (&O200K_BASE, tables::O200K_BASE_TOKENS, tables::O200K_BASE_PROBE_MAX),
            (&CL100K_BASE, tables::CL100K_BASE_TOKENS, tables::CL100K_BASE_PROBE_MAX),
        ] {
            assert_eq!(v.len(), n);
            for r in 0..n as u32 {
                assert_eq!(v.rank(v.token(r)), r);
            }
            assert_eq!(v.slots.len(), 4 << v.bits);
            assert!(probe_max <= 48, "a lookup reads up to {probe_max} slots");
        }
        assert_eq!(O200K_BASE.len(), 199_998);
        assert_eq!(CL100K_BASE.len(), 100_256);
    }

    /// The bound a lookup promises, measured independently of the build
    /// script: the longest run of occupied slots (wrapping) plus one.
    #[test]
    fn a_lookup_reads_at_most_probe_max_slots() {
        for (v, probe_max) in
            [(&O200K_BASE, tables::O200K_BASE_PROBE_MAX), (&CL100K_BASE, tables::CL100K_BASE_PROBE_MAX)]
        {
            let slots: Vec<u32> = (0..1usize << v.bits).map(|i| u32_at(v.slots, i)).collect();
            assert!(
                slots.iter().all(|&s| s == 0 || s & ((1 << RANK_BITS) - 1) != 0),
                "an occupied slot holds rank + 1"
            );
            let doubled: Vec<u32> = slots.iter().chain(slots.iter()).copied().collect();
            let longest = doubled.split(|&s| s == 0).map(<[u32]>::len).max().unwrap();
            assert_eq!(longest + 1, probe_max);
        }
    }

    /// The heap's merges are the scan's, on pieces built to have many
    /// equal-rank pairs and tokens inside tokens.
    #[test]
    fn long_merges_are_the_short_ones() {
        for v in [&O200K_BASE, &CL100K_BASE] {
            for piece in [
                &b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"[..],
                b"abababababababababababababababababababababababababababababababa",
                b"supercalifragilisticexpialidocioussupercalifragilisticexpialido",
                "網關只計算一次提示網關只計算一次提示網關只計算一次".as_bytes(),
                b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2",
            ] {
                let piece = &piece[..piece.len().min(SHORT)];
                assert_eq!(v.merge_long(piece), v.merge_short(piece), "{:?}", String::from_utf8_lossy(piece));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn heap_and_scan_agree(piece in proptest::collection::vec(
            prop_oneof![Just(b'a'), Just(b'b'), Just(b'e'), Just(b't'), Just(b' '), Just(b'0'), Just(0xe3), Just(0x81), Just(0x82)],
            2..=SHORT,
        )) {
            prop_assert_eq!(O200K_BASE.merge_long(&piece), O200K_BASE.merge_short(&piece));
            prop_assert_eq!(CL100K_BASE.merge_long(&piece), CL100K_BASE.merge_short(&piece));
        }
    }
}
