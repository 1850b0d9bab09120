//! RESP2, the protocol Redis and Valkey speak: commands out, replies in.
//!
//! The cluster tier talks to Redis from a blocking thread and, for strict
//! budgets, from each worker's runtime, so the protocol lives here, apart
//! from any socket. A reply is decoded from the start of a buffer each time
//! more bytes arrive; `Ok(None)` means "not whole yet". Replies from the
//! network are bounded so that a confused or hostile server cannot make the
//! gateway allocate without limit: nesting, array lengths, bulk lengths and
//! lines are bounded here, and [`ReplyReader`] bounds the whole.

use std::fmt;

/// One reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    /// `-ERR ...`: the server refused the command.
    Error(String),
    Int(i64),
    /// `None`: the null bulk string (`$-1`).
    Bulk(Option<Vec<u8>>),
    /// `None`: the null array (`*-1`).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as an integer: an integer reply, or a bulk or simple
    /// string holding one (`GET` of a counter). A null is 0.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            Reply::Bulk(None) => Some(0),
            Reply::Bulk(Some(b)) => std::str::from_utf8(b).ok()?.parse().ok(),
            Reply::Simple(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// A reply that breaks the protocol or its bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RespError(pub &'static str);

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed Redis reply: {}", self.0)
    }
}

impl std::error::Error for RespError {}

/// Arrays may nest this deep (replies to our scripts nest once).
const DEPTH_MAX: usize = 8;
/// A bulk string may be this long.
const BULK_BYTES_MAX: usize = 64 * 1024 * 1024;
/// An array may have this many elements.
const ARRAY_LEN_MAX: usize = 1 << 20;
/// A status, error or length line may be this long.
const LINE_BYTES_MAX: usize = 64 * 1024;
/// A whole reply may be this long (decoding bounds each part; this bounds
/// the whole).
const REPLY_BYTES_MAX: usize = 128 * 1024 * 1024;

/// Appends a command (`args[0]` is its name) as an array of bulk strings.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(itoa::Buffer::new().format(a.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Gathers one reply's bytes as they are read, for any kind of connection.
#[derive(Debug, Default)]
pub struct ReplyReader {
    buf: Vec<u8>,
}

impl ReplyReader {
    /// Starts over for the next reply.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// The reply, once whole.
    pub fn reply(&self) -> Result<Option<Reply>, RespError> {
        Ok(decode(&self.buf)?.map(|(r, _)| r))
    }

