//! National identifiers with check digits that compliance teams ask for,
//! each a detector a profile switches on by name (none is on by default):
//! UK National Insurance numbers, Canadian Social Insurance Numbers, Indian
//! Aadhaar numbers, Brazilian CPFs, Spanish DNIs and NIEs, Italian codici
//! fiscali and French NIRs.
//!
//! Each is read from its published structure and check: the letter sets
//! and excluded prefixes of the NINO (HMRC's manual NIM39110), Luhn for
//! the SIN, Verhoeff for Aadhaar (UIDAI), the two mod-11 digits of the
//! CPF, the mod-23 letter of the DNI and NIE, the odd/even-position
//! tables of the codice fiscale (DM 23/12/1976), and the mod-97 key of the
//! NIR. A candidate reads at most 20 bytes, so a stream's hold stays
//! within its bound.

use super::Detector;

/// Which national detectors a profile has on, as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ids(u8);

impl Ids {
    pub fn with(self, d: Detector) -> Ids {
        Ids(self.0 | bit(d))
    }

    pub fn has(self, d: Detector) -> bool {
        self.0 & bit(d) != 0
    }

    pub fn any(self) -> bool {
        self.0 != 0
    }
}

fn bit(d: Detector) -> u8 {
    match d {
        Detector::UkNino => 1,
        Detector::CaSin => 2,
        Detector::InAadhaar => 4,
        Detector::BrCpf => 8,
        Detector::EsDni => 16,
        Detector::ItCodiceFiscale => 32,
        Detector::FrNir => 64,
        _ => 0,
    }
}

/// What a check decided about a candidate (`detect` makes it a verdict).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decided {
    Match(usize, usize),
    /// Undecided until more text arrives; the candidate starts here.
    NeedMore(usize),
}

/// The detector found (`None` while undecided), the decision, and where
/// to look next.
pub type Found = (Option<Detector>, Decided, usize);

fn word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn boundary(text: &[u8], at: usize) -> bool {
    at == text.len() || !word(text[at])
}

/// A UK National Insurance number from its first letter at `s`:
/// `AB123456C`, `AB 12 34 56 C` or `AB 123456 C`. `None`: not one (let
/// other detectors look).
pub fn nino(text: &[u8], s: usize, complete: bool) -> Option<Found> {
    const FIRST_NOT: &[u8] = b"DFIQUV";
    const SECOND_NOT: &[u8] = b"DFIOQUV";
    // Never issued. (`ZZ`, HMRC's temporary reference, is kept: records
    // carry it for a person.)
    const PREFIX_NOT: &[&[u8; 2]] = &[b"BG", b"GB", b"KN", b"NK", b"NT", b"TN"];
    let (a, b) = (text[s], text[s + 1]);
    if FIRST_NOT.contains(&a) || SECOND_NOT.contains(&b) || PREFIX_NOT.contains(&&[a, b]) {
        return None;
    }
    // Six digits, a space allowed before each pair: `123456`,
    // ` 12 34 56`, ` 123456`.
    let mut at = s + 2;
    let mut digits = 0;
    let mut spaced = false;
    while digits < 6 {
        if digits % 2 == 0 && text.get(at) == Some(&b' ') {
            at += 1;
            spaced = true;
        }
        match text.get(at) {
            Some(d) if d.is_ascii_digit() => {
                at += 1;
                digits += 1;
            }
            None if !complete => return Some((None, Decided::NeedMore(s), at)),
            _ => return None,
        }
    }
    if spaced && text.get(at) == Some(&b' ') {
        at += 1;
    }
    match text.get(at) {
        None if !complete => Some((None, Decided::NeedMore(s), at)),
        Some(b'A'..=b'D') if !complete && at + 1 == text.len() => Some((None, Decided::NeedMore(s), at)),
        Some(b'A'..=b'D') if boundary(text, at + 1) => {
            Some((Some(Detector::UkNino), Decided::Match(s, at + 1), at + 1))
        }
        _ => None,
    }
}

