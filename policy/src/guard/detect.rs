//! Validators: each looks at one candidate a search pass found and decides
//! whether it is the real thing, from its structure alone (check digits,
//! number ranges, address syntax, token alphabets and lengths).
//!
//! Every validator is bounded: it reads at most a fixed number of bytes
//! around its candidate, so a scan stays linear in the text. A candidate
//! that runs into the end of text that may continue is `NeedMore`: the
//! stream scanner holds it back until the next piece decides it.

use super::Detector;

/// What a validator decided about one candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A match over this range.
    Match(usize, usize),
    /// Undecided until more text arrives; the candidate starts here.
    NeedMore(usize),
    No,
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

/// A PEM private key block is looked for up to this far past its header;
/// a stream holds back at most this much while the block is open.
pub const PEM_BYTES_MAX: usize = 8 * 1024;

/// Part of a word: a match may not continue into one of these.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn run(text: &[u8], from: usize, pred: impl Fn(u8) -> bool) -> usize {
    text[from..].iter().position(|&b| !pred(b)).unwrap_or(text.len() - from)
}

/// Like [`run`], but reads at most `max` bytes: every validator's work is
/// bounded, whatever the text, and a token that reaches the bound is
/// decided instead of waiting for more.
fn run_max(text: &[u8], from: usize, max: usize, pred: impl Fn(u8) -> bool) -> usize {
    run(&text[..text.len().min(from + max)], from, pred)
}

/// A key or token body is decided once it is this long.
const TOKEN_BYTES_MAX: usize = 512;

/// A JWT segment is decided once it is this long.
const JWT_SEGMENT_BYTES_MAX: usize = 8192;

