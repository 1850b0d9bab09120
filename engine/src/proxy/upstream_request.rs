//! The upstream request of one attempt, as slices: a rendered head, then
//! the body borrowed from the client's read buffer with a few spans
//! replaced (the model, when the target names it differently, a
//! `stream_options` that declines usage, output limits above a request
//! ceiling), or translated whole for a provider of the other API (from
//! the body with its output limits lowered).

use bytes::Bytes;
use tollgate_protocol::http1::RequestHead;
use tollgate_protocol::span::Span;

use crate::respond::Client;
use crate::upstream::Upstream;
use bytes::BytesMut;
use tollgate_policy::{ProviderKind, Target};
use tollgate_protocol::anthropic;
use tollgate_protocol::openai::{self, ChatRequestFields};
use tollgate_protocol::responses;

use crate::error::GatewayError;

/// An upstream request as at most nine slices, held inline so that
/// building it allocates nothing beyond the rendered header lines: the
/// request line, the fixed headers, the rendered head (with what the body
/// adds at its opening brace), and the body's pieces around at most three
/// spans replaced (more are rare, and copied whole).
pub struct Parts {
    slices: [Bytes; 10],
    len: usize,
    /// The gateway asked for a stream's usage chunk that the client did not
    /// ask for: the relay must read it and keep it from the client.
    pub usage_asked: bool,
    /// The upstream speaks an API whose answers become chat completions
    /// before anything else reads them.
    pub through: Option<ChatFrom>,
}

/// An upstream API reached through chat completions: requests are made
/// chat first (from Messages or Responses) and then this API; answers this
/// API first and then chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatFrom {
    Gemini,
    Bedrock,
}

impl Parts {
    fn push(&mut self, b: Bytes) {
        self.slices[self.len] = b;
        self.len += 1;
    }

    pub fn as_slice(&self) -> &[Bytes] {
        &self.slices[..self.len]
    }
}

/// Where one attempt goes, and the output limit its request carries.
#[derive(Clone, Copy)]
pub struct Attempt<'a> {
    pub target: &'a Target,
    pub upstream: &'a Upstream,
    /// The most the provider may generate (the request's ceilings:
    /// `forward::output_cap`).
    pub cap: Option<u64>,
}

/// A body's edit: (start, end, what replaces that span).
type Edit = (usize, usize, With);

/// What replaces a span of the body.
#[derive(Default)]
enum With {
    #[default]
    Nothing,
    Bytes(Bytes),
    /// An output limit a ceiling writes, rendered once the head is (in the
    /// connection's header memory, after it, so that the head's room is
    /// not taken).
    Cap(CapEdit),
}

/// One output limit a ceiling writes ([`cap_edits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CapEdit {
    /// `"name":cap,` added after the body's opening brace.
    Added(&'static [u8]),
    /// The value of a limit the body gives, replaced by the cap.
    Value,
    /// The value of an enabled `thinking.budget_tokens` at or above the
    /// cap, replaced by the cap less one (Anthropic wants `max_tokens`
    /// above the thinking budget).
    Budget,
}

/// The texts a ceiling's edits write, rendered once, on the stack: the
/// cap, the budget under it, and the one limit added (at most 45 bytes).
struct CapTexts {
    buf: [u8; 96],
    cap: (usize, usize),
    budget: (usize, usize),
    added: (usize, usize),
}

impl CapTexts {
    fn new(cap: u64, edits: &[(usize, usize, CapEdit)]) -> CapTexts {
        let mut t = CapTexts { buf: [0; 96], cap: (0, 0), budget: (0, 0), added: (0, 0) };
        let mut n = 0;
        // Writes `bytes` on, and says where they went.
        let mut put = |buf: &mut [u8; 96], bytes: &[u8]| {
            buf[n..n + bytes.len()].copy_from_slice(bytes);
            n += bytes.len();
            (n - bytes.len(), n)
        };
        let mut digits = itoa::Buffer::new();
        let cap_digits = digits.format(cap).as_bytes();
        // The added limit's text, its number the cap's own digits.
        if let Some(&(_, _, CapEdit::Added(name))) = edits.iter().find(|e| matches!(e.2, CapEdit::Added(_))) {
            let from = put(&mut t.buf, b"\"").0;
            put(&mut t.buf, name);
            put(&mut t.buf, b"\":");
            t.cap = put(&mut t.buf, cap_digits);
            t.added = (from, put(&mut t.buf, b",").1);
        } else {
            t.cap = put(&mut t.buf, cap_digits);
        }
        let mut digits = itoa::Buffer::new();
        t.budget = put(&mut t.buf, digits.format(cap.saturating_sub(1)).as_bytes());
        t
    }

