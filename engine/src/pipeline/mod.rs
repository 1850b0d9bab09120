//! The request pipeline: every phase a request to an API front
//! (`POST /v1/chat/completions`, `POST /v1/messages`) goes through, listed
//! in order once, in [`run`], with one exit for refusals and errors
//! ([`finish`]).
//!
//! ```text
//!  authenticate ─ name_run ─ within_budget ─ within_rate_limit ─ read_body ─ route
//!   ─ guard_request ─ classify_request ─ continue_response ─ cache lookup ─ affordable
//!   ─ reserve_tokens ─ within_run ─ capture ─ reserve_strict ─ forward ─ keep_turn
//!   ─ note_context ─ cache store ─ finish
//! ```
//!
//! - [`authenticate`]: the virtual key, before the body is read, so an
//!   unknown client cannot make the gateway buffer megabytes;
//! - [`name_run`]: the agent run the request names (`x-tollgate-run`,
//!   `x-tollgate-parent-run`), for its record and [`admit::within_run`];
//! - [`admit::within_budget`], [`admit::within_rate_limit`]: the key's and
//!   its team's hard budget limits and requests per minute (the request
//!   is counted at once);
//! - [`body_buffered`], else [`read_body`]: the body split off the read
//!   buffer when it came with the head, else read off the connection (no
//!   copy for a Content-Length body);
//! - [`route`]: the body's top level scanned once (model, stream, token
//!   limit), the route found and the key authorized for it, before any
//!   work that depends on the body's size (counting its prompt);
//! - [`guard_request`]: the team's guardrail profile blocks or redacts;
//! - [`classify_request`]: the profile's external classifiers (a prompt
//!   injection model, a moderation endpoint, a guard model, a webhook)
//!   are asked about the request's text, each within its timeout;
//! - [`turns::continue_response`]: a Responses request naming a turn the gateway
//!   keeps (`previous_response_id`) gets the turn's items before its own
//!   input ([`crate::turns`]);
//! - [`cache::lookup`]: with `[cache]`, a cacheable request (see
//!   there) is looked up by its key; a hit is answered from the entry
//!   ([`cache::serve`]) and goes to `finish` at once: it is counted
//!   for rate limits (above) but holds and spends nothing, and records
//!   what it saved;
//! - [`admit::count_large_prompt`]: a large prompt that a later phase will
//!   need counted is counted in steps, yielding the core between them;
//! - [`admit::affordable`]: under a day's or a month's limit, the request
//!   holds a rough estimate of its cost as spend while it runs (nothing
//!   counted), so that requests in flight together see one another; near
//!   a budget's end, for a prompt large beside what it has left, or where
//!   the rough estimate would cross, its estimate with the prompt counted
//!   must fit and is held instead;
//! - [`admit::reserve_tokens`]: under a tokens-per-minute limit, the
//!   prompt (counted once, with the model's encoding) plus the most the
//!   request may generate is reserved;
//! - [`admit::within_run`]: under run limits, the request's estimate is
//!   held against its run and the runs above it (one more request, its
//!   estimated cost and tokens), and the request that would pass a limit
//!   is refused, on whichever core it arrives ([`crate::runs`]);
//! - [`capture`]: with body capture on, the prompt as sent, redacted (on
//!   a cache hit too, with the cached answer: [`capture_hit`]);
//! - [`admit::reserve_strict`]: a strict budget's reservation in Redis;
//! - [`forward::forward`]: fallback over the route's targets, the
//!   upstream request, the call and the relay of the answer (guarded,
//!   counted, translated);
//! - [`turns::keep_turn`]: a Responses answer from a provider that keeps no
//!   responses is kept as a turn, under its id and the request's key;
//!   [`turns::note_context`]: one from a provider that keeps them leaves
//!   the size of the conversation it stores, which a request continuing
//!   it counts in its prompt;
//! - [`cache::store`]: a missed request's answer, kept as it was
//!   written, is stored if it completed with status 200;
//! - [`finish`]: the record written (with `[telemetry]`, the request's
//!   spans too: see [`crate::otel`]), the spend counted, what the request
//!   held released (in the same hand-off as that spend), then a refusal or
//!   error answered.
//!
//! A phase is a function of the [`Exchange`] (what earlier phases learned)
//! and the core ([`Core`]); none reads the socket but `read_body` and
//! `forward`. The sans-IO phases are grouped as [`before_body`] and
//! [`after_body`], which the in-memory benchmark (`tollgate-pipeline`)
//! runs as they are. A new capability is a new phase in this list, or a
//! change inside one.

pub mod admit;
pub mod cache;
pub mod exchange;
mod forward;
#[cfg(test)]
mod tests;
pub mod turns;

use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tollgate_protocol::http1::{BodyFraming, ChunkedDecoder, RequestError};

pub use crate::proxy::route::Routed;
pub use exchange::{BodyState, Exchange, Holds, Prompt};

use crate::accounts::Accounts;
use crate::error::GatewayError;
use crate::proxy::relay::RelayEnd;
use crate::record::{End, Recorder};
use crate::respond::Client;
use crate::state::CoreState;
use crate::stats::CoreStats;

