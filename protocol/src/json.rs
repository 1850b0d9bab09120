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
    /// A number the model reads as text, not a string ([`Visit::number`]):
    /// `raw` is its longest run of digits (no sign, point or exponent, and
    /// no quotes around it), so a caller that replaces it replaces the
    /// whole literal ([`number_literal`]) with a string.
    pub number: bool,
}

/// Calls `f` for every string value of `doc` (object member values and
/// array elements), in order. A value belongs to the key of the member it
/// is (or, in an array, the member the array is): when an object or array
/// closes, the key of the container around it is restored, so a string
/// after an object inside an array is never taken for that object's last
/// member.
///
/// Inside an object whose keys the tenant chooses ([`FREE_FORM`]: a tool
/// call's `input`, `metadata`, a Responses prompt template's
/// `variables`), a string is given with an empty
/// key: its key names nothing the gateway knows, and a reader that passes
/// over structural keys (`type`, `id`) must not pass over
/// `"input": {"type": "<a secret>"}`, which the model reads.
pub fn string_values(doc: &[u8], f: impl FnMut(&[u8], StringValue)) -> Result<(), Malformed> {
    /// Each string ended by [`string_end`].
    struct Values<F>(F);
    impl<F: FnMut(&[u8], StringValue)> Visit for Values<F> {
        #[inline]
        fn end(&mut self, doc: &[u8], _key: &[u8], from: usize) -> Result<(usize, bool), Malformed> {
            string_end(doc, from)
        }
        #[inline]
        fn value(&mut self, key: &[u8], v: StringValue) {
            (self.0)(key, v)
        }
    }
    walk(doc, &mut Values(f))
}

/// The first `a` or `b` in `hay`: the first sixteen bytes looked at
/// inline (SSE2, part of every x86_64), then `memchr2`. The walk's
/// searches are mostly short (a key, a role, the `": "` between a key and
/// its value): a call into `memchr2` for each cost a request of 8 KB of
/// tool schemas (430 strings) more than its 64-byte search saved.
#[inline(always)]
pub(crate) fn find_near(a: u8, b: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if hay.len() >= 16 {
        // SAFETY: SSE2 is part of the x86_64 baseline; the 16 bytes read
        // are inside `hay` (checked above).
        let found = unsafe { either16(hay.as_ptr(), a, b) };
        if found != 0 {
            return Some(found.trailing_zeros() as usize);
        }
        return memchr::memchr2(a, b, &hay[16..]).map(|p| p + 16);
    }
    memchr::memchr2(a, b, hay)
}

/// A bit per byte of the 16 at `at` that is `a` or `b`.
///
/// # Safety
/// `at` must be valid for reading 16 bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
unsafe fn either16(at: *const u8, a: u8, b: u8) -> u32 {
    use std::arch::x86_64::*;
    // SAFETY: the caller's promise; an unaligned load.
    let v = unsafe { _mm_loadu_si128(at.cast()) };
    let hits = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(a as i8)), _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8)));
    _mm_movemask_epi8(hits) as u32
}

/// What [`walk`] asks of its caller for each string.
trait Visit {
    /// Where the string whose content starts at `from` ends (its closing
    /// quote) and whether it holds escapes. `key` is the key it is the
    /// value of if it turns out to be a value (the walk knows that only
    /// after its end: a string followed by `:` is a key).
    fn end(&mut self, doc: &[u8], key: &[u8], from: usize) -> Result<(usize, bool), Malformed>;
    /// A string value and the key it belongs to.
    fn value(&mut self, key: &[u8], v: StringValue);
    /// A key the tenant names, which the model reads as text: a member's
    /// name in a free-form object (a tool call's arguments) or in a JSON
    /// schema's `properties`. Passed over by default.
    fn name(&mut self, _v: StringValue) {}
    /// A number of [`NUMBER_TEXT_DIGITS`] digits or more where the model
    /// reads it as text ([`walk`]). Passed over by default.
    fn number(&mut self, _key: &[u8], _v: StringValue) {}
    /// Whether [`Visit::number`] is wanted (the walk then looks for them).
    fn wants_numbers(&self) -> bool {
        false
    }
    /// Whether every number is wanted whole, and `true`, `false` and
    /// `null` with them, where numbers are read as text: for a count
    /// (each is a token or more to the provider), not only the long ones
    /// a detector reads.
    fn whole_numbers(&self) -> bool {
        false
    }
    /// Whether [`Visit::name`] is wanted.
    fn wants_names(&self) -> bool {
        false
    }
}

/// `type` values that make an object's `data` opaque bytes, not text:
/// Anthropic's base64 sources, and its redacted thinking (encrypted, and
/// verified byte for byte).
const OPAQUE_TYPES: &[&[u8]] = &[b"base64", b"redacted_thinking"];

/// Whether a `type` value is one of [`OPAQUE_TYPES`].
fn opaque(ty: &[u8]) -> bool {
    OPAQUE_TYPES.iter().any(|t| is(ty, t))
}

/// Keys whose object's `data` is audio: OpenAI's `input_audio` in a
/// request, `audio` in an answer.
const AUDIO_KEYS: &[&[u8]] = &[b"input_audio", b"audio"];

/// Whether numbers under `key` are read as text: one of
/// [`NUMBER_TEXT_KEYS`], or a key written with escapes (which the provider
/// decodes: `"en\u0075m"` is `enum`), taken as one.
fn number_text_key(key: &[u8]) -> bool {
    NUMBER_TEXT_KEYS.contains(&key) || key.contains(&b'\\')
}

/// What an object's next members after `at` (just past a member's value)
/// say of its `type`, read for a `data` value: [`Rest::End`] with the one
/// `type` string among them (or none) where the object ends within
/// [`TYPE_AFTER_MEMBERS`] members that hold no container and no escaped
/// key; [`Rest::Unknown`] otherwise (two `type`s, too far, not JSON: the
/// `data` is then text, the safe side). Bounded, so that a body of many
/// `data` members reads each byte a few times, not once per member before
/// it; and unambiguous, so that a parser that keeps the last of two
/// `type`s cannot read a file where the walk read text.
#[cold]
#[inline(never)]
fn rest_of(doc: &[u8], mut at: usize) -> Rest {
    let ws = |at: usize| at + doc[at.min(doc.len())..].iter().take_while(|b| b.is_ascii_whitespace()).count();
    let mut found = None;
    for _ in 0..TYPE_AFTER_MEMBERS {
        at = ws(at);
        match doc.get(at) {
            Some(b'}') => return Rest::End(found),
            Some(b',') => {}
            _ => return Rest::Unknown,
        }
        at = ws(at + 1);
        if doc.get(at) != Some(&b'"') {
            return Rest::Unknown;
        }
        let Some(key_end) = closing_quote(doc, at + 1, false).map(|q| q.end) else { return Rest::Unknown };
        let key = &doc[at + 1..key_end];
        if key.contains(&b'\\') {
            return Rest::Unknown;
        }
        at = ws(key_end + 1);
        if doc.get(at) != Some(&b':') {
            return Rest::Unknown;
        }
        at = ws(at + 1);
        match doc.get(at) {
            Some(b'"') => {
                let Some(end) = closing_quote(doc, at + 1, false).map(|q| q.end) else { return Rest::Unknown };
                if is(key, b"type") {
                    if found.is_some() {
                        return Rest::Unknown;
                    }
                    found = Some(at + 1..end);
                }
                at = end + 1;
            }
            Some(b'{' | b'[') | None => return Rest::Unknown,
            Some(_) => at += doc[at..].iter().take_while(|b| !matches!(b, b',' | b'}' | b']')).count(),
        }
    }
    Rest::Unknown
}

/// What [`rest_of`] found.
enum Rest {
    /// The object ends there, with this `type` string after the `data`,
    /// if one.
    End(Option<Range<usize>>),
    Unknown,
}

/// Members [`rest_of`] reads at most: SDKs that write members in name
/// order put only `media_type` between `data` and `type`.
const TYPE_AFTER_MEMBERS: usize = 4;

/// `s == word`, its length compared inline first: the walk asks this of
/// every string (a tool schema has thousands), and most differ in length.
#[inline(always)]
fn is(s: &[u8], word: &[u8]) -> bool {
    s.len() == word.len() && s == word
}

/// A byte of a number literal.
pub(crate) fn number_byte(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
}

/// Reports the number that starts at `at` (before `upto`) to `visit` as a
/// text under `key`, by its longest run of digits (as a detector reads a
/// number in text: a sign or a fraction around it would make it another
/// number to them), if that has [`NUMBER_TEXT_DIGITS`] of them.
#[inline(never)]
fn number(doc: &[u8], at: usize, upto: usize, key: Range<usize>, visit: &mut impl Visit) {
    if visit.whole_numbers() {
        let end = at + doc[at..upto].iter().take_while(|&&b| number_byte(b) || b.is_ascii_alphabetic()).count();
        visit.number(&doc[key.clone()], StringValue { key, raw: at..end, escaped: false, number: true });
        return;
    }
    let end = at + doc[at..upto].iter().take_while(|&&b| number_byte(b)).count();
    // Its longest run of digits: the whole part, or a fraction's
    // (`0.4111111111111111`).
    let mut best = at..at;
    let mut i = at;
    while i < end {
        let run = doc[i..end].iter().take_while(|b| b.is_ascii_digit()).count();
        if run > best.len() {
            best = i..i + run;
        }
        i += run.max(1);
    }
    if best.len() >= NUMBER_TEXT_DIGITS {
        visit.number(&doc[key.clone()], StringValue { key, raw: best, escaped: false, number: true });
    }
}

/// The whole number literal around the digits `raw` that a walk reported
/// ([`StringValue::number`]): its sign, fraction and exponent too.
pub fn number_literal(doc: &[u8], raw: Range<usize>) -> Range<usize> {
    let start = raw.start - doc[..raw.start].iter().rev().take_while(|&&b| number_byte(b)).count();
    let end = raw.end + doc[raw.end..].iter().take_while(|&&b| number_byte(b)).count();
    start..end
}

/// Numbers with fewer digits are no personal data a detector knows (a
/// phone number has seven or more), and are not reported as text.
pub const NUMBER_TEXT_DIGITS: usize = 7;

/// Keys whose number values a tenant chooses and the model reads, outside
/// free-form objects: a JSON schema's listed values.
const NUMBER_TEXT_KEYS: &[&[u8]] = &[b"enum", b"default", b"const", b"examples"];

