//! The few facts the gateway needs from an OpenAI-style request body, found
//! without building a JSON tree, and the OpenAI-style error body.
//!
//! [`scan_request`] walks only the top level of the body object: it records
//! where the `model` value lies (so routing can swap in the upstream model
//! name by slicing around that span) and whether `stream` is true, and it
//! skips every other value by bracket counting. Full JSON rewriting arrives
//! with provider translation; this scan is what routing needs today.

use bytes::{BufMut, BytesMut};

use crate::Span;

/// What routing reads from a chat request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatRequestFields {
    /// The `model` string's contents, without the quotes.
    pub model: Span,
    /// `"stream": true` was given.
    pub stream: bool,
    /// A `stream_options` object was given, and whether it asks for the
    /// usage chunk (`"include_usage": true`).
    pub stream_options: bool,
    pub include_usage: bool,
    /// The most tokens the request lets the model generate: the top-level
    /// `max_completion_tokens`, else `max_tokens`, when a non-negative
    /// integer (a tool schema's `max_tokens` property is not this).
    pub max_tokens: Option<u64>,
}

/// Why a request body could not be scanned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Not a JSON object, or broken JSON at the top level.
    NotJsonObject,
    /// No `model` string at the top level.
    MissingModel,
    /// `model` is not a plain string (escapes are not allowed in model names).
    BadModel,
    /// Nesting deeper than the gateway will walk.
    TooDeep,
    /// A top-level key written with escapes, or `model`/`stream` given
    /// twice: parsers disagree on such bodies (escaped `"mod\u0065l"` is
    /// `model` to the upstream; duplicates resolve first-wins or
    /// last-wins), so the model the gateway checks might not be the one the
    /// upstream serves.
    AmbiguousKey,
}

impl BodyError {
    pub fn message(self) -> &'static str {
        match self {
            BodyError::NotJsonObject => "request body must be a JSON object",
            BodyError::MissingModel => "you must provide a model parameter",
            BodyError::BadModel => "model must be a plain string",
            BodyError::TooDeep => "request body nests too deeply",
            BodyError::AmbiguousKey => {
                "request body repeats `model` or `stream`, or escapes a top-level key; send each key once, unescaped"
            }
        }
    }
}

/// Nesting depth past which a body is refused: no real chat request comes
/// close, and the bound keeps hostile input from costing more than a pass.
const DEPTH_MAX: usize = 128;

/// Scans the top level of a chat request body.
pub fn scan_request(body: &[u8]) -> Result<ChatRequestFields, BodyError> {
    let mut c = Cursor { buf: body, pos: 0 };
    c.ws();
    c.expect(b'{')?;
    let mut model = None;
    let mut stream = None;
    let mut options = None;
    let (mut max_completion, mut max_tokens) = (None, None);
    c.ws();
    if c.peek() == Some(b'}') {
        return Err(BodyError::MissingModel);
    }
    loop {
        c.ws();
        let key = c.string()?;
        if key.get(body).contains(&b'\\') {
            return Err(BodyError::AmbiguousKey);
        }
        c.ws();
        c.expect(b':')?;
        c.ws();
        match key.get(body) {
            b"model" => {
                if model.is_some() {
                    return Err(BodyError::AmbiguousKey);
                }
                if c.peek() != Some(b'"') {
                    return Err(BodyError::BadModel);
                }
                let s = c.string()?;
                if s.get(body).contains(&b'\\') {
                    return Err(BodyError::BadModel);
                }
                model = Some(s);
            }
            b"stream" => {
                if stream.is_some() {
                    return Err(BodyError::AmbiguousKey);
                }
                let start = c.pos;
                c.value()?;
                stream = Some(&body[start..c.pos] == b"true");
            }
            b"stream_options" => {
                if options.is_some() {
                    return Err(BodyError::AmbiguousKey);
                }
                let start = c.pos;
                c.value()?;
                options = Some(asks_for_usage(&body[start..c.pos]));
            }
            k @ (b"max_tokens" | b"max_completion_tokens") => {
                let start = c.pos;
                c.value()?;
                let n = std::str::from_utf8(&body[start..c.pos]).ok().and_then(|v| v.parse::<u64>().ok());
                *(if k == b"max_tokens" { &mut max_tokens } else { &mut max_completion }) = n;
            }
            _ => c.value()?,
        }
        c.ws();
        match c.bump() {
            Some(b',') => continue,
            Some(b'}') => break,
            _ => return Err(BodyError::NotJsonObject),
        }
    }
    c.ws();
    if c.pos != body.len() {
        return Err(BodyError::NotJsonObject);
    }
    Ok(ChatRequestFields {
        model: model.ok_or(BodyError::MissingModel)?,
        stream: stream.unwrap_or(false),
        stream_options: options.is_some(),
        include_usage: options.unwrap_or(false),
        max_tokens: max_completion.or(max_tokens),
    })
}

