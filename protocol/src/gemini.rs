//! Translation between OpenAI chat completions and Google's Gemini API
//! (`models/{model}:generateContent` and `:streamGenerateContent?alt=sse`,
//! served alike by the Gemini API and by Vertex AI), both ways.
//!
//! Requests ([`request_from_openai`]): system messages become
//! `systemInstruction`, turns become `contents` with roles `user` and
//! `model` (consecutive turns of one role share a content), text, image and
//! audio parts become `text`, `inlineData` and `fileData` parts, assistant
//! tool calls become `functionCall` parts and `tool` messages
//! `functionResponse` parts (named after the call they answer), tools
//! become `functionDeclarations` with their JSON schema as it came, and the
//! sampling fields move into `generationConfig`. The model and whether the
//! answer streams are in the URL, not the body.
//!
//! Answers: a `GenerateContentResponse` becomes a `chat.completion`
//! ([`response_to_openai`]), each event of a stream zero or more
//! `chat.completion.chunk` events ([`StreamTranslator`]), ending with a
//! usage chunk (empty `choices`) and `data: [DONE]` once the upstream's body
//! ends after a finish; a Google error becomes an OpenAI error
//! ([`error_to_openai`]). Usage comes from `usageMetadata` at the top level
//! only: the prompt is `promptTokenCount` (cached tokens included, as
//! OpenAI counts them), the completion `candidatesTokenCount` plus
//! `thoughtsTokenCount` (Google bills thinking as output).
//!
//! Gemini's function calls carry no id in most answers, and a thinking
//! model's call carries a `thoughtSignature` that must come back with it
//! on the next turn. The tool call id the client sees holds both: `call_N`,
//! or `call_N~ts~SIGNATURE`, which the request translation splits again.

use bytes::{BufMut, BytesMut};
use simd_json::prelude::*;
use simd_json::BorrowedValue as Value;

use crate::anthropic::{
    comma, data_url, format_number, parse, result_object, system_text, text_of, write_arguments_object,
    write_stop_list, write_text_part, RequestInfo, TranslateError,
};
use crate::openai::write_json_string;
use crate::sse::{write_event, SseEvent, DONE_EVENT};

/// Candidates (OpenAI choices) one answer may carry. Real answers carry a
/// few (`n` is `candidateCount`, at most 8); the bound keeps a hostile
/// index from sizing a table.
pub const CANDIDATES_MAX: usize = 16;

/// Between a tool call's own id and the thought signature it carries.
const SIGNATURE_MARK: &str = "~ts~";

/// Token counts as Gemini reports them, in OpenAI's terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub prompt: u64,
    /// Answer tokens, thinking included.
    pub completion: u64,
    /// Prompt tokens read from the provider's cache.
    pub cached: u64,
    /// Thinking tokens, out of `completion`.
    pub reasoning: u64,
    /// Audio tokens, out of `prompt` (`promptTokensDetails` by modality),
    /// priced above text by the Flash models.
    pub audio: u64,
    /// A count was there but not a whole number: the report is set aside
    /// (found by a review: `"promptTokenCount": 90000.0` was read as 0,
    /// and believed).
    pub unreadable: bool,
    /// `promptTokenCount` was there. Without it the prompt is not the
    /// provider's to bill (it read as 0): the gateway counts it
    /// (`openai::Usage::prompt_unreported`).
    pub prompt_reported: bool,
}

impl Usage {
    /// `usageMetadata` at the top level of one answer or event.
    fn read(v: &Value<'_>) -> Option<Usage> {
        let u = v.get("usageMetadata")?;
        let unreadable = std::cell::Cell::new(false);
        let n = |k: &str| crate::openai::whole_count(u.get(k), &unreadable);
        let reasoning = n("thoughtsTokenCount");
        let audio = u
            .get("promptTokensDetails")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
            .filter(|d| d.get("modality").and_then(|m| m.as_str()) == Some("AUDIO"))
            .filter_map(|d| d.get("tokenCount").and_then(|v| v.as_u64()))
            .fold(0u64, u64::saturating_add);
        Some(Usage {
            prompt: n("promptTokenCount").saturating_add(n("toolUsePromptTokenCount")),
            completion: n("candidatesTokenCount").saturating_add(reasoning),
            cached: n("cachedContentTokenCount"),
            reasoning,
            audio,
            unreadable: unreadable.get(),
            prompt_reported: u.get("promptTokenCount").is_some_and(|v| !v.is_null()),
        })
    }

