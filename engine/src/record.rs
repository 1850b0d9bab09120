//! The request record: one JSON line per request, saying who sent what to
//! which model, how every attempt went, what it cost in tokens and time,
//! and how it ended.
//!
//! Records are rendered on the worker into a per-core buffer (no lock, no
//! syscall on the request path) and handed as whole batches to the writer
//! thread ([`crate::logwriter`]) every 100 ms, or sooner when a batch
//! reaches 64 KiB. The writer appends them to daily files and rotates by
//! size. A worker flushes its buffer when it takes a new configuration and
//! when it stops, so nothing is lost on reload or shutdown.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tollgate_policy::VirtualKey;
use tollgate_protocol::openai::write_json_string;

use tollgate_policy::Config;

/// A batch is handed off at this size, or after [`FLUSH_EVERY`].
const BATCH_BYTES: usize = 64 * 1024;
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Token counts as the provider reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Every prompt token: cached and cache-written ones included.
    pub prompt: u64,
    pub completion: u64,
    /// Prompt tokens read from the provider's cache.
    pub cached: u64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write: u64,
    /// Of `cache_write`, the tokens written for an hour (Anthropic's
    /// dearer writes).
    pub cache_write_1h: u64,
    /// Of the prompt's tokens neither cached nor written, and of the
    /// completion's, the audio (priced apart).
    pub audio_prompt: u64,
    pub audio_completion: u64,
    /// The service tier the provider says it served the request at.
    pub tier: tollgate_policy::prices::Tier,
    /// The provider reported the output but not the prompt
    /// (`tollgate_protocol::openai::Usage::prompt_unreported`): `prompt`
    /// holds only a floor, the shares the report gave of it (cache reads
    /// and writes, audio), until the gateway's count replaces it where
    /// larger (`pipeline::forward`), and the record says `estimated`.
    pub prompt_unreported: bool,
}

impl TokenUsage {
    /// Cost in micro-dollars at prices per million tokens: at the service
    /// tier the provider reported, and the long context's rates for every
    /// token where the prompt passes the price's threshold.
    pub fn cost_at(&self, p: tollgate_policy::config::Price) -> u64 {
        let p = p.at_tier(self.tier).for_prompt(self.prompt);
        let uncached = self.prompt.saturating_sub(self.cached).saturating_sub(self.cache_write);
        // The shares are held to what they are shares of, whatever a
        // report claims.
        let write_1h = self.cache_write_1h.min(self.cache_write);
        let audio_in = self.audio_prompt.min(uncached);
        let audio_out = self.audio_completion.min(self.completion);
        let micro = (uncached - audio_in) as u128 * p.input_per_mtok as u128
            + audio_in as u128 * p.audio_input_per_mtok as u128
            + self.cached as u128 * p.cached_input_per_mtok as u128
            + (self.cache_write - write_1h) as u128 * p.cache_write_per_mtok as u128
            + write_1h as u128 * p.cache_write_1h_per_mtok as u128
            + (self.completion - audio_out) as u128 * p.output_per_mtok as u128
            + audio_out as u128 * p.audio_output_per_mtok as u128;
        // Rounded up to the micro-dollar: rounded down, a request of 49
        // tokens of text-embedding-3-small ($0.02 a million) cost nothing,
        // and a tenant of only such requests never reached a budget (found
        // by a review). Up, a request is billed at most one micro-dollar
        // high. Saturating: no count is believed past 2^32 tokens, but
        // money must never wrap whatever reaches here.
        u64::try_from(micro.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// A service tier's name in the record.
fn tier_name(t: tollgate_policy::prices::Tier) -> &'static str {
    use tollgate_policy::prices::Tier;
    match t {
        Tier::Flex => "flex",
        Tier::Standard => "standard",
        Tier::Priority => "priority",
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Completed,
    /// Refused by the gateway before any upstream (auth, access, bad body).
    Rejected,
    /// Every attempt failed, or the upstream failed mid-answer.
    UpstreamFailed,
    /// The client went away before the answer was complete.
    ClientGone,
    /// A guardrail blocked the request, or ended its answer.
    Blocked,
    /// The answer reached a request ceiling (output tokens or cost) and was
    /// ended there.
    Capped,
    /// The gateway's drain ran out of time and ended the answer.
    Cut,
    /// The gateway panicked while serving it (a bug, [`crate::fault`]).
    Fault,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Completed => "completed",
            End::Rejected => "rejected",
            End::UpstreamFailed => "upstream_failed",
            End::ClientGone => "client_gone",
            End::Blocked => "blocked",
            End::Capped => "capped",
            End::Cut => "shutdown",
            End::Fault => "gateway_fault",
        }
    }
}

/// A hit as the request record keeps it.
#[derive(Clone, Copy, Debug)]
pub struct Recorded {
    pub direction: tollgate_policy::guard::Direction,
    /// Which text of the body (the n-th string value scanned).
    pub text: u32,
    pub hit: tollgate_policy::guard::Hit,
}

/// One attempt at a target.
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    pub target: u8,
    /// When it began, in microseconds after the request's head.
    pub start: u32,
    /// The answer's status, or the error's code.
    pub outcome: Result<u16, &'static str>,
    pub micros: u32,
}