/// Whether a `stream_options` value holds `"include_usage": true`.
fn asks_for_usage(options: &[u8]) -> bool {
    let Some(at) = memchr::memmem::find(options, b"\"include_usage\"") else { return false };
    let rest = &options[at + 15..];
    let rest = rest.trim_ascii_start().strip_prefix(b":").unwrap_or(b"");
    rest.trim_ascii_start().starts_with(b"true")
}

/// What the gateway adds to a streamed request whose client did not ask
/// for usage: the upstream then sends its token counts in a last chunk,
/// which the gateway reads and keeps from the client.
pub const ASK_FOR_USAGE: &[u8] = b"\"stream_options\":{\"include_usage\":true},";

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Result<(), BodyError> {
        if self.bump() == Some(want) {
            Ok(())
        } else {
            Err(BodyError::NotJsonObject)
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// A string starting at the cursor; returns the span of its contents.
    fn string(&mut self) -> Result<Span, BodyError> {
        self.expect(b'"')?;
        let start = self.pos;
        loop {
            let rest = &self.buf[self.pos..];
            let i = memchr::memchr2(b'"', b'\\', rest).ok_or(BodyError::NotJsonObject)?;
            if rest[..i].iter().any(|&b| b < 0x20) {
                return Err(BodyError::NotJsonObject);
            }
            self.pos += i + 1;
            if rest[i] == b'"' {
                return Ok(Span::new(start, self.pos - 1));
            }
            // Skip the escaped byte; \uXXXX digits are plain bytes to us.
            self.bump().ok_or(BodyError::NotJsonObject)?;
        }
    }

    /// Skips one value of any kind.
    fn value(&mut self) -> Result<(), BodyError> {
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{' | b'[') => self.nested(),
            Some(_) => {
                let start = self.pos;
                while matches!(self.peek(), Some(b'a'..=b'z' | b'0'..=b'9' | b'-' | b'+' | b'.' | b'E')) {
                    self.pos += 1;
                }
                if self.pos == start {
                    Err(BodyError::NotJsonObject)
                } else {
                    Ok(())
                }
            }
            None => Err(BodyError::NotJsonObject),
        }
    }

    /// Skips an object or array by bracket counting, stepping over strings.
    fn nested(&mut self) -> Result<(), BodyError> {
        let mut stack = [0u8; DEPTH_MAX];
        let mut depth = 0;
        loop {
            match self.peek().ok_or(BodyError::NotJsonObject)? {
                b'"' => {
                    self.string()?;
                    continue;
                }
                open @ (b'{' | b'[') => {
                    if depth == DEPTH_MAX {
                        return Err(BodyError::TooDeep);
                    }
                    stack[depth] = if open == b'{' { b'}' } else { b']' };
                    depth += 1;
                }
                close @ (b'}' | b']') => {
                    if depth == 0 || stack[depth - 1] != close {
                        return Err(BodyError::NotJsonObject);
                    }
                    depth -= 1;
                    if depth == 0 {
                        self.pos += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
    }
}

/// The token counts of an OpenAI `usage` object found in `bytes` (a whole
/// answer, or the stream chunk that carries it): prompt, completion and
/// cached prompt tokens. A byte search, not a parse: answers come from
/// configured upstreams, and a count that cannot be read is simply absent.
pub fn find_usage(bytes: &[u8]) -> Option<(u64, u64, u64)> {
    let number = |key: &[u8]| -> Option<u64> {
        let at = memchr::memmem::find(bytes, key)? + key.len();
        let rest = &bytes[at..];
        let start = rest.iter().position(|b| !matches!(b, b' ' | b':'))?;
        let digits = rest[start..].iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&rest[start..start + digits]).ok()?.parse().ok()
    };
    let prompt = number(b"\"prompt_tokens\"")?;
    let completion = number(b"\"completion_tokens\"")?;
    Some((prompt, completion, number(b"\"cached_tokens\"").unwrap_or(0)))
}

/// Appends `{"error":{"message":..,"type":..,"param":null,"code":..}}`, the
/// shape the official OpenAI SDKs parse into their exception types.
pub fn write_error_body(out: &mut BytesMut, message: &str, kind: &str, code: &str) {
    out.extend_from_slice(b"{\"error\":{\"message\":");
    write_json_string(out, message);
    out.extend_from_slice(b",\"type\":");
    write_json_string(out, kind);
    out.extend_from_slice(b",\"param\":null,\"code\":");
    write_json_string(out, code);
    out.extend_from_slice(b"}}");
}

/// A chat completion whose answer was withheld: no content, a `refusal`
/// saying why, and `finish_reason: "content_filter"`, the shape OpenAI's
/// own content filter answers with.
pub fn write_filtered_completion(
    out: &mut BytesMut,
    model: &str,
    created: u64,
    refusal: &str,
    usage: Option<(u64, u64)>,
) {
    out.extend_from_slice(b"{\"id\":\"chatcmpl-filtered\",\"object\":\"chat.completion\",\"created\":");
    out.extend_from_slice(itoa::Buffer::new().format(created).as_bytes());
    out.extend_from_slice(b",\"model\":");
    write_json_string(out, model);
    out.extend_from_slice(
        b",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,\"refusal\":",
    );
    write_json_string(out, refusal);
    out.extend_from_slice(b"},\"finish_reason\":\"content_filter\"}]");
    if let Some((prompt, completion)) = usage {
        let mut n = itoa::Buffer::new();
        out.extend_from_slice(b",\"usage\":{\"prompt_tokens\":");
        out.extend_from_slice(n.format(prompt).as_bytes());
        out.extend_from_slice(b",\"completion_tokens\":");
        out.extend_from_slice(n.format(completion).as_bytes());
        out.extend_from_slice(b",\"total_tokens\":");
        out.extend_from_slice(n.format(prompt + completion).as_bytes());
        out.put_u8(b'}');
    }
    out.put_u8(b'}');
}

/// The events that end a stream the gateway stops: a last chunk with
/// `finish_reason` (`content_filter` when a guardrail withheld the rest,
/// `length` at a request ceiling), then `[DONE]`.
pub fn write_stream_end(out: &mut BytesMut, model: &str, created: u64, finish_reason: &str) {
    let mut data = BytesMut::new();
    data.extend_from_slice(b"{\"id\":\"chatcmpl-filtered\",\"object\":\"chat.completion.chunk\",\"created\":");
    data.extend_from_slice(itoa::Buffer::new().format(created).as_bytes());
    data.extend_from_slice(b",\"model\":");
    write_json_string(&mut data, model);
    data.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":");
    write_json_string(&mut data, finish_reason);
    data.extend_from_slice(b"}]}");
    crate::sse::write_event(out, None, &data);
    out.extend_from_slice(crate::sse::DONE_EVENT);
}

/// Appends `s` as a JSON string literal.
pub fn write_json_string(out: &mut BytesMut, s: &str) {
    out.put_u8(b'"');
    crate::json::escape(s.as_bytes(), out);
    out.put_u8(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_table() {
        let ok: &[(&str, &str, bool)] = &[
            (r#"{"model":"gpt-4o","messages":[]}"#, "gpt-4o", false),
            (r#" { "messages" : [{"role":"user","content":"x\"}{]"}], "model" : "m", "stream": true } "#, "m", true),
            (r#"{"model":"a","stream":false,"n":1.5e3,"x":null,"o":{"k":[1,{"z":"}"}]}}"#, "a", false),
        ];
        for (body, model, stream) in ok {
            let f = scan_request(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e:?}"));
            assert_eq!(f.model.get(body.as_bytes()), model.as_bytes());
            assert_eq!(f.stream, *stream);
            assert!(!f.stream_options && !f.include_usage);
        }
        for (options, include) in [
            (r#"{"include_usage": true}"#, true),
            (r#"{"include_usage":false}"#, false),
            ("{}", false),
            ("null", false),
        ] {
            let body = format!(r#"{{"model":"m","stream":true,"stream_options":{options}}}"#);
            let f = scan_request(body.as_bytes()).unwrap();
            assert!(f.stream_options);
            assert_eq!(f.include_usage, include, "{options}");
        }
        let bad: &[(&str, BodyError)] = &[
            ("", BodyError::NotJsonObject),
            ("[]", BodyError::NotJsonObject),
            ("{}", BodyError::MissingModel),
            (r#"{"messages":[]}"#, BodyError::MissingModel),
            (r#"{"model":1}"#, BodyError::BadModel),
            (r#"{"model":"a\"b"}"#, BodyError::BadModel),
            (r#"{"model":"a"} x"#, BodyError::NotJsonObject),
            (r#"{"model":"a","m":[}"#, BodyError::NotJsonObject),
            (r#"{"model":"cheap","mod\u0065l":"gpt-4o"}"#, BodyError::AmbiguousKey),
            (r#"{"model":"gpt-4o","model":"cheap"}"#, BodyError::AmbiguousKey),
            (r#"{"model":"m","stream":false,"stre\u0061m":true}"#, BodyError::AmbiguousKey),
            (r#"{"model":"m","stream":false,"stream":true}"#, BodyError::AmbiguousKey),
            (r#"{"model":"a""#, BodyError::NotJsonObject),
        ];
        for (body, want) in bad {
            assert_eq!(scan_request(body.as_bytes()), Err(*want), "{body}");
        }
        let deep = format!(r#"{{"model":"a","x":{}{}}}"#, "[".repeat(200), "]".repeat(200));
        assert_eq!(scan_request(deep.as_bytes()), Err(BodyError::TooDeep));
    }

    #[test]
    fn max_tokens_is_read_from_the_top_level_only() {
        let table: &[(&str, Option<u64>)] = &[
            (r#"{"model":"m","max_tokens":100}"#, Some(100)),
            (r#"{"model":"m","max_tokens" : 100 ,"max_completion_tokens":7}"#, Some(7)),
            (r#"{"max_completion_tokens":7,"model":"m","max_tokens":100}"#, Some(7)),
            // A tool schema with a `max_tokens` property is not the limit.
            (
                r#"{"model":"m","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"max_tokens":{"type":"integer"}}}}}],"x":{"max_tokens":5}}"#,
                None,
            ),
            (r#"{"model":"m","messages":[{"role":"user","content":""max_tokens": 3"}]}"#, None),
            (r#"{"model":"m","max_tokens":-1}"#, None),
            (r#"{"model":"m","max_tokens":"100"}"#, None),
            (r#"{"model":"m","max_tokens":null}"#, None),
        ];
        for (body, want) in table {
            assert_eq!(scan_request(body.as_bytes()).unwrap().max_tokens, *want, "{body}");
        }
    }

    #[test]
    fn usage_is_found_in_answers_and_chunks() {
        let body = br#"{"id":"x","usage":{"prompt_tokens": 12,"completion_tokens":34,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":5}}}"#;
        assert_eq!(find_usage(body), Some((12, 34, 5)));
        assert_eq!(
            find_usage(br#"data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#),
            Some((1, 2, 0))
        );
        assert_eq!(find_usage(br#"{"choices":[]}"#), None);
    }

    #[test]
    fn error_body_escapes() {
        let mut out = BytesMut::new();
        write_error_body(&mut out, "bad \"x\"\n\u{1}", "invalid_request_error", "c");
        assert_eq!(
            &out[..],
            br#"{"error":{"message":"bad \"x\"\n\u0001","type":"invalid_request_error","param":null,"code":"c"}}"#
        );
    }
}
