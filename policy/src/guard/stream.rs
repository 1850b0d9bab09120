//! Guarding text that arrives in pieces (an answer's deltas): each piece is
//! scanned together with the tail held back from the pieces before, so a
//! match split across SSE events or TCP reads is still found, and only the
//! part that can no longer become (part of) a match is released.
//!
//! What is held back: the last [`WINDOW`] bytes (an e-mail's local part or a
//! password label must not leave before what follows them arrives), and a
//! candidate still undecided at the end, which every validator decides
//! within [`super::detect::DECIDED_WITHIN`] bytes of its start: a stream
//! holds at most [`HOLD_BYTES_MAX`]. A match decided while it is still
//! arriving (a key, once enough of it has come; a PEM block, once its
//! header has) is released as its placeholder at once, and the bytes that
//! continue it are swallowed as they come, however long it grows. The
//! stream is never buffered whole.
//!
//! A text a client joins to the one before it (an Anthropic message's next
//! text block, a choice's text after its finish) goes on from it
//! ([`TextStream::resume`]): the end of what was released is the next
//! scans' left context, a match across that seam is redacted (or blocks)
//! from the seam on, its first part being gone, and a match that was open
//! when the text ended keeps swallowing what continues it.

use super::detect::Tail;
use super::{redact, Action, Direction, Findings, Guard, Hit, Rule};

/// Bytes always held back from the end of the text seen so far.
pub const WINDOW: usize = 128;

/// The most a stream holds back: the longest undecided candidate, and the
/// window after it (a match is released whole, so one that ends inside
/// the window waits with it). Past this, a stream releases all but the
/// window even if a candidate is still growing; no built-in detector's
/// candidate is that long undecided (`hold_back_is_bounded_and_enough`
/// tests each at its longest), so this only cuts a profile's deny pattern
/// with a very long match (`\w+` over a long word), which is then caught
/// only in the part still held.
pub const HOLD_BYTES_MAX: usize = super::detect::DECIDED_WITHIN + 1 + WINDOW;

/// Bytes of released text kept as the left context of the next scan, so
/// that a validator looking back (is this digit the start of a number?)
/// sees what the scan of the whole text would.
const CONTEXT: usize = 64;

/// One text field of a stream (an answer's `content`, say).
#[derive(Debug, Default)]
pub struct TextStream {
    /// Released context (the first `context` bytes), then held text.
    buf: Vec<u8>,
    context: usize,
    /// Bytes of the original text released before `buf`'s held part, so
    /// that hit positions count from the start of the stream's text.
    consumed: usize,
    /// Matches released while still open: the next bytes that continue
    /// them belong to them.
    open: Vec<Continuation>,
    /// Where the last match released open ended (from the start of the
    /// stream's text).
    open_end: Option<usize>,
    /// The context is text released before a seam ([`Self::resume`]), and
    /// nothing after it has been released yet.
    seam: bool,
    /// Resumed after a seam ([`Self::resume`]).
    resumed: bool,
    /// Since the seam, what came before it changed the text after it: the
    /// first blocking or redacting match across the seam, or open at it,
    /// that took bytes.
    carried: Option<Hit>,
}

#[derive(Debug)]
struct Continuation {
    tail: Tail,
    action: Action,
    rule: Rule,
    /// Where the match starts, from the start of the stream's text.
    start: usize,
    /// Where its record is in the findings' `all` (checked before use:
    /// found again by a search when it is not there). Found by a review:
    /// searched for at every piece, past every hit filed since, a long
    /// key among many findings cost a walk of them all a piece.
    record: usize,
}

/// Where the record of the match of `rule` at `start` is in `findings`.
fn record_of(findings: &Findings, rule: Rule, start: usize) -> usize {
    findings.all.iter().rposition(|(_, h)| h.rule == rule && h.start == start).unwrap_or(usize::MAX)
}

impl TextStream {
    /// Takes the next piece of text; appends what may be released now,
    /// redacted, to `out`. `Some` when a blocking rule matched: nothing of
    /// the held text is released, and the stream should end.
    pub fn push(&mut self, guard: &Guard, piece: &[u8], out: &mut Vec<u8>, findings: &mut Findings) -> Option<Hit> {
        let piece = self.continue_open(piece, out, findings);
        if piece.is_empty() {
            return None;
        }
        self.buf.extend_from_slice(piece);
        self.release(guard, false, out, findings)
    }