/// What a request on one core runs with besides its exchange: the state
/// it started under, and the core's accounts, counters and recorder.
#[derive(Clone, Copy)]
pub struct Core<'w> {
    pub state: &'w CoreState,
    pub accounts: &'w Rc<Accounts>,
    pub stats: &'w CoreStats,
    pub recorder: &'w Recorder,
    /// Reservations for strict budgets, with a cluster tier.
    pub strict: Option<&'w crate::cluster::strict::Strict>,
    /// The worker is draining: answers say `connection: close`.
    pub draining: bool,
    /// Fired when the drain's time is up: requests stop waiting on their
    /// upstreams and end through [`finish`], recorded and billed.
    pub cut: &'w crate::cut::Cut,
    /// This core's answer cache ([`crate::cache`]).
    pub cache: &'w std::cell::RefCell<crate::cache::Store>,
    /// How many cores share the node's cache bound.
    pub cache_share: usize,
    /// The node's agent runs, shared by every core ([`crate::runs`]).
    pub runs: &'w std::sync::Arc<crate::runs::Runs>,
    /// The node's Responses turns ([`crate::turns`]).
    pub turns: &'w std::sync::Arc<crate::turns::Turns>,
}

/// Runs one request through every phase; true when the connection may
/// serve another request.
///
/// The exchange is on the heap and the phases that wait on the network
/// are boxed where they are awaited, each only when it has something to
/// wait for: a future is copied whole each time it is made and awaited,
/// at every level above it, so this one stays small (see `conn::serve`).
pub async fn run<'s>(core: &Core<'s>, client: &mut Client, buf: &mut BytesMut, mut ex: Box<Exchange<'s>>) -> bool {
    let mut abandoned = false;
    // A new answer for the answer cache's shared tier, written after the
    // record (the client does not wait for it).
    let mut shared = None;
    // A kept Responses turn for the cluster's Redis, written after the
    // record too.
    let mut shared_turn = None;
    let mut shared_context = None;
    let mut shared_owner = None;
    client.answered = false;
    // When the drain's time is up, the waits on upstreams end at once and
    // their requests finish their answers; one still going a moment later
    // (connecting or writing upstream, waiting on Redis, reading the body,
    // writing to a slow client) is stopped where it is and goes to the
    // exit as cut, so that it is recorded and billed before the worker
    // closes rather than dropped with it. (Pinned where it is made: a
    // future moved into `pin!` would take its size twice in this one.)
    let mut panicked = None;
    // The answer was relayed (not served from the cache, not refused).
    let mut relayed = false;
    let mut result = {
        // A panic in a phase (a bug) is caught here, where the request can
        // still be recorded and billed ([`crate::fault`]).
        let mut phases = std::pin::pin!(crate::fault::Caught(async {
            authenticate(&mut ex, core, &mut client.key_memo)?;
            name_run(&mut ex, core)?;
            admit::within_budget(&mut ex, core)?;
            admit::within_rate_limit(&mut ex, core)?;
            if !body_buffered(&mut ex, core, buf) {
                crate::boxed::boxed(|| read_body(&mut ex, core, client, buf)).await?;
            }
            route(&mut ex, core)?;
            // Phases with spans of their own are timed for traced requests
            // only: nothing else reads the times.
            let traced = ex.trace.otel.is_some_and(|c| c.sampled());
            let from = traced.then(|| ex.trace.offset());
            let guarded = match guard_request(&mut ex, core) {
                Ok(()) => match classifying(&ex, core) {
                    Some(p) => crate::boxed::boxed(|| classify_request(&mut ex, core, p)).await,
                    None => Ok(()),
                },
                Err(e) => Err(e),
            };
            if let Some(from) = from.filter(|_| has_guardrails(&ex, core)) {
                ex.trace.phases.guardrails = Some((from, ex.trace.offset()));
            }
            guarded?;
            if ex.front == crate::proxy::Front::Responses {
                crate::boxed::boxed(|| turns::continue_response(&mut ex, core)).await?;
            }
            let from = traced.then(|| ex.trace.offset());
            let entry = if core.state.config.cache.is_some() {
                crate::boxed::boxed(|| cache::lookup(&mut ex, core)).await
            } else {
                None
            };
            if let (Some(from), Some(outcome)) = (from, ex.reply.cache) {
                use crate::record::Looked;
                let looked = match outcome {
                    crate::cache::Outcome::Hit => Looked::Hit,
                    crate::cache::Outcome::SemanticHit(s) => Looked::SemanticHit(s),
                    crate::cache::Outcome::Miss => Looked::Miss,
                };
                ex.trace.phases.cache = Some((from, ex.trace.offset(), looked));
            }
            if let Some(entry) = entry {
                admit::within_run_for_hit(&mut ex, core)?;
                capture(&mut ex, core);
                capture_hit(&mut ex, core, &entry);
                return Ok(crate::boxed::boxed(|| cache::serve(&mut ex, client, entry)).await);
            }
            if ex.body.len() > tollgate_protocol::tokens::STEP_BYTES {
                crate::boxed::boxed(|| admit::count_large_prompt(&mut ex, core)).await?;
            }
            admit::affordable(&mut ex, core)?;
            admit::reserve_tokens(&mut ex, core)?;
            admit::within_run(&mut ex, core)?;
            capture(&mut ex, core);
            if core.strict.is_some() {
                crate::boxed::boxed(|| admit::reserve_strict(&mut ex, core)).await?;
            }
            let forwarded = crate::boxed::boxed(|| forward::forward(&mut ex, core.state, core.cut, client)).await;
            if forwarded.as_ref().is_err_and(|e| e.sent_upstream())
                && ex.body.len() > tollgate_protocol::tokens::STEP_BYTES
            {
                // The prompt the failure bills (`finish`), counted here in
                // steps: a large body counted at once would hold the core.
                ex.prompt.tokens_in_steps(&ex.body).await;
            }
            relayed = true;
            forwarded
        }));
        let caught = match core.cut.or(phases.as_mut()).await {
            Some(caught) => caught,
            None => match monoio::time::timeout(crate::cut::STUCK_AFTER_CUT, phases.as_mut()).await {
                Ok(caught) => caught,
                Err(_) => {
                    // Stopped mid-phase: whatever it had begun to write
                    // stays unwritten, and nothing more is (a 503 after
                    // part of an answer would corrupt it); the connection
                    // closes.
                    abandoned = true;
                    Ok(Err(GatewayError::Draining))
                }
            },
        };
        caught.unwrap_or_else(|why| {
            panicked = Some(why);
            Err(GatewayError::Fault { sent: false })
        })
    };
    if let Some(why) = panicked {
        let mut id = BytesMut::new();
        if let Some(r) = ex.reply.request_id {
            r.render(&mut id);
        }
        let id = String::from_utf8_lossy(&id);
        tracing::error!(panic = %why, request_id = %id, "a request panicked: recorded and billed, its connection closed (a bug; please report it with this line)");
        // The provider had the request if an attempt went out: its prompt,
        // and what a stream had passed, are billed (`finish`).
        result = Err(GatewayError::Fault { sent: ex.trace.with_provider.is_some() });
        // Where part of the answer went, an error cannot follow it: the
        // connection closes, as a cut one does. The state a panic leaves
        // is not trusted with another request either way.
        abandoned |= client.answered || !client.out.is_empty();
        ex.keep_alive = false;
    }
    if let (true, Ok(end)) = (relayed, &result) {
        // A relayed answer is kept for later requests (the answer cache,
        // Responses turns). Outside the phases' catch: the answer is
        // whole and billed from its usage, so a panic here (a bug) costs
        // the keeping only, not the bill.
        let keep = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            #[cfg(debug_assertions)]
            crate::fault::inject("keeping", &ex.body);
            (
                turns::keep_turn(&mut ex, core, end),
                turns::note_context(&ex, core, end),
                turns::note_owner(&ex, core, end),
                cache::store(&mut ex, core, end),
            )
        }));
        match keep {
            Ok((turn, context, owner, answer)) => {
                (shared_turn, shared_context, shared_owner, shared) = (turn, context, owner, answer)
            }
            Err(_) => {
                tracing::error!("keeping a relayed answer panicked: not kept, the request billed as answered (a bug; please report it with this line)");
                ex.keep_alive = false;
            }
        }
    }
    if abandoned {
        client.out.clear();
        // A close after part of an answer must not read as its end (an
        // answer delimited by the close, an HTTP/1.0 client's stream):
        // the connection is reset instead.
        if client.answered {
            client.abort();
        }
        ex.keep_alive = false;
    }
    let reusable = match finish(core, buf, &mut ex, result, abandoned) {
        Exit::Done(reusable) => reusable,
        // Boxed: most requests have no refusal to write.
        Exit::Refuse(refusal) => crate::boxed::boxed(|| refusal.send(client)).await,
    };
    if let Some(s) = shared {
        crate::boxed::boxed(|| cache::share(core, s)).await;
    }
    for t in [shared_turn, shared_context, shared_owner].into_iter().flatten() {
        crate::boxed::boxed(|| turns::share(core, t)).await;
    }
    reusable && !abandoned
}

