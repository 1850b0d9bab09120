//! Translation between OpenAI chat completions and Anthropic messages, both
//! ways for requests and answers, streams included.
//!
//! Requests: an OpenAI `POST /v1/chat/completions` body becomes an
//! Anthropic `POST /v1/messages` body ([`request_from_openai`]): system
//! messages move to `system`, text and image parts become content blocks,
//! assistant tool calls become `tool_use` blocks and `tool` messages become
//! `tool_result` blocks in a user turn, `max_tokens` gets a default, `stop`
//! becomes `stop_sequences`, tools and `tool_choice` change shape.
//!
//! Answers: an Anthropic message becomes a `chat.completion`
//! ([`response_to_openai`]), an Anthropic error an OpenAI error
//! ([`error_to_openai`]), and an Anthropic event stream a stream of
//! `chat.completion.chunk` events ending in `data: [DONE]`
//! ([`StreamTranslator`]), tool-call argument deltas and usage included.
//!
//! [`front`] translates the other way, for Anthropic clients in front of
//! OpenAI upstreams.
//!
//! Parsing uses simd-json's borrowed values (strings point into the input,
//! which simd-json needs mutable, so callers pass a scratch copy); output is
//! written directly, field by field, without building a second tree.

use bytes::{BufMut, BytesMut};
use simd_json::prelude::*;
use simd_json::BorrowedValue as Value;

use crate::openai::write_json_string;
use crate::sse::{write_event, SseEvent, DONE_EVENT};

/// The API version sent as `anthropic-version`.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `max_tokens` is required by Anthropic and optional for OpenAI clients.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Content blocks (and so tool calls) one streamed answer may open. Real
/// answers use a handful; the bound keeps a hostile index from sizing a
/// table.
pub const STREAM_BLOCKS_MAX: usize = 1024;

/// Why a body could not be translated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TranslateError {
    NotJson,
    /// A field has a shape the translation does not know; the message says
    /// which.
    Unsupported(&'static str),
}

impl TranslateError {
    pub fn message(&self) -> &'static str {
        match self {
            TranslateError::NotJson => "body is not valid JSON",
            TranslateError::Unsupported(what) => what,
        }
    }
}

pub(crate) fn parse(scratch: &mut [u8]) -> Result<Value<'_>, TranslateError> {
    simd_json::to_borrowed_value(scratch).map_err(|_| TranslateError::NotJson)
}

/// What the engine needs to know about a translated request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub stream: bool,
    /// The client asked for a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// Writes the Anthropic body for an OpenAI chat request. `scratch` holds a
/// copy of the OpenAI body (simd-json parses in place).
pub fn request_from_openai(
    scratch: &mut [u8],
    upstream_model: &str,
    out: &mut BytesMut,
) -> Result<RequestInfo, TranslateError> {
    request_from_openai_marked(scratch, upstream_model, false, out)
}

/// A system prompt or a tool list at least this long (bytes, about a
/// thousand tokens: Anthropic's least cacheable prefix for most models)
/// gets a `cache_control` mark when marks are asked for.
pub const CACHE_MARK_BYTES: usize = 4096;

