//! AWS's event stream framing (`application/vnd.amazon.eventstream`), in
//! which Bedrock's `ConverseStream` answers: binary messages, each
//!
//! ```text
//! total length u32 | headers length u32 | prelude CRC32 (of the 8 bytes before)
//! headers (name length u8, name, type u8, value) ...
//! payload
//! message CRC32 (of everything before it)
//! ```
//!
//! all integers big-endian. [`Decoder`] takes the body in whatever pieces
//! the network delivers and yields whole [`Message`]s whose header values
//! and payload are slices of one buffer; a message whose CRCs do not hold,
//! whose lengths do not add up, or that is larger than [`MESSAGE_BYTES_MAX`]
//! fails the stream (the decoder stays failed: after a broken frame no
//! boundary can be trusted). [`encode`] writes messages with string
//! headers, for the mock and the tests.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The largest message AWS sends (16 MiB, its documented bound); a larger
/// length is an attack or a broken stream, not a frame to buffer for.
pub const MESSAGE_BYTES_MAX: usize = 16 << 20;

/// Prelude (12 bytes) and message CRC (4): the smallest message.
const FRAME_MIN: usize = 16;

/// Why a stream's framing could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A total length under 16, or headers longer than the message.
    Lengths,
    TooLarge,
    PreludeCrc,
    MessageCrc,
    /// A header that runs past its block, or of an unknown type.
    Header(&'static str),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Lengths => f.write_str("event stream message lengths do not add up"),
            FrameError::TooLarge => f.write_str("event stream message exceeds 16 MiB"),
            FrameError::PreludeCrc => f.write_str("event stream prelude checksum mismatch"),
            FrameError::MessageCrc => f.write_str("event stream message checksum mismatch"),
            FrameError::Header(why) => write!(f, "event stream header: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A header's value. Strings and byte arrays are slices of the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(Bytes),
    String(Bytes),
    Timestamp(i64),
    Uuid([u8; 16]),
}

/// One decoded message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(Bytes, Value)>,
    pub payload: Bytes,
}

impl Message {
    /// A string header's value (`:event-type`, `:message-type`,
    /// `:exception-type`).
    pub fn header_str(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n[..] == *name.as_bytes()).and_then(|(_, v)| match v {
            Value::String(s) => Some(&s[..]),
            _ => None,
        })
    }
}

/// Reads messages from a byte stream split anywhere.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    failed: Option<FrameError>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Takes the next piece of the body.
    pub fn push(&mut self, piece: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(piece);
        }
    }

    /// Bytes of a message begun but not whole: a body that ends with some
    /// was cut off.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message, `None` until one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let result = self.decode();
        if let Err(e) = result {
            self.failed = Some(e);
            self.buf = BytesMut::new();
        }
        result
    }

    fn decode(&mut self) -> Result<Option<Message>, FrameError> {
        if self.buf.len() < 12 {
            return Ok(None);
        }
        let total = u32::from_be_bytes(self.buf[0..4].try_into().unwrap_or_default()) as usize;
        let headers_len = u32::from_be_bytes(self.buf[4..8].try_into().unwrap_or_default()) as usize;
        let prelude_crc = u32::from_be_bytes(self.buf[8..12].try_into().unwrap_or_default());
        // The prelude is checked before its lengths are trusted.
        if crc32fast::hash(&self.buf[..8]) != prelude_crc {
            return Err(FrameError::PreludeCrc);
        }
        if total > MESSAGE_BYTES_MAX {
            return Err(FrameError::TooLarge);
        }
        if total < FRAME_MIN || headers_len > total - FRAME_MIN {
            return Err(FrameError::Lengths);
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let frame = self.buf.split_to(total).freeze();
        let message_crc = u32::from_be_bytes(frame[total - 4..].try_into().unwrap_or_default());
        if crc32fast::hash(&frame[..total - 4]) != message_crc {
            return Err(FrameError::MessageCrc);
        }
        let headers = read_headers(&frame, 12, 12 + headers_len)?;
        Ok(Some(Message { headers, payload: frame.slice(12 + headers_len..total - 4) }))
    }
}

