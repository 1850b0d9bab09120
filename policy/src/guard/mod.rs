//! Guardrails: finding personal data, secrets, prompt injection and a
//! profile's own deny rules in text, and deciding what to do about each hit.
//!
//! One [`Guard`] is compiled per profile at load time. A scan makes few
//! passes over the text, each of them a SIMD search, and runs a validator
//! only where a pass found a candidate:
//!
//! - one pass (`anchors`, ASCII case-insensitive) finds every literal
//!   anchor where it can count (at a word's start, a label at a word's end):
//!   secret prefixes (`sk-`, `AKIA`, `ghp_`, `-----BEGIN`, `eyJ`), password
//!   labels, the first words of the injection phrases, chat template tokens
//!   and the profile's deny words;
//! - a SWAR scan finds digits (phone, card, SSN, IBAN, IPv4);
//! - `memchr` finds `@` (e-mail) and `:` (IPv6).
//!
//! Validators ([`detect`]) check the structure (Luhn, mod-97, SSN ranges,
//! address syntax) so that near-misses such as order numbers do not count.
//! Nothing here backtracks: custom regular expressions run on the `regex`
//! crate's linear-time engines with a compiled-size limit.
//!
//! A scan of text that may continue (a stream) reports how far the text is
//! settled: no match can start before that offset and still be growing.
//! [`stream::TextStream`] uses it to hold back only the unsettled tail.
//!
//! A hit carries the rule, its place and the action, never the matched
//! text: records must not become the leak they report.

mod anchors;
pub mod detect;
pub mod injection;
pub mod model;
pub mod national;
pub mod stream;

#[cfg(test)]
mod tests;

use std::fmt;

use anchors::{Anchors, Place};

/// Runs of request texts that profiles scanned and found nothing in, by a
/// keyed hash of the profile, the caller's scope (the team) and the texts
/// ([`RunHash`]): one per core (never shared), emptied with its core's
/// state on a reload, or when full.
pub struct CleanTexts {
    /// The hash's secret point, random per process.
    point: u64,
    /// Each remembered run, and whether the supporting phrases were
    /// looked for in it too (see [`RequestTexts`]).
    set: std::collections::HashMap<u64, bool>,
    /// The held texts' room, lent to each request that holds a run and
    /// given back when it ends, so that requests do not allocate it again.
    scratch: (Vec<u8>, Vec<(u32, usize)>),
}

impl CleanTexts {
    /// Runs remembered at most (about 64 KiB of memory).
    pub const ENTRIES: usize = 4096;
    /// A run is closed (looked up, and remembered if clean) once its texts
    /// hold this many bytes. A shorter run is left only before the body's
    /// newest text, and is scanned every time (the next turn extends it),
    /// or at the body's end, where it is closed though short
    /// ([`RequestTexts::finish`]).
    pub const MIN_BYTES: usize = 1024;
    /// The held texts' room kept between requests at most (the texts and
    /// their ends together): a run is closed at `MIN_BYTES`, but a long
    /// text after short ones is held with them, and a run of many empty
    /// texts holds many ends; that room is let go rather than kept.
    const SCRATCH_BYTES_MAX: usize = 16 * 1024;

    pub fn new() -> CleanTexts {
        use std::hash::BuildHasher;
        // std seeds each RandomState from the OS's random source.
        let random = std::hash::RandomState::new().hash_one(0x746f_6c6c_6761_7465u64);
        CleanTexts {
            point: 1 + random % (RunHash::P - 1),
            set: std::collections::HashMap::new(),
            scratch: Default::default(),
        }
    }

    fn run(&self, guard: &Guard, scope: u64) -> RunHash {
        let mut h = RunHash::new(self.point);
        h.word(guard as *const Guard as usize as u64 & RunHash::WORD);
        h.word(scope & RunHash::WORD);
        h
    }

    /// How many runs are remembered.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// The key of a run: a polynomial over the prime field of 2^61 - 1,
/// evaluated at a secret random point, whose coefficients are the run's
/// words (7 bytes each, plus one, so that no coefficient is zero): each
/// text's length, then its bytes. Two different runs of at most n words
/// collide only where their difference, a nonzero polynomial of degree at
/// most n, has a root: for at most n of the 2^61 - 2 points. A hostile
/// tenant, who never sees a key, makes a text whose run collides with one
/// of 4,096 remembered ones with a chance of at most 4096 n / 2^61 per
/// try: about 2^-35 for a run of 100 KB (14,630 words), 2^-42 for one of
/// 1 KB. A request's runs together hold at most its body's words, so a
/// request's chance is at most 4096 w / 2^61 for a body of w words:
/// 2^-29 at the 8 MiB `body_bytes_max` the gateway ships with, so about
/// 2^29 bodies of 8 MiB (4 PB) for an even chance of one collision; a
/// failed try tells the tenant only that the point is not among its
/// polynomial's roots.
/// Two words cost two multiplications and one fold (Horner's two steps
/// at once, with the point's square); SipHash cost 2.8 instructions a
/// byte (an agent's 32 KB body, 591,767 instructions a request with
/// SipHash, 572,397 with one word a step).
#[derive(Clone, Copy)]
pub(crate) struct RunHash {
    point: u64,
    /// `point` squared, modulo P.
    square: u64,
    acc: u64,
}

impl RunHash {
    const P: u64 = (1 << 61) - 1;
    /// A word's bits: 7 bytes.
    const WORD: u64 = (1 << 56) - 1;

