//! Validators: each looks at one candidate a search pass found and decides
//! whether it is the real thing, from its structure alone (check digits,
//! number ranges, address syntax, token alphabets and lengths).
//!
//! Every validator is bounded: it reads at most a fixed number of bytes
//! around its candidate, so a scan stays linear in the text. A candidate
//! that runs into the end of text that may continue is `NeedMore`: the
//! stream scanner holds it back until the next piece decides it.

use super::national::{self, luhn, Ids};
use super::Detector;

/// What a validator decided about one candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A match over this range.
    Match(usize, usize),
    /// A match that runs to the end of text that may continue: decided
    /// already (a key is a key once enough of it has come), and what
    /// follows belongs to it as long as [`Tail::extend`] says so.
    Open(usize, usize, Tail),
    /// Undecided until more text arrives; the candidate starts here.
    NeedMore(usize),
    No,
}

/// How a decided match continues: the rule that says which of the next
/// bytes still belong to it. The same rule ends a match in complete text
/// and continues one across a stream's pieces, so both see one extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// A run of bytes of one class: a key's or token's body, a labelled
    /// value.
    Run(Class),
    /// A JWT's segments: base64url, and up to this many more dots.
    Jwt { dots: u8 },
    /// A PEM block, up to and including its end marker.
    Pem(PemEnd),
}

/// The byte classes of token bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Base64Url,
    Alnum,
    /// Letters, digits and `_`.
    Word,
    /// Letters, digits and `-` (Slack).
    AlnumDash,
    /// Anything up to white space, a quote, `,`, `;` or `\\`.
    Value,
}

impl Class {
    fn has(self, b: u8) -> bool {
        match self {
            Class::Base64Url => base64url(b),
            Class::Alnum => b.is_ascii_alphanumeric(),
            Class::Word => is_word(b),
            Class::AlnumDash => b.is_ascii_alphanumeric() || b == b'-',
            Class::Value => value_byte(b),
        }
    }
}

/// Where the search for a PEM block's end marker stands: how much of
/// `-----END ` has matched, then how much of `PRIVATE KEY-----` after a
/// label of capitals, digits and spaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PemEnd {
    /// Bytes of `-----END ` matched (9: the label has begun).
    opening: u8,
    /// Label bytes seen after the opening.
    label: u8,
    /// Bytes of `PRIVATE KEY-----` matched.
    key: u8,
}

const PEM_END_OPENING: &[u8] = b"-----END ";
const PEM_KEY: &[u8] = b"PRIVATE KEY-----";

impl PemEnd {
    /// Takes one byte; true when it completes the end marker.
    fn step(&mut self, b: u8) -> bool {
        let opening = PEM_END_OPENING.len() as u8;
        if self.opening < opening {
            self.opening = if b == PEM_END_OPENING[self.opening as usize] {
                self.opening + 1
            } else if b == b'-' {
                // `------END `: extra dashes keep the five before.
                if self.opening == 5 {
                    5
                } else {
                    1
                }
            } else {
                0
            };
            return false;
        }
        if b == PEM_KEY[self.key as usize] {
            self.key += 1;
            if self.key as usize == PEM_KEY.len() {
                return true;
            }
            if b != b'-' {
                self.label += 1;
            }
        } else if b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ' {
            // What matched of `PRIVATE KEY` was part of the label.
            self.label += 1;
            self.key = u8::from(b == b'P');
        } else {
            *self = PemEnd { opening: u8::from(b == b'-'), ..PemEnd::default() };
            return false;
        }
        if self.label > 40 + PEM_KEY.len() as u8 {
            *self = PemEnd::default();
        }
        false
    }
}

impl Tail {
    /// How many bytes at the start of `text` continue the match, and
    /// whether the match ended within `text` (false: it may go on in
    /// what follows).
    pub fn extend(&mut self, text: &[u8]) -> (usize, bool) {
        match self {
            Tail::Run(class) => {
                let n = run(text, 0, |b| class.has(b));
                (n, n < text.len())
            }
            Tail::Jwt { dots } => {
                let mut at = 0;
                loop {
                    at += run(text, at, base64url);
                    if at == text.len() {
                        return (at, false);
                    }
                    if text[at] != b'.' || *dots == 0 {
                        return (at, true);
                    }
                    *dots -= 1;
                    at += 1;
                }
            }
            Tail::Pem(end) => {
                for (i, &b) in text.iter().enumerate() {
                    if end.step(b) {
                        return (i + 1, true);
                    }
                }
                (text.len(), false)
            }
        }
    }
}

/// A decided candidate, its body starting at `body`: matched through
/// where its tail ends; open when that is the end of text that may
/// continue.
fn decided(text: &[u8], start: usize, body: usize, mut tail: Tail, complete: bool) -> Verdict {
    let (n, ended) = tail.extend(&text[body..]);
    if ended || complete {
        Verdict::Match(start, body + n)
    } else {
        Verdict::Open(start, body + n, tail)
    }
}

/// Which secret an Aho-Corasick anchor stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretAnchor {
    /// `sk-`: OpenAI (`sk-`, `sk-proj-`) or Anthropic (`sk-ant-`).
    Sk,
    Aws,
    Github,
    GithubPat,
    Slack,
    Pem,
    Jwt,
    /// `password=`-style labels: the value after them is the secret.
    Label,
}

impl SecretAnchor {
    pub fn detectors(self) -> &'static [Detector] {
        match self {
            SecretAnchor::Sk => &[Detector::OpenAiKey, Detector::AnthropicKey],
            SecretAnchor::Aws => &[Detector::AwsKey],
            SecretAnchor::Github | SecretAnchor::GithubPat => &[Detector::GithubToken],
            SecretAnchor::Slack => &[Detector::SlackToken],
            SecretAnchor::Pem => &[Detector::PrivateKey],
            SecretAnchor::Jwt => &[Detector::Jwt],
            SecretAnchor::Label => &[Detector::Password],
        }
    }
}

/// Literal anchors of the secret detectors. The automaton matches them
/// without regard to ASCII case; validators check case where it matters.
pub const SECRET_ANCHORS: &[(&str, SecretAnchor)] = &[
    ("sk-", SecretAnchor::Sk),
    ("AKIA", SecretAnchor::Aws),
    ("ASIA", SecretAnchor::Aws),
    ("ghp_", SecretAnchor::Github),
    ("gho_", SecretAnchor::Github),
    ("ghu_", SecretAnchor::Github),
    ("ghs_", SecretAnchor::Github),
    ("ghr_", SecretAnchor::Github),
    ("github_pat_", SecretAnchor::GithubPat),
    ("xox", SecretAnchor::Slack),
    ("-----BEGIN ", SecretAnchor::Pem),
    ("eyJ", SecretAnchor::Jwt),
    ("password", SecretAnchor::Label),
    ("passwd", SecretAnchor::Label),
    ("pwd", SecretAnchor::Label),
    ("secret", SecretAnchor::Label),
    ("api_key", SecretAnchor::Label),
    ("apikey", SecretAnchor::Label),
    ("api-key", SecretAnchor::Label),
    ("access_token", SecretAnchor::Label),
    ("auth_token", SecretAnchor::Label),
];

/// Every candidate is decided within this many bytes from its start
/// (an e-mail address's 64-byte local part and 255-byte domain are the
/// longest): a stream never needs to hold more to find what the whole
/// text would give.
pub const DECIDED_WITHIN: usize = 64 + 1 + 255;

/// Part of a word: a match may not continue into one of these.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn run(text: &[u8], from: usize, pred: impl Fn(u8) -> bool) -> usize {
    text[from..].iter().position(|&b| !pred(b)).unwrap_or(text.len() - from)
}