/// The walk behind [`string_values`] and [`string_texts`]: keys,
/// containers and free-form objects followed here, each string's end
/// found by the visitor (which may decode the string on the way).
///
/// A `data` value is opaque bytes (its key given, for callers to pass
/// over) only in an object that says so: `"type": "base64"` (Anthropic's
/// image and document sources) or `"redacted_thinking"`, before or after
/// it (SDKs that write members in name order put `type` last), or the
/// object under `input_audio` or `audio` (OpenAI's). Anywhere else it is
/// reported as text whatever its key (an empty one): Anthropic's
/// plain-text document source holds the document in `data`, and text made
/// of base64's characters (an API key, digits joined by `-` or `/`) was
/// taken for a file and went unscanned and uncounted.
///
/// Numbers are reported to a visitor that asks ([`Visit::number`]) where
/// the model reads them as text and a tenant chooses them: in free-form
/// objects (a tool call's arguments) and a schema's listed values
/// ([`NUMBER_TEXT_KEYS`]), those with a run of [`NUMBER_TEXT_DIGITS`]
/// digits or more.
/// A card number written as a number there went past the guardrails
/// (found by a review).
fn walk(doc: &[u8], visit: &mut impl Visit) -> Result<(), Malformed> {
    let mut at = 0;
    let mut key = 0..0;
    let mut free = false;
    // The current object said its `data` is base64.
    let mut binary = false;
    // The current object has had a `type`, or a key written with escapes
    // (which may decode to `type`): a second one makes its `data` text,
    // whichever of two `type`s a provider's parser keeps.
    let mut typed = false;
    // The key each open container was a member value of, whether the
    // container around it was free-form, whether it was binary, and typed.
    let mut open: Vec<(Range<usize>, bool, bool, bool)> = Vec::new();
    // Whether the current key is one of NUMBER_TEXT_KEYS: found at the
    // first number after the key is set (a tool schema has a thousand keys,
    // few followed by a number), for a visitor that reads numbers.
    let mut listed: Option<bool> = None;
    let (numbers, names, whole) = (visit.wants_numbers(), visit.wants_names(), visit.whole_numbers());
    loop {
        let next_quote = find_near(b'"', b'"', &doc[at..]).map(|q| at + q);
        // Containers opened and closed, and numbers, between the last
        // string and this one (or the document's end).
        let upto = next_quote.unwrap_or(doc.len());
        for (i, &b) in doc[at..upto].iter().enumerate() {
            match b {
                b'{' | b'[' => {
                    if open.len() == NESTING_MAX {
                        return Err(Malformed("the document nests too deeply"));
                    }
                    open.push((key.clone(), free, binary, typed));
                    typed = false;
                    // A member's value (after its `:`), not an array's element.
                    let member = || doc[..at + i].iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b':');
                    free = free || (free_form(&doc[key.clone()], open.len()) && member());
                    binary = b == b'{' && AUDIO_KEYS.contains(&&doc[key.clone()]) && member();
                }
                b'}' | b']' => {
                    (key, free, binary, typed) = open.pop().unwrap_or((0..0, false, false, false));
                    listed = None;
                }
                // A number's first byte, where numbers are read.
                b'0'..=b'9' | b'-'
                    if numbers
                        && (free || *listed.get_or_insert_with(|| number_text_key(&doc[key.clone()])))
                        && at + i > 0
                        && !number_byte(doc[at + i - 1]) =>
                {
                    number(doc, at + i, upto, if free { 0..0 } else { key.clone() }, visit);
                }
                // A literal's first byte (outside strings, only a literal
                // starts with one), for a count.
                b't' | b'f' | b'n'
                    if whole
                        && (free || *listed.get_or_insert_with(|| number_text_key(&doc[key.clone()])))
                        && at + i > 0
                        && !doc[at + i - 1].is_ascii_alphanumeric() =>
                {
                    number(doc, at + i, upto, if free { 0..0 } else { key.clone() }, visit);
                }
                _ => {}
            }
        }
        let Some(open_quote) = next_quote else { break };
        let data = !free && is(&doc[key.clone()], b"data");
        // A `data` is looked for its end as the object has said so far
        // (a declared file's is not decoded on the way).
        let mut value_key = if free || (data && !binary) { 0..0 } else { key.clone() };
        let (close, escaped) = visit.end(doc, &doc[value_key.clone()], open_quote + 1)?;
        let raw = open_quote + 1..close;
        at = close + 1;
        // Then the rest of its object decides: a file where it said so
        // before and says nothing more, or says so after it (SDKs that
        // write members in name order: `data`, `media_type`, `type`);
        // text where a second `type` could make a parser read otherwise.
        if data {
            let opaque = match rest_of(doc, at) {
                Rest::End(None) => binary,
                Rest::End(Some(t)) => !binary && !typed && opaque(&doc[t]),
                Rest::Unknown => false,
            };
            value_key = if opaque { key.clone() } else { 0..0 };
        }
        let next = doc[at..].iter().position(|b| !b.is_ascii_whitespace()).map(|p| doc[at + p]);
        if next == Some(b':') {
            if names && (free || open.last().is_some_and(|(k, _, _, _)| is(&doc[k.clone()], b"properties"))) {
                visit.name(StringValue { key: 0..0, raw: raw.clone(), escaped, number: false });
            }
            listed = None;
            if escaped {
                (binary, typed) = (false, true);
            }
            key = raw;
        } else {
            if is(&doc[value_key.clone()], b"type") {
                binary = !typed && (binary || opaque(&doc[raw.clone()]));
                typed = true;
            }
            visit.value(&doc[value_key.clone()], StringValue { key: value_key, raw, escaped, number: false });
        }
    }
    Ok(())
}

/// Keys whose object values hold keys of the tenant's choosing: a tool
/// call's arguments as an object (Anthropic's `tool_use.input`),
/// `metadata`, and a Responses prompt template's `variables` (which the
/// provider puts into the prompt: a variable named `type` holding a secret
/// was passed over). Not JSON schemas (`parameters`, `input_schema`): their
/// `type` values are checked by the providers as schema types, and
/// scanning every one cost 19% more on a request of 8 KB of tool schemas
/// (391,366 -> 467,233 instructions); a schema's other structural-named
/// keys (`id`) stay passed over, a known gap (BENCHMARKS.md has the cost).
pub const FREE_FORM: &[&[u8]] = &[b"input", b"metadata", b"variables"];

/// Whether a container that is the value of `key`, opened at nesting
/// `depth` (1: the top-level object, 2: a member of it), is free-form. The
/// Responses API's top-level `input` is its list of items, structure like
/// `messages`; an `input` further down is a tool call's arguments.
fn free_form(key: &[u8], depth: usize) -> bool {
    // Almost every key is written plainly: compared as it is, once.
    if !key.contains(&b'\\') {
        return if key == b"input" { depth > 2 } else { FREE_FORM.contains(&key) };
    }
    // Compared decoded: `"inp\u0075t"` is `input` to the provider.
    if decodes_to(key, b"input") {
        return depth > 2;
    }
    FREE_FORM.iter().any(|word| decodes_to(key, word))
}

/// Whether a key or string value, as written (escapes and all), is `word`
/// once decoded, as the provider reads it: `"\u0069mage_url"` is
/// `image_url`, and a reader that compares raw bytes can be walked past.
pub fn decodes_to(raw: &[u8], word: &[u8]) -> bool {
    // An escape takes more bytes than it writes (two or six for one to
    // three), so a raw text with one is longer than its text, and at most
    // six times as long: most keys are told apart by their length alone,
    // before any search for a backslash (this runs for the key of every
    // object and array, against each free-form word).
    match raw.len().cmp(&word.len()) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => raw == word && !raw.contains(&b'\\'),
        std::cmp::Ordering::Greater => {
            if raw.len() > 6 * word.len() || !raw.contains(&b'\\') {
                return false;
            }
            let mut decoded = Vec::with_capacity(raw.len());
            unescape(raw, &mut decoded).is_ok() && decoded == word
        }
    }
}

/// Whether a string's raw contents are base64 (standard or URL-safe, `/`
/// possibly written `\/`): an inline file, not text. A text document's
/// `data` (words, CJK, any space) is not.
pub fn looks_base64(raw: &[u8]) -> bool {
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' | b'-' | b'_' => i += 1,
            b'\\' if raw.get(i + 1) == Some(&b'/') => i += 2,
            _ => return false,
        }
    }
    !raw.is_empty()
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
    texts(doc, keep, false, false, &mut TextsRoom::default(), |key, v, text, _| f(key, v, text))
}

/// [`string_texts`], and the names the tenant gives keys that the model
/// reads as text (a free-form object's, a JSON schema's `properties`'),
/// with no key: what a prompt's count needs (forty kilobytes of text in a
/// tool schema's property names went uncounted, and a stream cut short
/// billed none of it).
pub fn string_texts_and_names(
    doc: &[u8],
    keep: impl Fn(&[u8], &[u8]) -> bool,
    mut f: impl FnMut(&[u8], StringValue, Result<&[u8], Malformed>),
) -> Result<(), Malformed> {
    texts(doc, keep, false, true, &mut TextsRoom::default(), |key, v, text, _| f(key, v, text))
}

/// [`string_texts`], with each decoded text's escape marks (see
/// [`unescape_marking`]; empty for a text without escapes, and for one
/// longer than [`MARKED_BYTES_MAX`]), so that a
/// caller that changes the text can map its offsets back to the raw
/// string without decoding it again.
///
/// The marks are lent as the walk's own buffer: a caller that keeps them
/// takes them (`std::mem::take`) instead of copying (a 100 KB message of
/// code has thousands).
///
/// Texts are decoded into `room`'s buffers, which keep their capacity for
/// the next walk (a core lends one room to each request it scans, instead
/// of a new decoding buffer and a new reservation of marks per request).
pub fn string_texts_marked(
    doc: &[u8],
    keep: impl Fn(&[u8], &[u8]) -> bool,
    room: &mut TextsRoom,
    f: impl FnMut(&[u8], StringValue, Result<&[u8], Malformed>, &mut Vec<(usize, usize)>),
) -> Result<(), Malformed> {
    texts(doc, keep, true, false, room, f)
}

/// The buffers a walk of texts decodes into: its decoded text and escape
/// marks. Lent to a walk and given back with their room, unless the walk
/// grew them past [`TextsRoom::KEPT_BYTES_MAX`] (a 16 MB body decodes into
/// 16 MB: that is let go, not kept by the core).
#[derive(Default)]
pub struct TextsRoom {
    scratch: Vec<u8>,
    marks: Vec<(usize, usize)>,
}

impl TextsRoom {
    /// The room kept between walks, for each buffer.
    pub const KEPT_BYTES_MAX: usize = 256 * 1024;

    /// The bytes its buffers hold room for.
    pub fn room_bytes(&self) -> usize {
        self.scratch.capacity() + self.marks.capacity() * std::mem::size_of::<(usize, usize)>()
    }

    /// Marks a caller took from the walk ([`string_texts_marked`]'s
    /// `f`), given back for their room once used: the walk's reservation
    /// is then not made again by the next request that redacts.
    pub fn give_marks(&mut self, mut marks: Vec<(usize, usize)>) {
        let fits = marks.capacity() * std::mem::size_of::<(usize, usize)>() <= Self::KEPT_BYTES_MAX;
        if fits && marks.capacity() > self.marks.capacity() {
            marks.clear();
            self.marks = marks;
        }
    }

    fn give_back(&mut self, mut scratch: Vec<u8>, mut marks: Vec<(usize, usize)>) {
        scratch.clear();
        marks.clear();
        if scratch.capacity() <= Self::KEPT_BYTES_MAX {
            self.scratch = scratch;
        }
        if marks.capacity() * std::mem::size_of::<(usize, usize)>() <= Self::KEPT_BYTES_MAX {
            self.marks = marks;
        }
    }
}

/// The longest string [`string_texts_marked`] gives marks for: a long
/// agent prompt (100 KB of code and quoted JSON in one message) gets them,
/// so that redacting it does not decode it a second time (7% of such a
/// request's work). An escape makes two marks of 16 bytes and takes two
/// raw bytes at least, so a string of nothing but escapes makes them 16
/// times its size: at most 4 MiB, for one string
/// at a time, freed with the request.
pub const MARKED_BYTES_MAX: usize = 256 * 1024;

fn texts(
    doc: &[u8],
    keep: impl Fn(&[u8], &[u8]) -> bool,
    marked: bool,
    names: bool,
    room: &mut TextsRoom,
    f: impl FnMut(&[u8], StringValue, Result<&[u8], Malformed>, &mut Vec<(usize, usize)>),
) -> Result<(), Malformed> {
    let (scratch, marks) = (std::mem::take(&mut room.scratch), std::mem::take(&mut room.marks));
    let mut texts = Texts { doc, keep, marked, names, f, scratch, marks, decoded: None, reserved: false };
    let walked = walk(doc, &mut texts);
    room.give_back(texts.scratch, texts.marks);
    walked
}

/// The visitor behind [`texts`]. A string with escapes that the caller
/// keeps is decoded while its end is found, in one pass: finding the end
/// first (a search of every block for quotes and the backslashes that
/// escape them) cost as much as the decoding after it (107,000
/// instructions each for a 100 KB prompt of code).
struct Texts<'d, K, F> {
    doc: &'d [u8],
    keep: K,
    marked: bool,
    /// Names the tenant gives keys ([`Visit::name`]) are texts too, with
    /// no key.
    names: bool,
    f: F,
    /// The decoded text of the last string with escapes.
    scratch: Vec<u8>,
    /// Its marks (with `marked`).
    marks: Vec<(usize, usize)>,
    /// Where the content of the string in `scratch` starts: the text is
    /// that string's only while this says so.
    decoded: Option<usize>,
    /// The marks were reserved once (see `end`).
    reserved: bool,
}