/// Whether a name from outside (a model asked for, a name in a record) is
/// written with `c` escaped wherever an operator reads it: control
/// characters, direction marks and overrides, invisible spaces and
/// joiners, the byte order mark, line and paragraph separators. In a
/// terminal they move the cursor or write the clipboard; anywhere they
/// make a name read as another.
pub fn hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// What a request gathers as it goes through the pipeline.
pub struct Trace<'s> {
    /// The cost of the prompts of attempts that failed after their request
    /// was written and were followed by another attempt (the provider may
    /// have acted on each, and bill it), each at its own target's price:
    /// part of the request's cost (found by a review: only the last
    /// attempt was billed).
    pub unanswered_micro: u64,
    /// The output limit the last attempt was sent with is one of the
    /// moment's, not the body's or a ceiling's (which the cache's key
    /// holds): a strict or nearly spent budget's reserve, or what a cost
    /// ceiling leaves after a prompt counted or bounded. An answer it cut
    /// is not kept in the answer cache (found by a review: a team near its
    /// budget's end stored a 1,024-token answer cut at `length`, served
    /// to every key of the team for the entry's life).
    pub cap_varies: bool,
    /// The target of the attempt a provider may have now whose cost is
    /// not yet in `unanswered_micro` or an answer's usage: set as its
    /// request goes out, cleared where the attempt is settled otherwise
    /// (refused unread, not sent, or carried to `unanswered_micro`). What
    /// a request that panics is billed by ([`crate::fault`]).
    pub with_provider: Option<u8>,
    /// The completion tokens a stream has counted passing so far, kept
    /// here as it goes (not only in the relay's own state), so that a
    /// request the drain abandons mid-write is billed them (found by a
    /// review: a stream stuck writing to a slow client at the drain's cut
    /// was billed its prompt alone).
    pub completion_passed: std::cell::Cell<u64>,
    pub id: RequestId,
    pub started: Instant,
    pub started_unix_ms: u64,
    pub key: Option<&'s VirtualKey>,
    pub route: Option<usize>,
    /// The model asked for, when no route has it.
    pub model_requested: Option<Box<str>>,
    pub served_by: Option<u8>,
    pub attempts: [Option<Attempt>; 10],
    pub attempt_count: usize,
    pub status: u16,
    pub stream: bool,
    pub usage: Option<TokenUsage>,
    /// Why the answer's generations ended, as the client was told.
    pub finish: tollgate_protocol::openai::Finish,
    /// The tokens are (partly) the gateway's count, not the provider's.
    pub usage_estimated: bool,
    /// The provider reported usage that was set aside as unbelievable
    /// (`proxy::answer::Rejected`); the tokens are the gateway's count.
    pub usage_rejected: bool,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// From the attempt that served to its answer's head.
    pub upstream_micros: u32,
    /// Spent on attempts that failed and on back-off before retries: the
    /// upstreams' time, not the gateway's.
    pub retry_micros: u32,
    /// From the request's head to the first bytes of its answer on the
    /// client's socket (time to first token, for streams).
    pub first_byte_micros: Option<u32>,
    pub end: End,
    /// What the team's guardrail profile found (rules, places and actions;
    /// never the text).
    pub guard_hits: Vec<Recorded>,
    /// The features that made the injection score a hit (phrase families,
    /// how a phrase was hidden).
    pub injection_features: Vec<&'static str>,
    /// What the profile's external classifiers said, in order.
    pub classified: Vec<crate::verdicts::Classified>,
    /// With `[logging] capture_bodies`: the prompt and the answer, redacted.
    pub capture: Option<Box<Capture>>,
    /// The answer cache was consulted: what it gave.
    pub cache: Option<Cached>,
    /// The agent run the client named (`x-tollgate-run`), and its parent.
    pub run: Option<Box<crate::runs::RunIds>>,
    /// `gen_ai.operation.name` of the API the request came in on (`chat`,
    /// `embeddings`...), for its spans.
    pub operation: &'static str,
    /// With `[telemetry]`: the request's place in its trace.
    pub otel: Option<crate::trace_context::Context>,
    /// When the phases that get spans of their own ran.
    pub phases: Phases,
}

/// Phases timed for their spans (traced requests only): microseconds
/// after the request's head, from and to.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phases {
    /// The guardrail scan and the external classifiers, on the request.
    pub guardrails: Option<(u32, u32)>,
    /// The answer cache's lookup (a semantic one's embedding call
    /// included), and what it found.
    pub cache: Option<(u32, u32, Looked)>,
}

/// What the answer cache's lookup found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Looked {
    Hit,
    /// With the similarity.
    SemanticHit(f32),
    Miss,
}