    /// Bytes read; refused past the bound on a whole reply.
    pub fn extend(&mut self, bytes: &[u8]) -> Result<(), RespError> {
        if self.buf.len() + bytes.len() > REPLY_BYTES_MAX {
            return Err(RespError("reply too long"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

/// Decodes one reply from the start of `buf`: the reply and the bytes it
/// took, or `None` when more bytes are needed.
pub fn decode(buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    decode_at(buf, 0, 0)
}

fn decode_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply, usize)>, RespError> {
    if depth > DEPTH_MAX {
        return Err(RespError("arrays nested too deep"));
    }
    let Some(line_end) = find_crlf(buf, at + 1) else {
        if buf.len() > at && !b"+-:$*".contains(&buf[at]) {
            return Err(RespError("unknown reply type"));
        }
        if buf.len() - at > LINE_BYTES_MAX {
            return Err(RespError("line too long"));
        }
        return Ok(None);
    };
    if line_end - at > LINE_BYTES_MAX {
        return Err(RespError("line too long"));
    }
    let line = &buf[at + 1..line_end];
    let next = line_end + 2;
    let text = || std::str::from_utf8(line).map(str::to_owned).map_err(|_| RespError("status line is not UTF-8"));
    match buf[at] {
        b'+' => Ok(Some((Reply::Simple(text()?), next))),
        b'-' => Ok(Some((Reply::Error(text()?), next))),
        b':' => Ok(Some((Reply::Int(int(line)?), next))),
        b'$' => {
            let n = int(line)?;
            if n == -1 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            let n = usize::try_from(n).map_err(|_| RespError("negative bulk length"))?;
            if n > BULK_BYTES_MAX {
                return Err(RespError("bulk string too long"));
            }
            if buf.len() < next + n + 2 {
                return Ok(None);
            }
            if &buf[next + n..next + n + 2] != b"\r\n" {
                return Err(RespError("bulk string not followed by CRLF"));
            }
            Ok(Some((Reply::Bulk(Some(buf[next..next + n].to_vec())), next + n + 2)))
        }
        b'*' => {
            let n = int(line)?;
            if n == -1 {
                return Ok(Some((Reply::Array(None), next)));
            }
            let n = usize::try_from(n).map_err(|_| RespError("negative array length"))?;
            if n > ARRAY_LEN_MAX {
                return Err(RespError("array too long"));
            }
            // Every element takes at least 3 bytes: reserve no more than
            // the buffer could hold.
            let mut items = Vec::with_capacity(n.min((buf.len() - next) / 3));
            let mut pos = next;
            for _ in 0..n {
                if pos >= buf.len() {
                    return Ok(None);
                }
                match decode_at(buf, pos, depth + 1)? {
                    Some((r, end)) => {
                        items.push(r);
                        pos = end;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), pos)))
        }
        _ => Err(RespError("unknown reply type")),
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    memchr::memmem::find(rest, b"\r\n").map(|i| from + i)
}

fn int(line: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(line).ok().and_then(|s| s.parse().ok()).ok_or(RespError("not an integer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        let mut out = Vec::new();
        encode(&mut out, &[b"GET", b"k\r\n"]);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$3\r\nk\r\n\r\n");
    }

    #[test]
    fn decodes_every_type() {
        let cases: &[(&[u8], Reply)] = &[
            (b"+OK\r\n", Reply::Simple("OK".into())),
            (b"-NOSCRIPT No matching script\r\n", Reply::Error("NOSCRIPT No matching script".into())),
            (b":-42\r\n", Reply::Int(-42)),
            (b"$-1\r\n", Reply::Bulk(None)),
            (b"$0\r\n\r\n", Reply::Bulk(Some(vec![]))),
            (b"$5\r\na\r\nbc\r\n", Reply::Bulk(Some(b"a\r\nbc".to_vec()))),
            (b"*-1\r\n", Reply::Array(None)),
            (
                b"*3\r\n:1\r\n*1\r\n$2\r\n17\r\n$-1\r\n",
                Reply::Array(Some(vec![
                    Reply::Int(1),
                    Reply::Array(Some(vec![Reply::Bulk(Some(b"17".to_vec()))])),
                    Reply::Bulk(None),
                ])),
            ),
        ];
        for (wire, want) in cases {
            let (got, used) = decode(wire).unwrap().unwrap();
            assert_eq!((&got, used), (want, wire.len()), "{}", String::from_utf8_lossy(wire));
            // Every proper prefix needs more bytes.
            for cut in 0..wire.len() {
                assert_eq!(decode(&wire[..cut]), Ok(None), "cut at {cut}");
            }
        }
        assert_eq!(Reply::Bulk(Some(b"17".to_vec())).as_int(), Some(17));
        assert_eq!(Reply::Bulk(None).as_int(), Some(0));
    }

    #[test]
    fn a_reader_gathers_pieces_into_one_reply() {
        let mut r = ReplyReader::default();
        for piece in [&b"*2\r\n:1"[..], b"\r\n$2\r\nok", b"\r\n"] {
            assert_eq!(r.reply(), Ok(None));
            r.extend(piece).unwrap();
        }
        let want = Reply::Array(Some(vec![Reply::Int(1), Reply::Bulk(Some(b"ok".to_vec()))]));
        assert_eq!(r.reply(), Ok(Some(want)));
        r.clear();
        assert_eq!(r.reply(), Ok(None));
    }

    #[test]
    fn refuses_what_breaks_the_protocol_or_its_bounds() {
        for bad in [
            &b"?x\r\n"[..],
            b"?",
            b":x\r\n",
            b"$-2\r\n",
            b"$3\r\nabcd\r\n",
            b"$99999999999\r\n",
            b"*99999999999\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    fn reply() -> impl Strategy<Value = Reply> {
        let leaf = prop_oneof![
            "[a-zA-Z0-9 ]{0,12}".prop_map(Reply::Simple),
            "[a-zA-Z0-9 ]{0,12}".prop_map(Reply::Error),
            any::<i64>().prop_map(Reply::Int),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)).prop_map(Reply::Bulk),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            proptest::option::of(proptest::collection::vec(inner, 0..5)).prop_map(Reply::Array)
        })
    }

    fn write(out: &mut Vec<u8>, r: &Reply) {
        match r {
            Reply::Simple(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Reply::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Reply::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Reply::Bulk(Some(b)) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(Some(items)) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for i in items {
                    write(out, i);
                }
            }
        }
    }

    proptest! {
        /// A reply decodes whole from its bytes and from none of their
        /// prefixes, whatever follows it in the buffer.
        #[test]
        fn round_trips_at_every_split(r in reply(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut wire = Vec::new();
            write(&mut wire, &r);
            for cut in 0..wire.len() {
                prop_assert_eq!(decode(&wire[..cut]), Ok(None));
            }
            let len = wire.len();
            wire.extend_from_slice(&tail);
            prop_assert_eq!(decode(&wire), Ok(Some((r, len))));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }
}
