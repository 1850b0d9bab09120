//! The text fields of a JSON document, found without building a tree: every
//! string value, with the key it belongs to, as a range of the raw bytes.
//! Guardrails scan these in place; only a string with escapes is decoded
//! (into a caller's scratch buffer), and only a redacted one re-encoded.
//!
//! The walk checks string syntax only (quotes, escapes); the document has
//! been parsed for routing before it gets here, and a document it cannot
//! walk is reported, never guessed at.

use std::ops::Range;

/// The document is not JSON the walk can follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// One string value: the raw bytes between its quotes, and whether they
/// hold escapes (then [`unescape`] gives the text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StringValue {
    pub key: Range<usize>,
    pub raw: Range<usize>,
    pub escaped: bool,
}

/// Calls `f` for every string value of `doc` (object member values and
/// array elements), in order. A value belongs to the key of the member it
/// is (or, in an array, the member the array is): when an object or array
/// closes, the key of the container around it is restored, so a string
/// after an object inside an array is never taken for that object's last
/// member.
pub fn string_values(doc: &[u8], mut f: impl FnMut(&[u8], StringValue)) -> Result<(), Malformed> {
    let mut at = 0;
    let mut key = 0..0;
    // The key each open container was a member value of.
    let mut open: Vec<Range<usize>> = Vec::new();
    while let Some(q) = memchr::memchr(b'"', &doc[at..]) {
        let open_quote = at + q;
        // Containers opened and closed between the last string and this one.
        for &b in &doc[at..open_quote] {
            match b {
                b'{' | b'[' => {
                    if open.len() == NESTING_MAX {
                        return Err(Malformed("the document nests too deeply"));
                    }
                    open.push(key.clone());
                }
                b'}' | b']' => key = open.pop().unwrap_or(0..0),
                _ => {}
            }
        }
        let (close, escaped) = string_end(doc, open_quote + 1)?;
        let raw = open_quote + 1..close;
        at = close + 1;
        let next = doc[at..].iter().position(|b| !b.is_ascii_whitespace()).map(|p| doc[at + p]);
        if next == Some(b':') {
            key = raw;
        } else {
            f(&doc[key.clone()], StringValue { key: key.clone(), raw, escaped });
        }
    }
    Ok(())
}

/// Nesting past which a document is not walked: far beyond any chat
/// request or answer, and a bound on the walk's memory.
const NESTING_MAX: usize = 1024;

/// Like [`string_values`], for the values `keep(key, raw)` selects, with
/// their text: borrowed when they hold no escape, decoded into one reused
/// scratch buffer when they do (`Err` for an escape that cannot be).
pub fn string_texts(
    doc: &[u8],
    keep: impl Fn(&[u8], &[u8]) -> bool,
    mut f: impl FnMut(&[u8], StringValue, Result<&[u8], Malformed>),
) -> Result<(), Malformed> {
    // No marks: a body of escapes would make them many times its size.
    texts(doc, keep, false, |key, v, text, _| f(key, v, text))
}

/// [`string_texts`], with each decoded text's escape marks (see
/// [`unescape_marking`]; empty for a text without escapes, and for one
/// longer than [`MARKED_BYTES_MAX`]), so that a
/// caller that changes the text can map its offsets back to the raw
/// string without decoding it again.
pub fn string_texts_marked(
    doc: &[u8],
    keep: impl Fn(&[u8], &[u8]) -> bool,
    f: impl FnMut(&[u8], StringValue, Result<&[u8], Malformed>, &[(usize, usize)]),
) -> Result<(), Malformed> {
    texts(doc, keep, true, f)
}

/// The longest string [`string_texts_marked`] gives marks for.
pub const MARKED_BYTES_MAX: usize = 64 * 1024;

fn texts(
    doc: &[u8],
    keep: impl Fn(&[u8], &[u8]) -> bool,
    marked: bool,
    mut f: impl FnMut(&[u8], StringValue, Result<&[u8], Malformed>, &[(usize, usize)]),
) -> Result<(), Malformed> {
    let mut scratch = Vec::new();
    let mut marks = Vec::new();
    string_values(doc, |key, v| {
        let raw = &doc[v.raw.clone()];
        if !keep(key, raw) {
            return;
        }
        marks.clear();
        let text = if v.escaped {
            scratch.clear();
            // Decoding never grows a text: one allocation, no regrowth.
            scratch.reserve(raw.len());
            // Marks for strings up to 64 KiB: a string of escapes makes
            // them 16 times its size. Longer ones get none (a caller then
            // decodes again).
            let decoded = if marked && raw.len() <= MARKED_BYTES_MAX {
                unescape_marking(raw, &mut scratch, |t, r| marks.push((t, r)))
            } else {
                unescape(raw, &mut scratch)
            };
            decoded.map(|()| &scratch[..])
        } else {
            Ok(raw)
        };
        f(key, v, text, &marks);
    })
}

