//! Prompt-injection phrases: a curated, versioned list ([`VERSION`]),
//! matched without regard to ASCII case, spacing or punctuation between
//! words, each with a weight. A prompt whose distinct phrases weigh
//! together at least the profile's threshold (default [`THRESHOLD`]) is a
//! hit; a single strong phrase reaches it alone, weak signals only
//! together ("pretend" plus "no restrictions").
//!
//! Where the phrases come from: the instruction-override, extraction and
//! role-play families are the ones documented in OWASP's LLM01 (prompt
//! injection) guidance and in public jailbreak collections (the "DAN" and
//! "developer mode" prompts); the delimiter family is the chat-template
//! tokens of the ChatML, Llama 2/3 and GPT-2 formats, which no user text
//! has a reason to contain. To extend: add a [`Phrase`] (words as
//! alternatives, `gap` filler words allowed between them), give it a weight
//! against the threshold, add a positive and a near-miss to the corpus in
//! `tests/guardrails/`, and bump [`VERSION`].
//!
//! The guard's anchor search (`anchors`) finds each phrase's first word
//! (or a template token), as a whole word; the rest is checked word by word from there, greedily,
//! over at most a few dozen words: no backtracking search.

use std::sync::OnceLock;

/// The version of the phrase list, recorded with every injection hit.
pub const VERSION: &str = "tollgate-injection-3";

/// The default score at which a prompt counts as an injection attempt.
pub const THRESHOLD: u32 = 10;

/// Words after a phrase's anchor that are looked at, at most.
const WORDS_MAX: usize = 24;

/// A phrase: each element is a set of alternative words; up to `gap` other
/// words may stand between consecutive elements. The first element is the
/// anchor the automaton finds, so it should be a rare word; a common word
/// that must come before it ("no" in "no restrictions") is a `prefix`,
/// looked for among the `gap + 1` words before the anchor.
pub struct Phrase {
    pub id: &'static str,
    pub weight: u32,
    pub gap: usize,
    pub prefix: &'static [&'static str],
    pub words: &'static [&'static [&'static str]],
}

const OVERRIDE_VERBS: &[&str] = &["ignore", "disregard", "forget", "override", "bypass"];
const EARLIER: &[&str] = &[
    "previous",
    "prior",
    "above",
    "earlier",
    "preceding",
    "initial",
    "original",
    "foregoing",
    "former",
    "system",
    "developer",
    "existing",
];
const INSTRUCTIONS: &[&str] = &[
    "instructions",
    "instruction",
    "prompt",
    "prompts",
    "rules",
    "directions",
    "direction",
    "guidelines",
    "messages",
    "context",
    "commands",
    "orders",
    "constraints",
    "programming",
    "directives",
];
const LIMITS: &[&str] = &[
    "restrictions",
    "restriction",
    "limits",
    "limitations",
    "filters",
    "rules",
    "guidelines",
    "censorship",
    "guardrails",
    "boundaries",
    "ethics",
];

/// Words that, skipped inside a phrase, make it the writer's own business:
/// "ignore my previous messages" is about the writer's messages, not the
/// model's instructions.
const OWN: &[&str] = &["my", "our", "i", "we"];

/// Nouns that, right after a phrase, make it a name for something else:
/// "the system prompt settings", "the system prompt field".
const COMPOUND: &[&str] = &[
    "settings",
    "setting",
    "field",
    "fields",
    "option",
    "options",
    "docs",
    "documentation",
    "template",
    "templates",
    "editor",
    "box",
    "section",
    "tab",
    "page",
    "parameter",
    "parameters",
    "file",
    "feature",
    "panel",
    "menu",
    "button",
    "format",
    "length",
    "engineering",
];