/// [`request_from_openai`], with `marks`: a system prompt and a tool list
/// of at least [`CACHE_MARK_BYTES`] each carry `cache_control:
/// {"type":"ephemeral"}` (the system as one text block, the tools on the
/// last one), so that Anthropic caches the prefix every turn of a
/// conversation repeats; two of the four breakpoints a request may carry.
pub fn request_from_openai_marked(
    scratch: &mut [u8],
    upstream_model: &str,
    marks: bool,
    out: &mut BytesMut,
) -> Result<RequestInfo, TranslateError> {
    let v = parse(scratch)?;
    let messages =
        v.get("messages").and_then(|m| m.as_array()).ok_or(TranslateError::Unsupported("messages must be an array"))?;
    let stream = v.get("stream").and_then(|s| s.as_bool()).unwrap_or(false);
    let include_usage =
        v.get("stream_options").and_then(|o| o.get("include_usage")).and_then(|u| u.as_bool()).unwrap_or(false);

    out.extend_from_slice(b"{\"model\":");
    write_json_string(out, upstream_model);
    let max_tokens = v
        .get("max_completion_tokens")
        .and_then(|m| m.as_u64())
        .or_else(|| v.get("max_tokens").and_then(|m| m.as_u64()))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.extend_from_slice(b",\"max_tokens\":");
    out.extend_from_slice(itoa::Buffer::new().format(max_tokens).as_bytes());

    let system = system_text(messages)?;
    if marks && system.len() >= CACHE_MARK_BYTES {
        out.extend_from_slice(b",\"system\":[{\"type\":\"text\",\"text\":");
        write_json_string(out, &system);
        out.extend_from_slice(b",\"cache_control\":{\"type\":\"ephemeral\"}}]");
    } else if !system.is_empty() {
        out.extend_from_slice(b",\"system\":");
        write_json_string(out, &system);
    }

    out.extend_from_slice(b",\"messages\":[");
    let mut first = true;
    let mut open_tool_results = false;
    for m in messages.iter() {
        let role =
            m.get("role").and_then(|r| r.as_str()).ok_or(TranslateError::Unsupported("a message has no role"))?;
        match role {
            "system" | "developer" => continue,
            "tool" => {
                // Consecutive tool results share one user turn.
                if !open_tool_results {
                    if !first {
                        out.put_u8(b',');
                    }
                    out.extend_from_slice(b"{\"role\":\"user\",\"content\":[");
                    open_tool_results = true;
                } else {
                    out.put_u8(b',');
                }
                first = false;
                out.extend_from_slice(b"{\"type\":\"tool_result\",\"tool_use_id\":");
                let id = m.get("tool_call_id").and_then(|i| i.as_str()).unwrap_or_default();
                write_json_string(out, id);
                out.extend_from_slice(b",\"content\":");
                write_json_string(out, &text_of(m.get("content"))?);
                out.put_u8(b'}');
                continue;
            }
            "user" | "assistant" => {}
            _ => return Err(TranslateError::Unsupported("message role must be system, user, assistant or tool")),
        }
        if open_tool_results {
            out.extend_from_slice(b"]}");
            open_tool_results = false;
        }
        if !first {
            out.put_u8(b',');
        }
        first = false;
        out.extend_from_slice(b"{\"role\":");
        write_json_string(out, role);
        out.extend_from_slice(b",\"content\":");
        let tool_calls = m.get("tool_calls").and_then(|t| t.as_array()).filter(|t| !t.is_empty());
        match (m.get("content"), tool_calls) {
            (Some(c), None) if c.as_str().is_some() => write_json_string(out, c.as_str().unwrap_or_default()),
            (content, calls) => {
                out.put_u8(b'[');
                let mut any = false;
                if let Some(parts) = content.and_then(|c| c.as_array()) {
                    for part in parts.iter() {
                        any |= write_part(part, any, out)?;
                    }
                } else if let Some(text) = content.and_then(|c| c.as_str()).filter(|t| !t.is_empty()) {
                    out.extend_from_slice(b"{\"type\":\"text\",\"text\":");
                    write_json_string(out, text);
                    out.put_u8(b'}');
                    any = true;
                }
                for call in calls.into_iter().flat_map(|c| c.iter()) {
                    if any {
                        out.put_u8(b',');
                    }
                    any = true;
                    let f = call.get("function").ok_or(TranslateError::Unsupported("tool_calls need a function"))?;
                    out.extend_from_slice(b"{\"type\":\"tool_use\",\"id\":");
                    write_json_string(out, call.get("id").and_then(|i| i.as_str()).unwrap_or_default());
                    out.extend_from_slice(b",\"name\":");
                    write_json_string(out, f.get("name").and_then(|n| n.as_str()).unwrap_or_default());
                    out.extend_from_slice(b",\"input\":");
                    write_arguments_object(out, f);
                    out.put_u8(b'}');
                }
                out.put_u8(b']');
            }
        }
        out.put_u8(b'}');
    }
    if open_tool_results {
        out.extend_from_slice(b"]}");
    }
    out.put_u8(b']');

    if let Some(stop) = v.get("stop").filter(|s| !s.is_null()) {
        out.extend_from_slice(b",\"stop_sequences\":");
        write_stop_list(stop, out)?;
    }
    for key in ["temperature", "top_p"] {
        if let Some(x) = v.get(key).and_then(|x| x.cast_f64()) {
            // OpenAI's temperature runs to 2, Anthropic's to 1: the nearest
            // value Anthropic accepts, rather than a 400.
            let x = x.clamp(0.0, 1.0);
            out.put_u8(b',');
            write_json_string(out, key);
            out.put_u8(b':');
            out.extend_from_slice(format_number(x).as_bytes());
        }
    }
    if let Some(tools) = v.get("tools").and_then(|t| t.as_array()).filter(|t| !t.is_empty()) {
        out.extend_from_slice(b",\"tools\":[");
        let start = out.len();
        for (i, t) in tools.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            let f = t.get("function").ok_or(TranslateError::Unsupported("tools must be of type function"))?;
            out.put_u8(b'{');
            write_tool_fields(out, f, "parameters", b"input_schema");
            if marks && i + 1 == tools.len() && out.len() - start >= CACHE_MARK_BYTES {
                out.extend_from_slice(b",\"cache_control\":{\"type\":\"ephemeral\"}");
            }
            out.put_u8(b'}');
        }
        out.put_u8(b']');
    }
    if let Some(choice) = v.get("tool_choice") {
        let rendered =
            match (choice.as_str(), choice.get("function").and_then(|f| f.get("name")).and_then(|n| n.as_str())) {
                (Some("auto"), _) => Some("{\"type\":\"auto\"}".to_string()),
                (Some("required"), _) => Some("{\"type\":\"any\"}".to_string()),
                (Some("none"), _) => Some("{\"type\":\"none\"}".to_string()),
                (None, Some(name)) => {
                    let mut b = BytesMut::new();
                    write_json_string(&mut b, name);
                    Some(format!("{{\"type\":\"tool\",\"name\":{}}}", String::from_utf8_lossy(&b)))
                }
                _ => None,
            };
        if let Some(r) = rendered {
            out.extend_from_slice(b",\"tool_choice\":");
            out.extend_from_slice(r.as_bytes());
        }
    }
    if stream {
        out.extend_from_slice(b",\"stream\":true");
    }
    out.put_u8(b'}');
    Ok(RequestInfo { stream, include_usage })
}