/// The run of ASCII digits from `from`: [`run`] for digits, eight bytes a
/// step where eight are left. A digit is a byte that `'0'` XORed leaves
/// under 10: with its top bit cleared (so that no sum carries into the
/// next byte) plus 0x76, such a byte stays under 0x80, and any other, or
/// one at 0x80 and above, has its top bit set. The number pass and the
/// walk measure every run of digits (a byte at a time, 1.5% of the
/// governed 100 KB request).
#[inline(always)]
fn digit_run(text: &[u8], from: usize) -> usize {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const TOP: u64 = 0x8080_8080_8080_8080;
    let mut at = from;
    while let Some(eight) = text.get(at..at + 8) {
        let x = u64::from_le_bytes(eight.try_into().unwrap_or_default()) ^ 0x3030_3030_3030_3030;
        let others = (((x & LOW7) + 0x7676_7676_7676_7676) | x) & TOP;
        if others != 0 {
            return at - from + (others.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at - from + run(text, at, |b| b.is_ascii_digit())
}

/// Like [`run`], but reads at most `max` bytes: every validator's work is
/// bounded, whatever the text, and a token that reaches the bound is
/// decided instead of waiting for more.
fn run_max(text: &[u8], from: usize, max: usize, pred: impl Fn(u8) -> bool) -> usize {
    run(&text[..text.len().min(from + max)], from, pred)
}

/// A key or token body this long is a key, whatever its letters: once
/// decided, the rest of it is redacted however long it is.
const TOKEN_DECIDED: usize = 64;

/// A JWT header segment (`eyJ...`) is at most this long; real ones are
/// under 200 (`alg`, `typ`, `kid`, `x5t`).
const JWT_HEADER_MAX: usize = 256;

/// A labelled value shorter than this is decided only once it ends (it
/// might be a placeholder word); one this long is decided as it comes.
const VALUE_SHORT: usize = 16;

fn value_byte(b: u8) -> bool {
    !(b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'`' | b',' | b';' | b'\\'))
}

fn base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The word before `start` ended (or there is none).
fn starts_word(text: &[u8], start: usize) -> bool {
    start == 0 || !(is_word(text[start - 1]) || text[start - 1] == b'-')
}

/// Decides a secret candidate found at the anchor `start..end`.
pub fn secret(anchor: SecretAnchor, text: &[u8], start: usize, end: usize, complete: bool) -> (Detector, Verdict) {
    let found = &text[start..end];
    // A token that runs to the end of unfinished text may still grow.
    let open = |stop: usize| !complete && stop == text.len();
    match anchor {
        SecretAnchor::Sk => {
            if found != b"sk-" || !starts_word(text, start) {
                return (Detector::OpenAiKey, Verdict::No);
            }
            let body = run_max(text, end, TOKEN_DECIDED, base64url);
            let token = &text[end..end + body];
            let growing = open(end + body);
            let tail = Tail::Run(Class::Base64Url);
            if token.starts_with(b"ant-") || (growing && b"ant-".starts_with(token)) {
                let v = if body >= 36 {
                    decided(text, start, end, tail, complete)
                } else if growing {
                    Verdict::NeedMore(start)
                } else {
                    Verdict::No
                };
                return (Detector::AnthropicKey, v);
            }
            let digit = token.iter().any(u8::is_ascii_digit);
            let letter = token.iter().any(u8::is_ascii_alphabetic);
            // Monotone in the body's length: a longer body that began this
            // way is a key too, so a stream decides as the whole text does.
            let v = if body >= TOKEN_DECIDED || (body >= 20 && digit && letter) {
                decided(text, start, end, tail, complete)
            } else if growing {
                Verdict::NeedMore(start)
            } else {
                Verdict::No
            };
            (Detector::OpenAiKey, v)
        }
        SecretAnchor::Aws => {
            if !found.iter().all(u8::is_ascii_uppercase) || !starts_word(text, start) {
                return (Detector::AwsKey, Verdict::No);
            }
            let body = run_max(text, end, 17, |b| b.is_ascii_uppercase() || b.is_ascii_digit());
            let stop = end + body;
            let v = if open(stop) && body <= 16 {
                Verdict::NeedMore(start)
            } else if body == 16 && (stop == text.len() || !is_word(text[stop])) {
                Verdict::Match(start, stop)
            } else {
                Verdict::No
            };
            (Detector::AwsKey, v)
        }
        SecretAnchor::Github | SecretAnchor::GithubPat => {
            let pat = anchor == SecretAnchor::GithubPat;
            if found.iter().any(u8::is_ascii_uppercase) || !starts_word(text, start) {
                return (Detector::GithubToken, Verdict::No);
            }
            let (class, need) = if pat { (Class::Word, 40) } else { (Class::Alnum, 36) };
            let body = run_max(text, end, need, |b| class.has(b));
            let v = if body >= need {
                decided(text, start, end, Tail::Run(class), complete)
            } else if open(end + body) {
                Verdict::NeedMore(start)
            } else {
                Verdict::No
            };
            (Detector::GithubToken, v)
        }
        SecretAnchor::Slack => {
            // `xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`.
            let kind = text.get(end..end + 2);
            let slack = found == b"xox" && matches!(kind, Some([b'b' | b'p' | b'a' | b'r' | b's', b'-']));
            if !slack || !starts_word(text, start) {
                return (
                    Detector::SlackToken,
                    if !complete && end + 2 > text.len() { Verdict::NeedMore(start) } else { Verdict::No },
                );
            }
            let end = end + 2;
            let body = run_max(text, end, TOKEN_DECIDED, |b| Class::AlnumDash.has(b));
            let digit = text[end..end + body].iter().any(u8::is_ascii_digit);
            let v = if body >= TOKEN_DECIDED || (body >= 10 && digit) {
                decided(text, start, end, Tail::Run(Class::AlnumDash), complete)
            } else if open(end + body) {
                Verdict::NeedMore(start)
            } else {
                Verdict::No
            };
            (Detector::SlackToken, v)
        }
        SecretAnchor::Pem => (Detector::PrivateKey, pem(text, start, end, complete)),
        SecretAnchor::Jwt => (Detector::Jwt, jwt(text, start, complete)),
        SecretAnchor::Label => (Detector::Password, labelled(text, start, end, complete)),
    }
}

fn pem(text: &[u8], start: usize, end: usize, complete: bool) -> Verdict {
    if &text[start..end] != b"-----BEGIN " {
        return Verdict::No;
    }
    // The header: `-----BEGIN <label>PRIVATE KEY-----`, label in capitals.
    let reach = &text[end..text.len().min(end + 40 + PEM_KEY.len())];
    let Some(k) = memchr::memmem::find(reach, PEM_KEY) else {
        let label_so_far =
            reach.iter().all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ' || b == b'-');
        return if !complete && end + reach.len() == text.len() && label_so_far {
            Verdict::NeedMore(start)
        } else {
            Verdict::No
        };
    };
    if !reach[..k].iter().all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ') {
        return Verdict::No;
    }
    // Everything from the header to the end marker is the key; with no
    // end marker, everything to the end of the text.
    decided(text, start, end + k + PEM_KEY.len(), Tail::Pem(PemEnd::default()), complete)
}

/// `eyJ<header>.<payload>[.<signature>]`: a header segment that is
/// base64url JSON (`eyJ` is `{"`) of a header's length, then a payload of
/// at least 10 characters. The signature is not needed (an unsigned token
/// carries the same claims).
fn jwt(text: &[u8], start: usize, complete: bool) -> Verdict {
    if &text[start..start + 3] != b"eyJ" || !(start == 0 || !(base64url(text[start - 1]) || text[start - 1] == b'.')) {
        return Verdict::No;
    }
    let growing = |at: usize| !complete && at == text.len();
    let header = run_max(text, start, JWT_HEADER_MAX + 1, base64url);
    let dot = start + header;
    if growing(dot) && header <= JWT_HEADER_MAX {
        return Verdict::NeedMore(start);
    }
    if !(10..=JWT_HEADER_MAX).contains(&header) || dot == text.len() || text[dot] != b'.' {
        return Verdict::No;
    }
    let payload = run_max(text, dot + 1, 10, base64url);
    if payload >= 10 {
        decided(text, start, dot + 1, Tail::Jwt { dots: 1 }, complete)
    } else if growing(dot + 1 + payload) {
        Verdict::NeedMore(start)
    } else {
        Verdict::No
    }
}

/// Values after a label that are placeholders, not secrets.
const PLACEHOLDERS: &[&[u8]] = &[
    b"redacted",
    b"changeme",
    b"password",
    b"none",
    b"null",
    b"undefined",
    b"required",
    b"optional",
    b"example",
    b"secret",
    b"hidden",
    b"removed",
];

/// `password = value` and the like: the value is the match.
fn labelled(text: &[u8], start: usize, end: usize, complete: bool) -> Verdict {
    // The label ends here (`passwords`, `password_hash` are other words).
    let mut at = end;
    let more = |at: usize| at == text.len() && !complete;
    if more(at) {
        return Verdict::NeedMore(start);
    }
    if at < text.len() && (text[at].is_ascii_alphanumeric() || text[at] == b'_') {
        return Verdict::No;
    }
    let skip = |at: &mut usize, set: &[u8], max: usize| {
        let mut n = 0;
        while *at < text.len() && n < max && set.contains(&text[*at]) {
            *at += 1;
            n += 1;
        }
    };
    skip(&mut at, b"\"'", 1);
    skip(&mut at, b" \t", 24);
    if more(at) {
        return Verdict::NeedMore(start);
    }
    if at == text.len() || !matches!(text[at], b'=' | b':') {
        return Verdict::No;
    }
    skip(&mut at, b":=>", 2);
    skip(&mut at, b" \t", 24);
    skip(&mut at, b"\"'`", 1);
    let value_start = at;
    let n = run_max(text, at, TOKEN_DECIDED, value_byte);
    let growing = more(value_start + n);
    if growing && n < VALUE_SHORT {
        return Verdict::NeedMore(start);
    }
    // Decided on the first `TOKEN_DECIDED` bytes, each rule monotone in
    // the value's length past `VALUE_SHORT` (placeholders are told by
    // their first 16 bytes): a stream decides as the whole text does.
    let value = &text[value_start..value_start + n];
    let placeholder = value.first().is_some_and(|b| matches!(b, b'$' | b'<' | b'{' | b'*' | b'(' | b'[' | b'%' | b'.'))
        || (value.len() >= 6 && value[..6].iter().all(|&b| b == value[0]))
        || (!growing && PLACEHOLDERS.iter().any(|p| value.eq_ignore_ascii_case(p)))
        || value[..n.min(VALUE_SHORT)].windows(4).any(|w| w.eq_ignore_ascii_case(b"xxxx"));
    if value.len() < 6 || placeholder {
        return Verdict::No;
    }
    let digit = value.iter().any(u8::is_ascii_digit);
    let symbol = value.iter().any(|&b| b.is_ascii_punctuation());
    let inner_upper = value[1..].iter().any(u8::is_ascii_uppercase) && value.iter().any(u8::is_ascii_lowercase);
    if digit || symbol || inner_upper || n >= TOKEN_DECIDED {
        decided(text, value_start, value_start, Tail::Run(Class::Value), complete)
    } else if growing {
        Verdict::NeedMore(start)
    } else {
        Verdict::No
    }
}

/// A deny word stands alone, not inside another word.
pub fn whole_word(text: &[u8], start: usize, end: usize, complete: bool) -> Verdict {
    if start > 0 && is_word(text[start - 1]) {
        return Verdict::No;
    }
    if end == text.len() {
        return if complete { Verdict::Match(start, end) } else { Verdict::NeedMore(start) };
    }
    if is_word(text[end]) {
        Verdict::No
    } else {
        Verdict::Match(start, end)
    }
}

/// The next ASCII digit at or after `from`: sixteen bytes a compare
/// (SSE2, part of every x86_64), thirty-two with AVX2 over long texts, the
/// rest a byte at a time. The digit pass runs over every text a guard
/// scans; eight bytes a step with arithmetic (the "has between" trick)
/// was 6% of a governed 8 KB request's instructions.
#[inline]
pub fn next_digit(text: &[u8], from: usize) -> Option<usize> {
    let from = from.min(text.len());
    // The next sixteen bytes inline first: where digits are dense (a list
    // of numbers, personal data) the next one is most often there, and
    // the call into the AVX2 function cost more than it saved.
    #[cfg(target_arch = "x86_64")]
    if from + 16 <= text.len() {
        // SAFETY: the 16 bytes at `from` are inside `text` (checked above).
        if let Some(at) = unsafe { digit_in16(text, from) } {
            return Some(at);
        }
        // Short texts (a tool schema's descriptions, a chat's turns) stay
        // in the inlined sixteen-byte loop too.
        if text.len() - from >= 128 + 16 && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above).
            return unsafe { next_digit_avx2(text, from + 16) };
        }
        return next_digit_narrow(text, from + 16);
    }
    next_digit_narrow(text, from)
}

