//! Token counts the gateway makes itself, in OpenAI's byte-pair
//! encodings: `o200k_base` for the gpt-4o, gpt-4.1, o-series and gpt-5
//! families, `cl100k_base` for gpt-4 and gpt-3.5, and `o200k_base` as the
//! estimate for every other model (Anthropic's and open models'
//! tokenizers are not public or not OpenAI's).
//!
//! These are counts *before* or *without* the provider's: the prompt before
//! it is sent (for tokens-per-minute limits) and the deltas of a stream as
//! they pass (for a stream that ends without the provider's `usage`: the
//! client went away, the upstream failed). The provider's counts replace
//! them whenever they arrive, and a record says which it holds.
//!
//! The counter is this crate's own: the encodings' pre-tokenizer
//! ([`split`]) and tiktoken's merge rule over vocabularies the build
//! script lays out as read-only tables in the binary ([`vocab`]). It
//! replaced `bpe-openai`, whose encoders were 66 MB (o200k) and 30 MB
//! (cl100k) of heap built at start, most of the gateway's idle memory
//! (issue 16). The tests check it against tiktoken-rs and bpe-openai.

mod split;
mod vocab;
mod vocab_hash;

use crate::json::string_texts_and_names;

/// An OpenAI byte-pair encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    O200kBase,
    Cl100kBase,
}

impl Encoding {
    /// The encoding a model's tokens are counted in.
    pub fn for_model(model: &[u8]) -> Encoding {
        let starts = |p: &[u8]| model.len() >= p.len() && model[..p.len()].eq_ignore_ascii_case(p);
        let o200k = starts(b"gpt-4o")
            || starts(b"gpt-4.1")
            || starts(b"gpt-4.5")
            || starts(b"gpt-5")
            || starts(b"chatgpt-4o")
            || starts(b"o1")
            || starts(b"o3")
            || starts(b"o4");
        if !o200k && (starts(b"gpt-4") || starts(b"gpt-3.5")) {
            Encoding::Cl100kBase
        } else {
            Encoding::O200kBase
        }
    }

    fn vocab(self) -> &'static vocab::Vocab {
        match self {
            Encoding::O200kBase => &vocab::O200K_BASE,
            Encoding::Cl100kBase => &vocab::CL100K_BASE,
        }
    }

    /// The encoding's pre-tokenizer, compiled on first use (about 2 MB).
    fn splitter(self) -> &'static split::Splitter {
        static O200K: std::sync::LazyLock<split::Splitter> = std::sync::LazyLock::new(split::Splitter::o200k_base);
        static CL100K: std::sync::LazyLock<split::Splitter> = std::sync::LazyLock::new(split::Splitter::cl100k_base);
        match self {
            Encoding::O200kBase => &O200K,
            Encoding::Cl100kBase => &CL100K,
        }
    }

    /// Tokens in `text`: the encoding's pre-tokenizer splits it into
    /// pieces (words, numbers, punctuation runs), and each piece is counted
    /// by the byte-pair merges, or found in this thread's [`PieceCache`].
    /// Exactly tiktoken's `encode_ordinary(text).len()` (neither encoding
    /// normalizes), which the tests check.
    pub fn count(self, text: &str) -> u64 {
        let (split, vocab) = (self.splitter(), self.vocab());
        self.with_thread(|cache, search| {
            let (mut pieces, mut n) = (split.pieces(text), 0);
            while let Some(piece) = pieces.next(search) {
                n += cache.count(self, piece.as_bytes(), |p| vocab.count(p));
            }
            n
        })
    }

    /// Runs `f` with this thread's piece cache and this encoding's search
    /// cache (made on first use), borrowed for `f` alone.
    fn with_thread<R>(self, f: impl FnOnce(&mut PieceCache, &mut regex_automata::meta::Cache) -> R) -> R {
        THREAD.with(|state| {
            let CounterState { pieces, searches } = &mut *state.borrow_mut();
            let search = searches[self as usize].get_or_insert_with(|| self.splitter().cache());
            f(pieces, search)
        })
    }

    /// [`Encoding::count`] with every piece merged, none looked up in the
    /// cache: what a text of words never seen before costs (benchmarks).
    pub fn count_uncached(self, text: &str) -> u64 {
        let (split, vocab) = (self.splitter(), self.vocab());
        let (mut pieces, mut search, mut n) = (split.pieces(text), split.cache(), 0);
        while let Some(piece) = pieces.next(&mut search) {
            n += vocab.count(piece.as_bytes()) as u64;
        }
        n
    }

    /// Tokens in UTF-8 bytes (invalid sequences count as U+FFFD).
    pub fn count_bytes(self, text: &[u8]) -> u64 {
        match simdutf8::basic::from_utf8(text) {
            Ok(s) => self.count(s),
            Err(_) => self.count(&String::from_utf8_lossy(text)),
        }
    }

    /// Compiles the pre-tokenizers now (milliseconds), so that the first
    /// request does not pay for it.
    pub fn warm_up() {
        Encoding::warm_up_for([&b"gpt-4o"[..], b"gpt-4"]);
    }

    /// Compiles only the pre-tokenizers `models` are counted in (about 2 MB
    /// each); another is still compiled on first use. The vocabularies are
    /// in the binary and need no building.
    pub fn warm_up_for<'a>(models: impl IntoIterator<Item = &'a [u8]>) {
        let (mut o200k, mut cl100k) = (false, false);
        for m in models {
            match Encoding::for_model(m) {
                Encoding::O200kBase => o200k = true,
                Encoding::Cl100kBase => cl100k = true,
            }
        }
        if o200k {
            Encoding::O200kBase.count("warm");
        }
        if cl100k {
            Encoding::Cl100kBase.count("warm");
        }
    }
}