    /// The text `edit` writes.
    fn of(&self, edit: CapEdit) -> &[u8] {
        let (from, to) = match edit {
            CapEdit::Added(_) => self.added,
            CapEdit::Value => self.cap,
            CapEdit::Budget => self.budget,
        };
        &self.buf[from..to]
    }
}

/// A ceiling's edits of a body, in order: (start, end, what is written).
type CapEdits = [(usize, usize, CapEdit); 4];

/// The least thinking budget Anthropic takes.
const THINKING_BUDGET_MIN: u64 = 1024;

/// The edits that hold a body's output limits to `cap`, at most four, in
/// order: each of `max_tokens`, `max_completion_tokens` and
/// `max_output_tokens` the body gives above the cap (or `null`) is lowered
/// to it, and where the body gives none that its API reads, one is added
/// after its opening brace: a chat body's `max_completion_tokens` for a
/// model that `reasons`, or one at OpenAI itself (OpenAI's reasoning models
/// refuse `max_tokens`), otherwise
/// `max_tokens` (which every OpenAI-style server reads), a Messages body's
/// `max_tokens`, a Responses body's `max_output_tokens`. An enabled
/// `thinking.budget_tokens` at or above the cap is lowered under it; where
/// no budget Anthropic takes fits (the cap at most 1,024), the request is
/// refused, naming both. A translation reads the body so edited, and
/// writes the limit in its provider's terms.
fn cap_edits(
    body: &[u8],
    fields: &ChatRequestFields,
    front: Front,
    cap: u64,
    reasons: bool,
    to_anthropic_as_is: bool,
) -> Result<(CapEdits, usize), GatewayError> {
    let mut edits = [(0, 0, CapEdit::Value); 4];
    let mut n = 0;
    let Some(LimitNames { reads, name, own }) = limit_names(fields, front, reasons) else {
        // Neither generates.
        return Ok((edits, n));
    };
    let number = |span: Span| limit_value(body, span);
    for span in fields.max_tokens_at.into_iter().flatten() {
        if number(span).is_some_and(|given| given > cap) {
            edits[n] = (span.start as usize, span.end as usize, CapEdit::Value);
            n += 1;
        }
    }
    // Where no limit the API reads is a number, the cap is written under
    // `name`: over its `null` if given (a second key of that name would
    // leave the provider to pick one), else added after the opening
    // brace. A `null` beside a number stays (the number is the limit), and
    // so does one of the other name (`null` is no limit).
    if !reads.iter().flatten().any(|&s| number(s).is_some()) {
        edits[n] = match own {
            Some(null) => (null.start as usize, null.end as usize, CapEdit::Value),
            None => (after_brace(body), after_brace(body), CapEdit::Added(name)),
        };
        n += 1;
    }
    if let Some(span) = fields.thinking_budget {
        // (Not a number: the provider's to refuse, but lowered first.)
        let budget = number(span).unwrap_or(u64::MAX);
        if budget >= cap && cap > THINKING_BUDGET_MIN {
            edits[n] = (span.start as usize, span.end as usize, CapEdit::Budget);
            n += 1;
        } else if budget >= cap && to_anthropic_as_is {
            // Only where the body goes to Anthropic as it came: a
            // translation leaves thinking out.
            return Err(GatewayError::ThinkingOverCeiling { budget, cap });
        }
    }
    edits[..n].sort_by_key(|e| e.0);
    Ok((edits, n))
}

/// The output limits a client's API reads, and the name a cap is written
/// under where none of them is a number (with that name's span, where the
/// body gives it): chat reads `max_tokens` and `max_completion_tokens`
/// (the cap goes under the second for a model that reasons), Anthropic's
/// messages and the legacy completions `max_tokens`, Responses
/// `max_output_tokens`.
struct LimitNames {
    reads: [Option<Span>; 2],
    name: &'static [u8],
    own: Option<Span>,
}

/// The [`LimitNames`] of `front` in `fields`; `None` for the APIs that
/// generate nothing.
fn limit_names(fields: &ChatRequestFields, front: Front, reasons: bool) -> Option<LimitNames> {
    let [max_tokens, max_completion_tokens, max_output_tokens] = fields.max_tokens_at;
    let (reads, name, own): ([Option<Span>; 2], &'static [u8], Option<Span>) = match front {
        Front::OpenAi if reasons => {
            ([max_tokens, max_completion_tokens], b"max_completion_tokens", max_completion_tokens)
        }
        Front::OpenAi => ([max_tokens, max_completion_tokens], b"max_tokens", max_tokens),
        Front::Anthropic | Front::Completions => ([max_tokens, None], b"max_tokens", max_tokens),
        Front::Responses => ([max_output_tokens, None], b"max_output_tokens", max_output_tokens),
        Front::Embeddings | Front::CountTokens => return None,
    };
    Some(LimitNames { reads, name, own })
}

