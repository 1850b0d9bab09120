//! The encodings' pre-tokenizers: text is cut into pieces (words with
//! their leading space, runs of up to three digits, punctuation runs,
//! whitespace) before the byte-pair merges, which never cross a piece.
//!
//! The patterns are tiktoken's for `cl100k_base` and `o200k_base`, with
//! one rewrite: `\s+(?!\S)` (a whitespace run that leaves its last
//! character to the next piece when a word follows) needs a look-ahead the
//! linear-time engine does not have, so it is `\s+$` (the run ends the
//! text) or `\s+\s` with the last character given back. The patterns are
//! one regex of three, tried in order at each piece's start; which one
//! matched says whether to give a character back.
//!
//! A piece whose every deciding character is ASCII is cut by hand
//! ([`ascii_piece`]: the same alternatives in the same order, over byte
//! classes), without the regex: a search per piece was more than half of
//! counting English prose. A piece that reaches a byte outside ASCII (a
//! letter, digit, space or mark of another script could continue it) is
//! left to the regex, from its start.

use regex_automata::meta::{Cache, Regex};
use regex_automata::{Anchored, Input};

/// Contractions, taken before and after letters as tiktoken does.
const CONTRACTIONS: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";

/// One encoding's pre-tokenizer.
pub(crate) struct Splitter {
    pattern: Regex,
    o200k: bool,
}

impl Splitter {
    pub(crate) fn cl100k_base() -> Splitter {
        let first = [
            CONTRACTIONS,
            r"[^\r\n\p{L}\p{N}]?\p{L}+",
            r"\p{N}{1,3}",
            r" ?[^\s\p{L}\p{N}]+[\r\n]*",
            r"\s*[\r\n]+",
            r"\s+$",
        ]
        .join("|");
        Splitter::new(&first, false)
    }

    pub(crate) fn o200k_base() -> Splitter {
        let upper = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]";
        let lower = r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]";
        let first = [
            format!(r"[^\r\n\p{{L}}\p{{N}}]?{upper}*{lower}+{CONTRACTIONS}?"),
            format!(r"[^\r\n\p{{L}}\p{{N}}]?{upper}+{lower}*{CONTRACTIONS}?"),
            r"\p{N}{1,3}".to_string(),
            r" ?[^\s\p{L}\p{N}]+[\r\n/]*".to_string(),
            r"\s*[\r\n]+".to_string(),
            r"\s+$".to_string(),
        ]
        .join("|");
        Splitter::new(&first, true)
    }

    fn new(first: &str, o200k: bool) -> Splitter {
        // Pattern 1 is the look-ahead one: its last character is given back.
        let pattern = Regex::new_many(&[first, r"\s+\s", r"\s+"]).expect("the encodings' patterns compile");
        Splitter { pattern, o200k }
    }

    /// Scratch space for searches, one per thread: the regex's own pool
    /// hands its fast path to the first thread that used it (the start-up
    /// thread that compiled it), so every worker took the pool's shared,
    /// locked slow path on every piece.
    pub(crate) fn cache(&self) -> Cache {
        self.pattern.create_cache()
    }

    /// The pieces of `text`, in order, end to end.
    pub(crate) fn pieces<'a>(&'a self, text: &'a str) -> Pieces<'a> {
        Pieces { pattern: &self.pattern, text, at: 0, by_hand: Some(self.o200k) }
    }

    /// [`Splitter::pieces`] with every piece found by the regex: what the
    /// hand-cut pieces are tested against.
    #[cfg(test)]
    pub(crate) fn pieces_by_regex<'a>(&'a self, text: &'a str) -> Pieces<'a> {
        Pieces { pattern: &self.pattern, text, at: 0, by_hand: None }
    }
}

/// A cursor over a text's pieces. Not an `Iterator`: each step borrows
/// the thread's search cache only for itself, so a count that pauses
/// between steps holds no borrow across the pause.
pub(crate) struct Pieces<'a> {
    pattern: &'a Regex,
    text: &'a str,
    at: usize,
    /// Whether ASCII pieces are cut by hand, and by o200k's rules (true)
    /// or cl100k's.
    by_hand: Option<bool>,
}

impl<'a> Pieces<'a> {
    /// The next piece, searched with `cache` (made by this splitter's
    /// [`Splitter::cache`]).
    pub(crate) fn next(&mut self, cache: &mut Cache) -> Option<&'a str> {
        let rest = self.text.get(self.at..).filter(|r| !r.is_empty())?;
        if let Some(end) = self.by_hand.and_then(|o200k| ascii_piece(o200k, rest.as_bytes())) {
            self.at += end;
            return Some(&rest[..end]);
        }
        let end = match self.pattern.search_with(cache, &Input::new(rest).anchored(Anchored::Yes)) {
            Some(m) if m.pattern().as_usize() == 1 => {
                // `\s+\s` matched two characters at least: giving the last
                // back leaves one.
                let last = rest[..m.end()].chars().next_back().map_or(0, char::len_utf8);
                m.end() - last
            }
            Some(m) if m.end() > 0 => m.end(),
            // Every character is a letter, number, space or other, so one
            // of the patterns matches; if none did, the rest is one piece
            // rather than a loop or a panic.
            _ => rest.len(),
        };
        self.at += end;
        Some(&rest[..end])
    }
}

