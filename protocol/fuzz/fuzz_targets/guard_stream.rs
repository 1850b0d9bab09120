//! The guardrail scanner: a request's scan never panics and keeps its hits
//! inside the text; and, streaming, no panic on any text, and a text fed in
//! pieces is released redacted exactly as the whole text is, with the same
//! hits, but for one documented difference: a match that starts inside a
//! decided key or value the stream has already released (an address in a
//! long password's value) changes nothing of the output and is not
//! recorded. Across a seam (the second text resumed from the first's
//! released end), no panic, and clean text passes as written.
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

/// `a`, finished, then `b` resumed from what `a` released; the joined
/// output, or `None` when the stream ended.
fn seamed(g: &Guard, a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    let mut s = TextStream::default();
    let mut f = Findings::default();
    let mut out = Vec::new();
    if s.push(g, a, &mut out, &mut f).or_else(|| s.finish(g, &mut out, &mut f)).is_some() {
        return None;
    }
    let seam = out[out.len().saturating_sub(512)..].to_vec();
    let mut s = s.resume(&seam);
    if s.push(g, b, &mut out, &mut f).or_else(|| s.finish(g, &mut out, &mut f)).is_some() {
        return None;
    }
    Some(out)
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
    let joined = seamed(&g, &text[..cut], &text[cut..]);
    // Clean text whose first side is clean alone too passes a seam as
    // written: the second side is scanned after the first, as in the whole.
    if whole.1.is_empty() && text.len() <= 512 && streamed(&g, &[&text[..cut]]).1.is_empty() {
        assert_eq!(joined.as_deref(), Some(text), "seam at {cut}");
    }
    let size = (seed as usize % 7) + 1;
    let pieces: Vec<&[u8]> = text.chunks(size).collect();
    let split = streamed(&g, &pieces);
    assert!(same(&whole, &split), "pieces of {size}: {split:?} vs {whole:?}");
});