/// [`next_digit`] thirty-two bytes a compare: the sixteen-byte loop was
/// 75,000 instructions of a 100 KB prompt's scan.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn next_digit_avx2(text: &[u8], from: usize) -> Option<usize> {
    use std::arch::x86_64::*;
    let mut i = from.min(text.len());
    let (zero, nine) = (_mm256_set1_epi8(b'0' as i8), _mm256_set1_epi8(9));
    while i + 32 <= text.len() {
        // SAFETY: the 32 bytes at `i` are inside `text` (checked above).
        let v = unsafe { _mm256_loadu_si256(text.as_ptr().add(i).cast()) };
        // As in `digits16`: a digit is a byte that max(byte - '0', 9)
        // leaves at 9.
        let d = _mm256_sub_epi8(v, zero);
        let mask = _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_max_epu8(d, nine), nine)) as u32;
        if mask != 0 {
            return Some(i + mask.trailing_zeros() as usize);
        }
        i += 32;
    }
    next_digit_narrow(text, i)
}

/// [`next_digit`] sixteen bytes a compare (SSE2).
#[inline]
pub(crate) fn next_digit_narrow(text: &[u8], from: usize) -> Option<usize> {
    let mut i = from.min(text.len());
    #[cfg(target_arch = "x86_64")]
    while i + 16 <= text.len() {
        // SAFETY: the 16 bytes at `i` are inside `text` (checked above).
        if let Some(at) = unsafe { digit_in16(text, i) } {
            return Some(at);
        }
        i += 16;
    }
    text[i..].iter().position(u8::is_ascii_digit).map(|p| p + i)
}

/// The first digit among the sixteen bytes at `i`.
///
/// # Safety
/// `i + 16 <= text.len()` (the callers' loops check it; a slice here cost
/// tool schemas' many short texts 1.5% more instructions).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn digit_in16(text: &[u8], i: usize) -> Option<usize> {
    debug_assert!(i + 16 <= text.len());
    // SAFETY: SSE2 is part of the x86_64 baseline; the 16 bytes at `i`
    // are inside `text` (the caller's promise).
    let mask = unsafe { digits16(text.as_ptr().add(i)) };
    (mask != 0).then(|| i + mask.trailing_zeros() as usize)
}

/// A bit per byte of the 16 at `at`: set where the byte is an ASCII digit.
///
/// # Safety
/// `at` must be valid for reading 16 bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
unsafe fn digits16(at: *const u8) -> u32 {
    use std::arch::x86_64::*;
    // SAFETY: the caller's promise; an unaligned load.
    let v = unsafe { _mm_loadu_si128(at.cast()) };
    // Digits become 0..=9 and every other byte 10..=255 (wrapping):
    // a digit is a byte that max(byte, 9) leaves at 9.
    let d = _mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8));
    let nine = _mm_set1_epi8(9);
    _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(d, nine), nine)) as u32
}

/// The next `b` in `text` at or after `from` (the `@` of an address, the
/// `:` of an IPv6 address): the sixteen bytes there looked at inline
/// first (SSE2), then `memchr`; a shorter rest by a byte loop. A request
/// of 8 KB of tool schemas has a hundred short texts, and a `memchr`
/// call for each byte in each cost 14,000 instructions.
#[inline]
pub fn next_byte(b: u8, text: &[u8], from: usize) -> Option<usize> {
    let rest = text.get(from..)?;
    #[cfg(target_arch = "x86_64")]
    if rest.len() >= 16 {
        // SAFETY: SSE2 is part of the x86_64 baseline; the 16 bytes read
        // are inside `rest` (checked above).
        let found = unsafe { byte16(rest.as_ptr(), b) };
        if found != 0 {
            return Some(from + found.trailing_zeros() as usize);
        }
        return memchr::memchr(b, &rest[16..]).map(|p| from + 16 + p);
    }
    rest.iter().position(|&x| x == b).map(|p| from + p)
}

/// A bit per byte of the 16 at `at` that is `b`.
///
/// # Safety
/// `at` must be valid for reading 16 bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
unsafe fn byte16(at: *const u8, b: u8) -> u32 {
    use std::arch::x86_64::*;
    // SAFETY: the caller's promise; an unaligned load.
    let v = unsafe { _mm_loadu_si128(at.cast()) };
    _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8))) as u32
}

/// A national check's decision as a verdict.
fn from_national((detector, decided, next): national::Found) -> (Option<Detector>, Verdict, usize) {
    let v = match decided {
        national::Decided::Match(start, end) => Verdict::Match(start, end),
        national::Decided::NeedMore(start) => Verdict::NeedMore(start),
    };
    (detector, v, next)
}

/// Decides the number that has a digit at `i`: IPv4, SSN, card, phone or
/// IBAN (whose two letters come just before the digits). Returns where to
/// look for the next number.
///
/// Inline, the common case: no capital letter just before the digits (nor
/// before the space before them), so no IBAN or national number that
/// begins with letters, and a short run that nothing continues (`2007`,
/// `x86_64`): decided without the call and the walk's stack frame (a
/// thousand digit runs in 100 KB of prose and code).
#[inline(always)]
pub fn number(text: &[u8], i: usize, complete: bool, ids: Ids) -> (Option<Detector>, Verdict, usize) {
    let upper_at = |k: usize| k < text.len() && text[k].is_ascii_uppercase();
    let lettered = i >= 1 && (upper_at(i - 1) || (text[i - 1] == b' ' && i >= 2 && upper_at(i - 2)));
    if lettered {
        if let Some(found) = lettered_number(text, i, complete, ids) {
            return found;
        }
    }
    let digits_end = i + digit_run(text, i);
    if short_run_ends(text, i, digits_end) {
        return (None, Verdict::No, digits_end);
    }
    walk(text, i, digits_end, complete, ids)
}

