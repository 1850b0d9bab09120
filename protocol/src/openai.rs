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
    /// A `stream_options` object was given (the span of its value), and
    /// whether it asks for the usage chunk (`"include_usage": true`).
    pub stream_options: Option<Span>,
    pub include_usage: bool,
    /// The most tokens the request lets the model generate: the largest of
    /// the top-level `max_completion_tokens`, `max_tokens` and
    /// `max_output_tokens` (the Responses API's) given as non-negative
    /// integers, each as often as it is given (a tool schema's
    /// `max_tokens` property is not this). The largest, because the
    /// providers and the translators read different ones (a translator
    /// takes `max_completion_tokens`, else `max_tokens`, and knows no
    /// `max_output_tokens`): a body with `"max_tokens": 32000,
    /// "max_output_tokens": 1` reserved one token for an answer of 32,000.
    /// Reserving the most any of them allows never lets an answer outrun
    /// its reservation.
    pub max_tokens: Option<u64>,
    /// Where `max_tokens`, `max_completion_tokens` and `max_output_tokens`
    /// are given, in that order: the span of each one's value. Each name
    /// is taken once (given twice, the gateway and the provider could read
    /// different ones): a request ceiling lowers every one of them
    /// (`upstream_request`), so that the provider stops where the ceiling
    /// is, reasoning it does not stream included.
    pub max_tokens_at: [Option<Span>; 3],
    /// The value of `budget_tokens` in a top-level `thinking` object whose
    /// `type` is `"enabled"` (Anthropic's extended thinking), whatever it
    /// is: a ceiling lowers it under the output limit it writes.
    pub thinking_budget: Option<Span>,
    /// How many answers one request generates, each up to the output
    /// limit: the largest of the top-level `n` and `best_of` (the legacy
    /// completions'), given as non-negative integers, 1 without them;
    /// times the prompts a legacy `prompt` array batches (each string or
    /// inner array is a prompt answered apart: fifty prompts under one
    /// ceiling of 300 tokens were fifty answers of 300).
    pub choices: u64,
    /// How many token IDs the `prompt` and `input` give (integers, at
    /// their top or in inner arrays) instead of text; 0 for text. The
    /// guardrails cannot read them (a guarded team's request so written is
    /// refused), and they are the prompt's tokens the text counter does not
    /// see: one an ID (a prompt of 100,000 IDs counted as 3 tokens, billed
    /// so when its stream was cut).
    pub token_ids: u64,
    /// The answer is asked to carry its tokens' log probabilities
    /// (`logprobs` given, not `null` or `false`; `top_logprobs` given, not
    /// `null` or 0; the Responses API's `include` naming them, or written
    /// with escapes): the answer's text again, token by token, which answer
    /// guardrails do not read.
    pub logprobs: bool,
    /// `"background": true` (the Responses API's runs that finish after
    /// the answer).
    pub background: bool,
    /// The answer is sampled: `temperature` is absent or `null` (the
    /// providers' default is 1) or above 0 (given twice: either above 0).
    /// A request that does not sample gets the same answer each time,
    /// which the answer cache relies on.
    pub sampled: bool,
    /// The Responses API's (and embeddings') `input` value, whole.
    pub input: Option<Span>,
    /// The last element of `messages`, whole: the newest turn, which the
    /// guardrails' memory of clean texts leaves out (it is new with every
    /// request; the history before it and the tools are sent again).
    pub last_message: Option<Span>,
    /// The Responses API's `previous_response_id` string's contents (not
    /// `null`).
    pub previous_response_id: Option<Span>,
    /// The Responses API's `store`, when given as `true` or `false`.
    pub store: Option<bool>,
    /// The provider reads input the body does not hold: a stored response
    /// (`previous_response_id`), a stored conversation (`conversation`,
    /// not `null`) or a stored prompt template (`prompt` given as an
    /// object; a string `prompt` is the legacy completions' text). The
    /// gateway cannot count that input: an answer to such a request is
    /// read to its end for the provider's usage even when the client
    /// leaves (the engine's `proxy::relay::Answer::read_to_end`).
    pub stored_input: bool,
    /// No part of the body can hold an image or audio: every message's
    /// `content` is a string or `null`, no message has an `output` or an
    /// `audio` (an earlier spoken answer, by id), and there is no `input`
    /// (keys written with escapes, which the media walk would decode, are
    /// refused here). The media estimate
    /// ([`crate::media::media_tokens`]) then has nothing to find, and its
    /// pass over the body (113,000 instructions for a 100 KB prompt) is
    /// skipped.
    pub text_only: bool,
    /// The body offers the provider a tool it runs itself and may bill per
    /// call, beyond tokens (web and file search, a code interpreter, image
    /// generation, an MCP server, Anthropic's server tools; chat's
    /// `web_search_options`, Anthropic's `mcp_servers`, OpenRouter's
    /// `plugins`): see
    /// [`hosted_tools`] for their names. The gateway prices tokens only,
    /// so the route phase lets such a request through only for a team
    /// that allows the tool.
    pub hosted_tools: bool,
    /// The `service_tier` string's contents (OpenAI's `auto`, `default`,
    /// `flex`, `priority`, `scale`; Anthropic's `auto`, `standard_only`):
    /// a tier priced above standard is let through only for a team that
    /// allows it, since the gateway prices standard tokens.
    pub service_tier: Option<Span>,
}

impl ChatRequestFields {
    /// The same fields in a body whose string values were replaced (a
    /// redaction): `moved` maps an offset of the old body to the new one.
    /// Saves scanning the new body again.
    ///
    /// Every field is named (no `..`): a span added later that this did
    /// not move would point into the old body's bytes, and the ceiling's
    /// edits of the output limits (`max_tokens_at`, `thinking_budget`,
    /// once left out here) would then cut the new body at stale offsets,
    /// a panic or a limit written into prose while the real one went
    /// upstream unchanged.
    pub fn moved(&mut self, moved: impl Fn(usize) -> usize) {
        let span = |s: &mut Span| *s = Span::new(moved(s.start as usize), moved(s.end as usize));
        let ChatRequestFields {
            model,
            stream: _,
            stream_options,
            include_usage: _,
            max_tokens: _,
            max_tokens_at,
            thinking_budget,
            choices: _,
            token_ids: _,
            logprobs: _,
            background: _,
            sampled: _,
            input,
            last_message,
            previous_response_id,
            store: _,
            stored_input: _,
            text_only: _,
            hosted_tools: _,
            service_tier,
        } = self;
        span(model);
        for s in max_tokens_at.iter_mut().flatten() {
            span(s);
        }
        for s in [stream_options, thinking_budget, input, last_message, previous_response_id, service_tier] {
            s.as_mut().map(span);
        }
    }
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
    /// `previous_response_id` holds escapes: the gateway looks the id up
    /// as written (a turn it keeps, the size of a conversation), the
    /// provider decoded, and `"resp_\u0061bc"` would be two ids.
    BadPreviousResponseId,
    /// Nesting deeper than the gateway will walk.
    TooDeep,
    /// `stream` is not `true`, `false` or `null`.
    BadStream,
    /// `messages` is not an array.
    BadMessages,
    /// One element of `messages` is not a message: its index, and what.
    BadMessage { index: u32, problem: MessageProblem },
    /// `max_tokens` or `max_completion_tokens` is not a non-negative
    /// integer (or `null`).
    BadMaxTokens,
    /// `n` or `best_of` is not a non-negative integer (or `null`).
    BadChoices,
    /// The body is not UTF-8 (JSON text is).
    NotUtf8,
    /// A top-level key written with escapes, or `model`/`stream` given
    /// twice: parsers disagree on such bodies (escaped `"mod\u0065l"` is
    /// `model` to the upstream; duplicates resolve first-wins or
    /// last-wins), so the model the gateway checks might not be the one the
    /// upstream serves.
    AmbiguousKey,
    /// `models` or `fallbacks` (not `null`): a provider's own fallback list
    /// (OpenRouter's, and other aggregators'), which lets a model the
    /// gateway did not route answer, outside the team's models and priced
    /// by the provider at that model's rates.
    ModelFallbacks,
    /// `provider` (not `null`): an aggregator's choice of the hosts that
    /// serve the model (OpenRouter's `order`, `only`, `allow_fallbacks`),
    /// whose rates differ several-fold while the gateway bills its price.
    ProviderRouting,
}

/// What is wrong with one element of `messages`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageProblem {
    NotObject,
    /// `role` missing, not a string, or not a role any provider knows.
    Role,
    /// `content` missing (only an assistant's may be: its tool calls carry
    /// the message), or not a string, an array of parts or `null`.
    Content,
}

/// Roles a chat message may have, across OpenAI's and Anthropic's APIs.
const ROLES: &[&[u8]] = &[b"system", b"developer", b"user", b"assistant", b"tool", b"function"];

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            BodyError::BadMessage { index, problem } => {
                let what = match problem {
                    MessageProblem::NotObject => "must be an object with `role` and `content`",
                    MessageProblem::Role => {
                        "`role` must be one of \"system\", \"developer\", \"user\", \"assistant\", \"tool\", \"function\""
                    }
                    MessageProblem::Content => "`content` must be a string, an array of content parts, or null",
                };
                write!(f, "messages[{index}]: {what}")
            }
            other => f.write_str(other.message()),
        }
    }
}

impl BodyError {
    pub fn message(self) -> &'static str {
        match self {
            BodyError::NotJsonObject => "request body must be a JSON object",
            BodyError::MissingModel => "you must provide a model parameter",
            BodyError::BadModel => "model must be a plain string",
            BodyError::BadPreviousResponseId => {
                "`previous_response_id` must be a plain string, written without escapes"
            }
            BodyError::TooDeep => "request body nests too deeply",
            BodyError::BadStream => "`stream` must be a boolean",
            BodyError::BadMessages => "`messages` must be an array of messages",
            BodyError::BadMessage { .. } => "`messages` holds an element that is not a message",
            BodyError::BadMaxTokens => {
                "`max_tokens`, `max_completion_tokens` and `max_output_tokens` must be non-negative integers"
            }
            BodyError::BadChoices => "`n` and `best_of` must be non-negative integers",
            BodyError::NotUtf8 => "the request body is not valid UTF-8 (JSON text must be)",
            BodyError::ModelFallbacks => {
                "`models` and `fallbacks` (a provider's own list of models to fall back to) are not accepted: another model would answer, outside this gateway's model access and prices; name one model in `model`, and the gateway's routes fall back for you"
            }
            BodyError::ProviderRouting => {
                "`provider` (an aggregator's choice of the hosts that serve a model, which sets what it costs) is not accepted: the host would be chosen outside this gateway's prices; leave it out, and set the provider's routing in the gateway's configuration"
            }
            BodyError::AmbiguousKey => {
                "request body repeats a top-level key the gateway reads (`model`, `stream`, `stream_options`, `max_tokens`, `max_completion_tokens`, `max_output_tokens`, `thinking`, `input`, `store`, `previous_response_id`), escapes one, or writes one in other letter case (`Stream`, `N`); send each key once, unescaped, in lower case"
            }
        }
    }
}

/// The top-level keys [`scan_request`] reads.
const READ_KEYS: &[&[u8]] = &[
    b"model",
    b"stream",
    b"stream_options",
    b"max_tokens",
    b"max_completion_tokens",
    b"max_output_tokens",
    b"thinking",
    b"n",
    b"best_of",
    b"temperature",
    b"background",
    b"messages",
    b"tools",
    b"service_tier",
    b"web_search_options",
    b"mcp_servers",
    b"plugins",
    b"models",
    b"fallbacks",
    b"provider",
    b"input",
    b"previous_response_id",
    b"conversation",
    b"prompt",
    b"logprobs",
    b"top_logprobs",
    b"include",
    b"store",
];

/// Whether `key` is a key the gateway reads written another way that a
/// provider's decoder may take for it: in other letter case (`Stream`,
/// `MAX_TOKENS`, `N`), or with the two letters outside ASCII that Go folds
/// to ASCII ones (`ſ` to `s`, the Kelvin sign to `k`). Go's
/// `encoding/json` matches keys so (the last match wins), and Ollama,
/// LocalAI and relays such as one-api decode with it: `"Stream": true`
/// streamed an answer the gateway relayed as JSON and billed no output
/// from, `"N": 64` went unreserved, and a `"Max_Tokens"` after the
/// ceiling's `max_tokens` lifted it (found by a review). OpenAI's own API
/// refuses such keys as unknown.
fn folds_to_a_read_key(key: &[u8]) -> bool {
    let mut folded = [0u8; 24];
    let (mut n, mut at) = (0, 0);
    while at < key.len() {
        let (b, len) = match key[at..] {
            [0xC5, 0xBF, ..] => (b's', 2),
            [0xE2, 0x84, 0xAA, ..] => (b'k', 3),
            [b, ..] => (b.to_ascii_lowercase(), 1),
            [] => break,
        };
        if n == folded.len() {
            return false;
        }
        folded[n] = b;
        (n, at) = (n + 1, at + len);
    }
    let folded = &folded[..n];
    folded != key && READ_KEYS.contains(&folded)
}

/// Nesting depth past which a body is refused: no real chat request comes
/// close, and the bound keeps hostile input from costing more than a pass.
pub(crate) const DEPTH_MAX: usize = 128;

/// Scans the top level of a chat request body. The body must be UTF-8, as
/// JSON text is: invalid bytes inside a string would reach the upstream
/// (and slip past guardrails that read text) otherwise.
pub fn scan_request(body: &[u8]) -> Result<ChatRequestFields, BodyError> {
    if simdutf8::basic::from_utf8(body).is_err() {
        return Err(BodyError::NotUtf8);
    }
    let mut c = Cursor { buf: body, pos: 0, depth_max: DEPTH_MAX };
    c.ws();
    c.expect(b'{')?;
    let mut model = None;
    let mut stream = None;
    let mut options = None;
    let mut max_tokens: Option<u64> = None;
    let mut max_tokens_at: [Option<Span>; 3] = [None; 3];
    let mut thinking: Option<Option<Span>> = None;
    let mut choices = 1u64;
    // The prompts a legacy `prompt` array batches, and whether `prompt` or
    // `input` gives token IDs.
    let (mut prompts, mut token_ids) = (1u64, 0u64);
    let mut logprobs = false;
    let mut background = false;
    let mut temperature: Option<bool> = None;
    let (mut input, mut previous, mut store) = (None, None, None);
    let mut stored_elsewhere = false;
    let mut plain_messages = true;
    let mut last_message = None;
    let mut hosted = false;
    let mut service_tier: Option<Option<Span>> = None;
    // Given twice, the gateway and the provider could read different ones.
    let once = |seen: bool| if seen { Err(BodyError::AmbiguousKey) } else { Ok(()) };
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
                // A lax upstream coerces "true" (a string) and streams
                // while the gateway would relay it as JSON: refused.
                stream = Some(match &body[start..c.pos] {
                    b"true" => true,
                    b"false" | b"null" => false,
                    _ => return Err(BodyError::BadStream),
                });
            }
            b"stream_options" => {
                if options.is_some() {
                    return Err(BodyError::AmbiguousKey);
                }
                let start = c.pos;
                let asks = asks_for_usage(&mut c)?;
                options = Some((Span::new(start, c.pos), asks));
            }
            name @ (b"max_tokens" | b"max_completion_tokens" | b"max_output_tokens") => {
                let at = &mut max_tokens_at[match name {
                    b"max_tokens" => 0,
                    b"max_completion_tokens" => 1,
                    _ => 2,
                }];
                once(at.is_some())?;
                let start = c.pos;
                c.value()?;
                *at = Some(Span::new(start, c.pos));
                let raw = &body[start..c.pos];
                let n = match raw {
                    b"null" => None,
                    _ if raw.iter().all(u8::is_ascii_digit) => {
                        Some(std::str::from_utf8(raw).ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX))
                    }
                    _ => return Err(BodyError::BadMaxTokens),
                };
                max_tokens = max_tokens.max(n);
            }
            b"thinking" => {
                once(thinking.is_some())?;
                thinking = Some(thinking_budget(&mut c)?);
            }
            b"n" | b"best_of" => {
                let start = c.pos;
                c.value()?;
                let raw = &body[start..c.pos];
                if raw != b"null" {
                    if !raw.iter().all(u8::is_ascii_digit) {
                        return Err(BodyError::BadChoices);
                    }
                    let n = std::str::from_utf8(raw).ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX);
                    choices = choices.max(n);
                }
            }
            b"temperature" => {
                let start = c.pos;
                c.value()?;
                let t = std::str::from_utf8(&body[start..c.pos]).ok().and_then(|t| t.parse::<f64>().ok());
                // Not a number (null, or what the provider will refuse):
                // taken as sampled, the side that caches nothing.
                let above = t.is_none_or(|t| t.is_nan() || t > 0.0);
                temperature = Some(temperature.unwrap_or(false) || above);
            }
            b"background" => {
                let start = c.pos;
                c.value()?;
                // Given twice, either may be the one the provider reads.
                background |= &body[start..c.pos] == b"true";
            }
            b"messages" => {
                if c.peek() != Some(b'[') {
                    return Err(BodyError::BadMessages);
                }
                // Given twice, the last is the one a provider's parser
                // keeps: its last message, or none.
                last_message = None;
                messages(&mut c, &mut plain_messages, &mut last_message)?;
            }
            b"tools" if c.peek() == Some(b'[') => hosted |= c.tools()?,
            b"service_tier" => {
                once(service_tier.is_some())?;
                service_tier = Some(c.string_or_skip()?);
            }
            // OpenRouter's `plugins` (web search, paid PDF parsing) are
            // billed per use as hosted tools are.
            b"web_search_options" | b"mcp_servers" | b"plugins" => {
                let start = c.pos;
                c.value()?;
                hosted |= &body[start..c.pos] != b"null";
            }
            b"models" | b"fallbacks" | b"provider" => {
                let start = c.pos;
                c.value()?;
                if &body[start..c.pos] != b"null" {
                    return Err(if key.get(body) == b"provider" {
                        BodyError::ProviderRouting
                    } else {
                        BodyError::ModelFallbacks
                    });
                }
            }
            b"input" => {
                once(input.is_some())?;
                let start = c.pos;
                c.value()?;
                input = Some(Span::new(start, c.pos));
                token_ids = token_ids.saturating_add(batch(&body[start..c.pos]).1);
            }
            b"previous_response_id" => {
                once(previous.is_some())?;
                let id = c.string_or_skip()?;
                if id.is_some_and(|id| id.get(body).contains(&b'\\')) {
                    return Err(BodyError::BadPreviousResponseId);
                }
                previous = Some(id);
            }
            b"conversation" | b"prompt" => {
                let start = c.pos;
                c.value()?;
                let value = &body[start..c.pos];
                if key.get(body) == b"prompt" {
                    let (n, ids) = batch(value);
                    // Given twice, either may be the one read: the larger
                    // batch, and both prompts' IDs.
                    prompts = prompts.max(n);
                    token_ids = token_ids.saturating_add(ids);
                }
                // A conversation by id or object; a prompt template is an
                // object (a string `prompt` is text, the legacy API's).
                stored_elsewhere |=
                    if key.get(body) == b"conversation" { value != b"null" } else { value.first() == Some(&b'{') };
            }
            b"logprobs" | b"top_logprobs" | b"include" => {
                let start = c.pos;
                c.value()?;
                let value = &body[start..c.pos];
                logprobs |= match key.get(body) {
                    // The Responses API's `include`:
                    // `"message.output_text.logprobs"`; an escaped name is
                    // taken as one (the provider decodes it).
                    b"include" => value.windows(8).any(|w| w == b"logprobs") || value.contains(&b'\\'),
                    // `top_logprobs: 0` asks for none.
                    b"top_logprobs" => !matches!(value, b"null" | b"0"),
                    // The legacy completions' `logprobs: 0` still returns
                    // the sampled token's, so only `null` and `false` are off.
                    _ => !matches!(value, b"null" | b"false"),
                };
            }
            b"store" => {
                once(store.is_some())?;
                let start = c.pos;
                c.value()?;
                store = Some(match &body[start..c.pos] {
                    b"true" => Some(true),
                    b"false" => Some(false),
                    _ => None,
                });
            }
            other if folds_to_a_read_key(other) => return Err(BodyError::AmbiguousKey),
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
        stream_options: options.map(|(span, _)| span),
        include_usage: options.is_some_and(|(_, asks)| asks),
        max_tokens,
        max_tokens_at,
        thinking_budget: thinking.flatten(),
        choices: choices.saturating_mul(prompts),
        token_ids,
        logprobs,
        background,
        sampled: temperature.unwrap_or(true),
        input,
        last_message,
        stored_input: previous.flatten().is_some() || stored_elsewhere,
        text_only: plain_messages && input.is_none(),
        previous_response_id: previous.flatten(),
        store: store.flatten(),
        hosted_tools: hosted,
        service_tier: service_tier.flatten(),
    })
}