/// A limit's number: `None` for `null` (the scan let nothing else but
/// digits through; past u64, the most).
fn limit_value(body: &[u8], span: Span) -> Option<u64> {
    match span.get(body) {
        b"null" => None,
        v => Some(std::str::from_utf8(v).ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX)),
    }
}

/// The output limit the client's API reads in `body`: the most of the
/// numbers under the names it reads ([`LimitNames`]); `None` where none is
/// a number, and for the APIs that generate nothing. A limit under another
/// API's name is not one: a chat request's `max_output_tokens: 1` is left
/// out by the Anthropic translation (which writes its 4,096) and by
/// servers that ignore unknown keys (found by a review: a strict budget's
/// hold was made at 1 token).
pub fn limit_read(body: &[u8], fields: &ChatRequestFields, front: Front) -> Option<u64> {
    let names = limit_names(fields, front, false)?;
    names.reads.into_iter().flatten().filter_map(|span| limit_value(body, span)).max()
}

/// Where a member added to `body` goes: right after its opening brace
/// (the body scanned as an object).
fn after_brace(body: &[u8]) -> usize {
    body.iter().position(|&b| b == b'{').map_or(0, |p| p + 1)
}

/// `body` from `at` on, with `edits` (in order, apart, from `at` on)
/// applied: (start, end, what replaces that span).
fn splice<'t>(body: &[u8], mut at: usize, edits: impl IntoIterator<Item = (usize, usize, &'t [u8])>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() - at + 64);
    for (start, end, with) in edits {
        out.extend_from_slice(&body[at..start]);
        out.extend_from_slice(with);
        at = end;
    }
    out.extend_from_slice(&body[at..]);
    out
}

/// `body` with a ceiling's `edits` applied: the copy a translation reads.
fn edited(body: &[u8], edits: &[(usize, usize, CapEdit)], texts: &CapTexts) -> Vec<u8> {
    splice(body, 0, edits.iter().map(|&(start, end, cap)| (start, end, texts.of(cap))))
}

