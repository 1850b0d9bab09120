//! The classifier tier: a guardrail profile's external classifiers, asked
//! about a request's text before it is sent (and, where configured, about
//! a whole JSON answer), for what patterns cannot catch.
//!
//! Four kinds, each read by structure from its own documented answer:
//! Hugging Face text-embeddings-inference `POST /predict` (labels with
//! scores), an OpenAI-compatible `POST /moderations` (`flagged` and
//! category scores), a guard model answering a chat completion with `safe`
//! or `unsafe` (Llama Guard), and an organisation's own webhook
//! (`{"texts": [...]}` out, `{"flagged": bool, "score": x}` back).
//!
//! A call is one more awaited exchange on the core's pool for the
//! classifier's provider: the worker serves its other connections while it
//! waits. It is bounded by the classifier's timeout; a classifier that
//! does not answer in time, cannot be reached or answers something
//! unreadable lets the request through or refuses it, as its `on_error`
//! says. Verdicts are kept per core by a keyed hash of the text (SipHash
//! with this core's random key: a tenant cannot make a benign text collide
//! with a hostile one), so a repeated text costs one lookup.

use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use tollgate_policy::config::{Classifier, ClassifierKind};
use tollgate_protocol::http1::{BodyFraming, ChunkedDecoder, LengthDecoder, ResponseHead};

use crate::error::GatewayError;
use crate::iov;
use crate::state::CoreState;
use crate::upstream::{UpConn, UPSTREAM_READ_BYTES};
pub use crate::verdicts::{Classified, Failure, Verdict, VerdictCache, CACHE_ENTRIES, CACHE_TTL};