impl Looked {
    /// As records, spans and reports name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Looked::Hit => "hit",
            Looked::SemanticHit(_) => "semantic-hit",
            Looked::Miss => "miss",
        }
    }
}

impl Cached {
    pub fn looked(&self) -> Looked {
        match (self.hit, self.similarity) {
            (true, None) => Looked::Hit,
            (true, Some(s)) => Looked::SemanticHit(s),
            (false, _) => Looked::Miss,
        }
    }
}

/// Where a worker's traced requests go besides their record: with
/// `[telemetry]`, its span buffer (`otel::export::CoreSpans`), which
/// reads the trace; named here so that the recorder, below the exporter,
/// does not name it.
pub trait SpanSink {
    /// Of the requests without a sampled parent, the share traced.
    fn sample_ratio(&self) -> f64;
    /// A finished, sampled request's spans.
    fn add(&self, trace: &Trace<'_>, ctx: &crate::trace_context::Context, config: &Config);
    /// Hands what is buffered to the exporter.
    fn flush(&self);
}

/// The answer cache's part in a request: served from it (and what that
/// saved: the first answer's tokens and cost), or missed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cached {
    pub hit: bool,
    /// A semantic hit: how close the question was.
    pub similarity: Option<f32>,
    pub saved_micro_usd: u64,
    pub saved_tokens: u64,
}

/// A request's captured bodies, redacted of personal data and secrets.
#[derive(Debug, Default)]
pub struct Capture {
    /// The request body as sent upstream.
    pub prompt: bytes::Bytes,
    /// A JSON answer, or a stream's text (up to [`CAPTURE_BYTES_MAX`]).
    pub answer: Vec<u8>,
}

/// A captured stream's text is cut here, once redacted.
pub const CAPTURE_BYTES_MAX: usize = 64 * 1024;

/// A captured stream's text is read this far, redacted whole, and then
/// cut at [`CAPTURE_BYTES_MAX`]: a match that begins before the cut is
/// decided within [`tollgate_policy::guard::stream::HOLD_BYTES_MAX`] bytes
/// of text from its start, so it is redacted whole rather than its first
/// part being kept in clear (cut first, `alice.smith@exam` was no e-mail
/// address and stayed as written; found by a review).
pub const CAPTURE_READ_BYTES: usize = CAPTURE_BYTES_MAX + tollgate_policy::guard::stream::HOLD_BYTES_MAX;

/// `x-request-id`: the worker, a per-worker sequence, and the worker's start
/// time, so ids are unique across cores and restarts without coordination.
#[derive(Clone, Copy, Debug)]
pub struct RequestId {
    pub epoch: u64,
    pub worker: u16,
    pub seq: u64,
}

impl RequestId {
    /// `tg-<epoch in hex>-<worker>-<seq>`, written into `out` (every
    /// answer carries one: no `format!`, which allocated a `String` per
    /// request).
    pub fn render(&self, out: &mut BytesMut) {
        out.extend_from_slice(b"tg-");
        let mut hex = [0u8; 16];
        let digits = (64 - self.epoch.leading_zeros()).div_ceil(4).max(1) as usize;
        for (i, d) in hex[..digits].iter_mut().rev().enumerate() {
            *d = b"0123456789abcdef"[((self.epoch >> (4 * i)) & 0xf) as usize];
        }
        out.extend_from_slice(&hex[..digits]);
        let mut num = itoa::Buffer::new();
        out.extend_from_slice(b"-");
        out.extend_from_slice(num.format(self.worker).as_bytes());
        out.extend_from_slice(b"-");
        out.extend_from_slice(num.format(self.seq).as_bytes());
    }
}

