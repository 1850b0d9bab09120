//! The other direction: Anthropic clients (`POST /v1/messages`, the
//! `anthropic` SDK) in front of OpenAI-kind upstreams. Requests become chat
//! completions, answers become Anthropic messages, OpenAI chunk streams
//! become Anthropic event streams.

use bytes::{BufMut, BytesMut};
use simd_json::prelude::*;
use simd_json::BorrowedValue as Value;

use super::{parse, RequestInfo, TranslateError, DEFAULT_MAX_TOKENS, STREAM_BLOCKS_MAX};
use crate::openai::{write_json_string, Usage};
use crate::sse::{write_event, SseEvent};

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

fn text_blocks(v: Option<&Value<'_>>) -> String {
    match v {
        Some(c) => match (c.as_str(), c.as_array()) {
            (Some(s), _) => s.to_string(),
            (None, Some(blocks)) => blocks
                .iter()
                .filter(|b| b.get("type").and_then(|t| t.as_str()) == Some("text"))
                .filter_map(|b| b.get("text").and_then(|t| t.as_str()))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        },
        None => String::new(),
    }
}

/// Writes the OpenAI chat body for an Anthropic messages request.
pub fn request_to_openai(
    scratch: &mut [u8],
    upstream_model: &str,
    out: &mut BytesMut,
) -> Result<RequestInfo, TranslateError> {
    request_to_openai_for(scratch, upstream_model, false, out)
}