/// The phases before the body is read, in [`run`]'s order (for the
/// in-memory benchmark, which has no connection).
pub fn before_body<'s>(ex: &mut Exchange<'s>, core: &Core<'s>) -> Result<(), GatewayError> {
    authenticate(ex, core, &mut Default::default())?;
    name_run(ex, core)?;
    admit::within_budget(ex, core)?;
    admit::within_rate_limit(ex, core)
}

/// The phases between the body's read and the strict reservation, in
/// [`run`]'s order, sans-IO: all but [`admit::count_large_prompt`], which
/// only moves a large prompt's count earlier and into steps.
pub fn after_body<'s>(ex: &mut Exchange<'s>, core: &Core<'s>) -> Result<(), GatewayError> {
    route(ex, core)?;
    guard_request(ex, core)?;
    admit::affordable(ex, core)?;
    admit::reserve_tokens(ex, core)?;
    admit::within_run(ex, core)?;
    capture(ex, core);
    Ok(())
}

/// Who is asking. The key is looked up by its SHA-256 (see
/// `tollgate_policy::keys`); the client's key never leaves the gateway
/// (the upstream request drops `authorization` and `x-api-key`).
pub fn authenticate<'s>(
    ex: &mut Exchange<'s>,
    core: &Core<'s>,
    memo: &mut crate::proxy::authenticate::KeyMemo,
) -> Result<(), GatewayError> {
    let key = crate::proxy::authenticate::authenticate(core.state, &ex.head, ex.unix_s(), memo)?;
    ex.trace.key = Some(key);
    Ok(())
}

