//! Server-Sent Events: an incremental parser that follows the WHATWG
//! EventSource rules, and the writer the gateway uses for events it makes.
//!
//! The parser takes input in whatever pieces the network delivers (an event
//! may be split at any byte, a CRLF may be split between reads) and yields
//! whole events. Lines that end inside one input are sliced from it without
//! copying; only a line that spans two inputs is assembled in a carry
//! buffer, bounded by `line_bytes_max`.

use bytes::{BufMut, Bytes, BytesMut};

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field, if any (the default type is "message").
    pub event: Option<Bytes>,
    /// All `data` lines joined with LF, without the final LF.
    pub data: Bytes,
    /// The `id` field, if this event set one.
    pub id: Option<Bytes>,
    /// The `retry` field in milliseconds, if valid.
    pub retry: Option<u64>,
}

/// An event or line larger than the parser's bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SseTooLarge;

impl std::fmt::Display for SseTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SSE event exceeds the size limit")
    }
}

impl std::error::Error for SseTooLarge {}

/// Incremental SSE parser.
#[derive(Debug)]
pub struct SseParser {
    /// Current input not yet split into lines, and how far we got.
    input: Bytes,
    pos: usize,
    /// Start of a line whose end has not arrived yet.
    carry: BytesMut,
    /// The previous line ended with CR: an LF at the start of the next input
    /// belongs to that line end.
    skip_lf: bool,
    bom_checked: bool,
    event_bytes_max: usize,
    // The event being assembled.
    event: Option<Bytes>,
    data_first: Option<Bytes>,
    data_more: BytesMut,
    data_lines: usize,
    data_bytes: usize,
    id: Option<Bytes>,
    retry: Option<u64>,
}

impl SseParser {
    /// `event_bytes_max` bounds one line and one event's data.
    pub fn new(event_bytes_max: usize) -> Self {
        SseParser {
            input: Bytes::new(),
            pos: 0,
            carry: BytesMut::new(),
            skip_lf: false,
            bom_checked: false,
            event_bytes_max,
            event: None,
            data_first: None,
            data_more: BytesMut::new(),
            data_lines: 0,
            data_bytes: 0,
            id: None,
            retry: None,
        }
    }

    /// Adds input. Call [`SseParser::next_event`] until it answers `None`
    /// before pushing again.
    pub fn push(&mut self, input: Bytes) {
        debug_assert!(self.pos >= self.input.len(), "push before draining the previous input");
        self.input = input;
        self.pos = 0;
    }

