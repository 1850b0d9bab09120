//! The upstream phase: the route's targets tried in the plan's order
//! ([`crate::proxy::fallback`]) until one answers, each attempt's request
//! rendered ([`crate::proxy::upstream_request`]) and sent
//! ([`crate::proxy::call`]), and the answer relayed as it comes
//! ([`crate::proxy::relay`]) or read on its way ([`crate::proxy::translate`]:
//! translated, guarded, counted, captured). The tokens the provider did
//! not report are estimated here, from the exchange's prompt count.

use std::time::Instant;

use tollgate_policy::VirtualKey;

use super::Exchange;
use crate::error::GatewayError;
use crate::proxy::fallback::Plan;
use crate::proxy::relay::{self, Answer, RelayEnd, RouteLabel};
use crate::proxy::upstream_request::{self, Translation};
use crate::proxy::{call, guard, stream, translate};
use crate::record::{micros, End, Trace};
use crate::respond::Client;
use crate::state::CoreState;

/// The upstream phase: tries the route's targets in the plan's order until
/// one answers, and relays that answer. An `Err` means no byte of an
/// answer has reached the client yet, so the pipeline can still answer
/// with an error status.
pub async fn forward(
    ex: &mut Exchange<'_>,
    state: &CoreState,
    cut: &crate::cut::Cut,
    client: &mut Client,
) -> Result<RelayEnd, GatewayError> {
    let key = ex.key()?;
    let Exchange { head, front, keep_alive, deadline, trace, body, routed, prompt, holds, reply, cache, turn, .. } = ex;
    // A request the cache missed keeps its answer as it is written; so
    // does a Responses turn the gateway keeps.
    let mut keep = cache.as_deref_mut().map(|p| &mut p.kept).or(turn.as_deref_mut());
    let (head, front, keep_alive, deadline) = (&*head, *front, *keep_alive, *deadline);
    let routed = routed.as_ref().ok_or(GatewayError::NoRoute)?;
    // Embeddings answer with vectors: no text to guard, classify or
    // capture.
    let text_answer = front != crate::proxy::Front::Embeddings;
    let answer_guard =
        guard::for_team(&state.config, key.team).map(|(_, g)| g).filter(|g| g.responses).filter(|_| text_answer);
    // A profile whose classifiers check answers: JSON answers are read
    // whole and asked about.
    let answer_profile =
        state.config.team_profile(key.team).filter(|p| p.classifiers.iter().any(|c| c.answers)).filter(|_| text_answer);
    // The answer is captured where the prompt was (the team captures).
    let capture_guard = state.config.capture_guard.as_deref().filter(|_| text_answer && trace.capture.is_some());
    let routing = &state.config.routing;
    let breakers = &state.breakers[routed.index];
    // Affinity costs one hash of the body's head, made only where a tier
    // of equal priorities has a choice to make.
    let route = routed.route;
    let choice = route.affinity
        && route.targets.iter().any(|t| route.targets.iter().filter(|o| o.priority == t.priority).count() > 1);
    let session = choice.then(|| crate::proxy::fallback::session_of(head, body));
    let mut plan = Plan::for_session(route, &state.rng, session);
    let mut last_error = None;
    // An attempt that failed after its request was written: billed its
    // prompt when another attempt goes out, or when the phase ends with an
    // error that is not that attempt's (the last attempt's own failure is
    // billed by `finish`, as the request's own usage). Billed at the top
    // of the next turn of the loop, it was billed twice where that turn
    // then sent nothing: the drain's cut, a back-off past the deadline, a
    // target too dear for a ceiling (found by a review).
    let mut unanswered: Option<usize> = None;
    let bill_unanswered = async |unanswered: &mut Option<usize>, trace: &mut Trace| {
        // A token count is free, asked or answered.
        if let Some(before) = unanswered.take().filter(|_| front != crate::proxy::Front::CountTokens) {
            let usage = super::admit::prompt_only(routed, prompt.tokens_in_steps(body).await, body);
            let cost = routed.route.price_of(routed.route.targets.get(before)).map_or(0, |p| usage.cost_at(p));
            trace.unanswered_micro = trace.unanswered_micro.saturating_add(cost);
        }
        trace.with_provider = None;
    };
    while let Some((t, backoff)) = plan.next(breakers, routing, Instant::now(), &state.rng) {
        if cut.fired() {
            // The drain's time is up: no new attempt starts.
            last_error = Some(GatewayError::Draining);
            break;
        }
        if Instant::now() >= deadline {
            // The request's own time is up: no target is to blame. An
            // attempt that went out before is billed by `finish`, as the
            // last.
            let sent = unanswered.is_some();
            last_error = Some(GatewayError::UpstreamTimeout { provider: routed.route.name.clone(), sent });
            break;
        }
        if !backoff.is_zero() {
            if Instant::now() + backoff >= deadline {
                break;
            }
            monoio::time::sleep(backoff).await;
            // Time spent waiting to retry is the upstream's doing, not the
            // gateway's: it is kept out of the gateway's added latency.
            trace.retry_micros = trace.retry_micros.saturating_add(micros(backoff));
        }
        let target = &routed.route.targets[t];
        let upstream = &state.upstreams[target.provider];
        if front == crate::proxy::Front::CountTokens && upstream.kind != tollgate_policy::ProviderKind::Anthropic {
            // Only Anthropic counts a Messages request's tokens: for any
            // other target the gateway answers with its own count (the
            // target model's encoding, as it estimates prompts), free.
            let mut json = bytes::BytesMut::with_capacity(32);
            json.extend_from_slice(b"{\"input_tokens\":");
            json.extend_from_slice(itoa::Buffer::new().format(prompt.tokens(body)).as_bytes());
            json.extend_from_slice(b"}");
            let body_bytes = json.len() as u64;
            let sent = client.send(reply, 200, "application/json", json.freeze(), !keep_alive).await;
            let mut end = RelayEnd::new(200);
            end.end = if sent { End::Completed } else { End::ClientGone };
            end.client_reusable = sent && keep_alive;
            end.body_bytes = body_bytes;
            return Ok(end);
        }
        // A traced request tells the provider which attempt calls it.
        let traceparent =
            trace.otel.filter(|c| c.sampled()).map(|c| c.traceparent(c.child(trace.attempt_count as u64)));
        // A token count is free: no ceiling to keep (nor a prompt to refuse).
        let cap = if front == crate::proxy::Front::CountTokens {
            Ok((None, false))
        } else {
            output_cap(state, key, (routed, front), target, (body, prompt), holds.reserve_is_limit)
        };
        let cap = match cap {
            Ok((cap, varies)) => {
                trace.cap_varies = varies;
                cap
            }
            // Too dear at this target: another may fit (a cheaper one, or
            // one with no price). Refused only where none does, and an
            // outage met first is the answer (found by a review).
            Err(e @ GatewayError::PromptOverCeiling { .. }) => {
                plan.exclude(t);
                if last_error.is_none() {
                    last_error = Some(e);
                }
                continue;
            }
            Err(e) => {
                bill_unanswered(&mut unanswered, trace).await;
                return Err(e);
            }
        };
        let built = upstream_request::build(
            client,
            head,
            body,
            &routed.fields,
            upstream_request::Attempt { target, upstream, cap },
            front,
            traceparent.as_ref().map(|t| &t[..]),
        );
        let (parts, translation) = match built {
            Ok(built) => built,
            Err(e) => {
                bill_unanswered(&mut unanswered, trace).await;
                return Err(e);
            }
        };
        bill_unanswered(&mut unanswered, trace).await;
        let attempt_started = Instant::now();
        trace.with_provider = Some(t as u8);
        // Each IO step's state machine is boxed where it is made, so that
        // this one (and every future that awaits it, up to the
        // connection's) stays small: a future is moved whole, used or
        // not, each time it is made and awaited.
        let outcome = crate::boxed::boxed(|| call::call(state, upstream, parts.as_slice(), deadline, cut)).await;
        trace.attempt(t, attempt_started, outcome.as_ref().map(|(_, r)| r.status).map_err(GatewayError::code));
        // An answer is being read, or a failure after the request went out
        // is billed later (`unanswered`, or `finish` for the last, as is
        // the drain's cut of the wait): the provider has it. Otherwise it
        // never had it, or refused it unread (401, 403, 429, a status to
        // fall back on), as the bill says.
        let answered = matches!(&outcome, Ok((_, r)) if !matches!(r.status, 401 | 403 | 407 | 429));
        let billed_later = outcome.as_ref().is_err_and(|e| e.sent_upstream() || matches!(e, GatewayError::Draining));
        if !answered && !billed_later {
            trace.with_provider = None;
        }
        // A provider at its rate limit (or overloaded) says when to come
        // back: this core sends it nothing until then.
        if let Some(wait) = outcome.as_ref().ok().and_then(|(_, r)| retry_after(r)) {
            breakers[t].rest(Instant::now(), wait, routing);
        }
        match outcome {
            // The provider refused the gateway's own credentials (a key
            // revoked or rotated, an account cut off): no tenant's doing,
            // so its answer, whose message shows part of the key and sends
            // tenants to rotate theirs, is never relayed (found by a
            // review). Another target may do better; after the last, the
            // gateway's own 502.
            // Not charged to the target's breaker: a tenant can provoke a
            // 403 (a file it may not read, a project header it forges), and
            // five would open the breaker for every tenant (found by a
            // review). The warning, and the records' attempts, are the
            // operator's to act on.
            Ok((conn, response)) if matches!(response.status, 401 | 403 | 407) => {
                tracing::warn!(provider = %upstream.name, status = response.status, "the provider refused the gateway's credentials");
                drop(conn);
                last_error =
                    Some(GatewayError::UpstreamStatus { provider: upstream.name.clone(), status: response.status });
            }
            Ok((conn, response))
                if route
                    .fallback_on_status
                    .as_ref()
                    .unwrap_or(&routing.fallback_on_status)
                    .contains(&response.status)
                    && plan.has_more(breakers, routing, Instant::now()) =>
            {
                // Another target may do better; this answer is dropped with
                // its connection (its body is unread).
                if response.status != 429 && plan.charge(t) {
                    breakers[t].failure(Instant::now(), routing);
                }
                trace.retry_micros = trace.retry_micros.saturating_add(micros(attempt_started.elapsed()));
                tracing::debug!(provider = %upstream.name, status = response.status, "falling back");
                // Not billed: the provider failed it.
                trace.with_provider = None;
                drop(conn);
                last_error =
                    Some(GatewayError::UpstreamStatus { provider: upstream.name.clone(), status: response.status });
            }
            // The provider's rate limit, with no target left to try: its
            // message speaks for the account every tenant shares (OpenAI's
            // names the organisation and its whole use, as the headers
            // the relay drops do), so the tenant gets the gateway's own
            // 429, with the provider's wait where it gave one (found by a
            // review).
            Ok((conn, response)) if response.status == 429 => {
                drop(conn);
                last_error = Some(match retry_after(&response) {
                    Some(wait) => GatewayError::UpstreamResting {
                        model: routed.route.name.clone(),
                        retry_after_s: wait.as_secs_f64().ceil() as u64,
                    },
                    None => GatewayError::UpstreamStatus { provider: upstream.name.clone(), status: 429 },
                });
                break;
            }
            Ok((mut conn, response)) => {
                trace.served_by = Some(t as u8);
                #[cfg(debug_assertions)]
                crate::fault::inject("after-upstream", body);
                trace.upstream_micros = micros(attempt_started.elapsed());
                if response.status >= 500 {
                    if plan.charge(t) {
                        breakers[t].failure(Instant::now(), routing);
                    }
                } else {
                    breakers[t].success();
                }
                let route = RouteLabel {
                    provider: &upstream.name,
                    model: &target.upstream_model,
                    key_header: upstream.key_header.as_deref(),
                };
                let answer = Answer {
                    request: head,
                    front,
                    keep_alive,
                    deadline,
                    route,
                    reply: &*reply,
                    cut,
                    started: trace.started,
                    body,
                    stored_input: routed.fields.stored_input,
                    reasons: target.reasons,
                };
                let end = match (translation, answer_guard) {
                    // Streams are always read (token counts as they pass);
                    // JSON answers go as they come unless guarded.
                    (Translation::None, None)
                        if !parts.usage_asked
                            && parts.through.is_none()
                            && !routed.fields.stream
                            && capture_guard.is_none()
                            && answer_profile.is_none() =>
                    {
                        // The answer cache keeps the body as the tap reads it.
                        crate::boxed::boxed(|| relay::relay(client, &mut conn, response, &answer, keep.as_deref_mut()))
                            .await
                    }
                    (translation, answer_guard) => {
                        let hits = &mut trace.guard_hits;
                        let classifiers = answer_profile.map(|profile| crate::proxy::classify::AnswerClassifiers {
                            state,
                            profile,
                            team: key.team,
                            classified: &mut trace.classified,
                        });
                        let capture = capture_guard.zip(trace.capture.as_deref_mut().map(|c| &mut c.answer));
                        let strip_usage = parts.usage_asked;
                        // Ceilings end streams only (a JSON answer is not cut):
                        // a JSON request does not count its prompt for one.
                        let ceiling =
                            if routed.fields.stream { ceiling(state, key, routed, target, body, prompt) } else { None };
                        let inspect = translate::Inspect {
                            translation,
                            through: parts.through,
                            guard: answer_guard,
                            scan_room: &state.scan_room,
                            hits,
                            strip_usage,
                            ceiling,
                            capped_upstream: cap.is_some(),
                            reservation: holds.tokens.as_ref(),
                            passed: &trace.completion_passed,
                            capture,
                            classifiers,
                            keep: keep.as_deref_mut(),
                        };
                        crate::boxed::boxed(|| {
                            translate::relay_translated(client, &mut conn, response, &answer, inspect)
                        })
                        .await?
                    }
                };
                if end.upstream_reusable {
                    upstream.give_back(conn);
                }
                let mut end = end;
                // An error status relayed is an answer the upstream failed,
                // not a completed one.
                if end.status >= 500 && end.end == End::Completed {
                    end.end = End::UpstreamFailed;
                }
                // A server that `echo`es the request's last message (vLLM's
                // chat completions, to continue it) answers it back as
                // content its count does not bill: such an answer's count
                // is not judged by its text (found by a review). Any
                // `"echo"` in the body, a key or not, errs that way (looked
                // for only where an answer was counted: rarely).
                if end.json_answer && end.completion_counted > 0 && memchr::memmem::find(body, b"\"echo\"").is_some() {
                    end.completion_counted = 0;
                }
                set_aside_unbelievable(&mut end, trace);
                // A prompt of 0 beside an output is none reported (an
                // Anthropic-compatible server that gives the input only in
                // a last event the client's leaving cut off, or never):
                // no prompt is empty.
                if let Some(u) = end.usage.as_mut().filter(|u| u.prompt == 0 && u.completion > 0) {
                    u.prompt_unreported = true;
                }
                // A report without its prompt bills the prompt counted
                // beside its output (`estimate_usage`), whatever the status
                // (an answer past what a relay keeps is refused, and billed
                // what its provider reported); but a token count is free,
                // and an error that reports no output is no bill.
                if end.usage.is_some_and(|u| {
                    u.prompt_unreported
                        && (front == crate::proxy::Front::CountTokens || (end.status >= 300 && u.completion == 0))
                }) {
                    end.usage = None;
                }
                let unreported = end.usage.is_some_and(|u| u.prompt_unreported);
                if (unreported || (end.usage.is_none() && end.status < 300)) && !cut.fired() {
                    // The estimate below bills the prompt counted: a large
                    // one is counted in steps (at once after the drain's
                    // cut, when the worker is about to close).
                    prompt.tokens_in_steps(body).await;
                }
                // A token count is free: its answer has no usage, and none
                // is made up for it.
                if front != crate::proxy::Front::CountTokens {
                    let asked = super::admit::asked_tier(routed, body);
                    // Told by the answer, not the request: a stream asked
                    // for may come back JSON. Embeddings answer vectors,
                    // not text: their bytes are no output. A JSON answer's estimate is held to the
                    // most the request could generate (its output limit,
                    // or the gateway's, for each of its answers): bytes of
                    // log probabilities are no tokens either.
                    let text_json = (end.json_answer && front != crate::proxy::Front::Embeddings).then(|| {
                        let limit = match (cap, routed.fields.max_tokens) {
                            (Some(a), Some(b)) => a.min(b),
                            (a, b) => a.or(b).unwrap_or(u64::MAX),
                        };
                        limit.saturating_mul(routed.fields.choices.max(1))
                    });
                    estimate_usage(&mut end, || prompt.tokens(body), (asked, text_json), trace);
                }
                return Ok(end);
            }
            Err(e) => {
                // A failure caused by the request's deadline, not by the
                // target, leaves the target's breaker alone.
                if Instant::now() < deadline && plan.charge(t) {
                    breakers[t].failure(Instant::now(), routing);
                }
                trace.retry_micros = trace.retry_micros.saturating_add(micros(attempt_started.elapsed()));
                tracing::debug!(provider = %upstream.name, error = %e, "attempt failed");
                if matches!(e, GatewayError::UpstreamTimeout { .. }) {
                    plan.exclude(t);
                }
                let again = e.falls_back();
                if e.sent_upstream() {
                    unanswered = Some(t);
                }
                last_error = Some(e);
                if !again {
                    break;
                }
            }
        }
    }
    if plan.budget_denied {
        tracing::debug!(model = %routed.route.name, "retry budget spent: no retry");
    }
    Err(last_error.unwrap_or_else(|| {
        // No attempt went out: every target is resting at its upstream's
        // request, or its breaker is open.
        let now = Instant::now();
        let rest = breakers.iter().map(|b| b.resting(now)).collect::<Option<Vec<_>>>();
        match rest.and_then(|r| r.into_iter().min()) {
            Some(wait) => GatewayError::UpstreamResting {
                model: routed.route.name.clone(),
                retry_after_s: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            },
            None => GatewayError::Unavailable { model: routed.route.name.clone() },
        }
    }))
}