thread_local! {
    /// One per thread: with one worker thread per core, a core's own,
    /// shared with nothing and locked by nothing.
    static THREAD: std::cell::RefCell<CounterState> = std::cell::RefCell::new(CounterState::default());
}

/// A thread's counting state: its piece cache and a search cache per
/// encoding's pre-tokenizer (made on first use; indexed by `Encoding as
/// usize`).
#[derive(Default)]
struct CounterState {
    pieces: PieceCache,
    searches: [Option<regex_automata::meta::Cache>; 2],
}

/// Pieces longer than this are counted every time (they are rare, and
/// their keys would make the cache's entries large).
const PIECE_BYTES_MAX: usize = 24;

/// Entries kept at most; a full cache starts over (about 1.3 MB).
const PIECES_MAX: usize = 32 * 1024;

/// Token counts of the pieces a thread has counted, by encoding and bytes.
/// Text is mostly the same few thousand words: a piece is counted by the
/// byte-pair encoder (a new encoder state each time) once, and looked up
/// after. Exact, since a piece's count never depends on its neighbours.
pub struct PieceCache {
    map: std::collections::HashMap<PieceKey, u32, PieceHashing>,
}

impl Default for PieceCache {
    fn default() -> Self {
        // A seed per thread, drawn from the standard library's random
        // keys: a tenant cannot build pieces that collide in the table.
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x7011_6a7e_u64);
        PieceCache { map: std::collections::HashMap::with_hasher(PieceHashing(seed)) }
    }
}

/// Builds [`PieceHasher`]s from one random seed.
#[derive(Clone, Copy)]
struct PieceHashing(u64);

impl std::hash::BuildHasher for PieceHashing {
    type Hasher = PieceHasher;

    fn build_hasher(&self) -> PieceHasher {
        PieceHasher(self.0)
    }
}

/// A piece's bytes, inline, with its encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PieceKey {
    bytes: [u8; PIECE_BYTES_MAX],
    len: u8,
    o200k: bool,
}