/// The IBAN and the national numbers that begin with letters, tried first
/// where capitals stand before the digits at `i`; `None` when none of them
/// is there (the digits are then a number of [`walk`]'s or none).
#[inline(never)]
pub(super) fn lettered_number(
    text: &[u8],
    i: usize,
    complete: bool,
    ids: Ids,
) -> Option<(Option<Detector>, Verdict, usize)> {
    if i >= 2 && text[i - 1].is_ascii_uppercase() && text[i - 2].is_ascii_uppercase() && starts_word(text, i - 2) {
        let (v, next) = iban(text, i - 2, complete);
        if v != Verdict::No || !ids.any() {
            return Some((Some(Detector::Iban), v, next));
        }
        // Two letters, then digits: a NINO (`AB123456C`).
        if ids.has(Detector::UkNino) {
            if let Some(r) = national::nino(text, i - 2, complete) {
                return Some(from_national(r));
            }
        }
        return Some((Some(Detector::Iban), v, next));
    }
    if ids.has(Detector::ItCodiceFiscale)
        && i >= 6
        && text[i - 6..i].iter().all(u8::is_ascii_uppercase)
        && starts_word(text, i - 6)
    {
        if let Some(r) = national::codice_fiscale(text, i - 6, complete) {
            return Some(from_national(r));
        }
    }
    if ids.any() && i >= 1 {
        // A NIE's letter (`X1234567L`), a NINO written spaced.
        if ids.has(Detector::EsDni) && matches!(text[i - 1], b'X' | b'Y' | b'Z') && starts_word(text, i - 1) {
            if let Some(r) = national::nie(text, i - 1, complete) {
                return Some(from_national(r));
            }
        }
        if ids.has(Detector::UkNino)
            && i >= 3
            && text[i - 1] == b' '
            && text[i - 3].is_ascii_uppercase()
            && text[i - 2].is_ascii_uppercase()
            && starts_word(text, i - 3)
        {
            if let Some(r) = national::nino(text, i - 3, complete) {
                return Some(from_national(r));
            }
        }
    }
    None
}

/// Whether the run of digits `i..digits_end` is fewer than eight digits
/// that nothing can continue (`2025年`, `x86_64`, `v2`, `2007 Copyright`,
/// `3. The`): the walk would end at it and find it too short (every
/// number of ours has eight digits or more, but a dotted quad, which goes
/// on at a `.` and a digit), so it is passed over without setting the
/// walk up. Most digit runs of prose and code end here.
#[inline(always)]
pub(super) fn short_run_ends(text: &[u8], i: usize, digits_end: usize) -> bool {
    if digits_end - i >= 8 {
        return false;
    }
    match text.get(digits_end) {
        // A separator goes on only to a digit (or `(0)` after a country
        // code); at the text's end, more may come.
        Some(b' ' | b'-' | b'.' | b'/') => text.get(digits_end + 1).is_some_and(|&b| !b.is_ascii_digit() && b != b'('),
        Some(b')' | b'(') | None => false,
        Some(_) => true,
    }
}

/// [`number`] past its first checks: the groups from `i` (the first ending
/// at `digits_end`) and what they make.
#[inline(never)]
pub(super) fn walk(
    text: &[u8],
    i: usize,
    digits_end: usize,
    complete: bool,
    ids: Ids,
) -> (Option<Detector>, Verdict, usize) {
    let len = text.len();
    let (start, plus, paren) = match i.checked_sub(1).map(|p| text[p]) {
        Some(b'+') => (i - 1, true, false),
        Some(b'(') => (i - 1, false, true),
        _ => (i, false, false),
    };
    // Inside an identifier, a version or a decimal: not a number of ours.
    if start > 0 && (is_word(text[start - 1]) || matches!(text[start - 1], b'.' | b'-' | b'/' | b'+' | b'@')) {
        return (None, Verdict::No, digits_end);
    }
    let mut groups = [0usize; 8];
    let mut seps = [0u8; 8];
    let mut n = 0;
    let mut at = i;
    let mut digits = 0;
    let mut open = false;
    loop {
        let g = digit_run(text, at);
        if n == groups.len() || digits + g > 19 {
            return (None, Verdict::No, at + g);
        }
        groups[n] = g;
        n += 1;
        digits += g;
        at += g;
        if n == groups.len() {
            // Eight groups is more than any number of ours has.
            return (None, Verdict::No, at);
        }
        if at == len {
            open = true;
            break;
        }
        let mut next = at;
        let sep = text[at];
        match sep {
            b')' if paren && n == 1 => {
                next += 1;
                if next < len && matches!(text[next], b' ' | b'-') {
                    next += 1;
                }
            }
            // `/` only after an area code (030/123456), never inside an
            // address's `/32`.
            b' ' | b'-' | b'.' => {
                next += 1;
                // `+44 (0)20 ...`: the trunk zero written after the
                // country code, in parentheses.
                if plus && text[next..].starts_with(b"(0)") {
                    next += 3;
                    if next < len && text[next] == b' ' {
                        next += 1;
                    }
                }
            }
            b'/' if n == 1 && !plus => next += 1,
            b'(' if plus && text[at..].starts_with(b"(0)") => {
                next += 3;
                if next < len && text[next] == b' ' {
                    next += 1;
                }
            }
            _ => break,
        }
        if next == len {
            open = true;
            break;
        }
        if !text[next].is_ascii_digit() {
            break;
        }
        seps[n] = sep;
        at = next;
    }
    let end = at;
    if open && !complete {
        return (None, Verdict::NeedMore(start), end);
    }
    // Where to look next when this is no number of ours: a token that mixes
    // separators ("ping -c 2 204.77.34.247") may hold one after its first
    // group, so from the next one.
    let no_next = if seps[1..n].windows(2).all(|w| w[0] == w[1]) { end } else { i + groups[0] };
    // Fewer than eight digits is no number of ours but an address's dotted
    // quad (every phone, card, SSN and national number below has eight or
    // more; an IBAN and the identifiers that begin with letters were
    // decided above): most digit runs in prose and code (`2007`, `64`,
    // `3.14`) end here.
    if digits < 8 && !(n == 4 && seps[1..4] == *b"...") {
        return (None, Verdict::No, no_next);
    }
    // The number's digits (at most 19), read once.
    let mut ds = [0u8; 19];
    for (slot, &b) in ds.iter_mut().zip(text[i..end].iter().filter(|b| b.is_ascii_digit())) {
        *slot = b - b'0';
    }
    if ids.any() && !plus && !paren {
        let number = national::Number { start, end, digits: &ds, groups: &groups[..n], seps: &seps[1..n] };
        if let Some(r) = national::digits_only(ids, text, &number, complete) {
            return from_national(r);
        }
    }
    // An extension (`x2317`, ` ext. 12`) belongs to a phone number.
    let Some(ext_end) = extension(text, end, complete) else {
        return (None, Verdict::NeedMore(start), end);
    };
    if ext_end == end && end < len && (is_word(text[end]) || text[end] == b'@') {
        return (None, Verdict::No, end);
    }
    let groups = &groups[..n];
    let seps = &seps[1..n];
    let same = |set: &[u8]| seps.iter().all(|s| set.contains(s)) && seps.windows(2).all(|w| w[0] == w[1]);
    let no = (None, Verdict::No, no_next);
    let digit_at = |k: usize| ds.get(k).copied().unwrap_or(0);
    // A parenthesis is part of a phone number only; an address or a card
    // number may stand in one.
    let plain = !plus;
    let inner = if paren { i } else { start };
    let found_plain = |d: Detector| (Some(d), Verdict::Match(inner, end), end);
    if ext_end > end {
        // Only a phone number has an extension.
    } else if plain && n == 4 && same(b".") {
        let ok = groups.iter().all(|&g| (1..=3).contains(&g))
            && text[i..end]
                .split(|&b| b == b'.')
                .all(|g| g.iter().fold(0u32, |v, &b| v * 10 + (b - b'0') as u32) <= 255);
        return if ok && !a_version(text, start) { found_plain(Detector::Ipv4) } else { no };
    } else if plain && groups == [3, 2, 4] && same(b"- ") {
        let v = |from: usize, to: usize| (from..to).fold(0u32, |v, k| v * 10 + digit_at(k) as u32);
        let (area, group, serial) = (v(0, 3), v(3, 5), v(5, 9));
        let ok = area != 0 && area != 666 && area < 900 && group != 0 && serial != 0;
        return if ok { found_plain(Detector::Ssn) } else { (None, Verdict::No, end) };
    } else if plain && (12..=19).contains(&digits) {
        // Contiguous, in fours (the last group shorter), or Amex's and
        // Diners' 4-6-5 and 4-6-4.
        let grouped = n == 1
            || (same(b" -")
                && (groups[..n - 1].iter().all(|&g| g == 4) && groups[n - 1] <= 4
                    || groups == [4, 6, 5]
                    || groups == [4, 6, 4]));
        let mut iin = 0;
        for k in 0..6 {
            iin = iin * 10 + digit_at(k) as u32;
        }
        if grouped && card_issuer(iin, digits) && luhn(&text[i..end]) && !not_a_card(text, start) {
            return found_plain(Detector::Card);
        }
        if grouped && n > 1 {
            // Grouped as a card is, but not one.
            return (None, Verdict::No, end);
        }
    }
    let international = !plus && !paren && digit_at(0) == 0 && digit_at(1) == 0 && (groups[0] <= 3 || n == 1);
    // Shapes that only a phone number has, and shapes an order number or
    // an amount may have too, which count only where no word before them
    // says what else they are and no currency sign stands by them.
    // `currency_by` reads a few bytes past the number: in unfinished text
    // that stops before them, a sign may still come (`4155552671` then
    // `$`), so a shape that asks is undecided until they are there (a
    // stream decided it a phone where the whole text did not).
    let asked = std::cell::Cell::new(false);
    let weak = || {
        asked.set(true);
        !not_a_phone(text, start) && !currency_by(text, start, end)
    };
    let phone = if plus {
        // E.164, any separators: +55 45 2306-3143, +44 (0)20 7946 0958.
        (8..=15).contains(&digits) && seps.iter().all(|s| b" -./(".contains(s))
    } else if international {
        // Dialled from abroad: 00 44 20 7946 0958, 001-948-505-9443,
        // 00493209060.
        (10..=17).contains(&digits) && seps.iter().all(|s| b" -.".contains(s)) && (n >= 2 || weak())
    } else if paren {
        // (415) 555-2671, (045) 2306 3143, (03412) 12345, (092)-6850659.
        let nanp = groups[..] == [3, 3, 4] && digit_at(0) >= 2;
        let trunk = digit_at(0) == 0 && (2..=5).contains(&groups[0]) && (8..=12).contains(&digits);
        seps.first() == Some(&b')') && seps[1..].iter().all(|s| b" -.".contains(s)) && (nanp || trunk)
    } else if digit_at(0) == 0 && digit_at(1) != 0 {
        // National numbers with a trunk zero: 020 7946 0958, 01 23 45 67
        // 89, 080-2368-9546, 030/123456; written together (0145823306,
        // 016563918) only where the words allow.
        let grouped = n >= 2 && same(b" -./") && (9..=11).contains(&digits) && groups.iter().all(|&g| g >= 2);
        let together = n == 1 && (9..=11).contains(&digits) && weak();
        grouped || together
    } else if n == 1 {
        // Written together: North American 10 digits (NXX NXX XXXX),
        // mobiles of China (1[3-9], 11 digits) and Italy (3, 10 or 11).
        let nanp = digits == 10 && digit_at(0) >= 2 && digit_at(3) >= 2;
        let china = digits == 11 && digit_at(0) == 1 && digit_at(1) >= 3;
        let italy = (10..=11).contains(&digits) && digit_at(0) == 3;
        (nanp || china || italy) && weak()
    } else {
        // North American: 415-555-2671, 415.555.2671, 415 555 2671.
        let nanp = groups == [3, 3, 4] && same(b"-. ") && digit_at(0) >= 2;
        // Area code and subscriber groups without a trunk zero: Brazil's
        // 68 5691-3144, Japan's 69-7911-9952, Poland's 661 753 377 and
        // 22 494 81 47.
        let national = (9..=11).contains(&digits)
            && seps.iter().all(|s| b" -".contains(s))
            && matches!(
                groups,
                [2, 4, 4] | [2, 5, 4] | [2, 4, 3] | [3, 4, 4] | [3, 3, 3] | [2, 3, 2, 2] | [3, 3, 2, 2]
            );
        nanp || (national && weak())
    };
    if asked.get() && !complete && len < end + CURRENCY_AFTER {
        return (None, Verdict::NeedMore(start), end);
    }
    if phone {
        (Some(Detector::Phone), Verdict::Match(start, ext_end), ext_end)
    } else {
        no
    }
}