/// [`request_to_openai`] for a model that `reasons` unseen or not: such a
/// model's output limit is written `max_completion_tokens` (OpenAI's
/// reasoning models refuse `max_tokens`), any other's `max_tokens`.
pub fn request_to_openai_for(
    scratch: &mut [u8],
    upstream_model: &str,
    reasons: bool,
    out: &mut BytesMut,
) -> Result<RequestInfo, TranslateError> {
    let v = parse(scratch)?;
    let messages =
        v.get("messages").and_then(|m| m.as_array()).ok_or(TranslateError::Unsupported("messages must be an array"))?;
    let stream = v.get("stream").and_then(|s| s.as_bool()).unwrap_or(false);
    out.extend_from_slice(b"{\"model\":");
    write_json_string(out, upstream_model);
    out.extend_from_slice(if reasons { b",\"max_completion_tokens\":" } else { b",\"max_tokens\":" });
    let max = v.get("max_tokens").and_then(|m| m.as_u64()).unwrap_or(DEFAULT_MAX_TOKENS);
    out.extend_from_slice(itoa::Buffer::new().format(max).as_bytes());
    out.extend_from_slice(b",\"messages\":[");
    let mut first = true;
    let mut sep = |out: &mut BytesMut| {
        if !std::mem::take(&mut first) {
            out.put_u8(b',');
        }
    };
    let system = text_blocks(v.get("system"));
    if !system.is_empty() {
        sep(out);
        out.extend_from_slice(b"{\"role\":\"system\",\"content\":");
        write_json_string(out, &system);
        out.put_u8(b'}');
    }
    for m in messages.iter() {
        let role = m.get("role").and_then(|r| r.as_str()).unwrap_or("user");
        if role != "user" && role != "assistant" {
            return Err(TranslateError::Unsupported("message role must be user or assistant"));
        }
        let content = m.get("content");
        if let Some(s) = content.and_then(|c| c.as_str()) {
            sep(out);
            out.extend_from_slice(b"{\"role\":");
            write_json_string(out, role);
            out.extend_from_slice(b",\"content\":");
            write_json_string(out, s);
            out.put_u8(b'}');
            continue;
        }
        let blocks = content
            .and_then(|c| c.as_array())
            .ok_or(TranslateError::Unsupported("content must be a string or blocks"))?;
        // Tool results become `tool` messages, which must directly follow
        // the assistant turn that called the tools.
        for b in blocks.iter().filter(|b| b.get("type").and_then(|t| t.as_str()) == Some("tool_result")) {
            sep(out);
            out.extend_from_slice(b"{\"role\":\"tool\",\"tool_call_id\":");
            write_json_string(out, b.get("tool_use_id").and_then(|i| i.as_str()).unwrap_or_default());
            out.extend_from_slice(b",\"content\":");
            write_json_string(out, &text_blocks(b.get("content")));
            out.put_u8(b'}');
        }
        let mut parts = BytesMut::new();
        let mut n_parts = 0;
        let mut text = String::new();
        let mut calls = BytesMut::new();
        let mut n_calls = 0;
        for b in blocks.iter() {
            match b.get("type").and_then(|t| t.as_str()) {
                Some("text") => {
                    let t = b.get("text").and_then(|t| t.as_str()).unwrap_or_default();
                    if n_parts > 0 {
                        parts.put_u8(b',');
                    }
                    n_parts += 1;
                    parts.extend_from_slice(b"{\"type\":\"text\",\"text\":");
                    write_json_string(&mut parts, t);
                    parts.put_u8(b'}');
                    text.push_str(t);
                }
                Some("image") => {
                    let src = b.get("source");
                    let url = match src.and_then(|s| s.get("type")).and_then(|t| t.as_str()) {
                        Some("base64") => format!(
                            "data:{};base64,{}",
                            src.and_then(|s| s.get("media_type")).and_then(|m| m.as_str()).unwrap_or("image/png"),
                            src.and_then(|s| s.get("data")).and_then(|d| d.as_str()).unwrap_or_default()
                        ),
                        _ => src.and_then(|s| s.get("url")).and_then(|u| u.as_str()).unwrap_or_default().to_string(),
                    };
                    if n_parts > 0 {
                        parts.put_u8(b',');
                    }
                    n_parts += 1;
                    parts.extend_from_slice(b"{\"type\":\"image_url\",\"image_url\":{\"url\":");
                    write_json_string(&mut parts, &url);
                    parts.extend_from_slice(b"}}");
                }
                Some("tool_use") => {
                    if n_calls > 0 {
                        calls.put_u8(b',');
                    }
                    n_calls += 1;
                    calls.extend_from_slice(b"{\"id\":");
                    write_json_string(&mut calls, b.get("id").and_then(|i| i.as_str()).unwrap_or_default());
                    calls.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                    write_json_string(&mut calls, b.get("name").and_then(|n| n.as_str()).unwrap_or_default());
                    calls.extend_from_slice(b",\"arguments\":");
                    write_json_string(&mut calls, &b.get("input").map_or_else(|| "{}".to_string(), |i| i.encode()));
                    calls.extend_from_slice(b"}}");
                }
                _ => {}
            }
        }
        if n_parts == 0 && n_calls == 0 {
            continue;
        }
        sep(out);
        out.extend_from_slice(b"{\"role\":");
        write_json_string(out, role);
        out.extend_from_slice(b",\"content\":");
        if role == "assistant" {
            // Assistant turns carry plain text (and tool calls) in OpenAI.
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
        } else {
            out.put_u8(b'[');
            out.extend_from_slice(&parts);
            out.put_u8(b']');
        }
        out.put_u8(b'}');
    }
    out.put_u8(b']');
    if let Some(stops) = v.get("stop_sequences").and_then(|s| s.as_array()).filter(|s| !s.is_empty()) {
        out.extend_from_slice(b",\"stop\":[");
        for (i, s) in stops.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            write_json_string(out, s.as_str().unwrap_or_default());
        }
        out.put_u8(b']');
    }
    for key in ["temperature", "top_p"] {
        if let Some(x) = v.get(key).and_then(|x| x.cast_f64()) {
            out.put_u8(b',');
            write_json_string(out, key);
            out.put_u8(b':');
            out.extend_from_slice(super::format_number(x).as_bytes());
        }
    }
    if let Some(tools) = v.get("tools").and_then(|t| t.as_array()).filter(|t| !t.is_empty()) {
        out.extend_from_slice(b",\"tools\":[");
        for (i, t) in tools.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            out.extend_from_slice(b"{\"type\":\"function\",\"function\":{");
            super::write_tool_fields(out, t, "input_schema", b"parameters");
            out.extend_from_slice(b"}}");
        }
        out.put_u8(b']');
    }
    if let Some(choice) = v.get("tool_choice") {
        let rendered = match choice.get("type").and_then(|t| t.as_str()) {
            Some("auto") => Some("\"auto\"".to_string()),
            Some("any") => Some("\"required\"".to_string()),
            Some("none") => Some("\"none\"".to_string()),
            Some("tool") => {
                let mut b = BytesMut::new();
                write_json_string(&mut b, choice.get("name").and_then(|n| n.as_str()).unwrap_or_default());
                Some(format!("{{\"type\":\"function\",\"function\":{{\"name\":{}}}}}", String::from_utf8_lossy(&b)))
            }
            _ => None,
        };
        if let Some(r) = rendered {
            out.extend_from_slice(b",\"tool_choice\":");
            out.extend_from_slice(r.as_bytes());
        }
    }
    if stream {
        // Usage arrives only if asked for; Anthropic streams always carry it.
        out.extend_from_slice(b",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    }
    out.put_u8(b'}');
    Ok(RequestInfo { stream, include_usage: true })
}

/// Anthropic's usage object: its input excludes the cache's reads and
/// writes, which it gives apart.
fn usage_json(u: &Usage, out: &mut BytesMut) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"{\"input_tokens\":");
    out.extend_from_slice(n.format(u.prompt.saturating_sub(u.cached).saturating_sub(u.cache_write)).as_bytes());
    out.extend_from_slice(b",\"output_tokens\":");
    out.extend_from_slice(n.format(u.completion).as_bytes());
    out.extend_from_slice(b",\"cache_read_input_tokens\":");
    out.extend_from_slice(n.format(u.cached).as_bytes());
    if u.cache_write > 0 {
        out.extend_from_slice(b",\"cache_creation_input_tokens\":");
        out.extend_from_slice(n.format(u.cache_write).as_bytes());
    }
    if u.cache_write_1h > 0 {
        out.extend_from_slice(b",\"cache_creation\":{\"ephemeral_5m_input_tokens\":");
        out.extend_from_slice(n.format(u.cache_write - u.cache_write_1h).as_bytes());
        out.extend_from_slice(b",\"ephemeral_1h_input_tokens\":");
        out.extend_from_slice(n.format(u.cache_write_1h).as_bytes());
        out.put_u8(b'}');
    }
    out.put_u8(b'}');
}