pub static PHRASES: &[Phrase] = &[
    Phrase { id: "override", weight: 10, gap: 4, prefix: &[], words: &[OVERRIDE_VERBS, EARLIER, INSTRUCTIONS] },
    Phrase {
        id: "override",
        weight: 10,
        gap: 3,
        prefix: &[],
        words: &[OVERRIDE_VERBS, INSTRUCTIONS, &["above", "before", "earlier", "previously", "so"]],
    },
    Phrase {
        id: "override",
        weight: 10,
        gap: 2,
        prefix: &[],
        words: &[OVERRIDE_VERBS, &["all", "any", "every"], &["instructions", "rules", "guidelines", "directions"]],
    },
    Phrase {
        id: "override",
        weight: 10,
        gap: 5,
        prefix: &[],
        words: &[
            &["forget", "ignore", "disregard"],
            &["everything", "all", "anything"],
            &[
                "told",
                "said",
                "instructed",
                "given",
                "above",
                "before",
                "earlier",
                "previously",
                "taught",
                "learned",
                "learnt",
            ],
        ],
    },
    Phrase {
        id: "override",
        weight: 10,
        gap: 2,
        prefix: &["not", "t", "never"],
        words: &[&["follow", "obey"], &["previous", "prior", "above", "your", "system", "original"], INSTRUCTIONS],
    },
    Phrase {
        id: "override",
        weight: 10,
        gap: 3,
        prefix: &[],
        words: &[
            &["ignoriere", "ignorieren", "ignoriert", "vergiss", "vergesst"],
            &["vorherigen", "vorherige", "bisherigen", "obigen", "vorigen", "früheren", "alle"],
            &["anweisungen", "anweisung", "instruktionen", "regeln", "befehle", "vorgaben"],
        ],
    },
    Phrase {
        id: "override",
        weight: 10,
        gap: 3,
        prefix: &[],
        words: &[
            &["ignore", "ignorez", "oublie", "oubliez"],
            &["instructions", "consignes", "règles", "regles"],
            &["précédentes", "precedentes", "antérieures", "anterieures", "ci"],
        ],
    },
    Phrase {
        id: "override",
        weight: 10,
        gap: 3,
        prefix: &[],
        words: &[
            &["ignora", "ignore", "ignorar", "olvida"],
            &["instrucciones", "reglas", "indicaciones", "órdenes", "ordenes"],
            &["anteriores", "previas", "precedentes"],
        ],
    },
    Phrase {
        id: "override",
        weight: 10,
        gap: 3,
        prefix: &[],
        words: &[
            &["ignore", "ignora", "ignorar", "esqueça", "esqueca"],
            &["instruções", "instrucoes", "regras", "orientações", "orientacoes"],
            &["anteriores", "prévias", "previas", "acima"],
        ],
    },
    Phrase {
        id: "override",
        weight: 10,
        gap: 3,
        prefix: &[],
        words: &[
            &["ignora", "ignorare", "dimentica"],
            &["istruzioni", "regole", "indicazioni"],
            &["precedenti", "sopra", "prima"],
        ],
    },
    Phrase {
        id: "override",
        weight: 10,
        gap: 3,
        prefix: &[],
        words: &[
            &["игнорируй", "игнорируйте", "забудь", "забудьте"],
            &["предыдущие", "все", "прежние", "вышеуказанные", "предыдущих"],
            &["инструкции", "указания", "правила", "команды", "инструкций"],
        ],
    },
    Phrase {
        id: "override",
        weight: 10,
        gap: 2,
        prefix: &[],
        words: &[
            &["이전", "이전의"],
            &["지시를", "지시사항을", "지침을", "명령을", "지시"],
            &["무시하고", "무시해", "무시하세요", "무시해라", "무시"],
        ],
    },
    Phrase {
        id: "override",
        weight: 10,
        gap: 2,
        prefix: &[],
        words: &[&["पिछले", "पिछली"], &["निर्देशों", "निर्देश"], &["अनदेखा", "नज़रअंदाज़", "नजरअंदाज"]],
    },
    Phrase {
        id: "override",
        weight: 10,
        gap: 2,
        prefix: &[],
        words: &[&["تجاهل"], &["التعليمات", "الأوامر", "التوجيهات"], &["السابقة"]],
    },
    Phrase {
        id: "extraction",
        weight: 10,
        gap: 3,
        prefix: &[],
        words: &[
            &["reveal", "print", "show", "display", "output", "repeat", "leak", "disclose"],
            &["system", "initial", "original", "hidden", "secret", "developer", "full", "entire", "first"],
            &["prompt", "prompts", "instructions", "message", "messages"],
        ],
    },
    Phrase { id: "extraction", weight: 6, gap: 0, prefix: &["you"], words: &[&["told", "instructed"]] },
    Phrase {
        id: "extraction",
        weight: 4,
        gap: 0,
        prefix: &[],
        words: &[&["system"], &["prompt", "message", "instructions"]],
    },
    Phrase {
        id: "extraction",
        weight: 8,
        gap: 3,
        prefix: &[],
        words: &[
            &["repeat", "print", "output"],
            &["text", "words", "everything", "content", "above", "instructions"],
            &["above", "before", "starting", "verbatim"],
        ],
    },
    Phrase { id: "extraction", weight: 4, gap: 1, prefix: &[], words: &[&["starting"], &["with"], &["you"], &["are"]] },
    Phrase {
        id: "roleplay",
        weight: 10,
        gap: 1,
        prefix: &["now"],
        words: &[&["dan", "unrestricted", "jailbroken", "uncensored", "unfiltered"]],
    },
    Phrase { id: "roleplay", weight: 6, gap: 0, prefix: &[], words: &[&["anything"], &["now"]] },
    Phrase { id: "roleplay", weight: 4, gap: 0, prefix: &[], words: &[&["dan"]] },
    Phrase {
        id: "roleplay",
        weight: 10,
        gap: 2,
        prefix: &[],
        words: &[&["enable", "activate"], &["jailbreak", "dan", "unrestricted", "evil"], &["mode"]],
    },
    // Developer, debug and god modes are also real switches (Android,
    // Chrome, Windows, Flask): "enable developer mode" is weak alone.
    Phrase {
        id: "roleplay",
        weight: 4,
        gap: 2,
        prefix: &[],
        words: &[&["enable", "activate"], &["developer", "god", "debug"], &["mode"]],
    },
    Phrase { id: "roleplay", weight: 10, gap: 0, prefix: &[], words: &[&["jailbreak", "jailbroken"], &["mode"]] },
    Phrase {
        id: "roleplay",
        weight: 10,
        gap: 1,
        prefix: &[],
        words: &[&["jailbreak", "dan"], &["mode"], &["enabled", "activated", "on", "engaged"]],
    },
    Phrase {
        id: "roleplay",
        weight: 4,
        gap: 1,
        prefix: &[],
        words: &[&["developer", "god"], &["mode"], &["enabled", "activated", "on", "engaged"]],
    },
    Phrase { id: "roleplay", weight: 7, gap: 0, prefix: &[], words: &[&["jailbreak", "jailbroken", "jailbreaking"]] },
    Phrase { id: "roleplay", weight: 3, gap: 0, prefix: &[], words: &[&["pretend", "roleplay"]] },
    // "Act as", not "act now".
    Phrase { id: "roleplay", weight: 3, gap: 0, prefix: &[], words: &[&["act"], &["as", "like"]] },
    // Persona set-ups of the DAN family: "You are going to pretend to be
    // STAN, which stands for ...", "stay in character". Each is anchored
    // on its rarest word, the common ones before it looked for behind it
    // (`prefix`): an anchor as common as "which" or "two" would make the
    // scan of every clean text slower (BENCHMARKS.md, "Guardrails").
    Phrase { id: "persona", weight: 6, gap: 1, prefix: &["going"], words: &[&["pretend", "roleplay"]] },
    Phrase { id: "persona", weight: 4, gap: 0, prefix: &["which", "that"], words: &[&["stands"], &["for"]] },
    Phrase { id: "persona", weight: 6, gap: 1, prefix: &["stay", "remain", "break", "out"], words: &[&["character"]] },
    Phrase { id: "persona", weight: 7, gap: 3, prefix: &["free", "freed", "broken", "break"], words: &[&["confines"]] },
    Phrase {
        id: "persona",
        weight: 6,
        gap: 1,
        prefix: &["not", "t", "never", "longer"],
        words: &[&["bound"], &["by"]],
    },
    // "does not have to abide by", "DOES NOT NEED TO ADHERE TO".
    Phrase {
        id: "persona",
        weight: 7,
        gap: 2,
        prefix: &["not", "t", "never", "don", "doesn", "no"],
        words: &[&["abide", "adhere"], &["by", "to"]],
    },
    Phrase {
        id: "persona",
        weight: 4,
        gap: 1,
        prefix: &["content", "openai", "usage", "anthropic"],
        words: &[&["policy"]],
    },
    Phrase {
        id: "persona",
        weight: 4,
        gap: 2,
        prefix: &["two", "2", "both", "separate"],
        words: &[&["responses", "answers"]],
    },
    Phrase {
        id: "persona",
        weight: 5,
        gap: 0,
        prefix: &[],
        words: &[&["amoral", "unfiltered", "uncensored", "unrestricted", "unethical"]],
    },
    Phrase {
        id: "roleplay",
        weight: 7,
        gap: 4,
        prefix: &["no", "without", "zero", "remove", "disable", "bypass", "ignore", "disregard", "break"],
        words: &[LIMITS],
    },
];