/// `\s` in ASCII: Unicode's White_Space there (not 0x1C..=0x1F).
fn space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ')
}

/// `[^\s\p{L}\p{N}]` in ASCII: punctuation, symbols and control bytes.
fn other(b: u8) -> bool {
    b < 0x80 && !space(b) && !b.is_ascii_alphanumeric()
}

/// Where the run of bytes from `i` that `class` takes ends, or `None`
/// when it ends at a byte outside ASCII (which only the regex can class).
fn run_end(r: &[u8], mut i: usize, class: impl Fn(u8) -> bool) -> Option<usize> {
    while i < r.len() && class(r[i]) {
        i += 1;
    }
    (i == r.len() || r[i] < 0x80).then_some(i)
}

/// The length of `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at `i` (0 when none), or
/// `None` when a byte outside ASCII follows the apostrophe: `ſ` (U+017F)
/// folds to `s`, so only the regex can say.
fn contraction(r: &[u8], i: usize) -> Option<usize> {
    if r.get(i) != Some(&b'\'') {
        return Some(0);
    }
    let lower = |k: usize| r.get(i + k).map(|b| if *b >= 0x80 { None } else { Some(b.to_ascii_lowercase()) });
    Some(match (lower(1), lower(2)) {
        (Some(None), _) | (Some(Some(b'r' | b'v' | b'l')), Some(None)) => return None,
        (Some(Some(b's' | b't' | b'm' | b'd')), _) => 2,
        (Some(Some(b'r')), Some(Some(b'e'))) | (Some(Some(b'v')), Some(Some(b'e'))) => 3,
        (Some(Some(b'l')), Some(Some(b'l'))) => 3,
        _ => 0,
    })
}

/// The length of the piece at the start of `r` (not empty) by the
/// encoding's alternatives in their order, when every byte that decides
/// it is ASCII; `None` otherwise (the caller asks the regex). Each arm
/// names the alternative it stands for; in ASCII, `\p{L}` is `[A-Za-z]`,
/// `\p{Lu}` `[A-Z]`, `\p{Ll}` `[a-z]`, `\p{N}` `[0-9]`, and `\p{Lt}`,
/// `\p{Lm}`, `\p{Lo}`, `\p{M}` are empty.
fn ascii_piece(o200k: bool, r: &[u8]) -> Option<usize> {
    let b0 = r[0];
    if b0 >= 0x80 {
        return None;
    }
    // cl100k: a contraction at the start comes first.
    if !o200k {
        let c = contraction(r, 0)?;
        if c > 0 {
            return Some(c);
        }
    }
    // `[^\r\n\p{L}\p{N}]?` then letters: the optional character is taken
    // when it can be (without it, a piece cannot start with letters at a
    // character that is not one).
    let s = usize::from(b0 != b'\r' && b0 != b'\n' && !b0.is_ascii_alphanumeric());
    if s < r.len() && r[s] >= 0x80 {
        return None;
    }
    if o200k {
        // `[upper]*[lower]+(?contraction)`, else `[upper]+[lower]*(?contraction)`
        // (after the upper run no lower letter follows, or the first had matched).
        let upper = run_end(r, s, |b| b.is_ascii_uppercase())?;
        let lower = run_end(r, upper, |b| b.is_ascii_lowercase())?;
        if lower > s {
            return Some(lower + contraction(r, lower)?);
        }
    } else {
        // `\p{L}+`
        let letters = run_end(r, s, |b| b.is_ascii_alphabetic())?;
        if letters > s {
            return Some(letters);
        }
    }
    // `\p{N}{1,3}`
    if b0.is_ascii_digit() {
        let digits = r.iter().take(3).take_while(|b| b.is_ascii_digit()).count();
        if digits < 3 && r.get(digits).is_some_and(|&b| b >= 0x80) {
            return None;
        }
        return Some(digits);
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*` (o200k: `[\r\n/]*`)
    let p = usize::from(b0 == b' ' && r.get(1).is_some_and(|&b| other(b)));
    if b0 == b' ' && r.get(1).is_some_and(|&b| b >= 0x80) {
        return None;
    }
    if other(r[p]) {
        let others = run_end(r, p, other)?;
        let mut end = others;
        while end < r.len() && (r[end] == b'\r' || r[end] == b'\n' || (o200k && r[end] == b'/')) {
            end += 1;
        }
        return Some(end);
    }
    // Left: a run of spaces (`b0` is one).
    let spaces = run_end(r, 0, space)?;
    // `\s*[\r\n]+`: to the run's last line break.
    if let Some(nl) = r[..spaces].iter().rposition(|&b| b == b'\r' || b == b'\n') {
        return Some(nl + 1);
    }
    // `\s+$`, then `\s+\s` with the last given back, then `\s+`.
    Some(if spaces == r.len() || spaces == 1 { spaces } else { spaces - 1 })
}