/// Phase 3: the upstream request as slices: a rendered head, then the body
/// borrowed from the client's read buffer with a few spans replaced.
pub fn build(
    client: &mut Client,
    head: &RequestHead,
    body: &Bytes,
    fields: &ChatRequestFields,
    attempt: Attempt<'_>,
    front: Front,
    traceparent: Option<&[u8]>,
) -> Result<(Parts, Translation), GatewayError> {
    let Attempt { target, upstream, cap } = attempt;
    // OpenAI's reasoning models refuse `max_tokens`, and OpenAI itself
    // takes `max_completion_tokens` for every model; other servers may
    // know only `max_tokens`.
    let at_openai = upstream.kind == ProviderKind::OpenAi;
    // A translation to chat writes the client's own limit by that name at
    // OpenAI, and where a ceiling's is written (other servers may read
    // only `max_tokens`: a limit of a request without a ceiling keeps it).
    let renamed = at_openai || (cap.is_some() && target.reasons);
    let (caps, n_caps) = match cap {
        Some(c) => {
            let as_is = front == Front::Anthropic && upstream.kind == ProviderKind::Anthropic;
            cap_edits(body, fields, front, c, target.reasons || at_openai, as_is)?
        }
        None => ([(0, 0, CapEdit::Value); 4], 0),
    };
    let caps = &caps[..n_caps];
    let texts = CapTexts::new(cap.unwrap_or(0), caps);
    // A body in the target's own format goes as it came, with at most the
    // model span replaced; across formats it is translated.
    let translate = |f: Translator<'_>| {
        let mut scratch = edited(body, caps, &texts);
        let mut out = BytesMut::with_capacity(body.len() + 256);
        let info =
            f(&mut scratch, &target.upstream_model, &mut out).map_err(|e| GatewayError::Translate(e.message()))?;
        Ok::<_, GatewayError>((out.freeze(), info))
    };
    // A background run finishes after the answer, at the provider, where
    // the gateway can neither count, guard nor bill it.
    if front == Front::Responses && fields.background {
        return Err(GatewayError::Translate(
            "`background: true` runs finish after the answer, where the gateway cannot guard or bill them; run in the foreground (stream a long answer)",
        ));
    }
    if matches!(upstream.kind, ProviderKind::Gemini | ProviderKind::Bedrock) {
        let capped;
        let body: &[u8] = if caps.is_empty() {
            body
        } else {
            capped = edited(body, caps, &texts);
            &capped
        };
        return build_through_chat(client, head, body, fields, target, upstream, front, traceparent);
    }
    let anthropic_target = upstream.kind == ProviderKind::Anthropic;
    let (translated, translation) = match (front, anthropic_target) {
        (Front::OpenAi, true) => {
            let marks = upstream.prompt_cache_marks;
            let (b, info) = translate(&|s, m, o| anthropic::request_from_openai_marked(s, m, marks, o))?;
            (Some(b), Translation::ToOpenAi(info))
        }
        (Front::Anthropic, false) => {
            let (b, info) = translate(&|s, m, o| anthropic::front::request_to_openai_for(s, m, renamed, o))?;
            (Some(b), Translation::ToAnthropic(info))
        }
        (Front::Completions, true) => {
            return Err(GatewayError::Translate(
                "legacy completions (POST /v1/completions) go to OpenAI-style providers only, and this model's target is an Anthropic provider",
            ))
        }
        // The Responses API goes as it is to a provider that serves it
        // (OpenAI and the mock by default, `responses_api` for others);
        // the rest get chat completions (Anthropic's through chat).
        (Front::Embeddings, true) => {
            return Err(GatewayError::Translate(
                "embeddings (POST /v1/embeddings) go to OpenAI-style providers, and this model's target is an Anthropic provider, which has no embeddings API",
            ))
        }
        (Front::Responses, true) => {
            let (b, _) = translate(&responses::chat::request_to_anthropic)?;
            (Some(b), Translation::ToResponses(ResponsesFrom::Anthropic))
        }
        (Front::Responses, false) if !upstream.responses_api => {
            let ask_usage = upstream.stream_usage;
            let (b, _) = translate(&|s, m, o| responses::chat::request_to_chat_for(s, m, ask_usage, renamed, o))?;
            (Some(b), Translation::ToResponses(ResponsesFrom::Chat))
        }
        _ => (None, Translation::None),
    };
    let model = fields.model;
    let replace = translated.is_none() && model.get(body) != target.upstream_model.as_bytes();
    // Every stream is billed from the provider's counts: the gateway asks
    // for them whatever the client said (`include_usage` false, `null`,
    // `{}`), replacing the client's `stream_options` or adding one right
    // after the body's opening brace (the body scanned as an object).
    // (A Responses stream always ends with its usage, and the API has no
    // `include_usage`.)
    let ask_usage = translated.is_none()
        && front != Front::Responses
        && upstream.stream_usage
        && fields.stream
        && !fields.include_usage;
    // The body's edits, in order: (start, end, what replaces that span).
    let mut edits: [Edit; 6] = Default::default();
    let mut n_edits = 0;
    for &(start, end, cap) in caps.iter().filter(|_| translated.is_none()) {
        edits[n_edits] = (start, end, With::Cap(cap));
        n_edits += 1;
    }
    if ask_usage {
        edits[n_edits] = match fields.stream_options {
            Some(span) => {
                (span.start as usize, span.end as usize, With::Bytes(Bytes::from_static(openai::USAGE_OPTIONS)))
            }
            None => (after_brace(body), after_brace(body), With::Bytes(Bytes::from_static(openai::ASK_FOR_USAGE))),
        };
        n_edits += 1;
    }
    if replace {
        let name = Bytes::copy_from_slice(target.upstream_model.as_bytes());
        edits[n_edits] = (model.start as usize, model.end as usize, With::Bytes(name));
        n_edits += 1;
    }
    let edits = &mut edits[..n_edits];
    // Stable: an added limit goes before the usage asked at the same brace.
    edits.sort_by_key(|e| e.0);
    // The text an edit writes.
    fn text_of<'x>(with: &'x With, texts: &'x CapTexts) -> &'x [u8] {
        match with {
            With::Nothing => b"",
            With::Bytes(b) => b,
            With::Cap(cap) => texts.of(*cap),
        }
    }
    let body_len = match &translated {
        Some(t) => t.len(),
        None => {
            edits.iter().fold(body.len(), |len, (start, end, with)| len - (end - start) + text_of(with, &texts).len())
        }
    };
    write_headers(client, head, upstream, body_len, traceparent);
    let mut parts = Parts { slices: Default::default(), len: 0, usage_asked: ask_usage, through: None };
    parts.push(match front {
        Front::Completions => upstream.completions_request_line.clone(),
        Front::Embeddings => upstream.embeddings_request_line.clone(),
        Front::CountTokens => upstream.count_tokens_request_line.clone(),
        Front::Responses if translated.is_none() => upstream.responses_request_line.clone(),
        Front::Responses => upstream.chat_request_line.clone(),
        Front::OpenAi | Front::Anthropic => upstream.chat_request_line.clone(),
    });
    parts.push(upstream.fixed_headers.clone());
    if let Some(t) = translated {
        parts.push(client.scratch.split().freeze());
        parts.push(t);
        return Ok((parts, translation));
    }
    // What is added at the opening brace (an output limit, the usage
    // asked) goes out with the head, the body up to the brace before it:
    // no slices of its own.
    let lead = edits.iter().take_while(|e| e.0 == e.1).count();
    let mut at = 0;
    for (start, _, with) in &edits[..lead] {
        client.scratch.extend_from_slice(&body[at..*start]);
        client.scratch.extend_from_slice(text_of(with, &texts));
        at = *start;
    }
    parts.push(client.scratch.split().freeze());
    let rest = &mut edits[lead..];
    if 2 * rest.len() + 1 > parts.slices.len() - parts.len {
        // More spans to replace than slices (a body that gives its output
        // limit under several names above a ceiling, and more): the body
        // goes as one piece, copied.
        let whole = splice(body, at, rest.iter().map(|(start, end, with)| (*start, *end, text_of(with, &texts))));
        parts.push(Bytes::from(whole));
        return Ok((parts, translation));
    }
    for (start, end, with) in rest.iter_mut() {
        parts.push(body.slice(at..*start));
        parts.push(match std::mem::take(with) {
            With::Nothing => Bytes::new(),
            With::Bytes(b) => b,
            cap @ With::Cap(_) => {
                client.scratch.extend_from_slice(text_of(&cap, &texts));
                client.scratch.split().freeze()
            }
        });
        at = *end;
    }
    parts.push(body.slice(at..));
    Ok((parts, translation))
}

