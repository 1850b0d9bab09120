//! The streaming guardrail scanner: no panic on any text, and a text fed in
//! pieces is released redacted exactly as the whole text is, with the same
//! hits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_policy::guard::stream::TextStream;
use tollgate_policy::guard::{injection, Action, Detector, Findings, Guard, Hit, ProfileSpec};

fn guard() -> &'static Guard {
    static GUARD: std::sync::OnceLock<Guard> = std::sync::OnceLock::new();
    GUARD.get_or_init(build)
}

fn build() -> Guard {
    let mut spec = ProfileSpec { name: "fuzz".into(), injection_threshold: injection::THRESHOLD, ..Default::default() };
    for d in Detector::ALL {
        spec.actions[d as usize] = Some(Action::Redact);
    }
    spec.deny_words = vec!["falcon".into()];
    spec.deny_patterns = vec![r"ACME-\d{4}".into()];
    spec.custom_action = Some(Action::Redact);
    Guard::compile(&spec).expect("profile")
}

fn streamed(g: &Guard, pieces: &[&[u8]]) -> (Vec<u8>, Vec<Hit>) {
    let mut s = TextStream::default();
    let mut f = Findings::default();
    let mut out = Vec::new();
    for p in pieces {
        assert!(s.push(g, p, &mut out, &mut f).is_none());
    }
    assert!(s.finish(g, &mut out, &mut f).is_none());
    (out, f.all.into_iter().map(|(_, h)| h).collect())
}

fuzz_target!(|data: &[u8]| {
    let g = guard();
    let Some((&seed, text)) = data.split_first() else { return };
    let whole = streamed(&g, &[text]);
    let cut = seed as usize % (text.len() + 1);
    assert_eq!(streamed(&g, &[&text[..cut], &text[cut..]]), whole, "split at {cut}");
    let size = (seed as usize % 7) + 1;
    let pieces: Vec<&[u8]> = text.chunks(size).collect();
    assert_eq!(streamed(&g, &pieces), whole, "pieces of {size}");
});