/// Why a classifier stopped a request or an answer.
pub enum Stop {
    /// A blocking hit: the rule id, `classifier.<name>`.
    Blocked(String),
    /// No verdict from a classifier that fails closed.
    Unavailable { rule: String, why: &'static str },
}

/// Asks classifier `i` of `profile` about `text` (from the core's cache
/// when it has the verdict), records what it said and its hit, and says
/// whether that stops the request or answer, within the deadline and
/// the drain's cut. The one step both directions take per classifier.
pub async fn classify_one(
    state: &CoreState,
    profile: &tollgate_policy::config::GuardrailProfile,
    i: usize,
    text: &[u8],
    (direction, team): (tollgate_policy::guard::Direction, usize),
    record: (&mut Vec<Classified>, &mut Vec<crate::record::Recorded>),
    (deadline, cut): (Instant, &crate::cut::Cut),
) -> Result<(), Stop> {
    use tollgate_policy::guard::{Action, Direction, Hit, Rule};
    let c = &profile.classifiers[i];
    let (classified, hits) = record;
    let started = Instant::now();
    // The built-in model scores about as fast as the cache hashes, and
    // its entries would push out verdicts that cost a round trip: it is
    // not cached.
    let key =
        (c.kind != ClassifierKind::Builtin).then(|| state.verdicts.key((&profile.name, c), (direction, team), text));
    let (outcome, cached) = match key.and_then(|key| state.verdicts.get(key, started)) {
        Some(v) => (Ok(v), true),
        None => {
            let said = if direction == Direction::Request { "request" } else { "response" };
            let r = ask(state, c, text, said, deadline, cut).await;
            if let (Ok(v), Some(key)) = (r, key) {
                state.verdicts.put(key, v, Instant::now());
            }
            (r, false)
        }
    };
    let micros = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
    classified.push(Classified { index: i as u16, outcome, cached, micros, windows: 1 });
    match outcome {
        Ok(Verdict::Hit(_)) => {
            let hit = Hit { rule: Rule::Classifier(i as u16), start: 0, end: text.len(), action: c.action };
            hits.push(crate::record::Recorded { direction, text: 0, hit });
            if c.action == Action::Block {
                return Err(Stop::Blocked(format!("classifier.{}", c.name)));
            }
        }
        Ok(Verdict::Pass(_)) => {}
        Err(f) if c.fail_open => {
            let passes = if direction == Direction::Request { "the request" } else { "the answer" };
            tracing::warn!(profile = profile.name, classifier = c.name, why = f.why(), passes, "on_error = allow");
        }
        Err(f) => return Err(Stop::Unavailable { rule: format!("classifier.{}", c.name), why: f.why() }),
    }
    Ok(())
}

/// Asks the profile's classifiers that check answers about a whole JSON
/// answer's texts (`out`, as the client will get it), all of it (in
/// pieces of `text_bytes_max`: [`answer_pieces`]). `Err` with the rule
/// when one blocks, or with why when one that fails closed gives no
/// verdict.
pub async fn check_answer(
    classifiers: &mut AnswerClassifiers<'_>,
    hits: &mut Vec<crate::record::Recorded>,
    out: &[u8],
    deadline: Instant,
    cut: &crate::cut::Cut,
) -> Result<(), String> {
    let texts = super::guard::request_texts(out);
    let from = classifiers.classified.len();
    ask_about_answer(classifiers, hits, (&texts, texts.len()), from, (deadline, cut)).await
}

/// Asks the profile's answering classifiers about a streamed answer's
/// text so far (`said`), its last `new` bytes not yet asked about. A
/// stream is asked about many times: each classifier keeps one entry in
/// the record for all its windows (`from`: where this stream's entries
/// begin), with its worst verdict, its time summed and its asks counted.
pub async fn check_window(
    classifiers: &mut AnswerClassifiers<'_>,
    hits: &mut Vec<crate::record::Recorded>,
    (said, new): (&[u8], usize),
    from: usize,
    deadline: Instant,
    cut: &crate::cut::Cut,
) -> Result<(), String> {
    ask_about_answer(classifiers, hits, (said, new), from, (deadline, cut)).await
}

/// What of an answer's text (`texts`, its last `new` bytes unasked) a
/// classifier taking `max` bytes a call is asked about: the new text and
/// the end of what was asked before ([`overlap`]), in [`pieces`], the last
/// the last `max` bytes; and whether that is all of it (at most
/// [`CALLS_MAX`] pieces, the newest kept). Once only the last `max` bytes
/// were asked about: a JSON answer's text before them, or a stream's read
/// that carried more new text than them, was never asked about (found by
/// a review).
fn answer_pieces(texts: &[u8], new: usize, max: usize) -> (Vec<&[u8]>, bool) {
    let from = texts.len().saturating_sub(new.saturating_add(overlap(max)));
    let (newest, complete) = newest(pieces(texts, char_floor(texts, from, 0), max));
    (newest.into_iter().map(|(a, b)| &texts[a..b]).collect(), complete)
}

/// The last [`CALLS_MAX`] of `all` (the newest text), and whether that is
/// all of them.
fn newest<T>(mut all: Vec<T>) -> (Vec<T>, bool) {
    let complete = all.len() <= CALLS_MAX;
    (all.split_off(all.len().saturating_sub(CALLS_MAX)), complete)
}

/// Bytes each piece of a long text repeats of the one before: a quarter
/// of `max`, at most 256. An entity no longer than that, cut by one
/// piece's end, is whole in the next.
fn overlap(max: usize) -> usize {
    (max.max(16) / 4).min(256)
}

/// `at` moved back to a character's start, not before `lo` and at most 3
/// bytes (a character has at most 3 bytes after its first: text that is
/// not UTF-8, which an upstream may send, is cut where it stands).
fn char_floor(text: &[u8], at: usize, lo: usize) -> usize {
    let mut k = at;
    while k > lo && k < text.len() && at - k < 3 && text[k] & 0xC0 == 0x80 {
        k -= 1;
    }
    k
}

/// `text` from `from` on in pieces of at most `max` bytes (at least 16),
/// cut on characters' starts, each repeating the last [`overlap`] bytes of
/// the one before, the last piece the last `max` bytes ([`tail`]; in text
/// that is not UTF-8, perhaps the rest from an earlier cut): byte ranges.
/// Each piece moves on by at least `max` − overlap − 6 bytes.
fn pieces(text: &[u8], from: usize, max: usize) -> Vec<(usize, usize)> {
    let max = max.max(16);
    let last = text.len() - tail(text, max).len();
    let mut out = Vec::new();
    let mut start = from;
    while start < last {
        // (`last` may be less than `max` from the end: `tail` skips a
        // run of bytes that begin no character, which only text that is
        // not UTF-8 has.)
        let end = char_floor(text, (start + max).min(text.len()), start + 1);
        out.push((start, end));
        if end == text.len() {
            // The rest fitted (text that is not UTF-8: `last` stood past
            // a run that begins no character).
            return out;
        }
        start = char_floor(text, end - overlap(max), start + 1);
    }
    out.push((last, text.len()));
    out
}

/// The one walk over a profile's answering classifiers, whole answers and
/// windows alike: each is asked about every piece of the text not yet
/// asked about ([`answer_pieces`]), and its entries in the record from
/// `from` on are merged into one.
async fn ask_about_answer(
    classifiers: &mut AnswerClassifiers<'_>,
    hits: &mut Vec<crate::record::Recorded>,
    (texts, new): (&[u8], usize),
    from: usize,
    (deadline, cut): (Instant, &crate::cut::Cut),
) -> Result<(), String> {
    let p = classifiers.profile;
    let mut asked = Ok(());
    'classifiers: for (i, c) in p.classifiers.iter().enumerate().filter(|(_, c)| c.answers) {
        let (pieces, complete) = answer_pieces(texts, new, c.text_bytes_max);
        if !complete {
            // More than its calls carry: a failure, which `on_error`
            // decides; let through, the newest pieces are still asked.
            let outcome = Err(Failure::TooLarge);
            classifiers.classified.push(Classified { index: i as u16, outcome, cached: false, micros: 0, windows: 0 });
            if !c.fail_open {
                asked = Err(format!("classifier.{} ({})", c.name, Failure::TooLarge.why()));
                break;
            }
            tracing::warn!(profile = p.name, classifier = c.name, why = Failure::TooLarge.why(), "on_error = allow");
        }
        // One timeout for all the classifier's pieces, as for a request's.
        let until = deadline.min(Instant::now() + c.timeout);
        for text in pieces.into_iter().filter(|t| !t.is_empty()) {
            let direction = tollgate_policy::guard::Direction::Response;
            let record = (&mut *classifiers.classified, &mut *hits);
            let who = (direction, classifiers.team);
            match classify_one(classifiers.state, p, i, text, who, record, (until, cut)).await {
                Ok(()) => {}
                Err(Stop::Blocked(rule)) => {
                    asked = Err(rule);
                    break 'classifiers;
                }
                Err(Stop::Unavailable { rule, why }) => {
                    asked = Err(format!("{rule} ({why})"));
                    break 'classifiers;
                }
            }
        }
    }
    let entries = &mut *classifiers.classified;
    let mut i = from;
    while i < entries.len() {
        match entries[from..i].iter().position(|e| e.index == entries[i].index) {
            Some(at) => {
                let new = entries.remove(i);
                entries[from + at].merge(new);
            }
            None => i += 1,
        }
    }
    asked
}

/// What a webhook said about a request's texts: its verdict, and the
/// spans it asks to be redacted, as (text, start, end) with the text
/// counted in the request's order and the offsets in its UTF-8 bytes.
pub struct WebhookAnswer {
    pub verdict: Verdict,
    pub spans: Vec<(u32, usize, usize)>,
    /// Calls made.
    pub calls: u32,
    /// Every text was sent (else the newest that [`CALLS_MAX`] calls
    /// carry, under `on_error = "allow"`).
    pub complete: bool,
}

/// Part of one of a request's texts sent to a redacting classifier: the
/// text's index in the request and the bytes `start..end` of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    text: u32,
    start: usize,
    end: usize,
}

/// Calls a classifier gets for one request's or answer's text at most:
/// text past what they carry (16 times `text_bytes_max`, less what pieces
/// repeat) is a failure, which its `on_error` decides: refused, or the
/// newest text asked about and the failure recorded.
const CALLS_MAX: usize = 16;