/// How far past a number [`currency_by`] looks for a sign.
const CURRENCY_AFTER: usize = 5;

/// A currency sign or code within a few bytes of a number: an amount
/// (`100 000 000 zł`, `€ 250 000`), not a phone number.
fn currency_by(text: &[u8], start: usize, end: usize) -> bool {
    const SIGNS: &[&[u8]] =
        &[b"$", b"\xe2\x82\xac", b"\xc2\xa3", b"\xc2\xa5", b"z\xc5\x82", b"eur", b"usd", b"pln", b"gbp", b"kr"];
    let before = &text[start.saturating_sub(5)..start];
    let after = &text[end..text.len().min(end + CURRENCY_AFTER)];
    let has = |hay: &[u8], s: &[u8]| hay.windows(s.len()).any(|w| w.eq_ignore_ascii_case(s));
    SIGNS.iter().any(|s| has(before, s) || has(after, s))
}

/// Where a phone number's extension after `end` ends (`end` when there is
/// none); `None` when the text stops inside what may be one.
fn extension(text: &[u8], end: usize, complete: bool) -> Option<usize> {
    let len = text.len();
    let mut at = end;
    if at < len && text[at] == b' ' {
        at += 1;
    }
    let rest = &text[at..];
    let words: [&[u8]; 3] = [b"ext.", b"ext", b"x"];
    let Some(word) = words.iter().find(|w| rest.len() >= w.len() && rest[..w.len()].eq_ignore_ascii_case(w)) else {
        // The text may stop inside the word.
        let partial = !complete && rest.len() < 4 && b"ext."[..rest.len()].eq_ignore_ascii_case(rest);
        return if partial && (at > end || !rest.is_empty()) { None } else { Some(end) };
    };
    at += word.len();
    if at < len && text[at] == b' ' {
        at += 1;
    }
    let digits = run_max(text, at, 7, |b| b.is_ascii_digit());
    if !complete && at + digits == len && digits < 7 {
        return None;
    }
    let stop = at + digits;
    if (1..=6).contains(&digits) && (stop == len || !is_word(text[stop])) {
        Some(stop)
    } else {
        Some(end)
    }
}

/// Words that say a number after them is not a phone number.
const NOT_A_PHONE: &[&[u8]] = &[
    b"order",
    b"upc",
    b"ean",
    b"gtin",
    b"barcode",
    b"imei",
    b"part",
    b"invoice",
    b"tracking",
    b"ref",
    b"account",
    b"acct",
    b"ticket",
    b"case",
    b"isbn",
    b"serial",
    b"sku",
    b"id",
    b"transaction",
    b"confirmation",
    b"booking",
    b"code",
    b"no.",
    b"#",
];

/// Words that say it is one.
const A_PHONE: &[&[u8]] = &[
    b"phone",
    b"tel",
    b"call",
    b"mobile",
    b"cell",
    b"fax",
    b"whatsapp",
    b"contact",
    b"sms",
    b"dial",
    b"ring",
    b"telefon",
    b"t\xc3\xa9l",
    b"handy",
    b"m\xc3\xb3vil",
    b"celular",
];

fn not_a_phone(text: &[u8], start: usize) -> bool {
    const FIRSTS: u32 = first_bytes(NOT_A_PHONE) | first_bytes(A_PHONE);
    nearest_says_no(text, start, NOT_A_PHONE, A_PHONE, FIRSTS)
}

/// Card issuers by the first digits of the number: (from, to, how many
/// digits those are, the lengths the issuer uses as a bit set). From the
/// networks' published ranges: Visa, Mastercard (51-55 and the 2-series),
/// Amex, Discover, Diners, JCB (with its 15-digit 1800 and 2131), UnionPay,
/// Maestro (12 to 19 digits), Mir, RuPay, Verve, Troy, UATP, Dankort,
/// InstaPayment, Humo and Uzcard.
const CARD_ISSUERS: &[(u32, u32, u32, u32)] = &[
    (4, 4, 1, lengths(&[13, 16, 19])),                         // Visa
    (51, 55, 2, lengths(&[16])),                               // Mastercard
    (2221, 2720, 4, lengths(&[16])),                           // Mastercard 2-series
    (34, 34, 2, lengths(&[15])),                               // Amex
    (37, 37, 2, lengths(&[15])),                               // Amex
    (300, 305, 3, lengths(&[14, 15, 16, 17, 18, 19])),         // Diners
    (3095, 3095, 4, lengths(&[14, 15, 16, 17, 18, 19])),       // Diners
    (36, 36, 2, lengths(&[14, 15, 16, 17, 18, 19])),           // Diners
    (38, 39, 2, lengths(&[14, 16, 17, 18, 19])),               // Diners
    (35, 35, 2, lengths(&[16, 17, 18, 19])),                   // JCB, RuPay's 353 and 356
    (1800, 1800, 4, lengths(&[15])),                           // JCB
    (2131, 2131, 4, lengths(&[15])),                           // JCB
    (2200, 2204, 4, lengths(&[16, 17, 18, 19])),               // Mir
    (50, 50, 2, lengths(&[12, 13, 14, 15, 16, 17, 18, 19])),   // Maestro, Verve, Dankort, RuPay 508
    (56, 58, 2, lengths(&[12, 13, 14, 15, 16, 17, 18, 19])),   // Maestro
    (604, 604, 4, lengths(&[12, 13, 14, 15, 16, 17, 18, 19])), // Maestro 0604
    (6, 6, 1, lengths(&[12, 13, 14, 15, 16, 17, 18, 19])),     // Discover, UnionPay, Maestro, RuPay, InstaPayment
    (81, 82, 2, lengths(&[16, 17, 18, 19])),                   // UnionPay, RuPay
    (8600, 8600, 4, lengths(&[16])),                           // Uzcard
    (9792, 9792, 4, lengths(&[16])),                           // Troy
    (9860, 9860, 4, lengths(&[16])),                           // Humo
    (1, 1, 1, lengths(&[15])),                                 // UATP
];