impl<'s> Trace<'s> {
    pub fn new(id: RequestId) -> Trace<'s> {
        Trace {
            unanswered_micro: 0,
            cap_varies: false,
            with_provider: None,
            completion_passed: std::cell::Cell::new(0),
            id,
            started: Instant::now(),
            started_unix_ms: crate::unix_now().as_millis() as u64,
            key: None,
            route: None,
            model_requested: None,
            served_by: None,
            attempts: [None; 10],
            attempt_count: 0,
            status: 0,
            stream: false,
            usage: None,
            finish: Default::default(),
            usage_estimated: false,
            usage_rejected: false,
            bytes_in: 0,
            bytes_out: 0,
            upstream_micros: 0,
            retry_micros: 0,
            first_byte_micros: None,
            end: End::Completed,
            guard_hits: Vec::new(),
            injection_features: Vec::new(),
            classified: Vec::new(),
            capture: None,
            cache: None,
            run: None,
            operation: "chat",
            otel: None,
            phases: Phases::default(),
        }
    }

    /// Microseconds since the request's head (for [`Phases`]).
    pub fn offset(&self) -> u32 {
        micros(self.started.elapsed())
    }

    pub fn attempt(&mut self, target: usize, started: Instant, outcome: Result<u16, &'static str>) {
        if let Some(slot) = self.attempts.get_mut(self.attempt_count) {
            let start = micros(started.saturating_duration_since(self.started));
            *slot = Some(Attempt { target: target as u8, start, outcome, micros: micros(started.elapsed()) });
            self.attempt_count += 1;
        }
    }

    /// What the gateway added before the client's first byte: the time to
    /// it, less the upstream's own time to its answer's head and the time
    /// failed attempts and back-off took.
    pub fn gateway_micros(&self) -> Option<u32> {
        self.served_by?;
        Some(self.first_byte_micros?.saturating_sub(self.upstream_micros).saturating_sub(self.retry_micros))
    }

    /// Cost in micro-dollars, when the provider reported usage and the
    /// model has a price: the configured one, else the built-in one of the
    /// upstream model that served.
    /// Attempts that failed after their request was written and were
    /// followed by another add their prompts' cost
    /// ([`Trace::unanswered_micro`]).
    pub fn cost(&self, config: &Config) -> Option<u64> {
        let served = || {
            let route = config.routes.all().get(self.route?)?;
            let price = route.price_of(self.served_by.and_then(|t| route.targets.get(t as usize)))?;
            Some(self.usage?.cost_at(price))
        };
        match (served(), self.unanswered_micro) {
            (served, 0) => served,
            (served, unanswered) => Some(served.unwrap_or(0).saturating_add(unanswered)),
        }
    }

    /// Appends this record as one JSON line.
    pub fn write_json(&self, config: &Config, out: &mut BytesMut) {
        let mut n = itoa::Buffer::new();
        out.extend_from_slice(b"{\"id\":\"");
        self.id.render(out);
        out.extend_from_slice(b"\",\"ts\":");
        out.extend_from_slice(n.format(self.started_unix_ms).as_bytes());
        let team = self.key.and_then(|k| config.teams.get(k.team));
        field_str(out, "team", team.map(|t| t.name.as_str()));
        field_str(out, "key", self.key.map(|k| k.name.as_str()));
        if let Some(run) = &self.run {
            field_str(out, "run", Some(&run.id));
            if let Some(p) = &run.parent {
                field_str(out, "parent_run", Some(p));
            }
        }
        let route = self.route.and_then(|r| config.routes.all().get(r));
        field_str(out, "model", route.map(|r| r.name.as_str()).or(self.model_requested.as_deref()));
        let target = |t: u8| route.and_then(|r| r.targets.get(t as usize));
        let provider = |t: u8| target(t).and_then(|t| config.providers.get(t.provider)).map(|p| p.name.as_str());
        if let Some(t) = self.served_by {
            field_str(out, "provider", provider(t));
            field_str(out, "upstream_model", target(t).map(|t| t.upstream_model.as_str()));
        }
        out.extend_from_slice(b",\"attempts\":[");
        for (i, a) in self.attempts[..self.attempt_count].iter().flatten().enumerate() {
            if i > 0 {
                out.extend_from_slice(b",");
            }
            out.extend_from_slice(b"{\"provider\":");
            write_json_string(out, provider(a.target).unwrap_or(""));
            out.extend_from_slice(b",\"upstream_model\":");
            write_json_string(out, target(a.target).map_or("", |t| t.upstream_model.as_str()));
            match a.outcome {
                Ok(status) => {
                    out.extend_from_slice(b",\"status\":");
                    out.extend_from_slice(n.format(status).as_bytes());
                }
                Err(code) => {
                    out.extend_from_slice(b",\"error\":");
                    write_json_string(out, code);
                }
            }
            out.extend_from_slice(b",\"ms\":");
            write_millis(out, &mut n, a.micros as u64);
            out.extend_from_slice(b"}");
        }
        out.extend_from_slice(b"],\"status\":");
        out.extend_from_slice(n.format(self.status).as_bytes());
        out.extend_from_slice(if self.stream { b",\"stream\":true" as &[u8] } else { b",\"stream\":false" });
        if !self.finish.is_empty() {
            out.extend_from_slice(b",\"finish_reasons\":[");
            for (i, name) in self.finish.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b",");
                }
                // Known names only (`Finish`): nothing to escape.
                out.extend_from_slice(b"\"");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\"");
            }
            out.extend_from_slice(b"]");
        }
        if let Some(u) = self.usage {
            out.extend_from_slice(b",\"tokens\":{\"prompt\":");
            out.extend_from_slice(n.format(u.prompt).as_bytes());
            out.extend_from_slice(b",\"completion\":");
            out.extend_from_slice(n.format(u.completion).as_bytes());
            out.extend_from_slice(b",\"cached\":");
            out.extend_from_slice(n.format(u.cached).as_bytes());
            if u.cache_write > 0 {
                out.extend_from_slice(b",\"cache_write\":");
                out.extend_from_slice(n.format(u.cache_write).as_bytes());
            }
            if u.cache_write_1h > 0 {
                out.extend_from_slice(b",\"cache_write_1h\":");
                out.extend_from_slice(n.format(u.cache_write_1h.min(u.cache_write)).as_bytes());
            }
            if u.audio_prompt > 0 {
                out.extend_from_slice(b",\"audio_prompt\":");
                out.extend_from_slice(n.format(u.audio_prompt).as_bytes());
            }
            if u.audio_completion > 0 {
                out.extend_from_slice(b",\"audio_completion\":");
                out.extend_from_slice(n.format(u.audio_completion).as_bytes());
            }
            if u.tier != tollgate_policy::prices::Tier::Standard {
                out.extend_from_slice(b",\"tier\":\"");
                out.extend_from_slice(tier_name(u.tier).as_bytes());
                out.extend_from_slice(b"\"");
            }
            if self.usage_estimated {
                out.extend_from_slice(b",\"estimated\":true");
            }
            if self.usage_rejected {
                out.extend_from_slice(b",\"rejected\":true");
            }
            out.extend_from_slice(b"}");
            if let Some(cost) = self.cost(config) {
                out.extend_from_slice(b",\"cost_micro_usd\":");
                out.extend_from_slice(n.format(cost).as_bytes());
            }
        }
        let total = micros(self.started.elapsed());
        out.extend_from_slice(b",\"latency_ms\":{\"total\":");
        write_millis(out, &mut n, total as u64);
        if self.served_by.is_some() {
            out.extend_from_slice(b",\"upstream\":");
            write_millis(out, &mut n, self.upstream_micros as u64);
        }
        if let Some(first) = self.first_byte_micros {
            out.extend_from_slice(b",\"ttft\":");
            write_millis(out, &mut n, first as u64);
            if let Some(added) = self.gateway_micros() {
                out.extend_from_slice(b",\"gateway\":");
                write_millis(out, &mut n, added as u64);
            }
        }
        out.extend_from_slice(b"},\"bytes_in\":");
        out.extend_from_slice(n.format(self.bytes_in).as_bytes());
        out.extend_from_slice(b",\"bytes_out\":");
        out.extend_from_slice(n.format(self.bytes_out).as_bytes());
        if let Some(c) = self.cache {
            out.extend_from_slice(b",\"cache\":{\"outcome\":\"");
            out.extend_from_slice(c.looked().as_str().as_bytes());
            out.extend_from_slice(b"\"");
            if let Some(s) = c.similarity {
                out.extend_from_slice(format!(",\"similarity\":{s:.4}").as_bytes());
            }
            if c.hit {
                out.extend_from_slice(b",\"saved_micro_usd\":");
                out.extend_from_slice(n.format(c.saved_micro_usd).as_bytes());
                out.extend_from_slice(b",\"saved_tokens\":");
                out.extend_from_slice(n.format(c.saved_tokens).as_bytes());
            }
            out.extend_from_slice(b"}");
        }
        if !self.guard_hits.is_empty() || !self.classified.is_empty() {
            out.extend_from_slice(b",\"guardrails\":{\"profile\":");
            let profile = self.key.and_then(|k| config.team_profile(k.team));
            let rule = |r| rule_name(self, config, r);
            write_json_string(out, profile.map_or("", |p| p.name.as_str()));
            out.extend_from_slice(b",\"version\":\"");
            out.extend_from_slice(tollgate_policy::guard::injection::VERSION.as_bytes());
            out.extend_from_slice(b"\",\"hits\":[");
            for (i, r) in self.guard_hits.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b",");
                }
                out.extend_from_slice(b"{\"rule\":");
                match r.hit.rule {
                    // A detector's id is plain (`detector_ids_need_no_escape`):
                    // a prompt with real PII has a dozen hits a record.
                    tollgate_policy::guard::Rule::Detector(d) => {
                        out.extend_from_slice(b"\"");
                        out.extend_from_slice(d.rule_id().as_bytes());
                        out.extend_from_slice(b"\"");
                    }
                    other => write_json_string(out, &rule(other)),
                }
                out.extend_from_slice(b",\"action\":\"");
                out.extend_from_slice(r.hit.action.as_str().as_bytes());
                out.extend_from_slice(match r.direction {
                    tollgate_policy::guard::Direction::Request => b"\",\"in\":\"request\",\"text\":" as &[u8],
                    tollgate_policy::guard::Direction::Response => b"\",\"in\":\"response\",\"text\":",
                });
                out.extend_from_slice(n.format(r.text).as_bytes());
                out.extend_from_slice(b",\"at\":");
                out.extend_from_slice(n.format(r.hit.start).as_bytes());
                out.extend_from_slice(b",\"len\":");
                out.extend_from_slice(n.format(r.hit.end - r.hit.start).as_bytes());
                out.extend_from_slice(b"}");
            }
            out.extend_from_slice(b"]");
            if !self.injection_features.is_empty() {
                out.extend_from_slice(b",\"injection_features\":[");
                for (i, f) in self.injection_features.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b",");
                    }
                    write_json_string(out, f);
                }
                out.extend_from_slice(b"]");
            }
            if !self.classified.is_empty() {
                out.extend_from_slice(b",\"classifiers\":[");
                for (i, c) in self.classified.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b",");
                    }
                    out.extend_from_slice(b"{\"name\":");
                    let name =
                        profile.and_then(|p| p.classifiers.get(c.index as usize)).map_or("?", |c| c.name.as_str());
                    write_json_string(out, name);
                    match c.outcome {
                        Ok(v) => {
                            let hit = matches!(v, crate::verdicts::Verdict::Hit(_));
                            out.extend_from_slice(if hit { b",\"verdict\":\"hit\"" } else { b",\"verdict\":\"pass\"" });
                            out.extend_from_slice(format!(",\"score\":{:.3}", v.score()).as_bytes());
                        }
                        Err(f) => {
                            out.extend_from_slice(b",\"verdict\":\"error\",\"error\":\"");
                            out.extend_from_slice(f.as_str().as_bytes());
                            out.extend_from_slice(b"\"");
                        }
                    }
                    out.extend_from_slice(if c.cached { b",\"cached\":true" } else { b",\"cached\":false" });
                    if c.windows > 1 {
                        out.extend_from_slice(format!(",\"windows\":{}", c.windows).as_bytes());
                    }
                    out.extend_from_slice(b",\"ms\":");
                    write_millis(out, &mut n, c.micros as u64);
                    out.extend_from_slice(b"}");
                }
                out.extend_from_slice(b"]");
            }
            out.extend_from_slice(b"}");
        }
        if let Some(c) = &self.capture {
            out.extend_from_slice(b",\"capture\":{\"prompt\":");
            write_json_string(out, &String::from_utf8_lossy(&c.prompt));
            out.extend_from_slice(b",\"answer\":");
            write_json_string(out, &String::from_utf8_lossy(&c.answer));
            out.extend_from_slice(b"}");
        }
        out.extend_from_slice(b",\"end\":\"");
        out.extend_from_slice(self.end.as_str().as_bytes());
        out.extend_from_slice(b"\"}\n");
    }
}

