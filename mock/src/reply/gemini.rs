//! The mock's Gemini answers (`generateContent`, and
//! `streamGenerateContent?alt=sse` as `data:` events separated by CRLF
//! pairs, as Google's server writes them), in the shapes of Google's API
//! reference: candidates with parts, `finishReason`, `usageMetadata` on
//! every event (counts so far), `modelVersion` and `responseId`; thought
//! summaries and signatures with `x-mock-thinking: 1`; errors as
//! `{"error": {code, message, status}}`.

use bytes::{BufMut, BytesMut};

use super::{pieces, words, ChatRequest, TOOL_ARGS, TOOL_TOKENS};

/// The thought signature a thinking answer's function call carries.
pub const GEMINI_SIGNATURE: &str = "bW9jay10aG91Z2h0LXNpZ25hdHVyZQ==";
/// The thinking tokens a thinking answer reports.
const THOUGHT_TOKENS: usize = 5;

fn usage(req: &ChatRequest<'_>, completion: Option<usize>, thinking: bool, out: &mut BytesMut) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"\"usageMetadata\":{\"promptTokenCount\":");
    out.extend_from_slice(n.format(req.prompt_tokens).as_bytes());
    if let Some(c) = completion {
        let thoughts = if thinking { THOUGHT_TOKENS } else { 0 };
        out.extend_from_slice(b",\"candidatesTokenCount\":");
        out.extend_from_slice(n.format(c).as_bytes());
        if thinking {
            out.extend_from_slice(b",\"thoughtsTokenCount\":");
            out.extend_from_slice(n.format(thoughts).as_bytes());
        }
        out.extend_from_slice(b",\"totalTokenCount\":");
        out.extend_from_slice(n.format(req.prompt_tokens + c + thoughts).as_bytes());
    }
    if req.cache_read > 0 {
        out.extend_from_slice(b",\"cachedContentTokenCount\":");
        out.extend_from_slice(n.format(req.cache_read).as_bytes());
    }
    out.put_u8(b'}');
}

fn tail(req: &ChatRequest<'_>, out: &mut BytesMut) {
    out.extend_from_slice(b",\"modelVersion\":\"");
    out.extend_from_slice(req.model);
    out.extend_from_slice(b"\",\"responseId\":\"mock-");
    out.extend_from_slice(itoa::Buffer::new().format(req.id).as_bytes());
    out.extend_from_slice(b"\"}");
}

fn thought(out: &mut BytesMut) {
    out.extend_from_slice(b"{\"text\":\"Weighing the question.\",\"thought\":true},");
}

fn call(name: &str, thinking: bool, out: &mut BytesMut) {
    out.extend_from_slice(b"{\"functionCall\":{\"name\":");
    tollgate_protocol::openai::write_json_string(out, name);
    out.extend_from_slice(b",\"args\":");
    out.extend_from_slice(TOOL_ARGS.as_bytes());
    out.put_u8(b'}');
    if thinking {
        out.extend_from_slice(b",\"thoughtSignature\":\"");
        out.extend_from_slice(GEMINI_SIGNATURE.as_bytes());
        out.put_u8(b'"');
    }
    out.put_u8(b'}');
}

/// A `generateContent` answer: the reply's words, or one call of `tool`.
pub fn answer(
    req: &ChatRequest<'_>,
    list: &[&str],
    reply_words: usize,
    tool: Option<&str>,
    thinking: bool,
    out: &mut BytesMut,
) {
    out.extend_from_slice(b"{\"candidates\":[{\"content\":{\"parts\":[");
    if thinking {
        thought(out);
    }
    let completion = match tool {
        Some(name) => {
            call(name, thinking, out);
            TOOL_TOKENS
        }
        None => {
            out.extend_from_slice(b"{\"text\":\"");
            words(list, 0, reply_words, out);
            out.extend_from_slice(b"\"}");
            reply_words
        }
    };
    out.extend_from_slice(b"],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],");
    usage(req, Some(completion), thinking, out);
    tail(req, out);
}

fn event(body: &BytesMut) -> BytesMut {
    let mut e = BytesMut::with_capacity(body.len() + 10);
    e.extend_from_slice(b"data: ");
    e.extend_from_slice(body);
    e.extend_from_slice(b"\r\n\r\n");
    e
}

/// A `streamGenerateContent?alt=sse` answer's events: the words in
/// `chunks` events (or one call of `tool`), the last with the finish and
/// the whole usage.
pub fn stream_events(
    req: &ChatRequest<'_>,
    list: &[&str],
    reply_words: usize,
    chunks: usize,
    tool: Option<&str>,
    thinking: bool,
    out: &mut Vec<BytesMut>,
) {
    let mut body = BytesMut::with_capacity(256);
    if thinking {
        body.extend_from_slice(b"{\"candidates\":[{\"content\":{\"parts\":[");
        body.extend_from_slice(b"{\"text\":\"Weighing the question.\",\"thought\":true}");
        body.extend_from_slice(b"],\"role\":\"model\"},\"index\":0}],");
        usage(req, None, false, &mut body);
        tail(req, &mut body);
        out.push(event(&body));
    }
    if let Some(name) = tool {
        body.clear();
        body.extend_from_slice(b"{\"candidates\":[{\"content\":{\"parts\":[");
        call(name, thinking, &mut body);
        body.extend_from_slice(b"],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],");
        usage(req, Some(TOOL_TOKENS), thinking, &mut body);
        tail(req, &mut body);
        out.push(event(&body));
        return;
    }
    let all: Vec<(usize, usize)> = pieces(reply_words, chunks).collect();
    for (i, &(from, to)) in all.iter().enumerate() {
        let last = i + 1 == all.len();
        body.clear();
        body.extend_from_slice(b"{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"");
        words(list, from, to, &mut body);
        body.extend_from_slice(b"\"}],\"role\":\"model\"}");
        if last {
            body.extend_from_slice(b",\"finishReason\":\"STOP\"");
        }
        body.extend_from_slice(b",\"index\":0}],");
        usage(req, Some(to), thinking && last, &mut body);
        tail(req, &mut body);
        out.push(event(&body));
    }
}

/// Google's error body for an injected failure status.
pub fn error(status: u16, out: &mut BytesMut) {
    let google = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    };
    out.extend_from_slice(b"{\"error\":{\"code\":");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.extend_from_slice(b",\"message\":\"mock upstream injected status ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.extend_from_slice(b"\",\"status\":\"");
    out.extend_from_slice(google.as_bytes());
    out.extend_from_slice(b"\"}}");
}
