//! One spelling for a JSON document: the bytes the answer cache hashes, so
//! that two requests that mean the same thing find the same entry however
//! their clients serialised them (whitespace, the order of an object's
//! members, escapes such as `\u0041` for `A`), and two that differ in any
//! value never do.
//!
//! The canonical form: no whitespace; each object's members ordered by
//! their decoded keys; strings decoded and re-escaped one way
//! ([`crate::json::escape`]); numbers and literals as written (`1` and
//! `1.0` stay apart: a miss). A lone UTF-16 surrogate escape is refused
//! rather than decoded to U+FFFD, which would make it the same request as
//! one that sends U+FFFD. A document that repeats a key in an object is
//! refused: parsers disagree on which of the two counts (serde_json keeps
//! the last, simd-json's small objects the first), so no reading of it by
//! the cache can be trusted to match the provider's.
//!
//! The walk is a small recursive descent, bounded in depth
//! ([`DEPTH_MAX`]), checking the whole grammar: a document it cannot
//! follow is refused (the caller then does not cache it), never guessed at.

use crate::json::Malformed;

/// Nesting past which a document is refused: far beyond any request the
/// cache serves, and a bound on the walk's stack.
pub const DEPTH_MAX: usize = 128;

/// Writes the canonical form of `doc` to `out` (after what it holds),
/// leaving out the top-level members whose (decoded) key is in `skip`.
pub fn canonical(doc: &[u8], skip: &[&[u8]], out: &mut Vec<u8>) -> Result<(), Malformed> {
    let mut pieces = Pieces::default();
    canonical_pieces(doc, skip, &mut pieces)?;
    out.reserve(pieces.len());
    pieces.feed(|s| out.extend_from_slice(s));
    Ok(())
}

/// [`canonical`] as [`Pieces`]. `pieces` is cleared first (and its
/// buffers reused).
fn canonical_pieces(doc: &[u8], skip: &[&[u8]], pieces: &mut Pieces) -> Result<(), Malformed> {
    pieces.out.clear();
    pieces.reordered.clear();
    pieces.sorted.clear();
    pieces.out.reserve(doc.len());
    let mut w = Walk { doc, at: 0, scratch: Vec::new(), members: Vec::new(), pieces };
    w.space();
    w.value(0, skip)?;
    w.space();
    if w.at != doc.len() {
        return Err(Malformed("bytes after the document"));
    }
    // Objects end inner first; the reading looks them up by where they begin.
    w.pieces.reordered.sort_unstable_by_key(|r| r.body);
    Ok(())
}

/// A canonical form as the walk leaves it: the values written once, in
/// the document's order (strings in their one spelling, no whitespace),
/// and the objects whose members are to be read in another order. Reading
/// the pieces in order ([`Pieces::feed`]) gives the canonical bytes with
/// one copy: rebuilding each object out of key order as the walk ended it
/// (a chat message's `role` comes before its `content`, a body's `model`
/// before its `messages`) copied a chat body's text twice for the top
/// level and twice more for its message (100 KB: 60.3 -> 51.7 us).
#[derive(Debug, Default)]
struct Pieces {
    out: Vec<u8>,
    /// By `body` once the walk is done.
    reordered: Vec<Reordered>,
    /// Each reordered object's members, in key order: a run per object.
    sorted: Vec<Member>,
}

/// An object whose members are written out of key order: its members
/// lie in `out[body..end]` (between its braces), and `sorted[members]`
/// says in which order to read them.
#[derive(Clone, Copy, Debug)]
struct Reordered {
    body: usize,
    end: usize,
    members: (u32, u32),
}

impl Pieces {
    /// The canonical form's length in bytes.
    fn len(&self) -> usize {
        self.out.len()
    }

    /// Calls `f` with the canonical form's bytes, in order, in pieces.
    fn feed(&self, mut f: impl FnMut(&[u8])) {
        self.read(0, self.out.len(), &mut f);
    }

    /// `out[lo..hi]`, with the reordered objects in it read in key order.
    /// Recursion is bounded by the walk's [`DEPTH_MAX`].
    fn read(&self, lo: usize, hi: usize, f: &mut impl FnMut(&[u8])) {
        let mut at = lo;
        // Strictly after `lo`: a member's range starts where its object's
        // body may (the first member), and that object is the caller's.
        let mut k = self.reordered.partition_point(|r| r.body <= lo);
        while let Some(&r) = self.reordered.get(k).filter(|r| r.body < hi) {
            if at < r.body {
                f(&self.out[at..r.body]);
            }
            let (from, to) = (r.members.0 as usize, r.members.1 as usize);
            for (i, m) in self.sorted[from..to].iter().enumerate() {
                if i > 0 {
                    f(b",");
                }
                self.read(m.start, m.end, f);
            }
            at = r.end;
            // Past the objects nested in this one: its members' reading
            // took care of them.
            k = self.reordered.partition_point(|x| x.body < r.end);
        }
        if at < hi {
            f(&self.out[at..hi]);
        }
    }
}