    pub(crate) fn new(point: u64) -> RunHash {
        let square = ((point as u128 * point as u128) % Self::P as u128) as u64;
        RunHash { point, square, acc: 0 }
    }

    /// Two words at once: `acc * point^2 + (a + 1) * point + b + 1`, which
    /// is `word(a)` then `word(b)`, folded as `word` folds (`a` and `b`
    /// below 2^56). The two products' sum is below 2^123, its high part
    /// below 2^62, and the folded sum below 2^63.
    #[inline(always)]
    fn two(&mut self, a: u64, b: u64) {
        let sum = self.acc as u128 * self.square as u128 + (a + 1) as u128 * self.point as u128;
        let sum = (sum as u64 & Self::P) + (sum >> 61) as u64 + b + 1;
        self.acc = (sum & Self::P) + (sum >> 61);
    }

    /// `acc * point + word + 1`, folded below 2^61 + 4 (`word` below
    /// 2^56): congruent modulo P, reduced whole only by `finish`. With
    /// `acc` below 2^61 + 4 the product's high part is too, and the sum
    /// stays below 2^63.
    #[inline(always)]
    fn word(&mut self, word: u64) {
        let product = self.acc as u128 * self.point as u128;
        // 2^61 = 1 modulo P: the high bits fold onto the low ones.
        let sum = (product as u64 & Self::P) + (product >> 61) as u64 + word + 1;
        self.acc = (sum & Self::P) + (sum >> 61);
    }

    /// The text's length, then its bytes, 7 at a time (the last word
    /// zero-padded: the length tells it apart). A word is read as 8 bytes
    /// and masked while 8 are there; two at a time while 15 are.
    fn text(&mut self, text: &[u8]) {
        // A copy in registers: through `self` the loop stored the sum
        // back at every step.
        let mut h = *self;
        let read = |at: usize| u64::from_le_bytes(text[at..at + 8].try_into().expect("8 bytes")) & Self::WORD;
        h.word(text.len() as u64 & Self::WORD);
        let mut at = 0;
        while at + 15 <= text.len() {
            h.two(read(at), read(at + 7));
            at += 14;
        }
        while at + 8 <= text.len() {
            h.word(read(at));
            at += 7;
        }
        let rest = &text[at..];
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            h.word(u64::from_le_bytes(b));
        }
        *self = h;
    }

    /// The value modulo P: `acc` is below 2^61 + 4, under 2P.
    fn finish(&self) -> u64 {
        if self.acc >= Self::P {
            self.acc - Self::P
        } else {
            self.acc
        }
    }
}

impl Default for CleanTexts {
    fn default() -> Self {
        CleanTexts::new()
    }
}

/// A request's texts through one profile, in the order of the body, with
/// what `memory` remembers skipped: a conversation sends its history again
/// with every turn, and an agent its tool schemas, and 100 KB of them cost
/// a scan per request otherwise.
///
/// Texts are taken in runs: consecutive texts until they hold
/// [`CleanTexts::MIN_BYTES`], looked up as one by the hash of their
/// decoded bytes (each with its length, so that `ab`+`c` is not `a`+`bc`)
/// and scanned only if not remembered; a run in which every text found
/// exactly nothing is remembered. So a history of short turns, or a tool
/// list of short descriptions, is remembered as well as one long text. The
/// texts given as `last` (the body's newest, new with every request) are
/// scanned without being remembered, and so is the short run before them:
/// hashing them would cost every request and save none.
///
/// What the walk decides (which string values are texts, their order) is
/// the caller's, so a run's key is exactly what its scans would read: the
/// same texts in the same order find the same things, whatever the keys,
/// the structure or the texts around them.
pub struct RequestTexts<'g> {
    guard: &'g Guard,
    memory: Option<(&'g mut CleanTexts, u64)>,
    run: Option<RunHash>,
    /// The run's texts, decoded, kept until it is closed.
    held: Vec<u8>,
    /// Each held text: its index among the request's texts, its end in `held`.
    texts: Vec<(u32, usize)>,
}