/// A guardrail rule as records, spans and metrics name it: a
/// classifier's after the classifier. A detector's id is a constant (a
/// PII-rich 8 KB prompt's seventeen hits were a third of its record's
/// instructions when each was formatted into a new `String`).
pub fn rule_name(
    trace: &Trace<'_>,
    config: &Config,
    rule: tollgate_policy::guard::Rule,
) -> std::borrow::Cow<'static, str> {
    match rule {
        tollgate_policy::guard::Rule::Detector(d) => d.rule_id().into(),
        tollgate_policy::guard::Rule::Classifier(i) => {
            let profile = trace.key.and_then(|k| config.team_profile(k.team));
            format!(
                "classifier.{}",
                profile.and_then(|p| p.classifiers.get(i as usize)).map_or("?", |c| c.name.as_str())
            )
            .into()
        }
        r => r.to_string().into(),
    }
}

/// Microseconds as milliseconds with three decimals (`12345` -> `12.345`):
/// what `format!("{:.3}", micros as f64 / 1000.0)` writes (a count of
/// microseconds has exactly three decimals in milliseconds), without its
/// `String` and float formatting (five a record).
fn write_millis(out: &mut BytesMut, n: &mut itoa::Buffer, micros: u64) {
    out.extend_from_slice(n.format(micros / 1000).as_bytes());
    let f = (micros % 1000) as u16;
    out.extend_from_slice(&[b'.', b'0' + (f / 100) as u8, b'0' + (f / 10 % 10) as u8, b'0' + (f % 10) as u8]);
}