    /// The next complete event, `None` when more input is needed.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseTooLarge> {
        while let Some(line) = self.next_line()? {
            if line.is_empty() {
                if let Some(ev) = self.dispatch() {
                    return Ok(Some(ev));
                }
                continue;
            }
            self.field(line)?;
        }
        Ok(None)
    }

    fn next_line(&mut self) -> Result<Option<Bytes>, SseTooLarge> {
        if self.skip_lf && self.pos < self.input.len() {
            if self.input[self.pos] == b'\n' {
                self.pos += 1;
            }
            self.skip_lf = false;
        }
        if !self.bom_checked {
            // The BOM is only stripped at the very start of the stream.
            let avail = self.carry.len() + self.input.len() - self.pos;
            if avail < 3 {
                self.stash_rest()?;
                let bom_impossible = !b"\xEF\xBB\xBF".starts_with(&self.carry);
                if !bom_impossible {
                    return Ok(None);
                }
            }
            self.bom_checked = true;
            let mut start = std::mem::take(&mut self.carry);
            start.extend_from_slice(&self.input[self.pos..]);
            if start.starts_with(b"\xEF\xBB\xBF") {
                let _ = start.split_to(3);
            }
            self.input = start.freeze();
            self.pos = 0;
        }
        let rest = &self.input[self.pos..];
        let Some(i) = memchr::memchr2(b'\n', b'\r', rest) else {
            self.stash_rest()?;
            return Ok(None);
        };
        let end = self.pos + i;
        let line = if self.carry.is_empty() {
            self.input.slice(self.pos..end)
        } else {
            self.check_bound(self.carry.len() + i)?;
            self.carry.extend_from_slice(&self.input[self.pos..end]);
            self.carry.split().freeze()
        };
        self.pos = end + 1;
        if self.input[end] == b'\r' {
            match self.input.get(self.pos) {
                Some(b'\n') => self.pos += 1,
                Some(_) => {}
                None => self.skip_lf = true,
            }
        }
        Ok(Some(line))
    }

    fn stash_rest(&mut self) -> Result<(), SseTooLarge> {
        let rest = &self.input[self.pos..];
        self.check_bound(self.carry.len() + rest.len())?;
        self.carry.extend_from_slice(rest);
        self.pos = self.input.len();
        Ok(())
    }

    fn check_bound(&self, len: usize) -> Result<(), SseTooLarge> {
        if len > self.event_bytes_max {
            Err(SseTooLarge)
        } else {
            Ok(())
        }
    }

    fn field(&mut self, line: Bytes) -> Result<(), SseTooLarge> {
        if line[0] == b':' {
            return Ok(()); // comment
        }
        let (name, value) = match memchr::memchr(b':', &line) {
            Some(c) => {
                let v = if line.get(c + 1) == Some(&b' ') { c + 2 } else { c + 1 };
                (line.slice(..c), line.slice(v..))
            }
            None => (line.clone(), Bytes::new()),
        };
        match &name[..] {
            b"event" => self.event = Some(value),
            b"data" => {
                self.data_bytes += value.len() + 1;
                self.check_bound(self.data_bytes)?;
                match self.data_lines {
                    0 => self.data_first = Some(value),
                    1 => {
                        let first = self.data_first.take().unwrap_or_default();
                        self.data_more.extend_from_slice(&first);
                        self.data_more.put_u8(b'\n');
                        self.data_more.extend_from_slice(&value);
                    }
                    _ => {
                        self.data_more.put_u8(b'\n');
                        self.data_more.extend_from_slice(&value);
                    }
                }
                self.data_lines += 1;
            }
            b"id" if memchr::memchr(0, &value).is_none() => self.id = Some(value),
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry = value.iter().try_fold(0u64, |a, &d| a.checked_mul(10)?.checked_add((d - b'0') as u64));
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let lines = std::mem::take(&mut self.data_lines);
        self.data_bytes = 0;
        let event = self.event.take();
        let id = self.id.take();
        let retry = self.retry.take();
        if lines == 0 {
            // WHATWG: an event with an empty data buffer is not dispatched.
            return None;
        }
        let data =
            if lines == 1 { self.data_first.take().unwrap_or_default() } else { self.data_more.split().freeze() };
        Some(SseEvent { event, data, id, retry })
    }
}