/// A chat usage object's counts: the cache's reads and writes (the
/// gateway's own chat form of Bedrock's Claude carries writes, and their
/// hour-long share; Gemini's, its audio), held as every usage is
/// ([`Usage::held`]). `None` without a usage object, or one that lacks
/// the prompt's or the completion's count (no report to bill by: the
/// gateway counts instead); `Some(Err(_))` when a count is there but not
/// believable (not a whole number from 0 to `USAGE_TOKENS_MAX`), which
/// sets the report aside, as every other reader does (read as 0, a prompt
/// of `1.2e4` was billed as none).
fn read_usage(u: Option<&Value<'_>>) -> Option<Result<Usage, ()>> {
    let u = u.filter(|u| u.is_object())?;
    let n = |v: Option<&Value<'_>>| match v {
        None => Ok(0),
        Some(v) if v.is_null() => Ok(0),
        Some(v) => v.as_u64().filter(|&n| n <= crate::openai::USAGE_TOKENS_MAX).ok_or(()),
    };
    if u.get("prompt_tokens").is_none_or(|v| v.is_null()) || u.get("completion_tokens").is_none_or(|v| v.is_null()) {
        return None;
    }
    let prompt_details = |k: &str| n(u.get("prompt_tokens_details").and_then(|d| d.get(k)));
    let usage = (|| {
        Ok(Usage {
            prompt: n(u.get("prompt_tokens"))?,
            completion: n(u.get("completion_tokens"))?,
            cached: prompt_details("cached_tokens")?,
            cache_write: n(u.get("cache_creation_input_tokens"))?,
            cache_write_1h: n(u.get("cache_creation").and_then(|c| c.get("ephemeral_1h_input_tokens")))?,
            audio_prompt: prompt_details("audio_tokens")?,
            audio_completion: n(u.get("completion_tokens_details").and_then(|d| d.get("audio_tokens")))?,
            ..Usage::default()
        })
    })();
    Some(usage.map(Usage::held))
}