impl<K, F> Visit for Texts<'_, K, F>
where
    K: Fn(&[u8], &[u8]) -> bool,
    F: FnMut(&[u8], StringValue, Result<&[u8], Malformed>, &mut Vec<(usize, usize)>),
{
    fn end(&mut self, doc: &[u8], key: &[u8], from: usize) -> Result<(usize, bool), Malformed> {
        self.decoded = None;
        let rest = &doc[from..];
        // Most strings hold no escape: their first quote ends them.
        let first = find_near(b'"', b'\\', rest).ok_or(Malformed("a string is not terminated"))?;
        if rest[first] == b'"' {
            return Ok((from + first, false));
        }
        // Not kept by what comes before its first escape (an inline
        // file's `data:`): only its end is wanted.
        if !(self.keep)(key, &rest[..first]) {
            return string_end(doc, from);
        }
        self.scratch.clear();
        self.marks.clear();
        // The decoding reserves room for the rest of the document (the
        // string's length is not known before its end): the first such
        // string sizes the scratch for the walk, at most the body's size,
        // and later ones fit in it.
        // The string's length is not known before its end: the first long
        // one's marks are reserved for an escape every 32 bytes of the
        // rest of the document (a prompt of code has one every 40), so
        // that they are not grown by doubling (whose copies cost more
        // than the search for the end saved). Only the first: a caller
        // takes the marks of a text it redacts, and another reservation
        // per redacted string could add up to many times the document.
        if self.marked && !self.reserved && rest.len() > 4096 {
            self.reserved = true;
            self.marks.reserve(rest.len().min(MARKED_BYTES_MAX) / 16);
        }
        let marks = &mut self.marks;
        // Marks only within MARKED_BYTES_MAX of the start, and none for a
        // longer string (below): what they take stays bounded. Where the
        // rest of the document is within the bound, so is every mark, and
        // the decoding is compiled without the test (two marks an escape,
        // an escape every 40 bytes of code).
        let decoded = if !self.marked {
            unescape_until::<true>(rest, &mut self.scratch, |_| {})
        } else if rest.len() <= MARKED_BYTES_MAX {
            unescape_until::<true>(rest, &mut self.scratch, |m| marks.extend_from_slice(&m))
        } else {
            unescape_until::<true>(rest, &mut self.scratch, |m| {
                for (t, r) in m {
                    if r <= MARKED_BYTES_MAX {
                        marks.push((t, r))
                    }
                }
            })
        };
        match decoded {
            Ok(close) => {
                if close > MARKED_BYTES_MAX {
                    self.marks.clear();
                }
                self.decoded = Some(from);
                Ok((from + close, true))
            }
            // A broken escape: the string is decoded again by `value`,
            // which gives the error as a text's (the walk goes on).
            Err(_) => string_end(doc, from),
        }
    }

    // Names and numbers are few; strings are many (thousands in a tool
    // schema): `value` stays inlined in the walk, and these two call a
    // copy of it out of line.
    #[inline(never)]
    fn name(&mut self, v: StringValue) {
        self.value(b"", v);
    }

    #[inline(never)]
    fn number(&mut self, key: &[u8], v: StringValue) {
        self.value(key, v);
    }

    fn wants_numbers(&self) -> bool {
        true
    }

    fn wants_names(&self) -> bool {
        self.names
    }

    // The walk for a count (names) counts every number and literal the
    // model reads (found by a review: a schema's `enum` of 100,000 small
    // numbers counted as nothing, where only numbers of seven digits or
    // more, the guard's, were read).
    fn whole_numbers(&self) -> bool {
        self.names
    }

    #[inline(always)]
    fn value(&mut self, key: &[u8], v: StringValue) {
        let raw = &self.doc[v.raw.clone()];
        if !(self.keep)(key, raw) {
            return;
        }
        let text = if !v.escaped {
            self.marks.clear();
            Ok(raw)
        } else if self.decoded == Some(v.raw.start) {
            Ok(&self.scratch[..])
        } else {
            self.marks.clear();
            self.scratch.clear();
            // Marks for strings up to MARKED_BYTES_MAX. Longer ones get
            // none (a caller then decodes again).
            let decoded = if self.marked && raw.len() <= MARKED_BYTES_MAX {
                unescape_marked(raw, &mut self.scratch, &mut self.marks)
            } else {
                unescape(raw, &mut self.scratch)
            };
            decoded.map(|()| &self.scratch[..])
        };
        (self.f)(key, v, text, &mut self.marks);
    }
}

/// The closing quote of the string whose content starts at `from`, and
/// whether the string holds escapes.
#[inline]
fn string_end(doc: &[u8], from: usize) -> Result<(usize, bool), Malformed> {
    closing_quote(doc, from, false).map(|q| (q.end, q.escapes)).ok_or(Malformed("a string is not terminated"))
}

/// Decodes a string's raw bytes (escapes included) into `out`. A lone
/// surrogate becomes U+FFFD, as browsers and serde_json's lossy mode do.
pub fn unescape(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Malformed> {
    unescape_marking(raw, out, |_| {})
}

/// [`unescape_marking`] with the marks pushed to `marks`: both buffers
/// reserved once for a long string (a decoded text is never longer than
/// its raw form; an escape makes two marks, so a count of backslashes
/// bounds them) rather than grown by doubling, whose copies were 13% of a
/// 100 KB request's work.
pub fn unescape_marked(raw: &[u8], out: &mut Vec<u8>, marks: &mut Vec<(usize, usize)>) -> Result<(), Malformed> {
    out.reserve(raw.len());
    if raw.len() > 4096 {
        marks.reserve(2 * memchr::memchr_iter(b'\\', raw).count());
    }
    unescape_marking(raw, out, |m| marks.extend_from_slice(&m))
}

/// [`unescape`], calling `mark([begins, ends])` for each escape decoded
/// with where it begins and where it ends, each as `(text, raw)`: the
/// offsets in the text written (from where `out` began) and in `raw` (an
/// escape that does not decode gives none). Between two marks, text and
/// raw advance byte for byte, so
/// the marks map any offset of the text that is not inside an escape's
/// output back to `raw` (to redact a string without re-escaping it).
///
/// Thirty-two bytes a step: each step copies its block whole and looks for
/// a backslash in it, so text between escapes (a line of code between two
/// `\n`) costs a few instructions a block, not a search and a copy call
/// per escape (150 instructions an escape before, in a prompt of code).
/// The block's other stops are kept: after an escape the next one in the
/// same block is read from them, not searched for again. A
/// decoded text is never longer than its raw form (an escape of two or six
/// bytes gives at most one or three, a surrogate pair's twelve four), so
/// what is written by the `w`th byte of text has read at least `w` raw
/// bytes: every write, a whole block included, fits in the room of the
/// raw text (a text buffer reserved for a whole body is not grown).
pub fn unescape_marking(raw: &[u8], out: &mut Vec<u8>, mark: impl FnMut([(usize, usize); 2])) -> Result<(), Malformed> {
    unescape_until::<false>(raw, out, mark).map(|_| ())
}

/// [`unescape_marking`]; with `QUOTE`, `raw` runs on past the string (the
/// rest of the document from the string's content) and the decoding stops
/// at its closing quote, the first `"` that is not an escape's, whose
/// index it returns (without `QUOTE`: `raw.len()`). A string's end is
/// then found by the pass that decodes it.
fn unescape_until<const QUOTE: bool>(
    raw: &[u8],
    out: &mut Vec<u8>,
    mark: impl FnMut([(usize, usize); 2]),
) -> Result<usize, Malformed> {
    // (Under a block, the 64-byte decoder would hand it all to the
    // 32-byte one.)
    #[cfg(target_arch = "x86_64")]
    if raw.len() >= 64 && vbmi2() {
        // SAFETY: the CPU has what `unescape_vbmi2` needs (`vbmi2`).
        return unsafe { unescape_vbmi2::<QUOTE>(raw, out, mark) };
    }
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: AVX2 is present (checked just above).
        return unsafe { unescape_avx2::<QUOTE>(raw, out, mark) };
    }
    // SAFETY: `WIDE` is false: no AVX2 instruction runs.
    unsafe { unescape_with::<QUOTE, false>(raw, out, mark) }
}

/// Whether the CPU has AVX-512 with the byte permutes and compresses
/// (F, BW, VBMI, VBMI2) that [`unescape_vbmi2`] decodes with, and the
/// POPCNT and BMI1 it is compiled for, found once.
/// `TOLLGATE_NO_AVX512` set keeps the decoding to AVX2, as it does the
/// guard's anchors.
#[cfg(target_arch = "x86_64")]
fn vbmi2() -> bool {
    static VBMI2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VBMI2.get_or_init(|| {
        // F, BW and `TOLLGATE_NO_AVX512` as for the block masks.
        avx512bw()
            && std::arch::is_x86_feature_detected!("avx512vbmi")
            && std::arch::is_x86_feature_detected!("avx512vbmi2")
            && std::arch::is_x86_feature_detected!("popcnt")
            && std::arch::is_x86_feature_detected!("bmi1")
    })
}

/// [`unescape_until`] 64 bytes a step, where the escapes of a block are
/// decoded together rather than one by one (at 90 instructions an escape,
/// decoding was 15% of the guard's check of a 100 KB prompt of code): the
/// block's escape starts are found from its backslashes (`escaped`), every
/// escaped byte is looked up in one 128-byte table (`"`, `\\`, `/`, `b`,
/// `f`, `n`, `r`, `t` to what they stand for) and put in place, and the
/// backslashes are dropped with one compress. A block that holds a `\u`
/// escape or a broken one is decoded that way up to it; the escape is
/// decoded by [`escape_marked`], as by the other decoders. Within the last
/// 64 bytes, [`unescape_with`] takes over. Gives what [`unescape_with`]
/// gives, marks and errors included.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and VBMI2, AVX2, POPCNT and
/// BMI1 ([`vbmi2`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vbmi2,avx2,popcnt,bmi1")]
unsafe fn unescape_vbmi2<const QUOTE: bool>(
    raw: &[u8],
    out: &mut Vec<u8>,
    mut mark: impl FnMut([(usize, usize); 2]),
) -> Result<usize, Malformed> {
    use std::arch::x86_64::*;
    let base = out.len();
    out.reserve(raw.len());
    // Nothing below grows `out` before it is handed on: the pointer stays
    // valid.
    let dst = out.as_mut_ptr();
    let mut w = base;
    let mut at = 0;
    let (low, high) =
        // SAFETY: 64 bytes at each half of the 128-byte array.
        unsafe { (_mm512_loadu_si512(SIMPLE.as_ptr().cast()), _mm512_loadu_si512(SIMPLE.as_ptr().add(64).cast())) };
    let (slash, quote) = (_mm512_set1_epi8(b'\\' as i8), _mm512_set1_epi8(b'"' as i8));
    while at + 64 <= raw.len() {
        // SAFETY: `at + 64 <= raw.len()`.
        let v = unsafe { _mm512_loadu_si512(raw.as_ptr().add(at).cast()) };
        let backslash = _mm512_cmpeq_epi8_mask(v, slash);
        let quotes = if QUOTE { _mm512_cmpeq_epi8_mask(v, quote) } else { 0 };
        if backslash | quotes == 0 {
            // SAFETY: `w - base <= at` (a decoded text is never longer than
            // its raw form), so `w + 64 <= base + raw.len()`, within the
            // room reserved; `raw` does not overlap `out`.
            unsafe { _mm512_storeu_si512(dst.add(w).cast(), v) };
            at += 64;
            w += 64;
            continue;
        }
        // A block begins outside any escape: no carry into it. A carry out
        // is an escape begun at its last byte.
        let mut carry = 0;
        let escaped_bytes = escaped(backslash, &mut carry);
        let starts = backslash & !escaped_bytes;
        let closing = quotes & !escaped_bytes;
        let decoded = _mm512_permutex2var_epi8(low, v, high);
        // An escaped byte the table has, and ASCII (the table is read by
        // the low seven bits).
        let known = _mm512_test_epi8_mask(decoded, decoded) & !_mm512_movepi8_mask(v);
        let unknown = escaped_bytes & !known;
        // The bytes decoded now: the whole block, most often (a constant
        // step, so that the next block's load need not wait for these
        // masks); else up to the closing quote, short of an escape whose
        // byte is in the next block, short of the first escape the table
        // cannot decode.
        let mut len = 64;
        let mut slow = false;
        if closing | carry | unknown != 0 {
            if closing != 0 {
                len = closing.trailing_zeros();
            }
            if carry != 0 {
                len = len.min(63);
            }
            let unknown = unknown & within(len);
            if unknown != 0 {
                slow = true;
                // Up to the backslash before it.
                len = unknown.trailing_zeros() - 1;
            }
        }
        let take = within(len);
        let starts = starts & take;
        let keep = take & !starts;
        let packed = _mm512_maskz_compress_epi8(keep, _mm512_mask_blend_epi8(escaped_bytes, v, decoded));
        // SAFETY: as above: `w + 64 <= base + raw.len()`.
        unsafe { _mm512_storeu_si512(dst.add(w).cast(), packed) };
        let mut each = starts;
        while each != 0 {
            let p = each.trailing_zeros();
            // The text written before this escape: the bytes before it less
            // the backslashes dropped before it.
            let t = w - base + p as usize - (starts & ((1u64 << p) - 1)).count_ones() as usize;
            let r = at + p as usize;
            mark([(t, r), (t + 1, r + 2)]);
            each &= each - 1;
        }
        w += keep.count_ones() as usize;
        at += len as usize;
        if slow {
            // SAFETY: `raw[at]` is a backslash, and `dst + w` has the room
            // of `raw[at..]` (as above).
            if let Err(e) = unsafe { escape_marked(raw, &mut at, dst, &mut w, base, &mut mark) } {
                // SAFETY: every byte of `base..w` was written.
                unsafe { out.set_len(w) };
                return Err(e);
            }
        } else if QUOTE && len < 64 && raw[at] == b'"' {
            // SAFETY: every byte of `base..w` was written.
            unsafe { out.set_len(w) };
            return Ok(at);
        }
    }
    // SAFETY: every byte of `base..w` was written, within the capacity.
    unsafe { out.set_len(w) };
    // The last bytes: the 32-byte decoder, its marks and end moved to
    // this text's offsets.
    let (text_at, raw_at) = (w - base, at);
    // SAFETY: AVX2 is this function's contract.
    let end = unsafe {
        unescape_with::<QUOTE, true>(&raw[at..], out, |[(t0, r0), (t1, r1)]| {
            mark([(t0 + text_at, r0 + raw_at), (t1 + text_at, r1 + raw_at)])
        })
    }?;
    Ok(end + raw_at)
}

