//! Translation between OpenAI chat completions and Amazon Bedrock's
//! Converse API (`POST /model/{modelId}/converse` and `/converse-stream`),
//! both ways.
//!
//! Requests ([`request_from_openai`]): system messages become `system`
//! blocks, turns become `messages` whose roles alternate (consecutive
//! turns of one role, tool results included, share a message), text and
//! `data:` images become `text` and `image` blocks, assistant tool calls
//! `toolUse` blocks and `tool` messages `toolResult` blocks, tools a
//! `toolConfig` with each JSON schema as it came, and the sampling fields
//! `inferenceConfig`. The model and whether the answer streams are in the
//! URL.
//!
//! Answers: a Converse answer becomes a `chat.completion`
//! ([`response_to_openai`]); each message of a ConverseStream (AWS's
//! binary event stream, [`crate::eventstream`], the event's kind in its
//! `:event-type` header) zero or more `chat.completion.chunk` events
//! ([`StreamTranslator`]), ending with a usage chunk and `data: [DONE]`
//! once the body ends after `messageStop`; an exception (a message whose
//! `:message-type` is `exception`) becomes an error event; an error body an
//! OpenAI error ([`error_to_openai`]). Usage comes from the top-level
//! `usage` of an answer or of the stream's `metadata` event: the prompt is
//! `inputTokens` plus the cache's reads and writes (Converse reports them
//! apart, as Anthropic does), cache writes are passed on beside OpenAI's
//! counts (`cache_creation_input_tokens`) so that they are billed as such.

use bytes::{BufMut, BytesMut};
use simd_json::prelude::*;
use simd_json::BorrowedValue as Value;

use crate::anthropic::{
    comma, data_url, format_number, parse, result_object, system_text, text_of, write_arguments_object,
    write_stop_list, write_text_part, RequestInfo, TranslateError, STREAM_BLOCKS_MAX,
};
use crate::eventstream::Message;
use crate::openai::write_json_string;
use crate::sse::{write_event, DONE_EVENT};

/// Token counts as Converse reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    /// Of `cache_write`, the tokens written for an hour (`cacheDetails`,
    /// by TTL).
    pub cache_write_1h: u64,
    /// A count was there but not a whole number: the report is set aside
    /// (found by a review: one was read as 0, and believed).
    pub unreadable: bool,
    /// `inputTokens` was there. Without it the prompt is not the
    /// provider's to bill (it read as 0): the gateway counts it
    /// (`openai::Usage::prompt_unreported`).
    pub input_reported: bool,
}

impl Usage {
    fn read(u: &Value<'_>) -> Usage {
        let unreadable = std::cell::Cell::new(false);
        let n = |k: &str| crate::openai::whole_count(u.get(k), &unreadable);
        let cache_write_1h = u
            .get("cacheDetails")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
            .filter(|d| d.get("ttl").and_then(|t| t.as_str()) == Some("1h"))
            .filter_map(|d| d.get("inputTokens").and_then(|v| v.as_u64()))
            .fold(0u64, u64::saturating_add);
        Usage {
            input: n("inputTokens"),
            output: n("outputTokens"),
            cache_read: n("cacheReadInputTokens"),
            cache_write: n("cacheWriteInputTokens"),
            cache_write_1h,
            unreadable: unreadable.get(),
            input_reported: u.get("inputTokens").is_some_and(|v| !v.is_null()),
        }
    }

    /// The counts as chat's usage reads them (what [`Usage::write`]
    /// writes).
    /// An unreadable report's counts are past any believable one, as
    /// Gemini's are (`gemini::Usage::to_openai`).
    pub fn to_openai(&self) -> crate::openai::Usage {
        if self.unreadable {
            return crate::openai::Usage::unreadable();
        }
        crate::openai::Usage {
            prompt: self.input.saturating_add(self.cache_read).saturating_add(self.cache_write),
            completion: self.output,
            cached: self.cache_read,
            cache_write: self.cache_write,
            cache_write_1h: self.cache_write_1h,
            prompt_unreported: !self.input_reported,
            ..Default::default()
        }
        .held()
    }