const fn lengths(l: &[u32]) -> u32 {
    let mut mask = 0;
    let mut k = 0;
    while k < l.len() {
        mask |= 1 << l[k];
        k += 1;
    }
    mask
}

/// Whether a card network issues numbers of `digits` digits starting with
/// `iin` (the first six digits).
fn card_issuer(iin: u32, digits: usize) -> bool {
    CARD_ISSUERS.iter().any(|&(from, to, width, mask)| {
        let prefix = iin / 10u32.pow(6 - width);
        // `0604` is four digits with a leading zero: its prefix is 604.
        (from..=to).contains(&prefix) && mask & (1 << digits) != 0
    })
}

/// Words that say the number after them is something else: an order, a
/// parcel, a product code.
const NOT_A_CARD: &[&[u8]] =
    &[b"order", b"tracking", b"invoice", b"isbn", b"ean", b"upc", b"gtin", b"sku", b"serial", b"barcode", b"imei"];

/// Words that say a card number follows.
const A_CARD: &[&[u8]] = &[
    b"card",
    b"visa",
    b"amex",
    b"maestro",
    b"debit",
    b"credit",
    b"karte",
    b"tarjeta",
    b"carte",
    b"cart\xc3\xa3o",
    b"kaart",
    b"cc",
];

/// Whether, of the words of `no` and `yes` (lower case, each beginning a
/// word) in the 32 bytes before `start` on the same line, the nearest is
/// one of `no`. From the nearest back, stopping at the first word of
/// either list; only where a word begins ("ip" is not in "ship"). A word
/// is a run of ASCII letters, or a `#`. No searcher is built: this runs
/// once per candidate. The window's letters, `#`s and line breaks are
/// found as bit masks ([`window_classes`]) and its words read from them
/// nearest first; `firsts` has the [`first_bit`] of every word of both
/// lists, so that a word that begins with none of them is passed over
/// without reading the lists. A byte at a time, the window's walk cost
/// 663 instructions a call, and a candidate of CJK prose most of them.
fn nearest_says_no(text: &[u8], start: usize, no: &[&[u8]], yes: &[&[u8]], firsts: u32) -> bool {
    let w = &text[start.saturating_sub(32)..start];
    let (mut letters, mut hashes, breaks) = window_classes(w);
    // Only the line `start` is on: the bits after its last break.
    if breaks != 0 {
        let above = !0u64 << (64 - breaks.leading_zeros());
        letters &= above;
        hashes &= above;
    }
    let listed = |words: &[&[u8]], first: u8, rest: &[u8]| {
        words
            .iter()
            .any(|word| word[0] == first && rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word))
    };
    let mut words = letters | hashes;
    while words != 0 {
        // The nearest word's last byte; a `#` is a word alone, letters run
        // back to the byte after the nearest one that is none.
        let end = 63 - words.leading_zeros();
        let begin = if hashes >> end & 1 != 0 {
            end
        } else {
            let others = !letters & ((1u64 << end) - 1);
            if others == 0 {
                0
            } else {
                64 - others.leading_zeros()
            }
        };
        words &= (1u64 << begin) - 1;
        let (first, rest) = (w[begin as usize].to_ascii_lowercase(), &w[begin as usize..]);
        if firsts >> first_bit(first) & 1 == 0 {
            continue;
        }
        if listed(yes, first, rest) {
            return false;
        }
        if listed(no, first, rest) {
            return true;
        }
    }
    false
}

/// Bit masks of `w` (at most 32 bytes; bit `i` for `w[i]`): its ASCII
/// letters, its `#`s and its line breaks. A full window in two compares of
/// sixteen bytes (SSE2, part of every x86_64), a shorter one (the text's
/// first bytes) a byte at a time.
fn window_classes(w: &[u8]) -> (u64, u64, u64) {
    debug_assert!(w.len() <= 32);
    #[cfg(target_arch = "x86_64")]
    if w.len() == 32 {
        // SAFETY: SSE2 is part of the x86_64 baseline; 32 bytes at `w`.
        return unsafe { window_classes_sse2(w.as_ptr()) };
    }
    let (mut letters, mut hashes, mut breaks) = (0u64, 0u64, 0u64);
    for (i, &b) in w.iter().enumerate() {
        letters |= u64::from(b.is_ascii_alphabetic()) << i;
        hashes |= u64::from(b == b'#') << i;
        breaks |= u64::from(b == b'\n') << i;
    }
    (letters, hashes, breaks)
}

/// [`window_classes`] of the 32 bytes at `at`.
///
/// # Safety
/// `at` must be valid for reading 32 bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
unsafe fn window_classes_sse2(at: *const u8) -> (u64, u64, u64) {
    use std::arch::x86_64::*;
    let half = |v: __m128i| {
        // A letter is a byte that, with bit 5 set (lower case) and less
        // `a`, is at most 25: min(x, 25) leaves it as it is.
        let l = _mm_sub_epi8(_mm_or_si128(v, _mm_set1_epi8(0x20)), _mm_set1_epi8(b'a' as i8));
        let letters = _mm_cmpeq_epi8(_mm_min_epu8(l, _mm_set1_epi8(25)), l);
        let bits = |m: __m128i| u64::from(_mm_movemask_epi8(m) as u16);
        (
            bits(letters),
            bits(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'#' as i8))),
            bits(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8))),
        )
    };
    // SAFETY: the caller's promise: two unaligned 16-byte loads.
    let (a, b) = unsafe { (_mm_loadu_si128(at.cast()), _mm_loadu_si128(at.add(16).cast())) };
    let ((l0, h0, n0), (l1, h1, n1)) = (half(a), half(b));
    (l0 | l1 << 16, h0 | h1 << 16, n0 | n1 << 16)
}

/// A bit for a word's first byte, lower case: `a` to `z` are bits 0 to 25,
/// `#` bit 26, any other byte bit 27 (no word of the lists begins with one
/// that `nearest_says_no` reads a word from).
const fn first_bit(b: u8) -> u32 {
    match b {
        b'a'..=b'z' => (b - b'a') as u32,
        b'#' => 26,
        _ => 27,
    }
}

/// The [`first_bit`]s of `words`' first bytes.
const fn first_bytes(words: &[&[u8]]) -> u32 {
    let mut bits = 0;
    let mut i = 0;
    while i < words.len() {
        bits |= 1 << first_bit(words[i][0]);
        i += 1;
    }
    bits
}

/// Words that say a dotted quad after them is a version, not an address.
const A_VERSION: &[&[u8]] =
    &[b"version", b"firmware", b"release", b"upgrad", b"updat", b"build", b"patch", b"ver.", b"versi\xc3\xb3n"];

/// Words that say it is an address.
const AN_ADDRESS: &[&[u8]] = &[
    b"ip", b"address", b"addr", b"host", b"server", b"client", b"connect", b"ping", b"subnet", b"gateway", b"dns",
    b"route", b"proxy", b"listen", b"bind", b"from ip",
];

/// Whether the words before `start` say a dotted quad is a version.
fn a_version(text: &[u8], start: usize) -> bool {
    const FIRSTS: u32 = first_bytes(A_VERSION) | first_bytes(AN_ADDRESS);
    nearest_says_no(text, start, A_VERSION, AN_ADDRESS, FIRSTS)
}

/// Whether the words before `start` say it is not a card: a word of
/// `NOT_A_CARD` nearer than any word of `A_CARD`.
fn not_a_card(text: &[u8], start: usize) -> bool {
    const FIRSTS: u32 = first_bytes(NOT_A_CARD) | first_bytes(A_CARD);
    nearest_says_no(text, start, NOT_A_CARD, A_CARD, FIRSTS)
}

/// IBAN lengths by country: every country of SWIFT's IBAN registry
/// (release 99, 2025), France's overseas territories that use its format,
/// and the countries that issue IBANs outside the registry (Algeria, Iran
/// and the West and Central African states), by code (looked up in
/// [`IBAN_LENGTH_BY_CODE`]).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AO", 25),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BF", 28),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BJ", 28),
    (b"BL", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CF", 27),
    (b"CG", 27),
    (b"CH", 21),
    (b"CI", 28),
    (b"CM", 27),
    (b"CR", 22),
    (b"CV", 25),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"DZ", 26),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GA", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GF", 27),
    (b"GI", 23),
    (b"GL", 18),
    (b"GP", 27),
    (b"GQ", 27),
    (b"GR", 27),
    (b"GT", 28),
    (b"GW", 25),
    (b"HN", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IR", 26),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KM", 27),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MA", 28),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MF", 27),
    (b"MG", 27),
    (b"MK", 19),
    (b"ML", 28),
    (b"MN", 20),
    (b"MQ", 27),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"MZ", 25),
    (b"NC", 27),
    (b"NE", 28),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PF", 27),
    (b"PK", 24),
    (b"PL", 28),
    (b"PM", 27),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RE", 27),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SN", 28),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TD", 27),
    (b"TF", 27),
    (b"TG", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"WF", 27),
    (b"XK", 20),
    (b"YE", 30),
    (b"YT", 27),
];

