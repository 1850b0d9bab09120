//! The stream relay's logic, sans-IO: upstream bytes in, the client's
//! events out. Each SSE event is counted (its delta's tokens, as
//! generated), checked against the request's ceilings and its
//! tokens-per-minute reservation, passed through the answer guard (which
//! holds back text that might still become a finding), captured, and
//! translated into the client's API.
//!
//! Where the stream stands is one [`Flow`]: streaming, or stopped by the
//! gateway (a guardrail blocked it, a ceiling capped it), or failed (the
//! upstream broke off or sent what cannot be read), or done. Every change
//! of flow goes through [`StreamRelay::stop`], where the first reason to
//! stop wins; [`StreamRelay::end_of_read`] writes the stream's ending for
//! whichever flow it ended in. [`super::translate`] does the IO around it,
//! and the in-memory benchmark drives it directly.

use bytes::{Bytes, BytesMut};
use tollgate_protocol::anthropic::{self, StreamTranslator};
use tollgate_protocol::responses::chat::ResponsesStream;
use tollgate_protocol::sse::SseParser;
use tollgate_protocol::tokens::Encoding;

use super::answer::{anthropic_usage, token_usage};
use super::guard::{EventGuard, Recorded};
use super::relay::RouteLabel;
use super::upstream_request::{ResponsesFrom, Translation};
use super::Front;
use crate::accounts::Reservation;
use crate::record::{End, TokenUsage};

/// One SSE event from the upstream may be at most this big: a chat
/// chunk, an Anthropic or Gemini event carries a delta.
const EVENT_BYTES_MAX: usize = 1024 * 1024;

/// One event of an upstream that speaks the Responses API may be as big as
/// a JSON answer the relays keep whole. Its stream repeats the whole answer
/// in its last events (`response.completed`, with its usage), about a
/// kilobyte a token with log probabilities: at 1 MiB, a tenant's answer of
/// a thousand tokens or so failed there, after every delta had passed, and
/// its usage (with the input of its files, which the gateway does not
/// count) was never read (found by a review). Only there: such an event
/// is held in several buffers at once (the parser's, the guard's, the
/// client's: up to six copies, by a review's count, not measured).
const RESPONSES_EVENT_BYTES_MAX: usize = super::answer::TRANSLATED_BODY_BYTES_MAX;

/// Ceilings on one request's output tokens and cost: a stream that crosses
/// one is ended as if the model had reached `max_tokens`.
#[derive(Clone, Debug)]
pub struct Ceiling {
    pub output_tokens: u64,
    /// (limit in micro-dollars, the prompt's tokens, the model's price,
    /// whether the provider may bill cache writes)
    pub cost: Option<(u64, PromptTokens, tollgate_policy::config::Price, CacheWrites)>,
}

/// Whether a request may be billed cache writes, which Anthropic prices
/// above the input (1.25 times, twice for an hour): always where the
/// gateway marks prompts for the provider (`prompt_cache_marks`); where
/// the body marks a part (`cache_control`, which OpenAI-compatible proxies
/// of Claude take too) for a provider that reports writes (Anthropic,
/// Bedrock, an OpenAI-compatible one); never for OpenAI (which writes at
/// the input price and reports none), the mock or Gemini. The body is
/// searched only when asked (once per exchange), and a body with a
/// letter in escapes (`cache\u005fcontrol`) counts as marked.
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheWrites {
    pub always: bool,
    pub if_marked: bool,
}

impl CacheWrites {
    pub fn of(provider: Option<&tollgate_policy::config::Provider>) -> CacheWrites {
        use tollgate_policy::ProviderKind;
        provider.map_or_else(CacheWrites::default, |p| CacheWrites {
            always: p.prompt_cache_marks,
            if_marked: !matches!(p.kind, ProviderKind::OpenAi | ProviderKind::Mock | ProviderKind::Gemini),
        })
    }

    /// Whether writes may be billed, `marked` saying whether the body
    /// marks a part (asked only where it decides).
    pub fn may(self, marked: impl FnOnce() -> bool) -> bool {
        self.always || (self.if_marked && marked())
    }
}

/// The prompt's tokens as a cost ceiling needs them: its upper bound
/// decides while the answer's cost is far from the limit, and the prompt
/// is counted (once) only when the bound no longer can. A stream then
/// starts without waiting for a count (7 ms at 100 KB), and in the usual
/// case, an answer far below the ceiling, never pays for one.
#[derive(Clone, Debug)]
pub struct PromptTokens {
    bound: u64,
    exact: std::cell::OnceCell<u64>,
    body: bytes::Bytes,
    encoding: tollgate_protocol::tokens::Encoding,
    /// Tokens the provider reads besides the body (`Prompt::stored`).
    stored: u64,
    /// Whether the body marks the provider's cache, searched once.
    marks: std::cell::OnceCell<bool>,
}

impl PromptTokens {
    /// `exact` when the request's prompt was counted already; `bound` and
    /// `exact` include `stored`, as `Prompt`'s figures do.
    pub fn new(
        bound: u64,
        exact: Option<u64>,
        body: bytes::Bytes,
        encoding: tollgate_protocol::tokens::Encoding,
        stored: u64,
    ) -> Self {
        let cell = std::cell::OnceCell::new();
        if let Some(n) = exact {
            let _ = cell.set(n);
        }
        PromptTokens { bound, exact: cell, body, encoding, stored, marks: std::cell::OnceCell::new() }
    }

    /// With whether the body marks the provider's cache, where the
    /// exchange has searched already (`pipeline::Prompt::marks_cache`).
    pub fn marks_known(self, marks: Option<bool>) -> Self {
        if let Some(m) = marks {
            let _ = self.marks.set(m);
        }
        self
    }

    fn marks_cache(&self) -> bool {
        *self.marks.get_or_init(|| tollgate_protocol::media::marks_cache(&self.body))
    }

    fn exact(&self) -> u64 {
        *self.exact.get_or_init(|| {
            tollgate_protocol::tokens::prompt_tokens(self.encoding, &self.body).saturating_add(self.stored)
        })
    }
}

impl Ceiling {
    pub fn crossed(&self, completion: u64) -> bool {
        completion > self.output_tokens
            || self.cost.as_ref().is_some_and(|(limit, prompt, price, writes)| {
                // The tier by the count, with its margin: dearer from within
                // a quarter of the threshold, so the cost only grows with
                // the prompt and the bound decides for the count.
                let cost = |prompt, price: tollgate_policy::config::Price| {
                    TokenUsage { prompt, completion, ..TokenUsage::default() }.cost_at(price.for_counted_prompt(prompt))
                };
                // Within the limit at the prompt's bound even with every
                // prompt token written to the cache: not crossed, and
                // nothing counted or searched.
                if cost(prompt.bound, price.before_answer(|| true)) <= *limit {
                    return false;
                }
                let price = price.before_answer(|| writes.may(|| prompt.marks_cache()));
                // Past it with no prompt at all: crossed. Between, the count
                // decides.
                cost(prompt.bound, price) > *limit && (cost(0, price) > *limit || cost(prompt.exact(), price) > *limit)
            })
    }
}

/// What a stream goes through besides translation.
pub struct StreamStages<'a, 'g> {
    /// The answer guard.
    pub guard: Option<EventGuard<'g>>,
    /// Where the guard's and the classifiers' hits go (the request
    /// record).
    pub hits: Option<&'a mut Vec<Recorded>>,
    pub ceiling: Option<Ceiling>,
    /// Grown as the stream generates past it; a stream that crosses a
    /// tokens-per-minute limit is ended there.
    pub reservation: Option<&'a Reservation>,
    /// With `[logging] capture_bodies`: the guard that redacts, and where
    /// the answer's text goes.
    pub capture: Option<(&'g tollgate_policy::guard::Guard, &'a mut Vec<u8>)>,
    /// With classifiers that check answers: the text released is held
    /// back from the client and asked about every this many bytes
    /// (`None`: released as the guard releases it).
    pub window: Option<usize>,
    /// Under a ceiling: whether an answer it stops is read on, dropped,
    /// for the provider's usage (`relay::Answer::read_to_end`: the
    /// provider bills what the gateway cannot count, a model's unseen
    /// reasoning above all, and the output limit sent with the request
    /// bounds the rest). Asked once, when the answer stops.
    pub read_on_capped: Option<&'a dyn Fn() -> bool>,
}

/// A stream translator for either direction, or none (the events of a
/// guarded stream in the client's own format).
pub enum Stream {
    ToOpenAi(StreamTranslator),
    ToAnthropic(anthropic::front::FrontStream),
    /// A chat stream as Responses API events; an Anthropic one through
    /// chat (its chunks parsed again on the way).
    ToResponses {
        anthropic: Option<Box<(StreamTranslator, SseParser)>>,
        events: Box<ResponsesStream>,
        /// A chat upstream's usage, read by structure as an untranslated
        /// stream's is (an unbelievable count is set aside, not billed).
        reported: Box<tollgate_protocol::openai::Reported>,
    },
    Identity {
        front: Front,
        done: bool,
        reported: tollgate_protocol::openai::Reported,
        strip_usage: bool,
        /// Events passed on: the number a Responses stream's own last
        /// event gets.
        sequence: u64,
        /// A Responses stream's response id (its first event carries it).
        id: Option<Box<str>>,
    },
}

/// What an event says of usage, read by structure, only for the events
/// that name it.
fn read_event(data: &[u8]) -> Option<tollgate_protocol::openai::AnswerFacts> {
    use tollgate_protocol::openai::{mentions_usage, read_answer};
    mentions_usage(data).then(|| read_answer(data)).flatten()
}

/// [`read_event`], its usage merged into `reported` (each count as last
/// reported: Anthropic reports in pieces).
fn merge_usage(
    reported: &mut tollgate_protocol::openai::Reported,
    data: &[u8],
) -> Option<tollgate_protocol::openai::AnswerFacts> {
    let facts = read_event(data);
    if let Some(f) = facts {
        reported.merge(f.reported);
    }
    facts
}

impl Stream {
    /// The translator for an answer in `translation`'s direction; with no
    /// translation, `strip_usage` keeps the usage chunk the gateway asked
    /// for from the client.
    pub fn new(translation: Translation, front: Front, strip_usage: bool) -> Stream {
        match translation {
            Translation::ToAnthropic(_) => Stream::ToAnthropic(anthropic::front::FrontStream::new()),
            Translation::ToOpenAi(info) => {
                Stream::ToOpenAi(StreamTranslator::new(crate::unix_now().as_secs(), info.include_usage))
            }
            Translation::ToResponses(from) => Stream::ToResponses {
                anthropic: (from == ResponsesFrom::Anthropic).then(|| {
                    Box::new((
                        StreamTranslator::new(crate::unix_now().as_secs(), true),
                        SseParser::new(EVENT_BYTES_MAX),
                    ))
                }),
                events: Box::new(ResponsesStream::with_id(crate::turns::new_response_id())),
                reported: Default::default(),
            },
            Translation::None => Stream::Identity {
                front,
                done: false,
                reported: Default::default(),
                strip_usage,
                sequence: 0,
                id: None,
            },
        }
    }

