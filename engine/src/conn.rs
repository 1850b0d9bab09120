//! One client connection: requests are read and answered strictly in order
//! (HTTP/1.1 pipelining), with keep-alive, `Expect: 100-continue`, and the
//! head, body and idle time-outs.
//!
//! The read buffer is the request's memory: the head and the body are split
//! off it frozen and handed on as `Bytes`, so the body that goes upstream is
//! the very allocation it arrived in. Bytes after the current request stay
//! in the buffer as the start of the next one.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;
use tollgate_protocol::http1::{BodyFraming, ChunkedDecoder, HeadScan, Method, RequestError, RequestHead};

use crate::error::GatewayError;
use crate::iov;
use crate::proxy;
use crate::proxy::authenticate::authenticate;
use crate::record::{End, Trace};
use crate::respond::{models_body, Client};
use crate::worker::{CoreState, Tracked, Worker};

/// Bytes asked for per client read; a typical chat request fits in one.
const READ_BYTES: usize = 16 * 1024;

/// Buffer a connection holds while it waits for its first request. io_uring
/// owns a read's buffer until data arrives, so this is the memory an idle
/// connection costs: 10,000 idle clients hold 20 MB of it, not 160 MB.
const IDLE_READ_BYTES: usize = 2 * 1024;

/// Handshakes TLS on an accepted connection (within `head_read_ms`: a
/// client that stalls its handshake is a slow client), then serves it.
pub async fn serve_tls(w: Rc<Worker>, tcp: TcpStream, acceptor: monoio_rustls::TlsAcceptor, open: Tracked) {
    let limit = w.state().config.server.timeouts.head_read;
    match monoio::time::timeout(limit, crate::downstream::accept(&acceptor, tcp)).await {
        Ok(Ok(stream)) => serve(w, stream, open).await,
        Ok(Err(e)) => tracing::debug!(error = %e, "client TLS handshake failed"),
        Err(_) => tracing::debug!("client TLS handshake timed out"),
    }
}

/// Serves one accepted connection until it closes.
pub async fn serve(w: Rc<Worker>, stream: crate::downstream::ClientStream, _open: Tracked) {
    let mut client = Client::new(stream);
    let mut buf = BytesMut::with_capacity(IDLE_READ_BYTES);
    let mut scan = HeadScan::default();
    loop {
        let head = match read_head(&w, &mut client.stream, &mut buf, &mut scan).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                client.deadline = Instant::now() + w.state().config.server.timeouts.head_read;
                client.send_error(&e, true).await;
                return;
            }
        };
        let _in_flight = w.track_request();
        // The request runs under the state it started with, whatever a
        // reload installs meanwhile.
        let state = w.state();
        // Boxed: the answer's state machine (relay, translation, TLS) is
        // large, and an idle connection should not carry it between
        // requests. One allocation per request buys ~13 KB per idle
        // connection (BENCHMARKS.md, memory).
        let keep_alive = Box::pin(answer(&w, &state, &mut client, &mut buf, head)).await;
        if !keep_alive || w.is_draining() {
            return;
        }
    }
}

/// Reads until a whole head is buffered. `Ok(None)`: the client closed, went
/// idle past the limit, or the worker is draining, with no request begun.
async fn read_head(
    w: &Worker,
    stream: &mut crate::downstream::ClientStream,
    buf: &mut BytesMut,
    scan: &mut HeadScan,
) -> Result<Option<RequestHead>, GatewayError> {
    let state = w.state();
    let (limits, timeouts) = (&state.limits, &state.config.server.timeouts);
    let mut head_deadline: Option<Instant> = None;
    loop {
        if let Some(n) = scan.find_end(buf) {
            let head = buf.split_to(n).freeze();
            return RequestHead::parse(head, limits).map(Some).map_err(GatewayError::Request);
        }
        if buf.len() >= limits.head_bytes_max {
            return Err(GatewayError::Request(RequestHead::too_large(buf, limits)));
        }
        // Small while nothing has arrived; a full read size once a request
        // is under way.
        buf.reserve(if head_deadline.is_none() && buf.is_empty() { IDLE_READ_BYTES } else { READ_BYTES });
        let res = match head_deadline {
            // Between requests: idle time-out, and cancelled by a drain. A
            // connection that reaches its first wait after the drain began
            // (its TLS handshake was still running) would wait on a fresh
            // handle no one cancels: it closes instead.
            None if w.is_draining() && buf.is_empty() => return Ok(None),
            None => {
                let read = iov::read_more_cancelable(stream, buf, w.idle_handle());
                match monoio::time::timeout(timeouts.idle_keepalive, read).await {
                    Ok(r) => r,
                    Err(_) => return Ok(None),
                }
            }
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                match monoio::time::timeout(wait, iov::read_more(stream, buf)).await {
                    Ok(r) => r,
                    Err(_) => return Err(GatewayError::HeadTimeout),
                }
            }
        };
        if !matches!(res, Ok(n) if n > 0) {
            // Closed, reset, or cancelled by a drain: no request to answer.
            return Ok(None);
        }
        head_deadline.get_or_insert_with(|| Instant::now() + timeouts.head_read);
    }
}