/// What an array `prompt` or `input` holds (a value already read whole,
/// so well formed): how many prompts it batches (each string or inner
/// array is one; 1 for an array of token IDs, or anything else), and how
/// many token IDs it gives (the numbers at its top and in its inner
/// arrays that hold no string).
fn batch(value: &[u8]) -> (u64, u64) {
    // The numbers of a value without strings: each begins with a byte of
    // a number that follows no such byte.
    let numbers = |v: &[u8]| {
        let mut after_number = false;
        let mut n = 0u64;
        for &b in v {
            let part = crate::json::number_byte(b);
            n += u64::from(part && !after_number);
            after_number = part;
        }
        n
    };
    let mut c = Cursor { buf: value, pos: 0, depth_max: DEPTH_MAX };
    let (mut prompts, mut ids) = (0u64, 0u64);
    if c.expect(b'[').is_err() {
        return (1, 0);
    }
    loop {
        c.ws();
        let start = c.pos;
        let first = c.peek();
        if first == Some(b']') || c.value().is_err() {
            break;
        }
        let element = &value[start..c.pos];
        match first {
            Some(b'"') => prompts += 1,
            Some(b'[') => {
                prompts += 1;
                if !element.contains(&b'"') {
                    ids = ids.saturating_add(numbers(element));
                }
            }
            Some(b'0'..=b'9' | b'-') => ids += 1,
            _ => {}
        }
        c.ws();
        if c.bump() != Some(b',') {
            break;
        }
    }
    (prompts.max(1), ids)
}

/// The span of `budget_tokens` in the `thinking` value at the cursor
/// (consumed either way), when it is an object whose `type` is
/// `"enabled"`: the budget a provider reads.
fn thinking_budget(c: &mut Cursor<'_>) -> Result<Option<Span>, BodyError> {
    if c.peek() != Some(b'{') {
        c.value()?;
        return Ok(None);
    }
    let base = c.buf.as_ptr() as usize;
    let (mut enabled, mut budget) = (false, None);
    raw_members(c, |key, value| {
        match key {
            b"type" => enabled = value == b"\"enabled\"",
            b"budget_tokens" => {
                let start = value.as_ptr() as usize - base;
                budget = Some(Span::new(start, start + value.len()));
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(budget.filter(|_| enabled))
}

/// Tool types (or their versioned prefixes) the client runs: OpenAI's
/// functions, custom tools, computer use, shells and patches, and Codex's
/// namespaces of functions;
/// Anthropic's bash, text editor, computer and memory tools (and its
/// custom tools, which have no `type` or `"custom"`). Any other type is
/// the provider's to run. (Compared as written: an escaped type is taken
/// for the provider's.)
const CLIENT_TOOLS: [&[u8]; 10] = [
    b"function",
    b"custom",
    b"computer",
    b"local_shell",
    b"shell",
    b"apply_patch",
    b"namespace",
    b"bash_",
    b"text_editor_",
    b"memory_",
];

/// Whether a tool's `type` (the string's contents, as written) names a
/// tool the provider runs: one not among [`CLIENT_TOOLS`].
fn runs_at_provider(name: &[u8]) -> bool {
    !name.is_empty() && !CLIENT_TOOLS.iter().any(|t| name.starts_with(t))
}

/// The name in a tool's raw `type` value when it is a string naming a tool
/// the provider runs. (Another value, which no provider takes, is left to
/// the provider to refuse.)
fn provider_runs(kind: &[u8]) -> Option<&[u8]> {
    let name = kind.strip_prefix(b"\"").and_then(|k| k.strip_suffix(b"\""))?;
    runs_at_provider(name).then_some(name)
}

/// Whether the `tools` value at the cursor (consumed either way) offers a
/// tool the provider runs, each of whose names (its `type` as written)
/// goes to `found`.
pub(crate) fn tools_run_by_provider(c: &mut Cursor<'_>, found: &mut dyn FnMut(&[u8])) -> Result<bool, BodyError> {
    if c.peek() != Some(b'[') {
        c.value()?;
        return Ok(false);
    }
    let mut any = false;
    let mut failed = None;
    let walked = elements(c, &mut |c| {
        if c.peek() != Some(b'{') {
            return c.value().ok();
        }
        let result = raw_members(c, |key, value| {
            if key == b"type" {
                if let Some(name) = provider_runs(value) {
                    any = true;
                    found(name);
                }
            }
            Ok(())
        });
        result.map_err(|e| failed = Some(e)).ok()
    });
    match (failed, walked) {
        (Some(e), _) => Err(e),
        (None, None) => Err(BodyError::NotJsonObject),
        (None, Some(())) => Ok(any),
    }
}

/// The tools a scanned body ([`ChatRequestFields::hosted_tools`]) offers
/// the provider to run, by name: each such tool's `type` as written, and
/// `web_search_options`, `mcp_servers` or `plugins` where given (not
/// `null`). For a
/// policy's message and check; a body that does not scan gives none.
pub fn hosted_tools(body: &[u8], mut found: impl FnMut(&[u8])) {
    let mut c = Cursor { buf: body, pos: 0, depth_max: DEPTH_MAX };
    c.ws();
    let _ = members(&mut c, &mut |c, key| match key {
        b"tools" => {
            // One that does not read as JSON names nothing, and the walk
            // goes on to the next (a body may give `tools` twice).
            let start = c.pos;
            if tools_run_by_provider(c, &mut found).is_err() {
                c.pos = start;
                c.value().ok()?;
            }
            Some(())
        }
        b"web_search_options" | b"mcp_servers" | b"plugins" => {
            let start = c.pos;
            c.value().ok()?;
            if &c.buf[start..c.pos] != b"null" {
                found(key);
            }
            Some(())
        }
        _ => c.value().ok(),
    });
}

/// Whether the `stream_options` value at the cursor holds
/// `"include_usage": true` at its own top level (consumed either way). A
/// nested or repeated key does not count: the provider reads the top
/// level, and the gateway bills by what the provider was asked.
fn asks_for_usage(c: &mut Cursor<'_>) -> Result<bool, BodyError> {
    if c.peek() != Some(b'{') {
        c.value()?;
        return Ok(false);
    }
    let (mut asks, mut seen) = (false, 0);
    raw_members(c, |key, value| {
        if key == b"include_usage" {
            seen += 1;
            asks = value == b"true";
        }
        Ok(())
    })?;
    // Given twice, parsers disagree on which counts.
    if seen > 1 {
        return Err(BodyError::AmbiguousKey);
    }
    Ok(asks)
}

/// Walks the object at the cursor, giving `f` each key and its value's raw
/// bytes; the first error, `f`'s or the walk's, ends it. A key written
/// with escapes is refused: `include\u005fusage` or `r\u006fle` is the
/// plain key to the provider, and a check reading raw keys would miss it.
fn raw_members(c: &mut Cursor<'_>, mut f: impl FnMut(&[u8], &[u8]) -> Result<(), BodyError>) -> Result<(), BodyError> {
    let mut failed = None;
    let walked = members(c, &mut |c, key| {
        let start = c.pos;
        let result = if key.contains(&b'\\') {
            Err(BodyError::AmbiguousKey)
        } else {
            c.value().and_then(|()| f(key, &c.buf[start..c.pos]))
        };
        result.map_err(|e| failed = Some(e)).ok()
    });
    match (failed, walked) {
        (Some(e), _) => Err(e),
        (None, None) => Err(BodyError::NotJsonObject),
        (None, Some(())) => Ok(()),
    }
}

/// Walks `messages` at the cursor: each element an object with a known
/// `role` and a `content` that is a string, an array or `null` (absent
/// only for an assistant's message).
fn messages(c: &mut Cursor<'_>, plain: &mut bool, last: &mut Option<Span>) -> Result<(), BodyError> {
    let mut index = 0u32;
    let mut failed = None;
    let walked = elements(c, &mut |c| {
        let bad = |problem| BodyError::BadMessage { index, problem };
        let start = c.pos;
        let checked = if c.peek() == Some(b'{') { message(c, plain, bad) } else { Err(bad(MessageProblem::NotObject)) };
        *last = Some(Span::new(start, c.pos));
        index = index.saturating_add(1);
        checked.map_err(|e| failed = Some(e)).ok()
    });
    match (failed, walked) {
        (Some(e), _) => Err(e),
        (None, None) => Err(BodyError::NotJsonObject),
        (None, Some(())) => Ok(()),
    }
}

/// One message: a known `role`, given once, and a `content` (see
/// [`messages`]); `bad` names the message in an error. `plain` is cleared
/// where the message may hold media (see [`ChatRequestFields::text_only`]):
/// content parts, an `output` or an earlier spoken answer (`audio`). (A
/// key in escapes, which the media walk would decode, is refused:
/// [`raw_members`].)
fn message(c: &mut Cursor<'_>, plain: &mut bool, bad: impl Fn(MessageProblem) -> BodyError) -> Result<(), BodyError> {
    let (mut assistant, mut content) = (None, false);
    raw_members(c, |key, value| {
        *plain &= key != b"output" && key != b"audio" && !(key == b"content" && value.first() == Some(&b'['));
        match key {
            b"role" => {
                let name = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\""));
                match name.filter(|n| ROLES.contains(n)) {
                    Some(n) if assistant.is_none() => assistant = Some(n == b"assistant"),
                    _ => return Err(bad(MessageProblem::Role)),
                }
            }
            b"content" => {
                if !matches!(value.first(), Some(b'"' | b'[')) && value != b"null" {
                    return Err(bad(MessageProblem::Content));
                }
                content = true;
            }
            _ => {}
        }
        Ok(())
    })?;
    match assistant {
        None => Err(bad(MessageProblem::Role)),
        Some(false) if !content => Err(bad(MessageProblem::Content)),
        Some(_) => Ok(()),
    }
}

/// What the gateway adds to a streamed request whose client did not ask
/// for usage: the upstream then sends its token counts in a last chunk,
/// which the gateway reads and keeps from the client.
pub const ASK_FOR_USAGE: &[u8] = b"\"stream_options\":{\"include_usage\":true},";

/// What replaces a client's own `stream_options` value that does not ask
/// for usage (`{"include_usage": false}`, `null`, `{}`): the provider's
/// counts are always obtained.
pub const USAGE_OPTIONS: &[u8] = b"{\"include_usage\":true}";

pub(crate) struct Cursor<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
    /// Nesting past which a skipped value is refused. A request's bound is
    /// [`DEPTH_MAX`]; a provider's answer has none (what a model writes in
    /// a tool's input must not make an answer unreadable, and so unbilled),
    /// and past [`DEPTH_MAX`] its brackets are counted, not matched.
    pub(crate) depth_max: usize,
}

impl Cursor<'_> {
    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(crate) fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    pub(crate) fn expect(&mut self, want: u8) -> Result<(), BodyError> {
        if self.bump() == Some(want) {
            Ok(())
        } else {
            Err(BodyError::NotJsonObject)
        }
    }

    pub(crate) fn ws(&mut self) {
        self.pos = ws_from(self.buf, self.pos);
    }

    /// A string starting at the cursor; returns the span of its contents.
    pub(crate) fn string(&mut self) -> Result<Span, BodyError> {
        self.expect(b'"')?;
        let start = self.pos;
        // The escaped byte after a backslash is skipped; \uXXXX digits are
        // plain bytes to us.
        let strict = self.depth_max == DEPTH_MAX;
        let closing = crate::json::closing_quote(self.buf, start, strict).ok_or(BodyError::NotJsonObject)?;
        let end = closing.end;
        // A request is judged strictly (raw control bytes are not JSON);
        // an answer is only read, and its provider's parser is the
        // client's problem.
        if closing.control && strict {
            return Err(BodyError::NotJsonObject);
        }
        self.pos = end + 1;
        Ok(Span::new(start, end))
    }

    /// A string value's span, or `None` with any other value skipped.
    fn string_or_skip(&mut self) -> Result<Option<Span>, BodyError> {
        if self.peek() == Some(b'"') {
            return self.string().map(Some);
        }
        self.value().map(|()| None)
    }

    /// Skips one value of any kind.
    pub(crate) fn value(&mut self) -> Result<(), BodyError> {
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

    /// Skips an object or array by bracket counting, stepping over strings
    /// ([`crate::json::skip_nested`], 64 bytes a step).
    fn nested(&mut self) -> Result<(), BodyError> {
        let skipped = self.skipped(crate::json::skip_nested(self.buf, self.pos, self.depth_max))?;
        self.pos = skipped.end;
        Ok(())
    }

    /// A skip's result as the scan takes it: a request is judged strictly,
    /// as in `string` (no raw control byte in a string).
    fn skipped(
        &self,
        skipped: Result<crate::json::Skipped, crate::json::SkipError>,
    ) -> Result<crate::json::Skipped, BodyError> {
        let skipped = skipped.map_err(|e| match e {
            crate::json::SkipError::TooDeep => BodyError::TooDeep,
            crate::json::SkipError::Malformed => BodyError::NotJsonObject,
        })?;
        if skipped.control && self.depth_max == DEPTH_MAX {
            return Err(BodyError::NotJsonObject);
        }
        Ok(skipped)
    }

    /// Skips the `tools` array at the cursor as [`Cursor::nested`] does,
    /// and says whether one of its elements has a `type` that
    /// [`runs_at_provider`]: the elements' own keys are read as the skip
    /// passes their opening quotes (walked element by element, the 12
    /// tools of an 8 KB body of schemas cost the request 10,000
    /// instructions more than the skip alone; read as it passes, 5,800, of
    /// a governed request's 221,000). The answer is
    /// the walk's, [`tools_run_by_provider`] (a property test holds them
    /// together), a key written with escapes refused as there.
    fn tools(&mut self) -> Result<bool, BodyError> {
        let buf = self.buf;
        let (mut hosted, mut escaped_key) = (false, false);
        let skipped = crate::json::skip_nested_visiting(buf, self.pos, self.depth_max, 2, |quote, escapes| {
            // Most of an element's strings are not `"type"`, and none near
            // holds a backslash: one comparison decides.
            // (Its sixth byte, after an `e`, closes the string.)
            let typed = buf.get(quote..quote + 6) == Some(b"\"type\"");
            if !typed && !escapes {
                return;
            }
            if !typed {
                // A backslash near: a key (a string before a colon) that
                // holds one is refused.
                if let Some(key) = crate::json::closing_quote(buf, quote + 1, false) {
                    escaped_key |= key.escapes && buf.get(ws_from(buf, key.end + 1)) == Some(&b':');
                }
                return;
            }
            let colon = ws_from(buf, quote + 6);
            if buf.get(colon) != Some(&b':') {
                // A string value, not a key.
                return;
            }
            let open = ws_from(buf, colon + 1);
            if buf.get(open) != Some(&b'"') {
                return;
            }
            if let Some(kind) = crate::json::closing_quote(buf, open + 1, false) {
                hosted |= runs_at_provider(&buf[open + 1..kind.end]);
            }
        });
        let skipped = self.skipped(skipped)?;
        if escaped_key {
            return Err(BodyError::AmbiguousKey);
        }
        // The skip steps over what is between strings unread: where it
        // saw such a tool, the walk reads the elements as JSON, and tools
        // that are not are refused (with one, the provider would refuse
        // them too; without, the gateway could not name the tool).
        if hosted {
            let mut walk = Cursor { buf, pos: self.pos, depth_max: self.depth_max };
            hosted = tools_run_by_provider(&mut walk, &mut |_| ())?;
        }
        self.pos = skipped.end;
        Ok(hosted)
    }
}

/// The index of the first byte from `at` that is not JSON whitespace.
#[inline(always)]
fn ws_from(buf: &[u8], mut at: usize) -> usize {
    while buf.get(at).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Token counts an answer reports: prompt (cached and cache-written tokens
/// included), completion (reasoning included), the prompt tokens read from
/// the provider's cache, and those written to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
    pub cache_write: u64,
    /// Of `cache_write`, the tokens written for an hour (Anthropic's
    /// `cache_creation.ephemeral_1h_input_tokens`, priced higher).
    pub cache_write_1h: u64,
    /// Of the prompt and of the completion, the audio (OpenAI's
    /// `audio_tokens` details), priced apart.
    pub audio_prompt: u64,
    pub audio_completion: u64,
    /// The service tier the provider says it served the request at.
    pub tier: Tier,
    /// The report gave its output but no input count (Anthropic's
    /// `message_start` with `"usage": null`, then a `message_delta` with
    /// the output alone): `prompt` holds only the cache's tokens reported,
    /// and the gateway bills its own count of the prompt beside the
    /// reported output (which may hold reasoning no one could count).
    pub prompt_unreported: bool,
}

/// Chat's usage object for a translated report whose counts were not
/// whole numbers: counts no reader believes, so that the gateway's reader
/// sets them aside (Gemini's and Bedrock's translators).
pub(crate) const UNREADABLE_USAGE: &[u8] = b"{\"prompt_tokens\":-1,\"completion_tokens\":-1,\"total_tokens\":-1}";

/// A translator's usage count `v` (Gemini's, Bedrock's): 0 when absent or
/// `null` (not reported); one that is not a whole number sets `unreadable`
/// and counts 0 (the report is then set aside: [`Usage::unreadable`]).
pub(crate) fn whole_count(v: Option<&simd_json::BorrowedValue<'_>>, unreadable: &std::cell::Cell<bool>) -> u64 {
    use simd_json::prelude::*;
    match v {
        Some(v) if !v.is_null() => v.as_u64().unwrap_or_else(|| {
            unreadable.set(true);
            0
        }),
        _ => 0,
    }
}

impl Usage {
    /// A translated report with a count that is not a whole number: its
    /// counts past any believable one ([`USAGE_TOKENS_MAX`]), so that it
    /// is set aside as a chat answer's would be (Gemini's and Bedrock's
    /// translators).
    pub(crate) fn unreadable() -> Usage {
        Usage { prompt: u64::MAX, completion: u64::MAX, ..Default::default() }
    }

    /// The counts with each share held to what holds it, whatever a
    /// report claimed: the cache's reads to the prompt, its writes to the
    /// rest of it, the hour-long writes to the writes, the audio to the
    /// prompt and to the completion. Every reader of a usage (chat's,
    /// and the translators' own) ends here.
    pub fn held(self) -> Usage {
        let cached = self.cached.min(self.prompt);
        let cache_write = self.cache_write.min(self.prompt - cached);
        Usage {
            cached,
            cache_write,
            cache_write_1h: self.cache_write_1h.min(cache_write),
            audio_prompt: self.audio_prompt.min(self.prompt),
            audio_completion: self.audio_completion.min(self.completion),
            ..self
        }
    }
}

/// The service tier an answer reports (OpenAI's top-level `service_tier`,
/// Anthropic's `usage.service_tier`), as far as it changes the price:
/// `priority` costs more than standard, `flex` half (OpenAI); any other
/// name (`default`, `auto`, `standard`, `scale`) is standard. Ordered by
/// price: reports merged take the dearest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Flex,
    #[default]
    Standard,
    Priority,
}

impl Tier {
    pub fn of(name: &[u8]) -> Tier {
        match name {
            b"priority" => Tier::Priority,
            b"flex" => Tier::Flex,
            _ => Tier::Standard,
        }
    }
}

/// The counts a `usage` object reports, by their names in OpenAI's and
/// Anthropic's answers, each as last reported. Anthropic streams report in
/// pieces (`message_start` the input, `message_delta` the output so far),
/// so a stream's reports are merged ([`Reported::merge`]) before they are
/// read as a [`Usage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reported {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// OpenAI's `total_tokens`: read only to know an embeddings answer,
    /// whose usage has no completion (its total is its prompt).
    pub total_tokens: Option<u64>,
    /// OpenAI's `prompt_tokens_details.cached_tokens` (chat) or
    /// `input_tokens_details.cached_tokens` (Responses).
    pub cached_tokens: Option<u64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Anthropic's `cache_read_input_tokens`.
    pub cache_read: Option<u64>,
    /// Anthropic's `cache_creation_input_tokens`.
    pub cache_write: Option<u64>,
    /// Anthropic's `cache_creation.ephemeral_1h_input_tokens`: a share of
    /// `cache_write`.
    pub cache_write_1h: Option<u64>,
    /// OpenAI's `prompt_tokens_details.audio_tokens` and
    /// `completion_tokens_details.audio_tokens`.
    pub audio_prompt: Option<u64>,
    pub audio_completion: Option<u64>,
    /// The `service_tier` reported (the answer's, or its usage's).
    pub tier: Option<Tier>,
    /// A count was there but not believable (negative, fractional, a
    /// string, past [`USAGE_TOKENS_MAX`]): the whole report is set aside.
    pub unreadable: bool,
}