/// How long a 429 or 503 asks the client to wait: OpenAI's
/// `retry-after-ms` (milliseconds) or `retry-after` in whole seconds (an
/// HTTP date is not read: no provider sends one). `None` for other
/// statuses, or nothing readable.
fn retry_after(response: &tollgate_protocol::http1::ResponseHead) -> Option<std::time::Duration> {
    use std::time::Duration;
    if !matches!(response.status, 429 | 503) {
        return None;
    }
    let number = |name: &[u8]| {
        let v = std::str::from_utf8(response.header(name)?).ok()?.trim();
        v.parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0)
    };
    number(b"retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms.min(3.6e6) / 1000.0))
        .or_else(|| number(b"retry-after").map(|s| Duration::from_secs_f64(s.min(3600.0))))
}

/// Which usage counts: the provider's, each count at the largest value
/// it reported (`Reported::merge`), unless it cannot be believed:
/// - a count that is not a whole number or is past 2^32 (the relays set
///   `usage_rejected`): the whole report is set aside, and the request is
///   billed as if none had come;
/// - in an answer that reached its end ([`RelayEnd::whole`]: completed,
///   or read to its end after the client left), a completion under half of what the
///   gateway counted passing (plus a few tokens), or counted in a JSON
///   answer's texts where its report is low beside their bytes
///   (`stream::json_answer_text_tokens`): tokenizers differ by less than
///   that; an upstream that reports 0 or 1 after hundreds of tokens, or an
///   Anthropic stream whose `message_delta` never came (leaving
///   `message_start`'s 1), does not. The completion is the gateway's count.
///
/// Either way the record says `"rejected": true` and `"estimated": true`.
/// (A stream cut short is not judged here: its provider never sent a final
/// count, and [`estimate_usage`] takes the gateway's.)
fn set_aside_unbelievable(end: &mut RelayEnd, trace: &mut Trace<'_>) {
    if end.usage_rejected {
        end.usage = None;
        trace.usage_rejected = true;
        return;
    }
    // A JSON answer's output is counted only when it was read whole (its
    // usage is the provider's last word), whether or not the client stayed
    // for it or a guard withheld it.
    let (counted, whole) = (end.completion_counted, end.whole() || (end.json_answer && end.completion_counted > 0));
    if let Some(u) = end.usage.as_mut().filter(|_| whole) {
        if counted > u.completion.saturating_mul(2).saturating_add(8) {
            u.completion = counted;
            trace.usage_rejected = true;
            trace.usage_estimated = true;
        }
    }
}

