//! The protobuf wire format, the little of it OTLP's trace messages use:
//! varints, fixed64, length-delimited fields and nested messages, written
//! straight into a buffer (no generated types, no copy of a span into a
//! message struct). Field numbers are OTLP's (`trace.proto`,
//! `common.proto`); the tests in `tests/tests/otel.rs` decode what this
//! writes with the official definitions.

use bytes::BytesMut;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.extend_from_slice(&[(v as u8) | 0x80]);
        v >>= 7;
    }
    out.extend_from_slice(&[v as u8]);
}

fn tag(out: &mut BytesMut, field: u32, wire: u8) {
    varint(out, u64::from(field) << 3 | u64::from(wire));
}

pub fn uint(out: &mut BytesMut, field: u32, v: u64) {
    tag(out, field, VARINT);
    varint(out, v);
}

pub fn fixed64(out: &mut BytesMut, field: u32, v: u64) {
    tag(out, field, FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn fixed32(out: &mut BytesMut, field: u32, v: u32) {
    tag(out, field, FIXED32);
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn double(out: &mut BytesMut, field: u32, v: f64) {
    fixed64(out, field, v.to_bits());
}

pub fn bytes(out: &mut BytesMut, field: u32, v: &[u8]) {
    tag(out, field, LEN);
    varint(out, v.len() as u64);
    out.extend_from_slice(v);
}

/// The tag and length of a nested message whose `len` bytes the caller
/// writes next (or sends after, as the exporter sends its batches).
pub fn header(out: &mut BytesMut, field: u32, len: usize) {
    tag(out, field, LEN);
    varint(out, len as u64);
}

/// A nested message: `body` writes its fields after the tag; the length
/// is put in front of them once known (moved by at most 5 bytes, for a
/// message under 4 GiB).
pub fn message(out: &mut BytesMut, field: u32, body: impl FnOnce(&mut BytesMut)) {
    tag(out, field, LEN);
    let start = out.len();
    body(out);
    let mut len = (out.len() - start) as u64;
    let mut prefix = [0u8; 10];
    let mut n = 0;
    while len >= 0x80 {
        prefix[n] = (len as u8) | 0x80;
        len >>= 7;
        n += 1;
    }
    prefix[n] = len as u8;
    out.extend_from_slice(&prefix[..=n]);
    out[start..].rotate_right(n + 1);
}

/// An attribute's value (`AnyValue`).
#[derive(Clone, Copy)]
pub enum Value<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Strs(&'a [&'a str]),
}

/// One `KeyValue` as field `field` of the enclosing message. Lengths are
/// computed before writing (no move of what is written), but for a list.
pub fn attribute(out: &mut BytesMut, field: u32, key: &str, value: Value<'_>) {
    let any = match value {
        Value::Str(s) => 1 + varint_len(s.len() as u64) + s.len(),
        Value::Bool(_) => 2,
        Value::Int(i) => 1 + varint_len(i as u64),
        Value::Double(_) => 9,
        Value::Strs(_) => {
            return message(out, field, |out| {
                bytes(out, 1, key.as_bytes());
                message(out, 2, |out| any_value(out, &value));
            })
        }
    };
    let kv = 1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(any as u64) + any;
    tag(out, field, LEN);
    varint(out, kv as u64);
    bytes(out, 1, key.as_bytes());
    tag(out, 2, LEN);
    varint(out, any as u64);
    any_value(out, &value);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn any_value(out: &mut BytesMut, value: &Value<'_>) {
    match *value {
        Value::Str(s) => bytes(out, 1, s.as_bytes()),
        Value::Bool(b) => uint(out, 2, u64::from(b)),
        // int64 is a varint of the two's complement (ten bytes when
        // negative), not zigzag.
        Value::Int(i) => uint(out, 3, i as u64),
        Value::Double(d) => double(out, 4, d),
        Value::Strs(list) => message(out, 5, |out| {
            for s in list {
                message(out, 1, |out| bytes(out, 1, s.as_bytes()));
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_lengths_as_protobuf_writes_them() {
        let mut out = BytesMut::new();
        uint(&mut out, 1, 150);
        // The encoding guide's example: field 1, 150 -> 08 96 01.
        assert_eq!(&out[..], &[0x08, 0x96, 0x01]);
        out.clear();
        bytes(&mut out, 2, b"testing");
        assert_eq!(&out[..], b"\x12\x07testing");
        out.clear();
        // A nested message longer than 127 bytes: a two-byte length.
        message(&mut out, 3, |out| bytes(out, 1, &[7u8; 200]));
        assert_eq!(&out[..4], &[0x1a, 0xcb, 0x01, 0x0a]);
        assert_eq!(out.len(), 1 + 2 + 1 + 2 + 200);
        out.clear();
        uint(&mut out, 16, 1);
        assert_eq!(&out[..], &[0x80, 0x01, 0x01], "field 16 needs a two-byte tag");
        out.clear();
        attribute(&mut out, 9, "n", Value::Int(-1));
        // KeyValue{key "n", value AnyValue{int_value -1}}: ten 0xff..0x01 bytes.
        assert_eq!(out.len(), 2 + 3 + 2 + 11);
        // Lengths computed ahead agree with lengths measured after.
        for (key, v) in [
            ("k", Value::Str("")),
            ("key", Value::Str(&"x".repeat(300))),
            (&"k".repeat(130) as &str, Value::Int(i64::MAX)),
            ("b", Value::Bool(true)),
            ("d", Value::Double(0.25)),
            ("i", Value::Int(127)),
            ("i", Value::Int(128)),
        ] {
            let mut ahead = BytesMut::new();
            attribute(&mut ahead, 9, key, v);
            let mut measured = BytesMut::new();
            message(&mut measured, 9, |out| {
                bytes(out, 1, key.as_bytes());
                message(out, 2, |out| any_value(out, &v));
            });
            assert_eq!(ahead, measured, "{key}");
        }
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut b = BytesMut::new();
            varint(&mut b, v);
            assert_eq!(varint_len(v), b.len(), "{v}");
        }
    }
}
