//! Lays out OpenAI's byte-pair vocabularies as tables the binary carries
//! (read-only pages, mapped from the file, resident only where touched)
//! instead of structures built on the heap at start: the gateway's idle
//! memory was mostly these (issue 16).
//!
//! Input: `data/<name>.tiktoken.gz`, OpenAI's published files (one
//! `base64-token rank` per line), checked against the SHA-256 that
//! tiktoken itself expects of them. Output in `OUT_DIR`, per encoding:
//! `<name>.bytes` (the tokens' bytes end to end, in rank order),
//! `<name>.starts` (where each token begins, `u32` little-endian, one more
//! than there are tokens), `<name>.slots` (an open-addressing table of
//! `rank + 1` in the low 18 bits and a tag of the hash in the high 14,
//! `u32` little-endian, 0 empty, placed by `src/tokens/vocab_hash.rs`),
//! `<name>.pairs` (the rank of every two-byte token by its bytes, `u32`
//! little-endian, `u32::MAX` none), and `vocab_tables.rs` with their sizes.

use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;

use base64::Engine as _;
use sha2::Digest as _;

#[path = "src/tokens/vocab_hash.rs"]
mod vocab_hash;

/// A lookup may read at most this many slots; the layout is refused above
/// it (the hash would then need changing, not the bound).
const PROBE_MAX: usize = 48;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut consts = String::new();
    for (name, sha256) in [
        ("o200k_base", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
        ("cl100k_base", "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"),
    ] {
        let path = format!("data/{name}.tiktoken.gz");
        println!("cargo::rerun-if-changed={path}");
        let gz = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let digest: String = sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest, sha256, "{path} is not OpenAI's published {name}");

        let mut tokens: Vec<Vec<u8>> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let (b64, rank) = line.split_once(' ').unwrap_or_else(|| panic!("{path}:{}: no rank", n + 1));
            let rank: usize = rank.parse().unwrap_or_else(|e| panic!("{path}:{}: {e}", n + 1));
            // The counter takes a token's index for its rank.
            assert_eq!(rank, tokens.len(), "{path}:{}: ranks are not 0, 1, 2, ...", n + 1);
            tokens.push(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap_or_else(|e| panic!("{path}:{}: {e}", n + 1)),
            );
        }

        // Load under 0.4: short runs of occupied slots.
        let bits = (tokens.len() * 5 / 2).next_power_of_two().trailing_zeros();
        let mask = (1usize << bits) - 1;
        let mut slots = vec![0u32; 1 << bits];
        let (mut bytes, mut starts) = (Vec::new(), Vec::new());
        for (rank, token) in tokens.iter().enumerate() {
            starts.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            bytes.extend_from_slice(token);
            let (mut at, tag) = vocab_hash::vocab_slot(token, bits);
            while slots[at] != 0 {
                at = (at + 1) & mask;
            }
            assert!(
                rank + 1 < 1 << vocab_hash::RANK_BITS,
                "{name}: ranks need more than {} bits",
                vocab_hash::RANK_BITS
            );
            slots[at] = tag << vocab_hash::RANK_BITS | (rank as u32 + 1);
        }
        starts.extend_from_slice(&(bytes.len() as u32).to_le_bytes());

        // The longest lookup: from any slot, the run of occupied slots up
        // to the first empty one, plus that empty one.
        let mut probe_max = 0;
        let first_empty = slots.iter().position(|&s| s == 0).expect("a table under 0.4 load has empty slots");
        let mut run = 0;
        for k in 1..=slots.len() {
            let at = (first_empty + k) & mask;
            if slots[at] == 0 {
                run = 0;
            } else {
                run += 1;
            }
            probe_max = probe_max.max(run + 1);
        }
        assert!(probe_max <= PROBE_MAX, "{name}: a lookup could read {probe_max} slots (bound {PROBE_MAX})");

        // Two-byte tokens by their bytes: a merge's first lookups are all
        // of byte pairs.
        let mut pairs = vec![u32::MAX; 1 << 16];
        for (rank, token) in tokens.iter().enumerate() {
            if let [a, b] = token[..] {
                pairs[usize::from(a) << 8 | usize::from(b)] = rank as u32;
            }
        }
        let pair_bytes: Vec<u8> = pairs.iter().flat_map(|p| p.to_le_bytes()).collect();
        std::fs::write(out.join(format!("{name}.pairs")), pair_bytes).expect("OUT_DIR is writable");

        let longest = tokens.iter().map(Vec::len).max().unwrap_or(0);
        for (ext, data) in [("bytes", &bytes), ("starts", &starts)] {
            std::fs::write(out.join(format!("{name}.{ext}")), data).expect("OUT_DIR is writable");
        }
        let slot_bytes: Vec<u8> = slots.iter().flat_map(|s| s.to_le_bytes()).collect();
        std::fs::write(out.join(format!("{name}.slots")), slot_bytes).expect("OUT_DIR is writable");
        let upper = name.to_uppercase();
        writeln!(consts, "/// Tokens in `{name}`.\npub const {upper}_TOKENS: usize = {};", tokens.len()).unwrap();
        writeln!(
            consts,
            "/// `{name}`'s table has `1 << {upper}_SLOT_BITS` slots.\npub const {upper}_SLOT_BITS: u32 = {bits};"
        )
        .unwrap();
        writeln!(consts, "/// `{name}`'s longest token, in bytes.\npub const {upper}_LONGEST: usize = {longest};")
            .unwrap();
        writeln!(
            consts,
            "/// Slots a lookup in `{name}` reads at most.\npub const {upper}_PROBE_MAX: usize = {probe_max};"
        )
        .unwrap();
    }
    std::fs::write(out.join("vocab_tables.rs"), consts).expect("OUT_DIR is writable");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/tokens/vocab_hash.rs");
}