/// Tokens for an answer the provider did not count to the end: the client
/// went away, the upstream failed, a guardrail ended it, or the provider
/// sent no usage, or one without its prompt. The prompt is counted from
/// the request and the completion from the deltas that passed (or the
/// provider's where it reported one); the record says so.
/// A usage the gateway makes is at the tier the request asked for: a
/// priority request cut short is billed at priority.
///
/// A JSON answer of text (`text_json`: the most it may hold) is not
/// counted as it passes, as a stream's deltas are: without a usage to
/// believe (none sent, one set aside, or one the relay could not read),
/// its completion is a token for every three body bytes the client got,
/// up to that most, as [`crate::proxy::translate`]'s `untranslatable`
/// bills. Keys and punctuation count too, so English prose is billed
/// about a third over and CJK about as it is; before, such
/// an answer was billed its prompt alone, and an upstream that sent 20K
/// tokens with `"completion_tokens": 20000.0` (or no usage) gave them free
/// (found by a review).
fn estimate_usage(
    end: &mut RelayEnd,
    mut prompt: impl FnMut() -> u64,
    (asked, text_json): (tollgate_policy::prices::Tier, Option<u64>),
    trace: &mut Trace<'_>,
) {
    if let Some(u) = end.usage.as_mut().filter(|u| u.prompt_unreported) {
        // An output reported without its input: the prompt is counted,
        // never less than what the report gave of it (the cache's shares,
        // Gemini's tool-use prompt).
        u.prompt = prompt().max(u.prompt).max(u.cached.saturating_add(u.cache_write));
        u.prompt_unreported = false;
        trace.usage_estimated = true;
    }
    if end.status >= 300 {
        return;
    }
    let whole = end.whole();
    match &mut end.usage {
        Some(u) if !whole && !end.json_answer && end.completion_counted > u.completion => {
            // A stream cut short: the provider's final count never came (a
            // JSON answer with a usage was read whole: its count is judged
            // by `set_aside_unbelievable`, with the stream's margin).
            u.completion = end.completion_counted;
            trace.usage_estimated = true;
        }
        Some(_) => {}
        // No usage at all (a stream cut short, or an answer that reports
        // none, or none that can be believed): the prompt, counted, and
        // what was counted of the answer are billed, marked estimated.
        None => {
            let passed = text_json.map_or(0, |most| (end.body_bytes / 3).min(most));
            end.usage = Some(crate::record::TokenUsage {
                prompt: prompt(),
                completion: end.completion_counted.max(passed),
                tier: asked,
                ..Default::default()
            });
            trace.usage_estimated = true;
        }
    }
}

