//! Guarding text that arrives in pieces (an answer's deltas): each piece is
//! scanned together with the tail held back from the pieces before, so a
//! match split across SSE events or TCP reads is still found, and only the
//! part that can no longer become (part of) a match is released.
//!
//! What is held back: the last [`WINDOW`] bytes (an e-mail's local part or a
//! password label must not leave before what follows them arrives), and
//! any candidate still growing at the end (a key whose last characters have
//! not come yet; a PEM block until its end marker, at most
//! [`super::detect::PEM_BYTES_MAX`]). The stream is never buffered whole.

use super::{redact, Action, Direction, Findings, Guard, Hit};

/// Bytes always held back from the end of the text seen so far.
pub const WINDOW: usize = 128;

/// Past this much held text, a stream releases all but the window even if
/// a candidate is still growing (a deny pattern such as `\w+` over a very
/// long word): memory and rescanning stay bounded; such a match is then
/// caught only in the part still held.
pub const HOLD_BYTES_MAX: usize = super::detect::PEM_BYTES_MAX + 4096;

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
}

impl TextStream {
    /// Takes the next piece of text; appends what may be released now,
    /// redacted, to `out`. `Some` when a blocking rule matched: nothing of
    /// the held text is released, and the stream should end.
    pub fn push(&mut self, guard: &Guard, piece: &[u8], out: &mut Vec<u8>, findings: &mut Findings) -> Option<Hit> {
        self.buf.extend_from_slice(piece);
        self.release(guard, false, out, findings)
    }

    /// The text is over: everything held is scanned as complete and
    /// released.
    pub fn finish(&mut self, guard: &Guard, out: &mut Vec<u8>, findings: &mut Findings) -> Option<Hit> {
        self.release(guard, true, out, findings)
    }

    /// Bytes held back now.
    pub fn held(&self) -> usize {
        self.buf.len() - self.context
    }

    fn release(&mut self, guard: &Guard, complete: bool, out: &mut Vec<u8>, findings: &mut Findings) -> Option<Hit> {
        let len = self.buf.len();
        let keep = self.context;
        let settled = guard.scan(&self.buf, Direction::Response, complete, findings);
        // Hits in the context were decided when it was released.
        findings.hits.retain(|h| h.start >= keep);
        let mut cut = if complete { len } else { settled.min(len.saturating_sub(WINDOW)) }.max(keep);
        if !complete && len - cut > HOLD_BYTES_MAX {
            cut = len - WINDOW;
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
        findings.file(0);
        self.consumed += cut - keep;
        let drop = cut.saturating_sub(CONTEXT);
        self.buf.drain(..drop);
        self.context = cut - drop;
        None
    }
}