impl<'g> RequestTexts<'g> {
    pub fn new(guard: &'g Guard, mut memory: Option<(&'g mut CleanTexts, u64)>) -> RequestTexts<'g> {
        let (held, texts) = memory.as_mut().map(|(m, _)| std::mem::take(&mut m.scratch)).unwrap_or_default();
        RequestTexts { guard, memory, run: None, held, texts }
    }

    /// The request's text `index` (numbered in the body's order, as
    /// `findings` files them). `last`: little enough of the body follows it
    /// that it is the newest (see the type's documentation).
    pub fn text(&mut self, index: u32, text: &[u8], last: bool, findings: &mut Findings) {
        let Some((memory, scope)) = self.memory.as_mut().filter(|_| !last) else {
            self.scan_held(findings);
            self.guard.scan(text, Direction::Request, true, findings);
            findings.file(index);
            return;
        };
        let run = self.run.get_or_insert_with(|| memory.run(self.guard, *scope));
        run.text(text);
        if self.texts.is_empty() && text.len() >= CleanTexts::MIN_BYTES {
            // A run of one long text is scanned where it lies, not copied.
            self.close(text, &[(index, text.len())], findings);
            return;
        }
        self.held.extend_from_slice(text);
        self.texts.push((index, self.held.len()));
        if self.held.len() >= CleanTexts::MIN_BYTES {
            // Taken and given back, so that their room serves the next run.
            let (mut held, mut texts) = (std::mem::take(&mut self.held), std::mem::take(&mut self.texts));
            self.close(&held, &texts, findings);
            held.clear();
            texts.clear();
            (self.held, self.texts) = (held, texts);
        }
    }

    /// Closes what is still held, though short, and settles the request's
    /// injection score. What the body's end leaves held came after the
    /// newest text (tool schemas, a system prompt written after the
    /// messages): sent again as it is with each request, and its short
    /// strings cost a scan several times what hashing them does. (The
    /// short run before the newest text is scanned without memory: it is
    /// the history's tail, which the next turn extends.)
    pub fn finish(mut self, findings: &mut Findings) {
        if !self.texts.is_empty() {
            let (held, texts) = (std::mem::take(&mut self.held), std::mem::take(&mut self.texts));
            self.close(&held, &texts, findings);
            // Given back to the memory when `self` is dropped.
            (self.held, self.texts) = (held, texts);
        }
        self.guard.settle(findings);
    }

    /// A full run: skipped if remembered, else scanned, and remembered if
    /// nothing was found in any of its texts.
    /// `held` holds the run's texts, each ending where `texts` says.
    fn close(&mut self, held: &[u8], texts: &[(u32, usize)], findings: &mut Findings) {
        let key = self.run.take().map(|run| run.finish());
        let (Some(key), Some((memory, _))) = (key, self.memory.as_mut()) else {
            // Not reached (a run is held only with a memory, and its key
            // begins with its first text); if it were, the texts are
            // scanned: never skipped for want of a key.
            for (index, text) in held_texts(held, texts) {
                self.guard.scan(text, Direction::Request, true, findings);
                findings.file(index);
            }
            return;
        };
        // The supporting phrases are looked for in a text only while the
        // request's injection score is above nothing and under the
        // threshold (and a run of nothing leaves the score as it found
        // it): a run remembered without them is skipped only where the
        // scan would not look for them either.
        let support = self.guard.wants_support(findings);
        if memory.set.get(&key).is_some_and(|&supported| supported || !support) {
            return;
        }
        let mut nothing = true;
        for (index, text) in held_texts(held, texts) {
            nothing &= self.guard.scan_request_nothing(text, findings);
            findings.file(index);
        }
        if nothing {
            if memory.set.len() >= CleanTexts::ENTRIES {
                memory.set.clear();
            }
            // Scanned with them or without: a run once found clean of them
            // stays so.
            *memory.set.entry(key).or_insert(support) |= support;
        }
    }

    /// Scans the held texts without looking them up or remembering them.
    fn scan_held(&mut self, findings: &mut Findings) {
        self.run = None;
        for (index, text) in held_texts(&self.held, &self.texts) {
            self.guard.scan(text, Direction::Request, true, findings);
            findings.file(index);
        }
        self.held.clear();
        self.texts.clear();
    }
}

impl Drop for RequestTexts<'_> {
    /// The held texts' room goes back to the memory for the next request
    /// (finished, or ended early by a block).
    fn drop(&mut self) {
        if let Some((memory, _)) = self.memory.as_mut() {
            let room = self.held.capacity() + self.texts.capacity() * std::mem::size_of::<(u32, usize)>();
            if room <= CleanTexts::SCRATCH_BYTES_MAX {
                self.held.clear();
                self.texts.clear();
                memory.scratch = (std::mem::take(&mut self.held), std::mem::take(&mut self.texts));
            }
        }
    }
}

/// The held texts with their indices: `held` cut where `texts` says each
/// ends.
fn held_texts<'a>(held: &'a [u8], texts: &'a [(u32, usize)]) -> impl Iterator<Item = (u32, &'a [u8])> + 'a {
    let starts = std::iter::once(0).chain(texts.iter().map(|&(_, end)| end));
    texts.iter().zip(starts).map(move |(&(index, end), start)| (index, &held[start..end]))
}

/// What a profile does about a hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Forwarded unchanged, and recorded.
    Flag,
    /// Replaced by a typed placeholder such as `[EMAIL]`.
    Redact,
    /// The request is refused, or the stream ended.
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Flag => "flag",
            Action::Redact => "redact",
            Action::Block => "block",
        }
    }
}

/// Every built-in detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    Email,
    Phone,
    Card,
    Ssn,
    Iban,
    Ipv4,
    Ipv6,
    OpenAiKey,
    AnthropicKey,
    AwsKey,
    GithubToken,
    SlackToken,
    PrivateKey,
    Jwt,
    Password,
    Injection,
    UkNino,
    CaSin,
    InAadhaar,
    BrCpf,
    EsDni,
    ItCodiceFiscale,
    FrNir,
}

/// The category a detector belongs to; a profile sets an action per
/// category and may override it per detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Pii,
    Secrets,
    Injection,
}

impl Detector {
    /// How many detectors there are (the size of a profile's action table).
    pub const COUNT: usize = 23;

    /// The national identifiers: off unless a profile names them in
    /// `detectors` (a category's action does not turn them on).
    pub const NATIONAL: [Detector; 7] = [
        Detector::UkNino,
        Detector::CaSin,
        Detector::InAadhaar,
        Detector::BrCpf,
        Detector::EsDni,
        Detector::ItCodiceFiscale,
        Detector::FrNir,
    ];

    /// Every detector a category's action turns on.
    pub const ALL: [Detector; 16] = [
        Detector::Email,
        Detector::Phone,
        Detector::Card,
        Detector::Ssn,
        Detector::Iban,
        Detector::Ipv4,
        Detector::Ipv6,
        Detector::OpenAiKey,
        Detector::AnthropicKey,
        Detector::AwsKey,
        Detector::GithubToken,
        Detector::SlackToken,
        Detector::PrivateKey,
        Detector::Jwt,
        Detector::Password,
        Detector::Injection,
    ];