/// The most the provider may generate for the request under the team's
/// and the key's ceilings on one request, sent as the request's own
/// output limit (`upstream_request`): the output-token ceiling, and what
/// the cost ceiling leaves once the prompt is paid for at the target's
/// price. The provider stops there, reasoning it does not stream
/// included; without it a model that reasons could spend many times the
/// ceiling before its first visible token, which the gateway's own cut
/// (counting what passes) never sees.
///
/// The prompt is priced at its count where it was made, else at its
/// upper bound, which errs low on the answer; where that bound would
/// lower the limit below what the request asks (its `max_tokens`, or the
/// reserve), a small prompt is counted (a large one was counted in steps
/// then: `admit::count_large_prompt`). At least one token: providers
/// refuse a limit of 0, and the gateway's cut ends such an answer at its
/// first event. A request for `n` answers (`best_of`) gets the `n`th part
/// for each, and is refused where that is less than a token. With it,
/// whether the limit is the moment's ([`crate::record::Trace::cap_varies`]).
fn output_cap(
    state: &CoreState,
    key: &VirtualKey,
    (routed, front): (&crate::pipeline::Routed, crate::proxy::Front),
    target: &tollgate_policy::Target,
    (body, prompt): (&[u8], &crate::pipeline::Prompt),
    held: bool,
) -> Result<(Option<u64>, bool), GatewayError> {
    let (mut output, cost) = state.config.request_ceilings(key);
    let ceiling = output;
    // Under a strict budget, a request that names no output limit its API
    // reads goes with the reserve its hold was made at
    // (`admit::output_reserve`: 4,096 tokens an answer to Anthropic, as
    // its translation writes, else 1,024) as its limit: without one, the
    // provider could write on to the model's maximum and pass the budget
    // that the hold was to keep (found by a review: a strict budget near
    // its end was passed by leaving `max_tokens` out). So does a request
    // admitted near a budget's end (`held`: its estimate, made at the same
    // reserve, is held as spend; `admit::affordable`): without the limit,
    // one request left out `max_tokens` and a model that reasoned at
    // length took a budget with a tenth left to one and a half times its
    // limit (found by a review). So does one with under a tenth of a run's
    // limit left (`RunHold::near_end`). A ceiling on output tokens, where
    // the team or key has one, decides instead.
    let strict = key.budget.strict || state.config.teams.get(key.team).is_some_and(|t| t.budget.strict);
    if (strict || held)
        && output.is_none()
        && crate::proxy::upstream_request::limit_read(body, &routed.fields, front).is_none()
    {
        let anthropic = front == crate::proxy::Front::Anthropic
            || state
                .config
                .providers
                .get(target.provider)
                .is_some_and(|p| p.kind == tollgate_policy::ProviderKind::Anthropic);
        output = Some(super::admit::default_output(anthropic).saturating_mul(routed.fields.choices.max(1)));
    }
    let by_cost = cost.and_then(|limit| {
        let price = routed.route.price_of(Some(target))?.at_tier(super::admit::asked_tier(routed, body));
        let asked = routed.fields.max_tokens.unwrap_or(tollgate_policy::ratelimit::DEFAULT_OUTPUT_RESERVE);
        let prompt_now = prompt.get().unwrap_or_else(|| prompt.bound(body, routed.fields.text_only));
        // Whether the body marks the provider's cache is searched for only
        // where it can change the limit: not when, even with every prompt
        // token priced as written to the cache, the cost leaves the output
        // ceiling whole (which then decides), or, without one, each answer
        // at least the body's own limit (which then stands).
        // The prompt alone is judged at what its tokens are known to cost
        // (the text input rate, the long context's past its threshold),
        // not at the dearest rate one may cost: refusing a prompt for a
        // cost it does not have was worse than the one token it got
        // before (found by a review).
        let base = price;
        let dearest = price.before_answer(|| true);
        let choices = routed.fields.choices.max(1);
        let binds_at_dearest =
            affordable(limit, prompt_now, dearest).is_some_and(|n| match (output, routed.fields.max_tokens) {
                (Some(ceiling), _) => n < ceiling,
                (None, Some(own)) => n / choices < own.max(1),
                (None, None) => true,
            });
        let price = if binds_at_dearest {
            price.before_answer(|| {
                super::admit::may_write_cache(state.config.providers.get(target.provider), prompt, body)
            })
        } else {
            dearest
        };
        let at_bound = affordable(limit, prompt_now, price);
        // Counted where the bound would lower the limit, or where the
        // prompt may cost more than the ceiling by itself.
        let small = prompt.get().is_none() && body.len() <= tollgate_protocol::tokens::STEP_BYTES;
        let count = small && (at_bound.is_some_and(|n| n < asked) || prompt_over(limit, prompt_now, base));
        let (n, counted) = if count {
            let counted = prompt.tokens(body);
            (affordable(limit, counted, price), Some(counted))
        } else {
            (at_bound, prompt.get())
        };
        Some((n, counted.filter(|&c| prompt_over(limit, c, base)).map(|c| (c, limit))))
    });
    // A prompt that costs more than the ceiling before any answer is
    // refused: sent with one output token it was billed in full (found
    // by a review: a 1M-token prompt under a $0.05 ceiling cost dollars).
    // Only on a count (a large prompt near its ceiling is counted in
    // steps before, `admit::count_large_prompt`), never on the bound.
    if let Some((_, Some((tokens, limit)))) = by_cost {
        return Err(GatewayError::PromptOverCeiling { tokens, limit });
    }
    let by_cost = by_cost.map(|(n, _)| n);
    let total = match by_cost {
        // No price for output: the cost ceiling limits no token.
        Some(None) | None => output,
        Some(Some(n)) => Some(output.map_or(n, |o| o.min(n))),
    };
    // Each of the `n` answers asked may generate up to the limit.
    let choices = routed.fields.choices.max(1);
    match total {
        Some(cap) if choices > cap.max(1) => Err(GatewayError::ChoicesOverCeiling { choices, cap }),
        total => {
            let cap = total.map(|n| (n / choices).max(1));
            // The limit written is the moment's where it is not the
            // ceiling's and is below the body's own (which then decides).
            let varies = total != ceiling
                && cap.is_some_and(|c| {
                    crate::proxy::upstream_request::limit_read(body, &routed.fields, front).is_none_or(|own| c < own)
                });
            Ok((cap, varies))
        }
    }
}