/// The request to a Gemini (or Vertex AI) or Bedrock provider: the
/// client's body as chat completions (translated there first from
/// Messages or Responses), then as Gemini's `generateContent` or Bedrock's
/// Converse, the model and the stream switch in the request line; a
/// Bedrock request signed (SigV4). The answer comes back through chat.
#[allow(clippy::too_many_arguments)] // `build`'s, passed on
fn build_through_chat(
    client: &mut Client,
    head: &RequestHead,
    body: &[u8],
    fields: &ChatRequestFields,
    target: &Target,
    upstream: &Upstream,
    front: Front,
    traceparent: Option<&[u8]>,
) -> Result<(Parts, Translation), GatewayError> {
    let gemini = upstream.kind == ProviderKind::Gemini;
    let failed = |e: anthropic::TranslateError| GatewayError::Translate(e.message());
    let to_chat = |f: Translator<'_>| {
        let mut scratch = body.to_vec();
        let mut out = BytesMut::with_capacity(body.len() + 256);
        let info = f(&mut scratch, &target.upstream_model, &mut out).map_err(failed)?;
        Ok::<_, GatewayError>((out, info))
    };
    let (mut chat, translation) = match front {
        Front::OpenAi => (BytesMut::from(body), Translation::None),
        Front::Anthropic => {
            let (chat, info) = to_chat(&anthropic::front::request_to_openai)?;
            (chat, Translation::ToAnthropic(info))
        }
        Front::Responses => {
            let (chat, _) = to_chat(&|s, m, o| responses::chat::request_to_chat(s, m, true, o))?;
            (chat, Translation::ToResponses(ResponsesFrom::Chat))
        }
        Front::Completions | Front::Embeddings | Front::CountTokens => {
            return Err(GatewayError::Translate(if gemini {
                "this model's target is a Gemini provider, which serves chat (POST /v1/chat/completions, /v1/messages, /v1/responses) only through the gateway"
            } else {
                "this model's target is a Bedrock provider, which serves chat (POST /v1/chat/completions, /v1/messages, /v1/responses) only through the gateway"
            }))
        }
    };
    let mut out = BytesMut::with_capacity(chat.len() + 256);
    let info = if gemini {
        tollgate_protocol::gemini::request_from_openai(&mut chat, &mut out)
    } else {
        tollgate_protocol::bedrock::request_from_openai(&mut chat, &mut out)
    }
    .map_err(failed)?;
    let mut path = String::with_capacity(upstream.base_path.len() + target.upstream_model.len() + 64);
    path.push_str(&upstream.base_path);
    let mut query = upstream.query.strip_prefix('?').unwrap_or_default().to_string();
    if gemini {
        path.push_str("/models/");
        path.push_str(&target.upstream_model);
        path.push_str(if info.stream { ":streamGenerateContent" } else { ":generateContent" });
        if info.stream {
            query = if query.is_empty() { "alt=sse".into() } else { format!("alt=sse&{query}") };
        }
    } else {
        // A model id (`anthropic.claude-...-v1:0`) or an ARN, one segment.
        path.push_str("/model/");
        percent_encode(&target.upstream_model, &mut path);
        path.push_str(if info.stream { "/converse-stream" } else { "/converse" });
    }
    let body_out = out.freeze();
    write_headers(client, head, upstream, body_out.len(), traceparent);
    if let Some(aws) = upstream.aws.as_ref().filter(|_| !gemini) {
        let req = tollgate_protocol::sigv4::Request {
            method: "POST",
            host: &aws.host,
            path: &path,
            query: &query,
            headers: &[],
            payload: &body_out,
        };
        let signed = aws.sign(&req, crate::unix_now().as_secs());
        // Before the blank line `write_headers` ended the head with.
        let s = &mut client.scratch;
        s.truncate(s.len() - 2);
        s.extend_from_slice(b"x-amz-date: ");
        s.extend_from_slice(signed.amz_date.as_bytes());
        s.extend_from_slice(b"\r\nauthorization: ");
        s.extend_from_slice(signed.authorization.as_bytes());
        if let Some(token) = &aws.credentials.session_token {
            s.extend_from_slice(b"\r\nx-amz-security-token: ");
            s.extend_from_slice(token.as_bytes());
        }
        s.extend_from_slice(b"\r\n\r\n");
    }
    let mut line = String::with_capacity(path.len() + query.len() + 20);
    line.push_str("POST ");
    line.push_str(&path);
    if !query.is_empty() {
        line.push('?');
        line.push_str(&query);
    }
    line.push_str(" HTTP/1.1\r\n");
    // The translation always ends a stream with its usage: a chat client
    // that did not ask for it does not get it.
    let usage_asked = front == Front::OpenAi && fields.stream && !fields.include_usage;
    let through = Some(if gemini { ChatFrom::Gemini } else { ChatFrom::Bedrock });
    let mut parts = Parts { slices: Default::default(), len: 0, usage_asked, through };
    parts.push(Bytes::from(line));
    parts.push(upstream.fixed_headers.clone());
    parts.push(client.scratch.split().freeze());
    parts.push(body_out);
    Ok((parts, translation))
}