    fn event(&mut self, ev: &tollgate_protocol::sse::SseEvent, out: &mut BytesMut) -> Result<(), ()> {
        match self {
            Stream::ToOpenAi(t) => t.event(ev, out).map_err(|_| ()),
            Stream::ToAnthropic(t) => t.event(ev, out).map_err(|_| ()),
            Stream::ToResponses { anthropic: None, events, reported } => {
                merge_usage(reported, &ev.data);
                events.event(ev, out).map_err(|_| ())
            }
            Stream::ToResponses { anthropic: Some(a), events, .. } => {
                let (chat, parser) = &mut **a;
                let mut chunks = BytesMut::new();
                chat.event(ev, &mut chunks).map_err(|_| ())?;
                through_chat(parser, events, chunks, out)
            }
            Stream::Identity { front, done, reported, strip_usage, sequence, id } => {
                if *front == Front::Responses && id.is_none() {
                    *id = super::answer::response_id(&ev.data);
                }
                // Read by structure: a `usage` only at the top level (or
                // in Anthropic's `message_start`, the message's), and the
                // usage chunk known by its empty `choices`, however the
                // upstream spaces or orders its keys. Anthropic reports in
                // pieces: each count as last reported.
                let facts = merge_usage(reported, &ev.data);
                // The usage chunk the gateway asked for carries no choice.
                let asked_for = *strip_usage && facts.is_some_and(|f| f.has_usage && f.no_choices);
                let responses =
                    (*front == Front::Responses).then(|| tollgate_protocol::responses::read_event(&ev.data)).flatten();
                match responses.as_ref().and_then(|f| f.sequence.clone()) {
                    // A Responses event is numbered again: the guard may
                    // release held text in one event more, and a client
                    // that orders or resumes by `sequence_number` must not
                    // see two alike.
                    Some(at) => {
                        let mut data = Vec::with_capacity(ev.data.len() + 8);
                        data.extend_from_slice(&ev.data[..at.start]);
                        data.extend_from_slice(itoa::Buffer::new().format(*sequence).as_bytes());
                        data.extend_from_slice(&ev.data[at.end..]);
                        tollgate_protocol::sse::write_event(out, ev.event.as_deref(), &data);
                        *sequence += 1;
                    }
                    None if !asked_for => {
                        tollgate_protocol::sse::write_event(out, ev.event.as_deref(), &ev.data);
                        *sequence += 1;
                    }
                    None => {}
                }
                *done |= &ev.data[..] == b"[DONE]" || ev.event.as_deref() == Some(b"message_stop");
                // A Responses stream has no `[DONE]`: its response's last
                // event ends it.
                *done |= responses.is_some_and(|f| f.last);
                Ok(())
            }
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        match self {
            Stream::ToOpenAi(t) => t.finish(out),
            Stream::ToAnthropic(t) => t.finish(out),
            Stream::ToResponses { anthropic, events, .. } => {
                if let Some(a) = anthropic {
                    let (chat, parser) = &mut **a;
                    let mut chunks = BytesMut::new();
                    chat.finish(&mut chunks);
                    let _ = through_chat(parser, events, chunks, out);
                }
                events.finish(out)
            }
            Stream::Identity { done, .. } => *done = true,
        }
    }

    /// Reads one event for its usage alone, once the stream has ended
    /// for the client and the rest of the upstream's is read for its
    /// final count; nothing where the count is kept inside a translator
    /// that reads whole events only (an Anthropic upstream translated:
    /// see [`Stream::reads_usage_alone`]). A chat upstream's chunks
    /// translated for an Anthropic client are read as chat's (found by a
    /// review: a blocked or capped stream of a model that reasons unseen
    /// was billed without its reasoning for those clients).
    fn usage_only(&mut self, ev: &tollgate_protocol::sse::SseEvent) {
        match self {
            Stream::Identity { reported, .. } => {
                merge_usage(reported, &ev.data);
            }
            Stream::ToResponses { anthropic: None, reported, .. } => {
                merge_usage(reported, &ev.data);
            }
            Stream::ToAnthropic(t) => t.usage_only(ev),
            _ => {}
        }
    }

    /// A Responses stream's response id, once an event has carried it.
    fn take_response_id(&mut self) -> Option<Box<str>> {
        match self {
            Stream::Identity { id, .. } => id.take(),
            _ => None,
        }
    }

    /// Whether [`Stream::usage_only`] reads usage.
    fn reads_usage_alone(&self) -> bool {
        matches!(self, Stream::Identity { .. } | Stream::ToResponses { anthropic: None, .. } | Stream::ToAnthropic(_))
    }

    fn finished(&self) -> bool {
        match self {
            Stream::ToOpenAi(t) => t.finished(),
            Stream::ToAnthropic(t) => t.finished(),
            Stream::ToResponses { events, .. } => events.finished(),
            Stream::Identity { done, .. } => *done,
        }
    }

    /// Ends the stream the gateway stops: a guardrail withheld the rest
    /// (`capped` false), or a request ceiling was reached.
    fn stop(&mut self, model: &str, capped: bool, out: &mut BytesMut) {
        let why = super::answer::gateway_finish(self.front(), capped);
        match self.front() {
            Front::OpenAi => tollgate_protocol::openai::write_stream_end(out, model, crate::unix_now().as_secs(), why),
            Front::Anthropic | Front::CountTokens => anthropic::front::write_stream_end(out, why),
            Front::Completions | Front::Embeddings => {
                tollgate_protocol::openai::write_text_stream_end(out, model, crate::unix_now().as_secs(), why)
            }
            Front::Responses => {
                // Named as its first events named it.
                let id = match self {
                    Stream::ToResponses { events, .. } => format!("resp_{}", events.id()),
                    Stream::Identity { id: Some(id), .. } => id.to_string(),
                    _ => format!("resp_{}", crate::turns::new_response_id()),
                };
                tollgate_protocol::responses::write_stream_end(
                    out,
                    (&id, model, crate::unix_now().as_secs()),
                    why,
                    self.sequence(),
                )
            }
        }
        match self {
            // Its own ending was just written: nothing more.
            Stream::ToResponses { events, .. } => events.stopped(),
            _ => self.finish(&mut BytesMut::new()),
        }
    }

    fn usage(&self) -> super::answer::Usage {
        match self {
            Stream::Identity { reported, .. } if reported.unreadable => Err(super::answer::Rejected),
            Stream::Identity { reported, .. } => Ok(reported.usage().map(token_usage)),
            Stream::ToOpenAi(t) => Ok(anthropic_usage(t.usage())?.filter(|u| (u.prompt | u.completion) > 0)),
            Stream::ToResponses { anthropic: Some(a), .. } => {
                Ok(anthropic_usage(a.0.usage())?.filter(|u| (u.prompt | u.completion) > 0))
            }
            Stream::ToResponses { anthropic: None, reported, .. } if reported.unreadable => {
                Err(super::answer::Rejected)
            }
            Stream::ToResponses { anthropic: None, reported, .. } => Ok(reported.usage().map(token_usage)),
            Stream::ToAnthropic(t) => {
                let u = t.usage();
                if t.unreadable()
                    || [u.prompt, u.completion].iter().any(|&n| n > tollgate_protocol::openai::USAGE_TOKENS_MAX)
                {
                    return Err(super::answer::Rejected);
                }
                Ok(Some(token_usage(u)).filter(|u| (u.prompt | u.completion) > 0))
            }
        }
    }

    /// Why the answer's generations ended, as a translation told the
    /// client; `None`: as the upstream's (or its chat form's) events say.
    fn finish_reasons(&self) -> Option<tollgate_protocol::openai::Finish> {
        match self {
            Stream::ToOpenAi(t) => Some(t.finish_reasons()),
            Stream::ToAnthropic(t) => Some(t.finish_reasons()),
            Stream::ToResponses { anthropic: Some(a), .. } => Some(a.0.finish_reasons()),
            Stream::ToResponses { anthropic: None, .. } | Stream::Identity { .. } => None,
        }
    }

    /// An error event in the client's format, ending the stream.
    fn fail(&mut self, message: &str, code: &str, out: &mut BytesMut) {
        super::answer::write_error_event(self.front(), message, code, self.sequence(), out);
        if let Stream::ToResponses { events, .. } = self {
            events.stopped();
        }
    }

    /// The client's API: the translator's target, or the front itself.
    fn front(&self) -> Front {
        match self {
            Stream::ToOpenAi(_) => Front::OpenAi,
            Stream::ToAnthropic(_) => Front::Anthropic,
            Stream::ToResponses { .. } => Front::Responses,
            Stream::Identity { front, .. } => *front,
        }
    }

    /// The next event's number, for events the gateway writes into a
    /// Responses stream.
    fn sequence(&self) -> u64 {
        match self {
            Stream::Identity { sequence, .. } => *sequence,
            Stream::ToResponses { events, .. } => events.sequence(),
            _ => 0,
        }
    }

    /// Whether the stream's text is in Responses deltas
    /// ([`tollgate_protocol::responses`]).
    fn responses(&self) -> bool {
        matches!(self, Stream::Identity { front: Front::Responses, .. })
    }
}

/// Translates the chat chunks an Anthropic stream became into Responses
/// events.
fn through_chat(
    parser: &mut SseParser,
    events: &mut ResponsesStream,
    chunks: BytesMut,
    out: &mut BytesMut,
) -> Result<(), ()> {
    parser.push(chunks.freeze());
    while let Some(chunk) = parser.next_event().map_err(|_| ())? {
        events.event(&chunk, out).map_err(|_| ())?;
    }
    Ok(())
}

/// Where a stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Events pass as they come.
    Streaming,
    /// A guardrail withheld the rest: what it held is dropped, the stream
    /// ends with `content_filter` (`refusal` for Anthropic clients).
    Blocked,
    /// A request ceiling or a tokens-per-minute limit was reached: the
    /// event that crossed it is the first not passed on, and the stream
    /// ends with `length` (`max_tokens`).
    Capped,
    /// The upstream broke off, or sent what cannot be read or translated:
    /// the stream ends with an error event.
    Failed,
    /// The gateway's drain ran out of time: the stream ends with an error
    /// event saying so.
    Cut,
    /// The upstream's stream ended (or the client's API's final event
    /// passed) with nothing stopping it.
    Done,
}

/// A stream's relay state: the translator, the stages, the SSE parser and
/// the flow.
pub struct StreamRelay<'a, 'g> {
    translator: Stream,
    stages: StreamStages<'a, 'g>,
    parser: SseParser,
    /// Events the guard released, waiting for translation.
    passed: Vec<tollgate_protocol::sse::SseEvent>,
    encoding: Encoding,
    route: RouteLabel<'a>,
    flow: Flow,
    /// Completion tokens counted in the deltas so far.
    pub completion_counted: u64,
    /// With a window: the answer's text released so far (its last
    /// [`SAID_BYTES_MAX`]), and how much of it no classifier has seen.
    said: Vec<u8>,
    unasked: usize,
    /// The text is in Responses deltas, not in `guard::STREAM_TEXT` fields.
    responses: bool,
    /// The current event's strings, read once for the counter and the
    /// guard (a buffer kept from event to event).
    strings: super::guard::EventStrings,
    /// The upstream sent its own last event (`[DONE]`, `message_stop`, a
    /// finish), rather than the gateway ending the stream for it.
    ended_by_upstream: bool,
    /// The finish reasons the upstream's events (or their chat form) name.
    finish: super::answer::Finish,
    /// A Gemini upstream's events, made chat chunks (and parsed again)
    /// before the guard, the counts and the client's translation see them.
    gemini: Option<Box<(tollgate_protocol::gemini::StreamTranslator, SseParser)>>,
    /// A Bedrock upstream's body: AWS's binary messages, made chat chunks
    /// before the SSE parser sees them.
    bedrock: Option<Box<(tollgate_protocol::eventstream::Decoder, tollgate_protocol::bedrock::StreamTranslator)>>,
    /// `StreamStages::read_on_capped`'s answer, once asked.
    capped_read_on: std::cell::OnceCell<bool>,
    /// The stream was capped by a tokens-per-minute limit (not by its
    /// ceiling).
    rate_cut: bool,
}

/// The most of a windowed stream's text kept to ask about: a classifier
/// is sent at most its `text_bytes_max` (at most 1 MiB) of the answer so
/// far; what is older is dropped in steps of this much.
const SAID_BYTES_MAX: usize = 1 << 20;