/// One OpenAI content part as an Anthropic block; true if one was written.
fn write_part(part: &Value<'_>, comma: bool, out: &mut BytesMut) -> Result<bool, TranslateError> {
    let kind = part.get("type").and_then(|t| t.as_str()).unwrap_or("text");
    if comma {
        out.put_u8(b',');
    }
    match kind {
        "text" => {
            out.extend_from_slice(b"{\"type\":\"text\",\"text\":");
            write_json_string(out, part.get("text").and_then(|t| t.as_str()).unwrap_or_default());
            out.put_u8(b'}');
        }
        "image_url" => {
            let url = part
                .get("image_url")
                .and_then(|i| i.get("url").or(Some(i)))
                .and_then(|u| u.as_str())
                .ok_or(TranslateError::Unsupported("image_url needs a url"))?;
            out.extend_from_slice(b"{\"type\":\"image\",\"source\":");
            match data_url(url) {
                Some((media, data)) => {
                    out.extend_from_slice(b"{\"type\":\"base64\",\"media_type\":");
                    write_json_string(out, media);
                    out.extend_from_slice(b",\"data\":");
                    write_json_string(out, data);
                    out.put_u8(b'}');
                }
                None => {
                    out.extend_from_slice(b"{\"type\":\"url\",\"url\":");
                    write_json_string(out, url);
                    out.put_u8(b'}');
                }
            }
            out.put_u8(b'}');
        }
        _ => return Err(TranslateError::Unsupported("content parts must be text or image_url")),
    }
    Ok(true)
}