struct Walk<'d, 'p> {
    doc: &'d [u8],
    at: usize,
    /// Decoded string text, reused.
    scratch: Vec<u8>,
    /// Member ranges of the objects being written, a stack shared by the
    /// levels (each level uses the entries above where it began).
    members: Vec<Member>,
    pieces: &'p mut Pieces,
}

/// One member as written to `out`: its whole range and where its key ends.
#[derive(Clone, Copy, Debug)]
struct Member {
    start: usize,
    key_end: usize,
    end: usize,
}

impl Walk<'_, '_> {
    fn space(&mut self) {
        while self.doc.get(self.at).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize, skip: &[&[u8]]) -> Result<(), Malformed> {
        match self.doc.get(self.at) {
            Some(b'{') => self.object(depth, skip),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(Malformed("a value is expected")),
            None => Err(Malformed("the document ends early")),
        }
    }

    fn object(&mut self, depth: usize, skip: &[&[u8]]) -> Result<(), Malformed> {
        if depth >= DEPTH_MAX {
            return Err(Malformed("the document nests too deeply"));
        }
        self.at += 1;
        self.pieces.out.push(b'{');
        let body = self.pieces.out.len();
        let base = self.members.len();
        self.space();
        if self.doc.get(self.at) == Some(&b'}') {
            self.at += 1;
            self.pieces.out.push(b'}');
            return Ok(());
        }
        loop {
            self.space();
            if self.doc.get(self.at) != Some(&b'"') {
                return Err(Malformed("an object member's key is expected"));
            }
            let before = (self.pieces.out.len(), self.pieces.reordered.len(), self.pieces.sorted.len());
            if self.members.len() > base {
                self.pieces.out.push(b',');
            }
            let start = self.pieces.out.len();
            self.string()?;
            let key_end = self.pieces.out.len();
            self.space();
            if self.doc.get(self.at) != Some(&b':') {
                return Err(Malformed("`:` is expected after a key"));
            }
            self.at += 1;
            self.space();
            self.pieces.out.push(b':');
            // The members below this level may be reordered by the value.
            self.value(depth + 1, &[])?;
            let skipped = skip.iter().any(|s| self.pieces.out.get(start + 1..key_end - 1) == Some(*s));
            if skipped {
                // With whatever its value reordered.
                self.pieces.out.truncate(before.0);
                self.pieces.reordered.truncate(before.1);
                self.pieces.sorted.truncate(before.2);
            } else {
                self.members.push(Member { start, key_end, end: self.pieces.out.len() });
            }
            self.space();
            match self.doc.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    break;
                }
                _ => return Err(Malformed("`,` or `}` is expected in an object")),
            }
        }
        // Members ordered by key (a repeated key is refused): left where
        // they are, their order noted for the reading.
        let out = &self.pieces.out;
        let key = |m: &Member| &out[m.start..m.key_end];
        let level = &mut self.members[base..];
        if !level.windows(2).all(|p| key(&p[0]) < key(&p[1])) {
            level.sort_by(|a, b| key(a).cmp(key(b)));
            if level.windows(2).any(|p| key(&p[0]) == key(&p[1])) {
                return Err(Malformed("an object repeats a key"));
            }
            let from = self.pieces.sorted.len() as u32;
            self.pieces.sorted.extend_from_slice(level);
            let members = (from, self.pieces.sorted.len() as u32);
            self.pieces.reordered.push(Reordered { body, end: self.pieces.out.len(), members });
        }
        self.pieces.out.push(b'}');
        self.members.truncate(base);
        Ok(())
    }

    fn array(&mut self, depth: usize) -> Result<(), Malformed> {
        if depth >= DEPTH_MAX {
            return Err(Malformed("the document nests too deeply"));
        }
        self.at += 1;
        self.pieces.out.push(b'[');
        self.space();
        if self.doc.get(self.at) == Some(&b']') {
            self.at += 1;
            self.pieces.out.push(b']');
            return Ok(());
        }
        loop {
            self.space();
            self.value(depth + 1, &[])?;
            self.space();
            match self.doc.get(self.at) {
                Some(b',') => {
                    self.at += 1;
                    self.pieces.out.push(b',');
                }
                Some(b']') => {
                    self.at += 1;
                    self.pieces.out.push(b']');
                    return Ok(());
                }
                _ => return Err(Malformed("`,` or `]` is expected in an array")),
            }
        }
    }

    fn string(&mut self) -> Result<(), Malformed> {
        let from = self.at + 1;
        // One pass to the closing quote that no backslash escapes, 64 bytes
        // a step, saying on the way whether a raw control byte or a
        // backslash comes before it: a search restarted after each escape
        // and a second pass for control bytes were a fifth of the
        // canonical form of an 8 KB prompt of code.
        let Some(closing) = crate::json::closing_quote(self.doc, from, true) else {
            return Err(Malformed("a string is not terminated"));
        };
        if closing.control {
            return Err(Malformed("a string holds a raw control character"));
        }
        let (close, escaped) = (closing.end, closing.escapes);
        let raw = &self.doc[from..close];
        self.at = close + 1;
        self.pieces.out.push(b'"');
        if escaped && !canonical_escapes(raw) {
            if lone_surrogate(raw) {
                return Err(Malformed("a string holds a lone UTF-16 surrogate escape"));
            }
            self.scratch.clear();
            crate::json::unescape(raw, &mut self.scratch)?;
            crate::json::escape(&self.scratch, &mut self.pieces.out);
        } else {
            self.pieces.out.extend_from_slice(raw);
        }
        self.pieces.out.push(b'"');
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Malformed> {
        if self.doc.get(self.at..self.at + word.len()) != Some(word) {
            return Err(Malformed("a value is expected"));
        }
        self.at += word.len();
        self.pieces.out.extend_from_slice(word);
        Ok(())
    }

    /// A number as written, its grammar checked (`-`? int frac? exp?).
    fn number(&mut self) -> Result<(), Malformed> {
        let start = self.at;
        let d = self.doc;
        let digits = |at: &mut usize| {
            let from = *at;
            while d.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at > from
        };
        let mut at = start;
        if d.get(at) == Some(&b'-') {
            at += 1;
        }
        if d.get(at) == Some(&b'0') {
            at += 1;
        } else if !digits(&mut at) {
            return Err(Malformed("a number has no digits"));
        }
        if d.get(at) == Some(&b'.') {
            at += 1;
            if !digits(&mut at) {
                return Err(Malformed("a number's fraction has no digits"));
            }
        }
        if matches!(d.get(at), Some(b'e' | b'E')) {
            at += 1;
            if matches!(d.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            if !digits(&mut at) {
                return Err(Malformed("a number's exponent has no digits"));
            }
        }
        if d.get(at).is_some_and(|b| b.is_ascii_digit()) {
            return Err(Malformed("a number has a leading zero"));
        }
        self.pieces.out.extend_from_slice(&d[start..at]);
        self.at = at;
        Ok(())
    }
}

/// Whether every escape in `raw` is the one [`crate::json::escape`]
/// writes for its character (`\"`, `\\`, `\n`, `\r`, `\t`): then the
/// raw bytes are already canonical and are copied as they are, instead of
/// decoded and escaped again (most text's only escapes are these).
fn canonical_escapes(raw: &[u8]) -> bool {
    let mut at = 0;
    // The next backslash is most often within sixteen bytes (`\n` in code):
    // looked for inline before a call into `memchr`.
    while let Some(p) = crate::json::find_near(b'\\', b'\\', &raw[at..]) {
        let i = at + p;
        if !matches!(raw.get(i + 1), Some(b'"' | b'\\' | b'n' | b'r' | b't')) {
            return false;
        }
        at = i + 2;
    }
    true
}

/// Whether `raw` (a string's content) escapes a UTF-16 surrogate that is
/// not half of a pair.
fn lone_surrogate(raw: &[u8]) -> bool {
    let unit = |at: usize| -> Option<u32> {
        let digits = raw.get(at..at + 4)?;
        digits.iter().try_fold(0u32, |v, &b| Some(v * 16 + (b as char).to_digit(16)?))
    };
    let mut at = 0;
    while let Some(p) = memchr::memchr(b'\\', &raw[at..]) {
        let i = at + p;
        if raw.get(i + 1) != Some(&b'u') {
            at = i + 2;
            continue;
        }
        let Some(hi) = unit(i + 2) else { return false };
        at = i + 6;
        if (0xDC00..0xE000).contains(&hi) {
            return true;
        }
        if (0xD800..0xDC00).contains(&hi) {
            let paired =
                raw.get(at..at + 2) == Some(b"\\u") && unit(at + 2).is_some_and(|lo| (0xDC00..0xE000).contains(&lo));
            if !paired {
                return true;
            }
            at += 6;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(doc: &str) -> Result<String, Malformed> {
        let mut out = Vec::new();
        canonical(doc.as_bytes(), &[b"user", b"stream"], &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn spellings_of_one_document_agree() {
        let a = canon(r#"{"model":"m","messages":[{"role":"user","content":"Hi A"}],"temperature":0}"#).unwrap();
        let b = canon(
            "{ \"temperature\" : 0 ,\n \"messages\":[ {\"content\":\"Hi \\u0041\", \"role\":\"user\"} ],\"model\":\"m\" }",
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a, r#"{"messages":[{"content":"Hi A","role":"user"}],"model":"m","temperature":0}"#);
        // Keys are compared decoded: an escaped key sorts as its text.
        assert_eq!(canon(r#"{"b":1,"\u0061":2}"#).unwrap(), r#"{"a":2,"b":1}"#);
    }

    #[test]
    fn skipped_members_are_top_level_only() {
        assert_eq!(canon(r#"{"user":"u1","stream":true,"model":"m"}"#).unwrap(), r#"{"model":"m"}"#);
        assert_eq!(canon(r#"{"user":"u2","str\u0065am":false,"model":"m"}"#).unwrap(), r#"{"model":"m"}"#);
        // A message's `user` role or a nested `stream` key is content.
        assert_eq!(canon(r#"{"m":{"user":1}}"#).unwrap(), r#"{"m":{"user":1}}"#);
    }

    /// Objects out of order inside objects out of order, inside arrays,
    /// and inside a skipped member (whose reordering leaves with it).
    #[test]
    fn nested_reorderings_are_read_in_key_order() {
        assert_eq!(
            canon(r#"{"z":{"b":[{"d":1,"c":{"f":2,"e":3}},[{"h":0,"g":0}]],"a":0},"y":1}"#).unwrap(),
            r#"{"y":1,"z":{"a":0,"b":[{"c":{"e":3,"f":2},"d":1},[{"g":0,"h":0}]]}}"#
        );
        assert_eq!(canon(r#"{"user":{"b":1,"a":{"d":1,"c":2}},"model":"m"}"#).unwrap(), r#"{"model":"m"}"#);
        assert_eq!(
            canon(r#"{"b":{"y":1,"x":2},"stream":{"b":1,"a":2},"a":{"d":1,"c":2}}"#).unwrap(),
            r#"{"a":{"c":2,"d":1},"b":{"x":2,"y":1}}"#
        );
        // Appended after what `out` held (the semantic cache's prefix).
        let mut out = b"semantic:".to_vec();
        canonical(br#"{"b":1,"a":2}"#, &[], &mut out).unwrap();
        assert_eq!(out, br#"semantic:{"a":2,"b":1}"#);
        // A reused `Pieces` starts afresh.
        let mut p = Pieces::default();
        canonical_pieces(br#"{"b":{"d":1,"c":2},"a":2}"#, &[], &mut p).unwrap();
        canonical_pieces(br#"{"b":1,"a":2}"#, &[], &mut p).unwrap();
        let mut read = Vec::new();
        p.feed(|s| read.extend_from_slice(s));
        assert_eq!(read, br#"{"a":2,"b":1}"#);
        assert_eq!(p.len(), read.len());
    }

    #[test]
    fn different_values_stay_apart() {
        let pairs = [
            (r#"{"a":1}"#, r#"{"a":1.0}"#),
            (r#"{"a":"x"}"#, r#"{"a":"x "}"#),
            (r#"{"a":[1,2]}"#, r#"{"a":[2,1]}"#),
            (r#"{"a":"\ufffd"}"#, r#"{"a":"\u00fd"}"#),
            (r#"{"a":{"b":"c"}}"#, r#"{"a":"{\"b\":\"c\"}"}"#),
            (r#"{"a":null}"#, r#"{}"#),
            (r#"{"ab":"c"}"#, r#"{"a":"bc"}"#),
        ];
        for (x, y) in pairs {
            assert_ne!(canon(x).unwrap(), canon(y).unwrap(), "{x} vs {y}");
        }
    }

    #[test]
    fn what_is_not_json_is_refused() {
        for doc in [
            "",
            "{",
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":tru}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00\ud800"}"#,
            "{\"a\":\"\x01\"}",
            r#"{"a":1} x"#,
            r#"{"a":"\"}"#,
            r#"{"a":"\x"}"#,
            // A repeated key, even spelled another way or nested.
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"\u0061":1}"#,
            r#"{"m":[{"content":"x","role":"user","content":"y"}]}"#,
        ] {
            assert!(canon(doc).is_err(), "{doc:?}");
        }
        // A surrogate pair is fine.
        assert_eq!(canon(r#"{"a":"\ud83d\ude00"}"#).unwrap(), "{\"a\":\"\u{1F600}\"}");
    }

    /// Strings on both sides of one and two 64-byte blocks, with an escape
    /// of each kind or a raw control byte at every place: the canonical
    /// form is the document serde_json reads and its own canonical form,
    /// a control byte is refused, and a quote escaped at the end leaves
    /// the string unterminated, whichever block the escape, the control
    /// byte or the closing quote falls in.
    #[test]
    fn strings_across_blocks() {
        let lengths = (0..=4).chain(58..=70).chain(122..=134);
        for len in lengths {
            for at in 0..len {
                for escape in [r#"\""#, r"\\", r"\n", r"\u0041", r"\/", r"\ud83d\ude00"] {
                    let mut text = "x".repeat(len);
                    text.replace_range(at..at + 1, escape);
                    let doc = format!(r#"{{"k":"{text}","z":1}}"#);
                    let want: serde_json::Value = serde_json::from_str(&doc).unwrap();
                    let form = canon(&doc).unwrap_or_else(|e| panic!("{doc}: {e:?}"));
                    assert_eq!(serde_json::from_str::<serde_json::Value>(&form).unwrap(), want, "{doc}");
                    assert_eq!(canon(&form), Ok(form.clone()), "{doc}");
                }
                let mut text = "x".repeat(len);
                text.replace_range(at..at + 1, "\u{1}");
                assert!(canon(&format!(r#"{{"k":"{text}"}}"#)).is_err(), "control byte at {at} of {len}");
            }
            assert!(canon(&format!(r#"{{"k":"{}\"}}"#, "x".repeat(len))).is_err(), "unterminated {len}");
            assert!(canon(&format!(r#"{{"k":"{}\\"}}"#, "x".repeat(len))).is_ok(), "a backslash escaped {len}");
        }
    }

    /// A hostile body nested past the bound is refused, not a stack
    /// overflow; one at the bound is walked.
    #[test]
    fn nesting_is_bounded() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(canon(&deep(DEPTH_MAX)).is_ok());
        assert!(canon(&deep(DEPTH_MAX + 1)).is_err());
        assert!(canon(&deep(1_000_000)).is_err());
    }

    /// Reserialising with serde_json (another implementation) in any key
    /// order and spacing gives the same canonical form.
    fn shuffled(v: &serde_json::Value, seed: &mut u64, out: &mut String) {
        let mut next = || {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (*seed >> 33) as usize
        };
        let ws = [" ", "\n", "\t", "", "  \r\n"];
        match v {
            serde_json::Value::Object(m) => {
                let mut items: Vec<_> = m.iter().collect();
                for i in (1..items.len()).rev() {
                    let j = next() % (i + 1);
                    items.swap(i, j);
                }
                out.push('{');
                for (i, (k, v)) in items.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(ws[next() % ws.len()]);
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push_str(ws[next() % ws.len()]);
                    out.push(':');
                    let mut seed2 = next() as u64;
                    shuffled(v, &mut seed2, out);
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(ws[next() % ws.len()]);
                        out.push(',');
                    }
                    let mut seed2 = next() as u64;
                    shuffled(v, &mut seed2, out);
                }
                out.push(']');
            }
            // Strings with every non-ASCII character escaped.
            serde_json::Value::String(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if (c as u32) < 0x20 || !c.is_ascii() => {
                            let mut units = [0u16; 2];
                            for u in c.encode_utf16(&mut units) {
                                out.push_str(&format!("\\u{u:04X}"));
                            }
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            other => out.push_str(&other.to_string()),
        }
    }

    fn value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z \\u{e9}\\u{4e2d}\\u{1F600}\"\\\\\n]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn reserialised_documents_agree(v in value(), seed in any::<u64>()) {
            let compact = serde_json::to_string(&v).unwrap();
            let mut s = seed;
            let mut other = String::new();
            shuffled(&v, &mut s, &mut other);
            let (a, b) = (canon(&compact), canon(&other));
            prop_assert!(a.is_ok(), "{compact}");
            // The form read from its pieces is the same document (another
            // parser says so) and its own canonical form.
            let form = a.clone().unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&form).unwrap();
            prop_assert_eq!(&parsed, &v);
            prop_assert_eq!(canon(&form), Ok(form.clone()));
            prop_assert_eq!(a, b, "{} vs {}", compact, other);
        }

        /// Never panics on arbitrary bytes.
        #[test]
        fn any_bytes_are_safe(doc in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut out = Vec::new();
            let _ = canonical(&doc, &[], &mut out);
        }
    }
}