    /// OpenAI's usage object (the prompt includes the cache's tokens), with
    /// the cache's writes beside it.
    fn write(&self, out: &mut BytesMut) {
        if self.unreadable {
            out.extend_from_slice(crate::openai::UNREADABLE_USAGE);
            return;
        }
        let prompt = self.input.saturating_add(self.cache_read).saturating_add(self.cache_write);
        let mut n = itoa::Buffer::new();
        out.extend_from_slice(b"{\"prompt_tokens\":");
        // Not reported is `null`, not 0: the gateway's reader then counts
        // the prompt itself, and the client is not told a count of 0.
        if self.input_reported {
            out.extend_from_slice(n.format(prompt).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
        out.extend_from_slice(b",\"completion_tokens\":");
        out.extend_from_slice(n.format(self.output).as_bytes());
        out.extend_from_slice(b",\"total_tokens\":");
        out.extend_from_slice(n.format(prompt.saturating_add(self.output)).as_bytes());
        out.extend_from_slice(b",\"prompt_tokens_details\":{\"cached_tokens\":");
        out.extend_from_slice(n.format(self.cache_read).as_bytes());
        out.put_u8(b'}');
        if self.cache_write > 0 {
            out.extend_from_slice(b",\"cache_creation_input_tokens\":");
            out.extend_from_slice(n.format(self.cache_write).as_bytes());
        }
        if self.cache_write_1h > 0 {
            // Anthropic's name for the hour-long share, which the gateway
            // reads back to bill it.
            out.extend_from_slice(b",\"cache_creation\":{\"ephemeral_1h_input_tokens\":");
            out.extend_from_slice(n.format(self.cache_write_1h.min(self.cache_write)).as_bytes());
            out.put_u8(b'}');
        }
        out.put_u8(b'}');
    }
}

/// The usage of a Converse answer, or of a document holding its top-level
/// `usage` (`openai::TopMembers`' of an answer too large to keep), as
/// chat's usage reads it.
pub fn answer_usage(doc: &[u8]) -> Option<crate::openai::Usage> {
    let mut scratch = doc.to_vec();
    let v = parse(&mut scratch).ok()?;
    v.get("usage").filter(|u| u.is_object()).map(|u| Usage::read(u).to_openai())
}

/// Writes the Converse body for an OpenAI chat request. `scratch` holds a
/// copy of the OpenAI body (simd-json parses in place).
pub fn request_from_openai(scratch: &mut [u8], out: &mut BytesMut) -> Result<RequestInfo, TranslateError> {
    let v = parse(scratch)?;
    let messages =
        v.get("messages").and_then(|m| m.as_array()).ok_or(TranslateError::Unsupported("messages must be an array"))?;
    let stream = v.get("stream").and_then(|s| s.as_bool()).unwrap_or(false);
    let include_usage =
        v.get("stream_options").and_then(|o| o.get("include_usage")).and_then(|u| u.as_bool()).unwrap_or(false);

    out.extend_from_slice(b"{\"messages\":[");
    // The message being written: its role, and whether it has a block yet.
    let mut open: Option<(&str, bool)> = None;
    let mut count = 0;
    for m in messages.iter() {
        let role =
            m.get("role").and_then(|r| r.as_str()).ok_or(TranslateError::Unsupported("a message has no role"))?;
        let converse_role = match role {
            "system" | "developer" => continue,
            "user" | "tool" => "user",
            "assistant" => "assistant",
            _ => return Err(TranslateError::Unsupported("message role must be system, user, assistant or tool")),
        };
        if open.is_some_and(|(r, _)| r != converse_role) {
            out.extend_from_slice(b"]}");
            open = None;
        }
        if open.is_none() {
            if count > 0 {
                out.put_u8(b',');
            }
            count += 1;
            out.extend_from_slice(b"{\"role\":\"");
            out.extend_from_slice(converse_role.as_bytes());
            out.extend_from_slice(b"\",\"content\":[");
            open = Some((converse_role, false));
        }
        let Some((_, any)) = open.as_mut() else { continue };
        if role == "tool" {
            comma(out, any);
            out.extend_from_slice(b"{\"toolResult\":{\"toolUseId\":");
            write_json_string(out, m.get("tool_call_id").and_then(|i| i.as_str()).unwrap_or_default());
            out.extend_from_slice(b",\"content\":[");
            let text = text_of(m.get("content"))?;
            // A result that is a JSON object goes as `json`, any other text
            // as `text`.
            match result_object(&text) {
                Some(obj) => {
                    out.extend_from_slice(b"{\"json\":");
                    out.extend_from_slice(obj.as_bytes());
                    out.put_u8(b'}');
                }
                None => write_text_part(out, &text),
            }
            out.extend_from_slice(b"]}}");
            continue;
        }
        match m.get("content") {
            None => {}
            Some(c) if c.is_null() => {}
            Some(c) => match (c.as_str(), c.as_array()) {
                (Some(""), _) => {}
                (Some(text), _) => {
                    comma(out, any);
                    write_text_part(out, text);
                }
                (None, Some(parts)) => {
                    for part in parts.iter() {
                        comma(out, any);
                        write_part(part, out)?;
                    }
                }
                _ => return Err(TranslateError::Unsupported("content must be a string or an array of parts")),
            },
        }
        for call in m.get("tool_calls").and_then(|t| t.as_array()).into_iter().flat_map(|c| c.iter()) {
            let f = call.get("function").ok_or(TranslateError::Unsupported("tool_calls need a function"))?;
            comma(out, any);
            out.extend_from_slice(b"{\"toolUse\":{\"toolUseId\":");
            write_json_string(out, call.get("id").and_then(|i| i.as_str()).unwrap_or_default());
            out.extend_from_slice(b",\"name\":");
            write_json_string(out, f.get("name").and_then(|n| n.as_str()).unwrap_or_default());
            out.extend_from_slice(b",\"input\":");
            write_arguments_object(out, f);
            out.extend_from_slice(b"}}");
        }
        // Converse refuses an empty message: an assistant's empty answer
        // keeps one space.
        if !*any {
            write_text_part(out, " ");
            *any = true;
        }
    }
    if open.is_some() {
        out.extend_from_slice(b"]}");
    }
    out.put_u8(b']');

    let system = system_text(messages)?;
    if !system.is_empty() {
        out.extend_from_slice(b",\"system\":[");
        write_text_part(out, &system);
        out.put_u8(b']');
    }
    write_inference_config(&v, out)?;
    if let Some(tools) = v.get("tools").and_then(|t| t.as_array()).filter(|t| !t.is_empty()) {
        out.extend_from_slice(b",\"toolConfig\":{\"tools\":[");
        for (i, t) in tools.iter().enumerate() {
            let f = t.get("function").ok_or(TranslateError::Unsupported("tools must be of type function"))?;
            if i > 0 {
                out.put_u8(b',');
            }
            out.extend_from_slice(b"{\"toolSpec\":{\"name\":");
            write_json_string(out, f.get("name").and_then(|n| n.as_str()).unwrap_or_default());
            if let Some(d) = f.get("description").and_then(|d| d.as_str()) {
                out.extend_from_slice(b",\"description\":");
                write_json_string(out, d);
            }
            out.extend_from_slice(b",\"inputSchema\":{\"json\":");
            match f.get("parameters") {
                Some(s) if s.is_object() => out.extend_from_slice(s.encode().as_bytes()),
                _ => out.extend_from_slice(b"{\"type\":\"object\",\"properties\":{}}"),
            }
            out.extend_from_slice(b"}}}");
        }
        out.put_u8(b']');
        let choice = v.get("tool_choice");
        let name = choice.and_then(|c| c.get("function")).and_then(|f| f.get("name")).and_then(|n| n.as_str());
        // Converse has no "none": such a request lets the model choose.
        match (choice.and_then(|c| c.as_str()), name) {
            (Some("required"), _) => out.extend_from_slice(b",\"toolChoice\":{\"any\":{}}"),
            (Some("auto"), _) => out.extend_from_slice(b",\"toolChoice\":{\"auto\":{}}"),
            (None, Some(name)) => {
                out.extend_from_slice(b",\"toolChoice\":{\"tool\":{\"name\":");
                write_json_string(out, name);
                out.extend_from_slice(b"}}");
            }
            _ => {}
        }
        out.put_u8(b'}');
    }
    out.put_u8(b'}');
    Ok(RequestInfo { stream, include_usage })
}

fn write_inference_config(v: &Value<'_>, out: &mut BytesMut) -> Result<(), TranslateError> {
    let mut config = BytesMut::new();
    let mut field = |name: &str, value: &[u8]| {
        config.put_u8(if config.is_empty() { b'{' } else { b',' });
        config.put_u8(b'"');
        config.extend_from_slice(name.as_bytes());
        config.extend_from_slice(b"\":");
        config.extend_from_slice(value);
    };
    let max = v
        .get("max_completion_tokens")
        .and_then(|m| m.as_u64())
        .or_else(|| v.get("max_tokens").and_then(|m| m.as_u64()));
    if let Some(n) = max {
        field("maxTokens", itoa::Buffer::new().format(n).as_bytes());
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(x) = v.get(from).and_then(|x| x.cast_f64()) {
            field(to, format_number(x).as_bytes());
        }
    }
    if let Some(stop) = v.get("stop").filter(|s| !s.is_null()) {
        let mut list = BytesMut::new();
        write_stop_list(stop, &mut list)?;
        field("stopSequences", &list);
    }
    if !config.is_empty() {
        config.put_u8(b'}');
        out.extend_from_slice(b",\"inferenceConfig\":");
        out.extend_from_slice(&config);
    }
    Ok(())
}

/// One OpenAI content part as a Converse block.
fn write_part(part: &Value<'_>, out: &mut BytesMut) -> Result<(), TranslateError> {
    match part.get("type").and_then(|t| t.as_str()).unwrap_or("text") {
        "text" => write_text_part(out, part.get("text").and_then(|t| t.as_str()).unwrap_or_default()),
        "image_url" => {
            let url = part
                .get("image_url")
                .and_then(|i| i.get("url").or(Some(i)))
                .and_then(|u| u.as_str())
                .ok_or(TranslateError::Unsupported("image_url needs a url"))?;
            let (media, data) = data_url(url)
                .ok_or(TranslateError::Unsupported("Bedrock takes images as data: URLs (base64), not links"))?;
            let format = match media {
                "image/png" => "png",
                "image/jpeg" | "image/jpg" => "jpeg",
                "image/gif" => "gif",
                "image/webp" => "webp",
                _ => return Err(TranslateError::Unsupported("Bedrock takes png, jpeg, gif and webp images")),
            };
            out.extend_from_slice(b"{\"image\":{\"format\":\"");
            out.extend_from_slice(format.as_bytes());
            out.extend_from_slice(b"\",\"source\":{\"bytes\":");
            write_json_string(out, data);
            out.extend_from_slice(b"}}}");
        }
        _ => return Err(TranslateError::Unsupported("content parts must be text or image_url")),
    }
    Ok(())
}

/// OpenAI's `finish_reason` for a Converse `stopReason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

/// Writes the `chat.completion` for a Converse answer, and returns its
/// usage (`None` when it reported none).
pub fn response_to_openai(
    scratch: &mut [u8],
    model: &str,
    created: u64,
    out: &mut BytesMut,
) -> Result<Option<Usage>, TranslateError> {
    let v = parse(scratch)?;
    if !v.is_object() {
        return Err(TranslateError::Unsupported("a Converse answer must be a JSON object"));
    }
    let usage = v.get("usage").filter(|u| u.is_object()).map(Usage::read);
    let mut text = String::new();
    let mut calls = BytesMut::new();
    let mut n_calls = 0;
    let content = v.get("output").and_then(|o| o.get("message")).and_then(|m| m.get("content"));
    for block in content.and_then(|c| c.as_array()).into_iter().flat_map(|c| c.iter()) {
        if let Some(t) = block.get("text").and_then(|t| t.as_str()) {
            text.push_str(t);
        }
        if let Some(u) = block.get("toolUse").filter(|u| u.is_object()) {
            if n_calls > 0 {
                calls.put_u8(b',');
            }
            n_calls += 1;
            calls.extend_from_slice(b"{\"id\":");
            write_json_string(&mut calls, u.get("toolUseId").and_then(|i| i.as_str()).unwrap_or_default());
            calls.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
            write_json_string(&mut calls, u.get("name").and_then(|n| n.as_str()).unwrap_or_default());
            calls.extend_from_slice(b",\"arguments\":");
            let args = u.get("input").filter(|i| i.is_object()).map_or_else(|| "{}".to_string(), |i| i.encode());
            write_json_string(&mut calls, &args);
            calls.extend_from_slice(b"}}");
        }
    }
    out.extend_from_slice(b"{\"id\":\"bedrock\",\"object\":\"chat.completion\",\"created\":");
    out.extend_from_slice(itoa::Buffer::new().format(created).as_bytes());
    out.extend_from_slice(b",\"model\":");
    write_json_string(out, model);
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
    write_json_string(out, finish_reason(v.get("stopReason").and_then(|s| s.as_str()).unwrap_or("end_turn")));
    out.extend_from_slice(b"}]");
    if let Some(u) = usage {
        out.extend_from_slice(b",\"usage\":");
        u.write(out);
    }
    out.put_u8(b'}');
    Ok(usage)
}

/// Writes an OpenAI error body for a Bedrock error body (`{"message":
/// ...}`, as every AWS JSON service answers), or for any body that is not
/// one, quoting the status.
pub fn error_to_openai(scratch: &mut [u8], status: u16, out: &mut BytesMut) {
    let message = parse(scratch)
        .ok()
        .and_then(|v| v.get("message").or_else(|| v.get("Message")).and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| format!("upstream answered {status}"));
    let (kind, code) = match status {
        400 => ("invalid_request_error", "validation_exception"),
        401 | 403 => ("permission_error", "access_denied_exception"),
        404 => ("not_found_error", "resource_not_found_exception"),
        408 => ("api_error", "model_timeout_exception"),
        424 => ("api_error", "model_error_exception"),
        429 => ("rate_limit_error", "throttling_exception"),
        503 => ("api_error", "service_unavailable_exception"),
        _ => ("api_error", "internal_server_exception"),
    };
    crate::openai::write_error_body(out, &message, kind, code);
}

/// Turns ConverseStream messages into OpenAI `chat.completion.chunk`
/// events, one message at a time.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    model: String,
    created: u64,
    usage: Option<Usage>,
    /// The OpenAI tool-call index of each content block index.
    tool_index: Vec<Option<u32>>,
    tools_seen: u32,
    started: bool,
    stop_seen: bool,
    finished: bool,
}

impl StreamTranslator {
    pub fn new(model: &str, created: u64) -> StreamTranslator {
        StreamTranslator { model: model.to_string(), created, ..StreamTranslator::default() }
    }