/// [`IBAN_LENGTHS`] by country code, at `(a - b'A') * 26 + (b - b'A')`;
/// 0 for a code without IBANs. Read at every two capitals before digits
/// (a product code, an invoice number): the binary search it replaced
/// mispredicted most of its seven steps, 12% of the guard's time on the
/// mixed 8 KB prompt for 4% of its instructions.
const IBAN_LENGTH_BY_CODE: [u8; 26 * 26] = {
    let mut t = [0u8; 26 * 26];
    let mut i = 0;
    while i < IBAN_LENGTHS.len() {
        let (c, n) = IBAN_LENGTHS[i];
        assert!(c[0].is_ascii_uppercase() && c[1].is_ascii_uppercase() && n > 0 && n <= 34);
        t[(c[0] - b'A') as usize * 26 + (c[1] - b'A') as usize] = n as u8;
        i += 1;
    }
    t
};

/// The IBAN length of the country `a b` (capitals), 0 where it has none.
#[inline]
fn iban_length(a: u8, b: u8) -> usize {
    if !(a.is_ascii_uppercase() && b.is_ascii_uppercase()) {
        return 0;
    }
    IBAN_LENGTH_BY_CODE[(a - b'A') as usize * 26 + (b - b'A') as usize] as usize
}

/// An IBAN starting with its country code at `start`: compact or in
/// groups of four, of its country's length, with valid mod-97 check digits.
fn iban(text: &[u8], start: usize, complete: bool) -> (Verdict, usize) {
    let length = iban_length(text[start], text[start + 1]);
    if length == 0 {
        return (Verdict::No, start + 2);
    }
    // Compact, or in groups of four: up to the longest IBAN there is.
    let mut chars = [0u8; 34];
    let mut ends = [0usize; 34];
    let mut n = 0;
    let mut at = start;
    while n < chars.len() && at < text.len() {
        let b = text[at];
        if b.is_ascii_uppercase() || b.is_ascii_digit() {
            chars[n] = b;
            at += 1;
            ends[n] = at;
            n += 1;
        } else if b == b' ' && n % 4 == 0 && at + 1 < text.len() && text[at + 1].is_ascii_alphanumeric() {
            at += 1;
        } else {
            break;
        }
    }
    let runs_on = at == text.len() || (at + 1 == text.len() && text[at] == b' ');
    if runs_on && !complete && n < chars.len() {
        return (Verdict::NeedMore(start), at.max(start + 2));
    }
    let boundary = |end: usize| end == text.len() || !is_word(text[end]);
    // The country's length; failing that, the whole run, whatever its
    // length (a bank whose format changed, a generator that got it wrong):
    // mod 97 is what tells an IBAN from a code that looks like one.
    if n >= length && boundary(ends[length - 1]) && mod97(&chars[..length]) {
        return (Verdict::Match(start, ends[length - 1]), ends[length - 1]);
    }
    if (15..=34).contains(&n) && boundary(ends[n - 1]) && mod97(&chars[..n]) {
        return (Verdict::Match(start, ends[n - 1]), ends[n - 1]);
    }
    (Verdict::No, at.max(start + 2))
}

/// Move the first four characters to the end, read letters as 10..35,
/// and the remainder mod 97 must be 1.
/// The number is read into a `u64` that is reduced only once it passes
/// 2^56 (a division every seven characters or so, not one a character:
/// 100 times 2^56 plus 35 still fits).
pub(super) fn mod97(chars: &[u8]) -> bool {
    let mut rem = 0u64;
    for &b in chars[4..].iter().chain(&chars[..4]) {
        rem = if b.is_ascii_digit() { rem * 10 + u64::from(b - b'0') } else { rem * 100 + u64::from(b - b'A' + 10) };
        if rem >= 1 << 56 {
            rem %= 97;
        }
    }
    rem % 97 == 1
}

/// An e-mail address around the `@` at `at`.
pub fn email(text: &[u8], at: usize, complete: bool) -> (Verdict, usize) {
    let local_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-');
    let mut start = at;
    while start > 0 && at - start < 64 && local_char(text[start - 1]) {
        start -= 1;
    }
    while start < at && text[start] == b'.' {
        start += 1;
    }
    if start == at {
        return (Verdict::No, at + 1);
    }
    let domain =
        run(&text[..text.len().min(at + 1 + 255)], at + 1, |b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
    let mut end = at + 1 + domain;
    if end == text.len() && !complete {
        return (Verdict::NeedMore(start), end);
    }
    while end > at + 1 && matches!(text[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let host = &text[at + 1..end];
    let Some(dot) = memchr::memrchr(b'.', host) else { return (Verdict::No, end.max(at + 1)) };
    let tld = &host[dot + 1..];
    let ok = host.first().is_some_and(u8::is_ascii_alphanumeric)
        && (2..=24).contains(&tld.len())
        && tld.iter().all(u8::is_ascii_alphabetic)
        && !host.windows(2).any(|w| w == b"..");
    (if ok { Verdict::Match(start, end) } else { Verdict::No }, end.max(at + 1))
}

/// Bytes an IPv6 address is written with, by class (a table lookup where
/// the shape checks run over every colon of a prompt of code).
const V6_HEX: u8 = 1;
const V6_COLON: u8 = 2;
const V6_DOT: u8 = 4;
static V6: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_hexdigit() {
            V6_HEX
        } else if c == b':' {
            V6_COLON
        } else if c == b'.' {
            V6_DOT
        } else {
            0
        };
        b += 1;
    }
    t
};

/// An IPv6 address around the `:` at `colon`, with at least three groups
/// written out (so `::1` and `a::b` in code are left alone).
pub fn ipv6(text: &[u8], colon: usize, complete: bool) -> (Verdict, usize) {
    let v6_char = |b: u8| V6[b as usize] & (V6_HEX | V6_COLON) != 0;
    // A colon that no hex digit, colon or dot follows (`key: value`,
    // `name: String`, `https://`) ends what it is in there: an address
    // ending in a colon ends in `::`, so unless a colon stands before it,
    // it is no address and the scans are skipped (the full path would find
    // the same: the candidate ends at the colon, and `next` is just past it).
    if colon + 1 < text.len() && V6[text[colon + 1] as usize] == 0 && (colon == 0 || text[colon - 1] != b':') {
        return (Verdict::No, colon + 1);
    }
    let mut start = colon;
    while start > 0 && colon - start < 39 && v6_char(text[start - 1]) {
        start -= 1;
    }
    let limit = text.len().min(start + 45);
    let mut end = colon + run(&text[..limit], colon, |b| V6[b as usize] != 0);
    if end == text.len() && !complete {
        return (Verdict::NeedMore(start), end);
    }
    while end > colon && text[end - 1] == b'.' {
        end -= 1;
    }
    let next = end.max(colon + 1);
    if (start > 0 && is_word(text[start - 1])) || (end < text.len() && (is_word(text[end]) || text[end] == b':')) {
        return (Verdict::No, next);
    }
    let candidate = &text[start..end];
    // One pass for what the address's shape needs (a candidate is at most
    // 45 bytes, but there are hundreds in a prompt of code): the groups
    // written out, the colons, whether two of them touch, whether a dot
    // ends it in IPv4.
    let (mut groups, mut colons, mut double, mut dot, mut after_colon) = (0, 0, false, false, true);
    for &b in candidate {
        if b == b':' {
            colons += 1;
            double |= after_colon && colons > 1;
            after_colon = true;
        } else {
            groups += usize::from(after_colon);
            dot |= b == b'.';
            after_colon = false;
        }
    }
    if groups < 3 {
        return (Verdict::No, next);
    }
    // Without `::`, an address has eight groups (seven colons), or six and
    // an IPv4 address (six): a time (`14:30:05`) or a MAC address is none,
    // and std's parser is not called for it.
    if !double && colons != 7 && !(colons == 6 && dot) {
        return (Verdict::No, next);
    }
    (if is_ipv6_address(candidate) { Verdict::Match(start, end) } else { Verdict::No }, next)
}

/// Whether `s` is an IPv6 address as `std::net::Ipv6Addr`'s parser reads
/// one (its grammar, step for step, over bytes: a property test holds it
/// to the parser). std's took 1,500 instructions a candidate (its UTF-8
/// decoding, and an IPv4 address tried at every group), 1.9% of a 100 KB
/// prompt's governed request with the bench's 19 candidates.
fn is_ipv6_address(s: &[u8]) -> bool {
    let mut at = 0;
    let (head, head_v4) = v6_groups(s, &mut at, 8);
    if head == 8 {
        return at == s.len();
    }
    // An IPv4 address only at the end; then `::` and the rest, which
    // holds at most 7 - head groups (the `::` stands for one at least).
    if head_v4 || !s[at..].starts_with(b"::") {
        return false;
    }
    at += 2;
    v6_groups(s, &mut at, 8 - (head + 1));
    at == s.len()
}

/// std's `read_groups`: up to `limit` groups from `at`, `:` between them,
/// an IPv4 address (two groups) tried first wherever two are left; how
/// many were read and whether the last was an IPv4 address. `at` moves
/// past what was read (a separator without a group after it is not).
fn v6_groups(s: &[u8], at: &mut usize, limit: usize) -> (usize, bool) {
    for i in 0..limit {
        let sep = usize::from(i > 0);
        if i > 0 && s.get(*at) != Some(&b':') {
            return (i, false);
        }
        if i + 1 < limit {
            if let Some(len) = ipv4_len(&s[*at + sep..]) {
                *at += sep + len;
                return (i + 2, true);
            }
        }
        // One to four hex digits; a fifth fails the group.
        let digits = s[*at + sep..].iter().take(5).take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 4 {
            return (i, false);
        }
        *at += sep + digits;
    }
    (limit, false)
}

/// std's `read_ipv4_addr` at the start of `s`: four decimal numbers of at
/// most three digits, each at most 255 and without a leading zero,
/// between dots; the length read.
fn ipv4_len(s: &[u8]) -> Option<usize> {
    let mut at = 0;
    for i in 0..4 {
        if i > 0 {
            if s.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let digits = s[at..].iter().take(4).take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 3 || (digits > 1 && s[at] == b'0') {
            return None;
        }
        let value = s[at..at + digits].iter().fold(0u32, |v, &b| v * 10 + u32::from(b - b'0'));
        if value > 255 {
            return None;
        }
        at += digits;
    }
    Some(at)
}

#[cfg(test)]
mod iban_tests {
    use super::*;

    /// The table answers as the list does for every pair of bytes, and the
    /// list names each country once (a second entry would be lost).
    #[test]
    fn the_length_table_is_the_list() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let listed: Vec<usize> = IBAN_LENGTHS.iter().filter(|(c, _)| **c == [a, b]).map(|&(_, n)| n).collect();
                assert!(listed.len() <= 1, "{}{} twice", a as char, b as char);
                assert_eq!(iban_length(a, b), listed.first().copied().unwrap_or(0), "{a} {b}");
            }
        }
        assert_eq!((iban_length(b'D', b'E'), iban_length(b'G', b'B'), iban_length(b'Q', b'Q')), (22, 22, 0));
    }
}