/// Supporting phrases: looked for only in a request in which the phrases
/// above found something but not enough, by a second automaton of their
/// own, so that clean text (nothing found) never pays for them. They are
/// the disavowals of the "amoral character" family: the persona "doesn't
/// care about laws or ethics", "never refuses", answers "without warnings
/// or disclaimers", "is no longer ChatGPT", ignores "OpenAI's content
/// policies", "simulates developer mode". Each is weak and common in
/// ordinary text (a news story says someone does not care about the law);
/// they add to a persona set-up, never make one. As anchors of the main
/// search they cost clean prose 60% more instructions (measured when it
/// was Teddy, whose fingerprints spilled into a third searcher; each
/// common first word also passes the anchors' filter at every use),
/// hence the tier.
pub static SUPPORT: &[Phrase] = &[
    // A persona's disavowals, the set-up of the "amoral character"
    // family: it "doesn't care about laws or ethics", "never refuses",
    // answers "without warnings or disclaimers", "is no longer ChatGPT".
    Phrase {
        id: "persona",
        weight: 6,
        gap: 3,
        prefix: &["care", "cares", "caring", "regardless", "regard", "disregards", "ignores"],
        words: &[&["laws", "morals", "morality", "morally", "ethics", "ethical", "legality", "illegality"]],
    },
    Phrase {
        id: "persona",
        weight: 5,
        gap: 1,
        prefix: &["never", "not", "t", "without", "no", "cannot"],
        words: &[&["refuse", "refuses", "refusal", "refusals", "refusing", "reject", "rejects", "decline", "declines"]],
    },
    Phrase {
        id: "persona",
        weight: 4,
        gap: 2,
        prefix: &["without", "no", "never", "not", "any"],
        words: &[&["warnings", "warning", "disclaimers", "disclaimer", "apologies", "caveats", "moralizing"]],
    },
    Phrase {
        id: "persona",
        weight: 6,
        gap: 0,
        prefix: &["longer", "not"],
        words: &[&["chatgpt", "claude", "gemini", "bard"]],
    },
    Phrase {
        id: "persona",
        weight: 4,
        gap: 1,
        prefix: &["content", "openai", "usage", "anthropic"],
        words: &[&["policies"]],
    },
    Phrase {
        id: "roleplay",
        weight: 6,
        gap: 2,
        prefix: &[],
        words: &[
            &["simulate", "simulating"],
            &["developer", "jailbreak", "dan", "god", "unrestricted", "evil"],
            &["mode"],
        ],
    },
];

/// Support phrase `i` counts as phrase id `SUPPORT_IDS + i`.
pub const SUPPORT_IDS: usize = 160;

/// Chat-template tokens: a user text that contains one is trying to open a
/// turn of its own.
const TEMPLATE_TOKENS: &[(&str, u32)] = &[
    ("<|im_start|>", 10),
    ("<|im_end|>", 10),
    ("<|system|>", 10),
    ("<|assistant|>", 10),
    ("<|user|>", 8),
    ("<|endoftext|>", 10),
    ("<|eot_id|>", 10),
    ("<|start_header_id|>", 10),
    ("[INST]", 10),
    ("[/INST]", 10),
    ("<<SYS>>", 10),
    ("<</SYS>>", 10),
    ("</s>", 6),
    // The classic override in languages written without spaces between
    // words, matched as written (Chinese, Japanese).
    ("忽略之前", 10),
    ("忽略以上", 10),
    ("忽略所有", 10),
    ("指示を無視", 10),
];

/// A role name opening a line and followed by a colon (`system:`,
/// `### Assistant:`): a fake turn, a weak signal on its own.
const ROLE_WORDS: &[&str] = &["system", "assistant", "developer"];
const ROLE_WEIGHT: u32 = 6;

/// What one anchor in the automaton leads to.
enum Lead {
    /// Phrases starting with this word, by index, and whether the word is
    /// a role name.
    Words(Vec<usize>, bool),
    /// A template token: its weight and its id among phrases.
    Token(u32, usize),
}

struct Table {
    anchors: Vec<&'static str>,
    leads: Vec<Lead>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Table { anchors: Vec::new(), leads: Vec::new() };
        for (p, phrase) in PHRASES.iter().enumerate() {
            // The automaton folds ASCII case only: a word outside ASCII is
            // also looked for capitalised and in capitals ("Игнорируй").
            let cased = phrase.words[0].iter().filter(|w| !w.as_bytes()[0].is_ascii()).flat_map(|w| {
                let mut chars = w.chars();
                let first = chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>());
                [first, Some(w.to_uppercase())]
                    .into_iter()
                    .flatten()
                    .filter(|v| v != w)
                    .map(|v| &*Box::leak(v.into_boxed_str()))
                    .collect::<Vec<&'static str>>()
            });
            let cased: Vec<&'static str> = cased.collect();
            for &w in phrase.words[0].iter().chain(&cased) {
                match t.anchors.iter().position(|a| *a == w) {
                    Some(i) => {
                        if let Lead::Words(v, _) = &mut t.leads[i] {
                            v.push(p);
                        }
                    }
                    None => {
                        t.anchors.push(w);
                        t.leads.push(Lead::Words(vec![p], false));
                    }
                }
            }
        }
        for &w in ROLE_WORDS {
            match t.anchors.iter().position(|a| *a == w) {
                Some(i) => {
                    if let Lead::Words(_, role) = &mut t.leads[i] {
                        *role = true;
                    }
                }
                None => {
                    t.anchors.push(w);
                    t.leads.push(Lead::Words(Vec::new(), true));
                }
            }
        }
        for (i, &(token, weight)) in TEMPLATE_TOKENS.iter().enumerate() {
            t.anchors.push(token);
            t.leads.push(Lead::Token(weight, PHRASES.len() + 1 + i));
        }
        t
    })
}

/// The literals the automaton looks for on behalf of this module.
pub fn anchors() -> &'static [&'static str] {
    &table().anchors
}

/// A phrase found in a text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhraseMatch {
    /// Identifies the phrase, so that a repeated one counts once.
    pub phrase: usize,
    pub weight: u32,
    pub start: usize,
    pub end: usize,
}

/// Bytes that belong to words: ASCII letters and digits, and everything
/// outside ASCII (so that accented and non-Latin words stay whole).
fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// The next word at or after `at`: (start, end).
fn next_word(text: &[u8], at: usize) -> Option<(usize, usize)> {
    let start = at + text[at..].iter().position(|&b| word_byte(b))?;
    let end = start + text[start..].iter().position(|&b| !word_byte(b)).unwrap_or(text.len() - start);
    Some((start, end))
}

/// Checks the phrases led by anchor `anchor`, found at `start..end`; the
/// heaviest one that matches wins.
pub fn match_at(anchor: usize, text: &[u8], start: usize, end: usize) -> Option<PhraseMatch> {
    let (phrases, role) = match &table().leads[anchor] {
        &Lead::Token(weight, phrase) => return Some(PhraseMatch { phrase, weight, start, end }),
        Lead::Words(phrases, role) => (phrases, *role),
    };
    // Whole words only: "now" is not in "know".
    if (start > 0 && word_byte(text[start - 1])) || (end < text.len() && word_byte(text[end])) {
        return None;
    }
    let mut best = None;
    if role && opens_turn(text, start, end) {
        best = Some(PhraseMatch { phrase: PHRASES.len(), weight: ROLE_WEIGHT, start, end });
    }
    for &p in phrases {
        if let Some(m) = phrase_at(p, text, start, end) {
            if best.is_none_or(|b: PhraseMatch| m.weight > b.weight) {
                best = Some(m);
            }
        }
    }
    best
}

/// Ids of phrases, template tokens and the role rule are below this.
pub const PHRASE_IDS: usize = 256;

