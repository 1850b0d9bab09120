//! Responses API clients in front of chat-completions upstreams: a
//! `POST /v1/responses` body becomes a chat request ([`request_to_chat`]),
//! a `chat.completion` becomes a `response` ([`response_from_chat`]), and a
//! chunk stream becomes the Responses API's typed events
//! ([`ResponsesStream`]). Anthropic upstreams are reached through chat:
//! the engine chains these with [`crate::anthropic`]'s translators.
//!
//! What needs state kept at OpenAI (`background`, `conversation`, stored
//! prompts, item references, and a `previous_response_id` the gateway's
//! own turn store does not hold) cannot be translated: it is refused with
//! a message naming the field. OpenAI's hosted tools (web search, file
//! search, code interpreter, ...) and tool namespaces in the tool list are
//! left out of the chat request, as a provider that cannot run them would
//! have to: a client that offers them (Codex offers `web_search` and a
//! sub-agent namespace on every request) keeps working with the function
//! tools it declared, and the model is simply not offered the others; a
//! `tool_choice` that names one is refused, since it cannot be honoured.

use bytes::{BufMut, BytesMut};
use simd_json::prelude::*;
use simd_json::BorrowedValue as Value;

use crate::anthropic::{format_number, parse, write_tool_fields, RequestInfo, TranslateError, STREAM_BLOCKS_MAX};
use crate::openai::write_json_string;
use crate::sse::SseEvent;

fn str_of<'v>(v: Option<&'v Value<'_>>) -> Option<&'v str> {
    v.and_then(|v| v.as_str())
}

/// The text of a content value: a string, or the text of its parts
/// (`input_text`, `output_text`, `text`, `refusal`) joined.
fn joined_text(content: Option<&Value<'_>>) -> String {
    match content {
        Some(c) if c.as_str().is_some() => c.as_str().unwrap_or_default().to_string(),
        Some(c) => c
            .as_array()
            .into_iter()
            .flat_map(|parts| parts.iter())
            .filter_map(|p| str_of(p.get("text")).or_else(|| str_of(p.get("refusal"))))
            .collect::<Vec<_>>()
            .join("\n"),
        None => String::new(),
    }
}

/// Writes the chat body for a Responses API request. `scratch` holds a copy
/// of the client's body (simd-json parses in place).
/// `ask_usage`: a stream asks for its usage chunk
/// (`stream_options.include_usage`); off for servers that refuse
/// `stream_options`.
pub fn request_to_chat(
    scratch: &mut [u8],
    upstream_model: &str,
    ask_usage: bool,
    out: &mut BytesMut,
) -> Result<RequestInfo, TranslateError> {
    request_to_chat_for(scratch, upstream_model, ask_usage, false, out)
}

