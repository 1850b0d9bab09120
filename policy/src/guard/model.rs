//! The built-in injection model: a logistic regression over hashed words
//! and word pairs, carried in the binary, for classifiers of kind
//! `builtin`. It is the classifier tier's answer for the long role-play
//! and persona set-ups that no phrase list can tell from harmless ones,
//! at the cost of a pass over the text instead of a round trip.
//!
//! `tests/guardrails/train_injection_model.py` trains it on public data
//! (PyRIT's and EasyJailbreak's jailbreak collections against the T0
//! mixture, Tensor Trust's defence prompts and long benign texts), leaving
//! out anything near the test sets, and writes
//! `policy/data/injection-model.bin`:
//!
//! ```text
//! "TGIM" | bits: u32 LE | scale: f32 LE | bias: f32 LE | 2^bits weights: i8
//! ```
//!
//! The features must be the script's, byte for byte: ASCII letters
//! lower-cased; a word is a run of ASCII letters and digits and of bytes
//! `>= 0x80` (so a word of any script is one feature); each word is
//! hashed with 32-bit FNV-1a and each pair of neighbours from its words'
//! hashes ([`pair`]), into `2^bits` buckets; a text's vector has `1/sqrt(max(k, FLOOR))` in
//! each of its `k` distinct buckets. A test replays the script's scores.

use std::cell::RefCell;

static BYTES: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/injection-model.bin"));

/// A text with fewer distinct buckets is scaled as if it had this many,
/// so that a short sentence's few words cannot decide it alone (short
/// phrases are the in-line scorer's part). The script's `FLOOR`.
const FLOOR: usize = 64;

/// The score from which a `builtin` classifier calls a text an injection
/// unless its `threshold` says otherwise: measured on the prompts in
/// `tests/guardrails/public.jsonl` and the synthetic corpora (README).
pub const THRESHOLD: f32 = 0.25;

/// The model's header and weights, borrowed from the binary.
#[derive(Clone, Copy)]
pub struct Model {
    mask: u32,
    scale: f32,
    bias: f32,
    weights: &'static [u8],
}

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// The distinct buckets of the text being scored, per thread: a bit per
/// bucket (32 KiB for 2^18) and the buckets set, to clear them after.
/// A score allocates only the first time, or when a text has more words
/// than any before on the thread.
struct Seen {
    bits: Vec<u64>,
    set: Vec<u32>,
}

thread_local! {
    static SEEN: RefCell<Seen> = const { RefCell::new(Seen { bits: Vec::new(), set: Vec::new() }) };
}

impl Model {
    /// The injection model the binary carries. The header is checked by a
    /// test; a file of the wrong size would fail it, never a request.
    pub fn injection() -> Model {
        let bits = u32::from_le_bytes(BYTES[4..8].try_into().unwrap_or_default());
        let f = |at: usize| f32::from_le_bytes(BYTES[at..at + 4].try_into().unwrap_or_default());
        Model { mask: (1u32 << bits) - 1, scale: f(8), bias: f(12), weights: &BYTES[16..] }
    }

    /// The probability that `text` is an injection or jailbreak.
    pub fn score(&self, text: &[u8]) -> f32 {
        SEEN.with(|seen| {
            let seen = &mut *seen.borrow_mut();
            seen.bits.resize(self.weights.len().div_ceil(64), 0);
            let mut sum = 0i64;
            self.buckets(text, |b| {
                let (word, bit) = ((b >> 6) as usize, 1u64 << (b & 63));
                if seen.bits[word] & bit == 0 {
                    seen.bits[word] |= bit;
                    seen.set.push(b);
                    sum += i64::from(self.weights[b as usize] as i8);
                }
            });
            let k = seen.set.len();
            for b in seen.set.drain(..) {
                seen.bits[(b >> 6) as usize] = 0;
            }
            let z = self.bias + self.scale * sum as f32 / (k.max(FLOOR) as f32).sqrt();
            1.0 / (1.0 + (-z).exp())
        })
    }

    /// Each word's and each neighbouring pair's bucket, repeats included.
    /// One table load a byte says whether it is a word's and gives it
    /// lower-cased; the hash runs on as long as the word does.
    fn buckets(&self, text: &[u8], mut each: impl FnMut(u32)) {
        let mut prev: Option<u32> = None;
        let mut h = FNV_OFFSET;
        let mut in_word = false;
        let mut end_word = |h: u32, prev: &mut Option<u32>| {
            each(h & self.mask);
            if let Some(p) = *prev {
                each(pair(p, h) & self.mask);
            }
            *prev = Some(h);
        };
        for &c in text {
            let folded = WORD_BYTE[c as usize];
            if folded != 0 {
                h = (h ^ u32::from(folded)).wrapping_mul(FNV_PRIME);
                in_word = true;
            } else if in_word {
                end_word(h, &mut prev);
                h = FNV_OFFSET;
                in_word = false;
            }
        }
        if in_word {
            end_word(h, &mut prev);
        }
    }
}

