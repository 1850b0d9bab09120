//! Body framing: how long a message body is, and incremental decoders for
//! Content-Length and chunked bodies that accept input split at any byte.
//!
//! Decoders never copy: they report which ranges of the caller's input are
//! body data and how many input bytes belong to this message, so the caller
//! can forward the raw bytes or slice out the data as it prefers.

use std::ops::Range;

use super::error::RequestError;

/// How the end of a message body is found (RFC 9112 section 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the peer closes (responses only).
    CloseDelimited,
}

/// Progress of one decode call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeProgress {
    /// Input bytes that belong to this body; the rest is the next message.
    pub consumed: usize,
    /// The body has ended.
    pub done: bool,
}

/// Counts down a Content-Length body.
#[derive(Clone, Copy, Debug)]
pub struct LengthDecoder {
    remaining: u64,
}

impl LengthDecoder {
    pub fn new(length: u64) -> Self {
        LengthDecoder { remaining: length }
    }

    /// Takes what belongs to the body from `input`; the data range is the
    /// consumed prefix itself.
    pub fn decode(&mut self, input: &[u8]) -> DecodeProgress {
        let take = (input.len() as u64).min(self.remaining) as usize;
        self.remaining -= take as u64;
        DecodeProgress { consumed: take, done: self.remaining == 0 }
    }

    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}

/// Bytes a chunk extension or the trailer section may take before the
/// message is refused; real senders use none.
const CHUNK_EXT_BYTES_MAX: usize = 1024;
/// Bytes every chunk extension of one body may take together: with only
/// each bounded, chunks of one byte behind 1,024 bytes of extension made
/// a body's bytes on the wire a thousand times its data, parsed byte by
/// byte on a core other tenants share, under any body size limit (found
/// by a review).
const CHUNK_EXT_TOTAL_MAX: usize = 4 * CHUNK_EXT_BYTES_MAX;
const TRAILER_BYTES_MAX: usize = 8 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size,
    /// After the size: optional extension up to CR.
    Ext,
    /// Saw CR after the size line; LF must follow.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// After the data: CR must follow.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    TrailerLf,
    /// Saw CR of the final empty line.
    EndLf,
    Done,
}