/// The closing quote of the string whose content starts at `from`.
fn string_end(doc: &[u8], from: usize) -> Result<(usize, bool), Malformed> {
    let mut at = from;
    let mut escaped = false;
    loop {
        let Some(p) = memchr::memchr2(b'"', b'\\', &doc[at..]) else {
            return Err(Malformed("a string is not terminated"));
        };
        let i = at + p;
        if doc[i] == b'"' {
            return Ok((i, escaped));
        }
        escaped = true;
        at = i + 2;
        if at > doc.len() {
            return Err(Malformed("a string ends in an escape"));
        }
    }
}

/// Decodes a string's raw bytes (escapes included) into `out`. A lone
/// surrogate becomes U+FFFD, as browsers and serde_json's lossy mode do.
pub fn unescape(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Malformed> {
    unescape_marking(raw, out, |_, _| {})
}

/// [`unescape`], calling `mark(text, raw)` where each escape begins and
/// where it ends: the offsets in the text written (from where `out` began)
/// and in `raw`. Between two marks, text and raw advance byte for byte, so
/// the marks map any offset of the text that is not inside an escape's
/// output back to `raw` (to redact a string without re-escaping it).
pub fn unescape_marking(raw: &[u8], out: &mut Vec<u8>, mut mark: impl FnMut(usize, usize)) -> Result<(), Malformed> {
    let base = out.len();
    let mut at = 0;
    while let Some(p) = memchr::memchr(b'\\', &raw[at..]) {
        out.extend_from_slice(&raw[at..at + p]);
        let i = at + p;
        mark(out.len() - base, i);
        let Some(&c) = raw.get(i + 1) else { return Err(Malformed("a string ends in an escape")) };
        at = i + 2;
        let simple = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hi = hex4(raw, at)?;
                at += 4;
                let c = if (0xD800..0xDC00).contains(&hi) && raw.get(at..at + 2) == Some(b"\\u") {
                    let lo = hex4(raw, at + 2)?;
                    if (0xDC00..0xE000).contains(&lo) {
                        at += 6;
                        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                    } else {
                        None
                    }
                } else {
                    char::from_u32(hi)
                };
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.unwrap_or('\u{FFFD}').encode_utf8(&mut buf).as_bytes());
                mark(out.len() - base, at);
                continue;
            }
            _ => return Err(Malformed("unknown escape in a string")),
        };
        out.push(simple);
        mark(out.len() - base, at);
    }
    out.extend_from_slice(&raw[at..]);
    Ok(())
}

fn hex4(raw: &[u8], at: usize) -> Result<u32, Malformed> {
    let digits = raw.get(at..at + 4).ok_or(Malformed("short \\u escape"))?;
    digits.iter().try_fold(0u32, |v, &b| {
        let d = (b as char).to_digit(16).ok_or(Malformed("bad \\u escape"))?;
        Ok(v * 16 + d)
    })
}

/// Writes `text` as the content of a JSON string (without quotes): `"`,
/// `\\` and control characters escaped, everything else as it is.
pub fn escape(text: &[u8], out: &mut impl bytes::BufMut) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut at = 0;
    let mut i = 0;
    while i < text.len() {
        // Eight bytes at a time while none needs escaping (most text).
        if let Some(word) = text.get(i..i + 8) {
            let w = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
            if !needs_escape(w) {
                i += 8;
                continue;
            }
        }
        let (pos, b) = (i, text[i]);
        i += 1;
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.put_slice(&text[at..pos]);
                out.put_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
                at = pos + 1;
                continue;
            }
            _ => continue,
        };
        out.put_slice(&text[at..pos]);
        out.put_slice(esc);
        at = pos + 1;
    }
    out.put_slice(&text[at..]);
}

/// Whether `bytes` hold a control byte (below 0x20), eight at a time.
pub fn has_control_byte(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    let found = words.by_ref().any(|w| {
        let w = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        w.wrapping_sub(ONES * 0x20) & !w & HIGHS != 0
    });
    found || words.remainder().iter().any(|&b| b < 0x20)
}