fn read_headers(frame: &Bytes, start: usize, end: usize) -> Result<Vec<(Bytes, Value)>, FrameError> {
    let mut headers = Vec::new();
    let mut at = start;
    let take = |at: &mut usize, n: usize| -> Result<Bytes, FrameError> {
        if end - *at < n {
            return Err(FrameError::Header("a header runs past the header block"));
        }
        let s = frame.slice(*at..*at + n);
        *at += n;
        Ok(s)
    };
    while at < end {
        let name_len = take(&mut at, 1)?[0] as usize;
        if name_len == 0 {
            return Err(FrameError::Header("a header has an empty name"));
        }
        let name = take(&mut at, name_len)?;
        let kind = take(&mut at, 1)?[0];
        let value = match kind {
            0 => Value::Bool(true),
            1 => Value::Bool(false),
            2 => Value::Byte(take(&mut at, 1)?[0] as i8),
            3 => Value::Short(take(&mut at, 2)?.get_i16()),
            4 => Value::Int(take(&mut at, 4)?.get_i32()),
            5 => Value::Long(take(&mut at, 8)?.get_i64()),
            6 | 7 => {
                let len = take(&mut at, 2)?.get_u16() as usize;
                let v = take(&mut at, len)?;
                if kind == 6 {
                    Value::Bytes(v)
                } else {
                    Value::String(v)
                }
            }
            8 => Value::Timestamp(take(&mut at, 8)?.get_i64()),
            9 => {
                let mut id = [0u8; 16];
                id.copy_from_slice(&take(&mut at, 16)?);
                Value::Uuid(id)
            }
            _ => return Err(FrameError::Header("unknown header value type")),
        };
        headers.push((name, value));
    }
    Ok(headers)
}

