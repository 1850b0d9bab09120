//! The guardrail scanner: a request's scan never panics and keeps its hits
//! inside the text; and, streaming, no panic on any text, and a text fed in
//! pieces is released redacted exactly as the whole text is, with the same
//! hits, but for one documented difference: a match that starts inside a
//! decided key or value the stream has already released (an address in a
//! long password's value) changes nothing of the output and is not
//! recorded.
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
    // Every detector, the national identifiers too.
    for d in Detector::every() {
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

fn same(whole: &(Vec<u8>, Vec<Hit>), streamed: &(Vec<u8>, Vec<Hit>)) -> bool {
    whole.0 == streamed.0
        && (whole.1 == streamed.1 || {
            // What the stream missed lies inside a match it recorded.
            streamed.1.iter().all(|h| whole.1.contains(h))
                && whole.1.iter().all(|h| streamed.1.iter().any(|o| o.start <= h.start && h.end <= o.end))
        })
}

fuzz_target!(|data: &[u8]| {
    let g = guard();
    let Some((&seed, text)) = data.split_first() else { return };
    // A request's scan (injection phrases, decoded payloads, cleaned
    // look-alikes) never panics, and places its hits inside the text.
    let mut f = Findings::default();
    g.scan(text, tollgate_policy::guard::Direction::Request, true, &mut f);
    f.file(0);
    g.settle(&mut f);
    assert!(f.all.iter().all(|(_, h)| h.start <= h.end && h.end <= text.len()), "{:?}", f.all);
    let whole = streamed(&g, &[text]);
    let cut = seed as usize % (text.len() + 1);
    let split = streamed(&g, &[&text[..cut], &text[cut..]]);
    assert!(same(&whole, &split), "split at {cut}: {split:?} vs {whole:?}");
    let size = (seed as usize % 7) + 1;
    let pieces: Vec<&[u8]> = text.chunks(size).collect();
    let split = streamed(&g, &pieces);
    assert!(same(&whole, &split), "pieces of {size}: {split:?} vs {whole:?}");
});