/// Answers one request; true when the connection may serve another.
async fn answer(w: &Rc<Worker>, state: &CoreState, client: &mut Client, buf: &mut BytesMut, head: RequestHead) -> bool {
    let started = Instant::now();
    let mut trace = Trace::new(w.recorder.next_id());
    client.request_id = Some(trace.id);
    client.rate = None;
    client.deadline = started + state.config.server.timeouts.request;
    client.head_only = head.method == Method::Head;
    // A draining worker closes every connection after its answer, and says
    // so, so that no client reuses a connection that is about to close.
    let keep_alive = head.keep_alive && !w.is_draining();
    let json = "application/json";
    let local = |status: u16, body: &'static [u8]| Local::Answer(status, Bytes::from_static(body));
    let mut front = proxy::Front::OpenAi;
    let answer = match (head.method, head.path()) {
        (Method::Post, b"/v1/chat/completions") => None,
        (Method::Post, b"/v1/messages") => {
            front = proxy::Front::Anthropic;
            None
        }
        (Method::Get | Method::Head, b"/healthz") => Some(local(200, b"{\"status\":\"ok\"}")),
        (Method::Get | Method::Head, b"/readyz") if w.is_draining() => Some(local(503, b"{\"status\":\"draining\"}")),
        // Still ready: keys under no budget or limit are served, and every
        // node is in the same state, so a 503 would only empty the pool.
        (Method::Get | Method::Head, b"/readyz") if w.cluster_refusing() => {
            Some(local(200, b"{\"status\":\"ready\",\"cluster\":\"refusing\"}"))
        }
        (Method::Get | Method::Head, b"/readyz") if w.cluster_degraded() => {
            Some(local(200, b"{\"status\":\"ready\",\"cluster\":\"degraded\"}"))
        }
        (Method::Get | Method::Head, b"/readyz") => Some(local(200, b"{\"status\":\"ready\"}")),
        (Method::Get | Method::Head, b"/v1/models") => Some(match authenticate(state, &head) {
            Ok(key) => Local::Answer(200, models_body(&state.config, key)),
            Err(e) => Local::Error(e),
        }),
        _ => Some(Local::Error(GatewayError::NoRoute)),
    };
    if let Some(answer) = answer {
        return answer_locally(client, buf, &head, keep_alive, answer, json).await;
    }
    // Authenticate before reading the body: an unknown client does not get
    // to make the gateway buffer megabytes.
    let key = match authenticate(state, &head) {
        Ok(key) => key,
        Err(e) => {
            refused(w, state, &mut trace, client, &e);
            return answer_locally(client, buf, &head, keep_alive, Local::Error(e), json).await;
        }
    };
    trace.key = Some(key);
    let limited = within_budget(w, state, key).and_then(|()| within_rate_limit(w, state, key, &trace, 0));
    client.rate = limited.as_ref().ok().copied().flatten().or_else(|| client.rate.take());
    if let Err(e) = limited {
        refused(w, state, &mut trace, client, &e);
        return answer_locally(client, buf, &head, keep_alive, Local::Error(e), json).await;
    }
    let body = match read_body(state, client, buf, &head, started).await {
        Ok(b) => b,
        Err(e) => {
            refused(w, state, &mut trace, client, &e);
            client.send_error(&e, true).await;
            return false;
        }
    };
    trace.bytes_in = body.len() as u64;
    // A budget nearly spent prices the request before it is sent; a
    // tokens-per-minute limit reserves its prompt and the most it may
    // generate, so the request that would cross a limit is the one refused.
    let estimate = Estimate::new();
    let reserved = affordable(w, state, key, &body, &estimate)
        .and_then(|held| Ok((held, reserve_tokens(w, state, key, &body, &trace)?)));
    let (held, reservation) = match reserved {
        Ok((held, (reservation, rate))) => {
            client.rate = rate.or(client.rate);
            (held, reservation)
        }
        Err(e) => {
            refused(w, state, &mut trace, client, &e);
            return client.send_error(&e, !keep_alive).await && keep_alive;
        }
    };
    let hold = match reserve_strict(w, state, key, &body, &estimate).await {
        Ok(h) => h,
        Err(e) => {
            refused(w, state, &mut trace, client, &e);
            return client.send_error(&e, !keep_alive).await && keep_alive;
        }
    };
    let deadline = started + state.config.server.timeouts.request;
    let inbound = proxy::Inbound { head: &head, keep_alive, deadline, front, reservation: reservation.as_ref() };
    let reusable = match proxy::chat_completions(state, key, client, inbound, body, &mut trace).await {
        Ok(end) => {
            trace.status = end.status;
            trace.first_byte_micros =
                end.first_write.map(|t| t.saturating_duration_since(started).as_micros().min(u32::MAX as u128) as u32);
            trace.bytes_out = end.body_bytes;
            trace.usage = end.usage;
            trace.end = end.end;
            end.client_reusable
        }
        Err(e) => {
            let close = e.closes_connection() || !keep_alive;
            tracing::debug!(error = %e, status = e.status(), "request failed");
            trace.status = e.status();
            trace.end = match e {
                GatewayError::Guardrail { .. } | GatewayError::GuardrailUnavailable { .. } => End::Blocked,
                _ if e.source() == crate::error::Source::Upstream => End::UpstreamFailed,
                _ => End::Rejected,
            };
            client.send_error(&e, close).await && !close
        }
    };
    w.recorder.record(&trace, state);
    w.stats.count(&trace, state);
    // Released in the same hand-off as the spend just counted.
    drop((hold, held));
    reusable
}