    /// The name used in the configuration and the labelled corpus.
    pub fn name(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::Card => "card",
            Detector::Ssn => "ssn",
            Detector::Iban => "iban",
            Detector::Ipv4 => "ipv4",
            Detector::Ipv6 => "ipv6",
            Detector::OpenAiKey => "openai_key",
            Detector::AnthropicKey => "anthropic_key",
            Detector::AwsKey => "aws_key",
            Detector::GithubToken => "github_token",
            Detector::SlackToken => "slack_token",
            Detector::PrivateKey => "private_key",
            Detector::Jwt => "jwt",
            Detector::Password => "password",
            Detector::Injection => "injection",
            Detector::UkNino => "uk_nino",
            Detector::CaSin => "ca_sin",
            Detector::InAadhaar => "in_aadhaar",
            Detector::BrCpf => "br_cpf",
            Detector::EsDni => "es_dni",
            Detector::ItCodiceFiscale => "it_codice_fiscale",
            Detector::FrNir => "fr_nir",
        }
    }

    /// The rule id records, metrics and errors name it by: its category
    /// and its name (`pii.email`), written out so that naming a hit
    /// allocates nothing (`Display for Rule` and a test agree).
    pub fn rule_id(self) -> &'static str {
        match self {
            Detector::Email => "pii.email",
            Detector::Phone => "pii.phone",
            Detector::Card => "pii.card",
            Detector::Ssn => "pii.ssn",
            Detector::Iban => "pii.iban",
            Detector::Ipv4 => "pii.ipv4",
            Detector::Ipv6 => "pii.ipv6",
            Detector::OpenAiKey => "secret.openai_key",
            Detector::AnthropicKey => "secret.anthropic_key",
            Detector::AwsKey => "secret.aws_key",
            Detector::GithubToken => "secret.github_token",
            Detector::SlackToken => "secret.slack_token",
            Detector::PrivateKey => "secret.private_key",
            Detector::Jwt => "secret.jwt",
            Detector::Password => "secret.password",
            Detector::Injection => "injection",
            Detector::UkNino => "pii.uk_nino",
            Detector::CaSin => "pii.ca_sin",
            Detector::InAadhaar => "pii.in_aadhaar",
            Detector::BrCpf => "pii.br_cpf",
            Detector::EsDni => "pii.es_dni",
            Detector::ItCodiceFiscale => "pii.it_codice_fiscale",
            Detector::FrNir => "pii.fr_nir",
        }
    }

    /// Every detector, the national ones last.
    pub fn every() -> impl Iterator<Item = Detector> {
        Detector::ALL.into_iter().chain(Detector::NATIONAL)
    }

    pub fn from_name(name: &str) -> Option<Detector> {
        Detector::every().find(|d| d.name() == name)
    }

    pub fn category(self) -> Category {
        match self {
            Detector::Email
            | Detector::Phone
            | Detector::Card
            | Detector::Ssn
            | Detector::Iban
            | Detector::Ipv4
            | Detector::Ipv6
            | Detector::UkNino
            | Detector::CaSin
            | Detector::InAadhaar
            | Detector::BrCpf
            | Detector::EsDni
            | Detector::ItCodiceFiscale
            | Detector::FrNir => Category::Pii,
            Detector::Injection => Category::Injection,
            _ => Category::Secrets,
        }
    }

    /// What a redacted match becomes.
    pub fn placeholder(self) -> &'static str {
        match self {
            Detector::Email => "[EMAIL]",
            Detector::Phone => "[PHONE]",
            Detector::Card => "[CARD]",
            Detector::Ssn => "[SSN]",
            Detector::Iban => "[IBAN]",
            Detector::Ipv4 | Detector::Ipv6 => "[IP]",
            Detector::OpenAiKey => "[OPENAI_KEY]",
            Detector::AnthropicKey => "[ANTHROPIC_KEY]",
            Detector::AwsKey => "[AWS_KEY]",
            Detector::GithubToken => "[GITHUB_TOKEN]",
            Detector::SlackToken => "[SLACK_TOKEN]",
            Detector::PrivateKey => "[PRIVATE_KEY]",
            Detector::Jwt => "[JWT]",
            Detector::Password => "[PASSWORD]",
            Detector::Injection => "[INJECTION]",
            Detector::UkNino => "[NINO]",
            Detector::CaSin => "[SIN]",
            Detector::InAadhaar => "[AADHAAR]",
            Detector::BrCpf => "[CPF]",
            Detector::EsDni => "[DNI]",
            Detector::ItCodiceFiscale => "[CODICE_FISCALE]",
            Detector::FrNir => "[NIR]",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which rule a hit broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    Detector(Detector),
    /// A profile's deny word, by index.
    DenyWord(u16),
    /// A profile's deny pattern, by index.
    DenyPattern(u16),
    /// A profile's external classifier, by its position in the profile.
    Classifier(u16),
}

impl Rule {
    pub fn placeholder(self) -> &'static str {
        match self {
            Rule::Detector(d) => d.placeholder(),
            Rule::DenyWord(_) | Rule::DenyPattern(_) | Rule::Classifier(_) => "[REDACTED]",
        }
    }
}