    /// The usage the `metadata` event reported.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether the stream has ended (`[DONE]` written).
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Translates one ConverseStream message into zero or more OpenAI
    /// events appended to `out`.
    pub fn message(&mut self, m: &Message, out: &mut BytesMut) -> Result<(), TranslateError> {
        if self.finished {
            return Ok(());
        }
        let mut scratch = m.payload.to_vec();
        // An exception carries its kind in a header and a JSON message; an
        // error frame (the framing's own kind) its code and message in
        // headers.
        let message_type = m.header_str(":message-type");
        if matches!(message_type, Some(b"exception" | b"error")) {
            let kind = m.header_str(":exception-type").or_else(|| m.header_str(":error-code"));
            let kind = String::from_utf8_lossy(kind.unwrap_or(b"internalServerException")).into_owned();
            let status = if kind.eq_ignore_ascii_case("throttlingException") { 429 } else { 500 };
            let mut body = BytesMut::new();
            match m.header_str(":error-message").filter(|_| message_type == Some(b"error")) {
                Some(text) => {
                    let text = String::from_utf8_lossy(text);
                    crate::openai::write_error_body(&mut body, &text, "api_error", &kind.to_ascii_lowercase());
                }
                None => error_to_openai(&mut scratch, status, &mut body),
            }
            write_event(out, None, &body);
            self.finished = true;
            out.extend_from_slice(DONE_EVENT);
            return Ok(());
        }
        let v = parse(&mut scratch)?;
        match m.header_str(":event-type").unwrap_or_default() {
            b"messageStart" => {
                self.started = true;
                self.chunk(out, |o| o.extend_from_slice(b"{\"role\":\"assistant\",\"content\":\"\"}"), None);
            }
            b"contentBlockStart" => {
                let index = block_index(&v)?;
                if let Some(u) = v.get("start").and_then(|s| s.get("toolUse")).filter(|u| u.is_object()) {
                    let tool = self.tools_seen;
                    self.tools_seen += 1;
                    if self.tool_index.len() <= index {
                        self.tool_index.resize(index + 1, None);
                    }
                    self.tool_index[index] = Some(tool);
                    let id = u.get("toolUseId").and_then(|i| i.as_str()).unwrap_or_default();
                    let name = u.get("name").and_then(|i| i.as_str()).unwrap_or_default();
                    let mut d = BytesMut::new();
                    d.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
                    d.extend_from_slice(itoa::Buffer::new().format(tool).as_bytes());
                    d.extend_from_slice(b",\"id\":");
                    write_json_string(&mut d, id);
                    d.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                    write_json_string(&mut d, name);
                    d.extend_from_slice(b",\"arguments\":\"\"}}]}");
                    self.chunk(out, |o| o.extend_from_slice(&d), None);
                }
            }
            b"contentBlockDelta" => {
                let index = block_index(&v)?;
                let delta = v.get("delta");
                if let Some(text) = delta.and_then(|d| d.get("text")).and_then(|t| t.as_str()) {
                    let mut d = BytesMut::new();
                    d.extend_from_slice(b"{\"content\":");
                    write_json_string(&mut d, text);
                    d.put_u8(b'}');
                    self.chunk(out, |o| o.extend_from_slice(&d), None);
                }
                if let Some(part) =
                    delta.and_then(|d| d.get("toolUse")).and_then(|u| u.get("input")).and_then(|i| i.as_str())
                {
                    // Input for a block no `contentBlockStart` opened as a
                    // tool use belongs to no call: it is dropped, not
                    // appended to another call's arguments.
                    let Some(tool) = self.tool_index.get(index).copied().flatten() else { return Ok(()) };
                    let mut d = BytesMut::new();
                    d.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
                    d.extend_from_slice(itoa::Buffer::new().format(tool).as_bytes());
                    d.extend_from_slice(b",\"function\":{\"arguments\":");
                    write_json_string(&mut d, part);
                    d.extend_from_slice(b"}}]}");
                    self.chunk(out, |o| o.extend_from_slice(&d), None);
                }
            }
            b"messageStop" => {
                let reason = finish_reason(v.get("stopReason").and_then(|s| s.as_str()).unwrap_or("end_turn"));
                self.chunk(out, |o| o.extend_from_slice(b"{}"), Some(reason));
                self.stop_seen = true;
            }
            b"metadata" => {
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    self.usage = Some(Usage::read(u));
                }
            }
            // contentBlockStop and kinds added later carry nothing to pass.
            _ => {}
        }
        Ok(())
    }

    /// The upstream's body ended: the usage chunk (always: the gateway
    /// bills from it and keeps it from a client that did not ask), then
    /// `[DONE]` if the message stopped. A body that ended before
    /// `messageStop` is a broken answer and gets no `[DONE]`.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Some(u) = self.usage {
            crate::openai::write_usage_chunk(out, ("bedrock", self.created, &self.model), |d| u.write(d));
        }
        if self.stop_seen {
            out.extend_from_slice(DONE_EVENT);
        }
    }

    fn chunk(&self, out: &mut BytesMut, delta: impl FnOnce(&mut BytesMut), finish: Option<&str>) {
        crate::openai::write_chunk(out, ("bedrock", self.created, &self.model), 0, delta, finish);
    }
}

/// A stream event's `contentBlockIndex`, bounded as Anthropic's is.
fn block_index(v: &Value<'_>) -> Result<usize, TranslateError> {
    match v.get("contentBlockIndex").and_then(|i| i.as_u64()).unwrap_or(0) {
        i if (i as usize) < STREAM_BLOCKS_MAX => Ok(i as usize),
        _ => Err(TranslateError::Unsupported("stream content block index out of range")),
    }
}

#[cfg(test)]
mod tests;