/// The calls that carry every text of a request that is not blank to a
/// redacting classifier `c`, each at most its `text_bytes_max`: whole texts
/// packed in their order, a longer text in [`pieces`]; and whether that is
/// all of them (at most [`CALLS_MAX`] calls, the newest kept). Past them,
/// the classifier failed, which `on_error` decides: [`Failure::TooLarge`]
/// where it fails closed, else the newest calls.
///
/// It replaced a send of the last texts that fit: a last message longer
/// than `text_bytes_max` sent none and passed, and the messages before the
/// ones that fit were never redacted (found by a review).
///
/// `join`: the bytes a call puts between two of its pieces (Presidio's
/// `"\n\n"`; none where each goes apart), counted in its size: packed by
/// the pieces alone, a thousand texts of one byte made Presidio calls of
/// three times `text_bytes_max` (found by a review).
fn calls(c: &Classifier, texts: &[Vec<u8>], join: usize) -> Result<(Vec<Vec<Piece>>, bool), Failure> {
    let max = c.text_bytes_max.max(16);
    let mut calls: Vec<Vec<Piece>> = Vec::new();
    let mut room = 0;
    for (i, t) in texts.iter().enumerate() {
        if t.trim_ascii().is_empty() {
            continue;
        }
        for (start, end) in pieces(t, 0, max) {
            let piece = Piece { text: i as u32, start, end };
            let len = end - start;
            match calls.last_mut() {
                Some(call) if len + join <= room => {
                    call.push(piece);
                    room -= len + join;
                }
                _ => {
                    calls.push(vec![piece]);
                    room = max - len;
                }
            }
        }
    }
    let (newest, complete) = newest(calls);
    if !complete && !c.fail_open {
        return Err(Failure::TooLarge);
    }
    Ok((newest, complete))
}

/// A webhook's or Presidio's answers about a request, together: the worst
/// verdict, and every span, once.
fn joined(verdicts: &[Verdict], mut spans: Vec<(u32, usize, usize)>, complete: bool) -> WebhookAnswer {
    let best = verdicts.iter().map(|v| v.score()).fold(0.0f32, f32::max);
    let hit = verdicts.iter().any(|v| matches!(v, Verdict::Hit(_)));
    // Spans of one text that overlap (an entity cut by a piece's end, and
    // found whole in the next) are one.
    spans.sort_unstable();
    spans.dedup_by(|b, a| {
        let same = a.0 == b.0 && b.1 < a.2;
        if same {
            a.2 = a.2.max(b.2);
        }
        same
    });
    let verdict = if hit { Verdict::Hit(best) } else { Verdict::Pass(best) };
    WebhookAnswer { verdict, spans, calls: verdicts.len() as u32, complete }
}

/// Asks a webhook about every text of the request, each apart so that
/// the spans it returns can be placed: in calls of at most
/// `text_bytes_max` bytes ([`calls`]), `first` in each the index of the
/// request's text the call's first piece is of, all within one timeout.
pub async fn ask_webhook(
    state: &CoreState,
    c: &Classifier,
    texts: &[Vec<u8>],
    deadline: Instant,
    cut: &crate::cut::Cut,
) -> Result<WebhookAnswer, Failure> {
    let deadline = deadline.min(Instant::now() + c.timeout);
    let (calls, complete) = calls(c, texts, 0)?;
    let (mut verdicts, mut spans) = (Vec::with_capacity(calls.len()), Vec::new());
    for pieces in &calls {
        let sent: Vec<String> = pieces
            .iter()
            .map(|p| String::from_utf8_lossy(&texts[p.text as usize][p.start..p.end]).into_owned())
            .collect();
        let body = serde_json::json!({ "texts": sent, "first": pieces[0].text, "direction": "request" });
        let answer = exchange(state, c, serde_json::to_vec(&body).unwrap_or_default(), deadline, cut).await?;
        verdicts.push(verdict(c, &answer)?);
        spans.extend(spans_of(&answer, texts, pieces)?);
    }
    Ok(joined(&verdicts, spans, complete))
}

/// Asks a Presidio analyzer about every text of the request: its API
/// takes one text a call, so each call's pieces ([`calls`]) go as one
/// text, joined by a blank line (a request of a hundred short texts is
/// one call, not a hundred that no timeout holds: found by a review),
/// all within one timeout. Its entities scoring at least the threshold
/// are spans; its offsets count characters (Python's), turned into the
/// texts' byte offsets here, and an entity across a join is redacted in
/// each piece it covers.
pub async fn ask_presidio(
    state: &CoreState,
    c: &Classifier,
    texts: &[Vec<u8>],
    deadline: Instant,
    cut: &crate::cut::Cut,
) -> Result<WebhookAnswer, Failure> {
    const JOIN: &str = "\n\n";
    let deadline = deadline.min(Instant::now() + c.timeout);
    let (calls, complete) = calls(c, texts, JOIN.len())?;
    let mut best = 0.0f64;
    let mut spans = Vec::new();
    for pieces in &calls {
        // The call's text, and where each piece begins in it (a piece
        // that is not UTF-8, which a request's text never is, takes no
        // span: its offsets would not be its bytes').
        let mut text = String::new();
        let mut at = Vec::with_capacity(pieces.len());
        for p in pieces {
            if !text.is_empty() {
                text.push_str(JOIN);
            }
            at.push(text.len());
            text.push_str(&String::from_utf8_lossy(&texts[p.text as usize][p.start..p.end]));
        }
        let answer = exchange(state, c, request_body(c, &text, "request"), deadline, cut).await?;
        let v: serde_json::Value = serde_json::from_slice(&answer).map_err(|_| Failure::Unreadable)?;
        for entity in v.as_array().ok_or(Failure::Unreadable)? {
            let score = entity["score"].as_f64().ok_or(Failure::Unreadable)?;
            best = best.max(score);
            let (Some(start), Some(end)) = (entity["start"].as_u64(), entity["end"].as_u64()) else { continue };
            if score < c.threshold {
                continue;
            }
            let Some((s, e)) = char_span_to_bytes(&text, start as usize, end as usize) else { continue };
            // Each piece the entity covers takes its share (an entity
            // across a join is redacted on both sides, not dropped).
            let mut k = at.partition_point(|&b| b <= s) - 1;
            while k < pieces.len() && at[k] < e {
                let p = pieces[k];
                let raw = &texts[p.text as usize][p.start..p.end];
                let same = std::str::from_utf8(raw).is_ok();
                let (lo, hi) = (s.max(at[k]), e.min(at[k] + raw.len()));
                if same && lo < hi {
                    spans.push((p.text, p.start + lo - at[k], p.start + hi - at[k]));
                }
                k += 1;
            }
        }
    }
    let verdict = if best >= c.threshold { Verdict::Hit(best as f32) } else { Verdict::Pass(best as f32) };
    Ok(WebhookAnswer { calls: calls.len() as u32, ..joined(&[verdict], spans, complete) })
}