impl Reported {
    /// Takes a later report of the same answer: each count becomes the
    /// largest reported. A stream's counts only grow (Anthropic's
    /// `message_delta` and vLLM's per-chunk usage are cumulative), so a
    /// smaller later figure, such as a last chunk reporting 0 after
    /// hundreds of tokens, is not one to bill by.
    pub fn merge(&mut self, newer: Reported) {
        let take = |old: &mut Option<u64>, new: Option<u64>| {
            if let Some(n) = new {
                *old = Some(old.map_or(n, |o| o.max(n)));
            }
        };
        take(&mut self.prompt_tokens, newer.prompt_tokens);
        take(&mut self.completion_tokens, newer.completion_tokens);
        take(&mut self.total_tokens, newer.total_tokens);
        take(&mut self.cached_tokens, newer.cached_tokens);
        take(&mut self.input_tokens, newer.input_tokens);
        take(&mut self.output_tokens, newer.output_tokens);
        take(&mut self.cache_read, newer.cache_read);
        take(&mut self.cache_write, newer.cache_write);
        take(&mut self.cache_write_1h, newer.cache_write_1h);
        take(&mut self.audio_prompt, newer.audio_prompt);
        take(&mut self.audio_completion, newer.audio_completion);
        if let Some(t) = newer.tier {
            self.tier = Some(self.tier.map_or(t, |old| old.max(t)));
        }
        self.unreadable |= newer.unreadable;
    }

    /// The usage, when the report holds one: OpenAI's chat counts, or
    /// Anthropic's (whose input excludes the cache's tokens), or the
    /// Responses API's (whose input includes the cached tokens it details).
    pub fn usage(&self) -> Option<Usage> {
        if self.unreadable {
            return None;
        }
        if let (Some(prompt), Some(completion)) = (self.prompt_tokens, self.completion_tokens) {
            // Cache writes beside OpenAI's counts: the gateway's own chat
            // form of an answer from a provider that bills them (Bedrock's
            // Claude), a share of the prompt like the cached tokens.
            return Some(
                Usage {
                    prompt,
                    completion,
                    cached: self.cached_tokens.unwrap_or(0),
                    cache_write: self.cache_write.unwrap_or(0),
                    cache_write_1h: self.cache_write_1h.unwrap_or(0),
                    audio_prompt: self.audio_prompt.unwrap_or(0),
                    audio_completion: self.audio_completion.unwrap_or(0),
                    tier: self.tier.unwrap_or_default(),
                    prompt_unreported: false,
                }
                .held(),
            );
        }
        // An embeddings answer: no completion, and a total that is the
        // prompt (a chat answer missing its completion count is not this,
        // and is billed as one that reported none).
        if let (Some(prompt), None, Some(total)) = (self.prompt_tokens, self.completion_tokens, self.total_tokens) {
            if total == prompt {
                return Some(Usage { prompt, completion: 0, tier: self.tier.unwrap_or_default(), ..Usage::default() });
            }
        }
        // Without its input count, a report's prompt is not the
        // provider's bill: both APIs always give one (Anthropic's in
        // `message_start`), and one missing (`"usage": null` there, then a
        // `message_delta` with output only) billed a 100K-token prompt as
        // 0 (found by a review). The gateway then counts the prompt, and
        // the output reported is kept (`prompt_unreported`): dropping it
        // too billed the visible text alone, never the reasoning behind
        // it. A report of neither, or of no output, is none.
        let output = self.output_tokens.or(self.completion_tokens);
        let (input, prompt_unreported) = match (self.input_tokens, self.prompt_tokens, output) {
            (Some(input), ..) => (input, false),
            (None, None, Some(1..)) => (0, true),
            _ => return None,
        };
        let (read, write) = (self.cache_read.unwrap_or(0), self.cache_write.unwrap_or(0));
        // Cached tokens detailed inside `input_tokens` (Responses) are a
        // share of it, never more; of a prompt not reported they are kept
        // as they are (the gateway's count, which replaces the prompt, is
        // held to at least the cache's shares: `forward::estimate_usage`).
        let detailed = self.cached_tokens.unwrap_or(0);
        let detailed = if prompt_unreported { detailed } else { detailed.min(input) };
        let cached = read.saturating_add(detailed);
        let audio = self.audio_prompt.unwrap_or(0);
        // A prompt not reported is at least every share the report gave
        // of it: a floor, which the gateway's count replaces where larger,
        // and which holds the shares within the prompt as every report's
        // are (found by the answer reader's fuzz target).
        let prompt = match prompt_unreported {
            true => cached.saturating_add(write).max(audio),
            false => input.saturating_add(read).saturating_add(write),
        };
        Some(Usage {
            prompt,
            completion: output.unwrap_or(0),
            cached,
            cache_write: write,
            // A share of the writes, never more.
            cache_write_1h: self.cache_write_1h.unwrap_or(0).min(write),
            // Shares, held to what they are shares of.
            audio_prompt: audio.min(prompt),
            audio_completion: self.audio_completion.unwrap_or(0).min(output.unwrap_or(0)),
            tier: self.tier.unwrap_or_default(),
            prompt_unreported,
        })
    }
}

/// What the gateway reads of a provider's answer (a chat completion, an
/// Anthropic message, or one event of either's stream).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnswerFacts {
    /// What the top-level `usage` object (or, in Anthropic's
    /// `message_start`, the message's) reports.
    pub reported: Reported,
    /// A `usage` object was there.
    pub has_usage: bool,
    /// A top-level `choices` array with no element: the usage chunk that
    /// `stream_options.include_usage` asks for.
    pub no_choices: bool,
    /// Each choice's `finish_reason` (top-level `choices` only), or
    /// Anthropic's `stop_reason` (the message's, or a `message_delta`'s),
    /// where it is a string.
    pub finish: Finish,
}

/// Why an answer's generations ended, as the answer names them: the
/// first [`Finish::MAX`] distinct reasons, each one of [`FINISH_NAMES`] (a name not
/// among them is `other`, so that what an upstream writes there is never
/// stored or exported as it came).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Finish {
    names: [Option<&'static str>; Finish::MAX],
}

/// The finish and stop reasons OpenAI's, Anthropic's and the gateway's
/// own answers use. Their places are a wire format (the answer cache's
/// shared tier keeps reasons as them): append only.
pub const FINISH_NAMES: [&str; 15] = [
    "stop",
    "length",
    "tool_calls",
    "content_filter",
    "function_call",
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "max_output_tokens",
    "model_context_window_exceeded",
    "error",
    "other",
];

impl Finish {
    pub const MAX: usize = 4;

    /// Adds a reason (its raw JSON string, quotes excluded); past
    /// [`Finish::MAX`], none.
    pub fn push_raw(&mut self, raw: &[u8]) {
        let name = FINISH_NAMES.iter().find(|n| n.as_bytes() == raw).copied().unwrap_or("other");
        self.push(name);
    }

    /// Adds a reason not already there (an upstream that repeats one on a
    /// later chunk, or several choices that stopped alike, give it once).
    pub fn push(&mut self, name: &'static str) {
        if self.iter().any(|n| n == name) {
            return;
        }
        if let Some(slot) = self.names.iter_mut().find(|n| n.is_none()) {
            *slot = Some(name);
        }
    }

    /// A stream's later events add their reasons to the earlier ones'.
    pub fn merge(&mut self, later: Finish) {
        for name in later.iter() {
            self.push(name);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.names.iter().map_while(|n| *n)
    }

    pub fn is_empty(&self) -> bool {
        self.names[0].is_none()
    }

    /// Each reason as its place in [`FINISH_NAMES`] (for a compact copy).
    pub fn codes(&self) -> impl Iterator<Item = u8> + '_ {
        let other = FINISH_NAMES.iter().position(|k| *k == "other").unwrap_or(0);
        self.iter().map(move |n| FINISH_NAMES.iter().position(|k| *k == n).unwrap_or(other) as u8)
    }

    /// The reasons of [`Finish::codes`]; `None` for a code that names none.
    pub fn from_codes(codes: &[u8]) -> Option<Finish> {
        let mut f = Finish::default();
        for &c in codes {
            f.push(FINISH_NAMES.get(usize::from(c))?);
        }
        Some(f)
    }

    /// Each reason renamed (a translation's names for the client's API).
    pub fn map(&self, f: impl Fn(&'static str) -> &'static str) -> Finish {
        let mut out = Finish::default();
        for name in self.iter() {
            out.push(f(name));
        }
        out
    }
}

impl AnswerFacts {
    pub fn usage(&self) -> Option<Usage> {
        self.reported.usage()
    }
}

/// Whether `doc` has a `"usage"` key anywhere: a prefilter for streams,
/// whose events mostly carry none. Exact with respect to [`read_answer`],
/// which matches keys as written (an escaped `"us\u0061ge"` is not
/// `usage` to either).
pub fn mentions_usage(doc: &[u8]) -> bool {
    static USAGE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));
    USAGE.find(doc).is_some()
}

/// A reported token count above this is not believed (no model reads or
/// writes four billion tokens in one request); the answer is then billed
/// as if it had reported none.
pub const USAGE_TOKENS_MAX: u64 = 1 << 32;

/// Reads a provider's answer by its structure: only the top level is
/// walked (and, for Anthropic's `message_start`, the message's), so a tool
/// named `prompt_tokens`, a `usage` key inside a message or tool
/// arguments, or a nested `choices` cannot be taken for the real ones, and
/// whitespace, key order and escapes change nothing. `None` when `doc` is
/// not a JSON object.
pub fn read_answer(doc: &[u8]) -> Option<AnswerFacts> {
    let mut c = Cursor { buf: doc, pos: 0, depth_max: usize::MAX };
    c.ws();
    let mut facts = AnswerFacts::default();
    answer_object(&mut c, true, &mut facts)?;
    c.ws();
    (c.pos == doc.len()).then_some(facts)
}

