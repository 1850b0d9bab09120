//! The mock's answers: OpenAI chat completions as JSON and as SSE events,
//! generated from a word list that mixes ASCII with multi-byte UTF-8 so that
//! every split test crosses character boundaries.

use bytes::{BufMut, BytesMut};

pub mod bedrock;
pub mod gemini;

/// The words replies are made of, cycled.
pub const REPLY_WORDS: &[&str] = &[
    "Tollgate",
    "counts",
    "every",
    "token",
    "café",
    "naïve",
    "日本語",
    "🙂",
    "through",
    "the",
    "gateway",
    "déjà",
    "vu",
    "über",
    "fast",
    "streams",
];

/// A fixed creation time keeps replies byte-identical across runs, which the
/// byte-exact relay tests rely on.
const CREATED: &str = "1700000000";

/// What the mock read from a chat request.
pub struct ChatRequest<'a> {
    pub model: &'a [u8],
    pub stream: bool,
    pub include_usage: bool,
    pub prompt_tokens: usize,
    /// Prompt tokens reported as read from and written to the provider's
    /// cache (`x-mock-cache: READ,WRITE`), out of `prompt_tokens`.
    pub cache_read: usize,
    pub cache_write: usize,
    /// Of `cache_write`, the tokens written for an hour (Anthropic's
    /// `cache_creation.ephemeral_1h_input_tokens`).
    pub cache_write_1h: usize,
    /// Audio tokens of the prompt, and of output besides the text
    /// (`x-mock-audio: HEARD,SPOKEN`; chat's `audio_tokens` details).
    pub audio_prompt: usize,
    pub audio_completion: usize,
    /// The service tier the answer says it was served at (`x-mock-tier`):
    /// chat's top-level `service_tier`.
    pub tier: Option<&'static str>,
    /// Stable id derived from the request body.
    pub id: u64,
    /// The request's output limit (`max_tokens`, `max_completion_tokens`
    /// or `max_output_tokens`, the largest given).
    pub max_tokens: Option<u64>,
    /// Tokens the model reasoned before its answer (`x-mock-reasoning`):
    /// billed as output, never streamed.
    pub reasoning: usize,
    /// The answer stopped at the request's output limit: its finish
    /// reason is `length`.
    pub cut_short: bool,
}

impl<'a> ChatRequest<'a> {
    pub fn read(body: &'a [u8]) -> Option<ChatRequest<'a>> {
        let fields = tollgate_protocol::openai::scan_request(body).ok()?;
        let include_usage = memchr::memmem::find(body, b"\"include_usage\":true").is_some()
            || memchr::memmem::find(body, b"\"include_usage\": true").is_some();
        Some(ChatRequest {
            model: fields.model.get(body),
            stream: fields.stream,
            include_usage,
            prompt_tokens: body.len().div_ceil(4),
            cache_read: 0,
            cache_write: 0,
            cache_write_1h: 0,
            audio_prompt: 0,
            audio_completion: 0,
            tier: None,
            id: fnv1a(body),
            max_tokens: fields.max_tokens,
            reasoning: 0,
            cut_short: false,
        })
    }
}

impl<'a> ChatRequest<'a> {
    /// Reports `read` and `write` prompt tokens as the provider's cache's
    /// (the prompt at least their sum), `hour` of the writes for an hour.
    pub fn cached(&mut self, read: usize, write: usize, hour: usize) {
        self.prompt_tokens = self.prompt_tokens.max(read + write);
        self.cache_read = read;
        self.cache_write = write;
        self.cache_write_1h = hour.min(write);
    }

    /// Reports `heard` of the prompt's tokens (the prompt at least that)
    /// and `spoken` tokens of output besides the text as audio.
    pub fn audio(&mut self, heard: usize, spoken: usize) {
        self.prompt_tokens = self.prompt_tokens.max(heard);
        self.audio_prompt = heard;
        self.audio_completion = spoken;
    }

