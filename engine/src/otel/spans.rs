//! A finished request as OTLP spans: one for the request (kind server,
//! named `{operation} {model}` as the GenAI semantic conventions name an
//! inference span), a child per upstream attempt (kind client), and
//! children for the guardrail phase and the cache lookup when they ran.
//! Attributes follow the GenAI conventions (`gen_ai.*`), HTTP's where they
//! apply, and Tollgate's own under `tollgate.*` (team, key, cost, rules).
//!
//! Each span is written as a `ScopeSpans.spans` field, so that a batch is
//! the concatenation of finished requests' bytes; the exporter wraps a
//! batch in its resource and scope once.

use bytes::BytesMut;
use tollgate_policy::{Config, ProviderKind};

use super::proto::{self, attribute, Value};
use super::{Context, SALT_CACHE, SALT_GUARDRAILS};
use crate::proxy::Front;
use crate::record::{End, Trace};

const KIND_INTERNAL: u64 = 1;
const KIND_SERVER: u64 = 2;
const KIND_CLIENT: u64 = 3;
const STATUS_ERROR: u64 = 2;
/// `Span.flags`: the parent's remoteness is known (bit 8), and it is remote
/// (bit 9).
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// `gen_ai.operation.name` of a front.
pub fn operation(front: Front) -> &'static str {
    match front {
        Front::OpenAi | Front::Anthropic | Front::Responses => "chat",
        Front::Completions => "text_completion",
        Front::Embeddings => "embeddings",
        Front::CountTokens => "count_tokens",
    }
}

/// `gen_ai.provider.name`: the conventions' well-known values, told apart
/// by the provider's host where one kind serves several.
pub fn provider_name(p: &tollgate_policy::config::Provider) -> &'static str {
    match p.kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible if p.host_header.ends_with(".openai.azure.com") => {
            "azure.ai.openai"
        }
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => "openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini if p.host_header.ends_with("aiplatform.googleapis.com") => "gcp.vertex_ai",
        ProviderKind::Gemini => "gcp.gemini",
        ProviderKind::Bedrock => "aws.bedrock",
        ProviderKind::Mock => "tollgate.mock",
    }
}

/// One span's frame: ids, name (written from parts), kind, times, status.
struct Frame<'a> {
    ctx: &'a Context,
    id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: [&'a str; 2],
    kind: u64,
    start_ns: u64,
    end_ns: u64,
    error: Option<&'a str>,
}

fn span(out: &mut BytesMut, f: Frame<'_>, attributes: impl FnOnce(&mut BytesMut)) {
    proto::message(out, 2, |out| {
        proto::bytes(out, 1, &f.ctx.trace_id);
        proto::bytes(out, 2, &f.id);
        if let Some(p) = f.parent {
            proto::bytes(out, 4, &p);
        }
        let [a, b] = f.name;
        proto::message(out, 5, |out| {
            // A string field written in two parts: `message` frames it.
            out.extend_from_slice(a.as_bytes());
            if !b.is_empty() {
                out.extend_from_slice(b" ");
                out.extend_from_slice(b.as_bytes());
            }
        });
        proto::uint(out, 6, f.kind);
        proto::fixed64(out, 7, f.start_ns);
        proto::fixed64(out, 8, f.end_ns.max(f.start_ns));
        attributes(out);
        if let Some(message) = f.error {
            proto::message(out, 15, |out| {
                proto::bytes(out, 2, message.as_bytes());
                proto::uint(out, 3, STATUS_ERROR);
            });
        }
        // Only the request's own span can have another process's parent.
        let remote = if remote_parent(f.ctx, f.parent) { IS_REMOTE } else { 0 };
        proto::fixed32(out, 16, u32::from(f.ctx.flags) | HAS_IS_REMOTE | remote);
    });
}

/// `parent` is the client's span: another process's.
fn remote_parent(ctx: &Context, parent: Option<[u8; 8]>) -> bool {
    ctx.remote && parent.is_some() && parent == ctx.parent
}