/// The agent run the request names, if any: kept in its record (so that
/// reports group by run, refusals included) and for [`admit::within_run`].
/// A malformed id is refused here, before anything is counted.
pub fn name_run<'s>(ex: &mut Exchange<'s>, _core: &Core<'s>) -> Result<(), GatewayError> {
    ex.trace.run = crate::runs::run_ids(&ex.head).map_err(GatewayError::RunHeader)?;
    Ok(())
}

/// The whole body when it came with the head (a typical chat request): a
/// Content-Length body already in the read buffer is split off it, and an
/// empty one is empty, with no future made for [`read_body`]. False when
/// some of it is still to be read (or the body is refused there).
pub fn body_buffered(ex: &mut Exchange<'_>, core: &Core<'_>, buf: &mut BytesMut) -> bool {
    let body = match ex.head.framing {
        BodyFraming::Empty => Bytes::new(),
        BodyFraming::Length(n) if n <= core.state.config.server.body_bytes_max as u64 && buf.len() as u64 >= n => {
            buf.split_to(n as usize).freeze()
        }
        _ => return false,
    };
    ex.trace.bytes_in = body.len() as u64;
    ex.body = body;
    ex.body_state = BodyState::Read;
    true
}

/// Reads the whole request body (routing and guardrails need all of it).
/// A Content-Length body is split off the read buffer without a copy; a
/// chunked one is decoded (bounded by `body_bytes_max`).
pub async fn read_body(
    ex: &mut Exchange<'_>,
    core: &Core<'_>,
    client: &mut Client,
    buf: &mut BytesMut,
) -> Result<(), GatewayError> {
    ex.body_state = BodyState::Broken;
    let body = read_body_bytes(core.state, client, buf, &ex.head, ex.started).await?;
    ex.trace.bytes_in = body.len() as u64;
    ex.body = body;
    ex.body_state = BodyState::Read;
    Ok(())
}

/// The model decides the route, and the key's team must be allowed that
/// model. The body's top level is scanned here, once; later phases read
/// the fields from the exchange. Runs before anything that costs in
/// proportion to the body (counting its prompt, guarding it), so that a
/// request for a model its key may not use costs one pass.
pub fn route<'s>(ex: &mut Exchange<'s>, core: &Core<'s>) -> Result<(), GatewayError> {
    let key = ex.key()?;
    let routed = crate::proxy::route::route(core.state, key, &ex.body, &mut ex.trace)?;
    // Only a body that may reach a provider in its own API can ask it to
    // run a tool or use a tier (a token count, none).
    let fields = &routed.fields;
    if (fields.hosted_tools || fields.service_tier.is_some())
        && crate::proxy::route::passes_through(core.state, ex.front, routed.route)
    {
        if fields.hosted_tools {
            crate::proxy::route::allow_tools(core.state, key, &ex.body)?;
        }
        if let Some(tier) = fields.service_tier {
            crate::proxy::route::allow_tier(core.state, key, tier.get(&ex.body))?;
        }
    }
    // A model that searches on every request (OpenAI's chat search
    // models) runs the tool whether or not the body offers it, whatever
    // API the request is translated to.
    if routed.route.targets.iter().any(|t| t.searches) {
        crate::proxy::route::allow_search_model(core.state, key, routed.route)?;
    }
    ex.trace.stream = routed.fields.stream;
    // Counted as the model that will most likely serve it counts: the first
    // target's upstream model (a route's name may be an alias).
    let model = routed.route.targets.first().map_or(routed.route.name.as_str(), |t| t.upstream_model.as_str());
    ex.prompt = Prompt::new(tollgate_protocol::tokens::Encoding::for_model(model.as_bytes()));
    // Token IDs are prompt tokens the count of its texts does not see.
    ex.prompt.stored = routed.fields.token_ids;
    ex.routed = Some(routed);
    Ok(())
}