/// The system prompt of an OpenAI chat request: every system (or
/// developer) message's text, in order, a blank line between.
pub(crate) fn system_text(messages: &[Value<'_>]) -> Result<String, TranslateError> {
    let mut system = String::new();
    for m in messages.iter() {
        if matches!(m.get("role").and_then(|r| r.as_str()), Some("system" | "developer")) {
            if !system.is_empty() {
                system.push_str("\n\n");
            }
            system.push_str(&text_of(m.get("content"))?);
        }
    }
    Ok(system)
}

/// A tool call's `function.arguments` (a JSON string, as OpenAI writes
/// them) as the object other APIs want; `{}` when they are not one.
pub(crate) fn write_arguments_object(out: &mut BytesMut, function: &Value<'_>) {
    let args = function.get("arguments").and_then(|a| a.as_str()).unwrap_or("{}");
    match result_object(args) {
        Some(obj) => out.extend_from_slice(obj.as_bytes()),
        None => out.extend_from_slice(b"{}"),
    }
}

/// OpenAI's `stop` (a string or an array of strings) as a JSON array.
pub(crate) fn write_stop_list(stop: &Value<'_>, out: &mut BytesMut) -> Result<(), TranslateError> {
    out.put_u8(b'[');
    match (stop.as_str(), stop.as_array()) {
        (Some(s), _) => write_json_string(out, s),
        (None, Some(list)) => {
            for (i, s) in list.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                write_json_string(out, s.as_str().ok_or(TranslateError::Unsupported("stop must be strings"))?);
            }
        }
        _ => return Err(TranslateError::Unsupported("stop must be a string or an array of strings")),
    }
    out.put_u8(b']');
    Ok(())
}

/// Writes the comma before an element when one came before it.
pub(crate) fn comma(out: &mut BytesMut, any: &mut bool) {
    if *any {
        out.put_u8(b',');
    }
    *any = true;
}

/// `{"text": ...}`: a text part as Gemini and Converse write it.
pub(crate) fn write_text_part(out: &mut BytesMut, text: &str) {
    out.extend_from_slice(b"{\"text\":");
    write_json_string(out, text);
    out.put_u8(b'}');
}

/// Text that holds a JSON object (a tool's arguments or result), as that
/// object encoded again; `None` for any other text.
pub(crate) fn result_object(text: &str) -> Option<String> {
    let mut copy = text.as_bytes().to_vec();
    let parsed = simd_json::to_borrowed_value(&mut copy).ok()?;
    parsed.is_object().then(|| parsed.encode())
}

/// A `data:` URL's media type and base64 payload.
pub(crate) fn data_url(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("data:").and_then(|d| d.split_once(";base64,"))
}

/// The text of a content field: a string, or the text parts joined.
pub(crate) fn text_of(content: Option<&Value<'_>>) -> Result<String, TranslateError> {
    match content {
        None => Ok(String::new()),
        Some(c) if c.is_null() => Ok(String::new()),
        Some(c) => match (c.as_str(), c.as_array()) {
            (Some(s), _) => Ok(s.to_string()),
            (None, Some(parts)) => {
                Ok(parts.iter().filter_map(|p| p.get("text").and_then(|t| t.as_str())).collect::<Vec<_>>().join("\n"))
            }
            _ => Err(TranslateError::Unsupported("content must be a string or an array of parts")),
        },
    }
}

pub(crate) fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// OpenAI's `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Token counts as Anthropic reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    /// Of `cache_write`, the tokens written for an hour
    /// (`cache_creation.ephemeral_1h_input_tokens`).
    pub cache_write_1h: u64,
    /// A count was there but not a whole number: the report is set aside,
    /// as one read directly is (`openai::Reported::unreadable`).
    pub unreadable: bool,
    /// `usage.service_tier`: the dearest reported.
    pub tier: crate::openai::Tier,
    /// `input_tokens` was reported (a whole number). Without it the counts
    /// are no bill: Anthropic always gives it (in `message_start`), and
    /// one missing (`"usage": null` there, then a `message_delta` with
    /// output only, or an answer with no usage) billed the prompt as 0.
    pub input_reported: bool,
}