/// An answer's text so far, and how many of its last bytes no classifier
/// has been asked about ([`StreamRelay::window_due`]).
pub type Said<'a> = (&'a [u8], usize);

impl<'a, 'g> StreamRelay<'a, 'g> {
    pub fn new(translator: Stream, stages: StreamStages<'a, 'g>, route: RouteLabel<'a>) -> StreamRelay<'a, 'g> {
        let responses = translator.responses();
        StreamRelay {
            responses,
            strings: Default::default(),
            translator,
            stages,
            parser: SseParser::new(if responses { RESPONSES_EVENT_BYTES_MAX } else { EVENT_BYTES_MAX }),
            passed: Vec::new(),
            encoding: Encoding::for_model(route.model.as_bytes()),
            route,
            flow: Flow::Streaming,
            completion_counted: 0,
            said: Vec::new(),
            unasked: 0,
            ended_by_upstream: false,
            finish: Default::default(),
            gemini: None,
            bedrock: None,
            capped_read_on: std::cell::OnceCell::new(),
            rate_cut: false,
        }
    }

    /// The upstream speaks Gemini: each of its events becomes chat chunks
    /// first, so that everything after reads chat as from an OpenAI-style
    /// upstream.
    pub fn read_gemini(&mut self) {
        let t = tollgate_protocol::gemini::StreamTranslator::new(self.route.model, crate::unix_now().as_secs());
        self.gemini = Some(Box::new((t, SseParser::new(EVENT_BYTES_MAX))));
    }

    /// The upstream speaks Bedrock's ConverseStream: its binary messages
    /// become chat chunks before anything else reads them.
    pub fn read_bedrock(&mut self) {
        let t = tollgate_protocol::bedrock::StreamTranslator::new(self.route.model, crate::unix_now().as_secs());
        self.bedrock = Some(Box::new((tollgate_protocol::eventstream::Decoder::new(), t)));
    }

    /// Whether the stream ended with the upstream's own last event: one
    /// whose body ended before it is not a complete answer, whatever
    /// the gateway wrote to close it for the client.
    pub fn ended_by_upstream(&self) -> bool {
        self.ended_by_upstream
    }

    pub fn flow(&self) -> Flow {
        self.flow
    }

    /// The response id a Responses stream passed through carried.
    pub fn take_response_id(&mut self) -> Option<Box<str>> {
        self.translator.take_response_id()
    }

    /// Whether, once the stream has stopped for the client, the upstream's
    /// later events are read for their usage (see
    /// `relay::Answer::read_to_end`): where the translation reads usage
    /// from each event (an OpenAI-style or Anthropic upstream as its own
    /// API, chat made Responses events) or the upstream's own translator
    /// keeps it (Gemini's, Bedrock's: [`StreamRelay::usage_read_on`]), not
    /// from a translator that has stopped (an Anthropic upstream
    /// translated), and under a ceiling only where the gateway cannot count
    /// what the provider bills (`StreamStages::read_on_capped`; otherwise
    /// the ceiling is there to stop the spend, and the answer it stops is
    /// billed what was counted).
    pub fn reads_usage_after_stop(&self) -> bool {
        (self.translator.reads_usage_alone() || self.gemini.is_some() || self.bedrock.is_some())
            && (self.stages.ceiling.is_none()
                || *self.capped_read_on.get_or_init(|| self.stages.read_on_capped.is_some_and(|f| f())))
    }

    /// Whether a stream its ceiling stopped is read on, dropped, for the
    /// provider's usage: where the gateway cannot count what the provider
    /// bills and the request went with the ceiling as its output limit
    /// (`StreamStages::read_on_capped`). Never after a tokens-per-minute
    /// limit's cut, nor a ceiling's the provider was not told of.
    pub fn read_on_after_ceiling(&self) -> bool {
        self.flow == Flow::Capped && !self.rate_cut && self.reads_usage_after_stop()
    }

    /// Whether a tokens-per-minute limit cut the stream: nothing is read
    /// on after that cut, whatever ends the stream for the client after it
    /// (a classifier asked about what was held).
    pub fn rate_cut(&self) -> bool {
        self.rate_cut
    }

    /// The one transition out of streaming: the first reason to stop wins.
    /// (A guard's last release, when the upstream ends after a cap, may
    /// still block: what it held came before the cap.)
    fn stop(&mut self, why: Flow) {
        if self.flow == Flow::Streaming || (self.flow == Flow::Capped && why == Flow::Blocked) {
            self.flow = why;
        }
    }

    /// The upstream broke off (a read failed or timed out).
    pub fn upstream_failed(&mut self) {
        self.stop(Flow::Failed);
    }

    /// The drain's time is up ([`crate::cut`]).
    pub fn shutting_down(&mut self) {
        self.stop(Flow::Cut);
    }

    /// Takes one piece of the upstream's decoded body; what the client gets
    /// of it is appended to `out`.
    pub fn feed(&mut self, piece: Bytes, out: &mut BytesMut) {
        let piece = match self.bedrock.as_mut() {
            None => piece,
            Some(b) => {
                let (decoder, translator) = &mut **b;
                decoder.push(&piece);
                let mut chunks = BytesMut::new();
                let mut broken = false;
                loop {
                    match decoder.next_message() {
                        Ok(Some(m)) => broken |= translator.message(&m, &mut chunks).is_err(),
                        Ok(None) => break,
                        Err(_) => {
                            broken = true;
                            break;
                        }
                    }
                }
                if broken {
                    // What came before the broken frame is still passed.
                    self.parser.push(chunks.freeze());
                    self.drain(out);
                    self.stop(Flow::Failed);
                    return;
                }
                chunks.freeze()
            }
        };
        self.parser.push(piece);
        self.drain(out);
    }

    /// Passes every whole event the parser holds.
    fn drain(&mut self, out: &mut BytesMut) {
        loop {
            let ev = match self.parser.next_event() {
                Ok(Some(ev)) => ev,
                Ok(None) => return,
                Err(_) => {
                    self.stop(Flow::Failed);
                    return;
                }
            };
            if self.flow != Flow::Streaming {
                // Stopped: the rest of the upstream's events are read for
                // their usage alone, and dropped. (Gemini's translator keeps
                // the usage each event reports; Bedrock's read its message
                // in `feed`.)
                if self.reads_usage_after_stop() {
                    match self.gemini.as_mut() {
                        Some(g) => {
                            let _ = g.0.event(&ev, &mut BytesMut::new());
                        }
                        None => self.translator.usage_only(&ev),
                    }
                }
                continue;
            }
            match self.gemini.take() {
                None => self.pass(ev, out),
                Some(mut g) => {
                    let mut chunks = BytesMut::new();
                    if g.0.event(&ev, &mut chunks).is_err() {
                        self.stop(Flow::Failed);
                    }
                    self.pass_chat(&mut g.1, chunks, out);
                    self.gemini = Some(g);
                }
            }
        }
    }

    /// Passes the chat chunks a Gemini event became, one by one.
    fn pass_chat(&mut self, parser: &mut SseParser, chunks: BytesMut, out: &mut BytesMut) {
        parser.push(chunks.freeze());
        while let Ok(Some(chunk)) = parser.next_event() {
            if self.flow == Flow::Streaming {
                self.pass(chunk, out);
            }
        }
    }

    /// One event in the upstream's (or, from Gemini, chat's) format:
    /// counted, checked against the ceilings, guarded, translated.
    fn pass(&mut self, ev: tollgate_protocol::sse::SseEvent, out: &mut BytesMut) {
        // Counted as generated, whatever reaches the client.
        let (tokens, finish_named) = delta_tokens(self.encoding, self.responses, &ev.data, &mut self.strings);
        self.completion_counted += tokens;
        // The counting pass saw a reason's key with a string: read by
        // structure (only the answer's own, not one nested in it).
        if finish_named {
            if let Some(f) = tollgate_protocol::openai::read_answer(&ev.data) {
                self.finish.merge(f.finish);
            }
        }
        let counted = self.completion_counted;
        // The event that crosses a request ceiling is the first one
        // not passed on.
        let within_limits = self.stages.reservation.is_none_or(|r| r.stream_used(counted));
        let crossed = self.stages.ceiling.as_ref().is_some_and(|c| c.crossed(counted));
        if !within_limits || crossed {
            // A tokens-per-minute limit's cut stops the spend: only the
            // ceiling's may read on (`read_on_after_ceiling`), and nothing
            // after the limit's (`rate_cut`).
            self.rate_cut |= !within_limits && self.flow == Flow::Streaming;
            self.stop(Flow::Capped);
            return;
        }
        // Guarded text is held back and released in events of the
        // same shape before translation.
        match self.stages.guard.as_mut() {
            None => self.passed.push(ev),
            Some(g) => {
                // The strings the counter read, not read again.
                match g.event_read(ev, &self.strings, &mut self.passed) {
                    Ok(()) => {}
                    Err(super::guard::Stop::Hit(_)) => self.stop(Flow::Blocked),
                    // Not the guard's finding: the upstream broke the
                    // answer's shape.
                    Err(super::guard::Stop::Shape) => self.stop(Flow::Failed),
                }
            }
        }
        self.translate_passed(out);
    }

    /// Translates what the guard released (everything, with no guard).
    fn translate_passed(&mut self, out: &mut BytesMut) {
        for ev in self.passed.drain(..) {
            if let Some((_, answer)) = self.stages.capture.as_mut() {
                delta_text(self.responses, &ev.data, answer, crate::record::CAPTURE_READ_BYTES);
            }
            if self.stages.window.is_some() {
                if self.said.len() >= 2 * SAID_BYTES_MAX {
                    self.said.drain(..self.said.len() - SAID_BYTES_MAX);
                }
                let before = self.said.len();
                delta_text(self.responses, &ev.data, &mut self.said, usize::MAX);
                self.unasked += self.said.len() - before;
            }
            if self.translator.event(&ev, out).is_err() && self.flow == Flow::Streaming {
                self.flow = Flow::Failed;
            }
        }
    }

    /// After each upstream read (`upstream_done`: the body has ended):
    /// releases what the guard still holds when the upstream is done, and
    /// writes the stream's ending once it is over. True when it is over.
    pub fn end_of_read(&mut self, upstream_done: bool, out: &mut BytesMut) -> bool {
        // A Gemini stream has no last event: its body's end is its end.
        let bedrock_ends = upstream_done && self.bedrock.as_ref().is_some_and(|b| !b.1.finished());
        if let Some(b) = self.bedrock.as_mut().filter(|_| bedrock_ends && self.flow == Flow::Streaming) {
            let mut chunks = BytesMut::new();
            b.1.finish(&mut chunks);
            self.parser.push(chunks.freeze());
            self.drain(out);
        }
        let gemini_ends = upstream_done && self.gemini.as_ref().is_some_and(|g| !g.0.finished());
        if let Some(mut g) = self.gemini.take_if(|_| gemini_ends) {
            let mut chunks = BytesMut::new();
            g.0.finish(&mut chunks);
            self.pass_chat(&mut g.1, chunks, out);
            self.gemini = Some(g);
        }
        let guard_may_release = matches!(self.flow, Flow::Streaming | Flow::Capped);
        if upstream_done && guard_may_release && !self.translator.finished() {
            if let Some(g) = self.stages.guard.as_mut() {
                if g.finish(&mut self.passed).is_err() {
                    self.stop(Flow::Blocked);
                }
            }
            // What the guard released last goes the way of every release:
            // translated, and captured.
            self.translate_passed(out);
        }
        let over = upstream_done || self.flow != Flow::Streaming || self.translator.finished();
        if !over {
            return false;
        }
        self.ended_by_upstream = self.flow == Flow::Streaming && self.translator.finished();
        if !self.translator.finished() {
            match self.flow {
                Flow::Blocked => self.translator.stop(self.route.model, false, out),
                Flow::Capped => self.translator.stop(self.route.model, true, out),
                Flow::Failed => {
                    let message = format!("upstream `{}` failed in the middle of the stream", self.route.provider);
                    self.translator.fail(&message, "upstream_stream_error", out)
                }
                Flow::Cut => self.translator.fail(
                    "the gateway is shutting down and ended the stream before it was complete",
                    "shutting_down",
                    out,
                ),
                Flow::Streaming | Flow::Done => self.translator.finish(out),
            }
        }
        if self.flow == Flow::Streaming {
            self.flow = Flow::Done;
        }
        true
    }