impl fmt::Display for Rule {
    /// The stable rule id used in records, metrics and error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Detector(d) => f.write_str(d.rule_id()),
            Rule::DenyWord(i) => write!(f, "custom.word.{i}"),
            Rule::DenyPattern(i) => write!(f, "custom.pattern.{i}"),
            Rule::Classifier(i) => write!(f, "classifier.{i}"),
        }
    }
}

/// One match: the rule, where it is in the scanned text, and the action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub rule: Rule,
    pub start: usize,
    pub end: usize,
    pub action: Action,
}

/// Which way the text travels; injection is looked for in prompts only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Request,
    Response,
}

/// A profile as written in the configuration, before compilation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProfileSpec {
    pub name: String,
    /// Action per detector; `None`: the detector is off.
    pub actions: [Option<Action>; Detector::COUNT],
    pub deny_words: Vec<String>,
    pub deny_patterns: Vec<String>,
    pub custom_action: Option<Action>,
    /// Injection score (sum of phrase weights) at which a prompt is a hit.
    pub injection_threshold: u32,
    /// Scan answers as well as requests.
    pub responses: bool,
    /// A guardrail that cannot run lets the request through instead of
    /// blocking it.
    pub fail_open: bool,
}

/// Deny patterns are compiled with this limit; a bigger one is a
/// configuration error rather than a slow scan.
pub const PATTERN_BYTES_MAX: usize = 1 << 20;

/// The anchor an Aho-Corasick match stands for.
#[derive(Clone, Copy, Debug)]
enum Anchor {
    Secret(detect::SecretAnchor),
    Injection(u16),
    DenyWord(u16),
}

/// One anchor found: which literal, where.
struct AnchorMatch {
    pattern: usize,
    start: usize,
    end: usize,
}

impl AnchorMatch {
    fn start(&self) -> usize {
        self.start
    }

    fn end(&self) -> usize {
        self.end
    }
}

/// A compiled profile.
pub struct Guard {
    pub name: String,
    actions: [Option<Action>; Detector::COUNT],
    custom_action: Option<Action>,
    pub injection_threshold: u32,
    pub responses: bool,
    pub fail_open: bool,
    anchors: Option<Anchors>,
    anchor_kinds: Vec<Anchor>,
    patterns: Vec<regex::bytes::Regex>,
    digits: bool,
    /// National identifiers switched on.
    national: national::Ids,
    email: bool,
    ipv6: bool,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A deny pattern that does not compile, by index.
#[derive(Debug)]
pub struct PatternError {
    pub index: usize,
    pub message: String,
}

impl Guard {
    pub fn compile(spec: &ProfileSpec) -> Result<Guard, PatternError> {
        let on = |d: Detector| spec.actions[d.index()].is_some();
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut anchor_kinds = Vec::new();
        // Where each can count (see `anchors`): the labels end a word,
        // every other validator refuses a match that continues one.
        let mut places = Vec::new();
        for (literal, anchor) in detect::SECRET_ANCHORS {
            if anchor.detectors().iter().any(|&d| on(d)) {
                literals.push(literal.as_bytes().to_vec());
                anchor_kinds.push(Anchor::Secret(*anchor));
                places.push(if *anchor == detect::SecretAnchor::Label { Place::End } else { Place::Start });
            }
        }
        if on(Detector::Injection) {
            // The supporting phrases' automaton is built here, at load,
            // not by the first request whose texts need it (730,000
            // instructions, once per process).
            let _ = injection::supporting(b"").next();
            for (i, literal) in injection::anchors().iter().enumerate() {
                literals.push(literal.as_bytes().to_vec());
                anchor_kinds.push(Anchor::Injection(i as u16));
                places.push(Place::Start);
            }
        }
        if spec.custom_action.is_some() {
            for (i, w) in spec.deny_words.iter().enumerate() {
                literals.push(w.as_bytes().to_vec());
                anchor_kinds.push(Anchor::DenyWord(i as u16));
                places.push(Place::Start);
            }
        }
        let anchors = if literals.is_empty() { None } else { Some(Anchors::build(&literals, &places)) };
        let mut patterns = Vec::new();
        if spec.custom_action.is_some() {
            for (index, p) in spec.deny_patterns.iter().enumerate() {
                let re = regex::bytes::RegexBuilder::new(p)
                    .size_limit(PATTERN_BYTES_MAX)
                    .dfa_size_limit(PATTERN_BYTES_MAX)
                    .build()
                    .map_err(|e| PatternError { index, message: e.to_string() })?;
                patterns.push(re);
            }
        }
        let national =
            Detector::NATIONAL.into_iter().filter(|&d| on(d)).fold(national::Ids::default(), national::Ids::with);
        let digits =
            [Detector::Phone, Detector::Card, Detector::Ssn, Detector::Iban, Detector::Ipv4].into_iter().any(on)
                || national.any();
        Ok(Guard {
            name: spec.name.clone(),
            actions: spec.actions,
            custom_action: spec.custom_action,
            injection_threshold: spec.injection_threshold.max(1),
            responses: spec.responses,
            fail_open: spec.fail_open,
            anchors,
            anchor_kinds,
            patterns,
            digits,
            national,
            email: on(Detector::Email),
            ipv6: on(Detector::Ipv6),
        })
    }

    pub fn action(&self, d: Detector) -> Option<Action> {
        self.actions[d.index()]
    }