impl Usage {
    /// Takes a usage object's counts, each as the largest reported: a
    /// stream's counts only grow (`message_start`, then `message_delta`),
    /// as `openai::Reported::merge` takes them, so a later report of 0
    /// lowers none.
    fn read(u: Option<&Value<'_>>, into: &mut Usage) {
        let Some(u) = u else { return };
        let hour = u.get("cache_creation").and_then(|c| c.get("ephemeral_1h_input_tokens"));
        let fields = [
            (u.get("input_tokens"), &mut into.input),
            (u.get("output_tokens"), &mut into.output),
            (u.get("cache_read_input_tokens"), &mut into.cache_read),
            (u.get("cache_creation_input_tokens"), &mut into.cache_write),
            (hour, &mut into.cache_write_1h),
        ];
        let mut unreadable = false;
        for (value, slot) in fields {
            match value {
                // `null` counts as not reported.
                None => {}
                Some(v) if v.is_null() => {}
                Some(v) => match v.as_u64() {
                    Some(x) => *slot = (*slot).max(x),
                    None => unreadable = true,
                },
            }
        }
        into.unreadable |= unreadable;
        into.input_reported |= u.get("input_tokens").and_then(|v| v.as_u64()).is_some();
        if let Some(t) = u.get("service_tier").and_then(|t| t.as_str()) {
            into.tier = into.tier.max(crate::openai::Tier::of(t.as_bytes()));
        }
    }

    /// OpenAI's usage object: prompt tokens include cached ones.
    fn write(&self, out: &mut BytesMut) {
        // Saturating: an upstream's counts are read as it wrote them (the
        // bill sets absurd ones aside: `engine::proxy::answer`), and 2^64-1
        // plus one must not wrap to a prompt of 0 or panic.
        let prompt = self.input.saturating_add(self.cache_read).saturating_add(self.cache_write);
        let mut n = itoa::Buffer::new();
        out.extend_from_slice(b"{\"prompt_tokens\":");
        out.extend_from_slice(n.format(prompt).as_bytes());
        out.extend_from_slice(b",\"completion_tokens\":");
        out.extend_from_slice(n.format(self.output).as_bytes());
        out.extend_from_slice(b",\"total_tokens\":");
        out.extend_from_slice(n.format(prompt.saturating_add(self.output)).as_bytes());
        out.extend_from_slice(b",\"prompt_tokens_details\":{\"cached_tokens\":");
        out.extend_from_slice(n.format(self.cache_read).as_bytes());
        out.extend_from_slice(b"}}");
    }
}

/// Writes the `chat.completion` for an Anthropic message, and returns its
/// usage.
pub fn response_to_openai(
    scratch: &mut [u8],
    created: u64,
    out: &mut BytesMut,
) -> Result<(Usage, &'static str), TranslateError> {
    let v = parse(scratch)?;
    let mut usage = Usage::default();
    Usage::read(v.get("usage"), &mut usage);
    let mut text = String::new();
    let mut calls = BytesMut::new();
    let mut n_calls = 0;
    for block in v.get("content").and_then(|c| c.as_array()).into_iter().flat_map(|c| c.iter()) {
        match block.get("type").and_then(|t| t.as_str()) {
            Some("text") => text.push_str(block.get("text").and_then(|t| t.as_str()).unwrap_or_default()),
            Some("tool_use") => {
                if n_calls > 0 {
                    calls.put_u8(b',');
                }
                n_calls += 1;
                calls.extend_from_slice(b"{\"id\":");
                write_json_string(&mut calls, block.get("id").and_then(|i| i.as_str()).unwrap_or_default());
                calls.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                write_json_string(&mut calls, block.get("name").and_then(|n| n.as_str()).unwrap_or_default());
                calls.extend_from_slice(b",\"arguments\":");
                let args = block.get("input").map_or_else(|| "{}".to_string(), |i| i.encode());
                write_json_string(&mut calls, &args);
                calls.extend_from_slice(b"}}");
            }
            _ => {}
        }
    }
    out.extend_from_slice(b"{\"id\":");
    write_json_string(out, v.get("id").and_then(|i| i.as_str()).unwrap_or("msg"));
    out.extend_from_slice(b",\"object\":\"chat.completion\",\"created\":");
    out.extend_from_slice(itoa::Buffer::new().format(created).as_bytes());
    out.extend_from_slice(b",\"model\":");
    write_json_string(out, v.get("model").and_then(|m| m.as_str()).unwrap_or_default());
    out.extend_from_slice(b",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    if text.is_empty() && n_calls > 0 {
        out.extend_from_slice(b"null");
    } else {
        write_json_string(out, &text);
    }
    if n_calls > 0 {
        out.extend_from_slice(b",\"tool_calls\":[");
        out.extend_from_slice(&calls);
        out.put_u8(b']');
    }
    out.extend_from_slice(b"},\"finish_reason\":");
    let finish = finish_reason(v.get("stop_reason").and_then(|s| s.as_str()).unwrap_or("end_turn"));
    write_json_string(out, finish);
    out.extend_from_slice(b"}],\"usage\":");
    usage.write(out);
    out.put_u8(b'}');
    Ok((usage, finish))
}