    /// With a window: whether the text released since the classifiers
    /// were last asked should be asked about now (a window's worth, or
    /// the stream is over with some unasked), and if so the answer's text
    /// so far (and how much of its end is new) and where the classifiers'
    /// hits go. The caller holds back
    /// what the client would get until it calls [`Self::asked`] or
    /// [`Self::withhold`].
    pub fn window_due(&mut self, over: bool) -> Option<(Said<'_>, &mut Vec<Recorded>)> {
        let size = self.stages.window?;
        let due = self.unasked >= size || (over && self.unasked > 0);
        let hits = self.stages.hits.as_deref_mut()?;
        due.then_some(((&self.said[..], self.unasked.min(self.said.len())), hits))
    }

    /// The classifiers passed the text so far.
    pub fn asked(&mut self) {
        self.unasked = 0;
    }

    /// A classifier stopped the answer: what was held back is dropped by
    /// the caller, and the stream ends here as a guardrail ends it, even
    /// when the upstream's own end was among what was held.
    pub fn withhold(&mut self, out: &mut BytesMut) {
        self.flow = Flow::Blocked;
        self.unasked = 0;
        self.translator.stop(self.route.model, false, out);
    }

    /// The provider's usage, as far as the stream has carried it.
    pub fn usage(&self) -> super::answer::Usage {
        self.translator.usage()
    }

    /// The usage once a stopped stream was read on for it: the client's
    /// translation's, or, from Gemini or Bedrock (whose chat chunks stop
    /// with the stream, the usage chunk that ends them unwritten), what
    /// their own translator read.
    pub fn usage_read_on(&self) -> super::answer::Usage {
        match self.translator.usage() {
            Ok(None) => super::answer::checked_usage(
                self.gemini
                    .as_ref()
                    .and_then(|g| g.0.usage().map(|u| u.to_openai()))
                    .or_else(|| self.bedrock.as_ref().and_then(|b| b.1.usage().map(|u| u.to_openai()))),
            ),
            other => other,
        }
    }

    /// The finish reasons the stream has carried, as the client was told:
    /// the gateway's own when it ended the stream.
    pub fn finish_reasons(&self) -> super::answer::Finish {
        use super::answer::{gateway_finish, only};
        match self.flow {
            Flow::Blocked => only(gateway_finish(self.translator.front(), false)),
            Flow::Capped => only(gateway_finish(self.translator.front(), true)),
            _ => self.translator.finish_reasons().unwrap_or(self.finish),
        }
    }

    /// How the stream ended, for the record.
    pub fn end(&self) -> End {
        match self.flow {
            Flow::Failed => End::UpstreamFailed,
            Flow::Cut => End::Cut,
            Flow::Blocked => End::Blocked,
            Flow::Capped => End::Capped,
            Flow::Streaming | Flow::Done => End::Completed,
        }
    }

    /// Files the guard's hits and redacts the captured text, once the
    /// stream is over (or the client has gone).
    pub fn close(self) {
        let StreamStages { guard, hits, capture, .. } = self.stages;
        if let Some((mut g, hits)) = guard.zip(hits) {
            g.record(hits);
        }
        if let Some((g, answer)) = capture {
            redact_text(g, answer);
        }
    }
}

/// Gives `f` each text one stream event carries, raw, and whether it holds
/// escapes: the guard's text fields (`guard::STREAM_TEXT`: OpenAI
/// `content`, `refusal` and tool-call `arguments`, Anthropic `text`,
/// `partial_json` and `thinking`, reasoning by either name, read by
/// `guard::stream_text_key`, so that what is counted and what is guarded
/// are the same texts), or a Responses event's `delta` (`responses`),
/// whose summaries repeat text already given.
fn event_texts(responses: bool, data: &[u8], mut f: impl FnMut(&[u8], bool)) {
    if responses {
        if let Some((raw, escaped)) = tollgate_protocol::responses::read_event(data).and_then(|e| e.delta) {
            f(&data[raw], escaped);
        }
        return;
    }
    let _ = tollgate_protocol::json::string_values(data, |key, v| {
        // A text key written with escapes is the field it decodes to, as
        // the guard reads it.
        if super::guard::stream_text_key(key).is_some() {
            f(&data[v.raw.clone()], v.escaped);
        }
    });
}

/// The tokens of a whole JSON answer's output, counted only where its
/// usage may be far under them: then `forward::set_aside_unbelievable`
/// bills the count, as for a stream whose usage reports under half of what
/// passed. Before, a JSON answer was never counted, and an upstream that
/// answered 3,000 tokens of text with `"completion_tokens": 1` was billed 1.
///
/// The output is read by structure, in the client's API (`front`): a chat
/// completion's messages (`content` and its text parts, `refusal`,
/// reasoning by either name, tool calls' names and arguments), an Anthropic
/// message's `text`, `thinking` and `tool_use` blocks (the input as
/// written), a response's output items, a legacy completion's texts.
/// Nothing else: a string keyed `content` or `text` elsewhere (Azure's
/// citations, an aggregator's page excerpts, a tool result, a response's
/// `instructions`) is input the provider bills as such (found by a review:
/// counted, honest answers were billed many times over); a legacy
/// completion that may `echo` its prompt is not judged by the count
/// (`forward`). Embeddings and token counts are not counted (0).
///
/// 0 (not counted) for an answer without a believed usage, or whose texts'
/// bytes (every string under a text key, a tool's name or in a tool's
/// input, anywhere; in a response, every string but its instructions and
/// tools' descriptions: a bound) are within [`TEXT_BYTES_PER_TOKEN_SEEN`] times the most a count
/// could be without setting the report aside (twice it, and 8): honest
/// answers run 1.5 to 5 bytes a token, and are not counted. So an upstream
/// can pass half its output's tokens as its count (the margin a stream has
/// too), or a sixth of its text's bytes where that is less (about two
/// fifths of CJK's tokens), and [`ANSWER_OWN_BYTES`] more. At most
/// [`COUNTED_TEXT_BYTES_MAX`] of its text is counted (the count runs on the
/// worker, before the answer's last write; the answer is at most the 16 MiB
/// a relay keeps whole). A request that asks a server to `echo` its last
/// message back (vLLM's chat completions) is not judged so
/// (`forward::set_aside_unbelievable`).
pub fn json_answer_text_tokens(doc: &[u8], usage: &super::answer::Usage, model: &str, front: Front) -> u64 {
    let Ok(Some(u)) = usage else { return 0 };
    if !matches!(front, Front::OpenAi | Front::Anthropic | Front::Responses | Front::Completions) {
        return 0;
    }
    let most = u.completion.saturating_mul(2).saturating_add(8).saturating_mul(TEXT_BYTES_PER_TOKEN_SEEN);
    // Most answers end here, unread: their text cannot pass the bound
    // beside the answer's own keys, ids and usage (a walk of every answer
    // cost the routing lane 3,800 instructions a request, 6%).
    if doc.len() as u64 <= most.saturating_add(ANSWER_OWN_BYTES) {
        return 0;
    }
    // A bound of the output's bytes: every string under a text key, and
    // every string of a free-form object (a tool's input, whose strings
    // the walk gives no key) anywhere. An Anthropic message with a tool's
    // input is read whatever the bound: the input's keys and numbers are
    // text the walk does not give (found by a review: `{"<3,000 tokens>":
    // 1}` passed).
    let tool_input = front == Front::Anthropic && memchr::memmem::find(doc, b"\"tool_use\"").is_some();
    if !tool_input {
        // A tool's name is output too. A response's output items hold
        // text under keys of many kinds (a patch's diff, a shell call's
        // commands, a computer's action): there every string counts but
        // the instructions and tools' descriptions it repeats, tools'
        // results, images and encrypted reasoning, none of them text the
        // count reads (each written otherwise only counts more).
        let mut bytes = 0u64;
        let _ = tollgate_protocol::json::string_values(doc, |key, v| {
            let output = match front {
                Front::Responses => {
                    !matches!(key, b"instructions" | b"description" | b"output" | b"result" | b"encrypted_content")
                }
                _ => {
                    key.is_empty()
                        || super::guard::stream_text_key(key).is_some()
                        || tollgate_protocol::json::decodes_to(key, b"name")
                }
            };
            if output {
                bytes += v.raw.len() as u64;
            }
        });
        if bytes <= most {
            return 0;
        }
    }
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(doc) else { return 0 };
    let encoding = Encoding::for_model(model.as_bytes());
    let (mut n, mut left) = (0, COUNTED_TEXT_BYTES_MAX);
    // A text counted (a value that is no string is none).
    let mut count = |text: Option<&str>| {
        let text = text.unwrap_or("");
        let mut end = text.len().min(left);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        n += encoding.count(&text[..end]);
        left -= end;
    };
    match front {
        Front::OpenAi => {
            for choice in answer["choices"].as_array().into_iter().flatten() {
                let m = &choice["message"];
                match &m["content"] {
                    serde_json::Value::Array(parts) => {
                        parts.iter().filter(|p| p["type"] == "text").for_each(|p| count(p["text"].as_str()))
                    }
                    content => count(content.as_str()),
                }
                count(m["refusal"].as_str());
                // Reasoning by either name, once: some servers send it
                // under both (found by a review: counted twice, it took the
                // whole margin).
                count(
                    ["reasoning_content", "reasoning"]
                        .into_iter()
                        .filter_map(|k| m[k].as_str())
                        .max_by_key(|r| r.len()),
                );
                let calls = m["tool_calls"].as_array().into_iter().flatten().map(|c| &c["function"]);
                for f in calls.chain(Some(&m["function_call"])) {
                    count(f["name"].as_str());
                    count(f["arguments"].as_str());
                }
            }
        }
        // The output items, never the `instructions` and `tools` a
        // response repeats from its request, nor a tool's results.
        Front::Responses => {
            for item in answer["output"].as_array().into_iter().flatten() {
                match item["type"].as_str() {
                    Some("message") => {
                        for part in item["content"].as_array().into_iter().flatten() {
                            match part["type"].as_str() {
                                Some("output_text") => count(part["text"].as_str()),
                                Some("refusal") => count(part["refusal"].as_str()),
                                _ => {}
                            }
                        }
                    }
                    // The reasoning's text where a model gives it, else its
                    // summary: one of the two, the longer.
                    Some("reasoning") => {
                        let joined = |k: &str| -> String {
                            item[k].as_array().into_iter().flatten().filter_map(|p| p["text"].as_str()).collect()
                        };
                        let (content, summary) = (joined("content"), joined("summary"));
                        count(Some(if content.len() >= summary.len() { &content } else { &summary }));
                    }
                    Some("function_call" | "mcp_call" | "mcp_approval_request") => {
                        count(item["name"].as_str());
                        count(item["arguments"].as_str());
                    }
                    Some("custom_tool_call") => {
                        count(item["name"].as_str());
                        count(item["input"].as_str());
                    }
                    Some("code_interpreter_call") => count(item["code"].as_str()),
                    // What the model asks a tool of the client's to do, as
                    // written: a patch, commands, a computer's action.
                    Some("apply_patch_call") => count(Some(&item["operation"].to_string())),
                    Some("shell_call" | "local_shell_call" | "computer_call") => {
                        count(Some(&item["action"].to_string()))
                    }
                    _ => {}
                }
            }
        }
        // A legacy completion's texts (one that `echo`es its prompt is not
        // judged: `forward::set_aside_unbelievable`'s caller).
        Front::Completions => {
            for choice in answer["choices"].as_array().into_iter().flatten() {
                count(choice["text"].as_str());
            }
        }
        _ => {
            for block in answer["content"].as_array().into_iter().flatten() {
                match block["type"].as_str() {
                    Some("text") => count(block["text"].as_str()),
                    Some("thinking") => count(block["thinking"].as_str()),
                    Some("tool_use") => {
                        count(block["name"].as_str());
                        count(Some(&block["input"].to_string()));
                    }
                    _ => {}
                }
            }
        }
    }
    n
}