/// Writes the Anthropic message for an OpenAI `chat.completion`.
pub fn response_from_openai(scratch: &mut [u8], out: &mut BytesMut) -> Result<(), TranslateError> {
    let v = parse(scratch)?;
    let choice = v.get("choices").and_then(|c| c.as_array()).and_then(|c| c.first());
    let message = choice.and_then(|c| c.get("message"));
    out.extend_from_slice(b"{\"id\":");
    write_json_string(out, v.get("id").and_then(|i| i.as_str()).unwrap_or("msg"));
    out.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    write_json_string(out, v.get("model").and_then(|m| m.as_str()).unwrap_or_default());
    out.extend_from_slice(b",\"content\":[");
    let mut any = false;
    if let Some(text) = message.and_then(|m| m.get("content")).and_then(|c| c.as_str()).filter(|t| !t.is_empty()) {
        out.extend_from_slice(b"{\"type\":\"text\",\"text\":");
        write_json_string(out, text);
        out.put_u8(b'}');
        any = true;
    }
    for call in message.and_then(|m| m.get("tool_calls")).and_then(|t| t.as_array()).into_iter().flat_map(|c| c.iter())
    {
        if std::mem::replace(&mut any, true) {
            out.put_u8(b',');
        }
        let f = call.get("function");
        out.extend_from_slice(b"{\"type\":\"tool_use\",\"id\":");
        write_json_string(out, call.get("id").and_then(|i| i.as_str()).unwrap_or_default());
        out.extend_from_slice(b",\"name\":");
        write_json_string(out, f.and_then(|f| f.get("name")).and_then(|n| n.as_str()).unwrap_or_default());
        out.extend_from_slice(b",\"input\":");
        let mut args = f.and_then(|f| f.get("arguments")).and_then(|a| a.as_str()).unwrap_or("{}").as_bytes().to_vec();
        match simd_json::to_borrowed_value(&mut args) {
            Ok(obj) if obj.is_object() => out.extend_from_slice(obj.encode().as_bytes()),
            _ => out.extend_from_slice(b"{}"),
        }
        out.put_u8(b'}');
    }
    out.extend_from_slice(b"],\"stop_reason\":");
    let finish = choice.and_then(|c| c.get("finish_reason")).and_then(|f| f.as_str()).unwrap_or("stop");
    write_json_string(out, stop_reason(finish));
    out.extend_from_slice(b",\"stop_sequence\":null,\"usage\":");
    usage_json(&read_usage(v.get("usage")).and_then(Result::ok).unwrap_or_default(), out);
    out.put_u8(b'}');
    Ok(())
}

/// Writes an Anthropic error body for an OpenAI error body.
pub fn error_from_openai(scratch: &mut [u8], status: u16, out: &mut BytesMut) {
    let message = parse(scratch)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.get("message")).and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| format!("upstream answered {status}"));
    let kind = match status {
        400 | 404 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    };
    out.extend_from_slice(b"{\"type\":\"error\",\"error\":{\"type\":");
    write_json_string(out, kind);
    out.extend_from_slice(b",\"message\":");
    write_json_string(out, &message);
    out.extend_from_slice(b"}}");
}

/// Turns an OpenAI chunk stream into an Anthropic event stream.
#[derive(Debug, Default)]
pub struct FrontStream {
    started: bool,
    /// The Anthropic content block open now, and whether it is text.
    open_block: Option<(u32, bool)>,
    next_block: u32,
    /// OpenAI tool-call index to Anthropic block index.
    tool_blocks: Vec<(u64, u32)>,
    stop_reason: Option<&'static str>,
    /// What the upstream's usage chunks reported, merged.
    usage: crate::openai::Reported,
    /// The dearest `service_tier` the chunks reported (OpenAI writes it at
    /// each chunk's top level, not in the usage).
    tier: crate::openai::Tier,
    finished: bool,
}