/// Writes an OpenAI error body for an Anthropic error body (or for any body
/// that is not one, quoting the status).
pub fn error_to_openai(scratch: &mut [u8], status: u16, out: &mut BytesMut) {
    let (message, kind) = match parse(scratch) {
        Ok(v) => {
            let e = v.get("error");
            (
                e.and_then(|e| e.get("message")).and_then(|m| m.as_str()).map(str::to_string),
                e.and_then(|e| e.get("type")).and_then(|t| t.as_str()).map(str::to_string),
            )
        }
        Err(_) => (None, None),
    };
    let message = message.unwrap_or_else(|| format!("upstream answered {status}"));
    let kind = kind.unwrap_or_else(|| "api_error".to_string());
    crate::openai::write_error_body(out, &message, &kind, &kind);
}

/// A stream event's content block index, bounded by [`STREAM_BLOCKS_MAX`].
fn block_index(v: &Value<'_>) -> Result<usize, TranslateError> {
    match v.get("index").and_then(|i| i.as_u64()).unwrap_or(0) {
        i if (i as usize) < STREAM_BLOCKS_MAX => Ok(i as usize),
        _ => Err(TranslateError::Unsupported("stream content block index out of range")),
    }
}

/// Turns an Anthropic event stream into OpenAI `chat.completion.chunk`
/// events, one event at a time, holding only the ids and counts it needs.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: Usage,
    /// The OpenAI tool-call index of each Anthropic content block index.
    tool_index: Vec<Option<u32>>,
    tools_seen: u32,
    finished: bool,
    /// The `finish_reason` written, as the client reads it.
    finish: crate::openai::Finish,
}

impl StreamTranslator {
    pub fn new(created: u64, include_usage: bool) -> StreamTranslator {
        StreamTranslator { created, include_usage, ..StreamTranslator::default() }
    }

    /// The usage so far (input from `message_start`, output as it grows).
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Whether the stream has ended (`[DONE]` written).
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The `finish_reason` the client was sent, from the message's
    /// `stop_reason`.
    pub fn finish_reasons(&self) -> crate::openai::Finish {
        self.finish
    }