#[cfg(test)]
mod ipv6_tests {
    /// std's parser, the reference.
    fn std_reads(s: &[u8]) -> bool {
        std::str::from_utf8(s).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
    }

    #[test]
    fn addresses_and_near_misses_read_as_std_reads_them() {
        for s in [
            "2001:db8:85a3::8a2e:370:7334",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "::",
            "::1",
            "1::",
            "::ffff:192.0.2.128",
            "64:ff9b::192.0.2.33",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5:6:7:1.2.3.4",
            "1:2:3:4:5:1.2.3.4",
            "1:2:3:4:5::1.2.3.4",
            "1.2.3.4::",
            "::1.2.3.4:1",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3:4::5:6:7:8",
            "12345::",
            "::ffff:256.1.1.1",
            "::ffff:01.1.1.1",
            "::ffff:0.0.0.0",
            "::ffff:1.2.3",
            "::ffff:1.2.3.4.5",
            "1:::2",
            ":1::2",
            "1::2:",
            "1::2::3",
            "fe80::1%eth0",
            "ABCD:EF01:2345:6789:ABCD:EF01:2345:6789",
            "",
            ":",
            "1:2",
        ] {
            assert_eq!(super::is_ipv6_address(s.as_bytes()), std_reads(s.as_bytes()), "{s}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// Strings of the candidates' bytes in an address's pieces (groups
        /// of every length, `::`, dotted numbers with leading zeros and
        /// past 255): read as std reads them.
        #[test]
        fn pieces_read_as_std_reads_them(
            pieces in proptest::collection::vec(proptest::sample::select(vec![
                "0", "1", "f", "ab", "FFF", "dead", "beef0", "12345", ":", "::", ".", "1.2.3.4", "255", "256",
                "01", "00", "9", "192.0.2.1", "1.2.3", "0.0.0.0", "255.255.255.255", "300.1.1.1",
            ]), 0..14),
        ) {
            let s = pieces.concat();
            proptest::prop_assert_eq!(super::is_ipv6_address(s.as_bytes()), std_reads(s.as_bytes()), "{}", s);
        }

        /// Any bytes of the candidates' alphabet.
        #[test]
        fn any_candidate_bytes_read_as_std_reads_them(
            s in proptest::collection::vec(proptest::sample::select(b"0123456789abcdefABCDEF:.".to_vec()), 0..46),
        ) {
            proptest::prop_assert_eq!(super::is_ipv6_address(&s), std_reads(&s));
        }
    }
}

#[cfg(test)]
mod context_tests {
    use super::*;

    /// The eight-byte digit run measures what the byte loop does, for
    /// every byte value at every place of a run, and runs of every length
    /// up to and past the text's end.
    #[test]
    fn digit_runs_are_measured_as_byte_by_byte() {
        for len in 0..20 {
            for stop in 0..=255u8 {
                for tail in [0usize, 1, 7, 8, 9, 20] {
                    let mut text = vec![b'7'; len];
                    text.push(stop);
                    text.extend(std::iter::repeat_n(b'1', tail));
                    for from in 0..text.len() {
                        assert_eq!(
                            digit_run(&text, from),
                            run(&text, from, |b| b.is_ascii_digit()),
                            "{len} {stop} {tail} {from}"
                        );
                    }
                }
            }
        }
    }

    /// `nearest_says_no` as it was, reading both lists for every word: the
    /// oracle for the first-byte filter.
    fn nearest_says_no_read_whole(text: &[u8], start: usize, no: &[&[u8]], yes: &[&[u8]]) -> bool {
        let window = &text[start.saturating_sub(32)..start];
        let w = &window[memchr::memrchr(b'\n', window).map_or(0, |nl| nl + 1)..];
        let listed = |words: &[&[u8]], first: u8, rest: &[u8]| {
            words.iter().any(|word| {
                word[0] == first && rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word)
            })
        };
        let mut at = w.len();
        while at > 0 {
            let b = w[at - 1];
            if !(b.is_ascii_alphabetic() || b == b'#') {
                at -= 1;
                continue;
            }
            let mut begin = at - 1;
            while b != b'#' && begin > 0 && w[begin - 1].is_ascii_alphabetic() {
                begin -= 1;
            }
            let (first, rest) = (w[begin].to_ascii_lowercase(), &w[begin..]);
            if listed(yes, first, rest) {
                return false;
            }
            if listed(no, first, rest) {
                return true;
            }
            at = begin;
        }
        false
    }

    /// Random lines of the lists' words (in every case, cut short, run
    /// together), other words, `#`, digits, line breaks and text outside
    /// ASCII: each context test decides as reading the lists whole does,
    /// and both answers come up.
    #[test]
    fn the_first_byte_filter_decides_as_the_lists_do() {
        type Words = &'static [&'static [u8]];
        let lists: [(Words, Words); 3] = [(NOT_A_PHONE, A_PHONE), (A_VERSION, AN_ADDRESS), (NOT_A_CARD, A_CARD)];
        let tests: [fn(&[u8], usize) -> bool; 3] = [not_a_phone, a_version, not_a_card];
        let others: &[&[u8]] = &[
            b"the",
            b"Zebra",
            b"#",
            b"no.",
            b"\n",
            b" ",
            b"  ",
            b"12",
            "日本".as_bytes(),
            b"x",
            b"z",
            b"Z",
            b"-",
            b": ",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut answers = [[0usize; 2]; 3];
        for _ in 0..30_000 {
            let k = (next() % 3) as usize;
            let (no, yes) = lists[k];
            let mut text = Vec::new();
            for _ in 0..(next() % 10) {
                let pick = next() % 4;
                let word: &[u8] = match pick {
                    0 => no[(next() % no.len() as u64) as usize],
                    1 => yes[(next() % yes.len() as u64) as usize],
                    _ => others[(next() % others.len() as u64) as usize],
                };
                let mut word = word.to_vec();
                match next() % 4 {
                    0 => word.make_ascii_uppercase(),
                    1 if word.len() > 1 => word.truncate(word.len() - 1),
                    _ => {}
                }
                text.extend_from_slice(&word);
                if next() % 3 != 0 {
                    text.push(b' ');
                }
            }
            let start = text.len();
            text.extend_from_slice(b"4111 1111 1111 1111");
            let want = nearest_says_no_read_whole(&text, start, no, yes);
            answers[k][usize::from(want)] += 1;
            assert_eq!(tests[k](&text, start), want, "{:?}", String::from_utf8_lossy(&text[..start]));
        }
        assert!(answers.iter().all(|a| a[0] > 1000 && a[1] > 1000), "{answers:?}");
    }
}