/// A labelled value longer than this is not a password.
const VALUE_BYTES_MAX: usize = 1024;

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
            let body = run_max(text, end, TOKEN_BYTES_MAX, base64url);
            let stop = end + body;
            if open(stop) && body < TOKEN_BYTES_MAX {
                return (Detector::OpenAiKey, Verdict::NeedMore(start));
            }
            let token = &text[end..stop];
            if token.starts_with(b"ant-") {
                return (Detector::AnthropicKey, if body >= 36 { Verdict::Match(start, stop) } else { Verdict::No });
            }
            let digit = token.iter().any(u8::is_ascii_digit);
            let letter = token.iter().any(u8::is_ascii_alphabetic);
            (Detector::OpenAiKey, if body >= 20 && digit && letter { Verdict::Match(start, stop) } else { Verdict::No })
        }
        SecretAnchor::Aws => {
            if !found.iter().all(u8::is_ascii_uppercase) || !starts_word(text, start) {
                return (Detector::AwsKey, Verdict::No);
            }
            let body = run(text, end, |b| b.is_ascii_uppercase() || b.is_ascii_digit());
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
            let body = if pat {
                run_max(text, end, TOKEN_BYTES_MAX, is_word)
            } else {
                run_max(text, end, TOKEN_BYTES_MAX, |b| b.is_ascii_alphanumeric())
            };
            let stop = end + body;
            let v = if open(stop) && body < TOKEN_BYTES_MAX {
                Verdict::NeedMore(start)
            } else if body >= if pat { 40 } else { 36 } {
                Verdict::Match(start, stop)
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
            let body = run_max(text, end, TOKEN_BYTES_MAX, |b| b.is_ascii_alphanumeric() || b == b'-');
            let stop = end + body;
            let v = if open(stop) && body < TOKEN_BYTES_MAX {
                Verdict::NeedMore(start)
            } else if body >= 10 && text[end..stop].iter().any(u8::is_ascii_digit) {
                Verdict::Match(start, stop)
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
    const KEY: &[u8] = b"PRIVATE KEY-----";
    if &text[start..end] != b"-----BEGIN " {
        return Verdict::No;
    }
    // The header: `-----BEGIN <label>PRIVATE KEY-----`, label in capitals.
    let reach = &text[end..text.len().min(end + 40 + KEY.len())];
    let Some(k) = memchr::memmem::find(reach, KEY) else {
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
    let body_from = end + k + KEY.len();
    let window = &text[body_from..text.len().min(start + PEM_BYTES_MAX)];
    if let Some(e) = memchr::memmem::find(window, b"-----END ") {
        let after = &window[e..];
        if let Some(k) = memchr::memmem::find(after, KEY) {
            return Verdict::Match(start, body_from + e + k + KEY.len());
        }
    }
    if !complete && text.len() - start < PEM_BYTES_MAX {
        Verdict::NeedMore(start)
    } else {
        // No end marker within reach: everything from the header on is
        // taken to be the key.
        Verdict::Match(start, text.len().min(start + PEM_BYTES_MAX))
    }
}

fn jwt(text: &[u8], start: usize, complete: bool) -> Verdict {
    if &text[start..start + 3] != b"eyJ" || !(start == 0 || !(base64url(text[start - 1]) || text[start - 1] == b'.')) {
        return Verdict::No;
    }
    let mut at = start;
    for segment in 0..3 {
        let n = run_max(text, at, JWT_SEGMENT_BYTES_MAX, base64url);
        at += n;
        if at == text.len() && !complete && n < JWT_SEGMENT_BYTES_MAX {
            return Verdict::NeedMore(start);
        }
        if !(10..JWT_SEGMENT_BYTES_MAX).contains(&n) {
            return Verdict::No;
        }
        if segment < 2 {
            if at == text.len() || text[at] != b'.' {
                return Verdict::No;
            }
            at += 1;
        }
    }
    Verdict::Match(start, at)
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
    let n = run_max(text, at, VALUE_BYTES_MAX + 1, |b| {
        !(b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'`' | b',' | b';' | b'\\'))
    });
    let value_end = at + n;
    if more(value_end) && n <= VALUE_BYTES_MAX {
        return Verdict::NeedMore(start);
    }
    let value = &text[value_start..value_end];
    if value.len() < 6 || value.len() > VALUE_BYTES_MAX {
        return Verdict::No;
    }
    let placeholder = matches!(value[0], b'$' | b'<' | b'{' | b'*' | b'(' | b'[' | b'%' | b'.')
        || value.iter().all(|&b| b == value[0])
        || PLACEHOLDERS.iter().any(|p| value.eq_ignore_ascii_case(p))
        || value.windows(4).any(|w| w.eq_ignore_ascii_case(b"xxxx"));
    if placeholder {
        return Verdict::No;
    }
    let digit = value.iter().any(u8::is_ascii_digit);
    let symbol = value.iter().any(|&b| b.is_ascii_punctuation());
    let inner_upper = value[1..].iter().any(u8::is_ascii_uppercase) && value.iter().any(u8::is_ascii_lowercase);
    if digit || symbol || inner_upper {
        Verdict::Match(value_start, value_end)
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

/// The next ASCII digit at or after `from`. Eight bytes at a time: a word
/// with no byte in `'0'..='9'` is skipped with a few arithmetic operations
/// (the "has between" trick from Bit Twiddling Hacks, exact for the
/// question "is there one", with bytes of 0x80 and above masked out).
pub fn next_digit(text: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    let mut i = from;
    while i + 8 <= text.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&text[i..i + 8]);
        let x = u64::from_le_bytes(word);
        let low = x & (ONES * 127);
        let between =
            (ONES * (127 + b':' as u64)).wrapping_sub(low) & !x & low.wrapping_add(ONES * (127 - b'/' as u64));
        if between & (ONES * 128) != 0 {
            break;
        }
        i += 8;
    }
    text[i..].iter().position(u8::is_ascii_digit).map(|p| p + i)
}

/// Decides the number that has a digit at `i`: IPv4, SSN, card, phone or
/// IBAN (whose two letters come just before the digits). Returns where to
/// look for the next number.
pub fn number(text: &[u8], i: usize, complete: bool) -> (Option<Detector>, Verdict, usize) {
    let len = text.len();
    if i >= 2 && text[i - 1].is_ascii_uppercase() && text[i - 2].is_ascii_uppercase() && starts_word(text, i - 2) {
        let (v, next) = iban(text, i - 2, complete);
        return (Some(Detector::Iban), v, next);
    }
    let digits_end = i + run(text, i, |b| b.is_ascii_digit());
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
        let g = run(text, at, |b| b.is_ascii_digit());
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
                if next < len && text[next] == b' ' {
                    next += 1;
                }
            }
            b' ' | b'-' | b'.' => next += 1,
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
    if end < len && (is_word(text[end]) || text[end] == b'@') {
        return (None, Verdict::No, end);
    }
    let groups = &groups[..n];
    let seps = &seps[1..n];
    let same = |set: &[u8]| seps.iter().all(|s| set.contains(s)) && seps.windows(2).all(|w| w[0] == w[1]);
    // A token that mixes separators ("ping -c 2 204.77.34.247") may hold a
    // number of ours after its first group: look again from the next one.
    let no = if seps.windows(2).all(|w| w[0] == w[1]) { end } else { i + groups[0] };
    let no = (None, Verdict::No, no);
    let digit_at = |k: usize| {
        let mut seen = 0;
        for &b in &text[i..end] {
            if b.is_ascii_digit() {
                if seen == k {
                    return b - b'0';
                }
                seen += 1;
            }
        }
        0
    };
    let found = |d: Detector| (Some(d), Verdict::Match(start, end), end);
    // A parenthesis is part of a phone number only; an address or a card
    // number may stand in one.
    let plain = !plus;
    let inner = if paren { i } else { start };
    let found_plain = |d: Detector| (Some(d), Verdict::Match(inner, end), end);
    if plain && n == 4 && same(b".") {
        let ok = groups.iter().all(|&g| (1..=3).contains(&g))
            && text[i..end]
                .split(|&b| b == b'.')
                .all(|g| g.iter().fold(0u32, |v, &b| v * 10 + (b - b'0') as u32) <= 255);
        return if ok { found_plain(Detector::Ipv4) } else { no };
    }
    if plain && groups == [3, 2, 4] && same(b"- ") {
        let v = |from: usize, to: usize| (from..to).fold(0u32, |v, k| v * 10 + digit_at(k) as u32);
        let (area, group, serial) = (v(0, 3), v(3, 5), v(5, 9));
        let ok = area != 0 && area != 666 && area < 900 && group != 0 && serial != 0;
        return if ok { found_plain(Detector::Ssn) } else { (None, Verdict::No, end) };
    }
    if plain && (13..=19).contains(&digits) {
        let grouped = n == 1
            || (same(b" -") && (groups[..n - 1].iter().all(|&g| g == 4) && groups[n - 1] <= 4 || groups == [4, 6, 5]));
        if grouped && (2..=6).contains(&digit_at(0)) && luhn(&text[i..end]) {
            return found_plain(Detector::Card);
        }
        return (None, Verdict::No, end);
    }
    let phone = if plus {
        (8..=15).contains(&digits) && same(b" -")
    } else if paren {
        groups == [3, 3, 4] && seps[0] == b')' && matches!(seps[1], b'-' | b' ' | b'.')
    } else if digit_at(0) == 0 {
        // National numbers with a trunk zero: 020 7946 0958, 01 23 45 67 89.
        n >= 2 && same(b" ") && (10..=11).contains(&digits) && groups.iter().all(|&g| g >= 2)
    } else {
        // North American: 415-555-2671, 415.555.2671, 415 555 2671.
        groups == [3, 3, 4] && same(b"-. ") && digit_at(0) >= 2
    };
    if phone {
        found(Detector::Phone)
    } else {
        no
    }
}

/// The Luhn check over the digits of `s` (separators skipped).
fn luhn(s: &[u8]) -> bool {
    let mut sum = 0;
    let mut double = false;
    for &b in s.iter().rev().filter(|b| b.is_ascii_digit()) {
        let mut d = (b - b'0') as u32;
        if double {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        double = !double;
    }
    sum % 10 == 0
}

/// IBAN lengths by country (ISO 13616 registry, common countries).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AT", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"CH", 21),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"EE", 20),
    (b"ES", 24),
    (b"FI", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GR", 27),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IS", 26),
    (b"IT", 27),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MT", 31),
    (b"NL", 18),
    (b"NO", 15),
    (b"PL", 28),
    (b"PT", 25),
    (b"RO", 24),
    (b"SA", 24),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TR", 26),
];

/// An IBAN starting with its country code at `start`: compact or in
/// groups of four, of its country's length, with valid mod-97 check digits.
fn iban(text: &[u8], start: usize, complete: bool) -> (Verdict, usize) {
    let country = [text[start], text[start + 1]];
    let Some(&(_, length)) = IBAN_LENGTHS.iter().find(|(c, _)| **c == country) else {
        return (Verdict::No, start + 2);
    };
    let mut chars = [0u8; 34];
    let mut n = 0;
    let mut at = start;
    while n < length && at < text.len() {
        let b = text[at];
        if b.is_ascii_uppercase() || b.is_ascii_digit() {
            chars[n] = b;
            n += 1;
            at += 1;
        } else if b == b' ' && n % 4 == 0 && at + 1 < text.len() && text[at + 1].is_ascii_alphanumeric() {
            at += 1;
        } else {
            break;
        }
    }
    if n < length {
        let open = at == text.len() || (at + 1 == text.len() && text[at] == b' ');
        return (if open && !complete { Verdict::NeedMore(start) } else { Verdict::No }, at.max(start + 2));
    }
    if at == text.len() && !complete {
        return (Verdict::NeedMore(start), at);
    }
    if at < text.len() && is_word(text[at]) {
        return (Verdict::No, at);
    }
    // Move the first four characters to the end, read letters as 10..35,
    // and the remainder mod 97 must be 1.
    let mut rem = 0u32;
    for &b in chars[4..length].iter().chain(&chars[..4]) {
        rem = if b.is_ascii_digit() {
            (rem * 10 + (b - b'0') as u32) % 97
        } else {
            (rem * 100 + (b - b'A' + 10) as u32) % 97
        };
    }
    (if rem == 1 { Verdict::Match(start, at) } else { Verdict::No }, at)
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

/// An IPv6 address around the `:` at `colon`, with at least three groups
/// written out (so `::1` and `a::b` in code are left alone).
pub fn ipv6(text: &[u8], colon: usize, complete: bool) -> (Verdict, usize) {
    let v6_char = |b: u8| b.is_ascii_hexdigit() || b == b':';
    let mut start = colon;
    while start > 0 && colon - start < 39 && v6_char(text[start - 1]) {
        start -= 1;
    }
    let limit = text.len().min(start + 45);
    let mut end = colon + run(&text[..limit], colon, |b| v6_char(b) || b == b'.');
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
    if candidate.split(|&b| b == b':').filter(|g| !g.is_empty()).count() < 3 {
        return (Verdict::No, next);
    }
    let parsed = std::str::from_utf8(candidate).ok().and_then(|s| s.parse::<std::net::Ipv6Addr>().ok());
    (if parsed.is_some() { Verdict::Match(start, end) } else { Verdict::No }, next)
}