    /// Scans one complete text of a request, as [`Guard::scan`] does, and
    /// says whether it found exactly nothing: no hit, no injection phrase
    /// counted, no feature. Only runs of such texts are remembered
    /// ([`RequestTexts`]).
    fn scan_request_nothing(&self, text: &[u8], findings: &mut Findings) -> bool {
        // Every injection place, score and feature a scan adds passes
        // `count_phrase`, which counts each match: hits and that count
        // unchanged is nothing found.
        let before = (findings.hits.len(), findings.phrases_matched);
        self.scan(text, Direction::Request, true, findings);
        before == (findings.hits.len(), findings.phrases_matched) && findings.open.is_empty()
    }

    /// Whether a request text scanned now is also searched for the
    /// supporting phrases (what [`Guard::scan`] decides from the score the
    /// request's earlier texts left).
    fn wants_support(&self, findings: &Findings) -> bool {
        self.action(Detector::Injection).is_some()
            && findings.injection_score > 0
            && findings.injection_score < self.injection_threshold
    }

    /// Whether anything at all is looked for in `direction`.
    pub fn applies(&self, direction: Direction) -> bool {
        direction == Direction::Request || self.responses
    }

    /// Scans `text` and appends its hits to `findings`. `complete` is false
    /// for text that may continue (a stream): a candidate that runs to the
    /// end is then left for the next scan. Returns the settled length: no
    /// match that starts before it can still change.
    pub fn scan(&self, text: &[u8], direction: Direction, complete: bool, findings: &mut Findings) -> usize {
        let mut settled = text.len();
        // A verdict becomes a hit (when the rule is on) or moves the
        // settled length back to where an unfinished candidate starts.
        findings.open.clear();
        let mut push = |findings: &mut Findings, rule: Rule, action: Option<Action>, v: detect::Verdict| match v {
            detect::Verdict::Match(start, end) => {
                if let Some(action) = action {
                    findings.hits.push(Hit { rule, start, end, action });
                }
            }
            detect::Verdict::Open(start, end, tail) => {
                if let Some(action) = action {
                    findings.hits.push(Hit { rule, start, end, action });
                    findings.open.push(OpenMatch { rule, start, tail });
                }
            }
            detect::Verdict::NeedMore(start) => settled = settled.min(start),
            detect::Verdict::No => {}
        };
        if let Some(anchors) = &self.anchors {
            let mut matches = std::mem::take(&mut findings.anchors);
            matches.clear();
            let high = anchors.find(text, &mut matches);
            for &(pattern, start, end) in &matches {
                let m = AnchorMatch { pattern, start, end };
                match self.anchor_kinds[m.pattern] {
                    Anchor::Secret(anchor) => {
                        let (detector, v) = detect::secret(anchor, text, m.start(), m.end(), complete);
                        push(findings, Rule::Detector(detector), self.action(detector), v);
                    }
                    Anchor::Injection(i) if direction == Direction::Request => {
                        if let Some(p) = injection::match_at(i as usize, text, m.start(), m.end()) {
                            findings.count_phrase(p.phrase, p.weight);
                            findings.injection.push((p.start, p.end));
                        }
                    }
                    Anchor::Injection(_) => {}
                    Anchor::DenyWord(i) => {
                        let v = detect::whole_word(text, m.start(), m.end(), complete);
                        push(findings, Rule::DenyWord(i), self.custom_action, v);
                    }
                }
            }
            findings.anchors = matches;
            // Something but not enough: the supporting phrases may add
            // what is missing (a second automaton, which clean text never
            // runs).
            if direction == Direction::Request && self.wants_support(findings) {
                for p in injection::supporting(text) {
                    findings.count_phrase(p.phrase, p.weight);
                    findings.injection.push((p.start, p.end));
                }
            }
            // Zero-width characters, look-alike letters: the phrases are
            // looked for again in the text with them undone.
            if high && direction == Direction::Request && self.action(Detector::Injection).is_some() {
                if let Some((clean, from)) = injection::deobfuscated(text) {
                    let place = |s: usize, e: usize| (from[s] as usize, from[e - 1] as usize + 1);
                    self.injection_within(&clean, findings, place, injection::OBFUSCATED);
                }
            }
        }
        // `base64: SWdub3Jl...`: the payload decoded is read for phrases,
        // found at the payload. The word is noticed by the digit pass where
        // there is one (its `64`), not by a pass of its own.
        let encoded = direction == Direction::Request && self.action(Detector::Injection).is_some();
        let mut announced: [usize; 4] = [0; 4];
        let mut announcements = 0;
        if encoded && !self.digits {
            for after in injection::encoding_announced(text).take(announced.len()) {
                announced[announcements] = after;
                announcements += 1;
            }
        }
        if self.digits {
            let mut at = 0;
            while let Some(i) = detect::next_digit(text, at) {
                if encoded && announcements < announced.len() && injection::announces_at(text, i) {
                    announced[announcements] = i + 2;
                    announcements += 1;
                }
                let (detector, v, next) = detect::number(text, i, complete, self.national);
                if let Some(detector) = detector {
                    push(findings, Rule::Detector(detector), self.action(detector), v);
                } else if let detect::Verdict::NeedMore(_) = v {
                    push(findings, Rule::Detector(Detector::Phone), None, v);
                }
                at = next.max(i + 1);
            }
        }
        for &after in &announced[..announcements] {
            for (start, end, decoded) in injection::encoded_after(text, after) {
                let place = |_: usize, _: usize| (start, end);
                self.injection_within(&decoded, findings, place, injection::ENCODED);
            }
        }
        if self.email {
            let mut at = 0;
            while let Some(i) = detect::next_byte(b'@', text, at) {
                let (v, next) = detect::email(text, i, complete);
                push(findings, Rule::Detector(Detector::Email), self.action(Detector::Email), v);
                at = next.max(i + 1);
            }
        }
        if self.ipv6 {
            let mut at = 0;
            while let Some(i) = detect::next_byte(b':', text, at) {
                let (v, next) = detect::ipv6(text, i, complete);
                push(findings, Rule::Detector(Detector::Ipv6), self.action(Detector::Ipv6), v);
                at = next.max(i + 1);
            }
        }
        for (i, re) in self.patterns.iter().enumerate() {
            for m in re.find_iter(text) {
                let v = if !complete && m.end() == text.len() {
                    detect::Verdict::NeedMore(m.start())
                } else if m.start() < m.end() {
                    detect::Verdict::Match(m.start(), m.end())
                } else {
                    detect::Verdict::No
                };
                push(findings, Rule::DenyPattern(i as u16), self.custom_action, v);
            }
        }
        after_tokens(text, &mut findings.hits);
        settled
    }