/// Records a request refused before anything was sent (a rate limit's
/// refusal carries its back-off hint to the answer).
fn refused(w: &Worker, state: &CoreState, trace: &mut Trace<'_>, client: &mut Client, e: &GatewayError) {
    if let GatewayError::RateLimited(r) = e {
        client.retry_after = Some(r.retry_after);
    }
    trace.status = e.status();
    trace.end = End::Rejected;
    w.recorder.record(trace, state);
    w.stats.count(trace, state);
}

/// The budget phase: the key's team and the key itself must be under their
/// hard limits, counting every core's spend as of the last merge plus this
/// core's since.
fn within_budget(w: &Worker, state: &CoreState, key: &tollgate_policy::VirtualKey) -> Result<(), GatewayError> {
    use tollgate_policy::budget::check;
    if w.cluster_refusing() && limited(state, key) {
        return Err(GatewayError::ClusterUnavailable);
    }
    let now = crate::unix_now().as_secs();
    use crate::stats::Owner;
    let soft =
        |owner: Owner, name: &dyn Fn() -> String, passed: bool, budget: &tollgate_policy::team::Budget, spend| {
            // Once per owner per day per core: the warning is for people (the
            // log, a counter, and the webhook when one is configured).
            if passed && w.soft_warning_due(owner, now) {
                let name = name();
                tracing::warn!("{name} has passed the soft threshold of its budget");
                w.stats.soft_threshold(owner);
                w.alert(soft_alert(&name, budget, spend, now));
            }
        };
    if let Some(team) = state.config.teams.get(key.team) {
        let name = || format!("team \"{}\"", team.name);
        let spend = w.spend(Owner::Team(key.team), now);
        let passed = check(name, &team.budget, spend, 0, now).map_err(GatewayError::OverBudget)?;
        soft(Owner::Team(key.team), &name, passed, &team.budget, spend);
    }
    let name = || format!("key \"{}\"", key.name);
    let spend = w.spend(Owner::Key(key.index), now);
    let passed = check(name, &key.budget, spend, 0, now).map_err(GatewayError::OverBudget)?;
    soft(Owner::Key(key.index), &name, passed, &key.budget, spend);
    Ok(())
}