    /// A request whose model and stream switch are not in its body
    /// (Gemini's are in the URL).
    pub fn for_body(model: &'a [u8], stream: bool, body: &[u8]) -> ChatRequest<'a> {
        ChatRequest {
            model,
            stream,
            include_usage: false,
            prompt_tokens: body.len().div_ceil(4),
            cache_read: 0,
            cache_write: 0,
            cache_write_1h: 0,
            audio_prompt: 0,
            audio_completion: 0,
            tier: None,
            id: fnv1a(body),
            max_tokens: None,
            reasoning: 0,
            cut_short: false,
        }
    }

    /// A model that reasons `reasoning` tokens before it writes `words`
    /// words, as OpenAI's do: the request's output limit counts the
    /// reasoning first, then the words; an answer it stops finishes with
    /// `length` (and may have no words at all). The words left.
    pub fn reasons(&mut self, reasoning: usize, words: usize) -> usize {
        let limit = self.max_tokens.map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
        self.reasoning = reasoning.min(limit);
        let left = words.min(limit - self.reasoning);
        self.cut_short = self.reasoning + left < reasoning + words;
        left
    }

    /// The answer's finish reason, as raw JSON.
    fn finish(&self) -> &'static str {
        if self.cut_short {
            "\"length\""
        } else {
            "\"stop\""
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Words `from..to` of the reply, cycling `list`, as JSON string content.
fn words(list: &[&str], from: usize, to: usize, out: &mut BytesMut) {
    let mut escaped = Vec::new();
    for i in from..to {
        if i > 0 {
            out.put_u8(b' ');
        }
        escaped.clear();
        tollgate_protocol::json::escape(list[i % list.len()].as_bytes(), &mut escaped);
        out.extend_from_slice(&escaped);
    }
}

fn prefix(req: &ChatRequest<'_>, object: &str, out: &mut BytesMut) {
    out.extend_from_slice(b"{\"id\":\"chatcmpl-mock-");
    out.extend_from_slice(itoa::Buffer::new().format(req.id).as_bytes());
    out.extend_from_slice(b"\",\"object\":\"");
    out.extend_from_slice(object.as_bytes());
    out.extend_from_slice(b"\",\"created\":");
    out.extend_from_slice(CREATED.as_bytes());
    out.extend_from_slice(b",\"model\":\"");
    out.extend_from_slice(req.model);
    out.extend_from_slice(b"\",");
    if let Some(tier) = req.tier {
        out.extend_from_slice(b"\"service_tier\":\"");
        out.extend_from_slice(tier.as_bytes());
        out.extend_from_slice(b"\",");
    }
}

fn usage(req: &ChatRequest<'_>, completion: usize, out: &mut BytesMut) {
    let completion = completion.saturating_add(req.reasoning).saturating_add(req.audio_completion);
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"\"usage\":{\"prompt_tokens\":");
    out.extend_from_slice(n.format(req.prompt_tokens).as_bytes());
    out.extend_from_slice(b",\"completion_tokens\":");
    out.extend_from_slice(n.format(completion).as_bytes());
    out.extend_from_slice(b",\"total_tokens\":");
    out.extend_from_slice(n.format(req.prompt_tokens.saturating_add(completion)).as_bytes());
    if req.cache_read > 0 || req.audio_prompt > 0 {
        out.extend_from_slice(b",\"prompt_tokens_details\":{\"cached_tokens\":");
        out.extend_from_slice(n.format(req.cache_read).as_bytes());
        if req.audio_prompt > 0 {
            out.extend_from_slice(b",\"audio_tokens\":");
            out.extend_from_slice(n.format(req.audio_prompt).as_bytes());
        }
        out.put_u8(b'}');
    }
    if req.reasoning > 0 || req.audio_completion > 0 {
        out.extend_from_slice(b",\"completion_tokens_details\":{\"reasoning_tokens\":");
        out.extend_from_slice(n.format(req.reasoning).as_bytes());
        if req.audio_completion > 0 {
            out.extend_from_slice(b",\"audio_tokens\":");
            out.extend_from_slice(n.format(req.audio_completion).as_bytes());
        }
        out.put_u8(b'}');
    }
    out.put_u8(b'}');
}

/// Anthropic's input counts: tokens neither read from nor written to the
/// cache, then the cache's own.
fn anthropic_input(req: &ChatRequest<'_>, out: &mut BytesMut) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"\"input_tokens\":");
    let fresh = req.prompt_tokens.saturating_sub(req.cache_read + req.cache_write);
    out.extend_from_slice(n.format(fresh).as_bytes());
    if req.cache_read + req.cache_write > 0 {
        out.extend_from_slice(b",\"cache_read_input_tokens\":");
        out.extend_from_slice(n.format(req.cache_read).as_bytes());
        out.extend_from_slice(b",\"cache_creation_input_tokens\":");
        out.extend_from_slice(n.format(req.cache_write).as_bytes());
    }
    if req.cache_write_1h > 0 {
        out.extend_from_slice(b",\"cache_creation\":{\"ephemeral_5m_input_tokens\":");
        out.extend_from_slice(n.format(req.cache_write - req.cache_write_1h).as_bytes());
        out.extend_from_slice(b",\"ephemeral_1h_input_tokens\":");
        out.extend_from_slice(n.format(req.cache_write_1h).as_bytes());
        out.put_u8(b'}');
    }
}

/// The words of each of a streamed reply's `chunks` content events, as
/// (from, to) word indexes.
fn pieces(reply_words: usize, chunks: usize) -> impl Iterator<Item = (usize, usize)> {
    let chunks = chunks.clamp(1, reply_words.max(1));
    (0..chunks).map(move |c| (c * reply_words / chunks, (c + 1) * reply_words / chunks))
}

/// The usage chunk of a streamed OpenAI-style reply (`choices` empty),
/// asked for with `stream_options.include_usage`.
fn usage_event(req: &ChatRequest<'_>, object: &str, completion: usize) -> BytesMut {
    let mut e = BytesMut::with_capacity(256);
    e.extend_from_slice(b"data: ");
    prefix(req, object, &mut e);
    e.extend_from_slice(b"\"choices\":[],");
    usage(req, completion, &mut e);
    e.extend_from_slice(b"}\n\n");
    e
}

/// A non-streamed legacy `text_completion` body (`POST /v1/completions`).
pub fn text_completion(req: &ChatRequest<'_>, list: &[&str], reply_words: usize, out: &mut BytesMut) {
    prefix(req, "text_completion", out);
    out.extend_from_slice(b"\"choices\":[{\"text\":\"");
    words(list, 0, reply_words, out);
    out.extend_from_slice(b"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}],");
    usage(req, reply_words, out);
    out.put_u8(b'}');
}

/// The SSE events of a streamed legacy completion: `text_completion`
/// chunks with `choices[].text`, a last one with `finish_reason`, the
/// usage chunk when asked for, then `data: [DONE]`.
pub fn text_stream_events(
    req: &ChatRequest<'_>,
    list: &[&str],
    reply_words: usize,
    chunks: usize,
    out: &mut Vec<BytesMut>,
) {
    let chunk = |text: &dyn Fn(&mut BytesMut), finish: &str| {
        let mut e = BytesMut::with_capacity(256);
        e.extend_from_slice(b"data: ");
        prefix(req, "text_completion", &mut e);
        e.extend_from_slice(b"\"choices\":[{\"text\":\"");
        text(&mut e);
        e.extend_from_slice(b"\",\"index\":0,\"logprobs\":null,\"finish_reason\":");
        e.extend_from_slice(finish.as_bytes());
        e.extend_from_slice(b"}]}\n\n");
        e
    };
    for (from, to) in pieces(reply_words, chunks) {
        out.push(chunk(&|e| words(list, from, to, e), "null"));
    }
    out.push(chunk(&|_| {}, "\"stop\""));
    openai_stream_end(req, "text_completion", reply_words, out);
}

/// A Responses API `response` object (`POST /v1/responses`): one assistant
/// message of `output_text`, or, `in_progress`, the empty response of a
/// stream's first events. Its usage counts the cached tokens inside
/// `input_tokens`, as OpenAI's does.
fn response_object(req: &ChatRequest<'_>, text: Option<(&[&str], usize)>, out: &mut BytesMut) {
    let message =
        text.map(|(list, words_n)| (move |o: &mut BytesMut| response_message(req, list, words_n, true, o), words_n));
    match &message {
        Some((write, n)) => response_with(req, Some((write as &dyn Fn(&mut BytesMut), *n)), out),
        None => response_with(req, None, out),
    }
}

/// [`response_object`] with any output: `output` writes its items and
/// says how many tokens they are.
/// What a response's output is: a writer of its items, and their tokens.
type Output<'a> = Option<(&'a dyn Fn(&mut BytesMut), usize)>;

fn response_with(req: &ChatRequest<'_>, output: Output<'_>, out: &mut BytesMut) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"{\"id\":\"resp_mock_");
    out.extend_from_slice(n.format(req.id).as_bytes());
    out.extend_from_slice(b"\",\"object\":\"response\",\"created_at\":");
    out.extend_from_slice(CREATED.as_bytes());
    out.extend_from_slice(b",\"status\":");
    out.extend_from_slice(if output.is_some() { &b"\"completed\""[..] } else { b"\"in_progress\"" });
    out.extend_from_slice(
        b",\"error\":null,\"incomplete_details\":null,\"instructions\":null,\"max_output_tokens\":null,\"model\":\"",
    );
    out.extend_from_slice(req.model);
    out.extend_from_slice(b"\",\"output\":[");
    if let Some((write, _)) = output {
        write(out);
    }
    out.extend_from_slice(
        b"],\"parallel_tool_calls\":true,\"previous_response_id\":null,\"reasoning\":{\"effort\":null,\"summary\":null},\"store\":true,\"temperature\":1.0,\"text\":{\"format\":{\"type\":\"text\"}},\"tool_choice\":\"auto\",\"tools\":[],\"top_p\":1.0,\"truncation\":\"disabled\",\"usage\":",
    );
    match output {
        Some((_, words_n)) => {
            out.extend_from_slice(b"{\"input_tokens\":");
            out.extend_from_slice(n.format(req.prompt_tokens).as_bytes());
            out.extend_from_slice(b",\"input_tokens_details\":{\"cached_tokens\":");
            out.extend_from_slice(n.format(req.cache_read).as_bytes());
            out.extend_from_slice(b"},\"output_tokens\":");
            out.extend_from_slice(n.format(words_n).as_bytes());
            out.extend_from_slice(b",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":");
            out.extend_from_slice(n.format(req.prompt_tokens + words_n).as_bytes());
            out.put_u8(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"user\":null,\"metadata\":{}}");
}

/// The assistant message item of a response, `done` or just opened (no
/// content yet).
fn response_message(req: &ChatRequest<'_>, list: &[&str], words_n: usize, done: bool, out: &mut BytesMut) {
    out.extend_from_slice(b"{\"id\":\"msg_mock_");
    out.extend_from_slice(itoa::Buffer::new().format(req.id).as_bytes());
    out.extend_from_slice(b"\",\"type\":\"message\",\"status\":");
    if done {
        out.extend_from_slice(b"\"completed\",\"content\":[");
        output_text(list, words_n, out);
        out.extend_from_slice(b"],\"role\":\"assistant\"}");
    } else {
        out.extend_from_slice(b"\"in_progress\",\"content\":[],\"role\":\"assistant\"}");
    }
}

fn output_text(list: &[&str], words_n: usize, out: &mut BytesMut) {
    out.extend_from_slice(b"{\"type\":\"output_text\",\"annotations\":[],\"text\":\"");
    words(list, 0, words_n, out);
    out.extend_from_slice(b"\"}");
}

/// A non-streamed Responses API answer.
pub fn response(req: &ChatRequest<'_>, list: &[&str], reply_words: usize, out: &mut BytesMut) {
    response_object(req, Some((list, reply_words)), out);
}

/// A Responses API stream's events, named and numbered from 0.
struct ResponsesEvents<'o> {
    out: &'o mut Vec<BytesMut>,
    sequence: u64,
}

impl<'o> ResponsesEvents<'o> {
    /// The stream opened: `response.created` and `response.in_progress`,
    /// with the response in progress.
    fn opened(req: &ChatRequest<'_>, out: &'o mut Vec<BytesMut>) -> Self {
        let mut events = ResponsesEvents { out, sequence: 0 };
        for kind in ["response.created", "response.in_progress"] {
            events.event(kind, &|e| {
                e.extend_from_slice(b",\"response\":");
                response_with(req, None, e);
            });
        }
        events
    }

    /// One event: `{"type", "sequence_number"` and what `body` adds.
    fn event(&mut self, kind: &str, body: &dyn Fn(&mut BytesMut)) {
        let mut e = BytesMut::with_capacity(256);
        e.extend_from_slice(b"event: ");
        e.extend_from_slice(kind.as_bytes());
        e.extend_from_slice(b"\ndata: {\"type\":\"");
        e.extend_from_slice(kind.as_bytes());
        e.extend_from_slice(b"\",\"sequence_number\":");
        e.extend_from_slice(itoa::Buffer::new().format(self.sequence).as_bytes());
        self.sequence += 1;
        body(&mut e);
        e.extend_from_slice(b"}\n\n");
        self.out.push(e);
    }
}

/// The events of a streamed Responses API answer as OpenAI documents them:
/// `response.created` and `.in_progress`, the message item and its text
/// part opened, one `response.output_text.delta` per chunk, then the
/// text whole again in `.output_text.done`, `.content_part.done`,
/// `.output_item.done` and `response.completed` (which carries the
/// usage). Each event is named and numbered; there is no `[DONE]`.
pub fn responses_stream_events(
    req: &ChatRequest<'_>,
    list: &[&str],
    reply_words: usize,
    chunks: usize,
    out: &mut Vec<BytesMut>,
) {
    let mut events = ResponsesEvents::opened(req, out);
    let mut event = |name: &str, body: &dyn Fn(&mut BytesMut)| events.event(name, body);
    let item_id = |e: &mut BytesMut| {
        e.extend_from_slice(b",\"item_id\":\"msg_mock_");
        e.extend_from_slice(itoa::Buffer::new().format(req.id).as_bytes());
        e.extend_from_slice(b"\",\"output_index\":0,\"content_index\":0");
    };
    event("response.output_item.added", &|e| {
        e.extend_from_slice(b",\"output_index\":0,\"item\":");
        response_message(req, list, reply_words, false, e);
    });
    event("response.content_part.added", &|e| {
        item_id(e);
        e.extend_from_slice(b",\"part\":{\"type\":\"output_text\",\"annotations\":[],\"text\":\"\"}");
    });
    for (from, to) in pieces(reply_words, chunks) {
        event("response.output_text.delta", &|e| {
            item_id(e);
            e.extend_from_slice(b",\"delta\":\"");
            words(list, from, to, e);
            e.extend_from_slice(b"\",\"logprobs\":[]");
        });
    }
    event("response.output_text.done", &|e| {
        item_id(e);
        e.extend_from_slice(b",\"text\":\"");
        words(list, 0, reply_words, e);
        e.extend_from_slice(b"\",\"logprobs\":[]");
    });
    event("response.content_part.done", &|e| {
        item_id(e);
        e.extend_from_slice(b",\"part\":");
        output_text(list, reply_words, e);
    });
    event("response.output_item.done", &|e| {
        e.extend_from_slice(b",\"output_index\":0,\"item\":");
        response_message(req, list, reply_words, true, e);
    });
    event("response.completed", &|e| {
        e.extend_from_slice(b",\"response\":");
        response_object(req, Some((list, reply_words)), e);
    });
}

/// One `chat.completion.chunk` event: its one choice's delta written by
/// `delta`, and its finish reason (raw JSON: `null` or a string).
fn chat_chunk(req: &ChatRequest<'_>, delta: &dyn Fn(&mut BytesMut), finish: &str) -> BytesMut {
    let mut e = BytesMut::with_capacity(256);
    e.extend_from_slice(b"data: ");
    prefix(req, "chat.completion.chunk", &mut e);
    e.extend_from_slice(b"\"choices\":[{\"index\":0,\"delta\":{");
    delta(&mut e);
    e.extend_from_slice(b"},\"finish_reason\":");
    e.extend_from_slice(finish.as_bytes());
    e.extend_from_slice(b"}]}\n\n");
    e
}

/// The end of an OpenAI-style stream: the usage chunk when asked for,
/// then `[DONE]`.
fn openai_stream_end(req: &ChatRequest<'_>, object: &str, completion: usize, out: &mut Vec<BytesMut>) {
    if req.include_usage {
        out.push(usage_event(req, object, completion));
    }
    out.push(BytesMut::from(&b"data: [DONE]\n\n"[..]));
}

/// A non-streamed `chat.completion` body.
pub fn completion(req: &ChatRequest<'_>, list: &[&str], reply_words: usize, out: &mut BytesMut) {
    prefix(req, "chat.completion", out);
    out.extend_from_slice(b"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"");
    words(list, 0, reply_words, out);
    out.extend_from_slice(b"\"},\"finish_reason\":");
    out.extend_from_slice(req.finish().as_bytes());
    out.extend_from_slice(b"}],");
    usage(req, reply_words, out);
    out.put_u8(b'}');
}

/// The SSE events of a streamed answer, each a complete `data: ...\n\n`,
/// ending with `data: [DONE]`.
pub fn stream_events(req: &ChatRequest<'_>, list: &[&str], reply_words: usize, chunks: usize, out: &mut Vec<BytesMut>) {
    let chunk = |delta: &dyn Fn(&mut BytesMut), finish: &str| chat_chunk(req, delta, finish);
    out.push(chunk(&|e| e.extend_from_slice(b"\"role\":\"assistant\",\"content\":\"\""), "null"));
    for (from, to) in pieces(reply_words, chunks) {
        out.push(chunk(
            &|e| {
                e.extend_from_slice(b"\"content\":\"");
                words(list, from, to, e);
                e.put_u8(b'"');
            },
            "null",
        ));
    }
    out.push(chunk(&|_| {}, req.finish()));
    openai_stream_end(req, "chat.completion.chunk", reply_words, out);
}

/// An OpenAI-style error body for an injected failure status.
pub fn error(status: u16, out: &mut BytesMut) {
    let message = format!("mock upstream injected status {status}");
    tollgate_protocol::openai::write_error_body(out, &message, "server_error", "mock_failure");
}

/// An Anthropic `message` body.
pub fn anthropic_message(req: &ChatRequest<'_>, list: &[&str], reply_words: usize, out: &mut BytesMut) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"{\"id\":\"msg_mock_");
    out.extend_from_slice(n.format(req.id).as_bytes());
    out.extend_from_slice(b"\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"");
    out.extend_from_slice(req.model);
    out.extend_from_slice(b"\",\"content\":[{\"type\":\"text\",\"text\":\"");
    words(list, 0, reply_words, out);
    out.extend_from_slice(b"\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{");
    anthropic_input(req, out);
    out.extend_from_slice(b",\"output_tokens\":");
    out.extend_from_slice(n.format(reply_words).as_bytes());
    out.extend_from_slice(b"}}");
}

/// The signature of the mock's thinking blocks: opaque base64, as
/// Anthropic's are, with a run that looks like an AWS key inside, so that
/// a gateway scanning signatures as text would be caught changing them.
pub const THINKING_SIGNATURE: &str =
    "EqQBCkgIARABGAIiQNn5u2k0Y7sZbH3q9c8p+AKIAZ3MBL4NQUJR7QH5X/F4Wm+T1xQ2e6vJ0aKLdR8oUiGs5Nf1tYhB3wCp/Xz7E9rMgVbIk4nQy6OuAjSdPl0HeZcEgx==";
const THINKING: &str = "The user wants a greeting; keep it short.";

/// `x-mock-thinking: 1` on an Anthropic message: a thinking block with its
/// signature before the text.
pub fn with_thinking(out: &mut BytesMut) {
    let Some(at) = memchr::memmem::find(out, b"\"content\":[").map(|p| p + 11) else { return };
    let block = format!(r#"{{"type":"thinking","thinking":"{THINKING}","signature":"{THINKING_SIGNATURE}"}},"#);
    let rest = out.split_off(at);
    out.extend_from_slice(block.as_bytes());
    out.extend_from_slice(&rest);
}

/// The same on an Anthropic stream: block 0 is the thinking (its text,
/// then its signature as a `signature_delta`), the text moves to block 1.
pub fn with_thinking_events(events: &mut Vec<BytesMut>) {
    for e in events.iter_mut().skip(1) {
        if let Some(at) = memchr::memmem::find(e, b"\"index\":0") {
            e[at + 8] = b'1';
        }
    }
    let thinking = [
        anthropic_event(
            "content_block_start",
            br#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
        ),
        anthropic_event(
            "content_block_delta",
            format!(r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"thinking_delta","thinking":"{THINKING}"}}}}"#)
                .as_bytes(),
        ),
        anthropic_event(
            "content_block_delta",
            format!(r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"signature_delta","signature":"{THINKING_SIGNATURE}"}}}}"#)
                .as_bytes(),
        ),
        anthropic_event("content_block_stop", br#"{"type":"content_block_stop","index":0}"#),
    ];
    let at = 1.min(events.len());
    events.splice(at..at, thinking);
}