    /// Scans `form`, another form of request text `index` that reaches the
    /// provider as it is here (a string of the JSON that the text itself
    /// is, decoded: a tool call's `arguments`, which a translation to
    /// another provider's API decodes and sends as JSON), and files what it
    /// finds under `index`, each place moved into the text's own terms by
    /// `place` (start, end in `form` to start, end in the text). Injection
    /// phrases count towards the request's score as the text's own do (a
    /// phrase counts once however many forms hold it).
    pub fn scan_request_form(
        &self,
        index: u32,
        form: &[u8],
        place: impl Fn(usize, usize) -> (usize, usize),
        findings: &mut Findings,
    ) {
        let (hits, phrases) = (findings.hits.len(), findings.injection.len());
        self.scan(form, Direction::Request, true, findings);
        for h in &mut findings.hits[hits..] {
            (h.start, h.end) = place(h.start, h.end);
        }
        for p in &mut findings.injection[phrases..] {
            *p = place(p.0, p.1);
        }
        findings.file(index);
    }

    /// Looks for injection phrases in `text`, a form of the scanned text
    /// (decoded, or cleaned of obfuscation): each phrase not already
    /// counted counts, placed by `place` in the scanned text, and so does
    /// the `feature` (how it was hidden) once.
    fn injection_within(
        &self,
        text: &[u8],
        findings: &mut Findings,
        place: impl Fn(usize, usize) -> (usize, usize),
        feature: usize,
    ) {
        let Some(anchors) = &self.anchors else { return };
        let mut matches = Vec::new();
        anchors.find(text, &mut matches);
        let mut hidden = false;
        for (pattern, start, end) in matches {
            let Anchor::Injection(i) = self.anchor_kinds[pattern] else { continue };
            if let Some(p) = injection::match_at(i as usize, text, start, end) {
                if findings.count_phrase(p.phrase, p.weight) {
                    hidden = true;
                    findings.injection.push(place(p.start, p.end));
                }
            }
        }
        if hidden {
            let weight =
                if feature == injection::OBFUSCATED { injection::OBFUSCATED_WEIGHT } else { injection::ENCODED_WEIGHT };
            findings.count_phrase(feature, weight);
        }
    }

    /// Ends a request's scans: the injection phrases found across all its
    /// texts become hits if their weights reach the threshold. Hits are
    /// sorted by text, then position.
    pub fn settle(&self, findings: &mut Findings) {
        if let Some(action) = self.action(Detector::Injection) {
            if findings.injection_score >= self.injection_threshold {
                for &(text, start, end) in &findings.injection_at {
                    findings.all.push((text, Hit { rule: Rule::Detector(Detector::Injection), start, end, action }));
                }
            }
        }
        findings.injection_at.clear();
        if findings.injection_score < self.injection_threshold {
            findings.injection_features.clear();
        }
        findings.all.sort_by_key(|(text, h)| (*text, h.start));
    }
}

/// A match that runs on past the end of a decided key, token or
/// password value begins where that ends: one that starts inside it (a
/// number whose first digits were the value's last), and an address found
/// by looking back from its `@` or `:` into it. A stream releases a key as
/// soon as it is decided, before what follows it has come; the whole text
/// must give what the stream can.
fn after_tokens(text: &[u8], hits: &mut [Hit]) {
    let token = |h: &Hit| {
        matches!(
            h.rule,
            Rule::Detector(
                Detector::OpenAiKey
                    | Detector::AnthropicKey
                    | Detector::GithubToken
                    | Detector::SlackToken
                    | Detector::Jwt
                    | Detector::PrivateKey
                    | Detector::Password
            )
        )
    };
    if hits.len() < 2 || !hits.iter().any(token) {
        return;
    }
    for i in 0..hits.len() {
        if token(&hits[i]) {
            continue;
        }
        let (start, end) = (hits[i].start, hits[i].end);
        // Where the match was found from: an address's first `@` or `:`,
        // anything else's start.
        let trigger = match hits[i].rule {
            Rule::Detector(Detector::Email) => memchr::memchr(b'@', &text[start..end]).map(|t| t + start),
            Rule::Detector(Detector::Ipv6) => memchr::memchr(b':', &text[start..end]).map(|t| t + start),
            _ => Some(start),
        };
        let Some(trigger) = trigger else { continue };
        let runs_past = hits.iter().filter(|h| {
            // It ends inside the match, which began in it or looked back
            // into it.
            token(h) && h.end > start && h.end < end && (h.start <= start || h.end <= trigger)
        });
        if let Some(stop) = runs_past.map(|h| h.end).max() {
            hits[i].start = stop;
        }
    }
}

/// Hits of one request or answer, across all the texts it carries.
#[derive(Debug, Default)]
pub struct Findings {
    /// Hits of the text being scanned now.
    pub hits: Vec<Hit>,
    /// Injection phrases of the text being scanned now.
    injection: Vec<(usize, usize)>,
    pub injection_score: u32,
    /// Phrases already counted, by index (there are fewer than
    /// [`injection::PHRASE_IDS`]).
    injection_seen: [u128; 2],
    injection_at: Vec<(u32, usize, usize)>,
    /// The features (phrase families, and how a phrase was hidden) that
    /// counted towards an injection hit, for the record; emptied when the
    /// score stays under the threshold.
    pub injection_features: Vec<&'static str>,
    /// Injection phrases and features matched so far, counted or not (a
    /// phrase hidden in a text but already counted in an earlier one
    /// changes nothing else): what [`RequestTexts`] needs to
    /// know that a text had none. Every push to `injection`, every score
    /// and every feature goes through [`Findings::count_phrase`], which
    /// counts here first.
    phrases_matched: u64,
    /// Every hit so far, with the index of the text it is in.
    pub all: Vec<(u32, Hit)>,
    /// Scratch of the anchor search: its matches.
    anchors: Vec<(usize, usize, usize)>,
    /// Matches of the last scan that reached the end of unfinished text,
    /// decided already; [`stream::TextStream`] continues them.
    pub(crate) open: Vec<OpenMatch>,
}

/// A decided match still open at the end of the text scanned.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpenMatch {
    pub rule: Rule,
    pub start: usize,
    pub tail: detect::Tail,
}