/// The team's guardrail profile checks the request's texts: a `block` hit
/// refuses it; a `redact` hit replaces the body (the only copy of a body
/// on this path), and the route's spans are moved by what was replaced
/// before them.
pub fn guard_request<'s>(ex: &mut Exchange<'s>, core: &Core<'s>) -> Result<(), GatewayError> {
    let key = ex.key()?;
    let Some((profile, g)) = crate::proxy::guard::for_team(&core.state.config, key.team) else { return Ok(()) };
    // Parts of the exchange the guard cannot read: refused, as a body it
    // cannot walk is, unless the profile lets through what it cannot
    // check (then logged, both alike).
    // - A prompt given as token IDs: the provider decodes them into text
    //   that passed no rule (found by a review).
    // - An answer's log probabilities, where the profile checks answers:
    //   they hold its text again, token by token, where answer
    //   guardrails do not look (found by a review: a redacted answer's
    //   tokens came back whole in `logprobs`).
    // - A stream of several answers, where the profile checks answers:
    //   providers interleave the answers' chunks, and the stream guard
    //   holds one answer's text at a time, so each piece was scanned
    //   alone and a secret split across them passed (found by a review).
    let fields = ex.routed.as_ref().map(|r| &r.fields);
    // Answers are checked by the profile's rules or by a classifier of
    // its that reads answers (found by a review: only the rules counted).
    let answers_checked = g.responses
        || core.state.config.team_profile(key.team).is_some_and(|p| p.classifiers.iter().any(|c| c.answers));
    let unreadable = if fields.is_some_and(|f| f.token_ids > 0) {
        Some("the prompt is given as token IDs, which guardrails cannot read; send it as text")
    } else if answers_checked && fields.is_some_and(|f| f.logprobs) {
        Some("the answer's logprobs repeat its text token by token, which answer guardrails cannot check; ask without logprobs")
    } else if answers_checked && fields.is_some_and(|f| f.stream && f.choices > 1) {
        Some("a stream of several answers (`n`) interleaves them chunk by chunk, which answer guardrails cannot check whole; ask for one answer, or without streaming")
    } else {
        None
    };
    if let Some(why) = unreadable {
        if !g.fail_open {
            return Err(GatewayError::GuardrailUnavailable { profile: profile.to_string(), why });
        }
        tracing::warn!(profile, why, "guardrails cannot check this request; letting it through (on_error = allow)");
    }
    let trace = &mut ex.trace;
    let checked = crate::proxy::guard::check_request(
        profile,
        g,
        &ex.body,
        (&mut trace.guard_hits, &mut trace.injection_features),
        (&mut core.state.scan_room.borrow_mut(), Some((&mut core.state.clean_texts.borrow_mut(), key.team as u64))),
        ex.routed.as_ref().and_then(|r| r.fields.last_message).map(|s| s.start as usize..s.end as usize),
    );
    if let Some(redacted) = checked? {
        ex.body = redacted.body;
        // The route's spans move with the string values replaced before
        // them; the body is not scanned again.
        if let Some(routed) = ex.routed.as_mut() {
            routed.fields.moved(|at| crate::proxy::guard::moved(&redacted.edits, at));
            debug_assert_eq!(Ok(routed.fields), tollgate_protocol::openai::scan_request(&ex.body));
        }
    }
    Ok(())
}

/// The key's team has a guardrail profile: the guardrail phases ran for
/// the request (for its span).
fn has_guardrails(ex: &Exchange<'_>, core: &Core<'_>) -> bool {
    let teams = &core.state.config.teams;
    ex.trace.key.and_then(|k| teams.get(k.team)).is_some_and(|t| t.guardrail_profile.is_some())
}

/// The key's team's guardrail profile when it names external
/// classifiers: what [`classify_request`] asks, found before its future
/// is made.
fn classifying<'s>(ex: &Exchange<'_>, core: &Core<'s>) -> Option<&'s tollgate_policy::config::GuardrailProfile> {
    let profile = core.state.config.team_profile(ex.trace.key?.team)?;
    (!profile.classifiers.is_empty()).then_some(profile)
}

/// The profile's external classifiers, in order, on the request's texts
/// as they will be sent (redacted: a classifier is outside the gateway
/// too). A blocking hit refuses the request; a classifier that gives no
/// verdict lets it through or refuses it, as its `on_error` says. Each
/// verdict is kept on the core by the text's keyed hash.
pub async fn classify_request<'s>(
    ex: &mut Exchange<'s>,
    core: &Core<'s>,
    p: &tollgate_policy::config::GuardrailProfile,
) -> Result<(), GatewayError> {
    use crate::proxy::classify::{classify_one, tail, Stop};
    use tollgate_policy::guard::{Action, Direction};
    let mut texts = crate::proxy::guard::request_texts(&ex.body);
    for (i, c) in p.classifiers.iter().enumerate() {
        use tollgate_policy::config::ClassifierKind;
        if matches!(c.kind, ClassifierKind::Webhook | ClassifierKind::Presidio) && c.action == Action::Redact {
            // A webhook or Presidio that redacts: its spans are placed in the texts,
            // so it is asked each time (spans are not cached). The
            // classifiers after it see the request as it will be sent.
            if webhook_redact(ex, core, &p.name, i, c).await? {
                texts = crate::proxy::guard::request_texts(&ex.body);
            }
            continue;
        }
        let text = tail(&texts, c.text_bytes_max);
        if text.is_empty() {
            continue;
        }
        let asked = (Direction::Request, ex.key()?.team);
        let record = (&mut ex.trace.classified, &mut ex.trace.guard_hits);
        match classify_one(core.state, p, i, text, asked, record, (ex.deadline, core.cut)).await {
            Ok(()) => {}
            Err(Stop::Blocked(rule)) => return Err(GatewayError::Guardrail { profile: p.name.clone(), rule }),
            Err(Stop::Unavailable { why, .. }) => {
                return Err(GatewayError::GuardrailUnavailable { profile: p.name.clone(), why })
            }
        }
    }
    Ok(())
}