/// Bytes a token of an answer's text above which a JSON answer's reported
/// count is checked by counting ([`json_answer_text_tokens`]).
const TEXT_BYTES_PER_TOKEN_SEEN: u64 = 3;
/// What a JSON answer holds beside its output, at most, as far as
/// [`json_answer_text_tokens`] is concerned: an answer within its bound by
/// this much more is not read (so an upstream may hide this much text
/// more, about 130 tokens of prose, beside a count it lowered).
const ANSWER_OWN_BYTES: u64 = 512;
/// The most of one answer's text counted: enough to show a report far
/// under it, and a bound on the count's time on the worker.
const COUNTED_TEXT_BYTES_MAX: usize = 1 << 20;

/// Appends the texts of one stream event to `answer`, up to `max` bytes.
fn delta_text(responses: bool, data: &[u8], answer: &mut Vec<u8>, max: usize) {
    event_texts(responses, data, |raw, _| {
        if answer.len() < max {
            let _ = tollgate_protocol::json::unescape(raw, answer);
        }
    });
    answer.truncate(max);
}

/// The captured text of a whole stream answer kept by the answer cache
/// (its events as the client reads them), redacted: what a relayed
/// stream's capture holds. `responses`: a Responses API stream.
pub fn captured_text(g: &tollgate_policy::guard::Guard, responses: bool, body: &Bytes) -> Vec<u8> {
    let mut answer = Vec::new();
    let mut events = SseParser::new(body.len().max(1));
    events.push(body.clone());
    while let Ok(Some(ev)) = events.next_event() {
        delta_text(responses, &ev.data, &mut answer, crate::record::CAPTURE_READ_BYTES);
    }
    redact_text(g, &mut answer);
    answer
}

/// Redacts a captured stream's text in place (read up to
/// [`crate::record::CAPTURE_READ_BYTES`]), then cuts it at
/// [`crate::record::CAPTURE_BYTES_MAX`]: redacted first, so that no match
/// is cut before it is found.
///
/// The cut is placed in the text as read, at the limit or past a match
/// that goes over it, before the redaction: placeholders are shorter than
/// what they replace, and a cut of the redacted text took in bytes from
/// past the limit (a match the read had cut undecided, kept in clear:
/// found by a review).
fn redact_text(g: &tollgate_policy::guard::Guard, text: &mut Vec<u8>) {
    let mut findings = tollgate_policy::guard::Findings::default();
    // Scanned as a whole text only where it is one: a text read to the
    // margin's end was cut there, and a match may go on past it (it
    // begins past the limit: every match is decided within the margin).
    let complete = text.len() < crate::record::CAPTURE_READ_BYTES;
    g.scan(text, tollgate_policy::guard::Direction::Response, complete, &mut findings);
    findings.file(0);
    let max = crate::record::CAPTURE_BYTES_MAX;
    let cut =
        findings.all.iter().filter(|(_, h)| h.start < max).map(|(_, h)| h.end).fold(max, usize::max).min(text.len());
    if findings.redacts() {
        let mut out = Vec::with_capacity(cut);
        let within = findings.all.iter().map(|(_, h)| h).filter(|h| h.start < cut);
        tollgate_policy::guard::redact(&text[..cut], 0, within, &mut out);
        *text = out;
    } else {
        text.truncate(cut);
    }
    // A placeholder longer than its match could pass the limit: the
    // redacted text is held to it (a placeholder cut, nothing of the text).
    text.truncate(max);
}