/// [`unescape_with`] compiled for AVX2, so that each block's search is one
/// 32-byte compare (two 16-byte ones and their merge otherwise, called
/// after every escape: 5% of the decoding of a prompt of code).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn unescape_avx2<const QUOTE: bool>(
    raw: &[u8],
    out: &mut Vec<u8>,
    mark: impl FnMut([(usize, usize); 2]),
) -> Result<usize, Malformed> {
    // SAFETY: this function runs only where AVX2 is (its own contract).
    unsafe { unescape_with::<QUOTE, true>(raw, out, mark) }
}

/// The decoding of [`unescape_until`].
///
/// # Safety
/// With `WIDE`, the CPU must have AVX2 (it is inlined into
/// [`unescape_avx2`], compiled for it).
#[inline(always)]
unsafe fn unescape_with<const QUOTE: bool, const WIDE: bool>(
    raw: &[u8],
    out: &mut Vec<u8>,
    mut mark: impl FnMut([(usize, usize); 2]),
) -> Result<usize, Malformed> {
    let base = out.len();
    out.reserve(raw.len());
    // Nothing below grows `out`: the pointer stays valid to the end.
    let dst = out.as_mut_ptr();
    let mut w = base;
    let mut at = 0;
    // The block searched last (`block..block_end`, empty when none) and
    // its stops from `at` on. After an escape the next stop is most often
    // in the same block (an escape every 40 bytes of code): it is read
    // from these bits, not from a search of a block again from the
    // escape's end.
    let (mut block, mut block_end, mut pending) = (0usize, 0usize, 0u32);
    let result = loop {
        // Copy up to the next backslash (with `QUOTE`, or quote).
        pending = if at < block_end { pending & (u32::MAX << (at - block)) } else { 0 };
        if pending != 0 {
            let stop = block + pending.trailing_zeros() as usize;
            // SAFETY: `at <= stop < block_end <= raw.len()`.
            unsafe { copy_within_block(raw, at, stop, dst.add(w)) };
            w += stop - at;
            at = stop;
        } else {
            // The rest of the block holds no stop.
            if at < block_end {
                // SAFETY: `block_end <= raw.len()`.
                unsafe { copy_within_block(raw, at, block_end, dst.add(w)) };
                w += block_end - at;
                at = block_end;
            }
            block_end = 0;
            loop {
                if let Some(b) = raw.get(at..at + BLOCK).and_then(|b| <&[u8; BLOCK]>::try_from(b).ok()) {
                    // SAFETY: `w - base <= at` (see above) and `at + BLOCK
                    // <= raw.len()`, so `w + BLOCK <= base + raw.len()`,
                    // within the capacity reserved; `b` is in `raw`, which
                    // does not overlap `out`.
                    unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), dst.add(w), BLOCK) };
                    // SAFETY: `WIDE` only where AVX2 is (this function's contract).
                    let found = unsafe { stops::<QUOTE, WIDE>(b) };
                    if found == 0 {
                        at += BLOCK;
                        w += BLOCK;
                        continue;
                    }
                    (block, block_end, pending) = (at, at + BLOCK, found);
                    let p = found.trailing_zeros() as usize;
                    at += p;
                    w += p;
                    break;
                }
                let rest = &raw[at..];
                let stop = if QUOTE { memchr::memchr2(b'\\', b'"', rest) } else { memchr::memchr(b'\\', rest) };
                let p = stop.unwrap_or(rest.len());
                // SAFETY: as above, with `at + p <= raw.len()`.
                unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr(), dst.add(w), p) };
                at += p;
                w += p;
                break;
            }
            if at == raw.len() {
                break if QUOTE { Err(Malformed("a string is not terminated")) } else { Ok(raw.len()) };
            }
        }
        // The closing quote (a quote an escape writes is read with its
        // backslash below, never here).
        if QUOTE && raw[at] == b'"' {
            break Ok(at);
        }
        // SAFETY: `raw[at]` is a backslash, and `dst + w` has the room of
        // `raw[at..]` (see above).
        if let Err(e) = unsafe { escape_marked(raw, &mut at, dst, &mut w, base, &mut mark) } {
            break Err(e);
        }
    };
    // SAFETY: every byte of `base..w` was written above, within the
    // capacity. What was decoded before an error stays, as it always has (a
    // stream's answer keeps the text before a broken escape).
    unsafe { out.set_len(w) };
    result
}

/// What each escaped ASCII byte stands for in a two-byte escape; zero for
/// none (`u`, or a byte that escapes nothing). The 64-byte decoder reads
/// it by a byte's low seven bits.
const SIMPLE: [u8; 128] = {
    let mut t = [0u8; 128];
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[b'/' as usize] = b'/';
    t[b'b' as usize] = 8;
    t[b'f' as usize] = 12;
    t[b'n' as usize] = b'\n';
    t[b'r' as usize] = b'\r';
    t[b't' as usize] = b'\t';
    t
};

/// The bits of a block's first `len` bytes (`len <= 64`).
#[inline(always)]
fn within(len: u32) -> u64 {
    if len == 64 {
        u64::MAX
    } else {
        (1u64 << len) - 1
    }
}

/// Decodes the escape that begins at `raw[*at]` (a backslash) to `dst +
/// *w`, moves both past it, and gives its marks (`base`: where the text
/// began in `dst`) in one call. A two-byte escape (nearly all of them) is
/// decoded here by table, the others by [`decode_escape`]: called for
/// every escape, the decoding took 11 instructions an escape more. Every
/// escape a decoder does not decode in bulk comes here.
///
/// # Safety
/// `dst + *w` must be valid for writing `raw.len() - *at` bytes, and not
/// overlap `raw`.
#[inline(always)]
unsafe fn escape_marked(
    raw: &[u8],
    at: &mut usize,
    dst: *mut u8,
    w: &mut usize,
    base: usize,
    mark: &mut impl FnMut([(usize, usize); 2]),
) -> Result<(), Malformed> {
    let begun = (*w - base, *at);
    let simple = raw.get(*at + 1).map_or(0, |&c| SIMPLE.get(c as usize).copied().unwrap_or(0));
    let (read, written) = if simple != 0 {
        // SAFETY: one byte from the two raw ones read: within the room.
        unsafe { dst.add(*w).write(simple) };
        (2, 1)
    } else {
        // SAFETY: the caller's promise.
        unsafe { decode_escape(raw, *at, dst.add(*w))? }
    };
    *at += read;
    *w += written;
    mark([begun, (*w - base, *at)]);
    Ok(())
}

/// Decodes an escape that begins at `raw[at]` (a backslash) and is not a
/// two-byte one of [`SIMPLE`]: a `\u` escape (one, or a surrogate pair)
/// to `dst`, else the error. How many raw bytes it took and how many it
/// wrote (three from six at most, four from twelve).
///
/// # Safety
/// `dst` must be valid for writing `raw.len() - at` bytes, and not overlap
/// `raw`.
#[inline(always)]
unsafe fn decode_escape(raw: &[u8], at: usize, dst: *mut u8) -> Result<(usize, usize), Malformed> {
    let Some(&c) = raw.get(at + 1) else { return Err(Malformed("a string ends in an escape")) };
    match c {
        b'u' => {
            let hi = hex4(raw, at + 2)?;
            let mut read = 6;
            let c = if (0xD800..0xDC00).contains(&hi) && raw.get(at + 6..at + 8) == Some(b"\\u") {
                let lo = hex4(raw, at + 8)?;
                if (0xDC00..0xE000).contains(&lo) {
                    read = 12;
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                } else {
                    None
                }
            } else {
                char::from_u32(hi)
            };
            let mut buf = [0u8; 4];
            let bytes = c.unwrap_or('\u{FFFD}').encode_utf8(&mut buf).as_bytes();
            // SAFETY: at most three bytes from the six raw ones read (four
            // from twelve): within the caller's room.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
            Ok((read, bytes.len()))
        }
        _ => Err(Malformed("unknown escape in a string")),
    }
}

/// The block [`unescape_marking`] copies and searches at a time.
const BLOCK: usize = 32;

/// Copies `raw[from..to]` (at most a block) to `dst`: a whole block's
/// width where `raw` has it (one load and store; what it writes past
/// `to - from` is written over later or cut off by the length set at the
/// end), else the bytes alone.
///
/// # Safety
/// `from <= to <= raw.len()`, `to - from <= BLOCK`, and `dst` valid for
/// writing `raw.len() - from` bytes, not overlapping `raw`.
#[inline(always)]
unsafe fn copy_within_block(raw: &[u8], from: usize, to: usize, dst: *mut u8) {
    debug_assert!(from <= to && to <= raw.len() && to - from <= BLOCK);
    if from + BLOCK <= raw.len() {
        // SAFETY: `from + BLOCK <= raw.len()`, and `dst` has room for
        // `raw.len() - from >= BLOCK` bytes (the caller's promise).
        unsafe {
            let block = raw.as_ptr().add(from).cast::<[u8; BLOCK]>().read_unaligned();
            dst.cast::<[u8; BLOCK]>().write_unaligned(block);
        }
    } else {
        // SAFETY: the caller's promise, as above.
        unsafe { copy_near_end(raw, from, to, dst) };
    }
}

/// [`copy_within_block`] within a block of the raw text's end.
///
/// # Safety
/// As [`copy_within_block`]'s.
#[cold]
#[inline(never)]
unsafe fn copy_near_end(raw: &[u8], from: usize, to: usize, dst: *mut u8) {
    // SAFETY: `to <= raw.len()` and `to - from <= raw.len() - from`.
    unsafe { std::ptr::copy_nonoverlapping(raw.as_ptr().add(from), dst, to - from) };
}

/// A bit per backslash among the 32 bytes, and with `QUOTE` per quote.
///
/// # Safety
/// With `WIDE`, the CPU must have AVX2 (and the caller is compiled for
/// it, for the compares to be inlined).
#[inline(always)]
unsafe fn stops<const QUOTE: bool, const WIDE: bool>(block: &[u8; BLOCK]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if WIDE {
        use std::arch::x86_64::*;
        // SAFETY: AVX2 is the caller's promise; one unaligned 32-byte
        // load of the array.
        unsafe {
            let v = _mm256_loadu_si256(block.as_ptr().cast());
            let mut found = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8));
            if QUOTE {
                found = _mm256_or_si256(found, _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'"' as i8)));
            }
            return _mm256_movemask_epi8(found) as u32;
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86_64 baseline; two unaligned
        // 16-byte loads inside the 32-byte array.
        unsafe {
            let slash = _mm_set1_epi8(b'\\' as i8);
            let a = _mm_loadu_si128(block.as_ptr().cast());
            let b = _mm_loadu_si128(block.as_ptr().add(16).cast());
            let (mut sa, mut sb) = (_mm_cmpeq_epi8(a, slash), _mm_cmpeq_epi8(b, slash));
            if QUOTE {
                let quote = _mm_set1_epi8(b'"' as i8);
                sa = _mm_or_si128(sa, _mm_cmpeq_epi8(a, quote));
                sb = _mm_or_si128(sb, _mm_cmpeq_epi8(b, quote));
            }
            let lo = _mm_movemask_epi8(sa) as u32;
            let hi = _mm_movemask_epi8(sb) as u32;
            lo | hi << 16
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        block.iter().enumerate().fold(0, |m, (i, &b)| m | u32::from(b == b'\\' || (QUOTE && b == b'"')) << i)
    }
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

/// The 64 bytes at `at`, in place, or the tail copied into `pad` (spaces:
/// neither quote, backslash, bracket nor control byte).
#[inline]
fn block_at<'a>(buf: &'a [u8], at: usize, pad: &'a mut [u8; 64]) -> &'a [u8; 64] {
    match buf.get(at..at + 64).and_then(|b| <&[u8; 64]>::try_from(b).ok()) {
        Some(b) => b,
        None => {
            let tail = &buf[at.min(buf.len())..];
            *pad = [b' '; 64];
            pad[..tail.len()].copy_from_slice(tail);
            pad
        }
    }
}

/// Where a string ends, and what it holds before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closing {
    /// The index of the closing quote.
    pub end: usize,
    /// A raw control byte (below 0x20) comes before it.
    pub control: bool,
    /// A backslash does.
    pub escapes: bool,
}