impl PieceCache {
    fn count(&mut self, encoding: Encoding, piece: &[u8], count: impl FnOnce(&[u8]) -> usize) -> u64 {
        if piece.len() > PIECE_BYTES_MAX {
            return count(piece) as u64;
        }
        let mut key =
            PieceKey { bytes: [0; PIECE_BYTES_MAX], len: piece.len() as u8, o200k: encoding == Encoding::O200kBase };
        key.bytes[..piece.len()].copy_from_slice(piece);
        if let Some(&n) = self.map.get(&key) {
            return u64::from(n);
        }
        let n = count(piece);
        if self.map.len() >= PIECES_MAX {
            self.map.clear();
        }
        self.map.insert(key, n.min(u32::MAX as usize) as u32);
        n as u64
    }
}

/// A multiply-rotate hash (FxHash's idea) over the key's words, started
/// from a random seed per thread.
struct PieceHasher(u64);

impl std::hash::Hasher for PieceHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
}

/// Tokens every message costs beyond its text, and the reply's priming
/// (`<|start|>assistant<|message|>`), as OpenAI documents for its chat
/// models ("How to count tokens with tiktoken", OpenAI Cookbook).
pub const TOKENS_PER_MESSAGE: u64 = 3;
pub const TOKENS_PER_NAME: u64 = 1;
pub const REPLY_PRIMING: u64 = 3;

/// Keys whose values are structure the provider does not bill as text.
const NOT_TEXT: &[&[u8]] = &[
    b"model",
    b"type",
    b"id",
    b"tool_call_id",
    b"tool_choice",
    b"item_id",
    b"call_id",
    b"obfuscation",
    b"signature",
    b"encrypted_content",
    b"previous_response_id",
    b"status",
    b"detail",
    b"url",
    b"media_type",
    b"reasoning_effort",
    b"service_tier",
];

/// Keys whose `data:` URLs are files (an image, a PDF), billed by
/// [`crate::media`] or by the provider's own reading, not as text; besides
/// `url`, which [`NOT_TEXT`] leaves out whatever it holds. Under any other
/// key a `data:` prefix is text like any other: a message's content
/// written as `"data: ..."` once went uncounted, and a stream cut short
/// billed it as nothing.
const DATA_URL_KEYS: &[&[u8]] = &[b"image_url", b"file_data"];

/// The prompt tokens of a chat request body, counted the way OpenAI bills
/// chat models: every text the messages carry (role and name included), 3
/// per message, 1 per name, 3 for the reply, and images and audio at the
/// provider's rates ([`crate::media`]). Tool definitions and other
/// strings are counted as text, and so are the names a tenant gives keys
/// the model reads (a schema's `properties`, a tool call's arguments;
/// `json::string_texts_and_names`): an estimate, close for plain chats. A body
/// that cannot be walked counts a token per four bytes.
pub fn prompt_tokens(encoding: Encoding, body: &[u8]) -> u64 {
    let mut texts = 0u64;
    match prompt_shape(body, |text| texts += encoding.count_bytes(text)) {
        Some(fixed) => fixed.saturating_add(texts),
        None => body.len().div_ceil(4) as u64,
    }
}

/// Walks a chat body for [`prompt_tokens`] and [`prompt_tokens_in_steps`]:
/// gives `text` every text to count, and returns the tokens that are not
/// text (the reply's priming, 3 per message, 1 per name, and images and
/// audio at what the provider bills for them, `crate::media`); `None`
/// when the body cannot be walked.
fn prompt_shape(body: &[u8], mut text: impl FnMut(&[u8])) -> Option<u64> {
    let mut fixed = REPLY_PRIMING;
    // `data` is a file's base64, or a plain-text document's text.
    let keep = |key: &[u8], raw: &[u8]| {
        !(NOT_TEXT.contains(&key)
            || (DATA_URL_KEYS.contains(&key) && raw.starts_with(b"data:"))
            || (key == b"data" && crate::json::looks_base64(raw)))
    };
    string_texts_and_names(body, keep, |key, _, t| {
        match key {
            b"role" => fixed += TOKENS_PER_MESSAGE,
            b"name" => fixed += TOKENS_PER_NAME,
            _ => {}
        }
        if let Ok(t) = t {
            text(t);
        }
    })
    .ok()?;
    Some(fixed.saturating_add(crate::media::media_tokens(body)))
}