/// Characters `start..end` of `text` as byte offsets; `None` when they do
/// not fit it (reversed, empty or past its end: never trusted).
fn char_span_to_bytes(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    if start >= end {
        return None;
    }
    let mut at = text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len()));
    let s = at.nth(start)?;
    let e = at.nth(end - start - 1)?;
    Some((s, e))
}

/// The spans of a webhook's answer about one call's `pieces`, read by
/// structure, checked against the pieces sent and placed in the request's
/// texts: one that does not fit (out of range, reversed, inside a
/// character, not whole numbers) is dropped, never trusted.
fn spans_of(answer: &[u8], texts: &[Vec<u8>], pieces: &[Piece]) -> Result<Vec<(u32, usize, usize)>, Failure> {
    let v: serde_json::Value = serde_json::from_slice(answer).map_err(|_| Failure::Unreadable)?;
    let mut spans = Vec::new();
    for s in v["spans"].as_array().into_iter().flatten() {
        let (Some(t), Some(start), Some(end)) = (s["text"].as_u64(), s["start"].as_u64(), s["end"].as_u64()) else {
            continue;
        };
        let Some(p) = usize::try_from(t).ok().and_then(|t| pieces.get(t)) else { continue };
        let Some(text) = texts.get(p.text as usize).map(|t| &t[p.start..p.end]) else { continue };
        let (start, end) = (start as usize, end as usize);
        let boundary = |at: usize| at == text.len() || (at < text.len() && text[at] & 0xC0 != 0x80);
        if start < end && end <= text.len() && boundary(start) && boundary(end) {
            spans.push((p.text, p.start + start, p.start + end));
        }
    }
    Ok(spans)
}

/// What the answer's classifiers need: the core (its pools and verdict
/// cache), the profile, and where the record keeps what they said.
pub struct AnswerClassifiers<'a> {
    pub state: &'a CoreState,
    pub profile: &'a tollgate_policy::config::GuardrailProfile,
    /// The team whose answer it is (verdicts are kept per team).
    pub team: usize,
    pub classified: &'a mut Vec<Classified>,
}

impl AnswerClassifiers<'_> {
    /// How much of a stream's text is held back between asks: the
    /// smallest window of the profile's answering classifiers.
    pub fn window(&self) -> usize {
        let answering = self.profile.classifiers.iter().filter(|c| c.answers);
        answering.map(|c| c.stream_window_bytes).min().unwrap_or(1024)
    }
}

/// The request's texts for a classifier: the body's string values that a
/// person or a tool wrote, one per line, the last `max` bytes of them
/// (where an injection rides: the newest message), on a character
/// boundary.
pub fn tail(texts: &[u8], max: usize) -> &[u8] {
    let mut from = texts.len().saturating_sub(max);
    while from < texts.len() && texts[from] & 0xC0 == 0x80 {
        from += 1;
    }
    &texts[from..]
}

/// The body a kind is asked with.
fn request_body(c: &Classifier, text: &str, direction: &str) -> Vec<u8> {
    let v = match c.kind {
        ClassifierKind::Tei => serde_json::json!({ "inputs": text, "truncate": true }),
        ClassifierKind::Moderations => match &c.model {
            Some(m) => serde_json::json!({ "model": m, "input": text }),
            None => serde_json::json!({ "input": text }),
        },
        ClassifierKind::Chat => serde_json::json!({
            "model": c.model.as_deref().unwrap_or(""),
            "messages": [{ "role": if direction == "request" { "user" } else { "assistant" }, "content": text }],
            "max_tokens": 20,
            "temperature": 0,
            "stream": false,
        }),
        ClassifierKind::Webhook => serde_json::json!({ "texts": [text], "direction": direction }),
        ClassifierKind::Presidio => {
            serde_json::json!({ "text": text, "language": c.model.as_deref().unwrap_or("en") })
        }
        // Scored in place by `ask`: never sent.
        ClassifierKind::Builtin => return Vec::new(),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Reads a kind's answer by its structure.
pub fn verdict(c: &Classifier, body: &[u8]) -> Result<Verdict, Failure> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| Failure::Unreadable)?;
    let decide = |score: f64| {
        if score >= c.threshold {
            Verdict::Hit(score as f32)
        } else {
            Verdict::Pass(score as f32)
        }
    };
    match c.kind {
        ClassifierKind::Tei => {
            // One input: `[{"label", "score"}, ...]`; a batch of one:
            // `[[...]]`.
            let list = match v.as_array() {
                Some(a) if a.first().is_some_and(|x| x.is_array()) => a[0].as_array().ok_or(Failure::Unreadable)?,
                Some(a) => a,
                None => return Err(Failure::Unreadable),
            };
            let mut best = 0.0f64;
            let mut read = false;
            for entry in list {
                let (Some(label), Some(score)) = (entry["label"].as_str(), entry["score"].as_f64()) else {
                    return Err(Failure::Unreadable);
                };
                read = true;
                if c.labels.iter().any(|l| l.eq_ignore_ascii_case(label)) {
                    best = best.max(score);
                }
            }
            if !read {
                return Err(Failure::Unreadable);
            }
            Ok(decide(best))
        }
        ClassifierKind::Moderations => {
            let results = v["results"].as_array().filter(|r| !r.is_empty()).ok_or(Failure::Unreadable)?;
            let mut best = 0.0f64;
            let mut flagged = false;
            for r in results {
                flagged |= r["flagged"].as_bool().ok_or(Failure::Unreadable)?;
                if let Some(scores) = r["category_scores"].as_object() {
                    best = best.max(scores.values().filter_map(|s| s.as_f64()).fold(0.0, f64::max));
                }
            }
            // The provider's own `flagged` counts, whatever the scores.
            Ok(if flagged { Verdict::Hit(best.max(c.threshold) as f32) } else { decide(best) })
        }
        ClassifierKind::Chat => {
            let content = v["choices"][0]["message"]["content"].as_str().ok_or(Failure::Unreadable)?;
            let first = content.split_whitespace().next().unwrap_or("");
            match first.to_ascii_lowercase().trim_end_matches(|ch: char| !ch.is_ascii_alphabetic()) {
                "unsafe" => Ok(Verdict::Hit(1.0)),
                "safe" => Ok(Verdict::Pass(0.0)),
                _ => Err(Failure::Unreadable),
            }
        }
        ClassifierKind::Presidio => {
            // `[{"entity_type", "start", "end", "score"}, ...]`: the best
            // score decides; no entity is a pass.
            let list = v.as_array().ok_or(Failure::Unreadable)?;
            let mut best = 0.0f64;
            for entity in list {
                best = best.max(entity["score"].as_f64().ok_or(Failure::Unreadable)?);
            }
            Ok(decide(best))
        }
        // Scored in place by `ask`: it has no answer to read.
        ClassifierKind::Builtin => Err(Failure::Unreadable),
        ClassifierKind::Webhook => {
            let flagged = v["flagged"].as_bool().ok_or(Failure::Unreadable)?;
            let score = v["score"].as_f64().unwrap_or(if flagged { 1.0 } else { 0.0 });
            Ok(if flagged { Verdict::Hit(score as f32) } else { Verdict::Pass(score as f32) })
        }
    }
}