    /// Two reports of one stream, each count as the largest reported (a
    /// stream's counts only grow, so a later 0 lowers none), unreadable
    /// if either was.
    fn merge(self, newer: Usage) -> Usage {
        Usage {
            prompt: self.prompt.max(newer.prompt),
            completion: self.completion.max(newer.completion),
            cached: self.cached.max(newer.cached),
            reasoning: self.reasoning.max(newer.reasoning),
            audio: self.audio.max(newer.audio),
            unreadable: self.unreadable || newer.unreadable,
            prompt_reported: self.prompt_reported || newer.prompt_reported,
        }
    }

    /// The counts as chat's usage reads them (what [`Usage::write`]
    /// writes).
    /// An unreadable report's counts are past any believable one
    /// (`openai::USAGE_TOKENS_MAX`), so that it is set aside as a chat
    /// answer's would be.
    pub fn to_openai(&self) -> crate::openai::Usage {
        if self.unreadable {
            return crate::openai::Usage::unreadable();
        }
        // A prompt not reported is at least its shares (a floor the
        // gateway's count replaces where larger), as chat's reader holds it.
        let floor = if self.prompt_reported { 0 } else { self.cached.max(self.audio) };
        let u = crate::openai::Usage {
            prompt: self.prompt.max(floor),
            completion: self.completion,
            cached: self.cached,
            audio_prompt: self.audio,
            prompt_unreported: !self.prompt_reported,
            ..Default::default()
        };
        // The shares are held to a prompt reported; to one not reported
        // they are kept for the gateway's count of it (held to them then).
        if self.prompt_reported {
            u.held()
        } else {
            u
        }
    }