/// The members of a JSON object's top level whose keys (as written) are
/// among `names`, picked out of the object fed in pieces of any size, in
/// memory bounded by [`TopMembers::BYTES_MAX`]: for an answer too large to
/// keep whole, whose `usage` must still be read by structure (a tenant can
/// make an answer of tens of megabytes, with `n` and `top_logprobs`).
/// [`TopMembers::document`] gives them back as an object of their own, which
/// [`read_answer`] and `responses::response_id` read as they would have
/// read the whole: a key inside a string or a nested object is never one of
/// them, whatever the pieces' bounds.
#[derive(Debug)]
pub struct TopMembers {
    names: &'static [&'static [u8]],
    /// Open objects and arrays.
    depth: u32,
    in_string: bool,
    /// The byte before, in a string, was a backslash that escapes this one.
    escaped: bool,
    /// At the top level, where the next string is a key.
    want_key: bool,
    /// The key being read (raw), while `keying`.
    key: [u8; 16],
    key_len: usize,
    keying: bool,
    /// The last key read is one of `names`: its value is taken at `:`.
    matched: bool,
    /// The members taken, written `"key":value,...`.
    out: Vec<u8>,
    capturing: bool,
    /// The top object has closed.
    done: bool,
    /// Not a JSON object, or more than `BYTES_MAX` taken: nothing is given.
    broken: bool,
}

impl TopMembers {
    /// The most the taken members may hold (a usage object is a few
    /// hundred bytes).
    pub const BYTES_MAX: usize = 64 * 1024;

    pub fn new(names: &'static [&'static [u8]]) -> TopMembers {
        TopMembers {
            names,
            depth: 0,
            in_string: false,
            escaped: false,
            want_key: false,
            key: [0; 16],
            key_len: 0,
            keying: false,
            matched: false,
            out: Vec::new(),
            capturing: false,
            done: false,
            broken: false,
        }
    }

    /// The next piece of the document.
    pub fn feed(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() && !self.broken {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    self.take(&data[i..i + 1]);
                    i += 1;
                    continue;
                }
                // A string's bytes up to its next quote or backslash.
                let rest = &data[i..];
                let n = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                self.take(&rest[..n]);
                i += n;
                let Some(&b) = data.get(i) else { break };
                i += 1;
                if b == b'\\' {
                    self.take(b"\\");
                    self.escaped = true;
                } else {
                    self.in_string = false;
                    if self.keying {
                        // A key's quotes are written with its member.
                        self.keying = false;
                        let key = &self.key[..self.key_len.min(self.key.len())];
                        self.matched = self.key_len <= self.key.len() && self.names.contains(&key);
                    } else {
                        self.take(b"\"");
                    }
                }
                continue;
            }
            let b = data[i];
            i += 1;
            if self.done {
                // Only whitespace may follow the object.
                self.broken |= !matches!(b, b' ' | b'\t' | b'\n' | b'\r');
                continue;
            }
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => self.take(&[b]),
                // A string outside the object.
                b'"' if self.depth == 0 => self.broken = true,
                b'"' => {
                    self.in_string = true;
                    if self.depth == 1 && self.want_key {
                        self.want_key = false;
                        self.keying = true;
                        self.key_len = 0;
                    } else {
                        self.take(&[b]);
                    }
                }
                b'{' | b'[' => {
                    if self.depth == 0 {
                        self.broken |= b != b'{';
                        self.want_key = true;
                    } else {
                        self.take(&[b]);
                    }
                    self.depth += 1;
                }
                b'}' | b']' if self.depth == 1 => {
                    self.broken |= b != b'}';
                    self.capturing = false;
                    self.depth = 0;
                    self.done = true;
                }
                b'}' | b']' if self.depth > 1 => {
                    self.take(&[b]);
                    self.depth -= 1;
                }
                b',' if self.depth == 1 => {
                    self.capturing = false;
                    self.want_key = true;
                }
                b':' if self.depth == 1 && !self.capturing => {
                    if std::mem::take(&mut self.matched) {
                        if !self.out.is_empty() {
                            self.out.push(b',');
                        }
                        self.out.push(b'"');
                        self.out.extend_from_slice(&self.key[..self.key_len]);
                        self.out.extend_from_slice(b"\":");
                        self.capturing = true;
                    }
                }
                // A scalar, or a byte out of place: outside the object
                // nothing but whitespace may stand.
                _ if self.depth == 0 => self.broken = true,
                _ => self.take(&[b]),
            }
        }
    }

    /// Bytes of a key being read, or of a member's value being taken.
    fn take(&mut self, bytes: &[u8]) {
        if self.keying {
            let at = self.key_len.min(self.key.len());
            let n = bytes.len().min(self.key.len() - at);
            self.key[at..at + n].copy_from_slice(&bytes[..n]);
            // Past the buffer, the length still counts: no name is that long.
            self.key_len += bytes.len();
        } else if self.capturing {
            if self.out.len() + bytes.len() > Self::BYTES_MAX {
                // Given up: the room goes too.
                self.broken = true;
                self.out = Vec::new();
                return;
            }
            self.out.extend_from_slice(bytes);
        }
    }

    /// The members taken, as one object (`{"usage":{...},"id":"..."}`);
    /// `None` when the document was not one JSON object, ended early, or
    /// its members passed the bound.
    pub fn document(&self) -> Option<Vec<u8>> {
        if self.broken || !self.done || self.in_string {
            return None;
        }
        let mut doc = Vec::with_capacity(self.out.len() + 2);
        doc.push(b'{');
        doc.extend_from_slice(&self.out);
        doc.push(b'}');
        Some(doc)
    }
}

/// One answer object at the cursor: its `usage`, its `choices` (at the top
/// level), and the `message` of a `message_start` event.
fn answer_object(c: &mut Cursor<'_>, top: bool, facts: &mut AnswerFacts) -> Option<()> {
    members(c, &mut |c, key| match key {
        b"usage" if c.peek() == Some(b'{') => {
            facts.has_usage = true;
            usage_object(c, Within::Usage, &mut facts.reported)
        }
        // Anthropic's `message_start` carries its message; a Responses
        // stream's `response.completed` its response.
        b"message" | b"response" if top && c.peek() == Some(b'{') => answer_object(c, false, facts),
        // OpenAI's chat answer and chunk, and a Responses response.
        b"service_tier" if c.peek() == Some(b'"') => service_tier(c, &mut facts.reported),
        b"choices" if top && c.peek() == Some(b'[') => {
            let start = c.pos;
            c.pos += 1;
            c.ws();
            facts.no_choices = c.peek() == Some(b']');
            c.pos = start;
            or_skipped(c, |c| {
                elements(c, &mut |c| {
                    if c.peek() != Some(b'{') {
                        return c.value().ok();
                    }
                    members(c, &mut |c, key| match key {
                        b"finish_reason" if c.peek() == Some(b'"') => finish_reason(c, &mut facts.finish),
                        _ => c.value().ok(),
                    })
                })
            })
        }
        // Anthropic's message (`null` until it ends, in a stream's
        // `message_start`), and a `message_delta`'s.
        b"stop_reason" if c.peek() == Some(b'"') => finish_reason(c, &mut facts.finish),
        b"delta" if top && c.peek() == Some(b'{') => or_skipped(c, |c| {
            members(c, &mut |c, key| match key {
                b"stop_reason" if c.peek() == Some(b'"') => finish_reason(c, &mut facts.finish),
                _ => c.value().ok(),
            })
        }),
        _ => c.value().ok(),
    })
}

/// A `service_tier` string at the cursor, into the report: the dearest of
/// those reported.
fn service_tier(c: &mut Cursor<'_>, r: &mut Reported) -> Option<()> {
    let span = c.string().ok()?;
    let raw = span.get(c.buf);
    // A name written with escapes is read as the dearest it could be.
    let t = if raw.contains(&b'\\') { Tier::Priority } else { Tier::of(raw) };
    r.tier = Some(r.tier.map_or(t, |old| old.max(t)));
    Some(())
}

/// Walks a value with `walk`; where that fails, skips it as before the
/// walk was added (an answer whose usage was read despite an odd choice
/// or delta still is).
fn or_skipped(c: &mut Cursor<'_>, walk: impl FnOnce(&mut Cursor<'_>) -> Option<()>) -> Option<()> {
    let start = c.pos;
    if walk(c).is_some() {
        return Some(());
    }
    c.pos = start;
    c.value().ok()
}

/// A reason's string at the cursor, into `finish`.
fn finish_reason(c: &mut Cursor<'_>, finish: &mut Finish) -> Option<()> {
    let span = c.string().ok()?;
    finish.push_raw(span.get(c.buf));
    Some(())
}

/// Which object of a usage report [`usage_object`] walks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Within {
    /// The `usage` object itself.
    Usage,
    /// OpenAI's `prompt_tokens_details` (chat) or `input_tokens_details`
    /// (Responses).
    Details,
    /// OpenAI's `completion_tokens_details`.
    CompletionDetails,
    /// Anthropic's `cache_creation`: the writes by how long they last.
    CacheCreation,
}

/// Walks one `usage` object (or one of the objects [`Within`] names inside
/// it), taking the counts it knows and skipping every other value whole.
fn usage_object(c: &mut Cursor<'_>, within: Within, r: &mut Reported) -> Option<()> {
    use Within::{CacheCreation, CompletionDetails, Details, Usage};
    members(c, &mut |c, key| {
        let slot = match (within, key) {
            // OpenAI's chat and Responses names for the cache's share.
            (Usage, b"prompt_tokens_details" | b"input_tokens_details") if c.peek() == Some(b'{') => {
                return usage_object(c, Details, r)
            }
            (Usage, b"cache_creation") if c.peek() == Some(b'{') => return usage_object(c, CacheCreation, r),
            (Usage, b"completion_tokens_details") if c.peek() == Some(b'{') => {
                return usage_object(c, CompletionDetails, r)
            }
            // Anthropic's, in its usage.
            (Usage, b"service_tier") if c.peek() == Some(b'"') => return service_tier(c, r),
            (Usage, b"prompt_tokens") => &mut r.prompt_tokens,
            (Usage, b"completion_tokens") => &mut r.completion_tokens,
            (Usage, b"total_tokens") => &mut r.total_tokens,
            (Usage, b"input_tokens") => &mut r.input_tokens,
            (Usage, b"output_tokens") => &mut r.output_tokens,
            (Usage, b"cache_read_input_tokens") => &mut r.cache_read,
            (Usage, b"cache_creation_input_tokens") => &mut r.cache_write,
            (Details, b"cached_tokens") => &mut r.cached_tokens,
            (Details, b"audio_tokens") => &mut r.audio_prompt,
            (CompletionDetails, b"audio_tokens") => &mut r.audio_completion,
            (CacheCreation, b"ephemeral_1h_input_tokens") => &mut r.cache_write_1h,
            _ => return c.value().ok(),
        };
        let start = c.pos;
        c.value().ok()?;
        match &c.buf[start..c.pos] {
            // `null` counts as not reported (vLLM writes details so).
            b"null" => {}
            raw => match count(raw) {
                Some(n) => *slot = Some(n),
                None => r.unreadable = true,
            },
        }
        Some(())
    })
}

/// Where a stream event's text sits, read by structure: the content block
/// (Anthropic's top-level `index`), the choice (`choices[].index`) and the
/// tool call (`choices[].delta.tool_calls[].index`) of the first choice,
/// whether the event ends its choice or message (a `finish_reason`, or a
/// `message_delta`'s `stop_reason`, that is a string), and whether it opens
/// a content block. Indexes found anywhere else (inside a tool's
/// arguments object, say) are not taken: a channel keyed by them could be
/// forged to release held text early.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventShape {
    pub block: Option<u64>,
    pub choice: Option<u64>,
    pub tool: Option<u64>,
    pub last: bool,
    pub block_start: bool,
    /// Written as no provider writes its events, so that a client may
    /// read it otherwise than this walk: a key of the places read written
    /// with escapes, an index that is not a plain whole number (found by a
    /// review: an `"index":0.0` is choice 0 to a client, and was keyed
    /// apart from it).
    pub odd: bool,
    /// More than one choice in the event (only the first is read).
    pub several: bool,
    /// The strings of the first choice's delta that name what the delta
    /// belongs to, which a client that adds deltas up joins as text (its
    /// `role`; its first tool call's `id` and function `name`): an event
    /// made again to carry more of the same text must not say them twice
    /// (`"assistantassistant"`).
    pub names: [crate::span::Span; 3],
    /// Where the text a client shows can be (the first choice's `delta`
    /// object and `text` string; Anthropic's `delta` and `content_block`
    /// objects): a text field elsewhere in the event (an unknown event's
    /// `text`) is not text of the answer's, to hold or to join (found by a
    /// review: such a decoy, made the text a seam went on from, hid a
    /// split address).
    pub shown: [crate::span::Span; 2],
    /// The first choice's tool calls, up to eight: each one's index and
    /// where it lies, so that a call's arguments are placed by their own
    /// call's index in an event that carries several.
    pub calls: [(Option<u64>, crate::span::Span); 8],
}

impl EventShape {
    /// The index of the tool call whose bytes hold `raw`; the first call's
    /// where none does.
    pub fn call_of(&self, raw: &std::ops::Range<usize>) -> Option<u64> {
        let within = |s: &crate::span::Span| s.start as usize <= raw.start && raw.end <= s.end as usize;
        self.calls.iter().find(|(_, s)| !s.is_empty() && within(s)).map_or(self.tool, |&(i, _)| i)
    }

    /// Whether the bytes at `raw` lie where the text a client shows can be.
    pub fn is_shown(&self, raw: &std::ops::Range<usize>) -> bool {
        self.shown.iter().any(|s| !s.is_empty() && s.start as usize <= raw.start && raw.end <= s.end as usize)
    }
}

/// Whether a key may be one [`event_shape`] reads, written with escapes:
/// the shortest (`id`) takes 7 bytes so (`\u0069d`), and every escape
/// has a backslash. (Looked for in every key of every event, the
/// backslash cost 2,500 instructions a streamed answer.)
#[inline]
fn escaped_key(key: &[u8]) -> bool {
    key.len() >= 7 && key.contains(&b'\\')
}

/// Reads an event's [`EventShape`]; `None` when it is not a JSON object.
pub fn event_shape(doc: &[u8]) -> Option<EventShape> {
    let mut c = Cursor { buf: doc, pos: 0, depth_max: usize::MAX };
    c.ws();
    let mut shape = EventShape::default();
    let mut odd = false;
    let index = |c: &mut Cursor<'_>, odd: &mut bool| {
        let n = number(c)?;
        *odd |= n.is_none();
        Some(n)
    };
    let mut shown = 0;
    let mut show = |shape: &mut EventShape, from: usize, to: usize| {
        if shown < shape.shown.len() {
            shape.shown[shown] = crate::span::Span::new(from, to);
            shown += 1;
        }
    };
    members(&mut c, &mut |c, key| {
        let from = c.pos;
        match key {
            b"index" => shape.block = index(c, &mut odd)?,
            b"type" if c.peek() == Some(b'"') => {
                let t = c.string().ok()?;
                shape.block_start = t.get(c.buf) == b"content_block_start";
            }
            b"delta" if c.peek() == Some(b'{') => {
                members(c, &mut |c, key| {
                    if key == b"stop_reason" && c.peek() == Some(b'"') {
                        shape.last = true;
                    } else {
                        odd |= escaped_key(key);
                    }
                    c.value().ok()
                })?;
                show(&mut shape, from, c.pos);
            }
            b"content_block" if c.peek() == Some(b'{') => {
                c.value().ok()?;
                show(&mut shape, from, c.pos);
            }
            b"choices" if c.peek() == Some(b'[') => {
                let mut n = 0;
                elements(c, &mut |c| {
                    n += 1;
                    if n > 1 || c.peek() != Some(b'{') {
                        return c.value().ok();
                    }
                    members(c, &mut |c, key| {
                        let from = c.pos;
                        match key {
                            // An index that is not a plain whole number is
                            // no choice the client asked for.
                            b"index" => {
                                shape.choice = Some(index(c, &mut odd)?.unwrap_or(u64::MAX));
                                Some(())
                            }
                            b"text" if c.peek() == Some(b'"') => {
                                c.value().ok()?;
                                show(&mut shape, from, c.pos);
                                Some(())
                            }
                            b"finish_reason" => {
                                shape.last |= c.peek() == Some(b'"');
                                c.value().ok()
                            }
                            b"delta" if c.peek() == Some(b'{') => {
                                members(c, &mut |c, key| {
                                    match key {
                                        b"role" if c.peek() == Some(b'"') => {
                                            shape.names[0] = c.string().ok()?;
                                            Some(())
                                        }
                                        // Several calls in one event: each
                                        // call's text is read by its own index,
                                        // which this walk (the first) does not.
                                        b"tool_calls" if c.peek() == Some(b'[') => {
                                            let mut calls = 0;
                                            elements(c, &mut |c| {
                                                calls += 1;
                                                if calls > shape.calls.len() || c.peek() != Some(b'{') {
                                                    return c.value().ok();
                                                }
                                                let (first, from) = (calls == 1, c.pos);
                                                let mut at = None;
                                                members(c, &mut |c, key| match key {
                                                    b"index" => {
                                                        at = index(c, &mut odd)?;
                                                        if first {
                                                            shape.tool = at;
                                                        }
                                                        Some(())
                                                    }
                                                    b"id" if first && c.peek() == Some(b'"') => {
                                                        shape.names[1] = c.string().ok()?;
                                                        Some(())
                                                    }
                                                    b"function" if c.peek() == Some(b'{') => {
                                                        members(c, &mut |c, key| {
                                                            if first && key == b"name" && c.peek() == Some(b'"') {
                                                                shape.names[2] = c.string().ok()?;
                                                                return Some(());
                                                            }
                                                            odd |= escaped_key(key);
                                                            c.value().ok()
                                                        })
                                                    }
                                                    _ => {
                                                        odd |= escaped_key(key);
                                                        c.value().ok()
                                                    }
                                                })?;
                                                shape.calls[calls - 1] = (at, crate::span::Span::new(from, c.pos));
                                                Some(())
                                            })?;
                                            odd |= calls > 1;
                                            Some(())
                                        }
                                        _ => {
                                            odd |= escaped_key(key);
                                            c.value().ok()
                                        }
                                    }
                                })?;
                                show(&mut shape, from, c.pos);
                                Some(())
                            }
                            _ => {
                                odd |= escaped_key(key);
                                c.value().ok()
                            }
                        }
                    })
                })?;
                shape.several |= n > 1;
            }
            _ => {
                // Only a key not read here can be one written with escapes.
                odd |= escaped_key(key);
                c.value().ok()?
            }
        }
        Some(())
    })?;
    c.ws();
    shape.odd = odd;
    (c.pos == doc.len()).then_some(shape)
}