/// An answer over this is not a classifier's.
const ANSWER_BYTES_MAX: usize = 256 * 1024;

/// Asks classifier `c` about `text`, within its timeout (and the
/// request's deadline).
pub async fn ask(
    state: &CoreState,
    c: &Classifier,
    text: &[u8],
    direction: &str,
    deadline: Instant,
    cut: &crate::cut::Cut,
) -> Result<Verdict, Failure> {
    if c.kind == ClassifierKind::Builtin {
        // A pass over at most `text_bytes_max` bytes (64 KiB at most, by
        // the config's check) on this worker, about 1.5 us per KiB:
        // nothing to wait for.
        let score = tollgate_policy::guard::model::Model::injection().score(text);
        return Ok(if f64::from(score) >= c.threshold { Verdict::Hit(score) } else { Verdict::Pass(score) });
    }
    let body = request_body(c, &String::from_utf8_lossy(text), direction);
    let answer = exchange(state, c, body, deadline, cut).await?;
    verdict(c, &answer)
}

/// Posts `body` to classifier `c` and reads its whole answer, within the
/// classifier's timeout (and the request's deadline).
async fn exchange(
    state: &CoreState,
    c: &Classifier,
    body: Vec<u8>,
    deadline: Instant,
    cut: &crate::cut::Cut,
) -> Result<Vec<u8>, Failure> {
    let until = deadline.min(Instant::now() + c.timeout);
    post_whole(state, c.provider, &c.path, body, until, cut).await
}

/// Posts a JSON `body` to `path` under provider `provider`'s base path, on
/// the core's pool for it, and reads the whole answer (2xx only, at most
/// 256 KiB), before `until`: a gateway call of its own (a classifier, the
/// answer cache's embedding).
pub async fn post_whole(
    state: &CoreState,
    provider: usize,
    path: &str,
    body: Vec<u8>,
    until: Instant,
    cut: &crate::cut::Cut,
) -> Result<Vec<u8>, Failure> {
    let exchange = async {
        let upstream = state.upstreams.get(provider).ok_or(Failure::Unreachable)?;
        let provider = state.config.providers.get(provider).ok_or(Failure::Unreachable)?;
        let mut head = BytesMut::with_capacity(256);
        head.extend_from_slice(b"POST ");
        head.extend_from_slice(provider.base_path.as_bytes());
        head.extend_from_slice(path.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        head.extend_from_slice(&upstream.fixed_headers);
        head.extend_from_slice(b"content-type: application/json\r\naccept: application/json\r\ncontent-length: ");
        head.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        head.extend_from_slice(b"\r\n\r\n");
        let parts = [head.freeze(), Bytes::from(body)];
        let (mut conn, answer) = super::call::call(state, upstream, &parts, until, cut).await.map_err(|e| match e {
            GatewayError::UpstreamTimeout { .. } | GatewayError::UpstreamConnectTimeout { .. } => Failure::Timeout,
            _ => Failure::Unreachable,
        })?;
        let (body, reusable) = read_whole(&mut conn, &answer, until).await?;
        if reusable && answer.keep_alive {
            upstream.give_back(conn);
        }
        if !(200..300).contains(&answer.status) {
            return Err(Failure::Unreadable);
        }
        Ok(body)
    };
    match monoio::time::timeout(until.saturating_duration_since(Instant::now()), exchange).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Timeout),
    }
}

