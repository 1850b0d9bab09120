//! The exchange: one request and what the phases learn about it as it
//! goes through the pipeline.
//!
//! A phase reads what earlier phases found here instead of finding it
//! again: the key (in the record), the body's top-level fields scanned
//! once, the route, the prompt counted at most once (with the model's
//! encoding, only by the first phase that needs it), the estimated cost,
//! the holds and reservations to release when the request ends, and the
//! headers every answer carries. A connection makes a new exchange for
//! each request, so nothing is reset by hand between requests.

use std::cell::OnceCell;
use std::time::Instant;

use bytes::Bytes;
use tollgate_policy::team::MicroUsd;
use tollgate_policy::VirtualKey;
use tollgate_protocol::http1::{Method, RequestHead};
use tollgate_protocol::tokens::Encoding;

use crate::accounts::{Reservation, SpendHold};
use crate::cluster::strict::StrictHold;
use crate::error::GatewayError;
use crate::proxy::route::Routed;
use crate::proxy::Front;
use crate::record::{RequestId, Trace};
use crate::respond::Reply;

/// One request on its way through the pipeline.
pub struct Exchange<'s> {
    pub head: RequestHead,
    /// The API the client speaks.
    pub front: Front,
    /// The client connection may stay open after this request.
    pub keep_alive: bool,
    pub started: Instant,
    /// The request's own time is up at this instant (`request_ms`).
    pub deadline: Instant,
    /// The record, filled by every phase (the key is kept there).
    pub trace: Trace<'s>,
    /// The body as it goes upstream: as it arrived, or redacted.
    pub body: Bytes,
    pub body_state: BodyState,
    /// What the route phase found: the body's fields and the route.
    pub routed: Option<Routed<'s>>,
    /// The prompt's token count, made at most once.
    pub prompt: Prompt,
    /// The request's estimated cost, made at most once: `None` inside when
    /// the model has no price.
    pub estimate: OnceCell<Option<MicroUsd>>,
    /// What the request holds against its owners until it ends.
    pub holds: Holds,
    /// The headers every answer to this request carries.
    pub reply: Reply,
    /// Looked up in the answer cache and missed: where the answer is kept
    /// as it is written, to be stored if it completes.
    pub cache: Option<Box<super::cache::Pending>>,
    /// A Responses request to keep as a turn ([`crate::turns`]): where its
    /// answer is kept as it is written.
    pub turn: Option<Box<crate::cache::Kept>>,
}

/// Whether the request's body has been read off the connection. A refusal
/// before it is read keeps the connection only if the body is already
/// buffered; one during the read always closes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyState {
    Unread,
    Read,
    Broken,
}

/// What a request holds while it runs: tokens reserved against
/// tokens-per-minute limits, estimated cost held as spend under a budget
/// (`admit::affordable`), and a strict budget's reservation in Redis. Each releases itself
/// when dropped: the pipeline drops them right after the request's real
/// spend is counted, so that the two meet in the same hand-off.
#[derive(Default)]
pub struct Holds {
    pub tokens: Option<Reservation>,
    pub spend: Option<SpendHold>,
    /// The request goes with its output reserve as its limit
    /// (`forward::output_cap`): `spend` is held near a budget's end (not
    /// for a large prompt far from it), or `run` with under a tenth of a
    /// run's cost or token limit left ([`crate::runs::RunHold::near_end`]).
    pub reserve_is_limit: bool,
    pub strict: Option<StrictHold>,
    /// The estimate held against an agent run and the runs above it.
    pub run: Option<crate::runs::RunHold>,
}

/// A prompt's token count, made once, on the body as it goes upstream.
pub struct Prompt {
    pub encoding: Encoding,
    tokens: OnceCell<u64>,
    /// [`Prompt::bound_parts`].
    bound: OnceCell<(u64, u64)>,
    marks_cache: OnceCell<bool>,
    /// Tokens the provider reads that the body does not hold as text: the
    /// conversation a Responses request continues at the provider
    /// (`previous_response_id`), as the gateway saw it end
    /// ([`crate::turns::Turns::context`]), and token IDs given for a
    /// prompt (`ChatRequestFields::token_ids`). Part of every figure below.
    pub stored: u64,
}

impl Prompt {
    pub fn new(encoding: Encoding) -> Prompt {
        Prompt { encoding, tokens: OnceCell::new(), bound: OnceCell::new(), marks_cache: OnceCell::new(), stored: 0 }
    }

    /// Whether `body` (the exchange's body) marks a part for the
    /// provider's prompt cache (Anthropic's `cache_control`, which
    /// OpenAI-compatible proxies of Claude take too), or may in escapes: a
    /// byte search, made once, by whichever phase prices the request first
    /// (`admit::may_write_cache`).
    pub fn marks_cache(&self, body: &[u8]) -> bool {
        *self.marks_cache.get_or_init(|| tollgate_protocol::media::marks_cache(body))
    }

    /// [`Prompt::marks_cache`]'s answer, where a phase has searched.
    pub fn marks_cache_known(&self) -> Option<bool> {
        self.marks_cache.get().copied()
    }