    fn write(&self, out: &mut BytesMut) {
        if self.unreadable {
            // Counts no reader believes (not whole numbers), as the
            // provider gave none: the gateway's reader sets them aside.
            out.extend_from_slice(crate::openai::UNREADABLE_USAGE);
            return;
        }
        let mut n = itoa::Buffer::new();
        out.extend_from_slice(b"{\"prompt_tokens\":");
        // Not reported is `null`, not 0: the gateway's reader then counts
        // the prompt itself, and the client is not told a count of 0.
        if self.prompt_reported {
            out.extend_from_slice(n.format(self.prompt).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
        out.extend_from_slice(b",\"completion_tokens\":");
        out.extend_from_slice(n.format(self.completion).as_bytes());
        out.extend_from_slice(b",\"total_tokens\":");
        out.extend_from_slice(n.format(self.prompt.saturating_add(self.completion)).as_bytes());
        // Shares of a prompt not reported are written as reported.
        let share = |n: u64| if self.prompt_reported { n.min(self.prompt) } else { n };
        out.extend_from_slice(b",\"prompt_tokens_details\":{\"cached_tokens\":");
        out.extend_from_slice(n.format(share(self.cached)).as_bytes());
        if self.audio > 0 {
            // Chat's name, which the gateway reads back to bill it.
            out.extend_from_slice(b",\"audio_tokens\":");
            out.extend_from_slice(n.format(share(self.audio)).as_bytes());
        }
        out.extend_from_slice(b"},\"completion_tokens_details\":{\"reasoning_tokens\":");
        out.extend_from_slice(n.format(self.reasoning.min(self.completion)).as_bytes());
        out.extend_from_slice(b"}}");
    }
}

/// The usage of a `generateContent` answer, or of a document holding its
/// top-level `usageMetadata` (`openai::TopMembers`' of an answer too large
/// to keep), as chat's usage reads it.
pub fn answer_usage(doc: &[u8]) -> Option<crate::openai::Usage> {
    let mut scratch = doc.to_vec();
    let v = parse(&mut scratch).ok()?;
    Usage::read(&v).map(|u| u.to_openai())
}

/// Writes the Gemini body for an OpenAI chat request. `scratch` holds a
/// copy of the OpenAI body (simd-json parses in place). The model is not
/// in the body: the caller puts it, and the stream switch, in the URL.
pub fn request_from_openai(scratch: &mut [u8], out: &mut BytesMut) -> Result<RequestInfo, TranslateError> {
    let v = parse(scratch)?;
    let messages =
        v.get("messages").and_then(|m| m.as_array()).ok_or(TranslateError::Unsupported("messages must be an array"))?;
    let stream = v.get("stream").and_then(|s| s.as_bool()).unwrap_or(false);
    let include_usage =
        v.get("stream_options").and_then(|o| o.get("include_usage")).and_then(|u| u.as_bool()).unwrap_or(false);

    out.extend_from_slice(b"{\"contents\":[");
    // The content being written: its role, and whether it has a part yet.
    let mut open: Option<(&str, bool)> = None;
    let mut contents = 0;
    for (position, m) in messages.iter().enumerate() {
        let role =
            m.get("role").and_then(|r| r.as_str()).ok_or(TranslateError::Unsupported("a message has no role"))?;
        let gemini_role = match role {
            "system" | "developer" => continue,
            "user" | "tool" => "user",
            "assistant" => "model",
            _ => return Err(TranslateError::Unsupported("message role must be system, user, assistant or tool")),
        };
        match open {
            Some((r, _)) if r == gemini_role => {}
            Some(_) => {
                out.extend_from_slice(b"]}");
                open = None;
            }
            None => {}
        }
        if open.is_none() {
            if contents > 0 {
                out.put_u8(b',');
            }
            contents += 1;
            out.extend_from_slice(b"{\"role\":\"");
            out.extend_from_slice(gemini_role.as_bytes());
            out.extend_from_slice(b"\",\"parts\":[");
            open = Some((gemini_role, false));
        }
        let Some((_, any)) = open.as_mut() else { continue };
        if role == "tool" {
            let id = m.get("tool_call_id").and_then(|i| i.as_str()).unwrap_or_default();
            let name = called(&messages[..position], id).ok_or(TranslateError::Unsupported(
                "a tool message's tool_call_id names no tool call of an earlier assistant message",
            ))?;
            comma(out, any);
            out.extend_from_slice(b"{\"functionResponse\":{\"name\":");
            write_json_string(out, name);
            out.extend_from_slice(b",\"response\":");
            let text = text_of(m.get("content"))?;
            // A result that is a JSON object goes as that object; any other
            // text as `{"content": text}` (Gemini wants an object).
            match result_object(&text) {
                Some(obj) => out.extend_from_slice(obj.as_bytes()),
                None => {
                    out.extend_from_slice(b"{\"content\":");
                    write_json_string(out, &text);
                    out.put_u8(b'}');
                }
            }
            out.extend_from_slice(b"}}");
            continue;
        }
        match m.get("content") {
            None => {}
            Some(c) if c.is_null() => {}
            Some(c) => match (c.as_str(), c.as_array()) {
                (Some(text), _) => {
                    if !text.is_empty() {
                        comma(out, any);
                        write_text_part(out, text);
                    }
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
            out.extend_from_slice(b"{\"functionCall\":{\"name\":");
            write_json_string(out, f.get("name").and_then(|n| n.as_str()).unwrap_or_default());
            out.extend_from_slice(b",\"args\":");
            write_arguments_object(out, f);
            out.put_u8(b'}');
            let id = call.get("id").and_then(|i| i.as_str()).unwrap_or_default();
            if let Some((_, signature)) = id.split_once(SIGNATURE_MARK) {
                out.extend_from_slice(b",\"thoughtSignature\":");
                write_json_string(out, signature);
            }
            out.put_u8(b'}');
        }
        // A turn with nothing in it (an assistant's empty answer) still
        // needs a part.
        // (Vertex AI refuses an empty text: one space.)
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
        out.extend_from_slice(b",\"systemInstruction\":{\"parts\":[");
        write_text_part(out, &system);
        out.extend_from_slice(b"]}");
    }

    if let Some(tools) = v.get("tools").and_then(|t| t.as_array()).filter(|t| !t.is_empty()) {
        out.extend_from_slice(b",\"tools\":[{\"functionDeclarations\":[");
        for (i, t) in tools.iter().enumerate() {
            let f = t.get("function").ok_or(TranslateError::Unsupported("tools must be of type function"))?;
            if i > 0 {
                out.put_u8(b',');
            }
            out.extend_from_slice(b"{\"name\":");
            write_json_string(out, f.get("name").and_then(|n| n.as_str()).unwrap_or_default());
            if let Some(d) = f.get("description").and_then(|d| d.as_str()) {
                out.extend_from_slice(b",\"description\":");
                write_json_string(out, d);
            }
            // JSON Schema as it came (`parametersJsonSchema`), rather than
            // `parameters`' OpenAPI subset, which refuses common keywords.
            if let Some(s) = f.get("parameters").filter(|s| s.is_object()) {
                out.extend_from_slice(b",\"parametersJsonSchema\":");
                out.extend_from_slice(s.encode().as_bytes());
            }
            out.put_u8(b'}');
        }
        out.extend_from_slice(b"]}]");
    }
    if let Some(choice) = v.get("tool_choice") {
        let name = choice.get("function").and_then(|f| f.get("name")).and_then(|n| n.as_str());
        let mode = match (choice.as_str(), name) {
            (Some("auto"), _) => Some("AUTO"),
            (Some("required"), _) | (None, Some(_)) => Some("ANY"),
            (Some("none"), _) => Some("NONE"),
            _ => None,
        };
        if let Some(mode) = mode {
            out.extend_from_slice(b",\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"");
            out.extend_from_slice(mode.as_bytes());
            out.put_u8(b'"');
            if let Some(name) = name {
                out.extend_from_slice(b",\"allowedFunctionNames\":[");
                write_json_string(out, name);
                out.put_u8(b']');
            }
            out.extend_from_slice(b"}}");
        }
    }
    write_generation_config(&v, out)?;
    out.put_u8(b'}');
    Ok(RequestInfo { stream, include_usage })
}

/// `generationConfig`, written only when the request sets one of its
/// fields.
fn write_generation_config(v: &Value<'_>, out: &mut BytesMut) -> Result<(), TranslateError> {
    let mut config = BytesMut::new();
    let mut field = |name: &str, value: &[u8]| {
        config.put_u8(if config.is_empty() { b'{' } else { b',' });
        config.put_u8(b'"');
        config.extend_from_slice(name.as_bytes());
        config.extend_from_slice(b"\":");
        config.extend_from_slice(value);
    };
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(x) = v.get(from).and_then(|x| x.cast_f64()) {
            field(to, format_number(x).as_bytes());
        }
    }
    let max = v
        .get("max_completion_tokens")
        .and_then(|m| m.as_u64())
        .or_else(|| v.get("max_tokens").and_then(|m| m.as_u64()));
    for (to, n) in [("maxOutputTokens", max), ("candidateCount", v.get("n").and_then(|n| n.as_u64()))] {
        if let Some(n) = n {
            field(to, itoa::Buffer::new().format(n).as_bytes());
        }
    }
    if let Some(seed) = v.get("seed").and_then(|s| s.as_i64()) {
        field("seed", itoa::Buffer::new().format(seed).as_bytes());
    }
    if let Some(stop) = v.get("stop").filter(|s| !s.is_null()) {
        let mut list = BytesMut::new();
        write_stop_list(stop, &mut list)?;
        field("stopSequences", &list);
    }
    if let Some(format) = v.get("response_format") {
        match format.get("type").and_then(|t| t.as_str()) {
            Some("json_object") => field("responseMimeType", b"\"application/json\""),
            Some("json_schema") => {
                field("responseMimeType", b"\"application/json\"");
                if let Some(schema) = format.get("json_schema").and_then(|s| s.get("schema")).filter(|s| s.is_object())
                {
                    field("responseJsonSchema", schema.encode().as_bytes());
                }
            }
            Some("text") | None => {}
            Some(_) => {
                return Err(TranslateError::Unsupported(
                    "response_format type must be text, json_object or json_schema",
                ))
            }
        }
    }
    if !config.is_empty() {
        config.put_u8(b'}');
        out.extend_from_slice(b",\"generationConfig\":");
        out.extend_from_slice(&config);
    }
    Ok(())
}

/// The function name of the tool call `id` answers: the latest one before
/// it (a model that gives no ids gets `call_0`, `call_1` ... anew each
/// turn, so an id can repeat across turns).
fn called<'v>(messages: &'v [Value<'v>], id: &str) -> Option<&'v str> {
    messages
        .iter()
        .rev()
        .filter(|m| m.get("role").and_then(|r| r.as_str()) == Some("assistant"))
        .flat_map(|m| m.get("tool_calls").and_then(|t| t.as_array()).into_iter().flat_map(|c| c.iter()))
        .find(|c| c.get("id").and_then(|i| i.as_str()) == Some(id))
        .and_then(|c| c.get("function")?.get("name")?.as_str())
}

/// The media types an `image_url` may carry to Gemini (its supported
/// image formats).
const IMAGE_TYPES: &[&str] =
    &["image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp", "image/heic", "image/heif"];

/// Audio formats Gemini takes, as OpenAI's `input_audio.format` names them.
const AUDIO_FORMATS: &[&str] = &["wav", "mp3", "aiff", "aac", "ogg", "flac"];

/// One OpenAI content part as a Gemini part.
fn write_part(part: &Value<'_>, out: &mut BytesMut) -> Result<(), TranslateError> {
    match part.get("type").and_then(|t| t.as_str()).unwrap_or("text") {
        "text" => write_text_part(out, part.get("text").and_then(|t| t.as_str()).unwrap_or_default()),
        "image_url" => {
            let url = part
                .get("image_url")
                .and_then(|i| i.get("url").or(Some(i)))
                .and_then(|u| u.as_str())
                .ok_or(TranslateError::Unsupported("image_url needs a url"))?;
            match data_url(url) {
                // Images only: the guardrails pass a `data:` URL over as a
                // file, so one typed `text/plain` or `application/pdf`
                // would reach Gemini, which reads it, unscanned.
                Some((media, data)) if IMAGE_TYPES.contains(&media) => write_inline(out, media, data),
                Some(_) => {
                    return Err(TranslateError::Unsupported(
                        "an image_url's data: URL must be an image (png, jpeg, gif, webp, heic or heif)",
                    ))
                }
                None => {
                    out.extend_from_slice(b"{\"fileData\":{\"fileUri\":");
                    write_json_string(out, url);
                    out.extend_from_slice(b"}}");
                }
            }
        }
        "input_audio" => {
            let audio = part.get("input_audio");
            let data = audio
                .and_then(|a| a.get("data"))
                .and_then(|d| d.as_str())
                .ok_or(TranslateError::Unsupported("input_audio needs data"))?;
            let format = audio.and_then(|a| a.get("format")).and_then(|f| f.as_str()).unwrap_or("wav");
            // A format of the tenant's choosing would be any media type.
            if !AUDIO_FORMATS.contains(&format) {
                return Err(TranslateError::Unsupported(
                    "input_audio's format must be wav, mp3, aiff, aac, ogg or flac",
                ));
            }
            write_inline(out, &format!("audio/{format}"), data);
        }
        _ => return Err(TranslateError::Unsupported("content parts must be text, image_url or input_audio")),
    }
    Ok(())
}

fn write_inline(out: &mut BytesMut, mime: &str, data: &str) {
    out.extend_from_slice(b"{\"inlineData\":{\"mimeType\":");
    write_json_string(out, mime);
    out.extend_from_slice(b",\"data\":");
    write_json_string(out, data);
    out.extend_from_slice(b"}}");
}

/// OpenAI's `finish_reason` for a Gemini `finishReason`; a stop after a
/// function call is OpenAI's `tool_calls`.
pub fn finish_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => "content_filter",
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// A candidate's index, bounded by [`CANDIDATES_MAX`].
fn candidate_index(c: &Value<'_>, position: usize) -> Result<usize, TranslateError> {
    match c.get("index").and_then(|i| i.as_u64()).map_or(position, |i| i as usize) {
        i if i < CANDIDATES_MAX => Ok(i),
        _ => Err(TranslateError::Unsupported("candidate index out of range")),
    }
}

/// What a candidate's part says to an OpenAI client.
enum Part<'a, 'v> {
    /// Answer text.
    Text(&'a str),
    /// A part holding a `functionCall` (and maybe its `thoughtSignature`).
    Call(&'a Value<'v>),
}

/// The parts of a candidate, in order: its answer text (thought summaries
/// left out: they are not the answer), and each function call.
fn read_parts<'a, 'v>(c: &'a Value<'v>, mut f: impl FnMut(Part<'a, 'v>)) {
    let parts = c.get("content").and_then(|c| c.get("parts")).and_then(|p| p.as_array());
    for p in parts.into_iter().flat_map(|p| p.iter()) {
        if p.get("thought").and_then(|t| t.as_bool()) == Some(true) {
            continue;
        }
        if let Some(t) = p.get("text").and_then(|t| t.as_str()) {
            f(Part::Text(t));
        }
        if p.get("functionCall").is_some_and(|f| f.is_object()) {
            f(Part::Call(p));
        }
    }
}

/// Writes one function call part as an OpenAI tool call (without its
/// `index`): `id`, `type`, `function` with the arguments as a JSON string.
fn write_call(part: &Value<'_>, n: usize, out: &mut BytesMut) {
    let f = part.get("functionCall");
    let mut id = match f.and_then(|f| f.get("id")).and_then(|i| i.as_str()) {
        Some(own) => own.to_string(),
        None => format!("call_{n}"),
    };
    if let Some(sig) = part.get("thoughtSignature").and_then(|s| s.as_str()) {
        id.push_str(SIGNATURE_MARK);
        id.push_str(sig);
    }
    out.extend_from_slice(b"\"id\":");
    write_json_string(out, &id);
    out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
    write_json_string(out, f.and_then(|f| f.get("name")).and_then(|n| n.as_str()).unwrap_or_default());
    out.extend_from_slice(b",\"arguments\":");
    let args = f.and_then(|f| f.get("args")).filter(|a| a.is_object()).map_or_else(|| "{}".to_string(), |a| a.encode());
    write_json_string(out, &args);
    out.put_u8(b'}');
}

/// Writes the `chat.completion` for a Gemini answer, and returns its usage
/// (`None` when it reported none).
pub fn response_to_openai(
    scratch: &mut [u8],
    model: &str,
    created: u64,
    out: &mut BytesMut,
) -> Result<Option<Usage>, TranslateError> {
    let v = parse(scratch)?;
    if !v.is_object() {
        return Err(TranslateError::Unsupported("a Gemini answer must be a JSON object"));
    }
    let usage = Usage::read(&v);
    out.extend_from_slice(b"{\"id\":");
    write_json_string(out, v.get("responseId").and_then(|i| i.as_str()).unwrap_or("gemini"));
    out.extend_from_slice(b",\"object\":\"chat.completion\",\"created\":");
    out.extend_from_slice(itoa::Buffer::new().format(created).as_bytes());
    out.extend_from_slice(b",\"model\":");
    write_json_string(out, v.get("modelVersion").and_then(|m| m.as_str()).unwrap_or(model));
    out.extend_from_slice(b",\"choices\":[");
    let candidates = v.get("candidates").and_then(|c| c.as_array()).map_or(&[][..], |c| &c[..]);
    let mut seen = [false; CANDIDATES_MAX];
    for (position, c) in candidates.iter().enumerate() {
        let index = candidate_index(c, position)?;
        if std::mem::replace(&mut seen[index], true) {
            return Err(TranslateError::Unsupported("two candidates share an index"));
        }
        if position > 0 {
            out.put_u8(b',');
        }
        let mut text = String::new();
        let mut calls = BytesMut::new();
        let mut n_calls = 0;
        read_parts(c, |part| match part {
            Part::Text(t) => text.push_str(t),
            Part::Call(p) => {
                if n_calls > 0 {
                    calls.put_u8(b',');
                }
                calls.put_u8(b'{');
                write_call(p, n_calls, &mut calls);
                calls.put_u8(b'}');
                n_calls += 1;
            }
        });
        out.extend_from_slice(b"{\"index\":");
        out.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
        out.extend_from_slice(b",\"message\":{\"role\":\"assistant\",\"content\":");
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
        let reason = c.get("finishReason").and_then(|r| r.as_str()).unwrap_or("STOP");
        write_json_string(out, finish_reason(reason, n_calls > 0));
        out.put_u8(b'}');
    }
    if candidates.is_empty() {
        // A prompt Google blocked (`promptFeedback.blockReason`): no
        // candidate, which OpenAI's clients read as a filtered answer.
        out.extend_from_slice(
            b"{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null},\"finish_reason\":\"content_filter\"}",
        );
    }
    out.put_u8(b']');
    if let Some(u) = usage {
        out.extend_from_slice(b",\"usage\":");
        u.write(out);
    }
    out.put_u8(b'}');
    Ok(usage)
}

/// The reasons Google's `ErrorInfo` gives for a key it refuses: the key
/// the gateway sends, never a tenant's (Google answers an invalid or
/// expired API key with 400 `INVALID_ARGUMENT`, not 401).
const KEY_REFUSED: &[&str] = &[
    "API_KEY_INVALID",
    "API_KEY_EXPIRED",
    "API_KEY_SERVICE_BLOCKED",
    "API_KEY_HTTP_REFERRER_BLOCKED",
    "API_KEY_IP_ADDRESS_BLOCKED",
    "API_KEY_ANDROID_APP_BLOCKED",
    "API_KEY_IOS_APP_BLOCKED",
];

/// Writes an OpenAI error body for a Google error body (`{"error": {code,
/// message, status, details}}`, alone or as the one element of an array),
/// or for any body that is not one, quoting the status. Returns whether
/// Google refused the API key (a detail, its `ErrorInfo`, whose `reason` is one
/// of [`KEY_REFUSED`]): the gateway's own credential, whose refusal is not
/// the tenant's to see (found by a review: it reached tenants as a 400
/// about "your" key).
pub fn error_to_openai(scratch: &mut [u8], status: u16, out: &mut BytesMut) -> bool {
    let (message, google, key_refused) = match parse(scratch) {
        Ok(v) => {
            let e = v.as_array().and_then(|a| a.first()).unwrap_or(&v).get("error");
            let key_refused = e.and_then(|e| e.get("details")).and_then(|d| d.as_array()).is_some_and(|d| {
                d.iter().any(|x| x.get("reason").and_then(|r| r.as_str()).is_some_and(|r| KEY_REFUSED.contains(&r)))
            });
            (
                e.and_then(|e| e.get("message")).and_then(|m| m.as_str()).map(str::to_string),
                e.and_then(|e| e.get("status")).and_then(|t| t.as_str()).map(str::to_string),
                key_refused,
            )
        }
        Err(_) => (None, None, false),
    };
    let message = message.unwrap_or_else(|| format!("upstream answered {status}"));
    let kind = match google.as_deref() {
        Some("INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE") => "invalid_request_error",
        Some("UNAUTHENTICATED") => "authentication_error",
        Some("PERMISSION_DENIED") => "permission_error",
        Some("NOT_FOUND") => "not_found_error",
        Some("RESOURCE_EXHAUSTED") => "rate_limit_error",
        _ => "api_error",
    };
    let code = google.as_deref().unwrap_or(kind).to_ascii_lowercase();
    crate::openai::write_error_body(out, &message, kind, &code);
    key_refused
}

/// Turns a Gemini event stream into OpenAI `chat.completion.chunk` events,
/// one event at a time, holding only the ids and counts it needs.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    usage: Option<Usage>,
    /// Per candidate: whether its first chunk (with the role) went out, and
    /// how many tool calls it has made.
    started: [bool; CANDIDATES_MAX],
    calls: [u32; CANDIDATES_MAX],
    /// A candidate finished: a body that ends after this is a whole answer.
    finish_seen: bool,
    finished: bool,
}

impl StreamTranslator {
    pub fn new(model: &str, created: u64) -> StreamTranslator {
        StreamTranslator { model: model.to_string(), created, id: "gemini".to_string(), ..StreamTranslator::default() }
    }

    /// The usage reported, each count the largest of the events'.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether the stream has ended (`[DONE]` written).
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Translates one Gemini event into zero or more OpenAI events
    /// appended to `out`.
    pub fn event(&mut self, ev: &SseEvent, out: &mut BytesMut) -> Result<(), TranslateError> {
        if self.finished {
            return Ok(());
        }
        let mut scratch = ev.data.to_vec();
        let v = parse(&mut scratch)?;
        if v.get("error").is_some() {
            let mut scratch = ev.data.to_vec();
            let mut body = BytesMut::new();
            error_to_openai(&mut scratch, 500, &mut body);
            write_event(out, None, &body);
            self.finished = true;
            out.extend_from_slice(DONE_EVENT);
            return Ok(());
        }
        if !v.is_object() {
            return Err(TranslateError::Unsupported("a Gemini stream event must be a JSON object"));
        }
        if let Some(u) = Usage::read(&v) {
            self.usage = Some(self.usage.map_or(u, |old| old.merge(u)));
        }
        if let Some(id) = v.get("responseId").and_then(|i| i.as_str()) {
            id.clone_into(&mut self.id);
        }
        if let Some(m) = v.get("modelVersion").and_then(|i| i.as_str()) {
            m.clone_into(&mut self.model);
        }
        let candidates = v.get("candidates").and_then(|c| c.as_array()).map_or(&[][..], |c| &c[..]);
        if candidates.is_empty() && v.get("promptFeedback").and_then(|f| f.get("blockReason")).is_some() {
            self.chunk(out, 0, |o| o.extend_from_slice(b"{}"), Some("content_filter"));
            self.finish_seen = true;
        }
        for (position, c) in candidates.iter().enumerate() {
            let index = candidate_index(c, position)?;
            let mut deltas: Vec<BytesMut> = Vec::new();
            read_parts(c, |part| match part {
                Part::Text("") => {}
                Part::Text(t) => {
                    let mut d = BytesMut::new();
                    d.extend_from_slice(b"\"content\":");
                    write_json_string(&mut d, t);
                    deltas.push(d);
                }
                Part::Call(p) => {
                    let n = self.calls[index];
                    self.calls[index] += 1;
                    let mut d = BytesMut::new();
                    d.extend_from_slice(b"\"tool_calls\":[{\"index\":");
                    d.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                    d.put_u8(b',');
                    write_call(p, n as usize, &mut d);
                    d.extend_from_slice(b"}]");
                    deltas.push(d);
                }
            });
            for d in deltas {
                let first = !std::mem::replace(&mut self.started[index], true);
                self.chunk(
                    out,
                    index,
                    |o| {
                        o.put_u8(b'{');
                        if first {
                            o.extend_from_slice(b"\"role\":\"assistant\",");
                        }
                        o.extend_from_slice(&d);
                        o.put_u8(b'}');
                    },
                    None,
                );
            }
            if let Some(reason) = c.get("finishReason").and_then(|r| r.as_str()) {
                let reason = finish_reason(reason, self.calls[index] > 0);
                self.chunk(out, index, |o| o.extend_from_slice(b"{}"), Some(reason));
                self.finish_seen = true;
            }
        }
        Ok(())
    }

    /// The upstream's body ended: the usage chunk (always: the gateway
    /// bills from it, and keeps it from a client that did not ask), then
    /// `[DONE]` if a candidate finished. A body that ended before any
    /// finish is a broken answer, and gets no `[DONE]`.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Some(u) = self.usage {
            crate::openai::write_usage_chunk(out, (&self.id, self.created, &self.model), |d| u.write(d));
        }
        if self.finish_seen {
            out.extend_from_slice(DONE_EVENT);
        }
    }

    fn chunk(&self, out: &mut BytesMut, index: usize, delta: impl FnOnce(&mut BytesMut), finish: Option<&str>) {
        crate::openai::write_chunk(out, (&self.id, self.created, &self.model), index, delta, finish);
    }
}

#[cfg(test)]
mod tests;