fn phrase_at(p: usize, text: &[u8], start: usize, end: usize) -> Option<PhraseMatch> {
    let phrase = phrase(p);
    let mut from = start;
    if !phrase.prefix.is_empty() {
        let mut found = false;
        for _ in 0..=phrase.gap {
            let Some((ws, we)) = previous_word(text, from) else { break };
            from = ws;
            if phrase.prefix.iter().any(|w| same_word(w, &text[ws..we])) {
                found = true;
                break;
            }
        }
        if !found {
            return None;
        }
    }
    let mut at = end;
    let mut seen = 0;
    for element in &phrase.words[1..] {
        let mut skipped = 0;
        loop {
            let (ws, we) = next_word(text, at)?;
            seen += 1;
            if seen > WORDS_MAX {
                return None;
            }
            at = we;
            let word = &text[ws..we];
            if element.iter().any(|w| same_word(w, word)) {
                break;
            }
            if OWN.iter().any(|w| same_word(w, word)) {
                return None;
            }
            skipped += 1;
            if skipped > phrase.gap {
                return None;
            }
        }
    }
    if let Some((ws, we)) = next_word(text, at) {
        if text[at..ws].iter().all(|&b| b == b' ') && COMPOUND.iter().any(|w| same_word(w, &text[ws..we])) {
            return None;
        }
    }
    Some(PhraseMatch { phrase: p, weight: phrase.weight, start: from, end: at })
}

/// Phrase `p`: one of [`PHRASES`], or of [`SUPPORT`] from [`SUPPORT_IDS`].
fn phrase(p: usize) -> &'static Phrase {
    if p >= SUPPORT_IDS {
        &SUPPORT[p - SUPPORT_IDS]
    } else {
        &PHRASES[p]
    }
}

/// The supporting phrases in `text` (see [`SUPPORT`]), each found where
/// its anchor is.
pub fn supporting(text: &[u8]) -> impl Iterator<Item = PhraseMatch> + '_ {
    static SUPPORT_TABLE: OnceLock<(aho_corasick::AhoCorasick, Vec<Vec<usize>>)> = OnceLock::new();
    let (automaton, leads) = SUPPORT_TABLE.get_or_init(|| {
        let mut anchors: Vec<&str> = Vec::new();
        let mut leads: Vec<Vec<usize>> = Vec::new();
        for (i, phrase) in SUPPORT.iter().enumerate() {
            for &w in phrase.words[0] {
                match anchors.iter().position(|a| *a == w) {
                    Some(j) => leads[j].push(SUPPORT_IDS + i),
                    None => {
                        anchors.push(w);
                        leads.push(vec![SUPPORT_IDS + i]);
                    }
                }
            }
        }
        let automaton = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&anchors)
            .expect("the support phrases' anchors build");
        (automaton, leads)
    });
    automaton.find_iter(text).filter_map(move |m| {
        let (start, end) = (m.start(), m.end());
        if (start > 0 && word_byte(text[start - 1])) || (end < text.len() && word_byte(text[end])) {
            return None;
        }
        let found = leads[m.pattern().as_usize()].iter().filter_map(|&p| phrase_at(p, text, start, end));
        found.max_by_key(|m| m.weight)
    })
}

/// `word` is the (lower-case) phrase word `pattern` in any case: ASCII
/// words compare without allocating; others (`PRÉCÉDENTES`) through
/// Unicode lower-casing.
///
/// Inlined, with the comparison outside ASCII called: the phrase lists are
/// tried word by word (790 calls in the 100 KB bench prompt, 39
/// instructions each when called whole, 30 with the first-byte test).
#[inline(always)]
fn same_word(pattern: &str, word: &[u8]) -> bool {
    // Most words differ from a pattern at their first byte, and an ASCII
    // first byte lower-cases to itself in any word: that decides without
    // the whole word's ASCII test.
    if let (Some(&a), Some(&b)) = (pattern.as_bytes().first(), word.first()) {
        if b < 0x80 && !a.eq_ignore_ascii_case(&b) {
            return false;
        }
    }
    if word.is_ascii() {
        return pattern.as_bytes().eq_ignore_ascii_case(word);
    }
    same_word_unicode(pattern, word)
}

/// [`same_word`] for a word outside ASCII.
#[inline(never)]
fn same_word_unicode(pattern: &str, word: &[u8]) -> bool {
    std::str::from_utf8(word).is_ok_and(|w| w.to_lowercase() == pattern)
}

/// The word that ends at or before `at`: (start, end).
fn previous_word(text: &[u8], at: usize) -> Option<(usize, usize)> {
    let end = text[..at].iter().rposition(|&b| word_byte(b))? + 1;
    let start = text[..end].iter().rposition(|&b| !word_byte(b)).map_or(0, |p| p + 1);
    Some((start, end))
}

/// `system:` at the start of a line (after spaces or Markdown marks). Looks
/// back only over those marks, so a long line costs nothing.
fn opens_turn(text: &[u8], start: usize, end: usize) -> bool {
    let lead =
        text[..start].iter().rev().take_while(|&&b| matches!(b, b' ' | b'\t' | b'#' | b'*' | b'>' | b'-')).count();
    let line_start = start - lead == 0 || text[start - lead - 1] == b'\n';
    let rest = &text[end..text.len().min(end + 4)];
    let colon = rest.iter().position(|&b| b != b' ' && b != b'*').is_some_and(|i| rest[i] == b':');
    line_start && colon
}

/// The id of the feature `phrase` counts as, for the record.
pub fn feature(phrase: usize) -> &'static str {
    match phrase {
        p if p < PHRASES.len() => PHRASES[p].id,
        p if (SUPPORT_IDS..SUPPORT_IDS + SUPPORT.len()).contains(&p) => SUPPORT[p - SUPPORT_IDS].id,
        p if p == PHRASES.len() => "role",
        OBFUSCATED => "obfuscated",
        ENCODED => "encoded",
        _ => "delimiter",
    }
}

/// Ids of the two obfuscation features, above every phrase's.
pub const OBFUSCATED: usize = PHRASE_IDS - 1;
pub const ENCODED: usize = PHRASE_IDS - 2;

/// Weight of text written to dodge matching (zero-width characters inside
/// words, letters of another script that look Latin, fullwidth letters):
/// weak alone, it adds to what the phrases found in the cleaned text
/// weigh.
pub const OBFUSCATED_WEIGHT: u32 = 4;

/// Weight of a payload decoded from base64 that holds a phrase, added to
/// the phrase's own.
pub const ENCODED_WEIGHT: u32 = 4;

/// Whether the digits at `i` are the `64` of the word `base64`.
pub fn announces_at(text: &[u8], i: usize) -> bool {
    i >= 4 && text[i..].starts_with(b"64") && text[i - 4..i].eq_ignore_ascii_case(b"base")
}