impl FrontStream {
    pub fn new() -> FrontStream {
        FrontStream::default()
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The counts of the upstream's usage chunks, at the dearest tier the
    /// chunks reported: zeros when none reported both counts.
    pub fn usage(&self) -> Usage {
        Usage { tier: self.tier, ..self.usage.usage().unwrap_or_default() }
    }

    /// A usage chunk held a count not to believe (negative, fractional, a
    /// string, past `USAGE_TOKENS_MAX`): [`FrontStream::usage`] is not to
    /// be billed by.
    pub fn unreadable(&self) -> bool {
        self.usage.unreadable
    }

    /// The `stop_reason` the client is sent, from the upstream's
    /// `finish_reason`.
    pub fn finish_reasons(&self) -> crate::openai::Finish {
        let mut f = crate::openai::Finish::default();
        if let Some(r) = self.stop_reason {
            f.push(r);
        }
        f
    }

    fn emit(out: &mut BytesMut, name: &str, data: &[u8]) {
        write_event(out, Some(name.as_bytes()), data);
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        if let Some((index, _)) = self.open_block.take() {
            let data = format!("{{\"type\":\"content_block_stop\",\"index\":{index}}}");
            Self::emit(out, "content_block_stop", data.as_bytes());
        }
    }

    fn open(&mut self, out: &mut BytesMut, text: bool, block: &[u8]) -> u32 {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open_block = Some((index, text));
        let mut data = BytesMut::new();
        data.extend_from_slice(
            format!("{{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":").as_bytes(),
        );
        data.extend_from_slice(block);
        data.put_u8(b'}');
        Self::emit(out, "content_block_start", &data);
        index
    }

    /// Reads one chunk for its usage alone: every chunk's, and a stopped
    /// stream's, read on for the provider's final count. Read as every
    /// chat stream's usage is (`openai::read_answer`, `Reported::merge`:
    /// each count the largest reported, a count not to believe setting
    /// the report aside); a chunk is a report only with both counts, or
    /// one not to believe.
    pub fn usage_only(&mut self, ev: &SseEvent) {
        if crate::openai::mentions_usage(&ev.data) {
            if let Some(r) = crate::openai::read_answer(&ev.data).map(|f| f.reported) {
                if r.unreadable || (r.prompt_tokens.is_some() && r.completion_tokens.is_some()) {
                    self.usage.merge(r);
                }
            }
        }
    }

    /// Translates one OpenAI event (a chunk or `[DONE]`).
    pub fn event(&mut self, ev: &SseEvent, out: &mut BytesMut) -> Result<(), TranslateError> {
        if &ev.data[..] == b"[DONE]" {
            self.finish(out);
            return Ok(());
        }
        let mut scratch = ev.data.to_vec();
        let v = parse(&mut scratch)?;
        if !self.started {
            self.started = true;
            let mut data = BytesMut::new();
            data.extend_from_slice(b"{\"type\":\"message_start\",\"message\":{\"id\":");
            write_json_string(&mut data, v.get("id").and_then(|i| i.as_str()).unwrap_or("msg"));
            data.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":");
            write_json_string(&mut data, v.get("model").and_then(|m| m.as_str()).unwrap_or_default());
            data.extend_from_slice(
                b",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}",
            );
            Self::emit(out, "message_start", &data);
        }
        self.usage_only(ev);
        if let Some(t) = v.get("service_tier").and_then(|t| t.as_str()) {
            self.tier = self.tier.max(crate::openai::Tier::of(t.as_bytes()));
        }
        // An OpenAI error chunk mid-stream: an Anthropic error event ends it.
        if let Some(e) = v.get("error") {
            let message = e.get("message").and_then(|m| m.as_str()).unwrap_or("upstream error").to_string();
            self.fail(&message, out);
            return Ok(());
        }
        let Some(choice) = v.get("choices").and_then(|c| c.as_array()).and_then(|c| c.first()) else { return Ok(()) };
        let delta = choice.get("delta");
        if let Some(text) = delta.and_then(|d| d.get("content")).and_then(|c| c.as_str()).filter(|t| !t.is_empty()) {
            let index = match self.open_block {
                Some((i, true)) => i,
                _ => self.open(out, true, b"{\"type\":\"text\",\"text\":\"\"}"),
            };
            let mut data = BytesMut::new();
            data.extend_from_slice(format!("{{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"text_delta\",\"text\":").as_bytes());
            write_json_string(&mut data, text);
            data.extend_from_slice(b"}}");
            Self::emit(out, "content_block_delta", &data);
        }
        for call in
            delta.and_then(|d| d.get("tool_calls")).and_then(|t| t.as_array()).into_iter().flat_map(|c| c.iter())
        {
            let openai_index = call.get("index").and_then(|i| i.as_u64()).unwrap_or(0);
            if self.tool_blocks.len() >= STREAM_BLOCKS_MAX && !self.tool_blocks.iter().any(|(o, _)| *o == openai_index)
            {
                return Err(TranslateError::Unsupported("too many tool calls in one stream"));
            }
            let f = call.get("function");
            let known = self.tool_blocks.iter().find(|(o, _)| *o == openai_index).map(|&(_, b)| b);
            let block = match known {
                Some(b) => b,
                None => {
                    let mut block = BytesMut::new();
                    block.extend_from_slice(b"{\"type\":\"tool_use\",\"id\":");
                    write_json_string(&mut block, call.get("id").and_then(|i| i.as_str()).unwrap_or_default());
                    block.extend_from_slice(b",\"name\":");
                    write_json_string(
                        &mut block,
                        f.and_then(|f| f.get("name")).and_then(|n| n.as_str()).unwrap_or_default(),
                    );
                    block.extend_from_slice(b",\"input\":{}}");
                    let b = self.open(out, false, &block);
                    self.tool_blocks.push((openai_index, b));
                    b
                }
            };
            if let Some(args) = f.and_then(|f| f.get("arguments")).and_then(|a| a.as_str()).filter(|a| !a.is_empty()) {
                let mut data = BytesMut::new();
                data.extend_from_slice(format!("{{\"type\":\"content_block_delta\",\"index\":{block},\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":").as_bytes());
                write_json_string(&mut data, args);
                data.extend_from_slice(b"}}");
                Self::emit(out, "content_block_delta", &data);
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(|f| f.as_str()) {
            self.stop_reason = Some(stop_reason(reason));
        }
        Ok(())
    }

    /// Ends the stream with an Anthropic `error` event.
    pub fn fail(&mut self, message: &str, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.finished = true;
        let mut data = BytesMut::new();
        data.extend_from_slice(b"{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":");
        write_json_string(&mut data, message);
        data.extend_from_slice(b"}}");
        Self::emit(out, "error", &data);
    }

    /// Ends the Anthropic stream: open block closed, `message_delta` with
    /// the stop reason and usage, `message_stop`.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.close_block(out);
        let mut data = BytesMut::new();
        data.extend_from_slice(b"{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":");
        write_json_string(&mut data, self.stop_reason.unwrap_or("end_turn"));
        data.extend_from_slice(b",\"stop_sequence\":null},\"usage\":");
        usage_json(&self.usage.usage().unwrap_or_default(), &mut data);
        data.put_u8(b'}');
        Self::emit(out, "message_delta", &data);
        Self::emit(out, "message_stop", b"{\"type\":\"message_stop\"}");
    }
}

/// A message whose answer was withheld: no content, `stop_reason:
/// "refusal"` (what Anthropic's own classifiers answer with).
pub fn write_refusal_message(out: &mut BytesMut, model: &str, usage: Option<(u64, u64)>) {
    out.extend_from_slice(b"{\"id\":\"msg_filtered\",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    write_json_string(out, model);
    out.extend_from_slice(b",\"content\":[],\"stop_reason\":\"refusal\",\"stop_sequence\":null,\"usage\":");
    let (prompt, completion) = usage.unwrap_or((0, 0));
    usage_json(&Usage { prompt, completion, ..Usage::default() }, out);
    out.put_u8(b'}');
}

/// The events that end a stream the gateway stops (`refusal` when a
/// guardrail withheld the rest, `max_tokens` at a request ceiling).
pub fn write_stream_end(out: &mut BytesMut, stop_reason: &str) {
    let mut data = BytesMut::new();
    data.extend_from_slice(b"{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":");
    write_json_string(&mut data, stop_reason);
    data.extend_from_slice(b",\"stop_sequence\":null},\"usage\":{\"output_tokens\":0}}");
    FrontStream::emit(out, "message_delta", &data);
    FrontStream::emit(out, "message_stop", b"{\"type\":\"message_stop\"}");
}