/// The most output tokens `limit` micro-dollars pays for after `prompt`
/// tokens at `price` (as it stands before the answer,
/// `Price::before_answer`), as `TokenUsage::cost_at` rounds (up, to
/// whole micro-dollars): the largest count whose cost is not past the
/// limit (`Ceiling::crossed`), at the long context's rates for a prompt
/// within a quarter of its threshold (`Price::for_counted_prompt`);
/// `Some(0)` too where the prompt alone is past it
/// ([`prompt_over`] tells them apart). `None` when output is free.
fn affordable(limit: u64, prompt: u64, price: tollgate_policy::config::Price) -> Option<u64> {
    let price = price.for_counted_prompt(prompt);
    if price.output_per_mtok == 0 {
        return None;
    }
    // cost = ceil((prompt * input + n * output) / 1e6) <= limit
    //   <=> prompt * input + n * output <= limit * 1e6
    let room = limit as u128 * 1_000_000;
    let spent = prompt as u128 * price.input_per_mtok as u128;
    let n = room.saturating_sub(spent) / price.output_per_mtok as u128;
    Some(u64::try_from(n).unwrap_or(u64::MAX))
}

/// Whether `prompt` tokens alone cost more than `limit` at `price` as a
/// record prices them (the long context's rates past its threshold), with
/// no output at all.
fn prompt_over(limit: u64, prompt: u64, price: tollgate_policy::config::Price) -> bool {
    crate::record::TokenUsage { prompt, ..Default::default() }.cost_at(price) > limit
}