/// Where the word `base64` (any case) ends in `text`, at most 8 times:
/// an encoded payload is announced so. Not an anchor of the automaton: its
/// first letters (`bas`, as in "based") would slow every scan; one `memmem`
/// pass for its tail is cheaper.
pub fn encoding_announced(text: &[u8]) -> impl Iterator<Item = usize> + '_ {
    static TAIL: OnceLock<memchr::memmem::Finder<'static>> = OnceLock::new();
    let finder = TAIL.get_or_init(|| memchr::memmem::Finder::new(b"64"));
    finder.find_iter(text).filter(move |&at| announces_at(text, at)).map(|at| at + 2).take(8)
}

/// Base64 runs of at least 16 characters in the 2 KiB after `from`,
/// decoded, where they decode to printable text: `(start, end, text)`.
pub fn encoded_after(text: &[u8], from: usize) -> Vec<(usize, usize, Vec<u8>)> {
    let b64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
    let reach = &text[from..text.len().min(from + 2048)];
    let mut out = Vec::new();
    let mut at = 0;
    while at < reach.len() {
        if !b64(reach[at]) {
            at += 1;
            continue;
        }
        let n = reach[at..].iter().take_while(|&&b| b64(b)).count();
        if n >= 16 {
            if let Some(decoded) = decode_base64(&reach[at..at + n]) {
                let printable = decoded.iter().filter(|&&b| b == b' ' || b.is_ascii_graphic()).count();
                if decoded.len() >= 8 && printable * 10 >= decoded.len() * 9 {
                    out.push((from + at, from + at + n, decoded));
                }
            }
        }
        at += n.max(1);
    }
    out
}

/// Standard or URL-safe base64 without padding checks (a payload in a
/// prompt is rarely padded right).
fn decode_base64(s: &[u8]) -> Option<Vec<u8>> {
    let value = |b: u8| match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &b in s {
        acc = (acc << 6) | value(b)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// A copy of `text` with what dodges matching undone: zero-width
/// characters and soft hyphens dropped, fullwidth letters and the Cyrillic
/// and Greek letters that look Latin written as Latin where they stand
/// next to a Latin letter; with, for each byte of the copy, where it came
/// from. `None` when nothing was undone.
pub fn deobfuscated(text: &[u8]) -> Option<(Vec<u8>, Vec<u32>)> {
    // Most texts are ASCII, or have no byte that can begin a character
    // undone here: nothing to walk.
    if !needs_undoing(text) {
        return None;
    }
    // (Invalid UTF-8 is walked past, never a reason to skip the walk: a
    // stray byte must not hide what follows it.)
    let s = text;
    // A first walk that builds nothing: where the first undoing is.
    let mut first = None;
    walk(s, |at, _, u| {
        if u.is_some() {
            first = Some(at);
        }
        u.is_none()
    });
    let first = first?;
    let mut out = Vec::with_capacity(text.len());
    let mut from = Vec::with_capacity(text.len());
    out.extend_from_slice(&text[..first]);
    from.extend(0..first as u32);
    walk(s, |at, c, u| {
        if at >= first {
            match u {
                Some(Some(b)) => {
                    out.push(b);
                    from.push(at as u32);
                }
                Some(None) => {}
                None => {
                    // The character as written (a byte of invalid UTF-8
                    // stands for itself).
                    let len = if c == char::REPLACEMENT_CHARACTER { replaced_len(text, at) } else { c.len_utf8() };
                    for (i, &b) in text[at..at + len].iter().enumerate() {
                        out.push(b);
                        from.push((at + i) as u32);
                    }
                }
            }
        }
        true
    });
    Some((out, from))
}

/// Whether `text` holds what [`deobfuscated`] undoes, by its bytes: a
/// zero-width character, a soft hyphen, a fullwidth letter, or a letter
/// of the Greek or Cyrillic blocks touching an ASCII letter. Each of those
/// begins with one of eight lead bytes. With AVX2 one pass checks them all
/// ([`needs_undoing_avx2`]); without, the first three (`C2`, `E2`, `EF`)
/// are found with one `memchr` search and checked where they stand, the
/// Greek and Cyrillic ones by [`script_touches_latin`]. Every place a lead
/// byte stands is checked, valid UTF-8 or not.
fn needs_undoing(text: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if super::anchors::width() == super::anchors::Width::Avx512 {
        // SAFETY: the CPU has AVX-512 F and BW, and AVX2 (`width`).
        return unsafe { needs_undoing_avx512(text) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked above).
        return unsafe { needs_undoing_avx2(text) };
    }
    lead_undoes(text) || script_touches_latin(text)
}

/// The nibble tables of the lead-byte test ([`undoing_avx2`],
/// [`needs_undoing_avx512`]): a byte is one of the eight lead bytes when
/// its low nibble's entry has the bit of its high nibble (bit `h - 8`, for
/// high nibbles C, D and E). One copy, broadcast to each 16-byte lane.
#[cfg(target_arch = "x86_64")]
const LEAD_BY_LOW: [i8; 16] = [0x20, 0x20, 0x50, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x50];
#[cfg(target_arch = "x86_64")]
const LEAD_BY_HIGH: [i8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, -128];

/// [`needs_undoing_avx2`] with its lead-byte test 64 places at a time:
/// most blocks of prose in any script have no lead byte (41,000 bytes
/// outside ASCII in the 100 KB prompt, a lead byte in 351 of its 3,124
/// 32-byte blocks), and are passed over with one load, two lookups and a
/// test into a mask register; a block that has one is checked by
/// [`undoing_avx2`], half by half, as the AVX2 pass does. The lead-byte
/// test is exact (every place found begins with a lead byte), so the
/// blocks passed over hold nothing to find.
///
/// # Safety
/// The CPU must have AVX-512 F and BW, and AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn needs_undoing_avx512(text: &[u8]) -> bool {
    use std::arch::x86_64::*;
    // The lead-byte tables, in each of the four lanes.
    // SAFETY: each table is 16 bytes; an unaligned load.
    let (by_low, by_high) = unsafe {
        (
            _mm512_broadcast_i32x4(_mm_loadu_si128(LEAD_BY_LOW.as_ptr().cast())),
            _mm512_broadcast_i32x4(_mm_loadu_si128(LEAD_BY_HIGH.as_ptr().cast())),
        )
    };
    let nibble = _mm512_set1_epi8(0x0f);
    let n = text.len();
    let mut k = 0;
    // The halves' third bytes are read up to two bytes past the block.
    while k + 66 <= n {
        let p = text[k..].as_ptr();
        // SAFETY: `k + 66 <= n`: 64 bytes at `p`.
        let v = unsafe { _mm512_loadu_si512(p.cast()) };
        let lead = _mm512_and_si512(
            _mm512_shuffle_epi8(by_low, _mm512_and_si512(v, nibble)),
            _mm512_shuffle_epi8(by_high, _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble)),
        );
        if _mm512_test_epi8_mask(lead, lead) != 0 {
            let letter_before = k > 0 && text[k - 1].is_ascii_alphabetic();
            // SAFETY: `k + 66 <= n`: the 34 bytes `undoing_avx2` reads at
            // `p` and at `p + 32`; AVX2 is this function's contract.
            if unsafe { undoing_half(p, letter_before) || undoing_half(p.add(32), text[k + 31].is_ascii_alphabetic()) }
            {
                return true;
            }
        }
        k += 64;
    }
    // SAFETY: AVX2 is this function's contract.
    unsafe { undoing_tail(text, k) }
}