/// Where the string whose content starts at `from` ends: its closing quote
/// (the first `"` no backslash escapes), and what comes before it; `None`
/// when no quote closes it. Control bytes before the first backslash are
/// looked for only with `check_control` (the masks find later ones anyway). Sixty-four bytes a step: masks of quotes, backslashes and control
/// bytes, and the escaped positions from the backslash mask by carry
/// arithmetic ([`escaped`]), so that a string full of escapes (a system
/// prompt's `\n`s, a tool schema's `\"`s) costs what a plain one does,
/// instead of a search restarted at every backslash.
#[inline]
pub fn closing_quote(buf: &[u8], from: usize, check_control: bool) -> Option<Closing> {
    // Most strings hold no escape: one search for the first quote or
    // backslash ends them (a key, a role, a sentence). Only from the first
    // backslash on are blocks and masks worth their setting up.
    let rest = buf.get(from..)?;
    let first = find_near(b'"', b'\\', rest)?;
    let control_seen = check_control && has_control_byte(&rest[..first]);
    if rest[first] == b'"' {
        return Some(Closing { end: from + first, control: control_seen, escapes: false });
    }
    closing_quote_escaped(buf, from + first, control_seen)
}

/// [`closing_quote`] from the string's first backslash at `at` on (so no
/// escape carries into its block), 64 bytes a step.
#[inline(never)]
fn closing_quote_escaped(buf: &[u8], at: usize, control_seen: bool) -> Option<Closing> {
    // The mask pass is chosen once and the loop built for each: chosen in
    // every block, it cost 7 instructions a block. (`skip_visiting` calls
    // its pass through a pointer instead, one loop for all; here, through
    // the pointer, the 8 KB and 100 KB prompts' scans took 3 to 4% longer
    // with AVX-512: criterion `chat_scan`, 7 alternated rounds.)
    match lanes() {
        Lanes::Avx512 => closing_quote_blocks(buf, at, control_seen, Lanes::Avx512),
        Lanes::Avx2 => closing_quote_blocks(buf, at, control_seen, Lanes::Avx2),
        Lanes::Narrow => closing_quote_blocks(buf, at, control_seen, Lanes::Narrow),
    }
}

/// [`closing_quote_escaped`]'s loop, with one mask pass.
#[inline(always)]
fn closing_quote_blocks(buf: &[u8], mut at: usize, control_seen: bool, lanes: Lanes) -> Option<Closing> {
    let mut carry = 0u64;
    let (mut control_seen, mut escapes_seen) = (control_seen, true);
    let mut pad = [0u8; 64];
    while at < buf.len() {
        let Masks { quote, backslash, control, .. } = masks::<false>(block_at(buf, at, &mut pad), lanes);
        let closing = quote & !escaped(backslash, &mut carry);
        if closing != 0 {
            let end = closing.trailing_zeros();
            let before = (1u64 << end) - 1;
            return Some(Closing {
                end: at + end as usize,
                control: control_seen || control & before != 0,
                escapes: escapes_seen || backslash & before != 0,
            });
        }
        // No quote closes the string in this block: its control bytes and
        // backslashes are all inside it.
        control_seen |= control != 0;
        escapes_seen |= backslash != 0;
        at += 64;
    }
    None
}

/// How an object or array ends: the index just past its closing bracket,
/// and whether a raw control byte sits inside one of its strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub end: usize,
    pub control: bool,
}

/// Why a nested value could not be skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipError {
    /// Brackets that do not match, or no end.
    Malformed,
    /// More than `depth_max` levels.
    TooDeep,
}

/// Brackets whose kind is checked against their opening one; deeper ones
/// are only counted (a request never gets there: its `depth_max` is this).
const MATCHED_DEPTH: usize = 128;

/// Skips the object or array that opens at `start` (a `{` or `[`), 64
/// bytes a step: the strings' extent from the unescaped quotes by a prefix
/// XOR, so that only the brackets outside strings are looked at one by one
/// (a tool list's or a conversation's 80 KB in a few thousand steps,
/// instead of a call per string and a step per byte between them).
pub fn skip_nested(buf: &[u8], start: usize, depth_max: usize) -> Result<Skipped, SkipError> {
    skip_visiting::<false>(buf, start, depth_max, 0, |_, _| ())
}

/// [`skip_nested`], calling `visit` with the index of the opening quote of
/// every string at `depth` (1 for the strings directly in the value that
/// opens at `start`, 2 for those in its elements' or members' values, and
/// so on), in order, and whether a string near it at that depth may hold
/// a backslash (when false, none of them does: a string whose text begins
/// at the quote is as written): the route's scan reads the keys of a
/// `tools` array's elements in the same pass that skips it.
pub fn skip_nested_visiting(
    buf: &[u8],
    start: usize,
    depth_max: usize,
    depth: usize,
    visit: impl FnMut(usize, bool),
) -> Result<Skipped, SkipError> {
    skip_visiting::<true>(buf, start, depth_max, depth, visit)
}

/// The opening quotes among bits `from..to` of a block at `at`, each
/// visited with whether a backslash stands in a string among those bits.
/// The visits are out of line: inlined, the skip's loop cost the tools of
/// an 8 KB body of schemas (12 tools, 5 KB) 1,600 instructions more.
#[inline(always)]
fn visit_between(opens: u64, escapes: u64, from: usize, to: usize, at: usize, visit: &mut impl FnMut(usize, bool)) {
    let below = |n: usize| if n >= 64 { !0u64 } else { (1u64 << n) - 1 };
    let range = below(to) & !below(from);
    if opens & range != 0 {
        visit_opens(opens & range, escapes & range != 0, at, visit);
    }
}

#[inline(never)]
fn visit_opens(mut here: u64, escaped: bool, at: usize, visit: &mut dyn FnMut(usize, bool)) {
    while here != 0 {
        visit(at + here.trailing_zeros() as usize, escaped);
        here &= here - 1;
    }
}

#[inline(always)]
fn skip_visiting<const VISIT: bool>(
    buf: &[u8],
    start: usize,
    depth_max: usize,
    visit_depth: usize,
    mut visit: impl FnMut(usize, bool),
) -> Result<Skipped, SkipError> {
    let mut stack = [0u8; MATCHED_DEPTH];
    let mut depth = 0usize;
    let (mut carry, mut inside_carry, mut control_seen) = (0u64, 0u64, false);
    let mut at = start;
    // The mask pass, chosen once (a choice in every block cost 7
    // instructions a block), and called through a pointer: a loop built for
    // each pass, as `closing_quote_escaped` has, would be this long walk
    // three times over.
    let (mut pad, masks_of) = ([0u8; 64], masks_pass::<true>());
    while at < buf.len() {
        let block = block_at(buf, at, &mut pad);
        // SAFETY: `masks_pass` gave a pass this CPU has.
        let Masks { quote, backslash, control, bracket } = unsafe { masks_of(block) };
        let quotes = quote & !escaped(backslash, &mut carry);
        let inside = prefix_xor(quotes) ^ inside_carry;
        inside_carry = 0u64.wrapping_sub(inside >> 63);
        // A backslash outside a string is not JSON (and would make the
        // quote after it look escaped).
        let stray = backslash & !inside;
        let mut brackets = bracket & !inside;
        // A string's opening quote is the one quote its own `inside` bit
        // is set at. With VISIT, those from where the depth became
        // `visit_depth` (`from`) to where it leaves it are visited, told
        // whether a backslash stands in a string of that stretch.
        // A string still open at the block's end may hold one in the next.
        let (opens, escapes) = if VISIT { (quotes & inside, backslash & inside | inside & 1 << 63) } else { (0, 0) };
        let mut from = 0;
        while brackets != 0 {
            let i = brackets.trailing_zeros() as usize;
            brackets &= brackets - 1;
            match block[i] {
                open @ (b'{' | b'[') => {
                    if depth == depth_max {
                        return Err(SkipError::TooDeep);
                    }
                    if let Some(slot) = stack.get_mut(depth) {
                        *slot = if open == b'{' { b'}' } else { b']' };
                    }
                    if VISIT && depth == visit_depth {
                        visit_between(opens, escapes, from, i, at, &mut visit);
                    }
                    depth += 1;
                    if VISIT && depth == visit_depth {
                        from = i + 1;
                    }
                }
                close => {
                    if depth == 0 || stack.get(depth - 1).is_some_and(|&want| want != close) {
                        return Err(SkipError::Malformed);
                    }
                    if VISIT && depth == visit_depth {
                        visit_between(opens, escapes, from, i, at, &mut visit);
                    }
                    depth -= 1;
                    if VISIT && depth == visit_depth {
                        from = i + 1;
                    }
                    if depth == 0 {
                        let before = if i == 63 { !0 } else { (1u64 << (i + 1)) - 1 };
                        if stray & before != 0 {
                            return Err(SkipError::Malformed);
                        }
                        return Ok(Skipped {
                            end: at + i + 1,
                            control: control_seen || control & inside & before != 0,
                        });
                    }
                }
            }
        }
        if VISIT && depth == visit_depth {
            visit_between(opens, escapes, from, 64, at, &mut visit);
        }
        if stray != 0 {
            return Err(SkipError::Malformed);
        }
        control_seen |= control & inside != 0;
        at += 64;
    }
    Err(SkipError::Malformed)
}

/// Each bit the XOR of the bits up to it: set from an opening quote up to
/// (not including) its closing one.
#[inline]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// The positions of 64 bytes that are escaped: the byte after an odd run
/// of backslashes. `carry` says whether the block before ended inside an
/// escape (and is set for the next). Runs that start on even and odd
/// positions are told apart by adding each run's start to the run: the sum
/// carries out of an odd-length run one bit past its end (simdjson's
/// method).
#[inline]
fn escaped(backslash: u64, carry: &mut u64) -> u64 {
    const EVEN: u64 = 0x5555_5555_5555_5555;
    // A backslash escaped by the previous block's last one escapes nothing.
    let backslash = backslash & !*carry;
    let follows = (backslash << 1) | *carry;
    let odd_starts = backslash & !EVEN & !follows;
    let (sum, overflow) = odd_starts.overflowing_add(backslash);
    *carry = u64::from(overflow);
    let invert = sum << 1;
    (EVEN ^ invert) & follows
}

/// Bit masks of a 64-byte block: quotes, backslashes, control bytes, and
/// (with `BRACKETS`) brackets.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Masks {
    quote: u64,
    backslash: u64,
    control: u64,
    bracket: u64,
}

/// Whether the CPU compares 32 bytes at once (AVX2), asked once per scan.
#[inline]
fn wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The widest compare [`masks`] has on this CPU, asked once per scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Lanes {
    /// SSE2 (every x86_64), or the byte loop elsewhere.
    Narrow,
    Avx2,
    /// AVX-512 BW: one compare into a mask register for each kind of byte.
    Avx512,
}

#[inline]
fn lanes() -> Lanes {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512bw() {
            return Lanes::Avx512;
        }
    }
    if wide() {
        Lanes::Avx2
    } else {
        Lanes::Narrow
    }
}

/// Whether the CPU has AVX-512 F and BW, found once; `TOLLGATE_NO_AVX512`
/// set keeps the block masks to AVX2, as it does the decoding.
#[cfg(target_arch = "x86_64")]
fn avx512bw() -> bool {
    static AVX512BW: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX512BW.get_or_init(|| {
        wide()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::env::var_os("TOLLGATE_NO_AVX512").is_none()
    })
}

#[inline]
fn masks<const BRACKETS: bool>(block: &[u8; 64], lanes: Lanes) -> Masks {
    #[cfg(target_arch = "x86_64")]
    {
        match lanes {
            // SAFETY: `lanes` says the CPU has AVX-512 F and BW ([`lanes`]).
            Lanes::Avx512 => unsafe { masks_avx512::<BRACKETS>(block) },
            // SAFETY: `lanes` says the CPU has AVX2 ([`lanes`]).
            Lanes::Avx2 => unsafe { masks_avx2::<BRACKETS>(block) },
            // SAFETY: SSE2 is part of the x86_64 baseline.
            Lanes::Narrow => unsafe { masks_sse2::<BRACKETS>(block) },
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = lanes;
        masks_bytes::<BRACKETS>(block)
    }
}

/// [`masks`]' pass for this CPU, to call for each block.
fn masks_pass<const BRACKETS: bool>() -> unsafe fn(&[u8; 64]) -> Masks {
    #[cfg(target_arch = "x86_64")]
    {
        match lanes() {
            Lanes::Avx512 => masks_avx512::<BRACKETS>,
            Lanes::Avx2 => masks_avx2::<BRACKETS>,
            Lanes::Narrow => masks_sse2::<BRACKETS>,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        masks_bytes::<BRACKETS>
    }
}

/// [`masks`] a byte at a time: what the vector passes give.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn masks_bytes<const BRACKETS: bool>(block: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (i, &x) in block.iter().enumerate() {
        m.quote |= u64::from(x == b'"') << i;
        m.backslash |= u64::from(x == b'\\') << i;
        m.control |= u64::from(x < 0x20) << i;
        if BRACKETS {
            m.bracket |= u64::from(matches!(x, b'{' | b'}' | b'[' | b']')) << i;
        }
    }
    m
}