/// A webhook or Presidio classifier with `action = "redact"`: the
/// request's texts go out each apart; a flagged verdict with spans has them replaced by the
/// placeholder, and the route's spans move with the body. True when the
/// body changed.
async fn webhook_redact<'s>(
    ex: &mut Exchange<'s>,
    core: &Core<'s>,
    profile: &str,
    i: usize,
    c: &tollgate_policy::config::Classifier,
) -> Result<bool, GatewayError> {
    use crate::proxy::classify::{ask_presidio, ask_webhook, Classified};
    use tollgate_policy::guard::{Action, Direction, Hit, Rule};
    let texts = crate::proxy::guard::texts_of(&ex.body);
    let started = Instant::now();
    let answer = if c.kind == tollgate_policy::config::ClassifierKind::Presidio {
        ask_presidio(core.state, c, &texts, ex.deadline, core.cut).await
    } else {
        ask_webhook(core.state, c, &texts, ex.deadline, core.cut).await
    };
    let micros = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
    // Text past what its calls carry is the classifier's failure, which
    // `on_error` decided: let through, the newest texts redacted.
    let outcome = match &answer {
        // A hit outranks the failure, as in an answer's record.
        Ok(a) if !a.complete && !matches!(a.verdict, crate::proxy::classify::Verdict::Hit(_)) => {
            Err(crate::proxy::classify::Failure::TooLarge)
        }
        a => a.as_ref().map(|a| a.verdict).map_err(|f| *f),
    };
    let windows = answer.as_ref().map_or(1, |a| a.calls);
    ex.trace.classified.push(Classified { index: i as u16, outcome, cached: false, micros, windows });
    if let Some(a) = answer.as_ref().ok().filter(|a| !a.complete) {
        tracing::warn!(
            profile,
            classifier = c.name,
            calls = a.calls,
            why = crate::proxy::classify::Failure::TooLarge.why(),
            "the newest texts only (on_error = allow)"
        );
    }
    let answer = match answer {
        Ok(a) => a,
        Err(f) if c.fail_open => {
            tracing::warn!(
                profile,
                classifier = c.name,
                why = f.why(),
                "letting the request through (on_error = allow)"
            );
            return Ok(false);
        }
        Err(f) => return Err(GatewayError::GuardrailUnavailable { profile: profile.to_string(), why: f.why() }),
    };
    let rule = Rule::Classifier(i as u16);
    for &(text, start, end) in &answer.spans {
        let hit = Hit { rule, start, end, action: Action::Redact };
        ex.trace.guard_hits.push(crate::record::Recorded { direction: Direction::Request, text, hit });
    }
    let Some(redacted) = crate::proxy::guard::redact_spans(&ex.body, &answer.spans, rule) else { return Ok(false) };
    ex.body = redacted.body;
    if let Some(routed) = ex.routed.as_mut() {
        routed.fields.moved(|at| crate::proxy::guard::moved(&redacted.edits, at));
    }
    Ok(true)
}

/// For a team that captures (its `capture_bodies`, or `[logging]`'s): the
/// prompt as it goes upstream, redacted of personal data and secrets, for
/// the record; the answer follows in `forward`, which captures where this
/// phase did.
pub fn capture<'s>(ex: &mut Exchange<'s>, core: &Core<'s>) {
    let config = &core.state.config;
    let Some(g) = config.capture_guard.as_deref() else { return };
    let team = ex.trace.key.and_then(|k| config.teams.get(k.team));
    if !team.is_some_and(|t| t.capture) {
        return;
    }
    let prompt = match crate::proxy::guard::check_request(
        "capture",
        g,
        &ex.body,
        (&mut Vec::new(), &mut Vec::new()),
        (&mut core.state.scan_room.borrow_mut(), None),
        None,
    ) {
        Ok(Some(redacted)) => redacted.body,
        Ok(None) => ex.body.clone(),
        Err(_) => Bytes::from_static(b"(not captured: the body could not be read)"),
    };
    ex.trace.capture = Some(Box::new(crate::record::Capture { prompt, answer: Vec::new() }));
}

/// A cache hit's answer, for a team that captures, as a relayed answer's
/// is: a JSON answer redacted whole, a stream's text (found by a review:
/// hits were captured with neither prompt nor answer).
fn capture_hit(ex: &mut Exchange<'_>, core: &Core<'_>, entry: &crate::cache::Entry) {
    let Some(g) = core.state.config.capture_guard.as_deref() else { return };
    let responses = ex.front == crate::proxy::Front::Responses;
    let Some(c) = ex.trace.capture.as_deref_mut() else { return };
    if entry.stream {
        c.answer = crate::proxy::stream::captured_text(g, responses, &entry.body);
    } else {
        crate::proxy::guard::capture_json(g, &entry.body, &mut c.answer, &mut core.state.scan_room.borrow_mut());
    }
}