/// [`undoing_from_avx2`] for the last bytes of [`needs_undoing_avx512`],
/// called, not inlined (in a function compiled for AVX-512, the AVX2
/// test's loads are merged into scalar loads and byte inserts: see
/// [`undoing_half`]).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn undoing_tail(text: &[u8], from: usize) -> bool {
    // SAFETY: AVX2 is this function's contract.
    unsafe { undoing_from_avx2(text, from) }
}

/// A bit per place of the 32 at `at` where [`undoing_at`] holds: the
/// vector form of its cases. `letter_before`: the byte before `at` is an
/// ASCII letter.
///
/// # Safety
/// `at` must be valid for reading 34 bytes, and the CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn undoing_avx2(at: *const u8, letter_before: bool) -> u32 {
    use std::arch::x86_64::*;
    let set = |b: u8| _mm256_set1_epi8(b as i8);
    let eq = |v: __m256i, b: u8| _mm256_cmpeq_epi8(v, set(b));
    // `lo <= v <= hi`, unsigned.
    let within = |v: __m256i, lo: u8, hi: u8| {
        let d = _mm256_sub_epi8(v, set(lo));
        _mm256_cmpeq_epi8(_mm256_min_epu8(d, set(hi - lo)), d)
    };
    // SAFETY: the caller's promise: 32 bytes at `at`.
    let v0 = unsafe { _mm256_loadu_si256(at.cast()) };
    // The eight lead bytes first, by the nibble-table membership test (bit
    // `h - 8` of the low nibble's entry, for high nibbles C, D and E): a
    // block of CJK or of accented prose has none of them, and is done
    // with here (the cases below cost 40 instructions a block).
    // SAFETY: each table is 16 bytes; an unaligned load.
    let (by_low, by_high) = unsafe {
        (
            _mm256_broadcastsi128_si256(_mm_loadu_si128(LEAD_BY_LOW.as_ptr().cast())),
            _mm256_broadcastsi128_si256(_mm_loadu_si128(LEAD_BY_HIGH.as_ptr().cast())),
        )
    };
    let nibble = set(0x0f);
    let lead = _mm256_and_si256(
        _mm256_shuffle_epi8(by_low, _mm256_and_si256(v0, nibble)),
        _mm256_shuffle_epi8(by_high, _mm256_and_si256(_mm256_srli_epi16(v0, 4), nibble)),
    );
    if _mm256_testz_si256(lead, lead) != 0 {
        return 0;
    }
    let lead = !(_mm256_movemask_epi8(_mm256_cmpeq_epi8(lead, _mm256_setzero_si256())) as u32);
    // `C2`, `E2` and `EF` need the two bytes after them; the other five
    // (Greek and Cyrillic) their neighbours' letters. A block of Russian
    // prose has only the latter, curly quotes only the former; each of
    // the three is tested only in a block that has it (CJK's fullwidth
    // punctuation is `EF`: its blocks skip the other two's tests).
    let bits = |v: __m256i| _mm256_movemask_epi8(v) as u32;
    let (c2, e2, ef) = (bits(eq(v0, 0xC2)), bits(eq(v0, 0xE2)), bits(eq(v0, 0xEF)));
    let script = lead & !(c2 | e2 | ef);
    let mut found = 0;
    // SAFETY: the caller's promise: 32 bytes at `at + 2`.
    let v2 = unsafe { _mm256_loadu_si256(at.add(2).cast()) };
    if c2 | e2 | ef != 0 {
        // SAFETY: the caller's promise: 32 bytes at `at + 1`.
        let v1 = unsafe { _mm256_loadu_si256(at.add(1).cast()) };
        if c2 != 0 {
            // The soft hyphen.
            found |= c2 & bits(eq(v1, 0xAD));
        }
        if e2 != 0 {
            // Zero-width space, joiners, word joiner.
            found |= e2
                & bits(_mm256_or_si256(
                    _mm256_and_si256(eq(v1, 0x80), within(v2, 0x8B, 0x8D)),
                    _mm256_and_si256(eq(v1, 0x81), eq(v2, 0xA0)),
                ));
        }
        if ef != 0 {
            // The byte-order mark, fullwidth letters.
            found |= ef
                & bits(_mm256_or_si256(
                    _mm256_and_si256(eq(v1, 0xBB), eq(v2, 0xBF)),
                    _mm256_or_si256(
                        _mm256_and_si256(eq(v1, 0xBC), within(v2, 0xA1, 0xBA)),
                        _mm256_and_si256(eq(v1, 0xBD), within(v2, 0x81, 0x9A)),
                    ),
                ));
        }
    }
    if script != 0 {
        // An ASCII letter before the lead byte or after its two bytes.
        let letters = |v: __m256i| {
            let l = _mm256_sub_epi8(_mm256_or_si256(v, set(0x20)), set(b'a'));
            _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_min_epu8(l, set(25)), l)) as u32
        };
        found |= script & ((letters(v0) << 1) | u32::from(letter_before) | letters(v2));
    }
    found
}

/// Whether a `C2`, `E2` or `EF` lead byte begins what [`deobfuscated`]
/// undoes, by `memchr3` (machines without AVX2). Those bytes are not rare
/// outside English: CJK's fullwidth commas and colons (`EF BC 8C`) and
/// curly quotes and dashes (`E2 80 9x`) stop the search every few dozen
/// bytes (97,000 instructions for a 100 KB prompt of mixed prose, code and
/// CJK); with AVX2, [`needs_undoing_avx2`] checks each block whole.
fn lead_undoes(text: &[u8]) -> bool {
    memchr::memchr3_iter(0xC2, 0xE2, 0xEF, text).any(|k| undoing_at(text, k))
}

/// [`undoing_avx2`] called, not inlined: inlined twice into
/// [`needs_undoing_avx512`], its loads at one and two bytes past each half
/// were merged into scalar loads and byte inserts, and the pass ran three
/// times slower than AVX2's.
///
/// # Safety
/// As [`undoing_avx2`]'s.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn undoing_half(at: *const u8, letter_before: bool) -> bool {
    // SAFETY: the caller's promise.
    unsafe { undoing_avx2(at, letter_before) != 0 }
}

/// [`needs_undoing`] 32 places at a time, [`undoing_avx2`] in each block
/// that holds a byte outside ASCII (every lead byte is one): one pass for
/// all eight lead bytes, where a pass for three and two `memchr` searches
/// for the Greek and Cyrillic ones were 7% of a governed 100 KB request.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn needs_undoing_avx2(text: &[u8]) -> bool {
    // SAFETY: AVX2 is this function's contract.
    unsafe { undoing_from_avx2(text, 0) }
}