/// Whether the key or its team is under a budget or a rate limit, which a
/// fail-closed cluster tier cannot enforce while degraded.
fn limited(state: &CoreState, key: &tollgate_policy::VirtualKey) -> bool {
    use tollgate_policy::team::is_limited;
    is_limited(&key.budget, &key.rate_limit)
        || state.config.teams.get(key.team).is_some_and(|t| is_limited(&t.budget, &t.rate_limit))
}

/// The budget phase again, once the body is known, and only when a budget
/// is nearly spent (under a tenth left): the request's estimated cost (its
/// prompt counted, plus its `max_tokens` or the default reserve, at the
/// model's price) must fit, so that a request that would cross a hard
/// limit is refused before it is sent rather than billed past it. The
/// estimate is then held as spend on this core until the request ends, so
/// that requests in flight together cannot cross it either.
fn affordable(
    w: &Rc<Worker>,
    state: &CoreState,
    key: &tollgate_policy::VirtualKey,
    body: &[u8],
    estimate: &Estimate,
) -> Result<Option<crate::worker::SpendHold>, GatewayError> {
    use crate::stats::Owner;
    use tollgate_policy::budget::{check, Spend};
    use tollgate_policy::team::Budget;
    let now = crate::unix_now().as_secs();
    let nearly = |budget: &Budget, spend: Spend| {
        [(budget.daily, spend.day), (budget.monthly, spend.month)]
            .iter()
            .any(|&(limit, spent)| limit.is_some_and(|l| l.saturating_sub(spent).saturating_mul(10) < l))
    };
    let team = state.config.teams.get(key.team);
    let team_spend = w.spend(Owner::Team(key.team), now);
    let key_spend = w.spend(Owner::Key(key.index), now);
    if !(team.is_some_and(|t| nearly(&t.budget, team_spend)) || nearly(&key.budget, key_spend)) {
        return Ok(None);
    }
    // A body or model the route phase refuses is reported there.
    let Some(estimate) = *estimate.get_or_init(|| estimate_cost(state, body)) else { return Ok(None) };
    if let Some(t) = team {
        check(|| format!("team \"{}\"", t.name), &t.budget, team_spend, estimate, now)
            .map_err(GatewayError::OverBudget)?;
    }
    check(|| format!("key \"{}\"", key.name), &key.budget, key_spend, estimate, now)
        .map_err(GatewayError::OverBudget)?;
    Ok(Some(w.hold_spend([Owner::Team(key.team), Owner::Key(key.index)], estimate)))
}

/// A request's estimated cost, computed at most once per request (counting
/// the prompt is the expensive part) by whichever phase needs it first.
type Estimate = std::cell::OnceCell<Option<tollgate_policy::team::MicroUsd>>;

/// A request's estimated cost: its prompt counted, plus its `max_tokens`
/// or the default reserve, at the price of its model's first target.
/// `None` with no price, or for a body or model the route phase refuses.
fn estimate_cost(state: &CoreState, body: &[u8]) -> Option<tollgate_policy::team::MicroUsd> {
    let fields = tollgate_protocol::openai::scan_request(body).ok()?;
    let model = fields.model.get(body);
    let (_, route) = state.config.routes.find(model)?;
    let price = route.price_of(route.targets.first())?;
    let encoding = tollgate_protocol::tokens::Encoding::for_model(model);
    let usage = crate::record::TokenUsage {
        prompt: tollgate_protocol::tokens::prompt_tokens(encoding, body),
        completion: tollgate_protocol::openai::max_output_tokens(body)
            .unwrap_or(tollgate_policy::ratelimit::DEFAULT_OUTPUT_RESERVE),
        cached: 0,
    };
    Some(usage.cost_at(price))
}

