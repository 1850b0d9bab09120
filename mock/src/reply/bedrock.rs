//! The mock's Bedrock answers (Converse and ConverseStream), in the shapes
//! of the Bedrock API reference: `output.message.content` blocks,
//! `stopReason`, `usage` with the cache's reads and writes and `metrics`;
//! streams as AWS event stream messages (`:event-type` `messageStart`,
//! `contentBlockStart`/`Delta`/`Stop`, `messageStop`, then `metadata` with
//! the usage), each payload padded with `p` as AWS pads them; errors as
//! `{"message": ...}` with `x-amzn-ErrorType`.

use bytes::BytesMut;

use super::{pieces, words, ChatRequest, TOOL_ARG_PIECES, TOOL_TOKENS};
use tollgate_protocol::eventstream::encode;

fn usage(req: &ChatRequest<'_>, output: usize) -> String {
    let input = req.prompt_tokens.saturating_sub(req.cache_read + req.cache_write);
    // The writes by TTL, the hour's first, as Bedrock sorts them.
    let details = if req.cache_write_1h > 0 {
        format!(
            r#","cacheDetails":[{{"ttl":"1h","inputTokens":{}}},{{"ttl":"5m","inputTokens":{}}}]"#,
            req.cache_write_1h,
            req.cache_write - req.cache_write_1h
        )
    } else {
        String::new()
    };
    format!(
        r#"{{"inputTokens":{input},"outputTokens":{output},"totalTokens":{},"cacheReadInputTokens":{},"cacheWriteInputTokens":{}{details}}}"#,
        req.prompt_tokens + output,
        req.cache_read,
        req.cache_write
    )
}

fn text(list: &[&str], from: usize, to: usize) -> String {
    let mut b = BytesMut::new();
    words(list, from, to, &mut b);
    String::from_utf8_lossy(&b).into_owned()
}

fn tool_use_id(req: &ChatRequest<'_>) -> String {
    format!("tooluse_mock_{}", req.id)
}

/// A Converse answer: the reply's words, or one use of `tool`.
pub fn answer(req: &ChatRequest<'_>, list: &[&str], reply_words: usize, tool: Option<&str>, out: &mut BytesMut) {
    let (content, stop, output) = match tool {
        Some(name) => (
            format!(
                r#"{{"toolUse":{{"toolUseId":"{}","name":{},"input":{}}}}}"#,
                tool_use_id(req),
                serde_json::to_string(name).unwrap_or_default(),
                TOOL_ARG_PIECES.concat()
            ),
            "tool_use",
            TOOL_TOKENS,
        ),
        None => (format!(r#"{{"text":"{}"}}"#, text(list, 0, reply_words)), "end_turn", reply_words),
    };
    out.extend_from_slice(
        format!(
            r#"{{"output":{{"message":{{"role":"assistant","content":[{content}]}}}},"stopReason":"{stop}","usage":{},"metrics":{{"latencyMs":12}}}}"#,
            usage(req, output)
        )
        .as_bytes(),
    );
}

fn event(kind: &str, payload: &str) -> BytesMut {
    let mut out = BytesMut::new();
    encode(
        &[(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")],
        payload.as_bytes(),
        &mut out,
    );
    out
}

/// A ConverseStream answer's messages.
pub fn stream_events(
    req: &ChatRequest<'_>,
    list: &[&str],
    reply_words: usize,
    chunks: usize,
    tool: Option<&str>,
    out: &mut Vec<BytesMut>,
) {
    out.push(event("messageStart", r#"{"p":"abcdefghijk","role":"assistant"}"#));
    let (stop, output) = match tool {
        Some(name) => {
            out.push(event(
                "contentBlockStart",
                &format!(
                    r#"{{"contentBlockIndex":0,"start":{{"toolUse":{{"toolUseId":"{}","name":{}}}}},"p":"abc"}}"#,
                    tool_use_id(req),
                    serde_json::to_string(name).unwrap_or_default()
                ),
            ));
            for piece in TOOL_ARG_PIECES {
                out.push(event(
                    "contentBlockDelta",
                    &format!(
                        r#"{{"contentBlockIndex":0,"delta":{{"toolUse":{{"input":{}}}}},"p":"ab"}}"#,
                        serde_json::to_string(piece).unwrap_or_default()
                    ),
                ));
            }
            ("tool_use", TOOL_TOKENS)
        }
        None => {
            for (from, to) in pieces(reply_words, chunks) {
                let t = text(list, from, to);
                out.push(event(
                    "contentBlockDelta",
                    &format!(r#"{{"contentBlockIndex":0,"delta":{{"text":"{t}"}},"p":"abcd"}}"#),
                ));
            }
            ("end_turn", reply_words)
        }
    };
    out.push(event("contentBlockStop", r#"{"contentBlockIndex":0,"p":"abcdefg"}"#));
    out.push(event("messageStop", &format!(r#"{{"p":"ab","stopReason":"{stop}"}}"#)));
    out.push(event("metadata", &format!(r#"{{"metrics":{{"latencyMs":20}},"p":"a","usage":{}}}"#, usage(req, output))));
}

/// AWS's error body and `x-amzn-ErrorType` for a status.
pub fn error(status: u16) -> (String, &'static str) {
    let kind = match status {
        400 => "ValidationException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ => "InternalServerException",
    };
    (format!(r#"{{"message":"mock upstream injected status {status}"}}"#), kind)
}