/// Appends the request's spans; returns how many. `end_ns`: now, in Unix
/// nanoseconds (the request's end); its start is that less its elapsed
/// time, so every span of it is placed on one clock.
pub fn write(trace: &Trace<'_>, ctx: &Context, config: &Config, end_ns: u64, out: &mut BytesMut) -> u32 {
    let elapsed = trace.started.elapsed();
    let start_ns = end_ns.saturating_sub(elapsed.as_nanos() as u64);
    let at = |micros: u32| start_ns + u64::from(micros) * 1_000;
    let op = trace.operation;
    let route = trace.route.and_then(|r| config.routes.all().get(r));
    let model = route.map(|r| r.name.as_str()).or(trace.model_requested.as_deref()).unwrap_or("");
    let target = |t: u8| route.and_then(|r| r.targets.get(t as usize));
    let provider = |t: u8| target(t).and_then(|t| config.providers.get(t.provider));
    let team = trace.key.and_then(|k| config.teams.get(k.team));
    let failed = trace.status >= 500 || matches!(trace.end, End::UpstreamFailed | End::Cut | End::Fault);
    let end = trace.end.as_str();
    let mut count = 1;
    span(
        out,
        Frame {
            ctx,
            id: ctx.span,
            parent: ctx.parent,
            name: [op, model],
            // A request the gateway makes itself (a semantic lookup's
            // embedding call) is not one it serves.
            kind: if ctx.parent.is_some() && !ctx.remote { KIND_CLIENT } else { KIND_SERVER },
            start_ns,
            end_ns,
            error: failed.then_some(end),
        },
        |out| {
            attribute(out, 9, "gen_ai.operation.name", Value::Str(op));
            if !model.is_empty() {
                attribute(out, 9, "gen_ai.request.model", Value::Str(model));
            }
            if let Some(t) = trace.served_by {
                if let Some(p) = provider(t) {
                    attribute(out, 9, "gen_ai.provider.name", Value::Str(provider_name(p)));
                    attribute(out, 9, "tollgate.provider", Value::Str(&p.name));
                }
                if let Some(t) = target(t) {
                    attribute(out, 9, "gen_ai.response.model", Value::Str(&t.upstream_model));
                }
            }
            if !trace.finish.is_empty() {
                let mut names = [""; tollgate_protocol::openai::Finish::MAX];
                let n = names.iter_mut().zip(trace.finish.iter()).map(|(slot, name)| *slot = name).count();
                attribute(out, 9, "gen_ai.response.finish_reasons", Value::Strs(&names[..n]));
            }
            if let Some(u) = trace.usage {
                attribute(out, 9, "gen_ai.usage.input_tokens", Value::Int(u.prompt as i64));
                attribute(out, 9, "gen_ai.usage.output_tokens", Value::Int(u.completion as i64));
                if u.cached > 0 {
                    attribute(out, 9, "gen_ai.usage.cache_read.input_tokens", Value::Int(u.cached as i64));
                }
                if u.cache_write > 0 {
                    attribute(out, 9, "gen_ai.usage.cache_creation.input_tokens", Value::Int(u.cache_write as i64));
                }
                if trace.usage_estimated {
                    attribute(out, 9, "tollgate.usage.estimated", Value::Bool(true));
                }
                if let Some(cost) = trace.cost(config) {
                    attribute(out, 9, "tollgate.cost_usd", Value::Double(cost as f64 / 1e6));
                }
            }
            attribute(out, 9, "http.request.method", Value::Str("POST"));
            attribute(out, 9, "http.response.status_code", Value::Int(i64::from(trace.status)));
            if trace.end != End::Completed {
                attribute(out, 9, "error.type", Value::Str(end));
            }
            // `x-request-id`, written on the stack.
            let mut id = [0u8; 64];
            let mut w = std::io::Cursor::new(&mut id[..]);
            let _ = std::io::Write::write_fmt(
                &mut w,
                format_args!("tg-{:x}-{}-{}", trace.id.epoch, trace.id.worker, trace.id.seq),
            );
            let n = w.position() as usize;
            attribute(out, 9, "tollgate.request_id", Value::Str(std::str::from_utf8(&id[..n]).unwrap_or("")));
            attribute(out, 9, "tollgate.end", Value::Str(end));
            attribute(out, 9, "tollgate.stream", Value::Bool(trace.stream));
            if let Some(t) = team {
                attribute(out, 9, "tollgate.team", Value::Str(&t.name));
            }
            if let Some(k) = trace.key {
                attribute(out, 9, "tollgate.key", Value::Str(&k.name));
            }
            if let Some(run) = &trace.run {
                attribute(out, 9, "tollgate.run", Value::Str(&run.id));
            }
            if let Some(g) = trace.gateway_micros() {
                attribute(out, 9, "tollgate.latency.gateway_ms", Value::Double(f64::from(g) / 1000.0));
            }
            if !trace.guard_hits.is_empty() {
                let rules = rules(trace, config, None);
                let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
                attribute(out, 9, "tollgate.guardrail.rules", Value::Strs(&rules));
            }
            if let Some(c) = trace.cache {
                attribute(out, 9, "tollgate.cache.outcome", Value::Str(c.looked().as_str()));
            }
        },
    );
    let served = trace.served_by.is_some().then(|| trace.attempt_count.saturating_sub(1));
    for (i, a) in trace.attempts[..trace.attempt_count].iter().flatten().enumerate() {
        let p = provider(a.target);
        // The attempt that served lasts as long as its answer is relayed,
        // not only to its head.
        let end = if served == Some(i) { end_ns } else { at(a.start.saturating_add(a.micros)) };
        let upstream_model = target(a.target).map_or("", |t| t.upstream_model.as_str());
        let error = match a.outcome {
            Ok(s) if s >= 500 => Some("upstream status"),
            Ok(_) => None,
            Err(code) => Some(code),
        };
        span(
            out,
            Frame {
                ctx,
                id: ctx.child(i as u64),
                parent: Some(ctx.span),
                name: [op, upstream_model],
                kind: KIND_CLIENT,
                start_ns: at(a.start),
                end_ns: end,
                error,
            },
            |out| {
                attribute(out, 9, "gen_ai.operation.name", Value::Str(op));
                attribute(out, 9, "gen_ai.request.model", Value::Str(upstream_model));
                if let Some(p) = p {
                    attribute(out, 9, "gen_ai.provider.name", Value::Str(provider_name(p)));
                    attribute(out, 9, "tollgate.provider", Value::Str(&p.name));
                }
                attribute(out, 9, "tollgate.attempt", Value::Int(i as i64));
                match a.outcome {
                    Ok(status) => attribute(out, 9, "http.response.status_code", Value::Int(i64::from(status))),
                    Err(code) => attribute(out, 9, "error.type", Value::Str(code)),
                }
            },
        );
        count += 1;
    }
    if let Some((from, to)) = trace.phases.guardrails {
        let request_rules = rules(trace, config, Some(tollgate_policy::guard::Direction::Request));
        let request_rules: Vec<&str> = request_rules.iter().map(String::as_str).collect();
        let profile = trace.key.and_then(|k| config.team_profile(k.team));
        span(
            out,
            Frame {
                ctx,
                id: ctx.child(SALT_GUARDRAILS),
                parent: Some(ctx.span),
                name: ["tollgate.guardrails", ""],
                kind: KIND_INTERNAL,
                start_ns: at(from),
                end_ns: at(to),
                error: None,
            },
            |out| {
                if let Some(p) = profile {
                    attribute(out, 9, "tollgate.guardrail.profile", Value::Str(&p.name));
                }
                attribute(out, 9, "tollgate.guardrail.hits", Value::Int(request_rules.len() as i64));
                if !request_rules.is_empty() {
                    attribute(out, 9, "tollgate.guardrail.rules", Value::Strs(&request_rules));
                }
                if !trace.classified.is_empty() {
                    attribute(out, 9, "tollgate.guardrail.classifiers", Value::Int(trace.classified.len() as i64));
                }
                let blocked = trace.end == End::Blocked && trace.attempt_count == 0;
                attribute(out, 9, "tollgate.guardrail.blocked", Value::Bool(blocked));
            },
        );
        count += 1;
    }
    if let Some((from, to, outcome)) = trace.phases.cache {
        span(
            out,
            Frame {
                ctx,
                id: ctx.child(SALT_CACHE),
                parent: Some(ctx.span),
                name: ["tollgate.cache", ""],
                kind: KIND_INTERNAL,
                start_ns: at(from),
                end_ns: at(to),
                error: None,
            },
            |out| {
                attribute(out, 9, "tollgate.cache.outcome", Value::Str(outcome.as_str()));
                if let crate::record::Looked::SemanticHit(s) = outcome {
                    attribute(out, 9, "tollgate.cache.similarity", Value::Double(f64::from(s)));
                }
                if let Some(c) = trace.cache.filter(|c| c.hit) {
                    attribute(out, 9, "tollgate.cache.saved_usd", Value::Double(c.saved_micro_usd as f64 / 1e6));
                }
            },
        );
        count += 1;
    }
    count
}

/// The distinct rules that hit (in one direction, or both), as the
/// record names them.
fn rules(trace: &Trace<'_>, config: &Config, direction: Option<tollgate_policy::guard::Direction>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in trace.guard_hits.iter().filter(|r| direction.is_none_or(|d| d == r.direction)) {
        let name = crate::record::rule_name(trace, config, r.hit.rule);
        if !out.iter().any(|o| *o == name) {
            out.push(name.into_owned());
        }
    }
    out
}