/// [`request_to_chat`] for a model that `reasons` unseen or not: such a
/// model's output limit is written `max_completion_tokens` (OpenAI's
/// reasoning models refuse `max_tokens`), any other's `max_tokens` (which
/// every OpenAI-style server reads).
pub fn request_to_chat_for(
    scratch: &mut [u8],
    upstream_model: &str,
    ask_usage: bool,
    reasons: bool,
    out: &mut BytesMut,
) -> Result<RequestInfo, TranslateError> {
    let v = parse(scratch)?;
    let set = |key: &str| v.get(key).is_some_and(|x| !x.is_null() && x.as_bool() != Some(false));
    // The gateway continues the responses it keeps (the engine's turn
    // store puts their items in `input`); one it does not hold was made
    // elsewhere, or has expired.
    if set("previous_response_id") {
        return Err(TranslateError::Unsupported(
            "`previous_response_id` names a response this gateway does not hold for this key (it expired, or OpenAI made it), and this model's provider is not OpenAI; send the conversation's items in `input`",
        ));
    }
    // `store` is the engine's to honour (its turn store); the provider is
    // not told.
    if set("background") {
        return Err(TranslateError::Unsupported(
            "`background` runs need OpenAI, and this model's provider is not OpenAI",
        ));
    }
    if set("conversation") || set("prompt") {
        return Err(TranslateError::Unsupported(
            "`conversation` and `prompt` name objects stored at OpenAI, and this model's provider is not OpenAI",
        ));
    }
    let stream = v.get("stream").and_then(|s| s.as_bool()).unwrap_or(false);
    out.extend_from_slice(b"{\"model\":");
    write_json_string(out, upstream_model);
    out.extend_from_slice(b",\"messages\":[");
    let mut n = 0usize;
    let sep = |out: &mut BytesMut, n: &mut usize| {
        if *n > 0 {
            out.put_u8(b',');
        }
        *n += 1;
    };
    if let Some(instructions) = str_of(v.get("instructions")).filter(|s| !s.is_empty()) {
        sep(out, &mut n);
        out.extend_from_slice(b"{\"role\":\"system\",\"content\":");
        write_json_string(out, instructions);
        out.put_u8(b'}');
    }
    match v.get("input") {
        Some(i) if i.as_str().is_some() => {
            sep(out, &mut n);
            out.extend_from_slice(b"{\"role\":\"user\",\"content\":");
            write_json_string(out, i.as_str().unwrap_or_default());
            out.put_u8(b'}');
        }
        Some(i) if i.as_array().is_some() => {
            // Consecutive function calls are one assistant turn's
            // `tool_calls`.
            let mut calls = BytesMut::new();
            let flush = |out: &mut BytesMut, n: &mut usize, calls: &mut BytesMut| {
                if !calls.is_empty() {
                    sep(out, n);
                    out.extend_from_slice(b"{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[");
                    out.extend_from_slice(calls);
                    out.extend_from_slice(b"]}");
                    calls.clear();
                }
            };
            for item in i.as_array().into_iter().flat_map(|a| a.iter()) {
                let kind = str_of(item.get("type")).unwrap_or(if item.get("role").is_some() { "message" } else { "" });
                if kind == "function_call" {
                    if !calls.is_empty() {
                        calls.put_u8(b',');
                    }
                    calls.extend_from_slice(b"{\"id\":");
                    write_json_string(&mut calls, str_of(item.get("call_id")).unwrap_or_default());
                    calls.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                    write_json_string(&mut calls, str_of(item.get("name")).unwrap_or_default());
                    calls.extend_from_slice(b",\"arguments\":");
                    write_json_string(&mut calls, str_of(item.get("arguments")).unwrap_or("{}"));
                    calls.extend_from_slice(b"}}");
                    continue;
                }
                flush(out, &mut n, &mut calls);
                match kind {
                    "message" => message(item, out, &mut n, &sep)?,
                    "function_call_output" => {
                        sep(out, &mut n);
                        out.extend_from_slice(b"{\"role\":\"tool\",\"tool_call_id\":");
                        write_json_string(out, str_of(item.get("call_id")).unwrap_or_default());
                        out.extend_from_slice(b",\"content\":");
                        write_json_string(out, &joined_text(item.get("output")));
                        out.put_u8(b'}');
                    }
                    // A model's earlier reasoning is the provider's own;
                    // another provider cannot use it.
                    "reasoning" => {}
                    "item_reference" => {
                        return Err(TranslateError::Unsupported(
                            "an `item_reference` input names an item stored at OpenAI, and this model's provider is not OpenAI",
                        ))
                    }
                    _ => {
                        return Err(TranslateError::Unsupported(
                            "an input item of this type (built-in tool calls and their outputs) needs an OpenAI provider; send messages, function calls and function call outputs",
                        ))
                    }
                }
            }
            flush(out, &mut n, &mut calls);
        }
        Some(i) if !i.is_null() => {
            return Err(TranslateError::Unsupported("`input` must be a string or an array of items"))
        }
        _ => {}
    }
    out.put_u8(b']');
    if let Some(max) = v.get("max_output_tokens").and_then(|m| m.as_u64()) {
        out.extend_from_slice(if reasons { b",\"max_completion_tokens\":" } else { b",\"max_tokens\":" });
        out.extend_from_slice(itoa::Buffer::new().format(max).as_bytes());
    }
    for key in ["temperature", "top_p"] {
        if let Some(x) = v.get(key).and_then(|x| x.cast_f64()) {
            out.put_u8(b',');
            write_json_string(out, key);
            out.put_u8(b':');
            out.extend_from_slice(format_number(x).as_bytes());
        }
    }
    if let Some(b) = v.get("parallel_tool_calls").and_then(|b| b.as_bool()) {
        out.extend_from_slice(if b { b",\"parallel_tool_calls\":true" } else { b",\"parallel_tool_calls\":false" });
    }
    if let Some(user) = str_of(v.get("user")) {
        out.extend_from_slice(b",\"user\":");
        write_json_string(out, user);
    }
    if let Some(effort) = str_of(v.get("reasoning").and_then(|r| r.get("effort"))) {
        out.extend_from_slice(b",\"reasoning_effort\":");
        write_json_string(out, effort);
    }
    if let Some(format) = v.get("text").and_then(|t| t.get("format")) {
        match str_of(format.get("type")) {
            Some("json_schema") => {
                out.extend_from_slice(b",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":");
                write_json_string(out, str_of(format.get("name")).unwrap_or("schema"));
                if let Some(d) = str_of(format.get("description")) {
                    out.extend_from_slice(b",\"description\":");
                    write_json_string(out, d);
                }
                if let Some(schema) = format.get("schema") {
                    out.extend_from_slice(b",\"schema\":");
                    out.extend_from_slice(schema.encode().as_bytes());
                }
                if let Some(strict) = format.get("strict").and_then(|s| s.as_bool()) {
                    out.extend_from_slice(if strict { b",\"strict\":true" } else { b",\"strict\":false" });
                }
                out.extend_from_slice(b"}}");
            }
            Some("json_object") => out.extend_from_slice(b",\"response_format\":{\"type\":\"json_object\"}"),
            _ => {}
        }
    }
    if let Some(tools) = v.get("tools").and_then(|t| t.as_array()).filter(|t| !t.is_empty()) {
        let mut list = BytesMut::new();
        let mut any = false;
        for t in tools.iter() {
            // Hosted tools and namespaces are not offered (module doc).
            if str_of(t.get("type")) != Some("function") {
                continue;
            }
            if std::mem::replace(&mut any, true) {
                list.put_u8(b',');
            }
            list.extend_from_slice(b"{\"type\":\"function\",\"function\":{");
            write_tool_fields(&mut list, t, "parameters", b"parameters");
            // Responses function tools are strict unless they say not.
            let strict = t.get("strict").and_then(|s| s.as_bool()).unwrap_or(true);
            list.extend_from_slice(if strict { b",\"strict\":true}}" } else { b",\"strict\":false}}" });
        }
        // A list of hosted tools only is no list (chat refuses an empty one).
        if any {
            out.extend_from_slice(b",\"tools\":[");
            out.extend_from_slice(&list);
            out.put_u8(b']');
        }
    }
    if let Some(choice) = v.get("tool_choice") {
        match (choice.as_str(), str_of(choice.get("type"))) {
            (Some(c @ ("auto" | "none" | "required")), _) => {
                out.extend_from_slice(b",\"tool_choice\":");
                write_json_string(out, c);
            }
            (None, Some("function")) => {
                out.extend_from_slice(b",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":");
                write_json_string(out, str_of(choice.get("name")).unwrap_or_default());
                out.extend_from_slice(b"}}");
            }
            _ => {
                return Err(TranslateError::Unsupported(
                    "`tool_choice` must be \"auto\", \"none\", \"required\" or a function for a provider that is not OpenAI (its hosted tools run at OpenAI only)",
                ))
            }
        }
    }
    if stream {
        out.extend_from_slice(b",\"stream\":true");
        // Usage arrives only if asked for; a Responses stream always ends
        // with it.
        if ask_usage {
            out.extend_from_slice(b",\"stream_options\":{\"include_usage\":true}");
        }
    }
    out.put_u8(b'}');
    Ok(RequestInfo { stream, include_usage: true })
}

/// Writes the Anthropic messages body for a Responses API request: through
/// chat ([`request_to_chat`], then [`crate::anthropic::request_from_openai`]).
pub fn request_to_anthropic(
    scratch: &mut [u8],
    upstream_model: &str,
    out: &mut BytesMut,
) -> Result<RequestInfo, TranslateError> {
    let mut chat = BytesMut::with_capacity(scratch.len() + 256);
    let info = request_to_chat(scratch, upstream_model, false, &mut chat)?;
    let mut chat = chat.to_vec();
    crate::anthropic::request_from_openai(&mut chat, upstream_model, out)?;
    Ok(info)
}

/// One `message` input item as a chat message.
fn message(
    item: &Value<'_>,
    out: &mut BytesMut,
    n: &mut usize,
    sep: &impl Fn(&mut BytesMut, &mut usize),
) -> Result<(), TranslateError> {
    let role = match str_of(item.get("role")).unwrap_or("user") {
        r @ ("user" | "assistant" | "system") => r,
        "developer" => "system",
        _ => {
            return Err(TranslateError::Unsupported(
                "an input message's role must be user, assistant, system or developer",
            ))
        }
    };
    let content = item.get("content");
    sep(out, n);
    out.extend_from_slice(b"{\"role\":");
    write_json_string(out, role);
    out.extend_from_slice(b",\"content\":");
    // Assistant and system turns carry plain text in chat; a user's parts
    // keep their kinds (text and images).
    let Some(parts) = content.and_then(|c| c.as_array()).filter(|_| role == "user") else {
        write_json_string(out, &joined_text(content));
        out.put_u8(b'}');
        return Ok(());
    };
    out.put_u8(b'[');
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        match str_of(p.get("type")) {
            Some("input_text" | "output_text" | "text") => {
                out.extend_from_slice(b"{\"type\":\"text\",\"text\":");
                write_json_string(out, str_of(p.get("text")).unwrap_or_default());
                out.put_u8(b'}');
            }
            Some("input_image") => {
                let Some(url) = str_of(p.get("image_url")) else {
                    return Err(TranslateError::Unsupported(
                        "an `input_image` by `file_id` names a file stored at OpenAI, and this model's provider is not OpenAI; send `image_url`",
                    ));
                };
                out.extend_from_slice(b"{\"type\":\"image_url\",\"image_url\":{\"url\":");
                write_json_string(out, url);
                if let Some(detail) = str_of(p.get("detail")) {
                    out.extend_from_slice(b",\"detail\":");
                    write_json_string(out, detail);
                }
                out.extend_from_slice(b"}}");
            }
            _ => {
                return Err(TranslateError::Unsupported(
                    "an input part of this type (files, audio) needs an OpenAI provider; send `input_text` and `input_image`",
                ))
            }
        }
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

/// A function call the answer makes.
#[derive(Clone, Debug, Default)]
struct Call {
    call_id: String,
    name: String,
    arguments: String,
}

/// The index a tool call without one is given (past any real index).
const NO_INDEX: u64 = 1 << 40;

/// A call's id, or one made up for a call that came without (each call
/// item needs its own).
fn call_id_or_made(id: Option<&str>, n: usize) -> String {
    match id.filter(|i| !i.is_empty()) {
        Some(id) => id.to_string(),
        None => format!("call_tollgate_{n}"),
    }
}

/// What a response is made of, gathered from a chat answer (whole, or
/// chunk by chunk).
#[derive(Clone, Debug, Default)]
struct Made {
    /// The response's id (after `resp_`): the gateway's own where it
    /// gives one ([`ResponsesStream::with_id`], [`response_from_chat_as`]),
    /// else the chat answer's.
    id: String,
    /// The answer's head (model, created) was read.
    headed: bool,
    model: String,
    created: u64,
    /// The message's text; `None` when the answer has none.
    text: Option<String>,
    /// The message's refusal (chat's `refusal`), a part after the text.
    refusal: Option<String>,
    calls: Vec<Call>,
    /// The output items in order: `None` the message, `Some(i)` call `i`.
    order: Vec<Option<usize>>,
    finish: Option<String>,
    /// Prompt (cached included), completion, cached, reasoning.
    usage: Option<(u64, u64, u64, u64)>,
}

impl Made {
    fn message_id(&self, out: &mut BytesMut) {
        out.extend_from_slice(b"\"msg_");
        crate::json::escape(self.id.as_bytes(), out);
        out.put_u8(b'"');
    }

    fn call_id(call: &Call, out: &mut BytesMut) {
        out.extend_from_slice(b"\"fc_");
        crate::json::escape(call.call_id.as_bytes(), out);
        out.put_u8(b'"');
    }

    /// The message item, its text whole; `done` or just opened (empty).
    fn write_message(&self, done: bool, out: &mut BytesMut) {
        out.extend_from_slice(b"{\"type\":\"message\",\"id\":");
        self.message_id(out);
        if done {
            out.extend_from_slice(b",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[");
            if self.text.is_some() || self.refusal.is_none() {
                self.write_text_part(out);
            }
            if let Some(refusal) = &self.refusal {
                if self.text.is_some() {
                    out.put_u8(b',');
                }
                out.extend_from_slice(b"{\"type\":\"refusal\",\"refusal\":");
                write_json_string(out, refusal);
                out.put_u8(b'}');
            }
            out.extend_from_slice(b"]}");
        } else {
            out.extend_from_slice(b",\"status\":\"in_progress\",\"role\":\"assistant\",\"content\":[]}");
        }
    }

    fn write_text_part(&self, out: &mut BytesMut) {
        out.extend_from_slice(b"{\"type\":\"output_text\",\"annotations\":[],\"text\":");
        write_json_string(out, self.text.as_deref().unwrap_or_default());
        out.put_u8(b'}');
    }

    fn write_call(call: &Call, done: bool, out: &mut BytesMut) {
        out.extend_from_slice(b"{\"type\":\"function_call\",\"id\":");
        Self::call_id(call, out);
        out.extend_from_slice(b",\"call_id\":");
        write_json_string(out, &call.call_id);
        out.extend_from_slice(b",\"name\":");
        write_json_string(out, &call.name);
        out.extend_from_slice(b",\"arguments\":");
        write_json_string(out, if done { &call.arguments } else { "" });
        out.extend_from_slice(if done { b",\"status\":\"completed\"}" } else { b",\"status\":\"in_progress\"}" });
    }

    /// The status and, when incomplete, why, from the chat finish reason.
    fn status(&self) -> (&'static str, Option<&'static str>) {
        match self.finish.as_deref() {
            Some("length") => ("incomplete", Some("max_output_tokens")),
            Some("content_filter") => ("incomplete", Some("content_filter")),
            _ => ("completed", None),
        }
    }

    /// The `response` object: `done` with its output and usage, or the
    /// `in_progress` one a stream opens with.
    fn write_response(&self, done: bool, out: &mut BytesMut) {
        out.extend_from_slice(b"{\"id\":\"resp_");
        crate::json::escape(self.id.as_bytes(), out);
        out.extend_from_slice(b"\",\"object\":\"response\",\"created_at\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.created).as_bytes());
        let (status, reason) = if done { self.status() } else { ("in_progress", None) };
        out.extend_from_slice(b",\"status\":");
        write_json_string(out, status);
        out.extend_from_slice(b",\"error\":null,\"incomplete_details\":");
        match reason {
            Some(r) => {
                out.extend_from_slice(b"{\"reason\":");
                write_json_string(out, r);
                out.put_u8(b'}');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"model\":");
        write_json_string(out, &self.model);
        out.extend_from_slice(b",\"output\":[");
        if done {
            for (i, item) in self.order.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                match item {
                    None => self.write_message(true, out),
                    Some(c) => Self::write_call(&self.calls[*c], true, out),
                }
            }
        }
        out.extend_from_slice(b"],\"parallel_tool_calls\":true,\"tool_choice\":\"auto\",\"tools\":[],\"usage\":");
        match self.usage.filter(|_| done) {
            Some((prompt, completion, cached, reasoning)) => {
                let mut n = itoa::Buffer::new();
                out.extend_from_slice(b"{\"input_tokens\":");
                out.extend_from_slice(n.format(prompt).as_bytes());
                out.extend_from_slice(b",\"input_tokens_details\":{\"cached_tokens\":");
                out.extend_from_slice(n.format(cached.min(prompt)).as_bytes());
                out.extend_from_slice(b"},\"output_tokens\":");
                out.extend_from_slice(n.format(completion).as_bytes());
                out.extend_from_slice(b",\"output_tokens_details\":{\"reasoning_tokens\":");
                out.extend_from_slice(n.format(reasoning.min(completion)).as_bytes());
                out.extend_from_slice(b"},\"total_tokens\":");
                out.extend_from_slice(n.format(prompt.saturating_add(completion)).as_bytes());
                out.put_u8(b'}');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.put_u8(b'}');
    }

    /// Takes the top-level facts of a chat answer or chunk: id, model,
    /// created (first seen wins) and usage (last seen wins).
    fn take_head(&mut self, v: &Value<'_>) {
        if !self.headed {
            self.headed = true;
            if self.id.is_empty() {
                self.id = str_of(v.get("id")).unwrap_or("tollgate").to_string();
            }
            self.model = str_of(v.get("model")).unwrap_or_default().to_string();
            self.created = v.get("created").and_then(|c| c.as_u64()).unwrap_or(0);
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            let n = |k: &str| u.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            let detail = |d: &str, k: &str| u.get(d).and_then(|d| d.get(k)).and_then(|x| x.as_u64()).unwrap_or(0);
            self.usage = Some((
                n("prompt_tokens"),
                n("completion_tokens"),
                detail("prompt_tokens_details", "cached_tokens"),
                detail("completion_tokens_details", "reasoning_tokens"),
            ));
        }
    }
}

/// Writes the `response` for a `chat.completion`.
pub fn response_from_chat(scratch: &mut [u8], out: &mut BytesMut) -> Result<(), TranslateError> {
    response_from_chat_as(scratch, None, out)
}

/// [`response_from_chat`], the response named `resp_` + `id` where one is
/// given rather than after the chat answer's id: a translated provider's
/// ids are not unique (Bedrock's translation names every answer
/// `bedrock`, Gemini's `gemini`), and a response id is what a later
/// request continues (`previous_response_id`), so the gateway names each
/// response itself (found by a review: two users of one key continued
/// each other's conversations).
pub fn response_from_chat_as(scratch: &mut [u8], id: Option<&str>, out: &mut BytesMut) -> Result<(), TranslateError> {
    let v = parse(scratch)?;
    let mut made = Made { id: id.unwrap_or_default().to_string(), ..Made::default() };
    made.take_head(&v);
    let choice = v.get("choices").and_then(|c| c.as_array()).and_then(|c| c.first());
    let message = choice.and_then(|c| c.get("message"));
    made.text = message.map(|m| joined_text(m.get("content"))).filter(|t| !t.is_empty());
    made.refusal = str_of(message.and_then(|m| m.get("refusal"))).filter(|r| !r.is_empty()).map(str::to_string);
    if made.text.is_some() || made.refusal.is_some() {
        made.order.push(None);
    }
    for call in message.and_then(|m| m.get("tool_calls")).and_then(|t| t.as_array()).into_iter().flat_map(|c| c.iter())
    {
        let f = call.get("function");
        made.order.push(Some(made.calls.len()));
        made.calls.push(Call {
            call_id: call_id_or_made(str_of(call.get("id")), made.calls.len()),
            name: str_of(f.and_then(|f| f.get("name"))).unwrap_or_default().to_string(),
            arguments: str_of(f.and_then(|f| f.get("arguments"))).unwrap_or("{}").to_string(),
        });
    }
    made.finish = str_of(choice.and_then(|c| c.get("finish_reason"))).map(str::to_string);
    made.write_response(true, out);
    Ok(())
}

/// Turns a chat chunk stream into a Responses event stream: the response
/// opened (`response.created`, `.in_progress`), each output item added as
/// its first piece arrives, the text and arguments as deltas, and at the
/// end each item's summaries and `response.completed` (or `.incomplete`)
/// with the whole output and the usage.
#[derive(Debug, Default)]
pub struct ResponsesStream {
    made: Made,
    started: bool,
    sequence: u64,
    /// The output index of the message item, once opened.
    message: Option<u64>,
    /// Chat tool-call index to (call, output index).
    tools: Vec<(u64, usize, u64)>,
    finished: bool,
}

impl ResponsesStream {
    pub fn new() -> ResponsesStream {
        ResponsesStream::default()
    }

    /// A stream whose response is named `resp_` + `id` (see
    /// [`response_from_chat_as`]).
    pub fn with_id(id: String) -> ResponsesStream {
        ResponsesStream { made: Made { id, ..Made::default() }, ..ResponsesStream::default() }
    }

    /// The response's id after `resp_` (empty until the first chunk where
    /// the stream was made without one).
    pub fn id(&self) -> &str {
        &self.made.id
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The number the next event gets.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Writes one named event straight into `out`: its data is one line
    /// (every string in it is written escaped), so it needs no splitting.
    fn emit(&mut self, out: &mut BytesMut, name: &str, body: impl FnOnce(&Made, &mut BytesMut)) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\ndata: {\"type\":\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\",\"sequence_number\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.sequence).as_bytes());
        self.sequence += 1;
        body(&self.made, out);
        out.extend_from_slice(b"}\n\n");
    }

    fn start(&mut self, out: &mut BytesMut) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        for name in ["response.created", "response.in_progress"] {
            self.emit(out, name, |made, d| {
                d.extend_from_slice(b",\"response\":");
                made.write_response(false, d);
            });
        }
    }

    /// Translates one chat event (a chunk or `[DONE]`).
    pub fn event(&mut self, ev: &SseEvent, out: &mut BytesMut) -> Result<(), TranslateError> {
        if self.finished {
            return Ok(());
        }
        if &ev.data[..] == b"[DONE]" {
            self.finish(out);
            return Ok(());
        }
        let mut scratch = ev.data.to_vec();
        let v = parse(&mut scratch)?;
        self.made.take_head(&v);
        self.start(out);
        if let Some(e) = v.get("error") {
            let message = str_of(e.get("message")).unwrap_or("upstream error").to_string();
            self.fail(&message, "upstream_error", out);
            return Ok(());
        }
        let Some(choice) = v.get("choices").and_then(|c| c.as_array()).and_then(|c| c.first()) else { return Ok(()) };
        let delta = choice.get("delta");
        // A refusal is kept for the message's summaries.
        if let Some(refusal) = str_of(delta.and_then(|d| d.get("refusal"))).filter(|r| !r.is_empty()) {
            self.open_message(out);
            self.made.refusal.get_or_insert_with(String::new).push_str(refusal);
        }
        if let Some(text) = str_of(delta.and_then(|d| d.get("content"))).filter(|t| !t.is_empty()) {
            let index = self.open_message(out);
            if self.made.text.is_none() {
                self.made.text = Some(String::new());
                self.emit(out, "response.content_part.added", |made, d| {
                    Self::text_place(made, index, d);
                    d.extend_from_slice(b",\"part\":{\"type\":\"output_text\",\"annotations\":[],\"text\":\"\"}");
                });
            }
            if let Some(t) = self.made.text.as_mut() {
                t.push_str(text);
            }
            self.emit(out, "response.output_text.delta", |made, d| {
                Self::text_place(made, index, d);
                d.extend_from_slice(b",\"delta\":");
                write_json_string(d, text);
                d.extend_from_slice(b",\"logprobs\":[]");
            });
        }
        for call in
            delta.and_then(|d| d.get("tool_calls")).and_then(|t| t.as_array()).into_iter().flat_map(|c| c.iter())
        {
            let id = str_of(call.get("id")).filter(|i| !i.is_empty());
            let tool = match call.get("index").and_then(|i| i.as_u64()) {
                Some(i) => i,
                // No index (not chat's shape, but some servers): a new id
                // is a new call; none continues the last one.
                None => match (id, self.tools.last()) {
                    (Some(id), _) if !self.made.calls.iter().any(|k| k.call_id == id) => {
                        NO_INDEX + self.tools.len() as u64
                    }
                    (_, Some(&(t, ..))) => t,
                    _ => NO_INDEX,
                },
            };
            let f = call.get("function");
            let known = self.tools.iter().find(|(t, ..)| *t == tool).map(|&(_, c, index)| (c, index));
            let (c, index) = match known {
                Some(known) => known,
                None => {
                    if self.tools.len() >= STREAM_BLOCKS_MAX {
                        return Err(TranslateError::Unsupported("too many tool calls in one stream"));
                    }
                    let (c, index) = (self.made.calls.len(), self.made.order.len() as u64);
                    self.made.calls.push(Call {
                        call_id: call_id_or_made(id, c),
                        name: str_of(f.and_then(|f| f.get("name"))).unwrap_or_default().to_string(),
                        arguments: String::new(),
                    });
                    self.made.order.push(Some(c));
                    self.tools.push((tool, c, index));
                    self.emit(out, "response.output_item.added", |made, d| {
                        d.extend_from_slice(b",\"output_index\":");
                        d.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
                        d.extend_from_slice(b",\"item\":");
                        Made::write_call(&made.calls[c], false, d);
                    });
                    (c, index)
                }
            };
            if let Some(args) = str_of(f.and_then(|f| f.get("arguments"))).filter(|a| !a.is_empty()) {
                self.made.calls[c].arguments.push_str(args);
                self.emit(out, "response.function_call_arguments.delta", |made, d| {
                    d.extend_from_slice(b",\"item_id\":");
                    Made::call_id(&made.calls[c], d);
                    d.extend_from_slice(b",\"output_index\":");
                    d.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
                    d.extend_from_slice(b",\"delta\":");
                    write_json_string(d, args);
                });
            }
        }
        if let Some(reason) = str_of(choice.get("finish_reason")) {
            self.made.finish = Some(reason.to_string());
        }
        Ok(())
    }

    /// The message item's output index, adding the item first when this
    /// is its first piece.
    fn open_message(&mut self, out: &mut BytesMut) -> u64 {
        if let Some(i) = self.message {
            return i;
        }
        let i = self.made.order.len() as u64;
        self.message = Some(i);
        self.made.order.push(None);
        self.emit(out, "response.output_item.added", |made, d| {
            d.extend_from_slice(b",\"output_index\":");
            d.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
            d.extend_from_slice(b",\"item\":");
            made.write_message(false, d);
        });
        i
    }

    /// `"item_id", "output_index", "content_index"` of the message's text.
    fn text_place(made: &Made, index: u64, d: &mut BytesMut) {
        d.extend_from_slice(b",\"item_id\":");
        made.message_id(d);
        d.extend_from_slice(b",\"output_index\":");
        d.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
        d.extend_from_slice(b",\"content_index\":0");
    }

    /// Ends the stream with an `error` event.
    pub fn fail(&mut self, message: &str, code: &str, out: &mut BytesMut) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        super::write_error_event(out, message, code, self.sequence);
        self.sequence += 1;
    }

    /// The gateway ended the stream itself (its own last event written):
    /// nothing more is added.
    pub fn stopped(&mut self) {
        self.finished = true;
    }

    /// Ends the stream: each item's summaries in order, then
    /// `response.completed` (`.incomplete` when the answer was cut at its
    /// length or filtered) with the whole output and the usage.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.start(out);
        self.finished = true;
        for (i, item) in self.made.order.clone().into_iter().enumerate() {
            let index = i as u64;
            let at = |d: &mut BytesMut| {
                d.extend_from_slice(b",\"output_index\":");
                d.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
            };
            match item {
                None => {
                    if self.made.text.is_some() {
                        self.emit(out, "response.output_text.done", |made, d| {
                            Self::text_place(made, index, d);
                            d.extend_from_slice(b",\"text\":");
                            write_json_string(d, made.text.as_deref().unwrap_or_default());
                            d.extend_from_slice(b",\"logprobs\":[]");
                        });
                        self.emit(out, "response.content_part.done", |made, d| {
                            Self::text_place(made, index, d);
                            d.extend_from_slice(b",\"part\":");
                            made.write_text_part(d);
                        });
                    }
                    self.emit(out, "response.output_item.done", |made, d| {
                        at(d);
                        d.extend_from_slice(b",\"item\":");
                        made.write_message(true, d);
                    });
                }
                Some(c) => {
                    self.emit(out, "response.function_call_arguments.done", |made, d| {
                        d.extend_from_slice(b",\"item_id\":");
                        Made::call_id(&made.calls[c], d);
                        at(d);
                        d.extend_from_slice(b",\"arguments\":");
                        write_json_string(d, &made.calls[c].arguments);
                    });
                    self.emit(out, "response.output_item.done", |made, d| {
                        at(d);
                        d.extend_from_slice(b",\"item\":");
                        Made::write_call(&made.calls[c], true, d);
                    });
                }
            }
        }
        let last = if self.made.status().0 == "completed" { "response.completed" } else { "response.incomplete" };
        self.emit(out, last, |made, d| {
            d.extend_from_slice(b",\"response\":");
            made.write_response(true, d);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value as Json};

    fn to_chat(body: &Json) -> Result<Json, TranslateError> {
        let mut scratch = serde_json::to_vec(body).expect("JSON");
        let mut out = BytesMut::new();
        request_to_chat(&mut scratch, "up-model", true, &mut out)?;
        Ok(serde_json::from_slice(&out).expect("the chat body is JSON"))
    }

    #[test]
    fn a_string_input_with_instructions_becomes_system_and_user_messages() {
        let chat = to_chat(&json!({
            "model": "gpt-4o", "instructions": "Be brief.", "input": "Say \"hi\"",
            "max_output_tokens": 64, "temperature": 0.5, "stream": true, "store": false,
            "metadata": {"run": "1"}, "reasoning": {"effort": "low"}, "user": "u1"
        }))
        .expect("translated");
        assert_eq!(
            chat,
            json!({
                "model": "up-model",
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say \"hi\""}],
                "max_tokens": 64, "temperature": 0.5, "user": "u1", "reasoning_effort": "low",
                "stream": true, "stream_options": {"include_usage": true}
            })
        );
    }

    /// Items as the official SDKs and agent frameworks send them: a
    /// developer message, a user's text and image parts, an earlier answer,
    /// two function calls of one turn and their outputs, and the model's
    /// reasoning (dropped: another provider cannot use it).
    #[test]
    fn items_become_the_chat_turns_they_are() {
        let chat = to_chat(&json!({
            "model": "m",
            "input": [
                {"role": "developer", "content": "Use tools."},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "What is in this image, and the weather?"},
                    {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"}
                ]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
                {"type": "function_call", "call_id": "call_a", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": "call_b", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
                {"type": "function_call_output", "call_id": "call_a", "output": "12 C"},
                {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "3 C"}]}
            ],
            "tools": [{"type": "function", "name": "weather", "description": "Weather now",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}],
            "tool_choice": {"type": "function", "name": "weather"},
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
            "parallel_tool_calls": false
        }))
        .expect("translated");
        assert_eq!(
            chat["messages"],
            json!([
                {"role": "system", "content": "Use tools."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this image, and the weather?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}}
                ]},
                {"role": "assistant", "content": "Checking."},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_a", "content": "12 C"},
                {"role": "tool", "tool_call_id": "call_b", "content": "3 C"}
            ])
        );
        assert_eq!(chat["tools"][0]["function"]["name"], "weather");
        // Responses function tools are strict unless they say not.
        assert_eq!(chat["tools"][0]["function"]["strict"], true);
        assert_eq!(chat["tools"][0]["function"]["parameters"]["properties"]["city"]["type"], "string");
        assert_eq!(chat["tool_choice"], json!({"type": "function", "function": {"name": "weather"}}));
        assert_eq!(
            chat["response_format"]["json_schema"],
            json!({"name": "w", "schema": {"type": "object"}, "strict": true})
        );
        assert_eq!(chat["parallel_tool_calls"], false);
    }

    /// A server that refuses `stream_options` is not sent one; a tool that
    /// says it is not strict stays so.
    #[test]
    fn usage_is_asked_for_only_where_the_provider_takes_it() {
        let body = json!({"model": "m", "input": "x", "stream": true,
                          "tools": [{"type": "function", "name": "f", "strict": false}]});
        let mut scratch = serde_json::to_vec(&body).unwrap();
        let mut out = BytesMut::new();
        request_to_chat(&mut scratch, "u", false, &mut out).expect("translated");
        let chat: Json = serde_json::from_slice(&out).unwrap();
        assert_eq!(chat["stream"], true);
        assert!(chat.get("stream_options").is_none(), "{chat}");
        assert_eq!(chat["tools"][0]["function"]["strict"], false);
    }

    /// A refusal becomes a refusal part, JSON and streamed; tool calls
    /// that come without an id or an index still get an item each.
    #[test]
    fn refusals_and_calls_without_ids_are_kept() {
        let mut scratch = br#"{"id":"x","choices":[{"message":{"content":null,"refusal":"I can't help with that.","tool_calls":[{"type":"function","function":{"name":"a","arguments":"{}"}},{"type":"function","function":{"name":"b","arguments":"{}"}}]},"finish_reason":"stop"}]}"#.to_vec();
        let mut out = BytesMut::new();
        response_from_chat(&mut scratch, &mut out).expect("translated");
        let r: Json = serde_json::from_slice(&out).unwrap();
        assert_eq!(r["output"][0]["content"], json!([{"type": "refusal", "refusal": "I can't help with that."}]));
        assert_ne!(r["output"][1]["call_id"], r["output"][2]["call_id"]);
        assert_ne!(r["output"][1]["id"], r["output"][2]["id"]);
        let mut t = ResponsesStream::new();
        let mut out = BytesMut::new();
        for ev in [
            chunk(json!({"refusal": "I can't"}), None),
            chunk(json!({"refusal": " help."}), None),
            chunk(json!({"tool_calls": [{"id": "c1", "function": {"name": "a", "arguments": "{\"x\""}}]}), None),
            chunk(json!({"tool_calls": [{"function": {"arguments": ":1}"}}]}), None),
            chunk(json!({"tool_calls": [{"id": "c2", "function": {"name": "b", "arguments": "{}"}}]}), None),
        ] {
            t.event(&ev, &mut out).expect("translated");
        }
        t.finish(&mut out);
        let events = events(&out);
        let done = &events.last().unwrap().1["response"]["output"];
        assert_eq!(done[0]["content"], json!([{"type": "refusal", "refusal": "I can't help."}]));
        assert_eq!((done[1]["call_id"].as_str(), done[1]["arguments"].as_str()), (Some("c1"), Some("{\"x\":1}")));
        assert_eq!((done[2]["call_id"].as_str(), done[2]["arguments"].as_str()), (Some("c2"), Some("{}")));
        assert!(!events.iter().any(|(n, _)| n == "response.output_text.done"), "no text part was opened");
    }

    /// Codex's tool list (function tools, a sub-agent namespace, a hosted
    /// web search) reaches a chat provider as its function tools only.
    #[test]
    fn hosted_tools_and_namespaces_are_not_offered_to_a_chat_provider() {
        let chat = to_chat(&json!({"model": "m", "input": "x", "tools": [
            {"type": "function", "name": "exec_command", "strict": false, "parameters": {"type": "object", "properties": {}}},
            {"type": "namespace", "name": "multi_agent_v1", "tools": [{"type": "function", "name": "spawn_agent"}]},
            {"type": "web_search", "external_web_access": false}
        ], "tool_choice": "auto"}))
        .unwrap();
        let tools = chat["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 1);
        assert_eq!(tools[0]["function"]["name"], "exec_command");
        let only_hosted = to_chat(&json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]})).unwrap();
        assert!(only_hosted.get("tools").is_none(), "no empty list: {only_hosted}");
    }

    /// What needs state at OpenAI, or a hosted tool the request insists
    /// on, is refused, naming the field.
    #[test]
    fn what_needs_openai_is_refused_by_name() {
        let table = [
            (json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}), "previous_response_id"),
            (json!({"model": "m", "input": "x", "background": true}), "background"),
            (json!({"model": "m", "input": "x", "conversation": "conv_1"}), "conversation"),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}),
                "tool_choice",
            ),
            (json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}), "item_reference"),
            (json!({"model": "m", "input": [{"type": "web_search_call", "id": "ws_1"}]}), "input item"),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}),
                "file_id",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
                "files",
            ),
            (json!({"model": "m", "input": 7}), "`input`"),
            (json!({"model": "m", "input": [{"role": "tool", "content": "x"}]}), "role"),
        ];
        for (body, named) in table {
            match to_chat(&body) {
                Err(TranslateError::Unsupported(why)) => assert!(why.contains(named), "{body}: {why}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        for fine in [
            json!({"model": "m", "input": "x", "store": false}),
            json!({"model": "m", "input": "x", "store": true}),
            json!({"model": "m", "input": "x", "previous_response_id": null}),
        ] {
            assert!(to_chat(&fine).is_ok(), "{fine}");
        }
    }

    /// The same request reserialized with other whitespace and key order
    /// translates to the same chat request.
    #[test]
    fn whitespace_and_key_order_change_nothing() {
        let compact = r#"{"model":"m","instructions":"I","input":[{"role":"user","content":"hello"},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"}],"max_output_tokens":9}"#;
        let spaced = "{ \"max_output_tokens\" : 9 ,\n \"input\" : [ { \"content\" : \"hello\" , \"role\" : \"user\" } , {\"arguments\":\"{}\",\t\"name\":\"f\",\"call_id\":\"c\",\"type\":\"function_call\"} ] , \"instructions\":\"I\", \"model\":\"m\" }";
        let run = |body: &str| {
            let mut scratch = body.as_bytes().to_vec();
            let mut out = BytesMut::new();
            request_to_chat(&mut scratch, "u", true, &mut out).expect("translated");
            serde_json::from_slice::<Json>(&out).expect("JSON")
        };
        assert_eq!(run(compact), run(spaced));
    }

    #[test]
    fn a_chat_completion_becomes_a_response() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "llama",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Let me check.",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70,
                      "prompt_tokens_details": {"cached_tokens": 30}, "completion_tokens_details": {"reasoning_tokens": 5}}
        });
        let mut scratch = serde_json::to_vec(&body).expect("JSON");
        let mut out = BytesMut::new();
        response_from_chat(&mut scratch, &mut out).expect("translated");
        let r: Json = serde_json::from_slice(&out).expect("JSON");
        assert_eq!((r["object"].as_str(), r["status"].as_str()), (Some("response"), Some("completed")));
        assert_eq!(r["created_at"], 1700000000);
        assert_eq!(
            r["output"][0]["content"][0],
            json!({"type": "output_text", "annotations": [], "text": "Let me check."})
        );
        assert_eq!(r["output"][1]["type"], "function_call");
        assert_eq!(
            (r["output"][1]["call_id"].as_str(), r["output"][1]["name"].as_str()),
            (Some("call_1"), Some("weather"))
        );
        assert_eq!(r["output"][1]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(
            r["usage"],
            json!({"input_tokens": 50, "input_tokens_details": {"cached_tokens": 30}, "output_tokens": 20,
                   "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 70})
        );
        // Cut at its length: incomplete, for `max_output_tokens`.
        let mut scratch = br#"{"id":"x","choices":[{"message":{"content":"abc"},"finish_reason":"length"}]}"#.to_vec();
        let mut out = BytesMut::new();
        response_from_chat(&mut scratch, &mut out).expect("translated");
        let r: Json = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(
            (r["status"].as_str(), r["incomplete_details"]["reason"].as_str()),
            (Some("incomplete"), Some("max_output_tokens"))
        );
        assert!(r["usage"].is_null());
    }

    fn chunk(delta: Json, finish: Option<&str>) -> SseEvent {
        let v = json!({"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "llama",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        SseEvent { event: None, data: serde_json::to_vec(&v).expect("JSON").into(), id: None, retry: None }
    }

    fn events(out: &[u8]) -> Vec<(String, Json)> {
        String::from_utf8_lossy(out)
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.strip_prefix("event: ").and_then(|e| e.split_once("\ndata: ")).expect("named");
                (name.to_string(), serde_json::from_str(data).expect("JSON"))
            })
            .collect()
    }

    /// A chunk stream with text and then a tool call, its usage chunk and
    /// `[DONE]`: the typed events in order, numbered from 0, the deltas
    /// adding up to what the summaries and `response.completed` say.
    #[test]
    fn a_chunk_stream_becomes_typed_events() {
        let text = ["Let", " me", " check ", "\"the\" weather."];
        let mut input = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
        input.extend(text.iter().map(|t| chunk(json!({"content": t}), None)));
        input.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}]}),
            None,
        ));
        for piece in ["{\"city\"", ":\"Paris\"}"] {
            input.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}), None));
        }
        input.push(chunk(json!({}), Some("tool_calls")));
        let usage = json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 12, "prompt_tokens_details": {"cached_tokens": 4}}});
        input.push(SseEvent { event: None, data: serde_json::to_vec(&usage).unwrap().into(), id: None, retry: None });
        input.push(SseEvent { event: None, data: bytes::Bytes::from_static(b"[DONE]"), id: None, retry: None });
        let mut t = ResponsesStream::new();
        let mut out = BytesMut::new();
        for ev in &input {
            t.event(ev, &mut out).expect("translated");
        }
        assert!(t.finished());
        let events = events(&out);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (name, v)) in events.iter().enumerate() {
            assert_eq!(
                (v["type"].as_str(), v["sequence_number"].as_u64()),
                (Some(name.as_str()), Some(i as u64)),
                "{v}"
            );
        }
        let deltas: String = events
            .iter()
            .filter(|(n, _)| n == "response.output_text.delta")
            .map(|(_, v)| v["delta"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(deltas, text.concat());
        let done = &events.last().unwrap().1["response"];
        assert_eq!(done["output"][0]["content"][0]["text"].as_str(), Some(deltas.as_str()));
        assert_eq!(done["output"][1]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(done["output"][1]["id"], events[8].1["item"]["id"]);
        assert_eq!(
            (done["usage"]["input_tokens"].as_u64(), done["usage"]["output_tokens"].as_u64()),
            (Some(9), Some(12))
        );
        assert_eq!(done["usage"]["input_tokens_details"]["cached_tokens"], 4);
        assert_eq!(events[4].1["item_id"], done["output"][0]["id"]);
        // Nothing more after the end.
        let mut more = BytesMut::new();
        t.event(&chunk(json!({"content": "late"}), None), &mut more).expect("ignored");
        t.finish(&mut more);
        assert!(more.is_empty());
    }

    /// An upstream that ends without `[DONE]` (or whose stream the gateway
    /// finishes) still gets a valid ending; an error chunk becomes an
    /// `error` event; a hostile number of tool calls is refused.
    #[test]
    fn endings_errors_and_bounds() {
        let mut t = ResponsesStream::new();
        let mut out = BytesMut::new();
        t.finish(&mut out);
        let names: Vec<String> = events(&out).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["response.created", "response.in_progress", "response.completed"]);
        let mut t = ResponsesStream::new();
        let mut out = BytesMut::new();
        let err = json!({"error": {"message": "overloaded", "type": "server_error"}});
        t.event(
            &SseEvent { event: None, data: serde_json::to_vec(&err).unwrap().into(), id: None, retry: None },
            &mut out,
        )
        .expect("translated");
        let last = events(&out).pop().expect("events");
        assert_eq!((last.0.as_str(), last.1["message"].as_str()), ("error", Some("overloaded")));
        assert!(t.finished());
        let mut t = ResponsesStream::new();
        let mut out = BytesMut::new();
        let mut refused = false;
        for i in 0..=STREAM_BLOCKS_MAX as u64 {
            let ev = chunk(json!({"tool_calls": [{"index": i, "id": "c", "function": {"name": "f"}}]}), None);
            refused |= t.event(&ev, &mut out).is_err();
        }
        assert!(refused);
        // Length-capped: the stream ends `response.incomplete`.
        let mut t = ResponsesStream::new();
        let mut out = BytesMut::new();
        t.event(&chunk(json!({"content": "abc"}), Some("length")), &mut out).expect("translated");
        t.finish(&mut out);
        let last = events(&out).pop().expect("events");
        assert_eq!(last.0, "response.incomplete");
        assert_eq!(last.1["response"]["incomplete_details"]["reason"], "max_output_tokens");
    }
}