fn field_str(out: &mut BytesMut, name: &str, value: Option<&str>) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    match value {
        Some(v) => write_json_string(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A duration in whole microseconds, saturating at `u32::MAX` (over an
/// hour): the record's unit for every latency.
pub fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// A worker's record buffer and its line to the writer thread; with
/// `[telemetry]`, its span buffer too (a [`SpanSink`]).
pub struct Recorder {
    buf: RefCell<BytesMut>,
    tx: RefCell<Option<crate::logwriter::RecordLine>>,
    spans: RefCell<Option<Box<dyn SpanSink>>>,
    last_flush: Cell<Instant>,
    /// When this worker last logged records it dropped.
    last_drop_said: Cell<Option<Instant>>,
    epoch: u64,
    worker: u16,
    seq: Cell<u64>,
}

impl Recorder {
    pub fn new(worker: usize, tx: Option<crate::logwriter::RecordLine>) -> Recorder {
        let epoch = crate::unix_now().as_millis() as u64;
        Recorder {
            buf: RefCell::new(BytesMut::new()),
            tx: RefCell::new(tx),
            spans: RefCell::new(None),
            last_flush: Cell::new(Instant::now()),
            last_drop_said: Cell::new(None),
            epoch,
            worker: worker as u16,
            seq: Cell::new(0),
        }
    }

    /// Spans for the requests whose trace is sampled.
    pub fn with_spans(self, spans: Option<Box<dyn SpanSink>>) -> Recorder {
        *self.spans.borrow_mut() = spans;
        self
    }

    /// With `[telemetry]`: the request's trace context, from its
    /// `traceparent` or new.
    pub fn trace_context(&self, traceparent: Option<&[u8]>, rng: &Cell<u64>) -> Option<crate::trace_context::Context> {
        let spans = self.spans.borrow();
        let ratio = spans.as_ref()?.sample_ratio();
        Some(crate::trace_context::Context::start(traceparent, ratio, rng))
    }

    pub fn next_id(&self) -> RequestId {
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        RequestId { epoch: self.epoch, worker: self.worker, seq }
    }

    pub fn enabled(&self) -> bool {
        self.tx.borrow().is_some()
    }

    pub fn record(&self, trace: &Trace<'_>, config: &Config) {
        if let Some(ctx) = trace.otel.filter(|c| c.sampled()) {
            if let Some(spans) = self.spans.borrow().as_ref() {
                // A client with no valid key cannot make itself traced
                // (and crowd out others' spans) by a sampled parent: its
                // requests are traced at the configured ratio only.
                let admitted =
                    trace.key.is_some() || crate::trace_context::sampled_by_id(&ctx.trace_id, spans.sample_ratio());
                if admitted {
                    spans.add(trace, &ctx, config);
                }
            }
        }
        if !self.enabled() {
            return;
        }
        let full = {
            let mut buf = self.buf.borrow_mut();
            trace.write_json(config, &mut buf);
            buf.len() >= BATCH_BYTES
        };
        if full {
            self.flush();
        }
    }

    /// Hands the buffer to the writer if it is due.
    pub fn tick(&self, now: Instant) {
        if now.duration_since(self.last_flush.get()) >= FLUSH_EVERY {
            self.flush();
        }
    }

    pub fn flush(&self) {
        self.last_flush.set(Instant::now());
        if let Some(spans) = self.spans.borrow().as_ref() {
            spans.flush();
        }
        let tx = self.tx.borrow();
        let Some(tx) = tx.as_ref() else { return };
        let mut buf = self.buf.borrow_mut();
        if !buf.is_empty() {
            // Dropped (and counted, for the writer to log) when the writer
            // is far behind: a bounded queue (`logwriter::QUEUE_BYTES_MAX`),
            // which counts the allocation the batch keeps. Said here too,
            // at most every ten seconds a worker: the writer, blocked in a
            // write, cannot say it then.
            let held = buf.capacity();
            if let Err(lines) = tx.send(buf.split(), held) {
                let now = Instant::now();
                if self.last_drop_said.get().is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
                    self.last_drop_said.set(Some(now));
                    tracing::error!(
                        worker = self.worker,
                        records = lines,
                        "request records dropped: the record writer is far behind (is the disk stalled?)"
                    );
                }
            }
            // Room for the next batch at once: grown from empty by
            // doubling, the buffer's growth was 2,400 instructions of
            // each governed 8 KB request. Only after a batch went, so an
            // idle worker holds nothing.
            buf.reserve(BATCH_BYTES + BATCH_BYTES / 4);
        }
    }

    /// Flushes and hangs up, so that the writer can finish once every
    /// worker has stopped (whatever still holds the worker).
    pub fn close(&self) {
        self.flush();
        self.tx.borrow_mut().take();
        self.spans.borrow_mut().take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records write detectors' ids and milliseconds without the general
    /// escaping and float formatting: both as those wrote them.
    #[test]
    fn detector_ids_need_no_escape() {
        for d in tollgate_policy::guard::Detector::every() {
            let mut out = BytesMut::new();
            write_json_string(&mut out, d.rule_id());
            assert_eq!(&out[..], format!("\"{}\"", d.rule_id()).as_bytes(), "{d:?}");
        }
    }

    #[test]
    fn millis_are_what_float_formatting_wrote() {
        let mut n = itoa::Buffer::new();
        let seed = std::cell::Cell::new(0x9e37_79b9_7f4a_7c15u64);
        let values = (0..2_000u64)
            .chain([999, 1_000, 1_001, 9_999_999, u32::MAX as u64])
            .chain((0..2_000).map(|_| crate::next_random(&seed) % 100_000_000_000));
        for micros in values {
            let mut out = BytesMut::new();
            write_millis(&mut out, &mut n, micros);
            assert_eq!(&out[..], format!("{:.3}", micros as f64 / 1000.0).as_bytes(), "{micros}");
        }
    }

    #[test]
    fn request_id_renders_as_format_did() {
        for (epoch, worker, seq) in [
            (0, 0, 0),
            (1, 1, 1),
            (0xf, 15, 16),
            (0x10, 7, 99),
            (0x18c3a9f2e1b, 3, 123_456),
            (u64::MAX, u16::MAX, u64::MAX),
        ] {
            let mut out = BytesMut::new();
            RequestId { epoch, worker, seq }.render(&mut out);
            assert_eq!(&out[..], format!("tg-{epoch:x}-{worker}-{seq}").as_bytes());
        }
    }

    #[test]
    fn cost_is_integer_micro_dollars_by_hand() {
        // gpt-4o's built-in prices: $2.50 in, $1.25 cached in, $10.00 out.
        let price = tollgate_policy::prices::builtin("gpt-4o").unwrap();
        let u = TokenUsage { prompt: 1000, completion: 500, cached: 200, ..TokenUsage::default() };
        // 800 x 2.5 + 200 x 1.25 + 500 x 10 micro-dollars.
        assert_eq!(u.cost_at(price), 2000 + 250 + 5000);
        let tiny = TokenUsage { prompt: 1, ..TokenUsage::default() };
        assert_eq!(tiny.cost_at(price), 3, "2.5 micro-dollars round up");
        // Nothing billed is free: one token of a cheap embedding model is
        // a micro-dollar.
        let embedding = tollgate_policy::prices::builtin("text-embedding-3-small").unwrap();
        assert_eq!(TokenUsage { prompt: 1, ..TokenUsage::default() }.cost_at(embedding), 1);
        assert_eq!(TokenUsage { prompt: 49, ..TokenUsage::default() }.cost_at(embedding), 1);
        assert_eq!(TokenUsage::default().cost_at(embedding), 0, "no tokens, no cost");
        // Claude Sonnet: $3 in, $0.30 cache reads, $3.75 cache writes, $15 out.
        let sonnet = tollgate_policy::prices::builtin("claude-sonnet-4-5").unwrap();
        let u =
            TokenUsage { prompt: 4_000, completion: 100, cached: 2_000, cache_write: 1_000, ..TokenUsage::default() };
        // 1,000 x 3 + 2,000 x 0.3 + 1,000 x 3.75 + 100 x 15.
        assert_eq!(u.cost_at(sonnet), 3_000 + 600 + 3_750 + 1_500);
        // 400 of the writes for an hour, at $6: 600 x 3.75 + 400 x 6.
        let hour = TokenUsage { cache_write_1h: 400, ..u };
        assert_eq!(hour.cost_at(sonnet), 3_000 + 600 + 2_250 + 2_400 + 1_500);
        // A report of more hour-long writes than writes bills the writes.
        assert_eq!(TokenUsage { cache_write_1h: 5_000, ..u }.cost_at(sonnet), 3_000 + 600 + 6_000 + 1_500);
        // gpt-4o-audio-preview: audio at $40 in and $80 out, text at
        // gpt-4o's: 300 x 2.5 + 200 x 1.25 + 500 x 40 + 100 x 10 + 400 x 80.
        let audio = tollgate_policy::prices::builtin("gpt-4o-audio-preview").unwrap();
        let u = TokenUsage {
            prompt: 1000,
            completion: 500,
            cached: 200,
            audio_prompt: 500,
            audio_completion: 400,
            ..TokenUsage::default()
        };
        assert_eq!(u.cost_at(audio), 750 + 250 + 20_000 + 1_000 + 32_000);
        // Claims of more audio than tokens bill the tokens, all as audio.
        let inflated = TokenUsage { audio_prompt: 5_000, audio_completion: 5_000, ..u };
        assert_eq!(inflated.cost_at(audio), 250 + 32_000 + 40_000);
        let huge = TokenUsage { prompt: u64::MAX, completion: u64::MAX, ..TokenUsage::default() };
        assert_eq!(huge.cost_at(sonnet), u64::MAX, "saturates, never wraps");
    }

    /// Past 200K prompt tokens Sonnet 4.5 bills every token at its long
    /// context's rates ($6 in, $0.60 cache reads, $7.50 and $12 writes,
    /// $22.50 out); at 200K exactly, at the usual ones.
    #[test]
    fn a_long_prompt_is_billed_whole_at_the_long_context_rates() {
        let sonnet = tollgate_policy::prices::builtin("claude-sonnet-4-5").unwrap();
        let at = |prompt| TokenUsage { prompt, completion: 1_000, ..TokenUsage::default() }.cost_at(sonnet);
        assert_eq!(at(200_000), 600_000 + 15_000);
        assert_eq!(at(200_001), 1_200_006 + 22_500);
        let u = TokenUsage {
            prompt: 300_000,
            completion: 2_000,
            cached: 100_000,
            cache_write: 50_000,
            cache_write_1h: 10_000,
            ..TokenUsage::default()
        };
        // 150,000 x 6 + 100,000 x 0.6 + 40,000 x 7.5 + 10,000 x 12 + 2,000 x 22.5.
        assert_eq!(u.cost_at(sonnet), 900_000 + 60_000 + 300_000 + 120_000 + 45_000);
    }
}