/// A byte of a word, lower-cased (ASCII letters and digits, and every
/// byte from 0x80: a word of any script is one word), or 0 for a byte
/// between words.
static WORD_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_alphanumeric() || c >= 0x80 { c.to_ascii_lowercase() } else { 0 };
        b += 1;
    }
    t
};

/// A pair's hash from its words' (the script's `fmix(prev ^ h * K)`):
/// murmur3's finaliser, so that the low bits taken depend on all of both.
fn pair(first: u32, second: u32) -> u32 {
    let mut h = first ^ second.wrapping_mul(0x9E37_79B1);
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_a_model_of_its_stated_size() {
        assert_eq!(&BYTES[..4], b"TGIM");
        let bits = u32::from_le_bytes(BYTES[4..8].try_into().unwrap());
        assert!((10..=24).contains(&bits));
        assert_eq!(BYTES.len(), 16 + (1 << bits));
        let m = Model::injection();
        assert!(m.scale.is_finite() && m.scale > 0.0 && m.bias.is_finite());
    }

    #[test]
    fn words_split_as_the_script_splits_them() {
        let m = Model::injection();
        let of = |t: &[u8]| {
            let mut v = Vec::new();
            m.buckets(t, |b| v.push(b));
            v
        };
        let a = of(b"Ignore ALL previous-instructions, now!");
        assert_eq!(a, of(b"  ignore all\nprevious instructions\tnow "));
        assert_eq!(a.len(), 5 + 4);
        // A word of another script is one word; its bytes are not split.
        assert_eq!(of("déjà vu".as_bytes()).len(), 3);
        // Order matters in a pair.
        assert_ne!(of(b"all ignore")[1], of(b"ignore all")[1]);
    }

    /// The score by the definition: a set of the buckets, each weight once.
    fn reference(m: &Model, text: &[u8]) -> f32 {
        let mut set = std::collections::BTreeSet::new();
        m.buckets(text, |b| {
            set.insert(b);
        });
        let sum: i64 = set.iter().map(|&b| i64::from(m.weights[b as usize] as i8)).sum();
        let z = m.bias + m.scale * sum as f32 / (set.len().max(FLOOR) as f32).sqrt();
        1.0 / (1.0 + (-z).exp())
    }

    proptest::proptest! {
        /// Any bytes: a probability, the definition's, and nothing left
        /// behind in the thread's scratch for the next text.
        #[test]
        fn scores_are_the_definitions_and_leave_nothing_behind(
            a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            words in proptest::collection::vec("[a-zA-Z]{1,8}", 0..300),
        ) {
            let m = Model::injection();
            let b = words.join(" ").into_bytes();
            let first = m.score(&a);
            proptest::prop_assert!((0.0..=1.0).contains(&first));
            proptest::prop_assert_eq!(first, reference(&m, &a));
            proptest::prop_assert_eq!(m.score(&b), reference(&m, &b));
            proptest::prop_assert_eq!(m.score(&a), first);
        }
    }

    /// Values the script computes (`fnv`, `fmix`, `buckets` in
    /// train_injection_model.py), so that a change to either side's
    /// hashing fails here and not only through the scores.
    #[test]
    fn hashes_are_the_scripts() {
        let fnv = |w: &[u8]| w.iter().fold(FNV_OFFSET, |h, &c| (h ^ u32::from(c)).wrapping_mul(FNV_PRIME));
        let (ignore, previous) = (fnv(b"ignore"), fnv(b"previous"));
        assert_eq!((ignore, previous), (0x7e3f_1843, 0xf45b_e528));
        assert_eq!(pair(ignore, previous), 0x8f29_7740);
        let mut b = Vec::new();
        Model::injection().buckets(b"Ignore previous", |x| b.push(x));
        b.sort_unstable();
        assert_eq!(b, [96064, 202819, 255272]);
    }

    #[test]
    fn empty_and_wordless_texts_score_the_bias() {
        let m = Model::injection();
        let bias = 1.0 / (1.0 + (-m.bias).exp());
        assert_eq!(m.score(b""), bias);
        assert_eq!(m.score(b"!!! ... ???"), bias);
    }
}