/// Strict budgets (with a cluster tier): the request's estimated cost is
/// reserved in Redis against the cluster's spend and every outstanding
/// reservation before it is sent. The hold releases the estimate when the
/// request ends. Without an answer from Redis, `on_stale` decides.
async fn reserve_strict(
    w: &Rc<Worker>,
    state: &CoreState,
    key: &tollgate_policy::VirtualKey,
    body: &[u8],
    estimate: &Estimate,
) -> Result<Option<crate::cluster::strict::StrictHold>, GatewayError> {
    use crate::cluster::strict::{Reserved, StrictOwner};
    use crate::stats::{Owner, OwnerName};
    let Some(strict) = w.strict() else { return Ok(None) };
    let team = state.config.teams.get(key.team).filter(|t| t.budget.strict);
    if team.is_none() && !key.budget.strict {
        return Ok(None);
    }
    let mut owners = Vec::with_capacity(2);
    if let Some(t) = team {
        owners.push(StrictOwner::new(Owner::Team(key.team), OwnerName::Team(t.name.clone()), &t.budget));
    }
    if key.budget.strict {
        owners.push(StrictOwner::new(Owner::Key(key.index), OwnerName::Key(key.name.clone()), &key.budget));
    }
    let now = crate::unix_now().as_secs();
    let estimate = estimate.get_or_init(|| estimate_cost(state, body)).unwrap_or(0);
    let hold_for = state.config.server.timeouts.request;
    match strict.reserve(w, &owners, estimate, hold_for, now).await {
        Reserved::Held(hold) => Ok(Some(hold)),
        Reserved::Refused { index, day, month } => {
            let spend = tollgate_policy::budget::Spend { day, month };
            let refused = match (owners.get(index).map(|o| o.owner), team) {
                (Some(Owner::Team(_)), Some(t)) => {
                    tollgate_policy::budget::check(|| format!("team \"{}\"", t.name), &t.budget, spend, estimate, now)
                }
                _ => tollgate_policy::budget::check(
                    || format!("key \"{}\"", key.name),
                    &key.budget,
                    spend,
                    estimate,
                    now,
                ),
            };
            // Redis and this check apply the same rule to the same figures.
            Err(refused.err().map_or(GatewayError::ClusterUnavailable, GatewayError::OverBudget))
        }
        // The hold releases whatever Redis may have reserved: at once when
        // refusing, at the request's end when admitting.
        Reserved::Unknown(hold, e) => {
            tracing::debug!(error = %e, "strict budget: no answer from Redis");
            if strict.fails_closed() {
                drop(hold);
                Err(GatewayError::ClusterUnavailable)
            } else {
                Ok(Some(hold))
            }
        }
    }
}