/// The terminal event of an OpenAI stream.
pub const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// Appends one event to `out`, splitting `data` into one `data:` line per
/// line so that the receiver reassembles exactly `data`.
pub fn write_event(out: &mut BytesMut, event: Option<&[u8]>, data: &[u8]) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name);
        out.put_u8(b'\n');
    }
    // Lines found with `memchr`: an event's data is usually one line of
    // JSON, found in one call (a byte loop was 3% of a streamed answer's
    // instructions). As `split`, a trailing newline ends with an empty line.
    out.reserve(data.len() + 8);
    let mut rest = data;
    loop {
        let end = memchr::memchr(b'\n', rest);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest[..end.unwrap_or(rest.len())]);
        out.put_u8(b'\n');
        match end {
            Some(i) => rest = &rest[i + 1..],
            None => break,
        }
    }
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_pieces(pieces: &[&[u8]]) -> Result<Vec<SseEvent>, SseTooLarge> {
        let mut p = SseParser::new(1 << 16);
        let mut out = Vec::new();
        for piece in pieces {
            p.push(Bytes::copy_from_slice(piece));
            while let Some(ev) = p.next_event()? {
                out.push(ev);
            }
        }
        Ok(out)
    }

    fn ev(event: Option<&str>, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.map(|e| Bytes::copy_from_slice(e.as_bytes())),
            data: Bytes::copy_from_slice(data.as_bytes()),
            id: id.map(|e| Bytes::copy_from_slice(e.as_bytes())),
            retry: None,
        }
    }

    #[test]
    fn whatwg_table() {
        let cases: &[(&str, Vec<SseEvent>)] = &[
            ("data: hi\n\n", vec![ev(None, "hi", None)]),
            ("data:hi\r\n\r\n", vec![ev(None, "hi", None)]),
            ("data:  two spaces\r\r", vec![ev(None, " two spaces", None)]),
            ("data: a\ndata: b\n\n", vec![ev(None, "a\nb", None)]),
            ("data\n\n", vec![ev(None, "", None)]),
            (": comment\ndata: x\n\n", vec![ev(None, "x", None)]),
            ("event: delta\ndata: {}\nid: 7\n\n", vec![ev(Some("delta"), "{}", Some("7"))]),
            ("event: only\n\n", vec![]),
            ("data: no end", vec![]),
            ("\u{FEFF}data: bom\n\n", vec![ev(None, "bom", None)]),
            ("data: x\nunknown: y\n\n", vec![ev(None, "x", None)]),
            ("data: 1\n\ndata: 2\n\n", vec![ev(None, "1", None), ev(None, "2", None)]),
        ];
        for (input, want) in cases {
            assert_eq!(&parse_pieces(&[input.as_bytes()]).unwrap(), want, "input {input:?}");
        }
    }

    #[test]
    fn retry_field() {
        let got = parse_pieces(&[b"retry: 1500\ndata: x\n\nretry: 1x\ndata: y\n\n"]).unwrap();
        assert_eq!(got[0].retry, Some(1500));
        assert_eq!(got[1].retry, None);
    }

    #[test]
    fn line_over_bound_is_refused() {
        let mut p = SseParser::new(16);
        p.push(Bytes::from_static(b"data: 0123456789abcdefghij"));
        assert_eq!(p.next_event(), Err(SseTooLarge));
    }

    #[test]
    fn writer_round_trips_multiline_data() {
        let mut out = BytesMut::new();
        write_event(&mut out, Some(b"x"), b"a\nb");
        assert_eq!(&out[..], b"event: x\ndata: a\ndata: b\n\n");
        assert_eq!(parse_pieces(&[&out]).unwrap(), vec![ev(Some("x"), "a\nb", None)]);
    }

    proptest! {
        /// The writer gives one `data:` line per line of the data, empty
        /// lines and a trailing newline included, and a parser reads
        /// the data back whole.
        #[test]
        fn writer_gives_a_line_per_line(data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), Just(b' '), any::<u8>()], 0..40)) {
            let mut out = BytesMut::new();
            write_event(&mut out, None, &data);
            let mut want = Vec::new();
            for line in data.split(|&b| b == b'\n') {
                want.extend_from_slice(b"data: ");
                want.extend_from_slice(line);
                want.push(b'\n');
            }
            want.push(b'\n');
            prop_assert_eq!(&out[..], &want[..]);
            if !data.contains(&b'\r') {
                let events = parse_pieces(&[&out]).unwrap();
                prop_assert_eq!(events.len(), 1);
                prop_assert_eq!(&events[0].data[..], &data[..]);
            }
        }
    }

    fn sse_stream() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            "[a-z ]{0,12}".prop_map(|s| format!("data: {s}")),
            "[a-z]{0,6}".prop_map(|s| format!("event: {s}")),
            "[0-9]{0,4}".prop_map(|s| format!("id: {s}")),
            "[a-z]{0,6}".prop_map(|s| format!(": {s}")),
            Just(String::new()),
            Just("data: é日本🙂".to_string()),
        ];
        let end = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
        proptest::collection::vec((line, end), 0..24).prop_map(|lines| {
            let mut s = String::new();
            for (l, e) in lines {
                s.push_str(&l);
                s.push_str(e);
            }
            s.into_bytes()
        })
    }

    proptest! {
        /// Splitting the stream at any byte (one and two cut points) yields
        /// the same events as parsing it whole.
        #[test]
        fn split_anywhere_matches_whole(stream in sse_stream()) {
            let whole = parse_pieces(&[&stream]).unwrap();
            for cut in 0..=stream.len() {
                let (a, b) = stream.split_at(cut);
                prop_assert_eq!(&parse_pieces(&[a, b]).unwrap(), &whole, "cut {}", cut);
            }
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            prop_assert_eq!(&parse_pieces(&bytes).unwrap(), &whole);
        }
    }
}
