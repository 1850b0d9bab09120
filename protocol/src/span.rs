//! Byte ranges into a frozen buffer: the one typed way this crate hands out
//! views (instead of ad-hoc `(usize, usize)` tuples).

use bytes::Bytes;

/// A half-open byte range `start..end` into a buffer the caller holds.
///
/// `u32` offsets keep a head's header table small (heads are capped far
/// below 4 GiB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The span of `part` within `whole`; an empty span when `part` is not
    /// a sub-slice of it (httparse hands back a static `""` for a missing
    /// reason phrase, for one).
    pub fn of(whole: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
        if start > whole.len() || part.len() > whole.len() - start {
            return Span::default();
        }
        Span::new(start, start + part.len())
    }

    pub fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end && end <= u32::MAX as usize);
        Span { start: start as u32, end: end as u32 }
    }

    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }

    pub fn get(self, buf: &[u8]) -> &[u8] {
        &buf[self.start as usize..self.end as usize]
    }

    /// A zero-copy view of the same range in a frozen buffer.
    pub fn slice(self, buf: &Bytes) -> Bytes {
        buf.slice(self.start as usize..self.end as usize)
    }
}