    /// Translates one Anthropic event into zero or more OpenAI events
    /// appended to `out`.
    pub fn event(&mut self, ev: &SseEvent, out: &mut BytesMut) -> Result<(), TranslateError> {
        let mut scratch = ev.data.to_vec();
        let v = parse(&mut scratch)?;
        let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or_default();
        match kind {
            "message_start" => {
                let m = v.get("message");
                self.id = m.and_then(|m| m.get("id")).and_then(|i| i.as_str()).unwrap_or("msg").to_string();
                self.model = m.and_then(|m| m.get("model")).and_then(|i| i.as_str()).unwrap_or_default().to_string();
                Usage::read(m.and_then(|m| m.get("usage")), &mut self.usage);
                self.chunk(out, |o| o.extend_from_slice(b"{\"role\":\"assistant\",\"content\":\"\"}"), None);
            }
            "content_block_start" => {
                let index = block_index(&v)?;
                let block = v.get("content_block");
                if block.and_then(|b| b.get("type")).and_then(|t| t.as_str()) == Some("tool_use") {
                    let tool = self.tools_seen;
                    self.tools_seen += 1;
                    if self.tool_index.len() <= index {
                        self.tool_index.resize(index + 1, None);
                    }
                    self.tool_index[index] = Some(tool);
                    let id = block.and_then(|b| b.get("id")).and_then(|i| i.as_str()).unwrap_or_default().to_string();
                    let name =
                        block.and_then(|b| b.get("name")).and_then(|i| i.as_str()).unwrap_or_default().to_string();
                    self.chunk(
                        out,
                        |o| {
                            o.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
                            o.extend_from_slice(itoa::Buffer::new().format(tool).as_bytes());
                            o.extend_from_slice(b",\"id\":");
                            write_json_string(o, &id);
                            o.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                            write_json_string(o, &name);
                            o.extend_from_slice(b",\"arguments\":\"\"}}]}");
                        },
                        None,
                    );
                }
            }
            "content_block_delta" => {
                let index = block_index(&v)?;
                let delta = v.get("delta");
                match delta.and_then(|d| d.get("type")).and_then(|t| t.as_str()) {
                    Some("text_delta") => {
                        let text =
                            delta.and_then(|d| d.get("text")).and_then(|t| t.as_str()).unwrap_or_default().to_string();
                        self.chunk(
                            out,
                            |o| {
                                o.extend_from_slice(b"{\"content\":");
                                write_json_string(o, &text);
                                o.put_u8(b'}');
                            },
                            None,
                        );
                    }
                    Some("input_json_delta") => {
                        let part = delta
                            .and_then(|d| d.get("partial_json"))
                            .and_then(|t| t.as_str())
                            .unwrap_or_default()
                            .to_string();
                        let tool = self.tool_index.get(index).copied().flatten().unwrap_or(0);
                        self.chunk(
                            out,
                            |o| {
                                o.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
                                o.extend_from_slice(itoa::Buffer::new().format(tool).as_bytes());
                                o.extend_from_slice(b",\"function\":{\"arguments\":");
                                write_json_string(o, &part);
                                o.extend_from_slice(b"}}]}");
                            },
                            None,
                        );
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                Usage::read(v.get("usage"), &mut self.usage);
                if let Some(reason) = v.get("delta").and_then(|d| d.get("stop_reason")).and_then(|s| s.as_str()) {
                    let reason = finish_reason(reason);
                    self.finish.push(reason);
                    self.chunk(out, |o| o.extend_from_slice(b"{}"), Some(reason));
                }
            }
            "message_stop" => self.finish(out),
            "error" => {
                let mut scratch = ev.data.to_vec();
                let mut body = BytesMut::new();
                error_to_openai(&mut scratch, 500, &mut body);
                write_event(out, None, &body);
                self.finished = true;
                out.extend_from_slice(DONE_EVENT);
            }
            // ping, content_block_stop and unknown events carry nothing.
            _ => {}
        }
        Ok(())
    }

    /// Ends the stream: the usage chunk if the client asked for it, then
    /// `[DONE]`.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.include_usage {
            let usage = self.usage;
            crate::openai::write_usage_chunk(out, (&self.id, self.created, &self.model), |d| usage.write(d));
        }
        out.extend_from_slice(DONE_EVENT);
    }

    fn chunk(&self, out: &mut BytesMut, delta: impl FnOnce(&mut BytesMut), finish: Option<&str>) {
        crate::openai::write_chunk(out, (&self.id, self.created, &self.model), 0, delta, finish);
    }
}

pub mod front;

/// A tool's `name`, optional `description` and JSON schema, which both
/// directions write alike except for the schema's key: OpenAI's `parameters`
/// is Anthropic's `input_schema`. Anthropic requires a schema, so a missing
/// one becomes the empty object schema (kept in both directions, so a round
/// trip is stable).
pub(crate) fn write_tool_fields(out: &mut BytesMut, tool: &Value<'_>, schema_from: &str, schema_to: &[u8]) {
    out.extend_from_slice(b"\"name\":");
    write_json_string(out, tool.get("name").and_then(|n| n.as_str()).unwrap_or_default());
    if let Some(d) = tool.get("description").and_then(|d| d.as_str()) {
        out.extend_from_slice(b",\"description\":");
        write_json_string(out, d);
    }
    out.extend_from_slice(b",\"");
    out.extend_from_slice(schema_to);
    out.extend_from_slice(b"\":");
    match tool.get(schema_from) {
        Some(s) if s.is_object() => out.extend_from_slice(s.encode().as_bytes()),
        _ => out.extend_from_slice(b"{\"type\":\"object\",\"properties\":{}}"),
    }
}

#[cfg(test)]
mod tests;