/// Whether any of a word's eight bytes is one JSON escapes: below 0x20, a
/// quote or a backslash (SWAR: the classic "has zero byte" and "has byte
/// less than n" tests, with no false negatives).
#[inline]
pub fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    (below_space | zero(w ^ (ONES * b'"' as u64)) | zero(w ^ (ONES * b'\\' as u64))) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(doc: &str) -> Vec<(String, String)> {
        let mut v = Vec::new();
        string_values(doc.as_bytes(), |key, s| {
            let mut text = Vec::new();
            unescape(&doc.as_bytes()[s.raw], &mut text).unwrap();
            v.push((String::from_utf8_lossy(key).into(), String::from_utf8(text).unwrap()));
        })
        .unwrap();
        v
    }

    #[test]
    fn finds_values_with_their_keys() {
        let doc = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a\"b\n\u00e9\ud83d\ude00"}]}],"stop":["x","y"]}"#;
        assert_eq!(
            values(doc),
            [("model", "m"), ("role", "user"), ("type", "text"), ("text", "a\"b\né😀"), ("stop", "x"), ("stop", "y")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn escape_round_trips() {
        let text = "quote \" back \\ nl \n tab \t bell \u{7} é";
        let mut esc = Vec::new();
        escape(text.as_bytes(), &mut esc);
        let doc = format!("{{\"k\":\"{}\"}}", String::from_utf8(esc).unwrap());
        assert_eq!(serde_json::from_str::<serde_json::Value>(&doc).unwrap()["k"], text);
        assert_eq!(values(&doc)[0].1, text);
    }

    #[test]
    fn unterminated_strings_are_malformed() {
        assert!(string_values(br#"{"a":"b"#, |_, _| {}).is_err());
        assert!(string_values(br#"{"a":"b\"#, |_, _| {}).is_err());
        let mut out = Vec::new();
        assert!(unescape(br"\u12", &mut out).is_err());
        assert!(unescape(br"\q", &mut out).is_err());
    }

    /// A tenant hides text after an object inside an array (a tool schema's
    /// `enum`): it belongs to the array's key, not to the object's last
    /// member (`type`, which guardrails skip as structural).
    #[test]
    fn a_string_after_a_closed_object_gets_its_containers_key_back() {
        let doc = r#"{"tools":[{"function":{"parameters":{"enum":[{"type":"x"},"my key sk-proj-abc mail bob@example.com"]}}}]}"#;
        assert_eq!(values(doc).last().map(|(k, _)| k.as_str()), Some("enum"));
        let doc = r#"{"a":[[{"id":"1"}],"after"],"b":{"type":"t"},"c":["x",{"k":"v"},"y"]}"#;
        let keys: Vec<_> = values(doc).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(keys, ["id=1", "a=after", "type=t", "c=x", "k=v", "c=y"]);
    }

    /// Every string value with the key a real parser gives it: the key of
    /// the innermost member around it (array elements inherit the array's).
    fn expected(v: &serde_json::Value, key: &str, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::String(s) => out.push((key.to_string(), s.clone())),
            serde_json::Value::Array(items) => items.iter().for_each(|i| expected(i, key, out)),
            serde_json::Value::Object(m) => m.iter().for_each(|(k, v)| expected(v, k, out)),
            _ => {}
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let text = proptest::string::string_regex("[a-z \\\"\n{}\\[\\]:,é😀]{0,8}").expect("regex");
        let leaf = prop_oneof![
            text.prop_map(serde_json::Value::String),
            any::<i32>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
        ];
        leaf.prop_recursive(5, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                proptest::collection::vec(("[a-z]{1,6}", inner), 0..5)
                    .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn every_string_gets_the_key_a_json_parser_gives_it(v in json_value()) {
            let doc = serde_json::to_string(&v).expect("serialize");
            let mut want = Vec::new();
            expected(&v, "", &mut want);
            proptest::prop_assert_eq!(values(&doc), want, "{}", doc);
            let pretty = serde_json::to_string_pretty(&v).expect("serialize");
            proptest::prop_assert_eq!(values(&pretty), values(&doc));
        }
    }

    proptest::proptest! {
        /// Escaping eight bytes at a time gives what a JSON parser reads
        /// back as the text, for any text (controls, quotes, backslashes,
        /// multi-byte characters, at any alignment).
        #[test]
        fn escaped_text_reads_back(text in "[\\x00-\\x7f\"\\\\é😀 a-z]{0,80}") {
            let mut out = Vec::new();
            escape(text.as_bytes(), &mut out);
            let doc = format!("\"{}\"", String::from_utf8(out).expect("utf-8"));
            let back: String = serde_json::from_str(&doc).expect("valid JSON string");
            proptest::prop_assert_eq!(back, text);
        }
    }

    #[test]
    fn control_bytes_are_found_at_any_place() {
        for len in 0..20 {
            for at in 0..len {
                let mut v = vec![b'x'; len];
                v[at] = 0x1f;
                assert!(has_control_byte(&v), "{len} {at}");
                v[at] = 0x20;
                assert!(!has_control_byte(&v));
                v[at] = 0xe3;
                assert!(!has_control_byte(&v), "UTF-8 bytes are not control bytes");
            }
        }
    }

    #[test]
    fn the_word_test_finds_every_byte_to_escape() {
        for b in 0u8..=255 {
            for at in 0..8 {
                let mut w = [b'a'; 8];
                w[at] = b;
                let want = b < 0x20 || b == b'"' || b == b'\\';
                assert_eq!(needs_escape(u64::from_le_bytes(w)), want, "byte {b:#x} at {at}");
            }
        }
    }
}