/// The webhook's JSON for a soft threshold passed.
fn soft_alert(
    owner: &str,
    budget: &tollgate_policy::team::Budget,
    spend: tollgate_policy::budget::Spend,
    now: u64,
) -> String {
    let mut out = bytes::BytesMut::new();
    out.extend_from_slice(b"{\"event\":\"budget.soft_threshold\",\"owner\":");
    tollgate_protocol::openai::write_json_string(&mut out, owner);
    let opt = |v: Option<u64>| v.map_or_else(|| "null".to_string(), |v| v.to_string());
    out.extend_from_slice(
        format!(
            ",\"threshold\":{},\"spent_today_micro_usd\":{},\"spent_this_month_micro_usd\":{},\"daily_limit_micro_usd\":{},\"monthly_limit_micro_usd\":{},\"ts\":{now}}}",
            f64::from(budget.soft_threshold_permille) / 1000.0,
            spend.day,
            spend.month,
            opt(budget.daily),
            opt(budget.monthly)
        )
        .as_bytes(),
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// The rate-limit phase: requests and tokens in the current UTC minute,
/// every core's as of the last merge plus this core's since (and its
/// requests in flight's reservations), against the team's and the key's
/// limits, with `reserve` tokens about to be used. With no reservation the
/// request is admitted (counted at once). `Ok(Some(headroom))` when a limit
/// applies: the answer's `x-ratelimit-*` headers.
fn within_rate_limit(
    w: &Worker,
    state: &CoreState,
    key: &tollgate_policy::VirtualKey,
    trace: &Trace<'_>,
    reserve: u64,
) -> Result<Option<tollgate_policy::ratelimit::Headroom>, GatewayError> {
    use crate::stats::Owner;
    use tollgate_policy::ratelimit::{check, minute_reset_secs, Headroom};
    let minute = trace.started_unix_ms / 60_000;
    let admitting = reserve == 0;
    let mut headroom = Headroom { reset_secs: minute_reset_secs(trace.started_unix_ms), ..Headroom::default() };
    let mut any = false;
    let mut limited = |owner: Owner, name: &dyn Fn() -> String, limit: &tollgate_policy::team::RateLimit| {
        if limit.requests_per_minute.is_none() && limit.tokens_per_minute.is_none() {
            return Ok(());
        }
        any = true;
        let used = w.minute_use(owner, minute);
        let tokens = used.tokens + w.reserved(owner);
        let result = check(name, limit, used.requests, tokens, reserve, trace.started_unix_ms);
        // After this request: one more request, `reserve` more tokens.
        headroom.tighten(limit, used.requests + u64::from(admitting), tokens + reserve);
        result.map_err(GatewayError::RateLimited)
    };
    if let Some(team) = state.config.teams.get(key.team) {
        limited(Owner::Team(key.team), &|| format!("team \"{}\"", team.name), &team.rate_limit)?;
    }
    limited(Owner::Key(key.index), &|| format!("key \"{}\"", key.name), &key.rate_limit)?;
    if admitting {
        w.stats.admit(key, minute);
    }
    Ok(any.then_some(headroom))
}

/// Reserves a request's tokens (prompt counted from the body, plus its
/// `max_tokens` or [`tollgate_policy::ratelimit::DEFAULT_OUTPUT_RESERVE`])
/// when the key or its team has a tokens-per-minute limit.
fn reserve_tokens(
    w: &Rc<Worker>,
    state: &CoreState,
    key: &tollgate_policy::VirtualKey,
    body: &[u8],
    trace: &Trace<'_>,
) -> Result<(Option<crate::worker::Reservation>, Option<tollgate_policy::ratelimit::Headroom>), GatewayError> {
    use crate::stats::Owner;
    let team_tpm = state.config.teams.get(key.team).and_then(|t| t.rate_limit.tokens_per_minute);
    if team_tpm.is_none() && key.rate_limit.tokens_per_minute.is_none() {
        return Ok((None, None));
    }
    let encoding = tollgate_protocol::tokens::Encoding::O200kBase;
    let output = tollgate_protocol::openai::max_output_tokens(body)
        .unwrap_or(tollgate_policy::ratelimit::DEFAULT_OUTPUT_RESERVE);
    let prompt = tollgate_protocol::tokens::prompt_tokens(encoding, body);
    let headroom = within_rate_limit(w, state, key, trace, prompt.saturating_add(output))?;
    let owners = [Owner::Team(key.team), Owner::Key(key.index)];
    let minute = trace.started_unix_ms / 60_000;
    let reservation = w.reserve(owners, [team_tpm, key.rate_limit.tokens_per_minute], minute, prompt, output);
    Ok((Some(reservation), headroom))
}

/// An answer the gateway makes without an upstream.
enum Local {
    Answer(u16, Bytes),
    Error(GatewayError),
}

/// Answers without reading the request body. The connection stays open only
/// if the whole body is already buffered (it is skipped); otherwise its
/// unread bytes would be taken for the next request.
async fn answer_locally(
    client: &mut Client,
    buf: &mut BytesMut,
    head: &RequestHead,
    keep_alive: bool,
    answer: Local,
    content_type: &str,
) -> bool {
    let body_skipped = match head.framing {
        BodyFraming::Empty => true,
        BodyFraming::Length(n) if buf.len() as u64 >= n => {
            let _ = buf.split_to(n as usize);
            true
        }
        _ => false,
    };
    let closes = matches!(&answer, Local::Error(e) if e.closes_connection());
    let close = !body_skipped || !keep_alive || closes;
    let sent = match answer {
        Local::Answer(status, body) => client.send(status, content_type, body, close).await,
        Local::Error(e) => client.send_error(&e, close).await,
    };
    sent && !close
}

/// Reads the whole request body (routing and, later, guardrails need all of
/// it). A Content-Length body is split off the read buffer without a copy.
async fn read_body(
    state: &CoreState,
    client: &mut Client,
    buf: &mut BytesMut,
    head: &RequestHead,
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
            if head.expect_continue && buf.len() < n && !client.send_continue().await {
                return Err(GatewayError::ClientClosed);
            }
            while buf.len() < n {
                buf.reserve((n - buf.len()).min(1 << 20));
                fill(&mut client.stream, buf, deadline).await?;
            }
            Ok(buf.split_to(n).freeze())
        }
        BodyFraming::Chunked => {
            if head.expect_continue && buf.is_empty() && !client.send_continue().await {
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
    let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let Ok(res) = monoio::time::timeout(wait, iov::read_more(stream, buf)).await else {
        return Err(GatewayError::BodyTimeout);
    };
    match res {
        Ok(n) if n > 0 => Ok(()),
        // An error keeps a half-received request from going upstream.
        _ => Err(GatewayError::ClientClosed),
    }
}