/// A whole answer body, bounded; whether the connection may be pooled.
async fn read_whole(up: &mut UpConn, head: &ResponseHead, until: Instant) -> Result<(Vec<u8>, bool), Failure> {
    enum Framing {
        Length(LengthDecoder),
        Chunked(ChunkedDecoder),
        Close,
    }
    let mut framing = match head.framing {
        BodyFraming::Empty => return Ok((Vec::new(), true)),
        BodyFraming::Length(n) if n as usize > ANSWER_BYTES_MAX => return Err(Failure::Unreadable),
        BodyFraming::Length(n) => Framing::Length(LengthDecoder::new(n)),
        BodyFraming::Chunked => Framing::Chunked(ChunkedDecoder::new()),
        BodyFraming::CloseDelimited => Framing::Close,
    };
    let mut body = Vec::new();
    loop {
        let done = match &mut framing {
            Framing::Length(d) => {
                let p = d.decode(&up.buf);
                body.extend_from_slice(&up.buf[..p.consumed]);
                up.buf.advance(p.consumed);
                p.done
            }
            Framing::Chunked(d) => {
                let input = &up.buf[..];
                let p = d.decode(input, |r| body.extend_from_slice(&input[r])).map_err(|_| Failure::Unreadable)?;
                up.buf.advance(p.consumed);
                p.done
            }
            Framing::Close => {
                body.extend_from_slice(&up.buf);
                up.buf.clear();
                false
            }
        };
        if done {
            return Ok((body, true));
        }
        if body.len() > ANSWER_BYTES_MAX {
            return Err(Failure::Unreadable);
        }
        up.buf.reserve(UPSTREAM_READ_BYTES);
        let wait = until.saturating_duration_since(Instant::now());
        match monoio::time::timeout(wait, iov::read_more(&mut up.stream, &mut up.buf)).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(Ok(0)) if matches!(framing, Framing::Close) => return Ok((body, false)),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(Failure::Unreachable),
            Ok(Ok(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tollgate_policy::guard::Action;

    fn classifier(kind: ClassifierKind) -> Classifier {
        Classifier {
            name: "c".into(),
            kind,
            provider: 0,
            path: "/".into(),
            model: None,
            labels: vec!["INJECTION".into(), "JAILBREAK".into()],
            threshold: 0.5,
            action: Action::Block,
            timeout: Duration::from_millis(100),
            fail_open: true,
            text_bytes_max: 8192,
            answers: false,
            stream_window_bytes: 1024,
        }
    }

    /// Answers in each kind's documented shape, written with other
    /// whitespace and key orders than the mock's, and hostile or broken
    /// ones.
    #[test]
    fn presidio_answers_and_character_spans() {
        let c = classifier(ClassifierKind::Presidio);
        // Presidio's documented answer, reordered and spaced otherwise.
        let hit = br#"[ { "score" : 0.85, "end": 10, "start":5, "entity_type":"PERSON",
            "recognition_metadata": {"recognizer_name": "SpacyRecognizer"} } ]"#;
        assert_eq!(verdict(&c, hit), Ok(Verdict::Hit(0.85)));
        assert_eq!(verdict(&c, b" [ ] "), Ok(Verdict::Pass(0.0)));
        for broken in [&b"{}"[..], b"[{\"score\":\"high\"}]", b"not json", b"[{\"entity_type\":\"PERSON\"}]"] {
            assert_eq!(verdict(&c, broken), Err(Failure::Unreadable), "{}", String::from_utf8_lossy(broken));
        }
        // Characters, not bytes: "é" is two bytes, "日" three.
        let text = "é日 Alice";
        assert_eq!(char_span_to_bytes(text, 3, 8), Some((6, 11)));
        assert_eq!(&text[6..11], "Alice");
        assert_eq!(char_span_to_bytes(text, 0, 1), Some((0, 2)));
        // Spans that do not fit the text are never trusted.
        for (start, end) in [(3, 3), (5, 3), (3, 9), (9, 12), (usize::MAX - 1, usize::MAX)] {
            assert_eq!(char_span_to_bytes(text, start, end), None, "{start}..{end}");
        }
    }

    #[test]
    fn answers_are_read_by_their_structure() {
        use ClassifierKind::*;
        let table: &[(ClassifierKind, &str, Result<bool, Failure>)] = &[
            // TEI: one input, a batch of one, labels in any case.
            (Tei, r#"[ {"label": "SAFE", "score": 0.1}, {"score": 0.9, "label": "INJECTION"} ]"#, Ok(true)),
            (Tei, r#"[[{"score":0.7,"label":"jailbreak"},{"score":0.3,"label":"BENIGN"}]]"#, Ok(true)),
            (Tei, r#"[{"score":0.99,"label":"SAFE"},{"score":0.01,"label":"INJECTION"}]"#, Ok(false)),
            // A label of ours nested elsewhere does not count.
            (Tei, r#"[{"score":0.99,"label":"SAFE","note":{"label":"INJECTION","score":1}}]"#, Ok(false)),
            (Tei, r#"{"error":"Model is overloaded","error_type":"overloaded"}"#, Err(Failure::Unreadable)),
            (Tei, r#"[]"#, Err(Failure::Unreadable)),
            // Moderations: `flagged` decides; scores over the threshold too.
            (
                Moderations,
                r#"{"results":[{"categories":{"violence":true},"flagged":true,"category_scores":{"violence":0.2}}],"id":"modr-1","model":"omni-moderation-latest"}"#,
                Ok(true),
            ),
            (
                Moderations,
                "{\n  \"id\": \"modr-2\",\n  \"results\": [ { \"flagged\": false, \"category_scores\": { \"hate\": 0.7 } } ]\n}",
                Ok(true),
            ),
            (Moderations, r#"{"results":[{"flagged":false,"category_scores":{"hate":0.01}}]}"#, Ok(false)),
            (Moderations, r#"{"results":[{"category_scores":{"hate":0.01}}]}"#, Err(Failure::Unreadable)),
            (Moderations, r#"{"results":[]}"#, Err(Failure::Unreadable)),
            // A guard model: its first word.
            (Chat, r#"{"choices":[{"message":{"role":"assistant","content":"\n\nunsafe\nS1"}}]}"#, Ok(true)),
            (Chat, r#"{"choices":[{"message":{"content":"Safe."}}]}"#, Ok(false)),
            (Chat, r#"{"choices":[{"message":{"content":"safe, though the word unsafe appears"}}]}"#, Ok(false)),
            (Chat, r#"{"choices":[{"message":{"content":"I cannot classify this"}}]}"#, Err(Failure::Unreadable)),
            // A webhook.
            (Webhook, r#"{ "score": 0.8, "flagged": true }"#, Ok(true)),
            (Webhook, r#"{"flagged":"yes"}"#, Err(Failure::Unreadable)),
            (Webhook, "not json", Err(Failure::Unreadable)),
        ];
        for (kind, body, want) in table {
            let got = verdict(&classifier(*kind), body.as_bytes()).map(|v| matches!(v, Verdict::Hit(_)));
            assert_eq!(got, *want, "{kind:?} {body}");
        }
    }

    /// A hostile or broken webhook cannot place a redaction outside the
    /// texts it was sent, or inside a character.
    #[test]
    fn webhook_spans_are_checked_against_the_texts_sent() {
        let texts = vec![b"older".to_vec(), b"caf\xc3\xa9 Alice".to_vec(), b"Bob".to_vec()];
        let answer = br#"{"flagged": true, "spans": [
            {"text": 0, "start": 6, "end": 11},
            {"text": 1, "start": 0, "end": 3},
            {"text": 0, "start": 4, "end": 2},
            {"text": 0, "start": 3, "end": 4},
            {"text": 0, "start": 0, "end": 99},
            {"text": 2, "start": 0, "end": 1},
            {"text": -1, "start": 0, "end": 1},
            {"text": 0, "start": 1.5, "end": 2},
            {"text": "0", "start": 0, "end": 1}
        ]}"#;
        // Texts 1 and 2 were sent: span text 0 is text 1, and span text 2
        // was not sent.
        let piece = |text: u32| Piece { text, start: 0, end: texts[text as usize].len() };
        let spans = spans_of(answer, &texts, &[piece(1), piece(2)]).unwrap();
        assert_eq!(spans, [(1, 6, 11), (2, 0, 3)]);
        assert_eq!(spans_of(b"not json", &texts, &[piece(0)]), Err(Failure::Unreadable));
        assert_eq!(spans_of(br#"{"flagged": false}"#, &texts, &[piece(0)]), Ok(vec![]));
        // A piece of a text: its spans are placed where it begins, and
        // held to it.
        let part = Piece { text: 1, start: 5, end: 11 };
        let answer = br#"{"spans": [{"text": 0, "start": 1, "end": 6}, {"text": 0, "start": 1, "end": 7}]}"#;
        assert_eq!(spans_of(answer, &texts, &[part]).unwrap(), [(1, 6, 11)]);
    }

    /// An answer's new text is asked about whole: in overlapping pieces
    /// of `max` ending with the last `max` bytes; past `CALLS_MAX` pieces,
    /// the newest, and not complete. Text that is not UTF-8 (an upstream's)
    /// is cut too, never a panic.
    #[test]
    fn an_answers_new_text_is_asked_about_whole() {
        let text = "Réponse — 日本語 and some prose; ".repeat(60).into_bytes();
        let mut broken = vec![0x80u8; 3];
        broken.extend_from_slice(&text[..500]);
        broken.extend_from_slice(&[0xBF; 200]);
        for text in [&text, &broken] {
            let utf8 = std::str::from_utf8(text).is_ok();
            for max in [16, 64, 100, 512, 4096] {
                for new in [0, 1, 10, 63, 64, 65, 300, 1000, text.len(), usize::MAX] {
                    let (pieces, complete) = answer_pieces(text, new, max);
                    if utf8 {
                        assert_eq!(*pieces.last().unwrap(), tail(text, max), "{max} {new}");
                    }
                    let mut covered = vec![false; text.len()];
                    for p in &pieces {
                        assert!(p.len() <= max && (!utf8 || std::str::from_utf8(p).is_ok()), "{max} {new}");
                        let at = p.as_ptr() as usize - text.as_ptr() as usize;
                        covered[at..at + p.len()].iter_mut().for_each(|c| *c = true);
                    }
                    let new = new.min(text.len());
                    if complete {
                        assert!(covered[text.len() - new..].iter().all(|&c| c), "{max} {new}: new text unasked");
                    } else {
                        assert_eq!(pieces.len(), CALLS_MAX, "{max} {new}");
                        assert!(new > (max - max / 4 - 3) * (CALLS_MAX - 2), "{max} {new}");
                    }
                }
            }
        }
    }

    /// Any bytes an upstream may send, cut at any size, from anywhere:
    /// pieces within `max`, the new text covered (where it all fits in the
    /// calls), the last piece the tail, never a panic or an endless loop.
    #[test]
    fn pieces_of_any_bytes_cover_the_new_text() {
        let state = std::cell::Cell::new(0x2545_f491_4f6c_dd1du64);
        let next = |n: u64| crate::next_random(&state) % n.max(1);
        // Bytes that begin no character, lead bytes, ASCII and spaces.
        let alphabet = [0x80u8, 0xBF, 0xC3, 0xA9, 0xE6, 0x97, 0xA5, 0xF0, b'a', b' ', b'\n'];
        for _ in 0..3000 {
            let len = next(700) as usize;
            let text: Vec<u8> = (0..len).map(|_| alphabet[next(alphabet.len() as u64) as usize]).collect();
            let max = next(300) as usize;
            let new = if next(4) == 0 { usize::MAX } else { next(len as u64 + 1) as usize };
            let (got, complete) = answer_pieces(&text, new, max);
            let last = got.last().expect("a piece");
            assert_eq!(last.as_ptr() as usize + last.len(), text.as_ptr() as usize + len, "{text:?} {max} {new}");
            if std::str::from_utf8(&text).is_ok() {
                assert_eq!(*last, tail(&text, max.max(16)), "{text:?} {max} {new}");
            }
            let mut covered = vec![false; len];
            for p in &got {
                assert!(p.len() <= max.max(16), "{text:?} {max} {new}");
                let at = p.as_ptr() as usize - text.as_ptr() as usize;
                covered[at..at + p.len()].iter_mut().for_each(|c| *c = true);
            }
            if complete {
                assert!(covered[len - new.min(len)..].iter().all(|&c| c), "{text:?} {max} {new}");
            }
            let from = next(len as u64 + 1) as usize;
            let mut covered = vec![false; len];
            for (a, b) in pieces(&text, from, max) {
                assert!(a <= b && b <= len && b - a <= max.max(16), "{text:?} {from} {max}");
                covered[a..b].iter_mut().for_each(|c| *c = true);
            }
            assert!(covered[from..].iter().all(|&c| c), "{text:?} {from} {max}");
        }
    }

    /// Every byte of every text that is not blank goes out, in calls of at
    /// most `max` bytes, pieces cut on characters' starts, a long text's
    /// pieces each repeating the end of the one before; and past
    /// `CALLS_MAX` calls, the newest, and not complete.
    #[test]
    fn a_redacting_classifier_is_sent_every_text_in_calls_that_fit() {
        let taking = |max| Classifier { text_bytes_max: max, ..classifier(ClassifierKind::Webhook) };
        let long = "Écris à Alice — café 日本 ".repeat(40).into_bytes();
        let texts = vec![b"short one".to_vec(), b"  \n".to_vec(), long.clone(), b"last".to_vec(), long];
        for max in [16, 40, 64, 100, 1000, 5000] {
            let (calls, complete) = calls(&taking(max), &texts, 0).expect("it fails open");
            if !complete {
                assert!(texts.iter().map(Vec::len).sum::<usize>() > max * CALLS_MAX / 2, "{max}");
                assert_eq!(calls.len(), CALLS_MAX);
                assert_eq!(calls.last().and_then(|c| c.last()).map(|p| p.text), Some(4), "the newest kept");
                continue;
            }
            let mut covered: Vec<Vec<bool>> = texts.iter().map(|t| vec![false; t.len()]).collect();
            for call in &calls {
                assert!(call.iter().map(|p| p.end - p.start).sum::<usize>() <= max.max(16), "{max}: {call:?}");
                for p in call {
                    let t = &texts[p.text as usize];
                    assert!(std::str::from_utf8(&t[p.start..p.end]).is_ok(), "{max}: {p:?}");
                    covered[p.text as usize][p.start..p.end].iter_mut().for_each(|b| *b = true);
                }
            }
            for (i, t) in texts.iter().enumerate() {
                let blank = t.trim_ascii().is_empty();
                assert!(covered[i].iter().all(|&c| c != blank), "{max}: text {i}");
            }
            // A long text's pieces overlap.
            let pieces: Vec<Piece> = calls.iter().flatten().filter(|p| p.text == 2).copied().collect();
            for w in pieces.windows(2) {
                assert!(w[1].start < w[0].end && w[0].end - w[1].start >= overlap(max) - 3, "{max}: {w:?}");
            }
        }
        let many = vec![b"a".to_vec(); 64 * CALLS_MAX];
        assert!(calls(&taking(64), &many, 0).expect("it fails open").1, "short texts pack");
        let too_many = vec![vec![b'a'; 64]; CALLS_MAX + 1];
        assert!(!calls(&taking(64), &too_many, 0).expect("it fails open").1);
        let closed = Classifier { fail_open: false, ..taking(64) };
        assert_eq!(calls(&closed, &too_many, 0).err(), Some(Failure::TooLarge), "failing closed");
    }

    /// A call's size counts what joins its pieces: Presidio's calls of a
    /// thousand one-byte texts stay within `text_bytes_max` with their
    /// `"\n\n"`s (they were three times it), and fill it.
    #[test]
    fn a_calls_joins_count_in_its_size() {
        let c = Classifier { text_bytes_max: 512, ..classifier(ClassifierKind::Webhook) };
        let texts = vec![b"a".to_vec(); 1000];
        let (calls, complete) = calls(&c, &texts, 2).expect("it fails open");
        assert!(complete);
        for call in &calls {
            let size = call.iter().map(|p| p.end - p.start).sum::<usize>() + 2 * (call.len() - 1);
            assert!(size <= 512, "{size}");
        }
        // 171 pieces of one byte and 170 joins are 511 bytes; the next
        // would make 514.
        assert_eq!(calls[0].len(), 171);
        assert_eq!(calls.iter().map(Vec::len).sum::<usize>(), 1000, "every text sent");
    }

    #[test]
    fn the_tail_sent_is_the_newest_text_on_a_character_boundary() {
        let text = "older text\nnewest: ünïcödé".as_bytes();
        for max in 0..text.len() + 2 {
            let t = tail(text, max);
            assert!(t.len() <= max && std::str::from_utf8(t).is_ok(), "{max}");
            assert!(text.ends_with(t));
        }
    }

    /// Verdicts are kept by text, classifier, profile, direction and team:
    /// an answer's pass does not pass the same text sent as a prompt, and
    /// one team's verdict does not answer another's text (faster than a
    /// call, telling it someone sent that text).
    #[test]
    fn the_cache_keys_by_text_classifier_direction_and_team_and_forgets_when_full() {
        use tollgate_policy::guard::Direction::{Request, Response};
        let cache = VerdictCache::default();
        let (a, b) =
            (classifier(ClassifierKind::Tei), Classifier { name: "d".into(), ..classifier(ClassifierKind::Tei) });
        let now = Instant::now();
        let key = |profile, c, direction, team, text: &[u8]| cache.key((profile, c), (direction, team), text);
        let x = key("p", &a, Request, 0, b"x");
        assert_ne!(x, key("p", &b, Request, 0, b"x"));
        assert_ne!(x, key("q", &a, Request, 0, b"x"));
        assert_ne!(x, key("p", &a, Response, 0, b"x"), "the direction");
        assert_ne!(x, key("p", &a, Request, 1, b"x"), "the team");
        assert_eq!(x, key("p", &a, Request, 0, b"x"));
        cache.put(x, Verdict::Hit(0.9), now);
        assert_eq!(cache.get(x, now), Some(Verdict::Hit(0.9)));
        assert_eq!(cache.get(x, now + CACHE_TTL), None, "expired");
        for i in 0..CACHE_ENTRIES {
            cache.put(key("p", &a, Request, 0, format!("{i}").as_bytes()), Verdict::Pass(0.0), now);
        }
        assert!(cache.len() <= CACHE_ENTRIES);
    }
}
