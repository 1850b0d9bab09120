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

use regex_automata::meta::{Cache, Regex};
use regex_automata::{Anchored, Input};

/// Contractions, taken before and after letters as tiktoken does.
const CONTRACTIONS: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";

/// One encoding's pre-tokenizer.
pub(crate) struct Splitter {
    pattern: Regex,
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
        Splitter::new(&first)
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
        Splitter::new(&first)
    }

    fn new(first: &str) -> Splitter {
        // Pattern 1 is the look-ahead one: its last character is given back.
        let pattern = Regex::new_many(&[first, r"\s+\s", r"\s+"]).expect("the encodings' patterns compile");
        Splitter { pattern }
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
        Pieces { pattern: &self.pattern, text, at: 0 }
    }
}

/// A cursor over a text's pieces. Not an `Iterator`: each step borrows
/// the thread's search cache only for itself, so a count that pauses
/// between steps holds no borrow across the pause.
pub(crate) struct Pieces<'a> {
    pattern: &'a Regex,
    text: &'a str,
    at: usize,
}

impl<'a> Pieces<'a> {
    /// The next piece, searched with `cache` (made by this splitter's
    /// [`Splitter::cache`]).
    pub(crate) fn next(&mut self, cache: &mut Cache) -> Option<&'a str> {
        let rest = self.text.get(self.at..).filter(|r| !r.is_empty())?;
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