/// [`masks`] 64 bytes a compare, each straight into a mask register: the
/// AVX2 pass's two halves, six moves out of vector registers and their
/// shifts were most of a long string's end search (a 100 KB prompt's
/// string is 1,600 blocks, in the field scan and in the guard's walk).
///
/// # Safety
/// The CPU must have AVX-512 F and BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn masks_avx512<const BRACKETS: bool>(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::*;
    // SAFETY: an unaligned load of exactly the 64 bytes of `block`.
    let v = unsafe { _mm512_loadu_si512(block.as_ptr().cast()) };
    let mut m = Masks {
        quote: _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b'"' as i8)),
        backslash: _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b'\\' as i8)),
        control: _mm512_cmple_epu8_mask(v, _mm512_set1_epi8(0x1f)),
        bracket: 0,
    };
    if BRACKETS {
        // As in `masks_avx2`: with bit 0x20 cleared, a bracket is 0x5b or 0x5d.
        let folded = _mm512_and_si512(v, _mm512_set1_epi8(!0x20u8 as i8));
        m.bracket = _mm512_cmpeq_epi8_mask(folded, _mm512_set1_epi8(0x5b))
            | _mm512_cmpeq_epi8_mask(folded, _mm512_set1_epi8(0x5d));
    }
    m
}

/// [`masks`] 32 bytes a compare.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn masks_avx2<const BRACKETS: bool>(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::*;
    let mut m = Masks::default();
    for (i, chunk) in block.chunks_exact(32).enumerate() {
        let shift = 32 * i;
        // SAFETY: an unaligned load of exactly the 32 bytes of `chunk`.
        let v = unsafe { _mm256_loadu_si256(chunk.as_ptr().cast()) };
        let bits = |x: __m256i| u64::from(_mm256_movemask_epi8(x) as u32) << shift;
        m.quote |= bits(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'"' as i8)));
        m.backslash |= bits(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8)));
        // A byte is below 0x20 when max(byte, 0x1f) is 0x1f.
        let low = _mm256_set1_epi8(0x1f);
        m.control |= bits(_mm256_cmpeq_epi8(_mm256_max_epu8(v, low), low));
        if BRACKETS {
            // `{` `}` `[` `]` are 0x7b 0x7d 0x5b 0x5d: with bit 0x20
            // cleared, 0x5b or 0x5d (and nothing else is).
            let folded = _mm256_and_si256(v, _mm256_set1_epi8(!0x20u8 as i8));
            let hit = _mm256_or_si256(
                _mm256_cmpeq_epi8(folded, _mm256_set1_epi8(0x5b)),
                _mm256_cmpeq_epi8(folded, _mm256_set1_epi8(0x5d)),
            );
            m.bracket |= bits(hit);
        }
    }
    m
}