/// Percent-encodes every byte of `segment` outside `A-Z a-z 0-9 - . _ ~`
/// (a Bedrock model id's `:` and an ARN's `/` included).
fn percent_encode(segment: &str, out: &mut String) {
    for &b in segment.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Writes the forwarded header lines and the body's length into the
/// client's scratch buffer (the caller splits them off). A traced attempt
/// carries its own `traceparent` (the attempt's span as the parent) in
/// place of the client's.
fn write_headers(
    client: &mut Client,
    head: &RequestHead,
    upstream: &Upstream,
    body_len: usize,
    traceparent: Option<&[u8]>,
) {
    let s = &mut client.scratch;
    // A provider-specific key header (Azure's `api-key`, or any configured
    // one) is the provider's credential slot: a client value never fills it.
    let key_header = upstream.key_header.as_deref().map(str::as_bytes);
    s.extend_from_slice(b"accept-encoding: identity\r\n");
    // Headers the client's `Connection` names are hop-by-hop too (RFC 9110
    // 7.6.1): they end here. Every `Connection` line is one list: a second
    // line's names were forwarded (found by a review).
    let named_by_connection = |n: &[u8]| tollgate_protocol::http1::named_by_connection(head.headers(), n);
    // The provider's allow-list (`tollgate_policy::forward`): who pays,
    // which beta features run and the credentials are the gateway's.
    let replaced = |n: &[u8]| traceparent.is_some() && n.eq_ignore_ascii_case(b"traceparent");
    for (name, value) in head.headers().filter(|(n, _)| {
        upstream.forward.allows(n)
            && key_header.is_none_or(|k| !k.eq_ignore_ascii_case(n))
            && !named_by_connection(n)
            && !replaced(n)
    }) {
        s.extend_from_slice(name);
        s.extend_from_slice(b": ");
        s.extend_from_slice(value);
        s.extend_from_slice(b"\r\n");
    }
    if let Some(tp) = traceparent {
        s.extend_from_slice(b"traceparent: ");
        s.extend_from_slice(tp);
        s.extend_from_slice(b"\r\n");
    }
    s.extend_from_slice(b"content-length: ");
    s.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
    s.extend_from_slice(b"\r\n\r\n");
}

/// A request translator: the client's body (a scratch copy), the upstream
/// model, where the translated body goes.
type Translator<'a> =
    &'a dyn Fn(&mut [u8], &str, &mut BytesMut) -> Result<anthropic::RequestInfo, anthropic::TranslateError>;

/// The API a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Front {
    /// `POST /v1/chat/completions`.
    OpenAi,
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /v1/completions`: OpenAI's legacy completions, passed through
    /// to OpenAI-style providers only (no other API has them).
    Completions,
    /// `POST /v1/responses`: OpenAI's Responses API, passed through to
    /// OpenAI (and the mock), translated for every other provider.
    Responses,
    /// `POST /v1/embeddings`: OpenAI's embeddings, passed through to
    /// OpenAI-style providers; the answer is vectors, not text, so it is
    /// neither guarded nor classified.
    Embeddings,
    /// `POST /v1/messages/count_tokens`: Anthropic's token count of a
    /// Messages request, passed to Anthropic providers; for any other
    /// target the gateway answers with its own count. Free: nothing is
    /// reserved or billed.
    CountTokens,
}

/// How the answer must be translated back for the client.
#[derive(Clone, Copy, Debug)]
pub enum Translation {
    None,
    /// An Anthropic upstream's answer, for an OpenAI client.
    ToOpenAi(anthropic::RequestInfo),
    /// An OpenAI upstream's answer, for an Anthropic client.
    ToAnthropic(anthropic::RequestInfo),
    /// A chat (or Anthropic) upstream's answer, for a Responses API client.
    ToResponses(ResponsesFrom),
}

/// The API whose answer becomes a Responses API answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponsesFrom {
    Chat,
    /// Anthropic's, through chat.
    Anthropic,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which output limits a ceiling writes, and where, front by front.
    #[test]
    fn a_ceiling_lowers_every_output_limit_above_it_or_adds_the_one_the_api_reads() {
        // (front, reasons, body, cap, the body sent)
        let table: &[(Front, bool, &str, Option<u64>, &str)] = &[
            (Front::OpenAi, false, r#"{"model":"m"}"#, None, r#"{"model":"m"}"#),
            (Front::OpenAi, false, r#"{"model":"m"}"#, Some(300), r#"{"max_tokens":300,"model":"m"}"#),
            (Front::OpenAi, true, r#" { "model":"m"}"#, Some(300), r#" {"max_completion_tokens":300, "model":"m"}"#),
            (
                Front::OpenAi,
                true,
                r#"{"model":"m","max_tokens" : 9000 }"#,
                Some(300),
                r#"{"model":"m","max_tokens" : 300 }"#,
            ),
            (Front::OpenAi, false, r#"{"max_tokens":100,"model":"m"}"#, Some(300), r#"{"max_tokens":100,"model":"m"}"#),
            (
                Front::OpenAi,
                false,
                r#"{"max_completion_tokens":null,"model":"m","max_tokens":301,"max_output_tokens":5}"#,
                Some(300),
                r#"{"max_completion_tokens":null,"model":"m","max_tokens":300,"max_output_tokens":5}"#,
            ),
            // A `null` beside a number stays (the number is the limit); a
            // `null` alone is written over, not given a twin.
            (
                Front::OpenAi,
                true,
                r#"{"max_tokens":100,"max_completion_tokens":null,"model":"m"}"#,
                Some(300),
                r#"{"max_tokens":100,"max_completion_tokens":null,"model":"m"}"#,
            ),
            (Front::OpenAi, false, r#"{"model":"m","max_tokens":null}"#, Some(50), r#"{"model":"m","max_tokens":50}"#),
            // A reasoning model's limit goes under its own name, the other
            // name's `null` left alone.
            (
                Front::OpenAi,
                true,
                r#"{"model":"m","max_tokens":null}"#,
                Some(50),
                r#"{"max_completion_tokens":50,"model":"m","max_tokens":null}"#,
            ),
            (
                Front::OpenAi,
                true,
                r#"{"model":"m","max_completion_tokens":null}"#,
                Some(50),
                r#"{"model":"m","max_completion_tokens":50}"#,
            ),
            (
                Front::OpenAi,
                false,
                r#"{"model":"m","max_tokens":99999999999999999999999}"#,
                Some(50),
                r#"{"model":"m","max_tokens":50}"#,
            ),
            // An enabled thinking budget goes under the limit; a budget
            // already under it, or switched off, stays.
            (
                Front::Anthropic,
                false,
                r#"{"model":"m","max_tokens":64000,"thinking":{"budget_tokens":8000,"type":"enabled"}}"#,
                Some(2000),
                r#"{"model":"m","max_tokens":2000,"thinking":{"budget_tokens":1999,"type":"enabled"}}"#,
            ),
            (
                Front::Anthropic,
                false,
                r#"{"model":"m","thinking":{"type":"enabled","budget_tokens":1500}}"#,
                Some(2000),
                r#"{"max_tokens":2000,"model":"m","thinking":{"type":"enabled","budget_tokens":1500}}"#,
            ),
            (
                Front::Anthropic,
                false,
                r#"{"model":"m","max_tokens":10,"thinking":{"type":"disabled","budget_tokens":8000}}"#,
                Some(2000),
                r#"{"model":"m","max_tokens":10,"thinking":{"type":"disabled","budget_tokens":8000}}"#,
            ),
            // An API's own name missing while another's is given: added.
            (
                Front::OpenAi,
                false,
                r#"{"max_output_tokens":1,"model":"m"}"#,
                Some(3),
                r#"{"max_tokens":3,"max_output_tokens":1,"model":"m"}"#,
            ),
            (
                Front::Anthropic,
                true,
                r#"{"model":"m","max_tokens":64000}"#,
                Some(300),
                r#"{"model":"m","max_tokens":300}"#,
            ),
            (Front::Anthropic, false, r#"{"model":"m"}"#, Some(7), r#"{"max_tokens":7,"model":"m"}"#),
            (
                Front::Responses,
                true,
                r#"{"model":"m","max_tokens":9}"#,
                Some(7),
                r#"{"max_output_tokens":7,"model":"m","max_tokens":7}"#,
            ),
            (
                Front::Responses,
                false,
                r#"{"model":"m","max_output_tokens":90}"#,
                Some(7),
                r#"{"model":"m","max_output_tokens":7}"#,
            ),
            (
                Front::Completions,
                false,
                r#"{"model":"m","prompt":"x"}"#,
                Some(7),
                r#"{"max_tokens":7,"model":"m","prompt":"x"}"#,
            ),
            // Neither generates.
            (Front::Embeddings, false, r#"{"model":"m","input":"x"}"#, Some(7), r#"{"model":"m","input":"x"}"#),
            (
                Front::CountTokens,
                false,
                r#"{"model":"m","max_tokens":90}"#,
                Some(7),
                r#"{"model":"m","max_tokens":90}"#,
            ),
        ];
        for (front, reasons, body, cap, want) in table {
            let fields = openai::scan_request(body.as_bytes()).expect("a request body");
            let sent = match cap {
                None => body.as_bytes().to_vec(),
                Some(c) => {
                    let (edits, n) = cap_edits(body.as_bytes(), &fields, *front, *c, *reasons, true).expect("edits");
                    edited(body.as_bytes(), &edits[..n], &CapTexts::new(*c, &edits[..n]))
                }
            };
            assert_eq!(std::str::from_utf8(&sent).unwrap(), *want, "{front:?} {body}");
            assert!(serde_json::from_slice::<serde_json::Value>(&sent).is_ok(), "{want}");
        }
        // No budget Anthropic takes fits under a ceiling of 1,024 or less:
        // refused, naming both, rather than sent to be refused there.
        let body = br#"{"model":"m","max_tokens":8000,"thinking":{"type":"enabled","budget_tokens":4096}}"#;
        let fields = openai::scan_request(body).unwrap();
        match cap_edits(body, &fields, Front::Anthropic, 1024, false, true) {
            Err(e @ GatewayError::ThinkingOverCeiling { budget: 4096, cap: 1024 }) => {
                assert_eq!(e.status(), 400);
                assert!(e.to_string().contains("`thinking.budget_tokens` (4096)"), "{e}");
            }
            other => panic!("{:?}", other.map(|(_, n)| n)),
        }
        assert!(cap_edits(body, &fields, Front::Anthropic, 1025, false, true).is_ok());
        // Translated, the thinking is left out: nothing to refuse.
        let (_, n) = cap_edits(body, &fields, Front::Anthropic, 1024, false, false).expect("edits");
        assert_eq!(n, 1, "the limit alone");
    }
}