/// The tighter of the team's and the key's ceilings on one request.
fn ceiling(
    state: &CoreState,
    key: &VirtualKey,
    routed: &crate::pipeline::Routed,
    target: &tollgate_policy::Target,
    body: &bytes::Bytes,
    prompt: &crate::pipeline::Prompt,
) -> Option<stream::Ceiling> {
    let (route, text_only) = (routed.route, routed.fields.text_only);
    let (output, cost) = state.config.request_ceilings(key);
    if output.is_none() && cost.is_none() {
        return None;
    }
    let cost = cost.and_then(|limit| {
        let price = route.price_of(Some(target))?.at_tier(super::admit::asked_tier(routed, body));
        Some((
            limit,
            stream::PromptTokens::new(
                prompt.bound(body, text_only),
                prompt.get(),
                body.clone(),
                prompt.encoding,
                prompt.stored,
            )
            .marks_known(prompt.marks_cache_known()),
            price,
            stream::CacheWrites::of(state.config.providers.get(target.provider)),
        ))
    });
    Some(stream::Ceiling { output_tokens: output.unwrap_or(u64::MAX), cost })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{End, RequestId, TokenUsage};

    /// The output a cost ceiling leaves is the most whose cost, as a
    /// record prices it, stays within the limit: one token more crosses
    /// it (`Ceiling::crossed`), across limits, prompts and prices, with
    /// and without a long-context tier.
    #[test]
    fn the_output_a_cost_ceiling_leaves_is_exactly_what_it_pays_for() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for _ in 0..20_000 {
            // Half the prices have a long-context tier, which the prompts
            // pass about half the time.
            let long_context = (next(2) == 0).then(|| tollgate_policy::config::LongContext {
                above_tokens: next(300_000),
                input_per_mtok: next(40_000_000),
                output_per_mtok: 1 + next(120_000_000),
                ..Default::default()
            });
            let price = tollgate_policy::config::Price {
                input_per_mtok: next(20_000_000),
                output_per_mtok: 1 + next(80_000_000),
                long_context,
                ..Default::default()
            };
            let (limit, prompt) = (next(2_000_000), next(300_000));
            let n = affordable(limit, prompt, price).expect("priced output");
            let cost = |completion| {
                TokenUsage { prompt, completion, ..Default::default() }.cost_at(price.for_counted_prompt(prompt))
            };
            if cost(0) <= limit {
                assert!(cost(n) <= limit && cost(n + 1) > limit, "{limit} {prompt} {price:?}: {n}");
            } else {
                assert_eq!(n, 0, "the prompt alone crosses it");
            }
        }
        let free = tollgate_policy::config::Price { output_per_mtok: 0, ..Default::default() };
        assert_eq!(affordable(10, 10, free), None);
    }

    fn ended(usage: Option<TokenUsage>, counted: u64, end: End) -> RelayEnd {
        let mut e = RelayEnd::new(200);
        e.usage = usage;
        e.completion_counted = counted;
        e.end = end;
        e
    }

    /// Which usage counts, case by case.
    #[test]
    fn unbelievable_usage_is_set_aside() {
        let id = RequestId { epoch: 1, worker: 0, seq: 1 };
        let usage = |prompt, completion| Some(TokenUsage { prompt, completion, ..Default::default() });
        // (reported, counted, end) -> (billed completion, rejected)
        let cases = [
            // Believed: the provider's count, above or near the gateway's.
            (usage(12, 600), 400, End::Completed, Some(600), false),
            (usage(12, 300), 400, End::Completed, Some(300), false),
            // An Anthropic stream without message_delta (1 from
            // message_start), or an upstream reporting 0: the count.
            (usage(12, 1), 400, End::Completed, Some(400), true),
            (usage(12, 0), 400, End::Completed, Some(400), true),
            // A few tokens of difference on a short answer stand.
            (usage(12, 0), 8, End::Completed, Some(0), false),
            // A stream cut short is estimate_usage's, not judged here.
            (usage(12, 1), 400, End::ClientGone, Some(1), false),
        ];
        for (i, (reported, counted, end, billed, rejected)) in cases.into_iter().enumerate() {
            let mut e = ended(reported, counted, end);
            let mut trace = Trace::new(id);
            set_aside_unbelievable(&mut e, &mut trace);
            assert_eq!(e.usage.map(|u| u.completion), billed, "case {i}");
            assert_eq!(e.usage.map(|u| u.prompt), Some(12), "case {i}: the prompt stays the provider's");
            assert_eq!(trace.usage_rejected, rejected, "case {i}");
        }
        // A count that could not be read: nothing of the report is kept.
        let mut e = ended(None, 5, End::Completed);
        e.usage_rejected = true;
        let mut trace = Trace::new(id);
        set_aside_unbelievable(&mut e, &mut trace);
        assert!(e.usage.is_none() && trace.usage_rejected);
    }

    /// A JSON answer of text without a usage to believe bills a token for
    /// every three bytes the client got (it was billed its prompt alone);
    /// a stream's counted deltas, or a believed usage, stay as they are.
    #[test]
    fn a_json_answer_without_a_believable_usage_bills_its_bytes() {
        let id = RequestId { epoch: 1, worker: 0, seq: 1 };
        let standard = tollgate_policy::prices::Tier::Standard;
        // (usage, rejected, text JSON's most, bytes, counted) -> billed completion
        let reported = Some(TokenUsage { prompt: 10, completion: 7, ..Default::default() });
        let any = Some(u64::MAX);
        for (usage, rejected, text_json, bytes, counted, billed) in [
            (None, false, any, 60_000, 0, 20_000),
            (reported, true, any, 60_000, 0, 20_000),
            // Held to the most the request could generate.
            (None, false, Some(4_096), 60_000, 0, 4_096),
            (None, false, any, 30, 40, 40),
            (None, false, None, 60_000, 0, 0),
            (reported, false, any, 60_000, 0, 7),
        ] {
            let mut e = ended(usage, counted, End::Completed);
            (e.usage_rejected, e.body_bytes) = (rejected, bytes);
            let mut trace = Trace::new(id);
            set_aside_unbelievable(&mut e, &mut trace);
            estimate_usage(&mut e, || 5, (standard, text_json), &mut trace);
            assert_eq!(e.usage.map(|u| u.completion), Some(billed), "{usage:?} {rejected} {text_json:?} {bytes}");
        }
    }

    /// An answer read to its end after its client left is billed from the
    /// provider's final count, as a completed one is; one cut short takes
    /// the larger of the provider's partial count and the gateway's.
    #[test]
    fn an_answer_read_after_its_client_left_keeps_the_providers_count() {
        let id = RequestId { epoch: 1, worker: 0, seq: 1 };
        let usage = |completion| Some(TokenUsage { prompt: 90_000, completion, ..Default::default() });
        // (read to its end, reported, counted) -> (billed, estimated)
        for (read_whole, reported, counted, billed, estimated) in
            [(true, 16, 20, 16, false), (false, 16, 20, 20, true), (true, 1, 400, 400, true)]
        {
            let mut e = ended(usage(reported), counted, End::ClientGone);
            e.read_past_client = read_whole;
            let mut trace = Trace::new(id);
            set_aside_unbelievable(&mut e, &mut trace);
            estimate_usage(&mut e, || 5, (tollgate_policy::prices::Tier::Standard, None), &mut trace);
            let u = e.usage.expect("usage");
            assert_eq!((u.prompt, u.completion, trace.usage_estimated), (90_000, billed, estimated), "{read_whole}");
        }
    }

    /// A report without its prompt is billed the prompt counted, held to
    /// at least the shares the report gave (the cache's reads and writes),
    /// at any status: an answer refused as too large to keep bills what
    /// its provider reported.
    #[test]
    fn a_prompt_not_reported_is_counted_at_any_status() {
        let id = RequestId { epoch: 1, worker: 0, seq: 1 };
        let partial = TokenUsage {
            completion: 700,
            cached: 300,
            cache_write: 100,
            prompt_unreported: true,
            ..Default::default()
        };
        // (status, the prompt counted) -> the prompt billed
        for (status, counted, billed) in [(200, 5_000, 5_000), (200, 10, 400), (502, 5_000, 5_000)] {
            let mut e = ended(Some(partial), 0, End::Completed);
            e.status = status;
            let mut trace = Trace::new(id);
            estimate_usage(&mut e, || counted, (tollgate_policy::prices::Tier::Standard, None), &mut trace);
            let u = e.usage.expect("usage");
            assert_eq!((u.prompt, u.completion, u.prompt_unreported), (billed, 700, false), "{status} {counted}");
            assert!(trace.usage_estimated);
        }
    }
}