/// Tokens in the texts one stream event carries (OpenAI `content` and
/// tool-call `arguments`, Anthropic `text` and `partial_json`, reasoning,
/// a Responses delta), counted delta by delta: an estimate, as BPE across
/// piece boundaries is.
/// Also says whether the event names a finish or stop reason with a
/// string value, at any depth: the same pass, so that the events that
/// name none (most: `"finish_reason": null`) are read once.
/// (`strings`: where the event's strings are read, for the guard after.)
fn delta_tokens(
    encoding: tollgate_protocol::tokens::Encoding,
    responses: bool,
    data: &[u8],
    strings: &mut super::guard::EventStrings,
) -> (u64, bool) {
    let mut n = 0;
    let mut scratch = Vec::new();
    let mut count = |raw: &[u8], escaped: bool| {
        if raw.is_empty() {
            return;
        }
        let text = if escaped {
            scratch.clear();
            let _ = tollgate_protocol::json::unescape(raw, &mut scratch);
            &scratch[..]
        } else {
            raw
        };
        n += encoding.count_bytes(text);
    };
    if responses {
        event_texts(true, data, count);
        return (n, false);
    }
    strings.read(data);
    for (_, v) in &strings.fields {
        count(&data[v.raw.clone()], v.escaped);
    }
    (n, strings.finish)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_policy::guard::{Action, Category, Detector, Guard, ProfileSpec};

    const ROUTE: RouteLabel<'static> = RouteLabel { provider: "up", model: "gpt-4o", key_header: None };
    /// A key the secrets detectors know.
    const KEY: &str = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefgh";

    fn chunk(text: &str) -> String {
        format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}\n\n",
            serde_json::to_string(text).expect("string")
        )
    }

    /// A profile that blocks every secret, in answers too.
    fn secrets_blocked() -> Guard {
        let mut spec = ProfileSpec { name: "g".into(), responses: true, ..Default::default() };
        for d in Detector::ALL {
            if d.category() == Category::Secrets {
                spec.actions[d as usize] = Some(Action::Block);
            }
        }
        Guard::compile(&spec).expect("profile")
    }

    /// A profile that redacts everything it knows, in answers too.
    fn all_redacted() -> Guard {
        let mut spec = ProfileSpec { name: "g".into(), responses: true, ..Default::default() };
        for d in Detector::ALL {
            spec.actions[d as usize] = Some(Action::Redact);
        }
        Guard::compile(&spec).expect("profile")
    }

    fn stages<'a, 'g>() -> StreamStages<'a, 'g> {
        StreamStages {
            guard: None,
            hits: None,
            ceiling: None,
            reservation: None,
            capture: None,
            window: None,
            read_on_capped: None,
        }
    }

    /// Feeds `input` split at every byte boundary `at`, then ends the
    /// upstream; returns what the client got and the relay's end.
    fn relay_split(input: &str, at: usize, stages: StreamStages<'_, '_>, strip_usage: bool) -> (String, End, u64) {
        let mut relay = StreamRelay::new(Stream::new(Translation::None, Front::OpenAi, strip_usage), stages, ROUTE);
        let mut out = BytesMut::new();
        let bytes = Bytes::copy_from_slice(input.as_bytes());
        relay.feed(bytes.slice(..at), &mut out);
        relay.feed(bytes.slice(at..), &mut out);
        assert!(relay.end_of_read(true, &mut out));
        let end = relay.end();
        let counted = relay.completion_counted;
        relay.close();
        (String::from_utf8(out.to_vec()).expect("utf-8"), end, counted)
    }

    /// A Gemini stream: `texts` in one event each, the last finishing.
    fn gemini_stream(texts: &[&str]) -> String {
        let mut s = String::new();
        for (i, t) in texts.iter().enumerate() {
            let finish = if i + 1 == texts.len() { ",\"finishReason\":\"STOP\"" } else { "" };
            s.push_str(&format!(
                "data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":{}}}]}}{finish}}}],\"usageMetadata\":{{\"promptTokenCount\":9,\"candidatesTokenCount\":{}}}}}\r\n\r\n",
                serde_json::to_string(t).unwrap(),
                i + 1
            ));
        }
        s
    }

    /// Feeds an upstream's body in two reads split at `at` (each read's end
    /// seen) to a relay that `read` set up for its API, then ends the
    /// upstream.
    fn relay_from(
        read: fn(&mut StreamRelay<'_, '_>),
        input: &[u8],
        at: usize,
        stages: StreamStages<'_, '_>,
    ) -> (String, End, TokenUsage) {
        let mut relay = StreamRelay::new(Stream::new(Translation::None, Front::OpenAi, true), stages, ROUTE);
        read(&mut relay);
        let mut out = BytesMut::new();
        let bytes = Bytes::copy_from_slice(input);
        relay.feed(bytes.slice(..at), &mut out);
        if !relay.end_of_read(false, &mut out) {
            relay.feed(bytes.slice(at..), &mut out);
            assert!(relay.end_of_read(true, &mut out));
        }
        let usage = relay.usage().expect("readable").unwrap_or_default();
        let end = relay.end();
        relay.close();
        (String::from_utf8(out.to_vec()).unwrap(), end, usage)
    }

    /// Finish reasons as each stream's client reads them: OpenAI's chunks
    /// as they are (spaced, several choices), to an Anthropic client,
    /// Anthropic's events to an OpenAI client, Gemini's through chat.
    #[test]
    fn finish_reasons_are_those_the_client_reads() {
        let reasons = |translation: Translation, front: Front, input: &str| -> Vec<&'static str> {
            let mut relay = StreamRelay::new(Stream::new(translation, front, false), stages(), ROUTE);
            let mut out = BytesMut::new();
            relay.feed(Bytes::copy_from_slice(input.as_bytes()), &mut out);
            relay.end_of_read(true, &mut out);
            relay.finish_reasons().iter().collect()
        };
        let openai = format!(
            "{}data: {{ \"choices\" : [ {{ \"index\":1, \"delta\":{{}}, \"finish_reason\" : \"length\" }} ] }}\n\ndata: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\ndata: [DONE]\n\n",
            chunk("hi")
        );
        assert_eq!(reasons(Translation::None, Front::OpenAi, &openai), ["length", "stop"]);
        let info = anthropic::RequestInfo { stream: true, include_usage: false };
        // One message: its last stop reason.
        assert_eq!(reasons(Translation::ToAnthropic(info), Front::Anthropic, &openai), ["end_turn"]);
        let messages = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"stop_reason\":null,\"usage\":{\"input_tokens\":3}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":2}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        assert_eq!(reasons(Translation::ToOpenAi(info), Front::OpenAi, messages), ["tool_calls"]);
        assert_eq!(reasons(Translation::None, Front::Anthropic, messages), ["tool_use"]);
        // A reason inside a chunk's text is text.
        assert!(reasons(Translation::None, Front::OpenAi, &chunk("\"finish_reason\": \"stop\"")).is_empty());
        let mut relay = StreamRelay::new(Stream::new(Translation::None, Front::OpenAi, true), stages(), ROUTE);
        relay.read_gemini();
        let mut out = BytesMut::new();
        relay.feed(Bytes::from(gemini_stream(&["a", "b"])), &mut out);
        relay.end_of_read(true, &mut out);
        assert_eq!(relay.finish_reasons().iter().collect::<Vec<_>>(), ["stop"]);
        // The gateway's own ending replaces the upstream's: a stream a
        // guardrail blocked, one a ceiling capped, as the client read them.
        let ended = |stages: StreamStages<'_, '_>, front: Front, input: &str| -> (Vec<&'static str>, String) {
            let mut relay = StreamRelay::new(Stream::new(Translation::None, front, false), stages, ROUTE);
            let mut out = BytesMut::new();
            relay.feed(Bytes::copy_from_slice(input.as_bytes()), &mut out);
            relay.end_of_read(true, &mut out);
            let reasons = relay.finish_reasons().iter().collect();
            relay.close();
            (reasons, String::from_utf8(out.to_vec()).unwrap())
        };
        let g = secrets_blocked();
        let secret = format!(
            "{}data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\ndata: [DONE]\n\n",
            chunk(KEY)
        );
        let mut hits = Vec::new();
        let s = StreamStages { guard: Some(EventGuard::new(&g, false)), hits: Some(&mut hits), ..stages() };
        let (reasons, out) = ended(s, Front::OpenAi, &secret);
        assert_eq!(reasons, ["content_filter"], "{out}");
        let long = format!("{}{}{}", chunk("one"), chunk(" two"), chunk(" three"));
        let s = StreamStages { ceiling: Some(Ceiling { output_tokens: 2, cost: None }), ..stages() };
        let (reasons, out) = ended(s, Front::OpenAi, &long);
        assert_eq!(reasons, ["length"], "{out}");
        assert!(out.contains("\"finish_reason\":\"length\""), "{out}");
    }

    fn relay_gemini(input: &str, at: usize, stages: StreamStages<'_, '_>) -> (String, End, TokenUsage) {
        relay_from(|r| r.read_gemini(), input.as_bytes(), at, stages)
    }

    #[test]
    fn a_gemini_stream_is_read_as_chat_and_guarded_wherever_it_is_split() {
        let clean = gemini_stream(&["Hello", " there"]);
        for at in 0..=clean.len() {
            let (out, end, usage) = relay_gemini(&clean, at, stages());
            assert_eq!(end, End::Completed, "at {at}");
            assert!(out.ends_with("data: [DONE]\n\n"), "at {at}: {out}");
            assert!(out.contains("\"content\":\"Hello\"") && out.contains("\"content\":\" there\""), "at {at}");
            assert!(!out.contains("usage"), "the client did not ask for usage: {out}");
            assert_eq!((usage.prompt, usage.completion), (9, 2), "at {at}");
        }
        // A key split across two of Gemini's events is still one key.
        let (head, tail) = KEY.split_at(20);
        let secret = gemini_stream(&["the key is ", head, tail, " ok"]);
        for at in (0..=secret.len()).step_by(7) {
            let g = secrets_blocked();
            let mut hits = Vec::new();
            let s = StreamStages { guard: Some(EventGuard::new(&g, false)), hits: Some(&mut hits), ..stages() };
            let (out, end, _) = relay_gemini(&secret, at, s);
            assert_eq!(end, End::Blocked, "at {at}");
            assert!(!out.contains(head) && !out.contains(tail), "at {at}: {out}");
            assert!(out.contains("content_filter"), "at {at}: {out}");
        }
    }

    /// A ConverseStream: `texts` in one delta each, the stop, the usage.
    fn bedrock_stream(texts: &[&str]) -> Vec<u8> {
        let mut b = BytesMut::new();
        let mut event = |kind: &str, payload: String| {
            tollgate_protocol::eventstream::encode(
                &[(":event-type", kind), (":message-type", "event")],
                payload.as_bytes(),
                &mut b,
            )
        };
        event("messageStart", r#"{"role":"assistant"}"#.into());
        for t in texts {
            let text = serde_json::to_string(t).unwrap();
            event("contentBlockDelta", format!(r#"{{"contentBlockIndex":0,"delta":{{"text":{text}}}}}"#));
        }
        event("messageStop", r#"{"stopReason":"end_turn"}"#.into());
        event("metadata", r#"{"usage":{"inputTokens":9,"outputTokens":2}}"#.into());
        b.to_vec()
    }

    fn relay_bedrock(input: &[u8], at: usize, stages: StreamStages<'_, '_>) -> (String, End, TokenUsage) {
        relay_from(|r| r.read_bedrock(), input, at, stages)
    }

    #[test]
    fn a_bedrock_stream_is_read_as_chat_and_guarded_wherever_it_is_split() {
        let clean = bedrock_stream(&["Hello", " there"]);
        for at in 0..=clean.len() {
            let (out, end, usage) = relay_bedrock(&clean, at, stages());
            assert_eq!(end, End::Completed, "at {at}");
            assert!(out.ends_with("data: [DONE]\n\n"), "at {at}: {out}");
            assert!(out.contains("\"content\":\"Hello\"") && !out.contains("usage"), "at {at}: {out}");
            assert_eq!((usage.prompt, usage.completion), (9, 2), "at {at}");
        }
        let (head, tail) = KEY.split_at(20);
        let secret = bedrock_stream(&["the key is ", head, tail, " ok"]);
        for at in (0..=secret.len()).step_by(7) {
            let g = secrets_blocked();
            let mut hits = Vec::new();
            let s = StreamStages { guard: Some(EventGuard::new(&g, false)), hits: Some(&mut hits), ..stages() };
            let (out, end, _) = relay_bedrock(&secret, at, s);
            assert_eq!(end, End::Blocked, "at {at}");
            assert!(!out.contains(head) && !out.contains(tail), "at {at}: {out}");
        }
        // A broken frame fails the stream with an error event.
        let mut broken = clean.clone();
        let n = broken.len();
        broken[n - 30] ^= 1;
        let (out, end, _) = relay_bedrock(&broken, 0, stages());
        assert_eq!(end, End::UpstreamFailed, "{out}");
        assert!(out.contains("upstream_stream_error"), "{out}");
    }

    #[test]
    fn a_plain_stream_passes_whole_and_is_counted_wherever_it_is_split() {
        let input = format!("{}{}data: [DONE]\n\n", chunk("Hello"), chunk(" world"));
        for at in 0..=input.len() {
            let (out, end, counted) = relay_split(&input, at, stages(), false);
            assert_eq!(out, input, "split at {at}");
            assert_eq!(end, End::Completed);
            assert_eq!(counted, 2, "split at {at}");
        }
    }

    #[test]
    fn a_cost_ceiling_counts_the_prompt_only_near_its_limit() {
        // A micro-dollar a token, in and out.
        let price = tollgate_policy::config::Price {
            input_per_mtok: 1_000_000,
            output_per_mtok: 1_000_000,
            cached_input_per_mtok: 1_000_000,
            cache_write_per_mtok: 1_000_000,
            ..Default::default()
        };
        let body =
            bytes::Bytes::from_static(br#"{"messages":[{"role":"user","content":"Say hello to everyone here"}]}"#);
        let encoding = tollgate_protocol::tokens::Encoding::O200kBase;
        let exact = tollgate_protocol::tokens::prompt_tokens(encoding, &body);
        let bound = body.len() as u64 + 3;
        let ceiling = |limit_tokens: u64| Ceiling {
            output_tokens: u64::MAX,
            cost: Some((
                limit_tokens,
                PromptTokens::new(bound, None, body.clone(), encoding, 0),
                price,
                CacheWrites::default(),
            )),
        };
        let counted = |c: &Ceiling| c.cost.as_ref().is_some_and(|(_, p, ..)| p.exact.get().is_some());
        // Far from the limit even at the bound: no count.
        let far = ceiling(bound + 100);
        assert!(!far.crossed(50) && !counted(&far));
        // Between: the count decides, exactly.
        let near = ceiling(exact + 10);
        assert!(!near.crossed(10) && counted(&near));
        assert!(near.crossed(11));
        // Past it with no prompt at all: crossed, no count.
        let past = ceiling(5);
        assert!(past.crossed(6) && !counted(&past));
    }

    /// A body that marks a part for the cache, to a provider that bills
    /// writes, is priced at the write rate (here twice the input): its
    /// ceiling is crossed sooner than an unmarked body's, or the same
    /// body's at a provider that bills none.
    #[test]
    fn a_cost_ceiling_prices_a_body_that_marks_the_cache_at_the_write_rate() {
        let price = tollgate_policy::config::Price {
            input_per_mtok: 1_000_000,
            output_per_mtok: 1_000_000,
            cache_write_per_mtok: 1_250_000,
            cache_write_1h_per_mtok: 2_000_000,
            ..Default::default()
        };
        let encoding = tollgate_protocol::tokens::Encoding::O200kBase;
        let marked = bytes::Bytes::from_static(
            br#"{"system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral","ttl":"1h"}}],"messages":[{"role":"user","content":"Say hello"}]}"#,
        );
        let exact = tollgate_protocol::tokens::prompt_tokens(encoding, &marked);
        let ceiling = |writes: CacheWrites| Ceiling {
            output_tokens: u64::MAX,
            cost: Some((
                2 * exact + 10,
                PromptTokens::new(marked.len() as u64 + 3, None, marked.clone(), encoding, 0),
                price,
                writes,
            )),
        };
        let reports = CacheWrites { always: false, if_marked: true };
        assert!(!ceiling(reports).crossed(10) && ceiling(reports).crossed(11), "the prompt at $2 a million");
        let none = CacheWrites { always: false, if_marked: false };
        assert!(!ceiling(none).crossed(exact + 10) && ceiling(none).crossed(exact + 11), "at $1");
        let marks = CacheWrites { always: true, if_marked: false };
        assert!(ceiling(marks).crossed(11), "the gateway's own marks");
    }

    #[test]
    fn a_ceiling_caps_the_stream_at_the_event_that_crosses_it() {
        let input = format!("{}{}{}data: [DONE]\n\n", chunk("one"), chunk(" two"), chunk(" three"));
        let ceiling = Ceiling { output_tokens: 2, cost: None };
        let s = StreamStages { ceiling: Some(ceiling), ..stages() };
        let (out, end, _) = relay_split(&input, input.len(), s, false);
        assert_eq!(end, End::Capped);
        assert!(out.contains("one") && out.contains("two") && !out.contains("three"), "{out}");
        assert!(out.contains("\"finish_reason\":\"length\""), "{out}");
        assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
    }

    #[test]
    fn a_blocking_guard_ends_the_stream_with_content_filter_and_drops_what_it_held() {
        let guard = secrets_blocked();
        let mut hits = Vec::new();
        // A key split across two events, and text after it.
        let input = format!(
            "{}{}{}data: [DONE]\n\n",
            chunk("my key is sk-proj-AbCdEfGhIjKlMn"),
            chunk("OpQrStUvWxYz0123456789abcdefgh ok"),
            chunk(" more")
        );
        let s = StreamStages { guard: Some(EventGuard::new(&guard, false)), hits: Some(&mut hits), ..stages() };
        let (out, end, _) = relay_split(&input, 17, s, false);
        assert_eq!(end, End::Blocked);
        assert!(!out.contains("sk-proj") && !out.contains("more"), "{out}");
        assert!(out.contains("\"finish_reason\":\"content_filter\""), "{out}");
        assert_eq!(hits.len(), 1);
    }

    /// A Responses stream: named events, the text in `delta`s and again
    /// whole in the summaries (`.done`, `response.completed`).
    fn responses_stream(deltas: &[&str]) -> String {
        let mut out = String::new();
        let mut n = 0;
        let mut event = |name: &str, rest: String| {
            out.push_str(&format!("event: {name}\ndata: {{\"type\":\"{name}\",\"sequence_number\":{n}{rest}}}\n\n"));
            n += 1;
        };
        event("response.created", r#","response":{"id":"r","status":"in_progress","usage":null}"#.into());
        for d in deltas {
            let d = serde_json::to_string(d).expect("string");
            event(
                "response.output_text.delta",
                format!(r#","item_id":"m","output_index":0,"content_index":0,"delta":{d}"#),
            );
        }
        let whole = serde_json::to_string(&deltas.concat()).expect("string");
        event(
            "response.output_text.done",
            format!(r#","item_id":"m","output_index":0,"content_index":0,"text":{whole}"#),
        );
        event(
            "response.completed",
            format!(
                r#","response":{{"id":"r","status":"completed","output":[{{"type":"message","content":[{{"type":"output_text","text":{whole}}}]}}],"usage":{{"input_tokens":9,"input_tokens_details":{{"cached_tokens":4}},"output_tokens":7,"total_tokens":16}}}}"#
            ),
        );
        out
    }

    fn relay_responses(input: &str, at: usize, stages: StreamStages<'_, '_>) -> (String, End, u64, Usage) {
        let mut relay = StreamRelay::new(Stream::new(Translation::None, Front::Responses, false), stages, ROUTE);
        let mut out = BytesMut::new();
        let bytes = Bytes::copy_from_slice(input.as_bytes());
        relay.feed(bytes.slice(..at), &mut out);
        relay.feed(bytes.slice(at..), &mut out);
        assert!(relay.end_of_read(true, &mut out));
        let (end, counted, usage) = (relay.end(), relay.completion_counted, relay.usage());
        relay.close();
        (String::from_utf8(out.to_vec()).expect("utf-8"), end, counted, usage)
    }

    type Usage = super::super::answer::Usage;

    /// Only the deltas are the answer's text: the summaries' copies are not
    /// counted again, the usage is `response.completed`'s (cached input
    /// inside it), and a guarded stream passes byte for byte wherever it
    /// is split.
    #[test]
    fn a_responses_stream_is_counted_once_and_billed_from_its_last_event() {
        let input = responses_stream(&["Hello", " there", " world"]);
        let spec = ProfileSpec { name: "g".into(), responses: true, ..Default::default() };
        let mut spec = spec;
        spec.actions[Detector::Email as usize] = Some(Action::Redact);
        let guard = Guard::compile(&spec).expect("profile");
        for at in 0..=input.len() {
            let mut hits = Vec::new();
            let s = StreamStages { guard: Some(EventGuard::new(&guard, true)), hits: Some(&mut hits), ..stages() };
            let (out, end, counted, usage) = relay_responses(&input, at, s);
            assert_eq!(end, End::Completed, "split at {at}");
            assert_eq!(counted, 3, "three deltas of one token each, split at {at}");
            let u = usage.expect("readable").expect("reported");
            assert_eq!((u.prompt, u.completion, u.cached), (9, 7, 4));
            // The guard releases the held text in deltas shaped like the
            // one that held it: the same text, perhaps in one event more.
            let deltas: String = out
                .split("\n\n")
                .filter_map(|e| e.split_once("data: "))
                .filter_map(|(_, d)| serde_json::from_str::<serde_json::Value>(d).ok())
                .filter(|v| v["type"] == "response.output_text.delta")
                .map(|v| v["delta"].as_str().unwrap_or_default().to_string())
                .collect();
            assert_eq!(deltas, "Hello there world", "split at {at}: {out}");
            // Numbered again from 0, one by one, whatever the guard added.
            let events: Vec<serde_json::Value> = out
                .split("\n\n")
                .filter_map(|e| e.split_once("data: "))
                .map(|(_, d)| serde_json::from_str(d).expect("JSON"))
                .collect();
            for (i, v) in events.iter().enumerate() {
                assert_eq!(v["sequence_number"], i, "split at {at}: {out}");
            }
            let last = events.last().expect("events");
            assert_eq!(last["type"], "response.completed");
            assert_eq!(last["response"]["usage"]["output_tokens"], 7);
            assert!(hits.is_empty());
        }
        let (out, ..) = relay_responses(&input, 0, stages());
        assert_eq!(out, input);
    }

    /// The attacks of a hostile upstream on a Responses stream: a secret
    /// sent only in a summary, never as a delta; one under a `delta` key
    /// of an event that is not a delta; one split across two deltas.
    /// Each is blocked before any of it reaches the client.
    #[test]
    fn a_responses_stream_cannot_carry_a_secret_past_the_guard() {
        let guard = secrets_blocked();
        let key = KEY;
        let only_in_summary = responses_stream(&["fine"]).replace(r#""text":"fine""#, &format!(r#""text":"{key}""#));
        let nested = format!(
            "event: response.output_item.added\ndata: {{\"type\":\"response.output_item.added\",\"item\":{{\"delta\":\"{key}\"}}}}\n\n{}",
            responses_stream(&["fine"])
        );
        let split = responses_stream(&["my key is sk-proj-AbCdEfGhIjKlMn", "OpQrStUvWxYz0123456789abcdefgh ok"]);
        for (what, input) in [("only in a summary", only_in_summary), ("nested delta", nested), ("split", split)] {
            let mut hits = Vec::new();
            let s = StreamStages { guard: Some(EventGuard::new(&guard, true)), hits: Some(&mut hits), ..stages() };
            let (out, end, ..) = relay_responses(&input, input.len() / 2, s);
            assert_eq!(end, End::Blocked, "{what}: {out}");
            assert!(!out.contains("sk-proj"), "{what}: {out}");
            assert!(
                out.contains("event: response.incomplete") && out.contains(r#""reason":"content_filter""#),
                "{what}: {out}"
            );
            assert_eq!(hits.len(), 1, "{what}");
        }
    }

    /// What would split a finding across two holds must not: an empty
    /// delta, an event of another kind, or an index written `-0`, between
    /// two pieces of an address.
    #[test]
    fn nothing_between_two_deltas_splits_a_finding() {
        let mut spec = ProfileSpec { name: "g".into(), responses: true, ..Default::default() };
        spec.actions[Detector::Email as usize] = Some(Action::Redact);
        let guard = Guard::compile(&spec).expect("profile");
        let between = [
            responses_stream(&["write to bob@exa", "", "mple.com now"]),
            responses_stream(&["write to bob@exa", "mple.com now"]).replacen(
                "event: response.output_text.delta",
                "event: x\ndata: {\"type\":\"x\"}\n\nevent: response.output_text.delta",
                2,
            ),
            responses_stream(&["write to bob@exa", "mple.com now"]).replacen(
                "\"content_index\":0",
                "\"content_index\":-0",
                2,
            ),
        ];
        for input in between {
            for at in [0, input.len() / 3, input.len() / 2] {
                let mut hits = Vec::new();
                let s = StreamStages { guard: Some(EventGuard::new(&guard, true)), hits: Some(&mut hits), ..stages() };
                let (out, ..) = relay_responses(&input, at, s);
                assert!(!out.contains("bob@exa"), "{out}");
                assert!(out.contains("[EMAIL]"), "{out}");
            }
        }
    }

    /// Strings beside an event's text field are checked too: an escaped
    /// duplicate key (a JSON parser keeps the last), an error message.
    #[test]
    fn strings_beside_the_text_cannot_carry_a_secret() {
        let guard = secrets_blocked();
        let key = KEY;
        let responses = [
            responses_stream(&["ok"]).replacen(r#""delta":"ok""#, &format!(r#""delta":"ok","del\u0074a":"{key}""#), 1),
            responses_stream(&["ok"]).replacen(
                r#""delta":"ok""#,
                &format!(r#""delta":"ok","error":{{"message":"{key}"}}"#),
                1,
            ),
        ];
        for input in responses {
            let mut hits = Vec::new();
            let s = StreamStages { guard: Some(EventGuard::new(&guard, true)), hits: Some(&mut hits), ..stages() };
            let (out, end, ..) = relay_responses(&input, input.len() / 2, s);
            assert_eq!(end, End::Blocked, "{out}");
            assert!(!out.contains("sk-proj"), "{out}");
        }
        let chat = [
            format!(
                "{}data: [DONE]\n\n",
                chunk("ok").replacen(r#""content":"ok""#, &format!(r#""content":"ok","cont\u0065nt":"{key}""#), 1)
            ),
            format!(
                "{}data: [DONE]\n\n",
                chunk("").replacen(r#""content":"""#, &format!(r#""cont\u0065nt":"{key}""#), 1)
            ),
        ];
        for input in chat {
            let mut hits = Vec::new();
            let s = StreamStages { guard: Some(EventGuard::new(&guard, false)), hits: Some(&mut hits), ..stages() };
            let (out, end, _) = relay_split(&input, input.len() / 2, s, false);
            assert_eq!(end, End::Blocked, "{input}: {out}");
            assert!(!out.contains("sk-proj"), "{out}");
        }
    }

    /// A translated chat stream's usage is read as strictly as an
    /// untranslated one's: a count that is not a whole number is set
    /// aside (billed from the gateway's own counts), not taken as 0.
    #[test]
    fn a_translated_streams_unbelievable_usage_is_set_aside() {
        let stream = |usage: &str| {
            format!("{}data: {{\"id\":\"c\",\"choices\":[],\"usage\":{usage}}}\n\ndata: [DONE]\n\n", chunk("Hello"))
        };
        let run = |input: String| {
            let translator = Stream::new(Translation::ToResponses(ResponsesFrom::Chat), Front::Responses, false);
            let mut relay = StreamRelay::new(translator, stages(), ROUTE);
            let mut out = BytesMut::new();
            relay.feed(Bytes::from(input), &mut out);
            assert!(relay.end_of_read(true, &mut out));
            (relay.usage(), String::from_utf8(out.to_vec()).unwrap())
        };
        let (usage, out) = run(stream(r#"{"prompt_tokens":"1200","completion_tokens":3}"#));
        assert_eq!(usage, Err(super::super::answer::Rejected), "{out}");
        assert!(out.contains("event: response.completed"), "{out}");
        let (usage, _) =
            run(stream(r#"{"prompt_tokens":12,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":5}}"#));
        let u = usage.expect("readable").expect("reported");
        assert_eq!((u.prompt, u.completion, u.cached), (12, 3, 5));
    }

    #[test]
    fn a_capped_responses_stream_ends_incomplete_for_max_output_tokens() {
        let input = responses_stream(&["one", " two", " three"]);
        let s = StreamStages { ceiling: Some(Ceiling { output_tokens: 2, cost: None }), ..stages() };
        let (out, end, ..) = relay_responses(&input, input.len(), s);
        assert_eq!(end, End::Capped);
        assert!(out.contains("two") && !out.contains("three"), "{out}");
        let last = out.rsplit("event: ").next().expect("an event");
        assert!(last.starts_with("response.incomplete\n"), "{out}");
        assert!(last.contains(r#""reason":"max_output_tokens""#) && last.contains(r#""sequence_number":3"#), "{out}");
    }

    #[test]
    fn a_broken_event_fails_the_stream_with_an_error_event_and_done() {
        let input = format!("{}data: {{\"choices\":[{{\"delta\"\n\nevent", chunk("fine"));
        let mut relay = StreamRelay::new(Stream::new(Translation::None, Front::OpenAi, false), stages(), ROUTE);
        let mut out = BytesMut::new();
        relay.feed(Bytes::from(input), &mut out);
        relay.upstream_failed();
        assert!(relay.end_of_read(false, &mut out), "a failure ends the stream");
        assert_eq!(relay.end(), End::UpstreamFailed);
        let out = String::from_utf8(out.to_vec()).expect("utf-8");
        assert!(out.contains("fine") && out.contains("upstream_stream_error"), "{out}");
        assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
    }

    #[test]
    fn the_usage_chunk_the_gateway_asked_for_is_read_and_kept_from_the_client() {
        let usage =
            "data: {\"id\": \"c\", \"choices\": [ ], \"usage\": {\"prompt_tokens\": 7, \"completion_tokens\": 2}}\n\n";
        let input = format!("{}{usage}data: [DONE]\n\n", chunk("hi"));
        let mut relay = StreamRelay::new(Stream::new(Translation::None, Front::OpenAi, true), stages(), ROUTE);
        let mut out = BytesMut::new();
        relay.feed(Bytes::from(input), &mut out);
        relay.end_of_read(true, &mut out);
        assert_eq!(relay.usage(), Ok(Some(TokenUsage { prompt: 7, completion: 2, ..TokenUsage::default() })));
        assert!(!String::from_utf8_lossy(&out).contains("usage"));
        // Asked for by the client: passed on.
        let input = format!("{}{usage}data: [DONE]\n\n", chunk("hi"));
        let (out, _, _) = relay_split(&input, 0, stages(), false);
        assert!(out.contains("\"usage\""));
    }

    /// With a window, the relay says when a window's worth of text is
    /// unasked (and at the end, whatever is left), hands over the answer
    /// so far, and ends the stream as a guardrail does when withheld,
    /// even after the upstream's own end.
    #[test]
    fn a_windowed_stream_is_asked_about_each_window_and_can_be_withheld() {
        let mut hits = Vec::new();
        let s = StreamStages { hits: Some(&mut hits), window: Some(12), ..stages() };
        let mut relay = StreamRelay::new(Stream::new(Translation::None, Front::OpenAi, false), s, ROUTE);
        let mut out = BytesMut::new();
        relay.feed(Bytes::from(chunk("Hello")), &mut out);
        assert!(!relay.end_of_read(false, &mut out));
        assert!(relay.window_due(false).is_none(), "5 bytes of a 12-byte window");
        relay.feed(Bytes::from(chunk(" world, \"quoted\"")), &mut out);
        let ((said, new), _) = relay.window_due(false).expect("a window's worth");
        assert_eq!((said, new), (&b"Hello world, \"quoted\""[..], said.len()), "the text, unescaped, all new");
        relay.asked();
        assert!(relay.window_due(false).is_none());
        relay.feed(Bytes::from(format!("{}data: [DONE]\n\n", chunk(" bye"))), &mut out);
        assert!(relay.end_of_read(true, &mut out));
        let ((said, new), _) = relay.window_due(true).expect("the rest, at the end");
        assert!(said.ends_with(b" bye") && new == 4, "{new}");
        let mut ending = BytesMut::new();
        relay.withhold(&mut ending);
        assert_eq!(relay.end(), End::Blocked);
        let ending = String::from_utf8(ending.to_vec()).expect("utf-8");
        assert!(ending.contains("\"finish_reason\":\"content_filter\"") && ending.ends_with("data: [DONE]\n\n"));
        relay.close();
    }

    #[test]
    fn a_guarded_stream_captures_the_text_the_guard_releases_at_the_end() {
        // No `[DONE]`: the upstream's body just ends, and the guard lets
        // go of what it held only then.
        let guard = all_redacted();
        let mut hits = Vec::new();
        let mut answer = Vec::new();
        let input = format!("{}{}", chunk("Hello"), chunk(" world, the end"));
        for at in [0, 17, input.len()] {
            answer.clear();
            let s = StreamStages {
                guard: Some(EventGuard::new(&guard, false)),
                hits: Some(&mut hits),
                capture: Some((&guard, &mut answer)),
                ..stages()
            };
            let (out, end, _) = relay_split(&input, at, s, false);
            assert_eq!(end, End::Completed);
            assert!(out.contains("Hello") && out.contains(" world, the end"), "{out}");
            assert_eq!(String::from_utf8_lossy(&answer), "Hello world, the end", "split at {at}");
        }
    }

    /// A captured stream's text is redacted before it is cut: an address
    /// that begins before the cut, at every place across it, is redacted
    /// whole, never kept in part (cut first, `alice.smith@exam` was no
    /// address and stayed in clear: found by a review).
    #[test]
    fn a_captured_stream_is_redacted_before_it_is_cut() {
        let guard = all_redacted();
        let max = crate::record::CAPTURE_BYTES_MAX;
        let address = "alice.smith@example.com";
        // Thirty addresses early on, each redacted to a shorter placeholder:
        // a cut of the redacted text moved what followed them back under
        // the limit (found by a review).
        let early = "bob.jones@example.org ".repeat(30);
        for start in (max - address.len() - 2)..=(max + 1) {
            let text = format!("{early}{} {address} then on", "x".repeat(start - 1 - early.len()));
            // In events of 1,000 bytes, as a stream brings it.
            let body: String =
                text.as_bytes().chunks(1000).map(|c| chunk(std::str::from_utf8(c).expect("ASCII"))).collect();
            let captured = captured_text(&guard, false, &Bytes::from(body));
            assert!(captured.len() <= max, "cut at {max}: {}", captured.len());
            // What the cut kept after the filler: never any of the address.
            let last = captured.rsplit(|&b| b == b' ').next().unwrap_or_default();
            let kept = String::from_utf8_lossy(last);
            assert!(last.is_empty() || !address.as_bytes().starts_with(last), "address at {start}: {kept}");
            assert!(!String::from_utf8_lossy(&captured).contains("bob.jones"), "the early ones redacted");
        }
        // Far past the limit, behind those placeholders: none of it.
        for start in [max + 100, max + 130, max + 300, max + 440] {
            let text = format!("{early}{} {address} then on", "x".repeat(start - 1 - early.len()));
            let body: String =
                text.as_bytes().chunks(1000).map(|c| chunk(std::str::from_utf8(c).expect("ASCII"))).collect();
            let captured = captured_text(&guard, false, &Bytes::from(body));
            assert!(!String::from_utf8_lossy(&captured).contains("alice"), "address at {start}");
            // Cut in the text as read, at the limit: shorter by what the
            // placeholders saved.
            assert!(captured.len() < max - 200, "{start}: {}", captured.len());
        }
    }

    /// A JSON answer's output (content and reasoning, tool calls; an
    /// Anthropic message's text and tool input) is counted only where its
    /// usage's completion is low beside its texts' bytes, and only the
    /// output: not its id, not text under `content` keys elsewhere (Azure's
    /// citations, which are input), not a legacy completion (`echo`).
    #[test]
    fn a_json_answers_output_is_counted_only_where_its_usage_is_low() {
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(30);
        let doc = format!(
            r#"{{"id":"chatcmpl-lazy dog lazy dog","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}","reasoning_content":"{text}","context":{{"citations":[{{"content":"{text}{text}"}}]}}}},"finish_reason":"stop"}}],"system_fingerprint":"{text}"}}"#
        );
        let usage = |completion| Ok(Some(TokenUsage { prompt: 1, completion, ..Default::default() }));
        let count = |doc: &str, usage: &super::super::answer::Usage, front| {
            json_answer_text_tokens(doc.as_bytes(), usage, "gpt-4o", front)
        };
        assert_eq!(count(&doc, &usage(1_000), Front::OpenAi), 0, "an honest count");
        let n = count(&doc, &usage(1), Front::OpenAi);
        assert!((590..=610).contains(&n), "the two texts, not the citations, the id or the fingerprint: {n}");
        assert_eq!(count(&doc, &Ok(None), Front::OpenAi), 0, "no usage: billed otherwise");
        assert_eq!(count(&doc, &Err(super::super::answer::Rejected), Front::OpenAi), 0);
        // A legacy completion's texts (one that may `echo` its prompt is
        // not judged by the count: `forward`).
        let legacy = format!(r#"{{"choices":[{{"index":0,"text":"{text}","logprobs":{{"tokens":["{text}"]}}}}]}}"#);
        let n = count(&legacy, &usage(1), Front::Completions);
        assert!((300..=310).contains(&n), "the text, not the log probabilities' tokens: {n}");
        assert_eq!(count(&legacy, &usage(1_000), Front::Completions), 0, "an honest count");
        // A response's output items, not the instructions, tools and tool
        // results it repeats; reasoning once (its text, or its summary);
        // custom tool input and interpreter code under keys of their own,
        // escaped or not.
        let responses = format!(
            r#"{{"object":"response","instructions":"{text}","tools":[{{"type":"function","name":"f","description":"{text}"}}],"output":[{{"type":"reasoning","summary":[{{"type":"summary_text","text":"short"}}],"content":[{{"type":"reasoning_text","text":"{text}"}}]}},{{"type":"message","content":[{{"type":"output_text","text":"{text}","annotations":[]}}]}},{{"type":"mcp_call","name":"m","arguments":"{{}}","output":"{text}{text}"}},{{"type":"web_search_call","action":{{"query":"{text}"}}}}],"usage":{{}}}}"#
        );
        let n = count(&responses, &usage(1), Front::Responses);
        assert!((590..=620).contains(&n), "the reasoning and the message: {n}");
        // An honest count: not read (the tool's result is not output).
        assert_eq!(count(&responses, &usage(1_000), Front::Responses), 0);
        for key in ["input", "in\\u0070ut"] {
            let custom = format!(
                r#"{{"object":"response","output":[{{"type":"custom_tool_call","call_id":"c","name":"patch","{key}":"{text}"}}]}}"#
            );
            let n = count(&custom, &usage(1), Front::Responses);
            assert!((300..=310).contains(&n), "{key}: the tool's input: {n}");
        }
        let code = format!(r#"{{"object":"response","output":[{{"type":"code_interpreter_call","code":"{text}"}}]}}"#);
        assert!((300..=310).contains(&count(&code, &usage(1), Front::Responses)));
        // Text under keys of other kinds: a patch's diff, commands.
        for item in [
            format!(
                r#"{{"type":"apply_patch_call","call_id":"c","operation":{{"type":"update_file","path":"a.rs","diff":"{text}"}}}}"#
            ),
            format!(r#"{{"type":"shell_call","call_id":"c","action":{{"commands":["{text}"]}}}}"#),
        ] {
            let doc = format!(r#"{{"object":"response","output":[{item}]}}"#);
            let n = count(&doc, &usage(1), Front::Responses);
            assert!((300..=330).contains(&n), "{item}: {n}");
        }
        // A chat tool call's name alone.
        let named = format!(
            r#"{{"choices":[{{"message":{{"tool_calls":[{{"id":"c","type":"function","function":{{"name":"{text}","arguments":"{{}}"}}}}]}}}}]}}"#
        );
        assert!((300..=310).contains(&count(&named, &usage(1), Front::OpenAi)));
        // A tool's input alone (its strings have no text key).
        let tool = format!(r#"{{"content":[{{"type":"tool_use","id":"t","name":"f","input":{{"q":"{text}"}}}}]}}"#);
        let n = count(&tool, &usage(1), Front::Anthropic);
        assert!((300..=310).contains(&n), "the tool's input: {n}");
        // A tool's input in its keys and numbers, which the walk does not
        // give as text.
        let keys = format!(r#"{{"content":[{{"type":"tool_use","id":"t","name":"f","input":{{"{text}":1}}}}]}}"#);
        let n = count(&keys, &usage(1), Front::Anthropic);
        assert!((300..=310).contains(&n), "the input's key: {n}");
        // Reasoning under both names is one text.
        let both = format!(
            r#"{{"choices":[{{"message":{{"content":"ok","reasoning":"{text}","reasoning_content":"{text}"}}}}]}}"#
        );
        let n = count(&both, &usage(1), Front::OpenAi);
        assert!((300..=310).contains(&n), "once: {n}");
        let anthropic = format!(
            r#"{{"content":[{{"type":"text","text":"{text}"}},{{"type":"mcp_tool_result","content":[{{"type":"text","text":"{text}"}}]}},{{"type":"tool_use","id":"t","name":"f","input":{{"q":"{text}"}}}}],"usage":{{}}}}"#
        );
        let n = count(&anthropic, &usage(1), Front::Anthropic);
        assert!((590..=615).contains(&n), "the text and the tool's input, not the tool's result: {n}");
    }
}