/// An Italian codice fiscale from its first letter at `s` (16 characters:
/// six letters, then year, month letter, day, municipality, check letter).
pub fn codice_fiscale(text: &[u8], s: usize, complete: bool) -> Option<Found> {
    const MONTHS: &[u8] = b"ABCDEHLMPRST";
    // Letter (L) or digit (D) at each place.
    const SHAPE: &[u8; 16] = b"LLLLLLDDLDDLDDDL";
    let end = s + 16;
    if end > text.len() {
        let so_far = &text[s..];
        let fits = so_far
            .iter()
            .zip(SHAPE)
            .all(|(&c, &k)| if k == b'L' { c.is_ascii_uppercase() } else { c.is_ascii_digit() });
        return (fits && !complete).then_some((None, Decided::NeedMore(s), text.len()));
    }
    let code = &text[s..end];
    let shaped =
        code.iter().zip(SHAPE).all(|(&c, &k)| if k == b'L' { c.is_ascii_uppercase() } else { c.is_ascii_digit() });
    if !shaped || !MONTHS.contains(&code[8]) {
        return None;
    }
    if !complete && end == text.len() {
        return Some((None, Decided::NeedMore(s), end));
    }
    if !boundary(text, end) {
        return None;
    }
    let day = (code[9] - b'0') * 10 + (code[10] - b'0');
    if !(1..=31).contains(&day) && !(41..=71).contains(&day) {
        return None;
    }
    const ODD: [u8; 26] =
        [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23];
    let value = |c: u8| if c.is_ascii_digit() { c - b'0' } else { c - b'A' };
    let mut sum = 0u32;
    for (k, &c) in code[..15].iter().enumerate() {
        // Places are counted from 1: the odd ones are at even indexes.
        sum += if k % 2 == 0 { ODD[value(c) as usize] } else { value(c) } as u32;
    }
    (code[15] == b'A' + (sum % 26) as u8).then_some((Some(Detector::ItCodiceFiscale), Decided::Match(s, end), end))
}

/// A Spanish NIE from its `X`, `Y` or `Z` at `s`: seven digits and a
/// check letter.
pub fn nie(text: &[u8], s: usize, complete: bool) -> Option<Found> {
    let prefix = match text[s] {
        b'X' => 0,
        b'Y' => 1,
        b'Z' => 2,
        _ => return None,
    };
    let digits = text[s + 1..].iter().take(8).take_while(|b| b.is_ascii_digit()).count();
    if !complete && s + 1 + digits == text.len() && digits <= 7 {
        return Some((None, Decided::NeedMore(s), text.len()));
    }
    if digits != 7 {
        return None;
    }
    let n = text[s + 1..s + 8].iter().fold(prefix, |n, &b| n * 10 + (b - b'0') as u32);
    dni_letter(text, s, s + 8, n, complete)
}

/// The letter of a DNI or NIE after its digits end at `at`, with an
/// optional `-` or space before it.
fn dni_letter(text: &[u8], s: usize, at: usize, n: u32, complete: bool) -> Option<Found> {
    const LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";
    let mut at = at;
    if matches!(text.get(at), Some(b'-' | b' ')) {
        at += 1;
    }
    if at >= text.len() || (!complete && at + 1 == text.len()) {
        return (!complete).then_some((None, Decided::NeedMore(s), text.len()));
    }
    let ok = text[at] == LETTERS[(n % 23) as usize] && boundary(text, at + 1);
    ok.then_some((Some(Detector::EsDni), Decided::Match(s, at + 1), at + 1))
}

/// A number as the digit pass read it: where it begins and ends, its
/// digits' values, its groups and the separators between them.
pub struct Number<'a> {
    pub start: usize,
    pub end: usize,
    pub digits: &'a [u8],
    pub groups: &'a [usize],
    pub seps: &'a [u8],
}