/// Writes one message with string headers (names up to 255 bytes, values
/// up to 65,535).
pub fn encode(headers: &[(&str, &str)], payload: &[u8], out: &mut BytesMut) {
    let headers_len: usize = headers.iter().map(|(n, v)| 1 + n.len() + 1 + 2 + v.len()).sum();
    let total = 12 + headers_len + payload.len() + 4;
    let start = out.len();
    out.put_u32(total as u32);
    out.put_u32(headers_len as u32);
    let prelude_crc = crc32fast::hash(&out[start..start + 8]);
    out.put_u32(prelude_crc);
    for (name, value) in headers {
        out.put_u8(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.put_u8(7);
        out.put_u16(value.len() as u16);
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start..]);
    out.put_u32(crc);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(kind: &str, payload: &str) -> BytesMut {
        let mut out = BytesMut::new();
        encode(
            &[(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")],
            payload.as_bytes(),
            &mut out,
        );
        out
    }

    fn decode_all(input: &[u8], at: usize) -> Result<Vec<Message>, FrameError> {
        let mut d = Decoder::new();
        let mut all = Vec::new();
        for piece in [&input[..at], &input[at..]] {
            d.push(piece);
            while let Some(m) = d.next_message()? {
                all.push(m);
            }
        }
        assert_eq!(d.pending(), 0);
        Ok(all)
    }

    /// A message encoded by AWS's own implementation (the test vector of
    /// awslabs/aws-c-event-stream's `application_data_no_headers_valid`
    /// test): its CRCs are AWS's, not ours.
    #[test]
    fn a_message_encoded_by_aws_decodes() {
        // Total 0x1d = 29 bytes: no headers, payload `{'foo':'bar'}`.
        let frame: [u8; 29] = [
            0x00, 0x00, 0x00, 0x1d, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x52, 0x8c, 0x5a, 0x7b, 0x27, 0x66, 0x6f, 0x6f, 0x27,
            0x3a, 0x27, 0x62, 0x61, 0x72, 0x27, 0x7d, 0xc3, 0x65, 0x39, 0x36,
        ];
        let m = decode_all(&frame, 0).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(&m[0].payload[..], b"{'foo':'bar'}");
        assert!(m[0].headers.is_empty());
    }

    #[test]
    fn messages_decode_alike_wherever_the_body_is_split() {
        let mut body = event("messageStart", r#"{"role":"assistant"}"#);
        body.extend_from_slice(&event("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"café 日本"}}"#));
        body.extend_from_slice(&event("messageStop", r#"{"stopReason":"end_turn"}"#));
        let whole = decode_all(&body, body.len()).unwrap();
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[1].header_str(":event-type"), Some(&b"contentBlockDelta"[..]));
        assert_eq!(whole[1].header_str(":message-type"), Some(&b"event"[..]));
        for at in 0..=body.len() {
            assert_eq!(decode_all(&body, at).unwrap(), whole, "split at {at}");
        }
    }

    #[test]
    fn every_header_type_reads() {
        let mut h = BytesMut::new();
        let mut put = |name: &str, kind: u8, value: &[u8]| {
            h.put_u8(name.len() as u8);
            h.extend_from_slice(name.as_bytes());
            h.put_u8(kind);
            h.extend_from_slice(value);
        };
        put("t", 0, b"");
        put("f", 1, b"");
        put("b", 2, &[0xff]);
        put("s", 3, &(-2i16).to_be_bytes());
        put("i", 4, &7i32.to_be_bytes());
        put("l", 5, &(-9i64).to_be_bytes());
        put("y", 6, &[0, 2, 1, 2]);
        put("x", 7, &[0, 2, b'h', b'i']);
        put("d", 8, &1_700_000_000_000i64.to_be_bytes());
        put("u", 9, &[7u8; 16]);
        let mut frame = BytesMut::new();
        let total = 12 + h.len() + 2 + 4;
        frame.put_u32(total as u32);
        frame.put_u32(h.len() as u32);
        let crc = crc32fast::hash(&frame[..8]);
        frame.put_u32(crc);
        frame.extend_from_slice(&h);
        frame.extend_from_slice(b"{}");
        let crc = crc32fast::hash(&frame);
        frame.put_u32(crc);
        let m = decode_all(&frame, 5).unwrap().remove(0);
        let values: Vec<Value> = m.headers.into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            values,
            vec![
                Value::Bool(true),
                Value::Bool(false),
                Value::Byte(-1),
                Value::Short(-2),
                Value::Int(7),
                Value::Long(-9),
                Value::Bytes(Bytes::from_static(&[1, 2])),
                Value::String(Bytes::from_static(b"hi")),
                Value::Timestamp(1_700_000_000_000),
                Value::Uuid([7; 16]),
            ]
        );
    }

    #[test]
    fn broken_frames_fail_the_stream_and_it_stays_failed() {
        let good = event("messageStop", r#"{"stopReason":"end_turn"}"#);
        // A flipped payload byte: the message CRC.
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 6] ^= 1;
        assert_eq!(decode_all(&bad, 0), Err(FrameError::MessageCrc));
        // A length changed without its CRC: the prelude CRC.
        let mut bad = good.clone();
        bad[3] ^= 1;
        assert_eq!(decode_all(&bad, 0), Err(FrameError::PreludeCrc));
        // A prelude that checks out but claims 4 GiB: refused before any
        // buffering, and lengths that do not add up.
        for (total, headers, why) in
            [(u32::MAX, 0u32, FrameError::TooLarge), (15, 0, FrameError::Lengths), (20, 8, FrameError::Lengths)]
        {
            let mut p = BytesMut::new();
            p.put_u32(total);
            p.put_u32(headers);
            let crc = crc32fast::hash(&p);
            p.put_u32(crc);
            assert_eq!(decode_all(&p, 0), Err(why), "{total} {headers}");
        }
        // A header running past its block.
        let mut frame = BytesMut::new();
        frame.put_u32(12 + 4 + 4);
        frame.put_u32(4);
        let crc = crc32fast::hash(&frame[..8]);
        frame.put_u32(crc);
        frame.extend_from_slice(&[3, b'a', b'b', b'c']);
        let crc = crc32fast::hash(&frame);
        frame.put_u32(crc);
        assert!(matches!(decode_all(&frame, 0), Err(FrameError::Header(_))));
        let mut d = Decoder::new();
        d.push(&bad_prelude());
        assert!(d.next_message().is_err());
        d.push(&good);
        assert!(d.next_message().is_err(), "no boundary can be trusted after a broken frame");
    }

    fn bad_prelude() -> Vec<u8> {
        vec![0, 0, 0, 16, 0, 0, 0, 0, 1, 2, 3, 4]
    }

    proptest! {
        #[test]
        fn random_messages_round_trip_split_anywhere(
            msgs in proptest::collection::vec(("[a-z:-]{1,20}", "\\PC{0,40}", proptest::collection::vec(any::<u8>(), 0..200)), 1..5),
            at in any::<prop::sample::Index>(),
        ) {
            let mut body = BytesMut::new();
            for (name, value, payload) in &msgs {
                encode(&[(name.as_str(), value.as_str())], payload, &mut body);
            }
            let at = at.index(body.len() + 1);
            let got = decode_all(&body, at).unwrap();
            prop_assert_eq!(got.len(), msgs.len());
            for (m, (name, value, payload)) in got.iter().zip(&msgs) {
                prop_assert_eq!(m.header_str(name), Some(value.as_bytes()));
                prop_assert_eq!(&m.payload[..], &payload[..]);
            }
        }

        #[test]
        fn any_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..300), at in any::<prop::sample::Index>()) {
            let at = at.index(input.len() + 1);
            let mut d = Decoder::new();
            for piece in [&input[..at], &input[at..]] {
                d.push(piece);
                while let Ok(Some(_)) = d.next_message() {}
            }
        }
    }
}