    /// Gives an open match the bytes of `piece` that continue it (a
    /// redacted one swallows them; a flagged one lets them through) and
    /// returns the rest.
    fn continue_open<'p>(&mut self, piece: &'p [u8], out: &mut Vec<u8>, findings: &mut Findings) -> &'p [u8] {
        if self.open.is_empty() {
            return piece;
        }
        // Nested matches (a key inside a password's value) go on
        // separately; a byte any redacted one takes is swallowed.
        let (mut taken, mut swallowed) = (0, 0);
        let mut first = None;
        self.open.retain_mut(|c| {
            let (n, ended) = c.tail.extend(piece);
            if n > 0 && first.is_none() && c.action == Action::Redact {
                first = Some(Hit { rule: c.rule, start: c.start, end: c.start, action: c.action });
            }
            taken = taken.max(n);
            if c.action == Action::Redact {
                swallowed = swallowed.max(n);
            }
            // The match's record grows with it.
            let at = |i: usize, findings: &Findings| {
                findings.all.get(i).is_some_and(|(_, h)| h.rule == c.rule && h.start == c.start)
            };
            if !at(c.record, findings) {
                c.record = record_of(findings, c.rule, c.start);
            }
            if let Some((_, h)) = findings.all.get_mut(c.record) {
                h.end += n;
            }
            !ended
        });
        out.extend_from_slice(&piece[swallowed.min(taken)..taken]);
        // What the open match took lies between the text before a seam and
        // the rest: they no longer meet.
        self.seam &= taken == 0;
        if self.resumed && self.carried.is_none() {
            self.carried = first;
        }
        // Released: kept only as the next scan's left context.
        debug_assert_eq!(self.buf.len(), self.context);
        self.buf.extend_from_slice(&piece[..taken]);
        self.consumed += taken;
        if self.open.is_empty() {
            self.open_end = Some(self.consumed);
        }
        let drop = self.buf.len().saturating_sub(CONTEXT);
        self.buf.drain(..drop);
        self.context = self.buf.len();
        &piece[taken..]
    }

    /// The text is over: everything held is scanned as complete and
    /// released. A match still open at its end (a key's header and part
    /// of its body, held because something undecided came after them) is
    /// released whole, and kept open for a text a client joins to this one
    /// ([`Self::resume`]): found by a review, such a key's body after the
    /// seam went out in clear.
    pub fn finish(&mut self, guard: &Guard, out: &mut Vec<u8>, findings: &mut Findings) -> Option<Hit> {
        self.release(guard, true, out, findings)
    }

    /// The stream after [`Self::finish`], for a text a client joins to this
    /// one: `seam` is the end of what was released, as released (redacted:
    /// a placeholder does not match again). It is the next scans' left
    /// context, and nothing after it is released while a candidate that
    /// begins in it is undecided; a match that begins in it and ends after
    /// it is this text's from the seam on (redacted there, or a block),
    /// its first part being gone; and a match open at the end of the text
    /// before goes on into this one. Found by a review: a fresh stream
    /// after a seam let a secret in short pieces (`bob@exa` | `m` |
    /// `ple.com`), or a private key's body after its header, go out in
    /// clear.
    pub fn resume(self, seam: &[u8]) -> TextStream {
        TextStream {
            buf: seam.to_vec(),
            context: seam.len(),
            // Positions go on from the text before (never back, so that
            // the context's place is never before the start).
            consumed: self.consumed.max(seam.len()),
            open: self.open,
            open_end: None,
            seam: !seam.is_empty(),
            resumed: true,
            carried: None,
        }
    }

    /// Whether, since [`Self::resume`], the text before the seam changed
    /// this text (a match across the seam, or an open one that took its
    /// first bytes): it is not what this text alone would give.
    pub fn carried(&self) -> Option<Hit> {
        self.carried
    }

    /// A match released open that the next bytes would still go to, as a
    /// hit (positions from the start of the stream's text).
    pub fn open_match(&self) -> Option<Hit> {
        self.open.iter().find(|c| c.action == Action::Redact).map(|c| Hit {
            rule: c.rule,
            start: c.start,
            end: self.consumed,
            action: c.action,
        })
    }

    /// Bytes held back now.
    pub fn held(&self) -> usize {
        self.buf.len() - self.context
    }

    fn release(&mut self, guard: &Guard, complete: bool, out: &mut Vec<u8>, findings: &mut Findings) -> Option<Hit> {
        let len = self.buf.len();
        let keep = self.context;
        let seam = self.seam;
        let settled = guard.scan(&self.buf, Direction::Response, complete, findings);
        // At the text's end, a match that runs to it may be open (see
        // [`Self::finish`]): the text is scanned again as one that may go
        // on, only then (most texts end clean, and the second scan was
        // most of a stream's finish). Judged before filing sets aside a
        // match inside another of its rule (found by a review: such a key,
        // to the end, was missed).
        let mut probe = Findings::default();
        if complete && len > keep && findings.hits.iter().any(|h| h.end == len) {
            guard.scan(&self.buf, Direction::Response, false, &mut probe);
        }
        let mut open = std::mem::take(&mut findings.open);
        // Hits within the context were decided when it was released. Right
        // after a match released open has ended, one that reaches past the
        // context began in it (an address whose local part was a key's
        // tail): what is new of it counts. Otherwise such a hit is an
        // artefact of the context's cut-off left edge (an `eyJ` whose
        // letter before was released earlier) and is dropped.
        //
        // Right after a seam, likewise: a hit that begins in the text
        // before it is this text's from the seam on.
        if self.seam || self.open_end == Some(self.consumed) {
            if self.seam && self.carried.is_none() {
                let offset = self.consumed - keep;
                let across = findings.hits.iter().find(|h| h.start < keep && h.end > keep && h.action != Action::Flag);
                self.carried = across.map(|h| Hit { start: h.start + offset, end: h.end + offset, ..*h });
            }
            findings.hits.retain(|h| h.end > keep);
            for h in &mut findings.hits {
                h.start = h.start.max(keep);
            }
            // An open one across a seam likewise: released open from the
            // seam on, not held past the bound.
            for o in open.iter_mut().filter(|_| self.seam) {
                o.start = o.start.max(keep);
            }
        } else {
            findings.hits.retain(|h| h.start >= keep);
        }
        let mut cut = if complete { len } else { settled.min(len.saturating_sub(WINDOW)) }.max(keep);
        if !complete && len - cut > HOLD_BYTES_MAX {
            cut = len - WINDOW;
        }
        // A decided match open at the end, with nothing undecided before
        // or inside it (a key in a password's value waits to be named
        // too, within the bound): everything goes, the match as its
        // placeholder, and what follows continues it.
        let outermost = open.iter().map(|o| o.start).min();
        let release_open = outermost.is_some_and(|start| {
            start >= keep && (settled == len || (settled >= start && len - start > HOLD_BYTES_MAX))
        });
        if release_open {
            cut = len;
        } else {
            open.clear();
        }
        // Released text ends on a character boundary: each event carries
        // whole UTF-8 characters.
        while cut > keep && cut < len && self.buf[cut] & 0xC0 == 0x80 {
            cut -= 1;
        }
        // A hit across the cut is left whole for the next scan; moving the
        // cut back can put it inside an earlier hit: repeat. (Hits start at
        // ASCII bytes, so this keeps the cut on a character boundary.)
        while let Some(h) = findings.hits.iter().find(|h| h.start < cut && h.end > cut) {
            cut = h.start;
        }
        findings.hits.retain(|h| h.end <= cut);
        // Positions from the start of the stream's text.
        let offset = self.consumed - keep;
        if let Some(block) = findings.hits.iter().find(|h| h.action == Action::Block).copied() {
            findings.all.push((0, Hit { start: block.start + offset, end: block.end + offset, ..block }));
            findings.hits.clear();
            return Some(block);
        }
        findings.hits.sort_by_key(|h| h.start);
        redact(&self.buf[..cut], keep, &findings.hits, out);
        for h in &mut findings.hits {
            h.start += offset;
            h.end += offset;
        }
        let before = self.open.len();
        for o in &open {
            // The hit as filed (positions from the start of the text).
            if let Some(h) = findings.hits.iter().find(|h| h.rule == o.rule && h.start == o.start + offset) {
                let c =
                    Continuation { tail: o.tail, action: h.action, rule: o.rule, start: h.start, record: usize::MAX };
                self.open.push(c);
            }
        }
        for o in &probe.open {
            // One that began before a seam is this text's from the seam
            // on, as filed (found by a review: a header cut by one seam and
            // held whole at the next lost its body).
            let start = match o.start >= keep {
                true => o.start,
                false if seam => keep,
                false => continue,
            };
            let hit = probe.hits.iter().find(|h| h.rule == o.rule && h.start == o.start && h.end > keep);
            if let Some(h) = hit.filter(|h| h.action != Action::Block) {
                let c = Continuation {
                    tail: o.tail,
                    action: h.action,
                    rule: o.rule,
                    start: start + offset,
                    record: usize::MAX,
                };
                self.open.push(c);
            }
        }
        findings.open = open;
        findings.file(0);
        for c in &mut self.open[before..] {
            c.record = record_of(findings, c.rule, c.start);
        }
        self.seam &= cut == keep;
        self.consumed += cut - keep;
        let drop = cut.saturating_sub(CONTEXT);
        self.buf.drain(..drop);
        self.context = cut - drop;
        None
    }
}