/// The detectors read from a number's digits alone (and a DNI's letter
/// after them).
pub fn digits_only(ids: Ids, text: &[u8], number: &Number<'_>, complete: bool) -> Option<Found> {
    let Number { start, end, digits: ds, groups, seps } = *number;
    let count = groups.iter().sum::<usize>();
    let same = |set: &[u8]| seps.iter().all(|s| set.contains(s)) && seps.windows(2).all(|w| w[0] == w[1]);
    let found = |d: Detector| Some((Some(d), Decided::Match(start, end), end));
    if ids.has(Detector::EsDni) && count == 8 && groups.len() == 1 {
        let n = ds[..8].iter().fold(0u32, |n, &d| n * 10 + d as u32);
        if let Some(r) = dni_letter(text, start, end, n, complete) {
            return Some(r);
        }
    }
    if end < text.len() && word(text[end]) {
        return None;
    }
    if ids.has(Detector::BrCpf)
        && count == 11
        && (groups.len() == 1 || (groups == [3, 3, 3, 2] && seps == b"..-"))
        && cpf(&ds[..11])
    {
        return found(Detector::BrCpf);
    }
    if ids.has(Detector::CaSin)
        && count == 9
        && (groups.len() == 1 || (groups == [3, 3, 3] && same(b" -")))
        && !matches!(ds[0], 0 | 8)
        && luhn(&text[start..end])
    {
        return found(Detector::CaSin);
    }
    if ids.has(Detector::InAadhaar)
        && count == 12
        && (groups.len() == 1 || (groups == [4, 4, 4] && same(b" -")))
        && ds[0] >= 2
        && verhoeff(&ds[..12])
    {
        return found(Detector::InAadhaar);
    }
    if ids.has(Detector::FrNir)
        && count == 15
        && (groups.len() == 1 || (groups == [1, 2, 2, 2, 3, 3, 2] && same(b" ")))
        && nir(&ds[..15])
    {
        return found(Detector::FrNir);
    }
    None
}

fn cpf(d: &[u8]) -> bool {
    if d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let check = |n: usize| {
        let sum: u32 = d[..n].iter().enumerate().map(|(k, &x)| x as u32 * (n + 1 - k) as u32).sum();
        ((sum * 10) % 11 % 10) as u8
    };
    check(9) == d[9] && check(10) == d[10]
}

/// Verhoeff's dihedral check (the last digit checks the rest).
fn verhoeff(d: &[u8]) -> bool {
    const M: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const P: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    let mut c = 0u8;
    for (k, &x) in d.iter().rev().enumerate() {
        c = M[c as usize][P[k % 8][x as usize] as usize];
    }
    c == 0
}

/// Sex 1, 2 (3, 4, 7, 8 for provisional numbers), a month 01-12 (20-42 or
/// 50-99 where the month is unknown), and the key: 97 less the first 13
/// digits mod 97.
fn nir(d: &[u8]) -> bool {
    let month = d[3] * 10 + d[4];
    if !matches!(d[0], 1 | 2 | 3 | 4 | 7 | 8)
        || !((1..=12).contains(&month) || (20..=42).contains(&month) || month >= 50)
    {
        return false;
    }
    let n = d[..13].iter().fold(0u64, |n, &x| n * 10 + x as u64);
    let key = (d[13] * 10 + d[14]) as u64;
    key == 97 - n % 97
}

/// The Luhn check over the digits of `s` (separators skipped).
pub(crate) fn luhn(s: &[u8]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Well-known valid examples (CPF 111.444.777-35, SIN 046 454 286,
    /// Verhoeff's 2363 from its Wikipedia article), numbers made valid by
    /// each check's definition, and each with one digit changed.
    #[test]
    fn check_digits() {
        let digits = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<u8>>();
        assert!(cpf(&digits("11144477735")));
        assert!(!cpf(&digits("11144477736")));
        assert!(!cpf(&digits("11111111111")), "a repeated digit passes the sums but is never issued");
        assert!(luhn(b"046 454 286"));
        assert!(!luhn(b"046 454 287"));
        assert!(verhoeff(&digits("2363")));
        assert!(!verhoeff(&digits("2364")));
        assert!(verhoeff(&digits("499118765432")));
        assert!(!verhoeff(&digits("499118765433")));
        assert!(nir(&digits("185057800608491")));
        assert!(!nir(&digits("185057800608492")));
        assert!(!nir(&digits("585057800608491")), "sex digit 5 is not issued");
    }
}