/// Incremental chunked-body decoder (RFC 9112 section 7.1).
///
/// Strict where leniency enables smuggling: line ends must be CRLF, sizes
/// must be hex digits only with no sign or white space, sizes overflowing 64
/// bits are refused, and extensions and trailers are bounded and skipped.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    size_digits: u8,
    remaining: u64,
    side_bytes: usize,
    /// Extension bytes of every chunk so far.
    ext_total: usize,
    data_total: u64,
    /// Where in the last `decode`'s input the trailer section began (just
    /// past the last chunk's size line), if it began there.
    trailer_at: Option<usize>,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            size_digits: 0,
            remaining: 0,
            side_bytes: 0,
            ext_total: 0,
            data_total: 0,
            trailer_at: None,
        }
    }

    /// Whether the body's last chunk has been read and its trailer section
    /// (fields, then the empty line) is being read.
    pub fn in_trailer(&self) -> bool {
        matches!(self.state, State::TrailerStart | State::TrailerLine | State::TrailerLf | State::EndLf | State::Done)
    }

    /// Where in the last [`Self::decode`]'s input the trailer section
    /// began, if it began there: what comes before is the body's chunks
    /// (the last one's `0` line included), what comes after its trailer
    /// fields and end. A relay that passes chunks through as they came
    /// ends the body there with an empty section of its own, so that no
    /// upstream field reaches the client unfiltered.
    pub fn trailer_at(&self) -> Option<usize> {
        self.trailer_at
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Between chunks: bytes appended now would start a new chunk, so a
    /// relay can end the body cleanly here.
    pub fn at_chunk_boundary(&self) -> bool {
        self.state == State::Size && self.size_digits == 0
    }

    /// Total data bytes decoded so far.
    pub fn data_len(&self) -> u64 {
        self.data_total
    }

    /// Decodes as much of `input` as belongs to this body, calling `data`
    /// with each range of `input` that is body data.
    pub fn decode(&mut self, input: &[u8], mut data: impl FnMut(Range<usize>)) -> Result<DecodeProgress, RequestError> {
        self.trailer_at = None;
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size => match hex_value(b) {
                    Some(d) => {
                        if self.size_digits >= 16 {
                            return Err(RequestError::ChunkSizeOverflow);
                        }
                        self.size = (self.size << 4) | d as u64;
                        self.size_digits += 1;
                    }
                    None if self.size_digits == 0 => return Err(RequestError::BadChunkSize),
                    None => match b {
                        b'\r' => self.state = State::SizeLf,
                        b';' => {
                            self.side_bytes = 0;
                            self.state = State::Ext;
                        }
                        _ => return Err(RequestError::BadChunkSize),
                    },
                },
                State::Ext => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => return Err(RequestError::BadChunkSize),
                    _ => {
                        self.side_bytes += 1;
                        self.ext_total += 1;
                        if self.side_bytes > CHUNK_EXT_BYTES_MAX || self.ext_total > CHUNK_EXT_TOTAL_MAX || is_ctl(b) {
                            return Err(RequestError::BadChunkSize);
                        }
                    }
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(RequestError::BadChunkSize);
                    }
                    if self.size == 0 {
                        self.side_bytes = 0;
                        self.state = State::TrailerStart;
                        self.trailer_at = Some(i + 1);
                    } else {
                        self.remaining = self.size;
                        self.state = State::Data;
                    }
                    self.size = 0;
                    self.size_digits = 0;
                }
                State::Data => {
                    let take = ((input.len() - i) as u64).min(self.remaining) as usize;
                    data(i..i + take);
                    self.data_total += take as u64;
                    self.remaining -= take as u64;
                    i += take;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(RequestError::BadChunkFraming);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(RequestError::BadChunkFraming);
                    }
                    self.state = State::Size;
                }
                State::TrailerStart => match b {
                    b'\r' => self.state = State::EndLf,
                    b'\n' => return Err(RequestError::BadChunkFraming),
                    _ => {
                        self.state = State::TrailerLine;
                        continue;
                    }
                },
                State::TrailerLine => {
                    self.side_bytes += 1;
                    if self.side_bytes > TRAILER_BYTES_MAX {
                        return Err(RequestError::BadChunkFraming);
                    }
                    match b {
                        b'\r' => self.state = State::TrailerLf,
                        b'\n' => return Err(RequestError::BadChunkFraming),
                        _ if is_ctl(b) => return Err(RequestError::BadChunkFraming),
                        _ => {}
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(RequestError::BadChunkFraming);
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(RequestError::BadChunkFraming);
                    }
                    self.state = State::Done;
                    return Ok(DecodeProgress { consumed: i + 1, done: true });
                }
                State::Done => return Ok(DecodeProgress { consumed: i, done: true }),
            }
            i += 1;
        }
        Ok(DecodeProgress { consumed: i, done: self.state == State::Done })
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// The line that ends a chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The zero-size chunk and empty trailer that end a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Writes the size line of a chunk of `len` bytes into `out` and returns
/// its length; `out` must hold at least 18 bytes.
pub fn chunk_header(len: usize, out: &mut [u8; 18]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = if len == 0 { 1 } else { (usize::BITS - len.leading_zeros()).div_ceil(4) as usize };
    for (k, slot) in out[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - k);
        *slot = HEX[(len >> shift) & 0xf];
    }
    out[digits] = b'\r';
    out[digits + 1] = b'\n';
    digits + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a relay that passes chunks through keeps of a body (the bytes
    /// before the trailer section, then an empty section of its own) is
    /// the body's chunks and its end, without the trailer fields, wherever
    /// the body is split into reads.
    #[test]
    fn the_trailer_section_begins_where_trailer_at_says_wherever_the_body_is_split() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n000\r\nx-secret: 1\r\nother: 2\r\n\r\nNEXT";
        let want = b"5;ext=1\r\nhello\r\n6\r\n world\r\n000\r\n\r\n";
        for a in 0..body.len() {
            for b in a..body.len() {
                let mut d = ChunkedDecoder::new();
                let (mut kept, mut buf) = (Vec::new(), Vec::new());
                for piece in [&body[..a], &body[a..b], &body[b..]] {
                    buf.extend_from_slice(piece);
                    let before = d.in_trailer();
                    let p = d.decode(&buf, |_| {}).unwrap();
                    let raw: Vec<u8> = buf.drain(..p.consumed).collect();
                    let chunks = if before { 0 } else { d.trailer_at().unwrap_or(raw.len()) };
                    kept.extend_from_slice(&raw[..chunks]);
                    if p.done {
                        kept.extend_from_slice(b"\r\n");
                        break;
                    }
                }
                assert_eq!(String::from_utf8_lossy(&kept), String::from_utf8_lossy(want), "split at {a}, {b}");
            }
        }
    }

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, DecodeProgress), RequestError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let p = d.decode(input, |r| out.extend_from_slice(&input[r]))?;
        Ok((out, p))
    }

    /// Input, then the decoded data, bytes consumed and whether the body ended.
    type Case = (&'static [u8], Result<(&'static [u8], usize, bool), RequestError>);

    #[test]
    fn chunked_table() {
        let cases: &[Case] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", Ok((b"hello", 15, true))),
            (b"5\r\nhello\r\n0\r\n\r\nNEXT", Ok((b"hello", 15, true))),
            (b"5;ext=1\r\nhello\r\n0\r\n\r\n", Ok((b"hello", 21, true))),
            (b"A\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n", Ok((b"0123456789", 28, true))),
            (b"5\r\nhel", Ok((b"hel", 6, false))),
            (b"5\nhello\r\n0\r\n\r\n", Err(RequestError::BadChunkSize)),
            (b"-5\r\nhello\r\n", Err(RequestError::BadChunkSize)),
            (b" 5\r\nhello\r\n", Err(RequestError::BadChunkSize)),
            (b"5 \r\nhello\r\n", Err(RequestError::BadChunkSize)),
            (b"0x5\r\nhello\r\n", Err(RequestError::BadChunkSize)),
            (b"\r\n", Err(RequestError::BadChunkSize)),
            (b"10000000000000000\r\n", Err(RequestError::ChunkSizeOverflow)),
            (b"5\r\nhelloX\r\n", Err(RequestError::BadChunkFraming)),
            (b"5\r\nhello\rX", Err(RequestError::BadChunkFraming)),
            (b"0\r\n\n", Err(RequestError::BadChunkFraming)),
        ];
        for (input, want) in cases {
            let got = decode_all(input).map(|(d, p)| (d, p.consumed, p.done));
            let want = want.map(|(d, c, done)| (d.to_vec(), c, done));
            assert_eq!(got, want, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn chunk_header_is_lowercase_hex() {
        let mut buf = [0u8; 18];
        for (len, want) in [(0usize, "0\r\n"), (5, "5\r\n"), (255, "ff\r\n"), (4096, "1000\r\n")] {
            let n = chunk_header(len, &mut buf);
            assert_eq!(&buf[..n], want.as_bytes());
        }
    }

    #[test]
    fn length_decoder_stops_at_length() {
        let mut d = LengthDecoder::new(5);
        assert_eq!(d.decode(b"abc"), DecodeProgress { consumed: 3, done: false });
        assert_eq!(d.decode(b"defgh"), DecodeProgress { consumed: 2, done: true });
    }
}