    /// No prompt in `body` (the exchange's body) has more tokens than
    /// this: no token of text is shorter than a byte, plus the reply's
    /// priming, plus what its images and audio cost (an image by URL costs
    /// up to 1,600 tokens in a few dozen bytes). Found once, by whichever
    /// phase asks first. `text_only`: the route's scan found no place for
    /// media ([`tollgate_protocol::openai::ChatRequestFields::text_only`]),
    /// so the media estimate's pass over the body is skipped.
    pub fn bound(&self, body: &[u8], text_only: bool) -> u64 {
        let (text, media) = self.bound_parts(body, text_only);
        text.saturating_add(media).saturating_add(self.stored)
    }

    /// [`Prompt::bound`] in its parts: the body's bytes with the reply's
    /// priming (text, whose tokens are fewer), and its media's estimate
    /// (not: an image by URL costs its tokens however few its bytes).
    pub fn bound_parts(&self, body: &[u8], text_only: bool) -> (u64, u64) {
        *self.bound.get_or_init(|| {
            let media = if text_only { 0 } else { tollgate_protocol::media::media_tokens(body) };
            ((body.len() as u64).saturating_add(tollgate_protocol::tokens::REPLY_PRIMING), media)
        })
    }

    /// The prompt's tokens in `body` (the exchange's body: counted the
    /// first time it is asked for, the same figure afterwards).
    pub fn tokens(&self, body: &[u8]) -> u64 {
        let counted = *self.tokens.get_or_init(|| tollgate_protocol::tokens::prompt_tokens(self.encoding, body));
        counted.saturating_add(self.stored)
    }

    /// [`Prompt::tokens`] for a phase that may wait: a large body is
    /// counted in steps, yielding the worker to its other requests between
    /// them, so that one tenant's huge prompt does not stall the core.
    pub async fn tokens_in_steps(&self, body: &[u8]) -> u64 {
        if let Some(&n) = self.tokens.get() {
            return n.saturating_add(self.stored);
        }
        let n = if body.len() <= tollgate_protocol::tokens::STEP_BYTES {
            tollgate_protocol::tokens::prompt_tokens(self.encoding, body)
        } else {
            tollgate_protocol::tokens::prompt_tokens_in_steps(self.encoding, body, yield_now).await
        };
        self.tokens.get_or_init(|| n).saturating_add(self.stored)
    }

    /// The count, if the prompt has been counted.
    pub fn get(&self) -> Option<u64> {
        self.tokens.get().map(|n| n.saturating_add(self.stored))
    }

    /// Whether the prompt has been counted (for tests of "at most once").
    pub fn counted(&self) -> bool {
        self.tokens.get().is_some()
    }
}

/// Lets the core's other tasks run once before this one goes on.
pub fn yield_now() -> YieldNow {
    YieldNow(false)
}

/// The future [`yield_now`] returns: pending once, then ready.
///
/// A task that wakes itself while running is put back at the *front* of
/// monoio's queue and polled again at once, so a plain self-wake would
/// starve everything else on the core. Instead a small task is spawned
/// (at the back of the queue) that wakes this one: the tasks already
/// queued, and those the next I/O completions wake, run first.
pub struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        let waker = cx.waker().clone();
        monoio::spawn(async move { waker.wake() });
        std::task::Poll::Pending
    }
}

impl<'s> Exchange<'s> {
    pub fn new(
        head: RequestHead,
        front: Front,
        id: RequestId,
        keep_alive: bool,
        request_time: std::time::Duration,
    ) -> Exchange<'s> {
        let mut trace = Trace::new(id);
        trace.operation = crate::otel::spans::operation(front);
        let started = trace.started;
        let deadline = started + request_time;
        let head_only = head.method == Method::Head;
        Exchange {
            head,
            front,
            keep_alive,
            started,
            deadline,
            trace,
            body: Bytes::new(),
            body_state: BodyState::Unread,
            routed: None,
            prompt: Prompt::new(Encoding::O200kBase),
            estimate: OnceCell::new(),
            holds: Holds::default(),
            reply: Reply { deadline, head_only, request_id: Some(id), retry_after: None, rate: None, cache: None },
            cache: None,
            turn: None,
        }
    }

    /// The authenticated key. Phases after `authenticate` run only once it
    /// has succeeded; before, this is a refusal rather than a panic.
    pub fn key(&self) -> Result<&'s VirtualKey, GatewayError> {
        self.trace.key.ok_or(GatewayError::Auth(tollgate_policy::AuthError::Missing))
    }

    /// Unix seconds when the request began: the time its key's expiry and
    /// its budgets' days and months are judged at, as its spend is
    /// counted at (one clock read for all of them).
    pub fn unix_s(&self) -> u64 {
        self.trace.started_unix_ms / 1000
    }

    /// The route phase's findings (see [`Exchange::key`]).
    pub fn routed(&self) -> Result<&Routed<'s>, GatewayError> {
        self.routed.as_ref().ok_or(GatewayError::NoRoute)
    }

    /// Tightens the answer's `x-ratelimit-*` headers with a phase's figures.
    pub fn rate(&mut self, headroom: Option<tollgate_policy::ratelimit::Headroom>) {
        if headroom.is_some() {
            self.reply.rate = headroom;
        }
    }
}