/// The one exit: the record is written and the request counted (its spend
/// with it); what the request held is released right after, so that the
/// two reach the merger in the same hand-off; then a refusal or error
/// becomes its answer, to send ([`Refusal::send`]). The exchange is
/// borrowed, not moved out of its box: it is 2.7 KB, and a cache hit's
/// copies were the largest part of its `memmove`.
pub fn finish(
    core: &Core<'_>,
    buf: &mut BytesMut,
    ex: &mut Exchange<'_>,
    result: Result<RelayEnd, GatewayError>,
    abandoned: bool,
) -> Exit {
    let Exchange { trace, holds, reply, keep_alive, head, body_state, started, prompt, body, routed, .. } = ex;
    let (keep_alive, body_state, started) = (*keep_alive, *body_state, *started);
    // What the answer will be, with the record's fields set from it.
    let refusal = match result {
        Ok(end) => {
            trace.status = end.status;
            trace.first_byte_micros =
                end.first_write.map(|t| crate::record::micros(t.saturating_duration_since(started)));
            trace.bytes_out = end.body_bytes;
            trace.usage = end.usage;
            trace.finish = end.finish;
            trace.end = end.end;
            Ok(end.client_reusable)
        }
        Err(e) => {
            tracing::debug!(error = %e, status = e.status(), "request failed");
            trace.status = e.status();
            // The request went upstream and no answer came back whole: the
            // provider did the work, so its prompt is billed (counted,
            // estimated), priced as the target it was sent to. At once,
            // not in steps: a failure's path, and the drain's worker
            // closes soon.
            let count_tokens = ex.front == crate::proxy::Front::CountTokens;
            let last = trace.attempt_count.checked_sub(1).and_then(|i| trace.attempts[i]).map(|a| a.target);
            // The attempt a provider may still have unbilled: the drain's
            // cut or a panic can stop a request between an attempt billed
            // as unanswered and the next one's outcome, where `last` would
            // bill the first again and the second never.
            let with = trace.with_provider;
            let mut bill_prompt = |target: Option<u8>| {
                if let Some(target) = target {
                    trace.served_by = Some(target);
                    // A token count is free (found by a review: one whose
                    // provider failed after it was asked was billed its
                    // prompt). Its record still names the provider.
                    if count_tokens {
                        return;
                    }
                    let tokens = prompt.tokens(body);
                    let usage = match routed {
                        Some(r) => admit::prompt_only(r, tokens, body),
                        None => crate::record::TokenUsage { prompt: tokens, ..Default::default() },
                    };
                    // And what a stream had passed, where it was cut while
                    // it wrote (the drain's abandoned requests).
                    let completion = trace.completion_passed.get();
                    trace.usage = Some(crate::record::TokenUsage { completion, ..usage });
                    trace.usage_estimated = true;
                }
            };
            let end = match e {
                GatewayError::Guardrail { .. } | GatewayError::GuardrailUnavailable { .. } => End::Blocked,
                // The drain's time ran out before an answer began.
                GatewayError::Draining => {
                    bill_prompt(with);
                    End::Cut
                }
                GatewayError::Fault { sent: true } => {
                    // The prompt's count may be what panicked: then a
                    // third of its bytes, as an unreadable answer's is.
                    let billed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bill_prompt(with)));
                    if billed.is_err() {
                        trace.served_by = with;
                        let prompt = body.len() as u64 / 3;
                        let completion = trace.completion_passed.get();
                        trace.usage = Some(crate::record::TokenUsage { prompt, completion, ..Default::default() });
                        trace.usage_estimated = true;
                    }
                    End::Fault
                }
                GatewayError::Fault { sent: false } => End::Fault,
                // Timed out waiting for the answer, or the answer was
                // broken (found by a review: a slow model's requests timed
                // out after the provider had them, and each was free).
                _ if e.sent_upstream() => {
                    bill_prompt(last);
                    End::UpstreamFailed
                }
                _ if e.source() == crate::error::Source::Upstream => End::UpstreamFailed,
                _ => End::Rejected,
            };
            trace.end = end;
            let mut body = BytesMut::with_capacity(256);
            e.write_body(&mut body);
            trace.bytes_out = if reply.head_only { 0 } else { body.len() as u64 };
            Err((e, body))
        }
    };
    let (tokens, cost) = settle(core, trace);
    // The run's figures take the request's use before its hold lets the
    // estimate go, so that they never dip between the two.
    if let Some(run) = &holds.run {
        run.charge(tokens, cost, crate::unix_now().as_millis() as u64);
    }
    drop(std::mem::take(holds));
    let (e, body) = match refusal {
        Ok(client_reusable) => return Exit::Done(client_reusable),
        // Recorded and billed; nothing is written.
        Err(_) if abandoned => return Exit::Done(false),
        Err(refusal) => refusal,
    };
    let mut reply = *reply;
    match &e {
        GatewayError::RateLimited(r) => reply.retry_after = Some(r.retry_after),
        GatewayError::UpstreamResting { retry_after_s, .. } => reply.retry_after = Some(*retry_after_s),
        _ => {}
    }
    // Unread bytes of a body would be taken for the next request: the
    // connection stays only if the whole body is buffered (and skipped),
    // or was read.
    let body_done = match body_state {
        BodyState::Read => true,
        BodyState::Broken => false,
        BodyState::Unread => skip_buffered_body(&head.framing, buf),
    };
    let close = !body_done || !keep_alive || e.closes_connection();
    Exit::Refuse(Refusal { reply, status: e.status(), body: body.freeze(), close })
}

/// What [`finish`] leaves to do.
pub enum Exit {
    /// Nothing to write: true when the connection may serve another
    /// request.
    Done(bool),
    /// A refusal or error to write.
    Refuse(Refusal),
}

/// A refusal or error to write as the request's answer.
pub struct Refusal {
    reply: crate::respond::Reply,
    status: u16,
    body: Bytes,
    close: bool,
}

impl Refusal {
    /// Writes it; true when the connection may serve another request.
    pub async fn send(self, client: &mut Client) -> bool {
        client.send(&self.reply, self.status, "application/json", self.body, self.close).await && !self.close
    }
}

