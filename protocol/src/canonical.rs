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

/// Writes the canonical form of `doc` to `out`, leaving out the top-level
/// members whose (decoded) key is in `skip`.
pub fn canonical(doc: &[u8], skip: &[&[u8]], out: &mut Vec<u8>) -> Result<(), Malformed> {
    let mut w = Walk { doc, at: 0, scratch: Vec::new(), members: Vec::new() };
    w.space();
    w.value(out, 0, skip)?;
    w.space();
    if w.at != doc.len() {
        return Err(Malformed("bytes after the document"));
    }
    Ok(())
}

struct Walk<'d> {
    doc: &'d [u8],
    at: usize,
    /// Decoded string text, reused.
    scratch: Vec<u8>,
    /// Member ranges of the objects being written, a stack shared by the
    /// levels (each level uses the entries above where it began).
    members: Vec<Member>,
}

/// One member as written to `out`: its whole range and where its key ends.
#[derive(Clone, Copy)]
struct Member {
    start: usize,
    key_end: usize,
    end: usize,
}

impl Walk<'_> {
    fn space(&mut self) {
        while self.doc.get(self.at).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize, skip: &[&[u8]]) -> Result<(), Malformed> {
        match self.doc.get(self.at) {
            Some(b'{') => self.object(out, depth, skip),
            Some(b'[') => self.array(out, depth),
            Some(b'"') => self.string(out),
            Some(b't') => self.literal(out, b"true"),
            Some(b'f') => self.literal(out, b"false"),
            Some(b'n') => self.literal(out, b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(out),
            Some(_) => Err(Malformed("a value is expected")),
            None => Err(Malformed("the document ends early")),
        }
    }

    fn object(&mut self, out: &mut Vec<u8>, depth: usize, skip: &[&[u8]]) -> Result<(), Malformed> {
        if depth >= DEPTH_MAX {
            return Err(Malformed("the document nests too deeply"));
        }
        self.at += 1;
        out.push(b'{');
        let body = out.len();
        let base = self.members.len();
        self.space();
        if self.doc.get(self.at) == Some(&b'}') {
            self.at += 1;
            out.push(b'}');
            return Ok(());
        }
        loop {
            self.space();
            if self.doc.get(self.at) != Some(&b'"') {
                return Err(Malformed("an object member's key is expected"));
            }
            let before = out.len();
            if self.members.len() > base {
                out.push(b',');
            }
            let start = out.len();
            self.string(out)?;
            let key_end = out.len();
            self.space();
            if self.doc.get(self.at) != Some(&b':') {
                return Err(Malformed("`:` is expected after a key"));
            }
            self.at += 1;
            self.space();
            out.push(b':');
            // The members below this level may be reordered by the value.
            self.value(out, depth + 1, &[])?;
            let skipped = skip.iter().any(|s| out.get(start + 1..key_end - 1) == Some(*s));
            if skipped {
                out.truncate(before);
            } else {
                self.members.push(Member { start, key_end, end: out.len() });
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
        // Members ordered by key (a repeated key is refused), written back
        // with `,` between them.
        let level = &mut self.members[base..];
        let sorted = level.windows(2).all(|p| out[p[0].start..p[0].key_end] < out[p[1].start..p[1].key_end]);
        if !sorted {
            let written = out[body..].to_vec();
            let key = |m: &Member| &written[m.start - body..m.key_end - body];
            level.sort_by(|a, b| key(a).cmp(key(b)));
            if level.windows(2).any(|p| key(&p[0]) == key(&p[1])) {
                return Err(Malformed("an object repeats a key"));
            }
            out.truncate(body);
            for (i, m) in level.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&written[m.start - body..m.end - body]);
            }
        }
        out.push(b'}');
        self.members.truncate(base);
        Ok(())
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), Malformed> {
        if depth >= DEPTH_MAX {
            return Err(Malformed("the document nests too deeply"));
        }
        self.at += 1;
        out.push(b'[');
        self.space();
        if self.doc.get(self.at) == Some(&b']') {
            self.at += 1;
            out.push(b']');
            return Ok(());
        }
        loop {
            self.space();
            self.value(out, depth + 1, &[])?;
            self.space();
            match self.doc.get(self.at) {
                Some(b',') => {
                    self.at += 1;
                    out.push(b',');
                }
                Some(b']') => {
                    self.at += 1;
                    out.push(b']');
                    return Ok(());
                }
                _ => return Err(Malformed("`,` or `]` is expected in an array")),
            }
        }
    }

    fn string(&mut self, out: &mut Vec<u8>) -> Result<(), Malformed> {
        let from = self.at + 1;
        let mut at = from;
        let mut escaped = false;
        let close = loop {
            let Some(p) = memchr::memchr2(b'"', b'\\', &self.doc[at.min(self.doc.len())..]) else {
                return Err(Malformed("a string is not terminated"));
            };
            let i = at + p;
            if self.doc[i] == b'"' {
                break i;
            }
            escaped = true;
            at = i + 2;
        };
        let raw = &self.doc[from..close];
        if crate::json::has_control_byte(raw) {
            return Err(Malformed("a string holds a raw control character"));
        }
        self.at = close + 1;
        out.push(b'"');
        if escaped && !canonical_escapes(raw) {
            if lone_surrogate(raw) {
                return Err(Malformed("a string holds a lone UTF-16 surrogate escape"));
            }
            self.scratch.clear();
            crate::json::unescape(raw, &mut self.scratch)?;
            crate::json::escape(&self.scratch, out);
        } else {
            out.extend_from_slice(raw);
        }
        out.push(b'"');
        Ok(())
    }

    fn literal(&mut self, out: &mut Vec<u8>, word: &[u8]) -> Result<(), Malformed> {
        if self.doc.get(self.at..self.at + word.len()) != Some(word) {
            return Err(Malformed("a value is expected"));
        }
        self.at += word.len();
        out.extend_from_slice(word);
        Ok(())
    }

    /// A number as written, its grammar checked (`-`? int frac? exp?).
    fn number(&mut self, out: &mut Vec<u8>) -> Result<(), Malformed> {
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
        out.extend_from_slice(&d[start..at]);
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
    while let Some(p) = memchr::memchr(b'\\', &raw[at..]) {
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