/// Text [`prompt_tokens_in_steps`] counts between two pauses: about a
/// millisecond of work, so that one large prompt holds a worker no longer
/// than that before others' requests run.
pub const STEP_BYTES: usize = 32 * 1024;

/// [`prompt_tokens`], counted in steps of about [`STEP_BYTES`] of text with
/// `pause().await` between them (the engine yields to its other tasks).
/// The same figure: the texts are the same, and each is split into the
/// same pieces, only consumed a batch at a time. Sans-IO: what a pause
/// does is the caller's.
pub async fn prompt_tokens_in_steps<F: std::future::Future<Output = ()>>(
    encoding: Encoding,
    body: &[u8],
    mut pause: impl FnMut() -> F,
) -> u64 {
    // The texts, copied out of the walk (whose callback cannot pause), in
    // one buffer: a prompt this large is rare, and the copy is a small
    // part of counting it.
    let mut texts: Vec<u8> = Vec::new();
    let mut ends: Vec<usize> = Vec::new();
    let shape = prompt_shape(body, |text| {
        texts.extend_from_slice(text);
        ends.push(texts.len());
    });
    let Some(mut total) = shape else { return body.len().div_ceil(4) as u64 };
    let (split, vocab) = (encoding.splitter(), encoding.vocab());
    let mut since_pause = 0;
    let mut start = 0;
    for end in ends {
        let text = String::from_utf8_lossy(&texts[start..end]);
        start = end;
        let mut pieces = split.pieces(&text);
        loop {
            // The thread's state is borrowed for one batch, never across
            // a pause (another request on this worker counts meanwhile).
            let (counted, bytes, more) = encoding.with_thread(|cache, search| {
                let (mut counted, mut bytes) = (0, 0);
                while since_pause + bytes < STEP_BYTES {
                    let Some(piece) = pieces.next(search) else { return (counted, bytes, false) };
                    bytes += piece.len();
                    counted += cache.count(encoding, piece.as_bytes(), |p| vocab.count(p));
                }
                (counted, bytes, true)
            });
            total += counted;
            since_pause += bytes;
            if since_pause >= STEP_BYTES {
                pause().await;
                since_pause = 0;
            }
            if !more {
                break;
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Counted in steps or at once, the same figure, on bodies of every
    /// kind (escapes, names, invalid UTF-8, texts over many steps), with a
    /// pause counted to show the steps happen.
    #[test]
    fn steps_count_the_same() {
        let prose = "The gateway counts every prompt once. ".repeat(3000);
        let cjk = "網關只計算一次提示。".repeat(4000);
        let bodies = [
            format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{prose}"}}]}}"#),
            format!(r#"{{"messages":[{{"role":"system","name":"a","content":"{cjk}"}},{{"role":"user","content":"x\ny \u00e9 {prose}"}}]}}"#),
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:x"}}]}]}"#.to_string(),
            "not json".to_string(),
        ];
        for (i, body) in bodies.iter().enumerate() {
            for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
                let mut pauses = 0;
                let stepped = prompt_tokens_in_steps(enc, body.as_bytes(), || {
                    pauses += 1;
                    std::future::ready(())
                });
                let stepped = poll_ready(stepped);
                assert_eq!(stepped, prompt_tokens(enc, body.as_bytes()), "body {i}");
                if body.len() > 2 * STEP_BYTES {
                    assert!(pauses >= body.len() / STEP_BYTES / 2, "body {i}: {pauses} pauses");
                }
            }
        }
    }

    /// Polls a future whose pauses are always ready.
    fn poll_ready<T>(f: impl std::future::Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("a ready pause left the count pending"),
        }
    }

    #[test]
    fn models_get_their_encoding() {
        for (model, want) in [
            ("gpt-4o-mini", Encoding::O200kBase),
            ("gpt-4.1", Encoding::O200kBase),
            ("o3-mini", Encoding::O200kBase),
            ("gpt-5", Encoding::O200kBase),
            ("gpt-4-turbo", Encoding::Cl100kBase),
            ("gpt-3.5-turbo", Encoding::Cl100kBase),
            ("claude-sonnet-4", Encoding::O200kBase),
        ] {
            assert_eq!(Encoding::for_model(model.as_bytes()), want, "{model}");
        }
    }

    /// The counts agree exactly with tiktoken-rs on texts of every kind the
    /// gateway sees: prose, code, JSON, numbers, whitespace runs,
    /// multilingual text and emoji.
    #[test]
    fn counts_agree_with_tiktoken() {
        let corpus = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/guardrails/corpus.jsonl"))
            .expect("the guardrail corpus doubles as a tokenizer corpus");
        let texts: Vec<String> = corpus
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string())
            .chain(
                [
                    "",
                    " ",
                    "   \n\n\t  x",
                    "Hello, world!",
                    "12345678901234567890 3.14159 1e-9",
                    "日本語のテキストと中文混合 и русский текст, ελληνικά",
                    "emoji 🙂👩‍💻🏳️‍🌈 done",
                    "fn main() {\n    println!(\"{}\", 1 + 2);\n}\n",
                    "don't can't I'm we'll they've YOU'RE",
                ]
                .map(String::from),
            )
            .collect();
        let o200k = tiktoken_rs::o200k_base().unwrap();
        let cl100k = tiktoken_rs::cl100k_base().unwrap();
        for t in &texts {
            assert_eq!(Encoding::O200kBase.count(t), o200k.encode_ordinary(t).len() as u64, "o200k: {t:?}");
            assert_eq!(Encoding::Cl100kBase.count(t), cl100k.encode_ordinary(t).len() as u64, "cl100k: {t:?}");
        }
        assert!(texts.len() > 3000);
    }

    /// The cache answers as the encoder does, whichever fills it first,
    /// across encodings and around its size bound.
    #[test]
    fn cached_counts_are_the_encoders() {
        let text = "the cat the cat sat on the mat, the cat 123456 日本語 日本語 supercalifragilisticexpialidocious!!";
        for e in [Encoding::O200kBase, Encoding::Cl100kBase] {
            let direct = oracle(e).count(text) as u64;
            assert_eq!(e.count(text), direct);
            assert_eq!(e.count(text), direct, "again, from the cache");
        }
        let mut cache = PieceCache::default();
        for i in 0..(PIECES_MAX + 10) {
            let piece = format!(" w{i}");
            let n = cache.count(Encoding::O200kBase, piece.as_bytes(), |p| Encoding::O200kBase.vocab().count(p));
            assert_eq!(n, oracle(Encoding::O200kBase).bpe.count(piece.as_bytes()) as u64);
        }
        assert!(cache.map.len() <= PIECES_MAX);
    }

    /// Every piece a cursor gives, in order.
    fn every_piece<'a>(mut cursor: split::Pieces<'a>, search: &mut regex_automata::meta::Cache) -> Vec<&'a str> {
        let mut pieces = Vec::new();
        while let Some(piece) = cursor.next(search) {
            pieces.push(piece);
        }
        pieces
    }

    /// tiktoken-rs's encoder of `e`: the reference counts.
    fn tiktoken(e: Encoding) -> &'static tiktoken_rs::CoreBPE {
        match e {
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        }
    }

    /// bpe-openai, the encoder this one replaced (GitHub's linear-time
    /// BPE, its own pre-tokenizer): a second, independent oracle.
    fn oracle(e: Encoding) -> &'static bpe_openai::Tokenizer {
        match e {
            Encoding::O200kBase => bpe_openai::o200k_base(),
            Encoding::Cl100kBase => bpe_openai::cl100k_base(),
        }
    }

    /// Characters of every class the patterns tell apart: ASCII letters
    /// of both cases, digits of three scripts, each kind of space and line
    /// break, apostrophes for contractions, punctuation, `/`, combining
    /// marks, title-case and modifier letters, CJK, Cyrillic, emoji.
    fn mixed_text() -> impl Strategy<Value = String> {
        let chars = prop_oneof![
            4 => proptest::char::range('a', 'z'),
            2 => proptest::char::range('A', 'Z'),
            2 => Just(' '),
            1 => proptest::sample::select(vec![
                '\n', '\r', '\t', '\u{a0}', '\u{3000}', '\u{2028}', '\'', '’', '.', ',', '!', '/', '-', '_', '{', '"',
                '0', '7', '٣', '६', '\u{301}', '\u{308}', 'ǅ', 'ʰ', 'ß', 'É', '網', '関', 'の', 'ж', 'Ж', '🙂', '\u{200d}',
            ]),
        ];
        proptest::collection::vec(chars, 0..80).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]
        /// The same pieces as bpe-openai's pre-tokenizer, and the same
        /// count as tiktoken-rs and bpe-openai, on text mixing every class.
        #[test]
        fn counts_and_pieces_agree_on_mixed_text(text in mixed_text()) {
            for e in [Encoding::O200kBase, Encoding::Cl100kBase] {
                let ours = every_piece(e.splitter().pieces(&text), &mut e.splitter().cache());
                let theirs: Vec<&str> = oracle(e).split(&text).collect();
                prop_assert_eq!(&ours, &theirs);
                let want = tiktoken(e).encode_ordinary(&text).len() as u64;
                prop_assert_eq!(e.count(&text), want, "{:?} {:?}", e, text);
                prop_assert_eq!(oracle(e).count(text.as_str()) as u64, want);
            }
        }
    }

    /// Text that is mostly ASCII, with every class the hand-cut pieces
    /// tell apart (each space byte, `\x0B` and `\x0C` among them, control
    /// bytes, apostrophes before every letter of the contractions in both
    /// cases, `/`, digits) and the characters outside ASCII that could
    /// continue one of their runs or fold into a contraction: `ſ` (folds
    /// to `s`), the Kelvin sign, no-break and other Unicode spaces, NEL,
    /// other scripts' digits and letters, combining marks, `…`.
    fn ascii_heavy_text() -> impl Strategy<Value = String> {
        let chars = prop_oneof![
            6 => proptest::char::range(' ', '~'),
            2 => proptest::sample::select(vec!['s', 't', 'r', 'e', 'v', 'm', 'l', 'd', 'S', 'T', 'R', 'E', 'V', 'L', '\'']),
            2 => proptest::sample::select(vec!['\n', '\r', '\t', '\u{b}', '\u{c}', '\u{0}', '\u{1f}', '\u{7f}', ' ', ' ', '/']),
            1 => proptest::sample::select(vec![
                'ſ', '\u{212a}', '\u{a0}', '\u{85}', '\u{2009}', '\u{3000}', '٣', '²', 'é', 'É', 'ǅ', 'ʰ', '\u{301}', '…',
                '’', '網', 'ж', '🙂',
            ]),
        ];
        proptest::collection::vec(chars, 0..120).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Pieces cut by hand are the regex's, split for split, and the
        /// counts tiktoken's.
        #[test]
        fn hand_cut_pieces_are_the_regexs(text in ascii_heavy_text()) {
            for e in [Encoding::O200kBase, Encoding::Cl100kBase] {
                let mut search = e.splitter().cache();
                let hand = every_piece(e.splitter().pieces(&text), &mut search);
                let regex = every_piece(e.splitter().pieces_by_regex(&text), &mut search);
                prop_assert_eq!(&hand, &regex, "{:?}", e);
                prop_assert_eq!(e.count(&text), tiktoken(e).encode_ordinary(&text).len() as u64, "{:?} {:?}", e, text);
            }
        }
    }

    /// The cases the hand-cut pieces decide at their edges, against
    /// tiktoken: contractions in either case and after either rule, an
    /// apostrophe before `ſ` or at the end, capitals before and after
    /// small letters, digits in threes before other scripts' digits,
    /// spaces before words, punctuation and line breaks, and runs ended by
    /// a no-break space.
    #[test]
    fn hand_cut_edges_count_as_tiktoken_does() {
        let o200k = tiktoken_rs::o200k_base_singleton();
        let cl100k = tiktoken_rs::cl100k_base_singleton();
        for t in [
            "don't DON'T We'LL they'Re I'M it's 'tis 'sgood x'",
            "x'ſ x'\u{212a} 'ſ HELLOworld HEllo heLLo ABC's ABC'S",
            "1234567 12٣4 ١٢٣ 12² 99 x1 1x",
            "  hello \thello \t\n\nfoo \n  foo   \n",
            "a\u{a0}b a \u{a0}b  \u{a0}\n \u{85}x \u{b}\u{c}x\u{c}",
            " !!! ?!/\n/\r\nx ...\u{2026} \u{0}\u{1f}\u{7f}x",
            "end with spaces   ",
            "\r\n\r\n",
        ] {
            assert_eq!(Encoding::O200kBase.count(t), o200k.encode_ordinary(t).len() as u64, "o200k {t:?}");
            assert_eq!(Encoding::Cl100kBase.count(t), cl100k.encode_ordinary(t).len() as u64, "cl100k {t:?}");
        }
    }

    /// Pieces longer than the stack's merge (a word with no space, a
    /// base64 blob, a run of one letter, CJK with no punctuation) count as
    /// tiktoken counts them.
    #[test]
    fn long_pieces_count_as_tiktoken_does() {
        let o200k = tiktoken_rs::o200k_base_singleton();
        let cl100k = tiktoken_rs::cl100k_base_singleton();
        let texts = [
            "a".repeat(5000),
            "ab".repeat(700),
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5eg".repeat(40),
            "網關只計算一次提示網關只計算一次提示".repeat(50),
            "Supercalifragilisticexpialidocious".repeat(30),
            "ǅaǅaǅaЖжЖж".repeat(60),
            "!@#$%^&*()".repeat(100),
            " ".repeat(3000) + "x",
        ];
        for t in &texts {
            assert_eq!(Encoding::O200kBase.count(t), o200k.encode_ordinary(t).len() as u64, "o200k {}", &t[..20]);
            assert_eq!(Encoding::Cl100kBase.count(t), cl100k.encode_ordinary(t).len() as u64, "cl100k {}", &t[..20]);
        }
    }

    /// A message whose text begins `data:` is text: counted as the same
    /// text under another first word is, give or take that word. An
    /// image's `data:` URL is not.
    #[test]
    fn a_message_cannot_hide_its_text_behind_data() {
        let e = Encoding::O200kBase;
        let text = "the prompt a tenant would rather not pay for. ".repeat(200);
        let body =
            |first: &str| format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{first}: {text}"}}]}}"#);
        let (hidden, plain) = (prompt_tokens(e, body("data").as_bytes()), prompt_tokens(e, body("note").as_bytes()));
        assert!(plain > 1500, "{plain}");
        assert!(hidden.abs_diff(plain) <= 2, "{hidden} vs {plain}");
        let image = format!(
            r#"{{"messages":[{{"role":"user","content":[{{"type":"image_url","image_url":"data:image/png;base64,{}"}}]}}]}}"#,
            "QUJD".repeat(5000)
        );
        assert!(prompt_tokens(e, image.as_bytes()) < 2000, "the image's base64 is not text");
        // A plain-text document's `data` is text.
        let doc = format!(
            r#"{{"messages":[{{"role":"user","content":[{{"type":"document","source":{{"type":"text","media_type":"text/plain","data":"{text}"}}}}]}}]}}"#
        );
        assert!(prompt_tokens(e, doc.as_bytes()) + 10 >= plain, "the document's text counts");
    }

    /// Text a tenant writes as the names of a tool schema's properties, or
    /// of a tool call's arguments, counts as text, as the provider bills
    /// it (found by a review: 40 KB of property names counted as nothing,
    /// and a stream cut short billed none of it). Other keys do not.
    #[test]
    fn names_the_model_reads_count_as_text() {
        let e = Encoding::O200kBase;
        let text = "the prompt a tenant would rather not pay for ".repeat(40);
        let names = (0..10).map(|i| format!(r#""{i} {text}":{{"type":"string"}}"#)).collect::<Vec<_>>().join(",");
        let schema = format!(
            r#"{{"model":"gpt-4o","tools":[{{"type":"function","function":{{"name":"f","parameters":{{"type":"object","properties":{{{names}}}}}}}}}],"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let plain = e.count(&text) * 10;
        let counted = prompt_tokens(e, schema.as_bytes());
        assert!(counted >= plain && counted < plain + 100, "{counted} against {plain}");
        let call = format!(
            r#"{{"model":"claude","messages":[{{"role":"assistant","content":[{{"type":"tool_use","id":"t","name":"f","input":{{{names}}}}}]}}]}}"#
        );
        assert!(prompt_tokens(e, call.as_bytes()) >= plain, "a tool call's argument names");
        // The structure's own keys are not text.
        let bare = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}"#;
        assert!(prompt_tokens(e, bare) < 20);
    }

    /// Numbers and literals where the model reads them (a schema's listed
    /// values, a tool call's arguments) count, short ones too (found by a
    /// review: only numbers of seven digits or more, which the guard
    /// reads, were counted; an `enum` of 20,000 small numbers was free).
    /// A schema's structural numbers do not.
    #[test]
    fn numbers_the_model_reads_count_however_short() {
        let e = Encoding::O200kBase;
        let numbers = (0..20_000).map(|i| (i % 100).to_string()).collect::<Vec<_>>().join(",");
        let schema = format!(
            r#"{{"model":"gpt-4o","tools":[{{"type":"function","function":{{"name":"f","parameters":{{"type":"object","properties":{{"a":{{"type":"integer","enum":[{numbers}]}}}}}}}}}}],"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        assert!(prompt_tokens(e, schema.as_bytes()) >= 20_000, "{}", prompt_tokens(e, schema.as_bytes()));
        let literals = ["true", "false", "null", "-1.5e3"].repeat(5_000).join(",");
        let call = format!(
            r#"{{"model":"claude","messages":[{{"role":"assistant","content":[{{"type":"tool_use","id":"t","name":"f","input":{{"xs":[{literals}],"n":7}}}}]}}]}}"#
        );
        let counted = prompt_tokens(e, call.as_bytes());
        assert!(counted >= 20_000, "a tool call's arguments: {counted}");
        let structural = br#"{"model":"gpt-4o","max_tokens":100000,"temperature":0.5,"stream":false,"n":1,"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","minimum":12345678,"additionalProperties":false}}}]}"#;
        assert!(prompt_tokens(e, structural) < 20, "{}", prompt_tokens(e, structural));
    }

    #[test]
    fn prompts_count_messages_names_and_priming() {
        let e = Encoding::O200kBase;
        let body = br#"{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","name":"ann","content":"Hi \"there\""}]}"#;
        let want = REPLY_PRIMING
            + 2 * TOKENS_PER_MESSAGE
            + TOKENS_PER_NAME
            + e.count("system")
            + e.count("Be brief.")
            + e.count("user")
            + e.count("ann")
            + e.count("Hi \"there\"");
        assert_eq!(prompt_tokens(e, body), want);
        assert_eq!(prompt_tokens(e, b"{\"a\":\"unterminated"), 5);
    }
}