/// Walks an object at the cursor, calling `f` with each key; `f` consumes
/// the member's value.
pub(crate) fn members(c: &mut Cursor<'_>, f: &mut dyn FnMut(&mut Cursor<'_>, &[u8]) -> Option<()>) -> Option<()> {
    c.expect(b'{').ok()?;
    c.ws();
    if c.peek() == Some(b'}') {
        c.pos += 1;
        return Some(());
    }
    loop {
        c.ws();
        let key = c.string().ok()?;
        c.ws();
        c.expect(b':').ok()?;
        c.ws();
        let buf = c.buf;
        f(c, key.get(buf))?;
        c.ws();
        match c.bump()? {
            b',' => continue,
            b'}' => return Some(()),
            _ => return None,
        }
    }
}

/// Walks an array at the cursor, calling `f` at each element; `f` consumes
/// it.
pub(crate) fn elements(c: &mut Cursor<'_>, f: &mut dyn FnMut(&mut Cursor<'_>) -> Option<()>) -> Option<()> {
    c.expect(b'[').ok()?;
    c.ws();
    if c.peek() == Some(b']') {
        c.pos += 1;
        return Some(());
    }
    loop {
        c.ws();
        f(c)?;
        c.ws();
        match c.bump()? {
            b',' => continue,
            b']' => return Some(()),
            _ => return None,
        }
    }
}

/// A non-negative integer value at the cursor (`None` inside for any other
/// value, consumed all the same). `-0` is `0`, as JSON parsers read it: an
/// index written `-0` must not key a channel apart from `0` (a stream's
/// text split between two holds would be scanned in halves).
pub(crate) fn number(c: &mut Cursor<'_>) -> Option<Option<u64>> {
    let start = c.pos;
    c.value().ok()?;
    let raw = &c.buf[start..c.pos];
    let raw = raw.strip_prefix(b"-").filter(|r| !r.is_empty() && r.iter().all(|&b| b == b'0')).unwrap_or(raw);
    Some(if raw.iter().all(u8::is_ascii_digit) { std::str::from_utf8(raw).ok()?.parse().ok() } else { None })
}

/// A token count: a non-negative integer within [`USAGE_TOKENS_MAX`].
fn count(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > 10 || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse::<u64>().ok().filter(|&n| n <= USAGE_TOKENS_MAX)
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
    write_made_head(out, b"chatcmpl-filtered", b"chat.completion", created, model);
    out.extend_from_slice(
        b",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,\"refusal\":",
    );
    write_json_string(out, refusal);
    out.extend_from_slice(b"},\"finish_reason\":\"content_filter\"}]");
    write_made_usage(out, usage);
    out.put_u8(b'}');
}

/// The events that end a stream the gateway stops: a last chunk with
/// `finish_reason` (`content_filter` when a guardrail withheld the rest,
/// `length` at a request ceiling), then `[DONE]`.
pub fn write_stream_end(out: &mut BytesMut, model: &str, created: u64, finish_reason: &str) {
    let choice = b",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":";
    write_made_stream_end(out, (b"chatcmpl-filtered", b"chat.completion.chunk", choice), model, created, finish_reason);
}

/// A legacy completion (`POST /v1/completions`) the gateway withheld: a
/// `text_completion` with empty text and `finish_reason`
/// `content_filter`, the refusal in `tollgate_refusal` (the legacy API has
/// no refusal field), and the usage that was still spent.
pub fn write_filtered_text_completion(
    out: &mut BytesMut,
    model: &str,
    created: u64,
    refusal: &str,
    usage: Option<(u64, u64)>,
) {
    write_made_head(out, b"cmpl-filtered", b"text_completion", created, model);
    out.extend_from_slice(
        b",\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"content_filter\"}],\"tollgate_refusal\":",
    );
    write_json_string(out, refusal);
    write_made_usage(out, usage);
    out.put_u8(b'}');
}

/// [`write_stream_end`] for a legacy completion stream: a last
/// `text_completion` chunk with empty text and `finish_reason`, then
/// `[DONE]`.
pub fn write_text_stream_end(out: &mut BytesMut, model: &str, created: u64, finish_reason: &str) {
    let choice = b",\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":";
    write_made_stream_end(out, (b"cmpl-filtered", b"text_completion", choice), model, created, finish_reason);
}

/// The opening of an object the gateway makes itself: `{"id", "object",
/// "created", "model"`, left open.
fn write_made_head(out: &mut BytesMut, id: &[u8], object: &[u8], created: u64, model: &str) {
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(id);
    out.extend_from_slice(b"\",\"object\":\"");
    out.extend_from_slice(object);
    out.extend_from_slice(b"\",\"created\":");
    out.extend_from_slice(itoa::Buffer::new().format(created).as_bytes());
    out.extend_from_slice(b",\"model\":");
    write_json_string(out, model);
}

/// `,"usage":{...}` of an object the gateway makes, when it has the counts.
fn write_made_usage(out: &mut BytesMut, usage: Option<(u64, u64)>) {
    let Some((prompt, completion)) = usage else { return };
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b",\"usage\":{\"prompt_tokens\":");
    out.extend_from_slice(n.format(prompt).as_bytes());
    out.extend_from_slice(b",\"completion_tokens\":");
    out.extend_from_slice(n.format(completion).as_bytes());
    out.extend_from_slice(b",\"total_tokens\":");
    out.extend_from_slice(n.format(prompt + completion).as_bytes());
    out.put_u8(b'}');
}

/// A stream's last chunk (id, object, and its one choice up to
/// `finish_reason`), then `[DONE]`.
fn write_made_stream_end(
    out: &mut BytesMut,
    (id, object, choice): (&[u8], &[u8], &[u8]),
    model: &str,
    created: u64,
    finish_reason: &str,
) {
    let mut data = BytesMut::new();
    write_made_head(&mut data, id, object, created, model);
    data.extend_from_slice(choice);
    write_json_string(&mut data, finish_reason);
    data.extend_from_slice(b"}]}");
    crate::sse::write_event(out, None, &data);
    out.extend_from_slice(crate::sse::DONE_EVENT);
}

/// The start of a `chat.completion.chunk` the gateway writes for a
/// translated stream: `{"id":..,"object":..,"created":..,"model":..,` (the
/// caller writes the rest).
fn write_chunk_prefix(data: &mut BytesMut, id: &str, created: u64, model: &str) {
    data.extend_from_slice(b"{\"id\":");
    write_json_string(data, id);
    data.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
    data.extend_from_slice(itoa::Buffer::new().format(created).as_bytes());
    data.extend_from_slice(b",\"model\":");
    write_json_string(data, model);
    data.extend_from_slice(b",");
}

/// The usage chunk of a translated stream: no choice, and the usage
/// `usage` writes (the chunk `stream_options.include_usage` asks for).
pub(crate) fn write_usage_chunk(
    out: &mut BytesMut,
    (id, created, model): (&str, u64, &str),
    usage: impl FnOnce(&mut BytesMut),
) {
    let mut data = BytesMut::new();
    write_chunk_prefix(&mut data, id, created, model);
    data.extend_from_slice(b"\"choices\":[],\"usage\":");
    usage(&mut data);
    data.extend_from_slice(b"}");
    crate::sse::write_event(out, None, &data);
}