/// Writes the request's record and counts it: counters, and its tokens and
/// spend against its key and team. Returns the two (tokens, micro-dollars).
pub fn settle(core: &Core<'_>, trace: &crate::record::Trace<'_>) -> (u64, u64) {
    let config = &core.state.config;
    let cost = trace.cost(config).unwrap_or(0);
    core.recorder.record(trace, config);
    // Counts are kept by index and named at hand-off with the core's
    // configuration then: a request that ran across a reload is counted
    // at its team's, key's, model's and provider's new indexes.
    core.accounts.reloaded_since(config, |now| core.stats.count(trace, config, now, cost));
    let tokens = trace.usage.map_or(0, |u| u.prompt.saturating_add(u.completion));
    if let Some(key) = trace.key {
        let minute = settle_minute(trace.started_unix_ms, crate::unix_now().as_millis() as u64);
        core.accounts.settle(key, config, minute, tokens, cost);
    }
    (tokens, cost)
}

/// The minute a request's tokens count in: the one it ends in, where its
/// reservation was in the one it began in. Counted in the minute it began,
/// a request that ran past it (a long answer, with no output limit)
/// counted in no window still open: its tokens were dropped with that
/// minute, and a team could pass its tokens per minute again and again
/// (found by a review). In the same minute the two are one.
fn settle_minute(started_unix_ms: u64, now_unix_ms: u64) -> u64 {
    started_unix_ms.max(now_unix_ms) / 60_000
}

/// Skips a body that is already whole in the read buffer; false when some
/// of it is still on the wire.
fn skip_buffered_body(framing: &BodyFraming, buf: &mut BytesMut) -> bool {
    match *framing {
        BodyFraming::Empty => true,
        BodyFraming::Length(n) if buf.len() as u64 >= n => {
            let _ = buf.split_to(n as usize);
            true
        }
        _ => false,
    }
}

/// Bytes asked for per client read; a typical chat request fits in one.
pub const READ_BYTES: usize = 16 * 1024;

async fn read_body_bytes(
    state: &CoreState,
    client: &mut Client,
    buf: &mut BytesMut,
    head: &tollgate_protocol::http1::RequestHead,
    started: Instant,
) -> Result<Bytes, GatewayError> {
    let max = state.config.server.body_bytes_max as u64;
    let deadline = started + state.config.server.timeouts.body_read;
    match head.framing {
        BodyFraming::Empty | BodyFraming::CloseDelimited => Ok(Bytes::new()),
        BodyFraming::Length(n) => {
            if n > max {
                return Err(GatewayError::Request(RequestError::BodyTooLarge));
            }
            let n = n as usize;
            if head.expect_continue && buf.len() < n && !client.send_continue(deadline).await {
                return Err(GatewayError::ClientClosed);
            }
            // A body that does not fit gets a buffer of its own, with room
            // for the next request's head after it: `BytesMut::reserve`
            // on a connection's buffer that held earlier requests
            // reallocates it whole, copying their spent bytes too, and a
            // buffer sized to the body alone left the next same-sized
            // request a few bytes short, so every 100 KB prompt on a
            // kept-alive connection was copied once more (3% of its
            // governed work). Once freed, the buffer is reused for the
            // next request whole. At most 1 MiB ahead of what arrived.
            let ahead = (n - buf.len()).min(1 << 20);
            if buf.capacity() - buf.len() < ahead {
                let mut fresh = BytesMut::with_capacity(buf.len() + ahead + READ_BYTES);
                fresh.extend_from_slice(buf);
                *buf = fresh;
            }
            while buf.len() < n {
                buf.reserve((n - buf.len()).min(1 << 20));
                fill(&mut client.stream, buf, deadline).await?;
            }
            Ok(buf.split_to(n).freeze())
        }
        BodyFraming::Chunked => {
            if head.expect_continue && buf.is_empty() && !client.send_continue(deadline).await {
                return Err(GatewayError::ClientClosed);
            }
            let mut decoder = ChunkedDecoder::new();
            let mut body = BytesMut::new();
            loop {
                let input = &buf[..];
                let p = decoder.decode(input, |r| body.extend_from_slice(&input[r])).map_err(GatewayError::Request)?;
                let _ = buf.split_to(p.consumed);
                if body.len() as u64 > max {
                    return Err(GatewayError::Request(RequestError::BodyTooLarge));
                }
                if p.done {
                    return Ok(body.freeze());
                }
                buf.reserve(READ_BYTES);
                fill(&mut client.stream, buf, deadline).await?;
            }
        }
    }
}

/// One read into `buf` before `deadline`.
async fn fill(
    stream: &mut crate::downstream::ClientStream,
    buf: &mut BytesMut,
    deadline: Instant,
) -> Result<(), GatewayError> {
    let wait = deadline.saturating_duration_since(Instant::now()).max(std::time::Duration::from_millis(1));
    let Ok(res) = monoio::time::timeout(wait, crate::iov::read_more(stream, buf)).await else {
        return Err(GatewayError::BodyTimeout);
    };
    match res {
        Ok(n) if n > 0 => Ok(()),
        // An error keeps a half-received request from going upstream.
        _ => Err(GatewayError::ClientClosed),
    }
}