/// [`needs_undoing_avx2`]'s pass, from place `from` on (the AVX-512 pass
/// hands it its last bytes). Inlined into each (a `from` that is not a
/// constant cost the AVX2 pass 6 instructions a block).
///
/// # Safety
/// The caller must have AVX2 (it is inlined into functions compiled for it).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn undoing_from_avx2(text: &[u8], from: usize) -> bool {
    use std::arch::x86_64::*;
    let n = text.len();
    let mut k = from;
    // A block's third bytes are read up to two bytes past it.
    while k + 34 <= n {
        let p = text[k..].as_ptr();
        // SAFETY: `k + 34 <= n`: 32 bytes at `p`; AVX2 is the caller's.
        let high = unsafe { _mm256_movemask_epi8(_mm256_loadu_si256(p.cast())) } != 0;
        let letter_before = k > 0 && text[k - 1].is_ascii_alphabetic();
        // SAFETY: `k + 34 <= n`: the 34 bytes `undoing_avx2` reads; AVX2
        // is the caller's.
        if high && unsafe { undoing_avx2(p, letter_before) } != 0 {
            return true;
        }
        k += 32;
    }
    (k..n).any(|j| undoing_at(text, j))
}

/// Whether a Greek or Cyrillic letter (lead byte `CE`, `CF`, `D0`, `D1`
/// or `D4`) touches an ASCII letter: one before its lead byte or one
/// after its two bytes. In Russian or Greek prose a lead byte stands
/// every other byte, so a search that stops at each (as `memchr` does)
/// cost 57 instructions a byte; this is one branch-free pass in blocks of
/// 64 that the compiler vectorizes, leaving the edges to [`undoing_at`].
fn script_touches_latin(text: &[u8]) -> bool {
    let n = text.len();
    let lead = |b: u8| matches!(b, 0xCE | 0xCF | 0xD0 | 0xD1 | 0xD4);
    let letter = |b: u8| (b | 0x20).wrapping_sub(b'a') < 26;
    // Text of other scripts (CJK) has no lead byte at all: two SIMD
    // searches say so without the pass.
    let Some(first) =
        [memchr::memchr3(0xD0, 0xD1, 0xCE, text), memchr::memchr2(0xCF, 0xD4, text)].into_iter().flatten().min()
    else {
        return false;
    };
    let mut k = first.max(1);
    while k + 2 < n {
        let end = (k + 64).min(n - 2);
        let (before, at, after) = (&text[k - 1..end - 1], &text[k..end], &text[k + 2..end + 2]);
        let mut found = 0u8;
        for ((&p, &x), &q) in before.iter().zip(at).zip(after) {
            found |= u8::from(lead(x)) & (u8::from(letter(p)) | u8::from(letter(q)));
        }
        if found != 0 {
            return true;
        }
        k = end;
    }
    // The places the blocks leave out: the first byte and the last two.
    [0, n.saturating_sub(2), n.saturating_sub(1)].into_iter().any(|k| k < n && lead(text[k]) && undoing_at(text, k))
}

/// Whether the byte at `k` begins what [`deobfuscated`] undoes.
fn undoing_at(text: &[u8], k: usize) -> bool {
    let letter = |k: usize| text.get(k).is_some_and(u8::is_ascii_alphabetic);
    let next = |n: usize| text.get(k + n).copied().unwrap_or(0);
    match text[k] {
        0xC2 => next(1) == 0xAD,
        0xCE | 0xCF | 0xD0 | 0xD1 | 0xD4 => (k > 0 && letter(k - 1)) || letter(k + 2),
        0xE2 => (next(1) == 0x80 && matches!(next(2), 0x8B..=0x8D)) || (next(1) == 0x81 && next(2) == 0xA0),
        0xEF => {
            (next(1) == 0xBB && next(2) == 0xBF)
                || (next(1) == 0xBC && (0xA1..=0xBA).contains(&next(2)))
                || (next(1) == 0xBD && (0x81..=0x9A).contains(&next(2)))
        }
        _ => false,
    }
}

/// What a character becomes: dropped (`Some(None)`), an ASCII letter, or
/// kept (`None`).
type Undo = Option<Option<u8>>;

/// Calls `each` with every character of `text`, its place and what it
/// becomes, until `each` says stop. A byte of invalid UTF-8 comes as one
/// U+FFFD.
fn walk(text: &[u8], mut each: impl FnMut(usize, char, Undo) -> bool) {
    let mut base = 0;
    let chars = text.utf8_chunks().flat_map(move |chunk| {
        let (start, valid) = (base, chunk.valid().len());
        base += valid + chunk.invalid().len();
        let invalid = (0..chunk.invalid().len()).map(move |j| (start + valid + j, char::REPLACEMENT_CHARACTER));
        chunk.valid().char_indices().map(move |(i, c)| (start + i, c)).chain(invalid)
    });
    let mut prev_latin = false;
    let mut chars = chars.peekable();
    while let Some((at, c)) = chars.next() {
        let next_latin = chars.peek().is_some_and(|(_, n)| n.is_ascii_alphabetic());
        if !each(at, c, undo(c, prev_latin || next_latin)) {
            return;
        }
        prev_latin = c.is_ascii_alphabetic();
    }
}

/// How many bytes the character at `at` takes: a U+FFFD written as such,
/// or one invalid byte.
fn replaced_len(text: &[u8], at: usize) -> usize {
    if text[at..].starts_with("\u{FFFD}".as_bytes()) {
        3
    } else {
        1
    }
}

/// What a character becomes: `Some(None)` dropped, `Some(Some(b))` the
/// ASCII letter `b`, `None` kept. Look-alike letters are undone only next
/// to a Latin one (a Russian word stays Russian).
fn undo(c: char, near_latin: bool) -> Undo {
    match c {
        '\u{200B}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => Some(None),
        // Joiners matter in emoji and Persian; dropped only inside a
        // Latin word.
        '\u{200C}' | '\u{200D}' if near_latin => Some(None),
        '\u{FF21}'..='\u{FF3A}' => Some(Some((c as u32 - 0xFF21) as u8 + b'A')),
        '\u{FF41}'..='\u{FF5A}' => Some(Some((c as u32 - 0xFF41) as u8 + b'a')),
        c if near_latin => homoglyph(c).map(Some),
        _ => None,
    }
}

/// The Latin letter a Cyrillic or Greek one is drawn like.
fn homoglyph(c: char) -> Option<u8> {
    Some(match c {
        'а' | 'α' => b'a',
        'е' | 'ε' => b'e',
        'о' | 'ο' => b'o',
        'р' | 'ρ' => b'p',
        'с' => b'c',
        'у' | 'υ' => b'y',
        'х' | 'χ' => b'x',
        'і' | 'ι' => b'i',
        'ј' => b'j',
        'ѕ' => b's',
        'ԁ' => b'd',
        'ν' => b'v',
        'κ' => b'k',
        'τ' => b't',
        'А' | 'Α' => b'A',
        'В' | 'Β' => b'B',
        'Е' | 'Ε' => b'E',
        'К' | 'Κ' => b'K',
        'М' | 'Μ' => b'M',
        'Н' | 'Η' => b'H',
        'О' | 'Ο' => b'O',
        'Р' | 'Ρ' => b'P',
        'С' => b'C',
        'Т' | 'Τ' => b'T',
        'Х' | 'Χ' => b'X',
        'І' | 'Ι' => b'I',
        _ => return None,
    })
}