/// One named Anthropic event, complete.
fn anthropic_event(name: &str, data: &[u8]) -> BytesMut {
    let mut e = BytesMut::with_capacity(data.len() + 32);
    e.extend_from_slice(b"event: ");
    e.extend_from_slice(name.as_bytes());
    e.extend_from_slice(b"\ndata: ");
    e.extend_from_slice(data);
    e.extend_from_slice(b"\n\n");
    e
}

/// An Anthropic stream's `message_start`, with the input's usage.
fn anthropic_message_start(req: &ChatRequest<'_>) -> BytesMut {
    let mut start = BytesMut::new();
    start.extend_from_slice(b"{\"type\":\"message_start\",\"message\":{\"id\":\"msg_mock_");
    start.extend_from_slice(itoa::Buffer::new().format(req.id).as_bytes());
    start.extend_from_slice(b"\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"");
    start.extend_from_slice(req.model);
    start.extend_from_slice(b"\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{");
    anthropic_input(req, &mut start);
    start.extend_from_slice(b",\"output_tokens\":1}}}");
    anthropic_event("message_start", &start)
}

/// The events of an Anthropic stream, each a complete `event: ...\ndata:
/// ...\n\n`, as the Messages API sends them (a ping included).
pub fn anthropic_stream_events(
    req: &ChatRequest<'_>,
    list: &[&str],
    reply_words: usize,
    chunks: usize,
    out: &mut Vec<BytesMut>,
) {
    let mut n = itoa::Buffer::new();
    let event = anthropic_event;
    out.push(anthropic_message_start(req));
    out.push(event(
        "content_block_start",
        b"{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}",
    ));
    out.push(event("ping", b"{\"type\": \"ping\"}"));
    for (from, to) in pieces(reply_words, chunks) {
        let mut d = BytesMut::new();
        d.extend_from_slice(
            b"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"",
        );
        words(list, from, to, &mut d);
        d.extend_from_slice(b"\"}}");
        out.push(event("content_block_delta", &d));
    }
    out.push(event("content_block_stop", b"{\"type\":\"content_block_stop\",\"index\":0}"));
    let mut delta = BytesMut::new();
    delta.extend_from_slice(
        b"{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":",
    );
    delta.extend_from_slice(n.format(reply_words).as_bytes());
    delta.extend_from_slice(b"}}");
    out.push(event("message_delta", &delta));
    out.push(event("message_stop", b"{\"type\":\"message_stop\"}"));
}

/// An Anthropic error body for an injected failure status.
pub fn anthropic_error(status: u16, out: &mut BytesMut) {
    let kind = match status {
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    };
    out.extend_from_slice(b"{\"type\":\"error\",\"error\":{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"message\":\"mock upstream injected status ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.extend_from_slice(b"\"}}");
}

/// The arguments of the mock's tool calls (`x-mock-tool: NAME`), and the
/// two pieces a stream sends them in.
const TOOL_ARGS: &str = r#"{"city":"Paris"}"#;
const TOOL_ARG_PIECES: [&str; 2] = [r#"{"city":"#, r#""Paris"}"#];
/// The completion tokens a tool call reports.
const TOOL_TOKENS: usize = 8;

fn call_id(req: &ChatRequest<'_>, prefix: &str, out: &mut BytesMut) {
    out.put_u8(b'"');
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(itoa::Buffer::new().format(req.id).as_bytes());
    out.put_u8(b'"');
}

/// A `chat.completion` whose answer is one call of the tool `name`.
pub fn tool_completion(req: &ChatRequest<'_>, name: &str, out: &mut BytesMut) {
    prefix(req, "chat.completion", out);
    out.extend_from_slice(
        b"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":",
    );
    call_id(req, "call_mock_", out);
    out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
    tollgate_protocol::openai::write_json_string(out, name);
    out.extend_from_slice(b",\"arguments\":");
    tollgate_protocol::openai::write_json_string(out, TOOL_ARGS);
    out.extend_from_slice(b"}}]},\"finish_reason\":\"tool_calls\"}],");
    usage(req, TOOL_TOKENS, out);
    out.put_u8(b'}');
}

/// A chat stream calling the tool `name`: the call opened with its id and
/// name, its arguments in two pieces, `tool_calls` as the finish, usage
/// when asked for, `[DONE]`.
pub fn tool_stream_events(req: &ChatRequest<'_>, name: &str, out: &mut Vec<BytesMut>) {
    let chunk = |call: &dyn Fn(&mut BytesMut), finish: &str| chat_chunk(req, call, finish);
    out.push(chunk(
        &|e| {
            e.extend_from_slice(b"\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":");
            call_id(req, "call_mock_", e);
            e.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
            tollgate_protocol::openai::write_json_string(e, name);
            e.extend_from_slice(b",\"arguments\":\"\"}}]");
        },
        "null",
    ));
    for piece in TOOL_ARG_PIECES {
        out.push(chunk(
            &|e| {
                e.extend_from_slice(b"\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":");
                tollgate_protocol::openai::write_json_string(e, piece);
                e.extend_from_slice(b"}}]");
            },
            "null",
        ));
    }
    out.push(chunk(&|_| {}, "\"tool_calls\""));
    openai_stream_end(req, "chat.completion.chunk", TOOL_TOKENS, out);
}

/// An Anthropic message whose answer is one `tool_use` of `name`.
pub fn anthropic_tool_message(req: &ChatRequest<'_>, name: &str, out: &mut BytesMut) {
    out.extend_from_slice(b"{\"id\":\"msg_mock_");
    out.extend_from_slice(itoa::Buffer::new().format(req.id).as_bytes());
    out.extend_from_slice(b"\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"");
    out.extend_from_slice(req.model);
    out.extend_from_slice(b"\",\"content\":[{\"type\":\"tool_use\",\"id\":");
    call_id(req, "toolu_mock_", out);
    out.extend_from_slice(b",\"name\":");
    tollgate_protocol::openai::write_json_string(out, name);
    out.extend_from_slice(b",\"input\":");
    out.extend_from_slice(TOOL_ARGS.as_bytes());
    out.extend_from_slice(b"}],\"stop_reason\":\"tool_use\",\"stop_sequence\":null,\"usage\":{");
    anthropic_input(req, out);
    out.extend_from_slice(b",\"output_tokens\":");
    out.extend_from_slice(itoa::Buffer::new().format(TOOL_TOKENS).as_bytes());
    out.extend_from_slice(b"}}");
}

/// An Anthropic stream calling `name`: a `tool_use` block whose input
/// comes as two `input_json_delta`s, `stop_reason: tool_use`.
pub fn anthropic_tool_stream_events(req: &ChatRequest<'_>, name: &str, out: &mut Vec<BytesMut>) {
    let event = anthropic_event;
    out.push(anthropic_message_start(req));
    let mut block = BytesMut::new();
    block.extend_from_slice(
        b"{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":",
    );
    call_id(req, "toolu_mock_", &mut block);
    block.extend_from_slice(b",\"name\":");
    tollgate_protocol::openai::write_json_string(&mut block, name);
    block.extend_from_slice(b",\"input\":{}}}");
    out.push(event("content_block_start", &block));
    for piece in TOOL_ARG_PIECES {
        let mut d = BytesMut::new();
        d.extend_from_slice(
            b"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":",
        );
        tollgate_protocol::openai::write_json_string(&mut d, piece);
        d.extend_from_slice(b"}}");
        out.push(event("content_block_delta", &d));
    }
    out.push(event("content_block_stop", b"{\"type\":\"content_block_stop\",\"index\":0}"));
    out.push(event(
        "message_delta",
        format!(r#"{{"type":"message_delta","delta":{{"stop_reason":"tool_use","stop_sequence":null}},"usage":{{"output_tokens":{TOOL_TOKENS}}}}}"#).as_bytes(),
    ));
    out.push(event("message_stop", b"{\"type\":\"message_stop\"}"));
}

/// A Responses API function call item (`done`: with its arguments).
fn function_call_item(req: &ChatRequest<'_>, name: &str, done: bool, out: &mut BytesMut) {
    out.extend_from_slice(b"{\"type\":\"function_call\",\"id\":");
    call_id(req, "fc_mock_", out);
    out.extend_from_slice(b",\"call_id\":");
    call_id(req, "call_mock_", out);
    out.extend_from_slice(b",\"name\":");
    tollgate_protocol::openai::write_json_string(out, name);
    out.extend_from_slice(b",\"arguments\":");
    tollgate_protocol::openai::write_json_string(out, if done { TOOL_ARGS } else { "" });
    out.extend_from_slice(if done { b",\"status\":\"completed\"}" } else { b",\"status\":\"in_progress\"}" });
}

/// A Responses API answer that is one function call of `name`.
pub fn tool_response(req: &ChatRequest<'_>, name: &str, out: &mut BytesMut) {
    response_with(req, Some((&|o: &mut BytesMut| function_call_item(req, name, true, o), TOOL_TOKENS)), out);
}

/// A Responses API stream calling `name`: the item added, its arguments
/// as two deltas, `.done`, the item done, `response.completed`.
pub fn tool_responses_stream_events(req: &ChatRequest<'_>, name: &str, out: &mut Vec<BytesMut>) {
    let mut events = ResponsesEvents::opened(req, out);
    let mut event = |kind: &str, body: &dyn Fn(&mut BytesMut)| events.event(kind, body);
    event("response.output_item.added", &|e| {
        e.extend_from_slice(b",\"output_index\":0,\"item\":");
        function_call_item(req, name, false, e);
    });
    let item = |e: &mut BytesMut| {
        e.extend_from_slice(b",\"item_id\":");
        call_id(req, "fc_mock_", e);
        e.extend_from_slice(b",\"output_index\":0");
    };
    for piece in TOOL_ARG_PIECES {
        event("response.function_call_arguments.delta", &|e| {
            item(e);
            e.extend_from_slice(b",\"delta\":");
            tollgate_protocol::openai::write_json_string(e, piece);
        });
    }
    event("response.function_call_arguments.done", &|e| {
        item(e);
        e.extend_from_slice(b",\"arguments\":");
        tollgate_protocol::openai::write_json_string(e, TOOL_ARGS);
    });
    event("response.output_item.done", &|e| {
        e.extend_from_slice(b",\"output_index\":0,\"item\":");
        function_call_item(req, name, true, e);
    });
    event("response.completed", &|e| {
        e.extend_from_slice(b",\"response\":");
        response_with(req, Some((&|o: &mut BytesMut| function_call_item(req, name, true, o), TOOL_TOKENS)), e);
    });
}

/// The dimensions of the mock's embeddings unless a request asks for
/// others (`dimensions`).
pub const EMBEDDING_DIMENSIONS: usize = 64;

/// One text's embedding: each word (lower-cased letters and digits)
/// hashed to a dimension and a sign, summed, scaled to unit length. Texts
/// that share words are close, texts that share none nearly orthogonal,
/// so that tests of similarity mean something; the same text always gets
/// the same vector.
pub fn embed(text: &str, dimensions: usize) -> Vec<f32> {
    let mut v = vec![0f32; dimensions.max(1)];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let h = fnv1a(word.to_lowercase().as_bytes());
        let at = (h % v.len() as u64) as usize;
        v[at] += if h >> 63 == 0 { 1.0 } else { -1.0 };
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// An embeddings answer (`POST /v1/embeddings`): one vector per input
/// text (`input` a string or an array of strings), as floats or, with
/// `encoding_format: "base64"`, as little-endian `f32` bytes in base64;
/// usage counts a token per word (at least one per input).
pub fn embeddings(body: &[u8], model: &[u8], out: &mut BytesMut) {
    let (mut texts, mut base64, mut dimensions) = (Vec::new(), false, EMBEDDING_DIMENSIONS);
    let _ = tollgate_protocol::json::string_values(body, |key, v| {
        let mut text = Vec::new();
        let _ = tollgate_protocol::json::unescape(&body[v.raw.clone()], &mut text);
        match key {
            b"input" => texts.push(String::from_utf8_lossy(&text).into_owned()),
            b"encoding_format" => base64 = text == b"base64",
            _ => {}
        }
    });
    if let Some(at) = memchr::memmem::find(body, b"\"dimensions\"") {
        let digits: String = body[at + 12..]
            .iter()
            .skip_while(|b| matches!(b, b' ' | b':'))
            .take_while(|b| b.is_ascii_digit())
            .map(|&b| b as char)
            .collect();
        dimensions = digits.parse().unwrap_or(EMBEDDING_DIMENSIONS).clamp(1, 4096);
    }
    if texts.is_empty() {
        texts.push(String::new());
    }
    let tokens: usize = texts.iter().map(|t| t.split_whitespace().count().max(1)).sum();
    out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    for (i, text) in texts.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.extend_from_slice(b"{\"object\":\"embedding\",\"index\":");
        out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
        out.extend_from_slice(b",\"embedding\":");
        let v = embed(text, dimensions);
        if base64 {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            out.put_u8(b'"');
            base64_encode(&bytes, out);
            out.put_u8(b'"');
        } else {
            out.put_u8(b'[');
            for (j, x) in v.iter().enumerate() {
                if j > 0 {
                    out.put_u8(b',');
                }
                out.extend_from_slice(format!("{x}").as_bytes());
            }
            out.put_u8(b']');
        }
        out.put_u8(b'}');
    }
    out.extend_from_slice(b"],\"model\":\"");
    out.extend_from_slice(model);
    out.extend_from_slice(b"\",\"usage\":{\"prompt_tokens\":");
    out.extend_from_slice(itoa::Buffer::new().format(tokens).as_bytes());
    out.extend_from_slice(b",\"total_tokens\":");
    out.extend_from_slice(itoa::Buffer::new().format(tokens).as_bytes());
    out.extend_from_slice(b"}}");
}

/// Standard base64 with padding.
fn base64_encode(bytes: &[u8], out: &mut BytesMut) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.put_u8(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]);
            } else {
                out.put_u8(b'=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_reassembles_to_the_completion_text() {
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        let req = ChatRequest::read(body).unwrap();
        assert!(req.stream && req.include_usage);
        let mut events = Vec::new();
        stream_events(&req, REPLY_WORDS, 10, 3, &mut events);
        assert_eq!(events.len(), 1 + 3 + 1 + 1 + 1);
        let mut text = String::new();
        for e in &events[1..4] {
            let s = std::str::from_utf8(e).unwrap();
            let start = s.find("\"content\":\"").unwrap() + 11;
            let end = start + s[start..].find('"').unwrap();
            text.push_str(&s[start..end]);
        }
        let mut whole = BytesMut::new();
        words(REPLY_WORDS, 0, 10, &mut whole);
        assert_eq!(text.as_bytes(), &whole[..]);
    }

    #[test]
    fn embeddings_of_texts_sharing_words_are_close() {
        let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let d = EMBEDDING_DIMENSIONS;
        let a = embed("the invoice for the finance team", d);
        let b = embed("The finance team's invoice", d);
        let c = embed("weather in Paris tomorrow", d);
        assert!((cos(&a, &a) - 1.0).abs() < 1e-5);
        assert!(cos(&a, &b) > 0.6, "{}", cos(&a, &b));
        assert!(cos(&a, &c).abs() < cos(&a, &b));
        assert_eq!(embed("same text", d), embed("same text", d));
        let mut out = BytesMut::new();
        base64_encode(b"Man", &mut out);
        base64_encode(b"Ma", &mut out);
        base64_encode(b"M", &mut out);
        assert_eq!(&out[..], b"TWFuTWE=TQ==");
    }
}