/// One `chat.completion.chunk` event of one choice: its delta written by
/// `delta`, its `finish_reason` (or `null`).
pub(crate) fn write_chunk(
    out: &mut BytesMut,
    (id, created, model): (&str, u64, &str),
    index: usize,
    delta: impl FnOnce(&mut BytesMut),
    finish: Option<&str>,
) {
    let mut data = BytesMut::with_capacity(256);
    write_chunk_prefix(&mut data, id, created, model);
    data.extend_from_slice(b"\"choices\":[{\"index\":");
    data.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
    data.extend_from_slice(b",\"delta\":");
    delta(&mut data);
    data.extend_from_slice(b",\"finish_reason\":");
    match finish {
        Some(f) => write_json_string(&mut data, f),
        None => data.extend_from_slice(b"null"),
    }
    data.extend_from_slice(b"}]}");
    crate::sse::write_event(out, None, &data);
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

    /// The legacy API's withheld answer and stream end are its own shapes,
    /// JSON whatever the model's name holds.
    #[test]
    fn legacy_withheld_shapes_are_text_completions() {
        let mut out = BytesMut::new();
        write_filtered_text_completion(&mut out, "m\"x", 7, "rule `a`", Some((3, 4)));
        let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["model"], "m\"x");
        assert_eq!(v["choices"][0]["text"], "");
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(v["usage"]["total_tokens"], 7);
        let mut out = BytesMut::new();
        write_text_stream_end(&mut out, "m", 7, "length");
        let text = std::str::from_utf8(&out).expect("utf-8");
        let data = text.strip_prefix("data: ").and_then(|t| t.split("\n\n").next()).expect("an event");
        let v: serde_json::Value = serde_json::from_str(data).expect("JSON");
        assert_eq!(
            (v["object"].as_str(), v["choices"][0]["finish_reason"].as_str()),
            (Some("text_completion"), Some("length"))
        );
        assert!(text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn the_responses_turn_fields_are_read_by_structure() {
        let body = "{ \"store\" : false ,\n \"input\" : [ {\"role\":\"user\",\"content\":\"\\\"previous_response_id\\\": \\\"x\\\"\"} ] , \"previous_response_id\":\"resp_7\", \"model\":\"m\"}";
        let f = scan_request(body.as_bytes()).unwrap();
        assert_eq!(f.store, Some(false));
        assert_eq!(f.previous_response_id.map(|s| s.get(body.as_bytes())), Some(&b"resp_7"[..]));
        let input = f.input.unwrap().get(body.as_bytes());
        assert!(input.starts_with(b"[") && input.ends_with(b"]"), "{}", String::from_utf8_lossy(input));
        let f = scan_request(br#"{"model":"m","input":"x","previous_response_id":null,"store":"yes"}"#).unwrap();
        assert_eq!((f.previous_response_id, f.store), (None, None));
        // Given twice, the gateway and the provider could read different
        // ones: refused.
        for twice in [
            &br#"{"model":"m","input":"a","input":"b"}"#[..],
            br#"{"model":"m","previous_response_id":"a","previous_response_id":"b"}"#,
            br#"{"model":"m","store":true,"store":false}"#,
        ] {
            assert_eq!(scan_request(twice), Err(BodyError::AmbiguousKey));
        }
    }

    /// Input the provider keeps (a stored response, conversation or
    /// prompt template) is noted whatever the spacing and order; `null`,
    /// a text `prompt` (the legacy completions') and the same names inside
    /// the input are not it.
    #[test]
    fn input_stored_at_the_provider_is_noted() {
        let stored = [
            r#"{"model":"m","input":"x","previous_response_id":"resp_1"}"#,
            "{ \"conversation\" :\n \"conv_1\" , \"model\":\"m\",\"input\":\"x\"}",
            r#"{"model":"m","conversation":{"id":"conv_1"},"input":"x"}"#,
            r#"{"prompt" : { "id" : "pmpt_1", "variables": {"a":"b"} },"model":"m"}"#,
            r#"{"model":"m","conversation":null,"conversation":"conv_2"}"#,
        ];
        for body in stored {
            assert!(scan_request(body.as_bytes()).unwrap().stored_input, "{body}");
        }
        let not = [
            r#"{"model":"m","input":"x","previous_response_id":null,"conversation":null,"prompt":null}"#,
            r#"{"model":"m","prompt":"Say this is a test"}"#,
            r#"{"model":"m","prompt":["a","b"]}"#,
            r#"{"model":"m","input":[{"role":"user","content":"x","conversation":"c","prompt":{"id":"p"}}]}"#,
            r#"{"model":"m","metadata":{"previous_response_id":"resp_1"},"input":"x"}"#,
        ];
        for body in not {
            assert!(!scan_request(body.as_bytes()).unwrap().stored_input, "{body}");
        }
    }

    /// Log probabilities asked for, by any of the names the APIs use, and
    /// not when they are turned off.
    #[test]
    fn logprobs_asked_for_are_noted() {
        for body in [
            r#"{"model":"m","logprobs":true}"#,
            r#"{"model":"m","top_logprobs":3,"logprobs":false}"#,
            r#"{"model":"m","prompt":"x","logprobs":5}"#,
            r#"{"model":"m","input":"x","include":["message.output_text.logprobs"]}"#,
            r#"{"model":"m","input":"x","include":["message.output_text.logprob\u0073"]}"#,
            r#"{"model":"m","prompt":"x","logprobs":0}"#,
        ] {
            assert!(scan_request(body.as_bytes()).unwrap().logprobs, "{body}");
        }
        for body in [
            r#"{"model":"m","logprobs":false,"top_logprobs":null}"#,
            r#"{"model":"m","logprobs":null,"top_logprobs":0}"#,
            r#"{"model":"m","input":"x","include":["reasoning.encrypted_content"]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"logprobs"}]}"#,
        ] {
            assert!(!scan_request(body.as_bytes()).unwrap().logprobs, "{body}");
        }
    }

    /// Token IDs in `prompt` and `input` are counted wherever and however
    /// they are written, and a legacy `prompt` array's prompts multiply
    /// the answers (found by a review: fifty prompts under one ceiling
    /// were fifty answers, and an ID prompt was 3 tokens); text, items and
    /// templates give none.
    #[test]
    fn token_ids_and_batched_prompts_are_counted() {
        let cases: [(&str, u64, u64); 12] = [
            (r#"{"model":"m","prompt":[128000, 791,2]}"#, 3, 1),
            ("{\"model\":\"m\",\"prompt\" : [ [1 ,2] ,\n[3] ],\"n\":2}", 3, 4),
            (r#"{"model":"m","prompt":["a","b","c"],"n":2}"#, 0, 6),
            (r#"{"model":"m","prompt":["a",[5,6]]}"#, 2, 2),
            (r#"{"model":"m","prompt":"Say this is a test","best_of":3}"#, 0, 3),
            (r#"{"model":"m","prompt":{"id":"pmpt_1","variables":{"n":[1,2]}}}"#, 0, 1),
            (r#"{"model":"m","prompt":[]}"#, 0, 1),
            (r#"{"model":"m","input":[[1,2,3],[4]]}"#, 4, 1),
            (r#"{"model":"m","input":[-1,2e3]}"#, 2, 1),
            (r#"{"model":"m","input":["a","b"]}"#, 0, 1),
            (r#"{"model":"m","input":[{"role":"user","content":"x 12 34"}]}"#, 0, 1),
            (r#"{"model":"m","messages":[{"role":"user","content":"1 2 3"}],"seed":42}"#, 0, 1),
        ];
        for (body, ids, choices) in cases {
            let f = scan_request(body.as_bytes()).unwrap();
            assert_eq!((f.token_ids, f.choices), (ids, choices), "{body}");
        }
    }

    /// The last message is its element whole, wherever `messages` stands
    /// and however it is spaced; none without messages.
    #[test]
    fn the_last_message_is_its_element_whole() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"model":"m","messages":[]}"#, None),
            (r#"{"model":"m","messages":[{"role":"user","content":"a"}],"messages":[]}"#, None),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"a"}],"messages":[{"role":"user","content":"b"}]}"#,
                Some(r#"{"role":"user","content":"b"}"#),
            ),
            (r#"{"model":"m","input":"x"}"#, None),
            (r#"{"model":"m","messages":[{"role":"user","content":"a"}]}"#, Some(r#"{"role":"user","content":"a"}"#)),
            (
                r#"{"messages" : [ {"role":"system","content":"s"} ,
                  {"content" : "b\"}]" , "role":"user"}  ],"model":"m","tools":[{"type":"function"}]}"#,
                Some(r#"{"content" : "b\"}]" , "role":"user"}"#),
            ),
        ];
        for (body, want) in cases {
            let f = scan_request(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e:?}"));
            assert_eq!(f.last_message.map(|s| s.get(body.as_bytes())), want.map(str::as_bytes), "{body}");
        }
    }

    #[test]
    fn scan_table() {
        let ok: &[(&str, &str, bool)] = &[
            (r#"{"model":"gpt-4o","messages":[]}"#, "gpt-4o", false),
            (r#" { "messages" : [{"role":"user","content":"x\"}{]"}], "model" : "m", "stream": true } "#, "m", true),
            (r#"{"model":"a","stream":false,"k":1.5e3,"x":null,"o":{"k":[1,{"z":"}"}]}}"#, "a", false),
        ];
        for (body, model, stream) in ok {
            let f = scan_request(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e:?}"));
            assert_eq!(f.model.get(body.as_bytes()), model.as_bytes());
            assert_eq!(f.stream, *stream);
            assert!(f.stream_options.is_none() && !f.include_usage);
        }
        for (options, include) in [
            (r#"{"include_usage": true}"#, true),
            (r#"{"include_usage":false}"#, false),
            ("{}", false),
            ("null", false),
            // Nested, or inside a string: not the provider's field.
            (r#"{"x":{"include_usage":true},"include_usage":false}"#, false),
            (r#"{"note":"\"include_usage\": true"}"#, false),
            (r#"{ "x" : [1, {"include_usage": true}], "include_usage" : true }"#, true),
        ] {
            let body = format!(r#"{{"model":"m","stream":true,"stream_options":{options}}}"#);
            let f = scan_request(body.as_bytes()).unwrap();
            assert_eq!(f.stream_options.map(|s| s.get(body.as_bytes())), Some(options.as_bytes()));
            assert_eq!(f.include_usage, include, "{options}");
        }
        let bad: &[(&str, BodyError)] = &[
            ("", BodyError::NotJsonObject),
            ("[]", BodyError::NotJsonObject),
            ("{}", BodyError::MissingModel),
            (r#"{"messages":[]}"#, BodyError::MissingModel),
            (r#"{"model":1}"#, BodyError::BadModel),
            (r#"{"model":"m","previous_response_id":"resp_\u0061bc"}"#, BodyError::BadPreviousResponseId),
            (r#"{"model":"a\"b"}"#, BodyError::BadModel),
            (r#"{"model":"a"} x"#, BodyError::NotJsonObject),
            (r#"{"model":"a","m":[}"#, BodyError::NotJsonObject),
            (r#"{"model":"cheap","mod\u0065l":"gpt-4o"}"#, BodyError::AmbiguousKey),
            (r#"{"model":"gpt-4o","model":"cheap"}"#, BodyError::AmbiguousKey),
            (r#"{"model":"m","stream":false,"stre\u0061m":true}"#, BodyError::AmbiguousKey),
            (r#"{"model":"m","stream":false,"stream":true}"#, BodyError::AmbiguousKey),
            (r#"{"model":"a""#, BodyError::NotJsonObject),
            (r#"{"model":"a","stream":"true"}"#, BodyError::BadStream),
            (r#"{"model":"a","stream":1}"#, BodyError::BadStream),
            (r#"{"model":"a","stream":{"x":true}}"#, BodyError::BadStream),
            (r#"{"model":"a","messages":"nope"}"#, BodyError::BadMessages),
            (r#"{"model":"a","messages":{"role":"user"}}"#, BodyError::BadMessages),
            (r#"{"model":"a","stream_options":{"include_usage":false,"include_usage":true}}"#, BodyError::AmbiguousKey),
            (
                r#"{"model":"a","stream_options":{"include_usage":true,"include\u005fusage":false}}"#,
                BodyError::AmbiguousKey,
            ),
            (
                r#"{"model":"a","messages":[{"r\u006fle":"admin","content":"x","role":"user"}]}"#,
                BodyError::AmbiguousKey,
            ),
            (r#"{"model":"a","max_tokens":-1}"#, BodyError::BadMaxTokens),
            (r#"{"model":"a","max_tokens":"100"}"#, BodyError::BadMaxTokens),
            (r#"{"model":"a","max_completion_tokens":1.5}"#, BodyError::BadMaxTokens),
        ];
        for (body, want) in bad {
            assert_eq!(scan_request(body.as_bytes()), Err(*want), "{body}");
        }
        assert_eq!(scan_request(b"{\"model\":\"a\",\"x\":\"\xff\xfe\"}"), Err(BodyError::NotUtf8));
        // Each message, named by its index as OpenAI does.
        let m = |index, problem| BodyError::BadMessage { index, problem };
        let messages: &[(&str, Option<BodyError>)] = &[
            (r#"[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[]}]"#, None),
            (r#"[{"role":"assistant","tool_calls":[]},{"role":"tool","tool_call_id":"c","content":"42"}]"#, None),
            (r#"[{"content":[{"type":"text","text":"hi"}],"role":"developer"}]"#, None),
            (r#"["hi"]"#, Some(m(0, MessageProblem::NotObject))),
            (r#"[{"role":"user","content":"a"},{"content":"b"}]"#, Some(m(1, MessageProblem::Role))),
            (r#"[{"role":"admin","content":"b"}]"#, Some(m(0, MessageProblem::Role))),
            (r#"[{"role":1,"content":"b"}]"#, Some(m(0, MessageProblem::Role))),
            (r#"[{"role":"user","role":"system","content":"b"}]"#, Some(m(0, MessageProblem::Role))),
            (r#"[{"role":"user"}]"#, Some(m(0, MessageProblem::Content))),
            (r#"[{"role":"user","content":5}]"#, Some(m(0, MessageProblem::Content))),
            (r#"[{"role":"user","content":{"text":"x"}}]"#, Some(m(0, MessageProblem::Content))),
        ];
        for (list, want) in messages {
            let body = format!(r#"{{"model":"a","messages":{list}}}"#);
            assert_eq!(scan_request(body.as_bytes()).err(), *want, "{list}");
        }
        assert_eq!(m(1, MessageProblem::Role).to_string().split(':').next(), Some("messages[1]"));
        let deep = format!(r#"{{"model":"a","x":{}{}}}"#, "[".repeat(200), "]".repeat(200));
        assert_eq!(scan_request(deep.as_bytes()), Err(BodyError::TooDeep));
    }

    /// A provider's own list of models to fall back to (OpenRouter's
    /// `models`, its Messages endpoint's and other aggregators'
    /// `fallbacks`) would let another model answer, outside the team's
    /// models and the gateway's prices: refused, in any shape or spacing;
    /// `null` asks for nothing; other letter case is ambiguous.
    #[test]
    fn a_providers_fallback_list_of_models_is_refused() {
        for body in [
            r#"{"model":"m","models":["openai/o1-pro"],"messages":[]}"#,
            r#"{ "messages" : [ ] , "models" : [ "anthropic/claude-opus-4" , "openai/gpt-5" ], "route" : "fallback", "model" : "m" }"#,
            r#"{"model":"m","fallbacks":[{"model":"claude-opus-4-1"}],"messages":[]}"#,
            r#"{"model":"m","messages":[],"fallbacks":"x"}"#,
            r#"{"model":"m","messages":[],"models":[]}"#,
        ] {
            assert_eq!(scan_request(body.as_bytes()), Err(BodyError::ModelFallbacks), "{body}");
        }
        assert!(scan_request(br#"{"model":"m","messages":[],"models":null,"fallbacks":null}"#).is_ok());
        for body in [r#"{"model":"m","messages":[],"Models":["x"]}"#, r#"{"model":"m","messages":[],"FALLBACKS":[]}"#] {
            assert_eq!(scan_request(body.as_bytes()), Err(BodyError::AmbiguousKey), "{body}");
        }
    }

    /// An aggregator's choice of host (OpenRouter's `provider`: `order`,
    /// `only`, `allow_fallbacks`) picks rates that differ several-fold
    /// while the gateway bills its own price: refused in any spacing;
    /// `null` asks for nothing.
    #[test]
    fn an_aggregators_choice_of_host_is_refused() {
        for body in [
            r#"{"model":"deepseek-r1","provider":{"order":["dearest-host"],"allow_fallbacks":false},"messages":[]}"#,
            r#"{ "messages" : [ ] , "provider" : { "only" : [ "x" ] } , "model" : "m" }"#,
            r#"{"model":"m","input":"hi","provider":"x"}"#,
        ] {
            assert_eq!(scan_request(body.as_bytes()), Err(BodyError::ProviderRouting), "{body}");
        }
        assert!(scan_request(br#"{"model":"m","messages":[],"provider":null}"#).is_ok());
        let body = r#"{"model":"m","messages":[],"Provider":{"order":["x"]}}"#;
        assert_eq!(scan_request(body.as_bytes()), Err(BodyError::AmbiguousKey), "{body}");
        // Inside a message or a tool, `provider` is the tenant's text.
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi","provider":{"order":["x"]}}]}"#;
        assert!(scan_request(body.as_bytes()).is_ok());
    }

    /// Tools the provider runs (and bills per call) are found in each API's
    /// shape, versioned names and any spacing included, and named as
    /// written; the client's own tools, a tool named like a hosted one, and
    /// a hosted type in a nested object are not.
    #[test]
    fn hosted_tools_are_found_by_their_type_at_the_top_level() {
        let table: &[(&str, &[&str])] = &[
            (r#"{"model":"m","tools":[{"type":"function","function":{"name":"web_search"}}]}"#, &[]),
            (r#"{"model":"m","tools":[{"name":"get_weather","input_schema":{"type":"object"}}]}"#, &[]),
            (r#"{"model":"m","tools":[{"type":"custom","name":"x"},{"type":"bash_20250124","name":"bash"}]}"#, &[]),
            (r#"{"model":"m","tools":[{"type":"computer_use_preview"},{"type":"text_editor_20250728"}]}"#, &[]),
            (
                r#"{"model":"m","tools":[{"type":"namespace","name":"multi_agent_v1","tools":[{"type":"function","name":"spawn_agent"}]},{"type":"shell"}]}"#,
                &[],
            ),
            (r#"{"model":"m","tools":null,"web_search_options":null,"mcp_servers":null}"#, &[]),
            (r#"{"model":"m","tools":[{"type":"function","parameters":{"type":"web_search"}}]}"#, &[]),
            (r#"{"model":"m","input":"x","tools":[{"type":"web_search"}]}"#, &["web_search"]),
            (
                r#"{ "tools" : [ {"name":"f","type" : "function"} , { "container" : {"type":"auto"}, "type" : "code_interpreter" } ], "model":"m" }"#,
                &["code_interpreter"],
            ),
            (
                r#"{"model":"claude","tools":[{"type":"web_search_20250305","name":"web_search","max_uses":5},{"type":"web_fetch_20250910","name":"web_fetch"}]}"#,
                &["web_search_20250305", "web_fetch_20250910"],
            ),
            (
                r#"{"model":"m","tools":[{"type":"mcp","server_url":"https://x"}],"tools":[{"type":"file_search"}]}"#,
                &["mcp", "file_search"],
            ),
            (r#"{"model":"gpt-4o-search-preview","web_search_options":{},"messages":[]}"#, &["web_search_options"]),
            (r#"{"model":"claude","mcp_servers":[{"type":"url","url":"https://x"}],"messages":[]}"#, &["mcp_servers"]),
            // OpenRouter's plugins: its web search, paid PDF parsing.
            (r#"{"model":"m","messages":[],"plugins":[{"id":"web","max_results":5}]}"#, &["plugins"]),
            (r#"{"model":"m","messages":[],"plugins" : null}"#, &[]),
            // Compared as written: an escaped type is taken for the provider's.
            (r#"{"model":"m","tools":[{"type":"f\u0075nction","name":"f"}]}"#, &[r"f\u0075nction"]),
        ];
        for (body, names) in table {
            let f = scan_request(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e:?}"));
            assert_eq!(f.hosted_tools, !names.is_empty(), "{body}");
            let mut found = Vec::new();
            hosted_tools(body.as_bytes(), |n| found.push(String::from_utf8_lossy(n).into_owned()));
            assert_eq!(found, *names, "{body}");
        }
        // Found by fuzzing: tools that do not read as JSON between their
        // strings are refused where one looks run by the provider, and
        // name nothing where a second `tools` does.
        let garbled = r#"{"model":"m","tools":[{"type":"web_search" x "a":"b"}]}"#;
        assert_eq!(scan_request(garbled.as_bytes()).map(|_| ()), Err(BodyError::NotJsonObject));
        let twice = r#"{"model":"to","tools":[{"type:""user","modl":"g"}],"tools":[{"type":"user","modl":"g"}]}"#;
        assert!(scan_request(twice.as_bytes()).expect("scans").hosted_tools);
        let mut found = Vec::new();
        hosted_tools(twice.as_bytes(), |n| found.push(n.to_vec()));
        assert_eq!(found, [b"user".to_vec()]);
        // A tool's key written with escapes could hide its type, wherever
        // the 64-byte blocks the scan reads in cut it; a plain type is
        // found wherever they cut it too.
        for pad in 0..140 {
            let hidden =
                format!(r#"{{"model":"m","tools":[{{"name":"{}","t\u0079pe":"web_search"}}]}}"#, "x".repeat(pad));
            assert_eq!(scan_request(hidden.as_bytes()).map(|_| ()), Err(BodyError::AmbiguousKey), "{hidden}");
            let plain = hidden.replace(r"t\u0079pe", "type");
            assert!(scan_request(plain.as_bytes()).expect("scans").hosted_tools, "{plain}");
        }
    }

    /// A key the gateway reads, written in other letter case or with a
    /// letter Go folds to ASCII, is refused: a Go upstream would read it
    /// as the key (found by a review: `"Stream": true` streamed unbilled).
    /// Every key read, in every such spelling; keys it does not read, and
    /// read keys whose values it passes over, go through.
    #[test]
    fn a_read_key_in_another_letter_case_is_refused() {
        for key in READ_KEYS {
            let key = std::str::from_utf8(key).unwrap();
            let mut title = key.to_string();
            title[..1].make_ascii_uppercase();
            for spelled in [key.to_ascii_uppercase(), title, key.replace('s', "\u{17f}"), key.replace('k', "\u{212a}")]
            {
                if spelled == key {
                    continue;
                }
                let body = format!(r#"{{"model":"m","{spelled}":1}}"#);
                assert_eq!(scan_request(body.as_bytes()).map(|_| ()), Err(BodyError::AmbiguousKey), "{body}");
            }
        }
        for body in [
            r#"{"model":"m","tools":null,"Model_id":"x","MODEL_LIST":1,"temperaturE2":1}"#,
            "{\"model\":\"m\",\"\u{17f}\":1,\"\u{212a}\":2,\"metadata\":{\"Stream\":true,\"N\":3}}",
        ] {
            assert!(scan_request(body.as_bytes()).is_ok(), "{body}");
        }
        assert_eq!(scan_request(br#"{"model":"m","N":64}"#).map(|_| ()), Err(BodyError::AmbiguousKey));
    }

    #[test]
    fn the_service_tier_is_read_once_from_the_top_level() {
        for (body, tier) in [
            (r#"{"model":"m","service_tier":"priority"}"#, Some("priority")),
            (r#"{ "service_tier" : "flex" , "model":"m"}"#, Some("flex")),
            (r#"{"model":"m","service_tier":null,"x":{"service_tier":"priority"}}"#, None),
            (r#"{"model":"m","metadata":{"service_tier":"scale"}}"#, None),
            (r#"{"model":"m","service_tier":"pri\u006frity"}"#, Some(r"pri\u006frity")),
        ] {
            let f = scan_request(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e:?}"));
            assert_eq!(f.service_tier.map(|s| s.get(body.as_bytes())), tier.map(str::as_bytes), "{body}");
        }
        let twice = r#"{"model":"m","service_tier":"auto","service_tier":"priority"}"#;
        assert_eq!(scan_request(twice.as_bytes()).map(|_| ()), Err(BodyError::AmbiguousKey));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        /// The scan's look at a body's tools, made as it skips them, finds
        /// what the walk of each element finds: tools of every kind, with
        /// schemas whose types and property names say `type`, a nested
        /// hosted tool, keys in any order, any spacing, escapes in values
        /// and in keys.
        #[test]
        fn the_scan_finds_the_tools_the_walk_finds(
            tools in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "function", "custom", "web_search", "web_search_20250305", "code_interpreter", "mcp",
                        "bash_20250124", "object", "string", "f\\u0075nction", "", "type",
                    ]),
                    proptest::sample::select(vec![
                        "", r#""name":"f","#, r#""parameters":{"type":"object","properties":{"type":{"type":"string","enum":["type","web_search"]}}},"#,
                        r#""description":"say \"type\": \"web_search\"","#, r#""input_schema":{"type":"object"},"#,
                        r#""t\u0079pe":"web_search","#, r#""tools":[{"type":"web_search"}],"#, r#""x":"type","#,
                    ]),
                    proptest::sample::select(vec!["", " ", "\n  ", "\t"]),
                    proptest::bool::ANY,
                    proptest::bool::ANY,
                ),
                0..5,
            ),
        ) {
            let elements: Vec<String> = tools
                .iter()
                .map(|(kind, rest, ws, typed, first)| {
                    let member = if *typed { format!(r#""type"{ws}:{ws}"{kind}""#) } else { String::new() };
                    match (first, member.is_empty()) {
                        (_, true) => format!("{{{}}}", rest.trim_end_matches(',')),
                        (true, false) => format!("{{{member},{}}}", rest.trim_end_matches(',')).replace(",}", "}"),
                        (false, false) => format!("{{{rest}{member}}}"),
                    }
                })
                .collect();
            let raw = format!("[{}]", elements.join(","));
            let body = format!(r#"{{"model":"m","tools":{raw}}}"#);
            let mut walked = false;
            hosted_tools(body.as_bytes(), |_| walked = true);
            let mut c = Cursor { buf: raw.as_bytes(), pos: 0, depth_max: DEPTH_MAX };
            let walk = tools_run_by_provider(&mut c, &mut |_| ());
            match scan_request(body.as_bytes()) {
                Ok(f) => proptest::prop_assert_eq!(f.hosted_tools, walked, "{}", body),
                // A key written with escapes: refused by both.
                Err(e) => {
                    proptest::prop_assert_eq!(e, BodyError::AmbiguousKey, "{}", body);
                    proptest::prop_assert_eq!(walk, Err(BodyError::AmbiguousKey), "{}", body);
                }
            }
        }
    }

    #[test]
    fn max_tokens_is_read_from_the_top_level_only() {
        let table: &[(&str, Option<u64>)] = &[
            (r#"{"model":"m","max_tokens":100}"#, Some(100)),
            // Given by several names, or more than once: the largest (the
            // translators and providers read different ones).
            (r#"{"model":"m","max_tokens" : 100 ,"max_completion_tokens":7}"#, Some(100)),
            (r#"{"max_completion_tokens":7,"model":"m","max_tokens":100}"#, Some(100)),
            (r#"{"model":"m","max_tokens":32000,"max_output_tokens":1}"#, Some(32000)),
            (r#"{"model":"m","max_completion_tokens":9,"max_tokens":null}"#, Some(9)),
            // A tool schema with a `max_tokens` property is not the limit.
            (
                r#"{"model":"m","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"max_tokens":{"type":"integer"}}}}}],"x":{"max_tokens":5}}"#,
                None,
            ),
            (r#"{"model":"m","messages":[{"role":"user","content":"\"max_tokens\": 3"}]}"#, None),
            (r#"{"model":"m","max_tokens":null}"#, None),
            // The Responses API's name, and a tool's property of that name.
            (r#"{"input":"hi","max_output_tokens" : 64,"model":"m"}"#, Some(64)),
            (r#"{"model":"m","tools":[{"type":"function","parameters":{"max_output_tokens":1}}]}"#, None),
        ];
        for (body, want) in table {
            assert_eq!(scan_request(body.as_bytes()).unwrap().max_tokens, *want, "{body}");
        }
        // Each name's value is where a ceiling writes its own: found
        // whatever the spacing, `null` included; a name given twice is
        // refused (the provider could read the other one).
        let body = r#"{ "max_completion_tokens" :null, "model":"m","max_output_tokens":  12 ,"max_tokens":7}"#;
        let f = scan_request(body.as_bytes()).unwrap();
        let at = f.max_tokens_at.map(|s| s.map(|s| std::str::from_utf8(s.get(body.as_bytes())).unwrap()));
        assert_eq!(at, [Some("7"), Some("null"), Some("12")]);
        assert_eq!(scan_request(br#"{"model":"m"}"#).unwrap().max_tokens_at, [None; 3]);
        // Anthropic's thinking budget, read where it is enabled.
        let budget = |body: &str| {
            scan_request(body.as_bytes()).unwrap().thinking_budget.map(|s| s.get(body.as_bytes()).to_vec())
        };
        let on = r#"{"model":"m","thinking" : { "budget_tokens" : 4096 , "type":"enabled"}}"#;
        assert_eq!(budget(on), Some(b"4096".to_vec()));
        assert_eq!(budget(r#"{"model":"m","thinking":{"type":"disabled","budget_tokens":4096}}"#), None);
        assert_eq!(budget(r#"{"model":"m","thinking":{"type":"enabled"},"budget_tokens":5}"#), None);
        assert_eq!(budget(r#"{"model":"m","thinking":null}"#), None);
        // How many answers one request generates.
        let choices = |body: &str| scan_request(body.as_bytes()).map(|f| f.choices);
        assert_eq!(choices(r#"{"model":"m"}"#), Ok(1));
        assert_eq!(choices(r#"{"model":"m","n":4}"#), Ok(4));
        assert_eq!(choices(r#"{"model":"m","n":2,"best_of":5,"x":{"n":9}}"#), Ok(5));
        assert_eq!(choices(r#"{"model":"m","n":null}"#), Ok(1));
        assert_eq!(choices(r#"{"model":"m","n":"8"}"#), Err(BodyError::BadChoices));
        for twice in [
            r#"{"model":"m","max_tokens":5,"max_tokens":9}"#,
            r#"{"max_completion_tokens":5,"model":"m","max_completion_tokens":null}"#,
            r#"{"model":"m","max_output_tokens":1,"max_output_tokens":1}"#,
            r#"{"model":"m","thinking":{"type":"enabled","budget_tokens":1024},"thinking":null}"#,
        ] {
            assert_eq!(scan_request(twice.as_bytes()).err(), Some(BodyError::AmbiguousKey), "{twice}");
        }
    }

    #[test]
    fn usage_is_read_from_answers_and_chunks_by_structure() {
        let u = |prompt, completion, cached| Some(Usage { prompt, completion, cached, ..Usage::default() });
        let table: &[(&str, Option<Usage>, bool)] = &[
            (
                r#"{"id":"x","usage":{"prompt_tokens": 12,"completion_tokens":34,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":5}}}"#,
                u(12, 34, 5),
                false,
            ),
            (r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#, u(1, 2, 0), true),
            (
                r#" { "choices" : [ ] , "usage" : { "completion_tokens" : 2 , "prompt_tokens" : 1 } } "#,
                u(1, 2, 0),
                true,
            ),
            (r#"{"choices":[{"index":0,"delta":{}}],"usage":null}"#, None, false),
            (r#"{"choices":[]}"#, None, true),
            // Details before the counts, and the cached count never above
            // the prompt.
            (
                r#"{"usage":{"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":900},"prompt_tokens":100,"completion_tokens":3}}"#,
                u(100, 3, 100),
                false,
            ),
            // A Responses answer: its input includes the cached tokens it
            // details, and a stream's `response.completed` carries the
            // response whose usage it is (an item's `usage` is not).
            (
                r#"{"object":"response","output":[{"type":"message","usage":{"input_tokens":999,"output_tokens":999}}],"usage":{"input_tokens":80,"input_tokens_details":{"cached_tokens":60},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":85}}"#,
                u(80, 5, 60),
                false,
            ),
            (
                r#"{"sequence_number":9,"response":{"id":"r","usage":{"output_tokens":5,"input_tokens_details":{"cached_tokens":600},"input_tokens":80}},"type":"response.completed"}"#,
                u(80, 5, 80),
                false,
            ),
            (r#"{"type":"response.created","response":{"id":"r","usage":null}}"#, None, false),
            // Embeddings: the prompt only, its total the same; a chat
            // answer missing its completion count is not taken for one.
            (r#"{"object":"list","data":[],"usage":{"total_tokens":8,"prompt_tokens":8}}"#, u(8, 0, 0), false),
            (r#"{"usage":{"prompt_tokens":8,"total_tokens":20}}"#, None, false),
            (r#"{"usage":{"prompt_tokens":8}}"#, None, false),
            // Counts that are not non-negative integers within bounds.
            (r#"{"usage":{"prompt_tokens":-1,"completion_tokens":3}}"#, None, false),
            (r#"{"usage":{"prompt_tokens":1.5,"completion_tokens":3}}"#, None, false),
            (r#"{"usage":{"prompt_tokens":"1","completion_tokens":3}}"#, None, false),
            (r#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":3}}"#, None, false),
            (r#"{"usage":{"prompt_tokens":4294967297,"completion_tokens":3}}"#, None, false),
        ];
        for (doc, usage, no_choices) in table {
            let facts = read_answer(doc.as_bytes()).unwrap_or_else(|| panic!("{doc}"));
            assert_eq!(facts.usage(), *usage, "{doc}");
            assert_eq!(facts.no_choices, *no_choices, "{doc}");
        }
        for broken in ["", "[DONE]", "[]", r#"{"usage":{"prompt_tokens":1"#, r#"{"a":1} x"#] {
            assert_eq!(read_answer(broken.as_bytes()), None, "{broken}");
        }
    }

    /// A hostile tenant forces a tool named `prompt_tokens` (or puts
    /// `usage`-shaped text in its arguments) so that a byte search would
    /// find a count that is not the provider's; only the top-level `usage`
    /// object counts.
    /// Anthropic reports input (without the cache's tokens), cache reads and
    /// writes, and output; a stream in pieces that are merged.
    #[test]
    fn anthropic_usage_is_read_whole_and_merged_across_a_stream() {
        let message = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"cache_creation_input_tokens":100,"cache_read_input_tokens":1800,"output_tokens":503}}"#;
        let u = read_answer(message).and_then(|f| f.usage());
        assert_eq!(
            u,
            Some(Usage { prompt: 3995, completion: 503, cached: 1800, cache_write: 100, ..Usage::default() })
        );
        let start = br#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"usage":{"input_tokens":25,"cache_read_input_tokens":10,"output_tokens":1}}}"#;
        let delta = br#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#;
        let mut r = Reported::default();
        for ev in [&start[..], &delta[..]] {
            r.merge(read_answer(ev).expect("an event").reported);
        }
        assert_eq!(r.usage(), Some(Usage { prompt: 35, completion: 15, cached: 10, ..Usage::default() }));
        // A later, smaller report does not lower a count (0 after 15).
        let lowered = br#"{"type":"message_delta","delta":{},"usage":{"output_tokens":0,"input_tokens":0}}"#;
        r.merge(read_answer(lowered).expect("an event").reported);
        assert_eq!(r.usage(), Some(Usage { prompt: 35, completion: 15, cached: 10, ..Usage::default() }));
        // A stream whose `message_start` reported no usage: the output is
        // kept, the prompt marked unreported (the gateway counts it), in
        // each API's names; a report of neither is none.
        let bare = br#"{"type":"message_start","message":{"id":"m","usage":null}}"#;
        let output_only =
            br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":500}}"#;
        let mut r = Reported::default();
        r.merge(read_answer(bare).expect("an event").reported);
        assert_eq!(r.usage(), None);
        r.merge(read_answer(output_only).expect("an event").reported);
        let unreported = Some(Usage { completion: 500, prompt_unreported: true, ..Usage::default() });
        assert_eq!(r.usage(), unreported);
        let responses =
            br#"{"type":"response.completed","response":{"usage":{"output_tokens":500,"total_tokens":500}}}"#;
        assert_eq!(read_answer(responses).and_then(|f| f.usage()), unreported);
        let chat = br#"{"choices":[],"usage":{ "total_tokens" : 500, "completion_tokens" : 500 }}"#;
        assert_eq!(read_answer(chat).and_then(|f| f.usage()), unreported);
        let cached = br#"{"usage":{"cache_read_input_tokens":40,"output_tokens":500}}"#;
        let u = read_answer(cached).and_then(|f| f.usage()).expect("usage");
        assert_eq!((u.prompt, u.cached, u.completion, u.prompt_unreported), (40, 40, 500, true));
        // Chat's shares are kept too (a prompt of 0 would have held them
        // to 0, billing cached tokens at the full rate), and an output of
        // 0 alone is no report.
        let chat = br#"{"usage":{"prompt_tokens":null,"completion_tokens":500,"prompt_tokens_details":{"cached_tokens":900,"audio_tokens":30},"completion_tokens_details":{"audio_tokens":20}}}"#;
        let u = read_answer(chat).and_then(|f| f.usage()).expect("usage");
        assert_eq!((u.prompt, u.cached, u.audio_prompt, u.audio_completion), (900, 900, 30, 20));
        // The floor holds every share within the prompt, as the answer
        // reader's fuzz target asks of every report.
        let audio = br#"{"usage":{"completion_tokens":46,"prompt_tokens_details":{"audio_tokens":5}}}"#;
        let u = read_answer(audio).and_then(|f| f.usage()).expect("usage");
        assert_eq!((u.prompt, u.audio_prompt, u.prompt_unreported), (5, 5, true));
        let nothing = br#"{"usage":{"completion_tokens":0}}"#;
        assert_eq!(read_answer(nothing).and_then(|f| f.usage()), None);
        // A prompt without its completion is still no report.
        let prompt_only = br#"{"choices":[],"usage":{"prompt_tokens":90,"total_tokens":95}}"#;
        assert_eq!(read_answer(prompt_only).and_then(|f| f.usage()), None);
        // Hour-long writes, in `message_start`'s usage, are a share of
        // the writes: a report of more is held to them, and one inside a
        // content block or a tool's input is not read.
        let start = br#"{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_creation_input_tokens":300,"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},"output_tokens":1}}}"#;
        let u = read_answer(start).and_then(|f| f.usage()).expect("usage");
        assert_eq!((u.prompt, u.cache_write, u.cache_write_1h), (310, 300, 200));
        let inflated = br#"{"usage":{"input_tokens":10,"cache_creation_input_tokens":300,"cache_creation":{"ephemeral_1h_input_tokens":9000},"output_tokens":1}}"#;
        assert_eq!(read_answer(inflated).and_then(|f| f.usage()).expect("usage").cache_write_1h, 300);
        let planted = br#"{"content":[{"type":"tool_use","input":{"cache_creation":{"ephemeral_1h_input_tokens":50}}}],"usage":{"input_tokens":10,"cache_creation_input_tokens":300,"output_tokens":1}}"#;
        assert_eq!(read_answer(planted).and_then(|f| f.usage()).expect("usage").cache_write_1h, 0);
        let unreadable =
            br#"{"usage":{"input_tokens":10,"cache_creation":{"ephemeral_1h_input_tokens":-5},"output_tokens":1}}"#;
        assert_eq!(read_answer(unreadable).and_then(|f| f.usage()), None, "set aside, as any bad count");
        // A content block's own `usage`-looking text is not read.
        let block = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"{"usage":{"output_tokens":0}}"}}"#;
        assert!(!read_answer(block).expect("an event").has_usage);
    }

    /// The service tier an answer reports is read at its top level
    /// (OpenAI's chat answer and chunk, a Responses response) or in its
    /// usage (Anthropic's); the dearest of several; one written with
    /// escapes as the dearest; one planted in a choice or a tool's
    /// arguments not at all.
    #[test]
    fn the_service_tier_is_read_by_structure() {
        let tier = |doc: &str| read_answer(doc.as_bytes()).and_then(|f| f.usage()).map(|u| u.tier);
        let usage = r#""usage":{"prompt_tokens":10,"completion_tokens":5}"#;
        assert_eq!(
            tier(&format!(r#"{{"id":"c","service_tier":"priority","choices":[],{usage}}}"#)),
            Some(Tier::Priority)
        );
        assert_eq!(tier(&format!(r#"{{"service_tier" : "flex" ,{usage}}}"#)), Some(Tier::Flex));
        assert_eq!(tier(&format!(r#"{{"service_tier":"default",{usage}}}"#)), Some(Tier::Standard));
        assert_eq!(tier(&format!(r#"{{"service_tier":"scale",{usage}}}"#)), Some(Tier::Standard));
        assert_eq!(tier(&format!(r#"{{"service_tier":"prio\u0072ity",{usage}}}"#)), Some(Tier::Priority));
        assert_eq!(tier(&format!(r#"{{"service_tier":null,{usage}}}"#)), Some(Tier::Standard));
        let responses = r#"{"type":"response.completed","response":{"id":"resp_1","service_tier":"priority","usage":{"input_tokens":10,"output_tokens":5}}}"#;
        assert_eq!(tier(responses), Some(Tier::Priority));
        let anthropic = r#"{"type":"message_start","message":{"usage":{"input_tokens":10,"output_tokens":1,"service_tier":"priority"}}}"#;
        assert_eq!(tier(anthropic), Some(Tier::Priority));
        let planted = format!(
            r#"{{"choices":[{{"index":0,"service_tier":"flex","delta":{{"tool_calls":[{{"function":{{"arguments":"{{\"service_tier\":\"flex\"}}"}}}}]}}}}],{usage}}}"#
        );
        assert_eq!(tier(&planted), Some(Tier::Standard), "a model's flex is not the answer's");
        let mut r = Reported::default();
        for doc in
            [format!(r#"{{"service_tier":"priority",{usage}}}"#), format!(r#"{{"service_tier":"flex",{usage}}}"#)]
        {
            r.merge(read_answer(doc.as_bytes()).expect("an answer").reported);
        }
        assert_eq!(r.usage().map(|u| u.tier), Some(Tier::Priority), "the dearest of the reports");
    }

    /// Audio tokens are read from the usage's details only, each a share of
    /// what it details: a report of more is held to it, one planted in a
    /// message or at the usage's top level is not read, and a bad count
    /// sets the report aside.
    #[test]
    fn audio_tokens_are_read_from_the_usage_details_only() {
        let usage = |doc: &str| read_answer(doc.as_bytes()).and_then(|f| f.usage());
        let u = usage(
            r#"{"choices":[],"usage":{"prompt_tokens":100,"completion_tokens":50,"prompt_tokens_details":{"audio_tokens":40},"completion_tokens_details":{"audio_tokens":30}}}"#,
        )
        .unwrap();
        assert_eq!((u.audio_prompt, u.audio_completion), (40, 30));
        let u = usage(
            r#"{"usage":{"prompt_tokens":100,"completion_tokens":50,"prompt_tokens_details":{"audio_tokens":900},"completion_tokens_details":{"audio_tokens":900}}}"#,
        )
        .unwrap();
        assert_eq!((u.audio_prompt, u.audio_completion), (100, 50));
        let planted = usage(
            r#"{"choices":[{"message":{"tool_calls":[{"function":{"arguments":"{}"}}],"completion_tokens_details":{"audio_tokens":5}}}],"usage":{"prompt_tokens":100,"completion_tokens":50,"audio_tokens":7}}"#,
        )
        .unwrap();
        assert_eq!((planted.audio_prompt, planted.audio_completion), (0, 0));
        let bad = r#"{"usage":{"prompt_tokens":100,"completion_tokens":50,"completion_tokens_details":{"audio_tokens":"5"}}}"#;
        assert_eq!(usage(bad), None);
    }

    /// A model can write a tool input nested deeper than any request may
    /// be: the answer's usage is read all the same.
    #[test]
    fn a_deeply_nested_tool_input_does_not_hide_the_usage() {
        let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
        let doc = format!(
            r#"{{"type":"message","content":[{{"type":"tool_use","id":"t","name":"f","input":{{"x":{deep}}}}}],"usage":{{"input_tokens":900,"output_tokens":40}}}}"#
        );
        let u = read_answer(doc.as_bytes()).and_then(|f| f.usage());
        assert_eq!(u, Some(Usage { prompt: 900, completion: 40, cached: 0, ..Usage::default() }));
    }

    #[test]
    fn stream_event_shapes_are_read_by_structure() {
        let shape = |doc: &str| event_shape(doc.as_bytes()).unwrap_or_else(|| panic!("{doc}"));
        let s = shape(r#"{"id":"c","choices":[{"index":2,"delta":{"content":"x"},"finish_reason":null}]}"#);
        assert_eq!((s.choice, s.tool, s.block, s.last), (Some(2), None, None, false));
        let s = shape(
            r#"{"choices":[{"delta":{"tool_calls":[{"index":3,"function":{"arguments":"{}"}}]},"index":1,"finish_reason":"tool_calls"}]}"#,
        );
        assert_eq!((s.choice, s.tool, s.last), (Some(1), Some(3), true));
        let s = shape(r#"{"type":"content_block_start","index":4,"content_block":{"type":"text","text":""}}"#);
        assert_eq!((s.block, s.block_start), (Some(4), true));
        let s = shape(
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}"#,
        );
        assert!(s.last);
        // Forged: indexes and reasons anywhere else are not the event's.
        let s = shape(
            r#"{"choices":[{"index":0,"delta":{"content":"sk-"},"x":{"index":9,"finish_reason":"stop"}}],"y":{"index":7,"stop_reason":"end"}}"#,
        );
        assert_eq!((s.choice, s.tool, s.block, s.last), (Some(0), None, None, false));
        // `-0` is 0 to JSON parsers, so to the channels too; other forms
        // are no index.
        let s = shape(r#"{"choices":[{"index":-0,"delta":{"tool_calls":[{"index":-00}]}}],"index":1.0}"#);
        assert_eq!((s.choice, s.tool, s.block), (Some(0), Some(0), None));
        // ... and make the event odd, as a key written with escapes at a
        // place read does; a second choice is said.
        assert!(s.odd && !s.several);
        for odd in [
            r#"{"choices":[{"ind\u0065x":0,"delta":{}}]}"#,
            r#"{"ch\u006fices":[{"index":0}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_c\u0061lls":[{"index":0}]}}]}"#,
            r#"{"choices":[{"index":null}]}"#,
            r#"{"type":"message_delta","delta":{"stop_re\u0061son":"end_turn"}}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"n\u0061me":"f"}}]}}]}"#,
        ] {
            assert!(shape(odd).odd, "{odd}");
        }
        let s = shape(r#"{"id":"c","choices":[{"index":0,"delta":{"content":"x"}}]}"#);
        assert!(!s.odd && !s.several);
        assert!(shape(r#"{"choices":[{"index":0},{"index":1}]}"#).several);
        // Several calls in one event are odd (their text is read by their
        // own index); a choice index that is not a whole number is no 0.
        assert!(shape(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1},{"index":0}]}}]}"#).odd);
        assert_eq!(shape(r#"{"choices":[{"index":0.0}]}"#).choice, Some(u64::MAX));
        // Each call's arguments are placed by their own call's index.
        let doc = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":3,"function":{"arguments":"aa"}},{"index":5,"function":{"arguments":"bb"}}]}}]}"#;
        let s = shape(doc);
        let at = |t: &str| doc.find(t).unwrap()..doc.find(t).unwrap() + 2;
        assert_eq!((s.tool, s.call_of(&at("aa")), s.call_of(&at("bb"))), (Some(3), Some(3), Some(5)));
        // Where shown text can be: the first choice's delta and text,
        // Anthropic's delta and content block; not an unknown event's text.
        let at = |doc: &str, text: &str| {
            let from = doc.find(text).unwrap();
            event_shape(doc.as_bytes()).unwrap().is_shown(&(from..from + text.len()))
        };
        assert!(at(r#"{"choices":[{"index":0,"delta":{"content":"hi"}}]}"#, "hi"));
        assert!(at(r#"{"choices":[{"index":0,"text":"hi"}]}"#, "hi"));
        assert!(at(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#, "hi"));
        assert!(at(r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"hi"}}"#, "hi"));
        assert!(!at(r#"{"type":"x","text":"hi"}"#, "hi"));
        assert!(!at(r#"{"choices":[{"index":0,"delta":{}}],"content":"hi"}"#, "hi"));
        assert_eq!(event_shape(b"[DONE]"), None);
    }

    #[test]
    fn a_tool_or_message_shaped_like_usage_is_not_usage() {
        let doc = br#"{"choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"prompt_tokens","arguments":"{\"usage\":{\"prompt_tokens\":0,\"completion_tokens\":0}}"}}]},"usage":{"prompt_tokens":0}}],"usage":{"prompt_tokens":120245,"completion_tokens":4000}}"#;
        let facts = read_answer(doc).expect("an answer");
        assert_eq!(facts.usage(), Some(Usage { prompt: 120_245, completion: 4_000, cached: 0, ..Usage::default() }));
        let nested_only = br#"{"choices":[{"usage":{"prompt_tokens":1,"completion_tokens":1}}]}"#;
        assert_eq!(read_answer(nested_only).expect("an answer").usage(), None);
        let nested_choices = br#"{"x":{"choices":[]},"choices":[{"index":0}]}"#;
        assert!(!read_answer(nested_choices).expect("an answer").no_choices);
    }

    /// An answer too large to keep is fed to [`TopMembers`] in pieces: the
    /// object of its top-level `usage` and `id` reads as the whole answer
    /// reads (usage, response id), for every cut into two pieces, byte by
    /// byte, in random pieces, compact, pretty and with keys reordered;
    /// a `usage` inside a string, a choice, a tool's arguments, a deep
    /// nesting or written with an escape is not taken. What is not one
    /// JSON object gives nothing.
    #[test]
    fn top_members_read_in_pieces_as_the_whole_answer_reads() {
        const NAMES: &[&[u8]] = &[b"usage", b"id", b"message", b"response"];
        // (Deeper than a request may be; within serde_json's own limit.)
        let deep = format!("{}1{}", "[".repeat(120), "]".repeat(120));
        let docs = [
            r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"the \"usage\": {\"prompt_tokens\":1} \\"},"finish_reason":"stop"}],"usage":{"prompt_tokens":120245,"completion_tokens":4000,"prompt_tokens_details":{"cached_tokens":64}}}"#.to_string(),
            r#"{"choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"prompt_tokens","arguments":"{\"usage\":{\"prompt_tokens\":0,\"completion_tokens\":0}}"}}]},"usage":{"prompt_tokens":0}}],"usage":{"prompt_tokens":7,"completion_tokens":9},"x":{"usage":{"prompt_tokens":1,"completion_tokens":1}}}"#.to_string(),
            r#"{"us\u0061ge":{"prompt_tokens":1,"completion_tokens":1},"id":"r\"x","usage" : { "completion_tokens" : 3 , "prompt_tokens" : 5 } }"#.to_string(),
            r#"{"object":"response","id":"resp_123","output":[{"type":"message","id":"msg_1","usage":{"input_tokens":999,"output_tokens":999}}],"usage":{"input_tokens":80,"input_tokens_details":{"cached_tokens":60},"output_tokens":5,"total_tokens":85}}"#.to_string(),
            r#"{"id":"msg_1","type":"message","content":[{"type":"text","text":"}]}{\"usage\":"}],"usage":{"input_tokens":2095,"cache_creation_input_tokens":100,"cache_read_input_tokens":1800,"output_tokens":503}}"#.to_string(),
            format!(r#"{{"type":"message","content":[{{"type":"tool_use","id":"t","name":"f","input":{{"x":{deep}}}}}],"usage":{{"input_tokens":900,"output_tokens":40}}}}"#),
            r#"{"usage":{"prompt_tokens":1,"completion_tokens":2},"usage":{"prompt_tokens":3,"completion_tokens":4}}"#.to_string(),
            r#"{"usage":null,"choices":[]}"#.to_string(),
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","content":[],"usage":{"input_tokens":25,"output_tokens":1}}}"#.to_string(),
            r#"{"type":"response.completed","response":{"id":"resp_9","usage":{"input_tokens":8,"output_tokens":2,"total_tokens":10}},"id":"x"}"#.to_string(),
            "{}".to_string(),
        ];
        let whole = |doc: &[u8]| {
            (
                read_answer(doc).map(|f| (f.usage(), f.reported.unreadable)),
                crate::responses::response_id(doc).map(<[u8]>::to_vec),
            )
        };
        let picked = |pieces: &mut dyn Iterator<Item = &[u8]>| {
            let mut top = TopMembers::new(NAMES);
            pieces.for_each(|p| top.feed(p));
            let doc = top.document().expect("an object");
            whole(&doc)
        };
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for doc in &docs {
            let value: serde_json::Value = serde_json::from_str(doc).expect("JSON");
            for variant in [doc.clone(), value.to_string(), serde_json::to_string_pretty(&value).unwrap()] {
                let b = variant.as_bytes();
                let want = whole(b);
                assert!(want.0.is_some(), "{variant}");
                assert_eq!(picked(&mut std::iter::once(b)), want, "{variant}");
                for cut in 0..=b.len() {
                    assert_eq!(picked(&mut [&b[..cut], &b[cut..]].into_iter()), want, "{variant} cut at {cut}");
                }
                assert_eq!(picked(&mut b.chunks(1)), want, "{variant} byte by byte");
                for _ in 0..20 {
                    let mut at = 0;
                    let mut pieces = Vec::new();
                    while at < b.len() {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let n = (1 + rng % 40) as usize;
                        pieces.push(&b[at..(at + n).min(b.len())]);
                        at += n;
                    }
                    assert_eq!(picked(&mut pieces.into_iter()), want, "{variant}");
                }
            }
        }
        // The usage of the last document is read as `read_answer` reads a
        // repeated key; the escaped key is no usage.
        let doc = TopMembers::new(NAMES);
        assert_eq!(doc.document(), None, "nothing fed");
        for broken in [
            "",
            "[]",
            "[{\"usage\":{}}]",
            r#"{"usage":{"prompt_tokens":1"#,
            r#"{"a":1} x"#,
            "1",
            r#"{"a":"b"#,
            r#""x"{"usage":{}}"#,
        ] {
            let mut top = TopMembers::new(NAMES);
            top.feed(broken.as_bytes());
            assert_eq!(top.document(), None, "{broken}");
        }
        // A key longer than any name, in pieces (a fuzzer's find: its
        // length went on counting past the buffer it was copied into).
        let mut top = TopMembers::new(NAMES);
        for piece in [&b"{\"a_key_longer_than_sixteen"[..], b"_bytes", b"\":1,\"usage\":{}}"] {
            top.feed(piece);
        }
        assert_eq!(top.document().as_deref(), Some(&b"{\"usage\":{}}"[..]));
        // Members past the bound are not kept, nor their room, and nothing
        // is given: fed in one piece of 16 MiB as in pieces.
        let big =
            format!(r#"{{"message":"{}","usage":{{"prompt_tokens":1,"completion_tokens":1}}}}"#, "a".repeat(16 << 20));
        for piece in [big.len(), 4096] {
            let mut top = TopMembers::new(NAMES);
            big.as_bytes().chunks(piece).for_each(|p| top.feed(p));
            assert_eq!(top.document(), None);
            assert!(top.out.capacity() <= TopMembers::BYTES_MAX, "{}", top.out.capacity());
        }
    }

    #[test]
    fn finish_reasons_are_read_by_structure_in_any_spacing() {
        let reasons = |doc: &str| -> Vec<&'static str> {
            let read = read_answer(doc.as_bytes()).expect("an answer");
            read.finish.iter().collect()
        };
        // OpenAI's answer, two choices, reserialized with spacing and order.
        assert_eq!(
            reasons(
                r#"{"choices":[{"finish_reason":"stop","index":0},{"index":1,"message":{},"finish_reason":"length"}]}"#
            ),
            ["stop", "length"]
        );
        assert_eq!(
            reasons("{ \"choices\" : [ { \"index\" : 0 , \"finish_reason\"\n:\t\"tool_calls\" } ] }"),
            ["tool_calls"]
        );
        // A chunk still streaming says null: nothing, and no parse.
        assert!(reasons(r#"{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#).is_empty());
        // Anthropic's message, and a stream's `message_delta`.
        assert_eq!(reasons(r#"{"type":"message","content":[],"stop_reason":"end_turn","usage":{}}"#), ["end_turn"]);
        assert_eq!(
            reasons(r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{}}"#),
            ["max_tokens"]
        );
        assert!(reasons(r#"{"type":"message_start","message":{"stop_reason":null}}"#).is_empty());
        // Hostile: reasons inside content, tool arguments or nested keys are
        // not the answer's; a name nobody uses is "other"; at most four.
        assert!(reasons(r#"{"choices":[{"message":{"content":"\"finish_reason\":\"stop\"","x":{"finish_reason":"stop"}}}],"y":{"stop_reason":"stop"}}"#).is_empty());
        assert_eq!(reasons(r#"{"choices":[{"finish_reason":"<script>"}]}"#), ["other"]);
        let many: Vec<String> = FINISH_NAMES.iter().map(|n| format!(r#"{{"finish_reason":"{n}"}}"#)).collect();
        let many = format!("{{\"choices\":[{}]}}", many.join(","));
        assert_eq!(reasons(&many), FINISH_NAMES[..Finish::MAX]);
        // A reason repeated (several choices, a later chunk) is given once.
        let twice = format!("{{\"choices\":[{}]}}", [r#"{"finish_reason":"stop"}"#; 3].join(","));
        assert_eq!(reasons(&twice), ["stop"]);
        // An escaped name is matched as written: not a known one.
        assert_eq!(reasons(r#"{"choices":[{"finish_reason":"st\u006fp"}]}"#), ["other"]);
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

#[cfg(test)]
mod sampled_tests {
    use super::scan_request;

    /// Which requests sample, as the answer cache reads them.
    #[test]
    fn temperature_decides_whether_a_request_samples() {
        let cases = [
            (r#"{"model":"m"}"#, true),
            (r#"{"model":"m","temperature":null}"#, true),
            (r#"{"model":"m","temperature":0}"#, false),
            (r#"{"model":"m","temperature":0.0}"#, false),
            (r#"{"model":"m","temperature":-0}"#, false),
            (r#"{"model":"m","temperature":0e5}"#, false),
            (r#"{"model":"m","temperature":1e-9}"#, true),
            (r#"{"model":"m","temperature":0.7}"#, true),
            (r#"{"model":"m","temperature":"0"}"#, true),
            // Given twice: either may be the one the provider reads.
            (r#"{"model":"m","temperature":0,"temperature":1}"#, true),
            (r#"{"model":"m","temperature":1,"temperature":0}"#, true),
            // A nested temperature is not the request's.
            (r#"{"model":"m","metadata":{"temperature":0}}"#, true),
        ];
        for (body, sampled) in cases {
            assert_eq!(scan_request(body.as_bytes()).map(|f| f.sampled), Ok(sampled), "{body}");
        }
        // An escaped top-level key is refused outright, so that
        // `"temp\u0065rature"` cannot read as 0 here and as 1 upstream.
        assert!(scan_request(br#"{"model":"m","temp\u0065rature":0}"#).is_err());
    }
}