#[cfg(test)]
mod needs_undoing_tests {
    /// The byte loop `needs_undoing` replaced, as the oracle: every place
    /// checked, not only where the searches stop.
    fn reference(text: &[u8]) -> bool {
        (0..text.len()).any(|k| super::undoing_at(text, k))
    }

    /// What each pass the CPU has says of `text`: the one `needs_undoing`
    /// picks, then AVX-512 and AVX2 each where the CPU has them, and the
    /// searches of machines without AVX2.
    fn every_pass(text: &[u8]) -> Vec<(&'static str, bool)> {
        let mut all = vec![("chosen", super::needs_undoing(text))];
        #[cfg(target_arch = "x86_64")]
        {
            if super::super::anchors::width() == super::super::anchors::Width::Avx512 {
                // SAFETY: the CPU has AVX-512 F and BW, and AVX2 (`width`).
                all.push(("avx-512", unsafe { super::needs_undoing_avx512(text) }));
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present (checked above).
                all.push(("avx2", unsafe { super::needs_undoing_avx2(text) }));
            }
        }
        all.push(("searches", super::lead_undoes(text) || super::script_touches_latin(text)));
        all
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_byte_loop(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "a", "Z", " ", "日本", "，", "Ａ", "ｚ", "\u{200B}", "\u{AD}", "о", "р", "ѕ", "ԁ", "Ω", "ω", "—", "«", "x",
                "\u{FEFF}", "\u{2060}",
                // Each range's edges, in and out (the AVX2 block's ranges).
                "\u{200A}", "\u{200C}", "\u{200D}", "\u{200E}", "\u{2061}", "\u{AC}", "\u{FF20}", "\u{FF3A}",
                "\u{FF3B}", "\u{FF40}", "\u{FF41}", "\u{FF5A}", "\u{FF5B}", "\u{FEFE}", "“",
            ]), 0..160),
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..6),
        ) {
            let mut text: Vec<u8> = parts.concat().into_bytes();
            let at = text.len() / 2;
            text.splice(at..at, junk);
            let want = reference(&text);
            for (pass, got) in every_pass(&text) {
                proptest::prop_assert_eq!(got, want, "{}", pass);
            }
        }
    }

    /// Each character the lead bytes begin, undone or not (each range's
    /// edges), alone in clean text at every offset across the 32- and
    /// 64-byte blocks and the tail: found exactly where the byte loop
    /// finds it, by every pass.
    #[test]
    fn each_lead_byte_character_at_every_offset() {
        let chars = [
            "\u{AD}", "\u{AC}", "\u{200A}", "\u{200B}", "\u{200C}", "\u{200D}", "\u{200E}", "\u{2060}", "\u{2061}",
            "\u{FEFF}", "\u{FEFE}", "\u{FF20}", "\u{FF21}", "\u{FF3A}", "\u{FF3B}", "\u{FF40}", "\u{FF41}", "\u{FF5A}",
            "\u{FF5B}", "，", "“", "—",
            // Greek and Cyrillic beside a Latin letter, the letter on
            // either side of a block's edge.
            "xο", "ωx", "xо", "ѕx", "xԁ", "x ω", "о 1",
        ];
        for c in chars {
            for at in 0..160 {
                for len in [40, 70, 100, 160] {
                    if at > len {
                        continue;
                    }
                    let mut text = "日本語 ".repeat(len).into_bytes();
                    text.truncate(len);
                    text.splice(at..at, c.bytes());
                    let want = reference(&text);
                    for (pass, got) in every_pass(&text) {
                        assert_eq!(got, want, "{pass}: {c:?} at {at} of {len}");
                    }
                }
            }
        }
    }

    /// Each Greek and Cyrillic lead byte, beside a Latin letter on either
    /// side, at the start, the end and past the first 64-byte block.
    #[test]
    fn every_lead_byte_is_seen_beside_a_latin_letter() {
        let filler = "日本".repeat(40);
        for letter in ["ο", "ω", "о", "ѕ", "ԁ"] {
            for text in [
                format!("{letter}ystem"),
                format!("syste{letter}"),
                format!("{filler}{letter}x{filler}"),
                format!("{filler}x{letter}{filler}"),
            ] {
                assert!(every_pass(text.as_bytes()).iter().all(|&(_, found)| found), "{text}");
            }
            let clean = format!("{filler}{letter} {filler}");
            assert!(every_pass(clean.as_bytes()).iter().all(|&(_, found)| !found), "{letter}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `same_word` as it was, before its first-byte test: the oracle.
    fn same_word_whole(pattern: &str, word: &[u8]) -> bool {
        if word.is_ascii() {
            return pattern.as_bytes().eq_ignore_ascii_case(word);
        }
        std::str::from_utf8(word).is_ok_and(|w| w.to_lowercase() == pattern)
    }

    /// Every pattern of the phrase tables against words in every case,
    /// with letters outside ASCII that lower-case to ASCII ones (the
    /// Kelvin sign, the dotted capital I), other scripts, broken UTF-8 and
    /// near misses: the first-byte test decides as the whole comparison.
    #[test]
    fn same_word_decides_as_the_whole_comparison() {
        let mut patterns: Vec<&str> = vec!["précédentes", "système", "ignore", "k", "i"];
        for p in PHRASES.iter().chain(SUPPORT) {
            patterns.extend(p.prefix);
            patterns.extend(p.words.iter().flat_map(|w| w.iter()));
        }
        patterns.extend(OWN);
        patterns.extend(COMPOUND);
        let mut words: Vec<Vec<u8>> = Vec::new();
        for p in &patterns {
            words.push(p.as_bytes().to_vec());
            words.push(p.to_uppercase().into_bytes());
            let mut title = p.as_bytes().to_vec();
            title[0] = title[0].to_ascii_uppercase();
            words.push(title);
            words.push(format!("{p}s").into_bytes());
            words.push(p.as_bytes()[1..].to_vec());
            // The first letter written as a letter outside ASCII.
            words.push(format!("\u{212a}{}", &p[p.char_indices().nth(1).map_or(p.len(), |(i, _)| i)..]).into_bytes());
            words.push(format!("\u{130}{}", &p[p.char_indices().nth(1).map_or(p.len(), |(i, _)| i)..]).into_bytes());
        }
        for w in ["日本", "Привет", "\u{212a}", "\u{130}gnore", "kELVIN", "\u{212a}eep"] {
            words.push(w.as_bytes().to_vec());
        }
        words.push(vec![b'i', 0xff, b'n']);
        words.push(vec![0xc3]);
        let mut matched = 0;
        for p in &patterns {
            for w in &words {
                let expected = same_word_whole(p, w);
                matched += usize::from(expected);
                assert_eq!(same_word(p, w), expected, "{p:?} {:?}", String::from_utf8_lossy(w));
            }
        }
        assert!(matched > patterns.len() * 3, "{matched}");
    }
}