/// [`masks`] 16 bytes a compare.
///
/// # Safety
/// The CPU must have SSE2 (every x86_64 does).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
unsafe fn masks_sse2<const BRACKETS: bool>(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::*;
    let mut m = Masks::default();
    for (i, chunk) in block.chunks_exact(16).enumerate() {
        let shift = 16 * i;
        // SAFETY: an unaligned load of exactly the 16 bytes of `chunk`.
        let v = unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) };
        let bits = |x: __m128i| u64::from(_mm_movemask_epi8(x) as u16) << shift;
        m.quote |= bits(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)));
        m.backslash |= bits(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8)));
        let low = _mm_set1_epi8(0x1f);
        m.control |= bits(_mm_cmpeq_epi8(_mm_max_epu8(v, low), low));
        if BRACKETS {
            let folded = _mm_and_si128(v, _mm_set1_epi8(!0x20u8 as i8));
            let hit =
                _mm_or_si128(_mm_cmpeq_epi8(folded, _mm_set1_epi8(0x5b)), _mm_cmpeq_epi8(folded, _mm_set1_epi8(0x5d)));
            m.bracket |= bits(hit);
        }
    }
    m
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

    /// Many `data` members in one object, none typed, each followed by
    /// the rest: each one's lookahead reads a few members, not the rest of
    /// the object (read whole, this body took about 5 * 10^9 member
    /// steps: hours, where it now takes a blink), and each is text.
    #[test]
    fn many_data_members_are_read_a_few_members_ahead() {
        let doc = format!("{{{}\"end\":1}}", "\"data\":\"x\",".repeat(100_000));
        let mut texts = 0;
        string_texts(doc.as_bytes(), |k, _| k.is_empty(), |_, _, _| texts += 1).unwrap();
        assert_eq!(texts, 100_000);
    }

    /// Long numbers where a tenant chooses them and the model reads them
    /// (free-form objects, a schema's listed values, the document's end
    /// included) are reported by their longest run of digits, and
    /// `number_literal` gives the literal around them; settings are not.
    #[test]
    fn numbers_the_model_reads_are_texts() {
        let doc = r#"{"seed":12345678,"tools":[{"parameters":{"properties":{"c":{"enum":[1, -2345678.5e3],"minimum":3456789}}}}],"input":{"k":{"n":[4567890123]}},"metadata":{"m":5678901}}"#;
        let mut numbers = Vec::new();
        string_texts(
            doc.as_bytes(),
            |_, _| true,
            |key, v, text| {
                if v.number {
                    let literal = &doc[number_literal(doc.as_bytes(), v.raw.clone())];
                    numbers.push((
                        String::from_utf8_lossy(key).into_owned(),
                        String::from_utf8_lossy(text.unwrap()).into_owned(),
                        literal.to_string(),
                    ));
                }
            },
        )
        .unwrap();
        let want = [("enum", "2345678", "-2345678.5e3"), ("", "5678901", "5678901")];
        assert_eq!(numbers.len(), 2, "{numbers:?}");
        for (got, want) in numbers.iter().zip(want) {
            assert_eq!((got.0.as_str(), got.1.as_str(), got.2.as_str()), want);
        }
        // A tool call's arguments deeper down are free-form.
        let call = r#"{"messages":[{"content":[{"type":"tool_use","input":{"card":4111111111111111}}]}]}"#;
        let mut found = Vec::new();
        string_texts(call.as_bytes(), |_, _| true, |_, v, t| found.push((v.number, t.unwrap().to_vec()))).unwrap();
        assert!(found.contains(&(true, b"4111111111111111".to_vec())), "{found:?}");
    }

    /// The names a tenant gives keys that the model reads (a schema's
    /// `properties`, a free-form object's members) are reported to a walk
    /// that asks for them, with no key, and no other key is.
    #[test]
    fn names_are_reported_where_the_tenant_chooses_them() {
        let doc = r#"{"type":"object","properties":{"city name":{"type":"string","description":"d"},"zip":{}},"x":{"input":{"a b":1,"c":{"d e":"v"}}},"metadata":{"k":"v"}}"#;
        let mut names = Vec::new();
        string_texts_and_names(
            doc.as_bytes(),
            |_, _| true,
            |key, v, _| {
                if key.is_empty()
                    && doc.as_bytes()[v.raw.end + 1..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':')
                {
                    names.push(String::from_utf8_lossy(&doc.as_bytes()[v.raw]).into_owned());
                }
            },
        )
        .unwrap();
        assert_eq!(names, ["city name", "zip", "a b", "c", "d e", "k"]);
        let mut texts = 0;
        string_texts(doc.as_bytes(), |_, _| true, |_, _, _| texts += 1).unwrap();
        let mut with_names = 0;
        string_texts_and_names(doc.as_bytes(), |_, _| true, |_, _, _| with_names += 1).unwrap();
        // The six names, and the count's short number `1` (under `input`).
        assert_eq!(with_names, texts + 6 + 1);
    }

    /// A `data` value keeps its key (opaque bytes, for callers to pass
    /// over) only where its object says `"type":"base64"` or
    /// `"redacted_thinking"`, before or after it, or is `input_audio` or
    /// `audio`; elsewhere it is text, reported with no key. Nested objects
    /// and arrays neither inherit nor leak the object's word.
    #[test]
    fn data_is_a_file_only_where_its_object_says_so() {
        let keys = |doc: &str| {
            let mut out = Vec::new();
            string_texts(
                doc.as_bytes(),
                |_, _| true,
                |key, v, _| {
                    if &doc.as_bytes()[v.raw.clone()] == b"D" {
                        out.push(String::from_utf8_lossy(key).into_owned());
                    }
                },
            )
            .unwrap();
            out
        };
        let cases = [
            (r#"{"source":{"type":"base64","media_type":"image/png","data":"D"}}"#, vec!["data"]),
            (r#"{"source":{"type" : "base64","data":"D","x":{"data":"D"},"y":["D"]}}"#, vec!["", "", "y"]),
            (r#"{"source":{"type" : "base64","x":{"data":"D"},"data":"D"}}"#, vec!["", "data"]),
            (r#"{"source":{"type":"text","media_type":"text/plain","data":"D"}}"#, vec![""]),
            (r#"{"source":{"data":"D","type":"base64"}}"#, vec!["data"]),
            (r#"{"source":{"data":"D" , "media_type":"image/png", "n":7,"type" : "base64"}}"#, vec!["data"]),
            (r#"{"source":{"data":"D","type":"text"}}"#, vec![""]),
            (r#"{"source":{"data":"D","n":{"type":"base64"}}}"#, vec![""]),
            (r#"{"type":"redacted_thinking","data":"D"}"#, vec!["data"]),
            (r#"{"data":"D","type":"redacted_thinking"}"#, vec!["data"]),
            (r#"{"message":{"audio":{"id":"a","data":"D","transcript":"t"}}}"#, vec!["data"]),
            // Two `type`s, or a key that may decode to one: text, whichever
            // a parser keeps.
            (r#"{"type":"base64","type":"text","data":"D"}"#, vec![""]),
            (r#"{"type":"base64","data":"D","type":"text"}"#, vec![""]),
            (r#"{"type":"base64","data":"D","a":1,"b":2,"c":3,"d":4}"#, vec![""]),
            (r#"{"type":"base64","data":"D","media_type":"image/png"}"#, vec!["data"]),
            (r#"{"type":"text","type":"base64","data":"D"}"#, vec![""]),
            (r#"{"data":"D","type":"base64","type":"text"}"#, vec![""]),
            (r#"{"type":"base64","\u0074ype":"text","data":"D"}"#, vec![""]),
            (r#"{"data":"D","\u0074ype":"text","type":"base64"}"#, vec![""]),
            // Too far, or past a container: text.
            (r#"{"data":"D","a":1,"b":2,"c":3,"d":4,"type":"base64"}"#, vec![""]),
            (r#"{"data":"D","a":{},"type":"base64"}"#, vec![""]),
            (r#"{"source":{"media_type":"application/pdf","data":"D"}}"#, vec![""]),
            (r#"{"content":[{"type":"input_audio","input_audio":{"data":"D","format":"wav"}}]}"#, vec!["data"]),
            (r#"{"input_audio":[{"data":"D"}],"a":{"type":"base64"},"data":"D"}"#, vec!["", ""]),
        ];
        for (doc, want) in cases {
            assert_eq!(keys(doc), want, "{doc}");
        }
    }

    /// Every block-mask pass the CPU has gives the byte loop's masks, with
    /// and without brackets, over blocks crowded with the bytes they look
    /// for and their neighbours: `\x1f` and `\x20`, brackets with bit 0x20
    /// or a high bit changed (`[` and `{`, 0xdb, 0xfd, 0xbb), bytes above
    /// 0x7f; a quarter of the bytes are random.
    #[test]
    fn every_masks_pass_is_the_byte_loop() {
        const BYTES: &[u8] = b"\"\\{}[]\x00\x1f\x20\x21\x7f\x80\xbb\xdb\xfd\xff;:a0";
        let mut passes = vec![Lanes::Narrow];
        if wide() {
            passes.push(Lanes::Avx2);
        }
        #[cfg(target_arch = "x86_64")]
        if avx512bw() {
            passes.push(Lanes::Avx512);
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut block = [0u8; 64];
            for b in &mut block {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = if x & 3 != 0 { BYTES[(x >> 8) as usize % BYTES.len()] } else { (x >> 16) as u8 };
            }
            for &lanes in &passes {
                assert_eq!(masks::<true>(&block, lanes), masks_bytes::<true>(&block), "{lanes:?} {block:?}");
                assert_eq!(masks::<false>(&block, lanes), masks_bytes::<false>(&block), "{lanes:?} {block:?}");
            }
        }
    }

    /// The inline first look finds what `memchr2` finds: each of the two
    /// bytes (and both) at every offset of haystacks on both sides of 16
    /// bytes, and none.
    #[test]
    fn find_near_is_memchr2() {
        for len in 0..48 {
            for at in 0..=len {
                for (x, other) in [(b'"', b'\\'), (b'\\', b'"')] {
                    let mut hay = vec![b'a'; len];
                    if at < len {
                        hay[at] = x;
                    }
                    assert_eq!(find_near(b'"', b'\\', &hay), memchr::memchr2(b'"', b'\\', &hay), "{len} {at}");
                    // A second one later changes nothing; one earlier wins.
                    if at + 3 < len {
                        hay[at + 3] = other;
                        assert_eq!(find_near(b'"', b'\\', &hay), Some(at));
                    }
                    assert_eq!(find_near(b'"', b'"', &hay), memchr::memchr(b'"', &hay), "{len} {at}");
                }
            }
        }
    }

    /// The string's end as a byte-at-a-time walk finds it.
    fn string_end_slowly(buf: &[u8], from: usize) -> Option<(usize, bool)> {
        let (mut at, mut control) = (from, false);
        while at < buf.len() {
            match buf[at] {
                b'"' => return Some((at, control)),
                b'\\' => at += 2,
                b => {
                    control |= b < 0x20;
                    at += 1;
                }
            }
        }
        None
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Runs of backslashes of every length, quotes and control bytes
        /// across the 64-byte blocks, from every starting offset.
        #[test]
        fn string_end_agrees_with_a_byte_walk(
            bytes in proptest::collection::vec(proptest::prop_oneof![
                4 => proptest::prelude::Just(b'a'),
                3 => proptest::prelude::Just(b'\\'),
                1 => proptest::prelude::Just(b'"'),
                1 => proptest::prelude::Just(0x01u8),
                1 => proptest::prelude::Just(0xc3u8),
            ], 0..300),
        ) {
            for from in 0..=bytes.len() {
                let fast = closing_quote(&bytes, from, true).map(|c| (c.end, c.control));
                let slow = string_end_slowly(&bytes, from);
                // A control byte escaped by a backslash counts for the fast
                // scan (it is not JSON either way); the quote must agree.
                proptest::prop_assert_eq!(fast.map(|f| f.0), slow.map(|s| s.0), "from {} in {:?}", from, bytes);
                if let (Some((_, f)), Some((_, s))) = (fast, slow) {
                    proptest::prop_assert!(f || !s, "a control byte the walk saw was missed");
                }
            }
        }
    }

    /// The byte-at-a-time skip the block skip replaced: brackets counted
    /// and matched, strings stepped over.
    fn skip_slowly(buf: &[u8], start: usize, depth_max: usize) -> Result<Skipped, SkipError> {
        skip_slowly_visiting(buf, start, depth_max, usize::MAX, &mut Vec::new())
    }

    /// [`skip_slowly`], noting where each string at `depth` opens.
    fn skip_slowly_visiting(
        buf: &[u8],
        start: usize,
        depth_max: usize,
        depth: usize,
        visits: &mut Vec<usize>,
    ) -> Result<Skipped, SkipError> {
        let mut stack = Vec::new();
        let (mut at, mut control) = (start, false);
        while at < buf.len() {
            match buf[at] {
                b'"' => {
                    if stack.len() == depth {
                        visits.push(at);
                    }
                    let (end, c) = string_end_slowly(buf, at + 1).ok_or(SkipError::Malformed)?;
                    control |= c;
                    at = end + 1;
                    continue;
                }
                open @ (b'{' | b'[') => {
                    if stack.len() == depth_max {
                        return Err(SkipError::TooDeep);
                    }
                    stack.push(if open == b'{' { b'}' } else { b']' });
                }
                close @ (b'}' | b']') => {
                    if stack.pop() != Some(close) {
                        return Err(SkipError::Malformed);
                    }
                    if stack.is_empty() {
                        return Ok(Skipped { end: at + 1, control });
                    }
                }
                b'\\' => return Err(SkipError::Malformed),
                _ => {}
            }
            at += 1;
        }
        Err(SkipError::Malformed)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// Brackets inside and outside strings, escapes, control bytes,
        /// across blocks: the block skip ends where the byte walk ends.
        #[test]
        fn skip_nested_agrees_with_a_byte_walk(
            bytes in proptest::collection::vec(proptest::prop_oneof![
                4 => proptest::prelude::Just(b'a'),
                2 => proptest::prelude::Just(b'{'),
                2 => proptest::prelude::Just(b'}'),
                1 => proptest::prelude::Just(b'['),
                1 => proptest::prelude::Just(b']'),
                2 => proptest::prelude::Just(b'"'),
                2 => proptest::prelude::Just(b'\\'),
                1 => proptest::prelude::Just(0x01u8),
            ], 1..400),
            depth_max in 1usize..8,
        ) {
            let mut doc = vec![b'{'];
            doc.extend_from_slice(&bytes);
            let fast = skip_nested(&doc, 0, depth_max);
            let slow = skip_slowly(&doc, 0, depth_max);
            // The visiting skip ends where the plain one does, and visits
            // the strings the byte walk finds at each depth.
            for depth in 1..4 {
                let (mut fast_visits, mut slow_visits) = (Vec::new(), Vec::new());
                let visiting = skip_nested_visiting(&doc, 0, depth_max, depth, |q, _| fast_visits.push(q));
                proptest::prop_assert_eq!(visiting, fast);
                if skip_slowly_visiting(&doc, 0, depth_max, depth, &mut slow_visits).is_ok() && visiting.is_ok() {
                    proptest::prop_assert_eq!(&fast_visits, &slow_visits, "depth {} in {:?}", depth, String::from_utf8_lossy(&doc));
                }
            }
            match (fast, slow) {
                (Ok(f), Ok(s)) => {
                    proptest::prop_assert_eq!(f.end, s.end, "{:?}", String::from_utf8_lossy(&doc));
                    proptest::prop_assert!(f.control || !s.control);
                }
                (f, s) => proptest::prop_assert_eq!(f.is_ok(), s.is_ok(), "{:?} {:?} {:?}", f, s, String::from_utf8_lossy(&doc)),
            }
        }
    }

    #[test]
    fn string_end_in_long_strings_of_escapes() {
        for n in 0..200 {
            // n backslashes then a quote: escaped when n is odd.
            let mut s = vec![b'\\'; n];
            s.extend_from_slice(b"\"x\"");
            let end = closing_quote(&s, 0, true).unwrap().end;
            assert_eq!(end, if n % 2 == 0 { n } else { n + 2 }, "{n}");
        }
    }

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

    /// A xorshift generator of `seed` (not 0): the random strings' pieces.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// The decoder of before the 32-byte steps (a search and a copy per
    /// escape): what `unescape_marking` must still give, marks, errors and
    /// the text before an error included (the marks of the escapes that
    /// decoded: a broken one gives none).
    fn unescape_reference(raw: &[u8], out: &mut Vec<u8>, marks: &mut Vec<(usize, usize)>) -> Result<(), Malformed> {
        let base = out.len();
        let mut at = 0;
        while let Some(p) = memchr::memchr(b'\\', &raw[at..]) {
            out.extend_from_slice(&raw[at..at + p]);
            let i = at + p;
            let begun = (out.len() - base, i);
            let Some(&c) = raw.get(i + 1) else { return Err(Malformed("a string ends in an escape")) };
            at = i + 2;
            let simple = match c {
                b'"' | b'\\' | b'/' => c,
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
                    marks.extend([begun, (out.len() - base, at)]);
                    continue;
                }
                _ => return Err(Malformed("unknown escape in a string")),
            };
            out.push(simple);
            marks.extend([begun, (out.len() - base, at)]);
        }
        out.extend_from_slice(&raw[at..]);
        Ok(())
    }

    /// Random raw strings of escapes (valid, broken, surrogates, a
    /// backslash last) and text, at lengths around the 32-byte step,
    /// decoded after text already in the buffer.
    #[test]
    fn unescape_gives_what_the_byte_at_a_time_decoder_gave() {
        let pieces: &[&[u8]] = &[
            b"a",
            b"hello world ",
            b"\\n",
            b"\\\"",
            b"\\\\",
            b"\\/",
            b"\\b",
            b"\\f",
            b"\\r",
            b"\\t",
            b"\\u00e9",
            b"\\ud83d\\ude00",
            b"\\ud83d",
            b"\\ude00",
            b"\\ud83dx",
            b"\\u12",
            b"\\q",
            "é漢".as_bytes(),
            b"0123456789abcdef0123456789abcdef",
            b"\\",
            // Bytes outside ASCII after a backslash, whose low seven bits
            // are an escape's (`\xe2` and `b`, `\xf4` and `t`): no escape.
            "\\\u{201c}".as_bytes(),
            b"\\\xf4\x80",
        ];
        let mut next = xorshift(0x2545_f491_4f6c_dd1du64);
        for _ in 0..20_000 {
            let n = (next() % 24) as usize;
            let raw: Vec<u8> = (0..n).flat_map(|_| pieces[(next() % pieces.len() as u64) as usize].to_vec()).collect();
            let (mut want, mut want_marks) = (b"before".to_vec(), Vec::new());
            let want_result = unescape_reference(&raw, &mut want, &mut want_marks);
            let (mut got, mut got_marks) = (b"before".to_vec(), Vec::new());
            let got_result = unescape_marked(&raw, &mut got, &mut got_marks);
            assert_eq!(got_result, want_result, "{:?}", String::from_utf8_lossy(&raw));
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&raw));
            assert_eq!(got_marks, want_marks, "{:?}", String::from_utf8_lossy(&raw));
            // The 16-byte blocks' search, which machines without AVX2 use.
            let (mut narrow, mut narrow_marks) = (b"before".to_vec(), Vec::new());
            // SAFETY: not `WIDE`.
            let narrow_result =
                unsafe { unescape_with::<false, false>(&raw, &mut narrow, |m| narrow_marks.extend_from_slice(&m)) };
            assert_eq!(narrow_result.map(|_| ()), want_result);
            assert_eq!((&narrow, &narrow_marks), (&want, &want_marks));
            // Each vector decoder the CPU has, whichever `unescape_marked` chose.
            for (name, decoded) in vector_decoders::<false>(&raw) {
                assert_eq!(decoded, (want_result.map(|_| raw.len()), want.clone(), want_marks.clone()), "{name}");
            }
        }
    }

    /// Long strings of valid escapes of every kind (two-byte, `\\u`,
    /// surrogate pairs, runs of backslashes) at every offset around the
    /// blocks, where the strings above mostly break early: every decoder
    /// gives what the byte-at-a-time one gives, to the end, to a closing
    /// quote with a document after it, and to a broken escape put last.
    #[test]
    fn long_strings_of_valid_escapes_decode_alike_everywhere() {
        let pieces: &[&[u8]] = &[
            b"a",
            b"some prose ",
            b"\\n",
            b"\\\"",
            b"\\\\",
            b"\\t",
            b"\\/",
            b"\\u00e9",
            b"\\u6f22",
            b"\\u005c",
            b"\\ud83d\\ude00",
            b"\\ud83dx",
            "é漢字".as_bytes(),
            b"0123456789abcdef0123456789abcdef0123456789abcdef",
        ];
        let broken: &[&[u8]] = &[b"", b"\\q", b"\\u12", b"\\", b"\\\xf4\x80"];
        let mut next = xorshift(0x51_7cc1_b727_220au64);
        for _ in 0..3_000 {
            let n = 20 + (next() % 200) as usize;
            let mut raw: Vec<u8> =
                (0..n).flat_map(|_| pieces[(next() % pieces.len() as u64) as usize].to_vec()).collect();
            raw.extend_from_slice(broken[(next() % broken.len() as u64) as usize]);
            let (mut want, mut want_marks) = (b"before".to_vec(), Vec::new());
            let want_result = unescape_reference(&raw, &mut want, &mut want_marks);
            let (mut got, mut got_marks) = (b"before".to_vec(), Vec::new());
            let got_result = unescape_marked(&raw, &mut got, &mut got_marks);
            assert_eq!((got_result, &got, &got_marks), (want_result, &want, &want_marks));
            for (name, decoded) in vector_decoders::<false>(&raw) {
                assert_eq!(decoded, (want_result.map(|_| raw.len()), want.clone(), want_marks.clone()), "{name}");
            }
            // Closed by a quote, a document after it.
            let mut doc = raw.clone();
            doc.extend_from_slice(b"\", \"k\": \"v\\n\"}");
            let (mut want, mut want_marks) = (b"before".to_vec(), Vec::new());
            // SAFETY: not `WIDE`.
            let want_result =
                unsafe { unescape_with::<true, false>(&doc, &mut want, |m| want_marks.extend_from_slice(&m)) };
            for (name, decoded) in vector_decoders::<true>(&doc) {
                assert_eq!(decoded, (want_result, want.clone(), want_marks.clone()), "{name}");
            }
        }
    }

    /// What each vector decoder the CPU has gives for `raw` (with `QUOTE`,
    /// decoding to the closing quote): the result, the buffer (after
    /// `before`), and the marks.
    #[allow(clippy::type_complexity)]
    fn vector_decoders<const QUOTE: bool>(
        raw: &[u8],
    ) -> Vec<(&'static str, (Result<usize, Malformed>, Vec<u8>, Vec<(usize, usize)>))> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if wide() {
                let (mut out, mut marks) = (b"before".to_vec(), Vec::new());
                // SAFETY: the CPU has AVX2 (checked above).
                let r = unsafe { unescape_with::<QUOTE, true>(raw, &mut out, |m| marks.extend_from_slice(&m)) };
                all.push(("avx2", (r, out, marks)));
            }
            if vbmi2() {
                let (mut out, mut marks) = (b"before".to_vec(), Vec::new());
                // SAFETY: the CPU has what it needs (checked above).
                let r = unsafe { unescape_vbmi2::<QUOTE>(raw, &mut out, |m| marks.extend_from_slice(&m)) };
                all.push(("avx-512 vbmi2", (r, out, marks)));
            }
        }
        all
    }

    /// Decoding to the closing quote (a string's end found by the pass
    /// that decodes it): every vector decoder gives what the 16-byte one
    /// gives, for strings of escapes and quotes, escaped or not, with a
    /// document going on after them, at every length around the blocks.
    #[test]
    fn decoding_to_the_closing_quote_agrees_across_decoders() {
        let pieces: &[&[u8]] = &[
            b"abc ",
            b"\\n",
            b"\\\"",
            b"\\\\",
            b"\\\\\\\"",
            b"\"",
            b"\\u00e9",
            b"\\ud83d\\ude00",
            b"\\q",
            b"\\u12",
            "é漢".as_bytes(),
            b"0123456789abcdef0123456789abcdef",
            b"\\",
            b"\"}, {\"k\": ",
            "\\\u{201c}".as_bytes(),
            b"\\\xf4\x80",
        ];
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15u64);
        let mut quoted = 0;
        for _ in 0..20_000 {
            let n = (next() % 40) as usize;
            let raw: Vec<u8> = (0..n).flat_map(|_| pieces[(next() % pieces.len() as u64) as usize].to_vec()).collect();
            let (mut want, mut want_marks) = (b"before".to_vec(), Vec::new());
            // SAFETY: not `WIDE`.
            let want_result =
                unsafe { unescape_with::<true, false>(&raw, &mut want, |m| want_marks.extend_from_slice(&m)) };
            quoted += usize::from(want_result.is_ok());
            for (name, decoded) in vector_decoders::<true>(&raw) {
                assert_eq!(
                    decoded,
                    (want_result, want.clone(), want_marks.clone()),
                    "{name}: {:?}",
                    String::from_utf8_lossy(&raw)
                );
            }
        }
        // Most strings end at a quote; some end in an error.
        assert!((5_000..19_900).contains(&quoted), "{quoted}");
    }

    /// A tenant hides text after an object inside an array (a tool schema's
    /// `enum`): it belongs to the array's key, not to the object's last
    /// member (`type`, which guardrails skip as structural).
    #[test]
    fn a_string_after_a_closed_object_gets_its_containers_key_back() {
        let doc =
            r#"{"tools":[{"function":{"options":{"enum":[{"type":"x"},"my key sk-proj-abc mail bob@example.com"]}}}]}"#;
        assert_eq!(values(doc).last().map(|(k, _)| k.as_str()), Some("enum"));
    }

    /// In an object whose keys the tenant chooses, a string has no key
    /// the gateway knows: a tool call's `input`, `metadata` (not the
    /// Responses API's top-level `input`, its items; not a schema).
    #[test]
    fn strings_in_free_form_objects_have_no_key() {
        let doc = r#"{"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{"type":"sk-proj-abc","id":"123-45-6789","deep":{"model":"x"},"list":[{"role":"y"}]}}]}],"metadata":{"type":"m"},"after":{"type":"t"}}"#;
        let keys: Vec<_> = values(doc).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            keys,
            [
                "role=assistant",
                "type=tool_use",
                "id=t1",
                "name=f",
                "=sk-proj-abc",
                "=123-45-6789",
                "=x",
                "=y",
                "=m",
                "type=t"
            ]
        );
        // An escaped key is the provider's `input` all the same.
        let doc = r#"{"messages":[{"content":[{"type":"tool_use","inp\u0075t":{"type":"sk-x"}}]}]}"#;
        assert_eq!(values(doc).last().map(|(k, v)| format!("{k}={v}")).as_deref(), Some("=sk-x"));
        assert!(looks_base64(br"iVBORw0KGgo\/AAA=") && !looks_base64("日本語".as_bytes()) && !looks_base64(b"a b"));
        let doc = r#"{"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}],"tools":[{"type":"function","parameters":{"type":"object"}}]}"#;
        let keys: Vec<_> = values(doc).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(keys, ["type=message", "role=user", "type=input_text", "text=hi", "type=function", "type=object"]);
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

    /// What `texts` gave before a string with escapes was decoded while its
    /// end was found: the end first ([`string_values`]), then the text.
    #[allow(clippy::type_complexity)]
    fn texts_two_passes(
        doc: &[u8],
        keep: impl Fn(&[u8], &[u8]) -> bool,
        marked: bool,
    ) -> (Result<(), Malformed>, Vec<(Vec<u8>, StringValue, Result<Vec<u8>, Malformed>, Vec<(usize, usize)>)>) {
        let mut got = Vec::new();
        let r = string_values(doc, |key, v| {
            let raw = &doc[v.raw.clone()];
            if !keep(key, raw) {
                return;
            }
            let (mut text, mut marks) = (Vec::new(), Vec::new());
            let t = if !v.escaped {
                Ok(raw.to_vec())
            } else if marked && raw.len() <= MARKED_BYTES_MAX {
                unescape_marked(raw, &mut text, &mut marks).map(|()| text)
            } else {
                unescape(raw, &mut text).map(|()| text)
            };
            got.push((key.to_vec(), v, t, marks));
        });
        (r, got)
    }

    #[allow(clippy::type_complexity)]
    fn texts_one_pass(
        doc: &[u8],
        keep: impl Fn(&[u8], &[u8]) -> bool,
        marked: bool,
    ) -> (Result<(), Malformed>, Vec<(Vec<u8>, StringValue, Result<Vec<u8>, Malformed>, Vec<(usize, usize)>)>) {
        // One room for every case of the thread, as a core lends one to
        // every request: what an earlier document left in it (a decoded
        // text, marks, their room) must change nothing.
        thread_local! {
            static ROOM: std::cell::RefCell<TextsRoom> = std::cell::RefCell::new(TextsRoom::default());
        }
        let mut got = Vec::new();
        let r = ROOM.with_borrow_mut(|room| {
            texts(doc, keep, marked, false, room, |key, v, t, marks| {
                got.push((key.to_vec(), v, t.map(<[u8]>::to_vec), std::mem::take(marks)));
            })
        });
        (r, got)
    }

    /// Keys kept by their name, and a value kept by its contents (a
    /// `url` that is not a data URL), as the guard's and the counter's
    /// readers keep them.
    fn keep_for_test(key: &[u8], raw: &[u8]) -> bool {
        key != b"type" && !(key == b"url" && raw.starts_with(b"data:"))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        /// Decoding a string while finding its end gives every kept string
        /// the range, text, error and marks the two passes gave: escaped
        /// quotes and backslashes, surrogate pairs cut by the closing
        /// quote, broken escapes, strings across 32-byte blocks, keys and
        /// values, unterminated documents.
        #[test]
        fn one_pass_texts_are_the_two_passes_texts(
            pieces in proptest::collection::vec(proptest::prop_oneof![
                6 => proptest::prelude::Just(&b"abcdefgh"[..]),
                2 => proptest::prelude::Just(&b"\\n"[..]),
                2 => proptest::prelude::Just(&b"\\\""[..]),
                1 => proptest::prelude::Just(&b"\\\\"[..]),
                1 => proptest::prelude::Just(&b"\\u00e9"[..]),
                1 => proptest::prelude::Just(&b"\\ud83d\\ude00"[..]),
                1 => proptest::prelude::Just(&b"\\ud83d"[..]),
                1 => proptest::prelude::Just(&b"\\u12"[..]),
                1 => proptest::prelude::Just(&b"\\q"[..]),
                1 => proptest::prelude::Just(&b"\\"[..]),
                3 => proptest::prelude::Just(&b"\",\"text\":\""[..]),
                1 => proptest::prelude::Just(&b"\",\"type\":\""[..]),
                1 => proptest::prelude::Just(&b"\",\"url\":\"data:"[..]),
                1 => proptest::prelude::Just(&b"\"},{\"content\":\""[..]),
                1 => proptest::prelude::Just(&b"\":\""[..]),
                1 => proptest::prelude::Just("é漢".as_bytes()),
            ], 0..60),
            close in proptest::prelude::any::<bool>(),
            marked in proptest::prelude::any::<bool>(),
        ) {
            let mut doc = br#"{"messages":[{"content":""#.to_vec();
            for p in &pieces {
                doc.extend_from_slice(p);
            }
            if close {
                doc.extend_from_slice(br#""}]}"#);
            }
            let two = texts_two_passes(&doc, keep_for_test, marked);
            let one = texts_one_pass(&doc, keep_for_test, marked);
            proptest::prop_assert_eq!(one, two, "{:?}", String::from_utf8_lossy(&doc));
            // The first string decoded to its quote with 16-byte blocks
            // (machines without AVX2) as with 32.
            let rest = &doc[br#"{"messages":[{"content":""#.len()..];
            let decode = |wide: bool| {
                let (mut out, mut marks) = (Vec::new(), Vec::new());
                let r = if wide {
                    unescape_until::<true>(rest, &mut out, |m| marks.extend_from_slice(&m))
                } else {
                    // SAFETY: not `WIDE`.
                    unsafe { unescape_with::<true, false>(rest, &mut out, |m| marks.extend_from_slice(&m)) }
                };
                (r, out, marks)
            };
            proptest::prop_assert_eq!(decode(false), decode(true));
        }
    }

    /// A string longer than MARKED_BYTES_MAX gets no marks, one at the
    /// bound gets them all, however far the document runs past it.
    #[test]
    fn one_pass_marks_stop_at_the_bound() {
        for len in [MARKED_BYTES_MAX - 2, MARKED_BYTES_MAX, MARKED_BYTES_MAX + 2] {
            // `\n` and a letter: an escape every three bytes.
            let mut body: Vec<u8> = b"\\na".iter().copied().cycle().take(len / 3 * 3).collect();
            body.resize(len, b'a');
            let mut doc = br#"{"a":""#.to_vec();
            doc.extend_from_slice(&body);
            doc.extend_from_slice(br#"","b":""#);
            doc.extend_from_slice(&body);
            doc.extend_from_slice(&body);
            doc.extend_from_slice(br#""}"#);
            let two = texts_two_passes(&doc, keep_for_test, true);
            let one = texts_one_pass(&doc, keep_for_test, true);
            assert_eq!(one.0, two.0);
            assert_eq!(one.1.len(), 2);
            assert_eq!(one.1[0].3.is_empty(), len > MARKED_BYTES_MAX, "{len}");
            assert!(one.1[1].3.is_empty());
            assert!(one == two, "{len}");
        }
    }

    proptest::proptest! {
        /// Telling keys apart by length first gives what decoding every
        /// key gave: words written plainly, with letters as `\u` escapes,
        /// with other escapes, cut short or run on.
        #[test]
        fn decodes_to_is_decoding_and_comparing(
            word in proptest::sample::select(vec![&b"input"[..], b"metadata", b"image_url", b"a"]),
            escaped in proptest::collection::vec(proptest::prelude::any::<bool>(), 0..10),
            cut in 0usize..12,
            extra in proptest::sample::select(vec![&b""[..], b"x", b"\\n", b"\\u0020", b"\\"]),
        ) {
            let mut raw = Vec::new();
            for (i, &b) in word.iter().enumerate() {
                if escaped.get(i).copied().unwrap_or(false) {
                    raw.extend_from_slice(format!("\\u{:04x}", b).as_bytes());
                } else {
                    raw.push(b);
                }
            }
            raw.truncate(raw.len().saturating_sub(cut % 3));
            raw.extend_from_slice(extra);
            let mut decoded = Vec::new();
            let want = unescape(&raw, &mut decoded).is_ok() && decoded == word;
            proptest::prop_assert_eq!(decodes_to(&raw, word), want, "{:?}", String::from_utf8_lossy(&raw));
        }
    }
}