impl Findings {
    /// Files the current text's hits under `text` (an index the caller
    /// chooses, such as the n-th string of a JSON body), sorted by place.
    /// Overlapping hits of different rules are all kept (a key after a
    /// `password=` label is both); redaction takes the outermost.
    pub fn file(&mut self, text: u32) {
        self.hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
        self.hits.dedup_by(|b, a| a.rule == b.rule && b.start < a.end);
        self.all.extend(self.hits.drain(..).map(|h| (text, h)));
        for (start, end) in self.injection.drain(..) {
            self.injection_at.push((text, start, end));
        }
    }

    /// Counts an injection phrase (or feature) once per request, however
    /// often it is repeated; true when it was new.
    fn count_phrase(&mut self, phrase: usize, weight: u32) -> bool {
        self.phrases_matched = self.phrases_matched.wrapping_add(1);
        let (word, bit) = (phrase / 128, 1u128 << (phrase % 128));
        if self.injection_seen[word] & bit != 0 {
            return false;
        }
        self.injection_seen[word] |= bit;
        self.injection_score += weight;
        let feature = injection::feature(phrase);
        if !self.injection_features.contains(&feature) {
            self.injection_features.push(feature);
        }
        true
    }

    /// The first blocking hit, if any.
    pub fn blocked(&self) -> Option<Hit> {
        self.all.iter().map(|(_, h)| *h).find(|h| h.action == Action::Block)
    }

    /// Whether a text's hits change it.
    pub fn redacts(&self) -> bool {
        self.all.iter().any(|(_, h)| h.action == Action::Redact)
    }

    /// The bytes its vectors hold room for: a core that keeps a `Findings`
    /// between scans lets go of one a large scan grew. Every vector is
    /// named, as in [`Findings::clear`].
    pub fn room_bytes(&self) -> usize {
        fn bytes<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        let Findings {
            hits,
            injection,
            injection_score: _,
            injection_seen: _,
            injection_at,
            injection_features,
            phrases_matched: _,
            all,
            anchors,
            open,
        } = self;
        bytes(hits)
            + bytes(injection)
            + bytes(injection_at)
            + bytes(injection_features)
            + bytes(all)
            + bytes(anchors)
            + bytes(open)
    }

    /// Back to [`Findings::default`], keeping the vectors' room: a core
    /// lends one `Findings` to each request it scans. Every field is named
    /// (no `..`), so that a field added later cannot carry one request's
    /// findings into the next.
    pub fn clear(&mut self) {
        let Findings {
            hits,
            injection,
            injection_score,
            injection_seen,
            injection_at,
            injection_features,
            phrases_matched,
            all,
            anchors,
            open,
        } = self;
        hits.clear();
        injection.clear();
        *injection_score = 0;
        *injection_seen = [0; 2];
        injection_at.clear();
        injection_features.clear();
        *phrases_matched = 0;
        all.clear();
        anchors.clear();
        open.clear();
    }
}

/// Writes `text[from..]` with its redacted hits (sorted, positions in
/// `text`) replaced by their placeholders; of overlapping hits the first
/// (outermost) wins.
pub fn redact<'h>(text: &[u8], from: usize, hits: impl IntoIterator<Item = &'h Hit>, out: &mut Vec<u8>) {
    let mut at = from;
    for h in hits {
        if h.action != Action::Redact {
            continue;
        }
        if h.start < at {
            // Overlapping an earlier placeholder: its tail goes too.
            at = at.max(h.end);
            continue;
        }
        out.extend_from_slice(&text[at..h.start]);
        out.extend_from_slice(h.rule.placeholder().as_bytes());
        at = h.end;
    }
    out.extend_from_slice(&text[at..]);
}
