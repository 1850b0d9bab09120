//! From the file as written to the typed [`Config`]: every reference
//! resolved to an index, every amount to integers, every problem collected
//! (not just the first) with its position and a fix.

use std::net::SocketAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml::value::{Datetime, Offset};
use toml::Spanned;

use super::raw::*;
use super::report::{read_secret, Report};
use super::{
    AwsCredentials, AwsKeys, AwsSettings, Classifier, ClassifierKind, Config, ConfigError, Credential, Env,
    GuardrailProfile, ListenerTls, Logging, LongContext, Price, Provider, ProviderKind, Routing, Server, Source,
    Timeouts, TlsSettings,
};
use crate::access::{pattern_matches, ModelSet};
use crate::calendar;
use crate::keys::{hex, parse_hash, KeyTable, VirtualKey};
use crate::route::{Route, Routes, Target};
use crate::team::{Budget, MicroUsd, RateLimit, Team};

pub(super) fn parse(file: &str, text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
    let mut report = Report::new(file, text);
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            report.add(e.span().unwrap_or(0..0), e.message().trim_end().replace('\n', " "));
            return Err(ConfigError { problems: report.problems });
        }
    };
    let server = validate_server(&raw.server, env, &mut report);
    let providers = validate_providers(&raw.providers, env, &mut report);
    let routes = validate_models(&raw.models, &raw.providers, &mut report);
    let guardrail_profiles = validate_profiles(&raw.guardrail_profiles, &providers, &routes, &mut report);
    let teams = validate_teams(&raw.teams, &routes, &guardrail_profiles, raw.logging.capture_bodies, &mut report);
    let keys = validate_keys(&raw.keys, &raw.teams, &teams, &routes, &mut report);
    for t in raw.server.viewer_tokens.iter().flat_map(|v| &v.get_ref().teams) {
        if !raw.teams.iter().any(|team| team.name.get_ref() == t.get_ref()) {
            report.add(
                t.span(),
                format!("viewer token team {:?} is not a [[teams]] name; name a configured team", t.get_ref()),
            );
        }
    }
    let logging = Logging {
        dir: raw.logging.dir.clone(),
        file_bytes_max: raw.logging.file_bytes_max.unwrap_or(256 * 1024 * 1024).max(4096),
        capture_bodies: raw.logging.capture_bodies,
        capture_retention_days: raw.logging.capture_retention_days.as_ref().map(|d| {
            if *d.get_ref() == 0 || raw.logging.dir.is_none() {
                report.add(
                    d.span(),
                    "capture_retention_days is a number of days (1 or more) after which the records under [logging] dir lose their captured bodies; set dir, or remove it".to_string(),
                );
            }
            *d.get_ref()
        }),
    };
    let routing = validate_routing(&raw.routing, &mut report);
    let alert_webhook = raw.alerts.webhook_url.as_ref().map(|u| {
        let url = u.get_ref();
        let shown = super::report::shown_url(url);
        if super::report::plain_http_url(url).is_err() {
            report.add(
                u.span(),
                format!("webhook_url {shown:?} must be http://host:port/path (plain HTTP, port included)"),
            );
        }
        url.clone()
    });
    let cluster = raw.cluster.as_ref().map(|c| {
        let port = server.as_ref().map_or(0, |s| s.listen.port());
        super::cluster::validate(c, port, env, &mut report)
    });
    if cluster.is_none() {
        let budgets = raw.teams.iter().map(|t| &t.budget).chain(raw.keys.iter().map(|k| &k.budget));
        for strict in budgets.filter_map(|b| b.as_ref()?.strict.as_ref()).filter(|s| *s.get_ref()) {
            report.add(
                strict.span(),
                "strict budgets reserve in the cluster tier's Redis; add a [cluster] section or remove strict"
                    .to_string(),
            );
        }
    }
    let cache = validate_cache(&raw, &routes, &mut report);
    let telemetry = raw.telemetry.as_ref().map(|t| super::telemetry::validate(t, &mut report));
    let clickhouse =
        raw.clickhouse.as_ref().map(|c| super::clickhouse::validate(c, raw.logging.dir.is_some(), env, &mut report));
    let capture_guard = logging_capture_guard(teams.iter().any(|t| t.capture));
    match server {
        Some(server) if report.problems.is_empty() => Ok(Config {
            server,
            providers,
            routes,
            teams,
            keys,
            guardrail_profiles,
            logging,
            routing,
            alert_webhook,
            cluster,
            cache,
            telemetry,
            clickhouse,
            capture_guard,
            source: Source { file: file.to_string(), sha256: hex(&Sha256::digest(text.as_bytes())) },
        }),
        _ => Err(ConfigError { problems: report.problems }),
    }
}

/// Bodies are addressed with 32-bit spans; 1 GiB leaves room and is far
/// beyond any chat request.
const BODY_BYTES_LIMIT: usize = 1 << 30;

fn validate_server(raw: &RawServer, env: &dyn Env, report: &mut Report<'_>) -> Option<Server> {
    let mut addr = |field: &Spanned<String>, name: &str| match field.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            report.add(
                field.span(),
                format!("{name} address {:?} is not IP:port; write it like \"127.0.0.1:8080\"", field.get_ref()),
            );
            None
        }
    };
    let listen = addr(&raw.listen, "listen");
    let admin_listen = match raw.admin_listen.get_ref().as_str() {
        "off" | "none" => Some(None),
        _ => addr(&raw.admin_listen, "admin_listen").map(Some),
    };
    let t = &raw.timeouts;
    for (name, v) in [
        ("head_read_ms", t.head_read_ms),
        ("body_read_ms", t.body_read_ms),
        ("idle_keepalive_ms", t.idle_keepalive_ms),
        ("upstream_connect_ms", t.upstream_connect_ms),
        ("upstream_first_byte_ms", t.upstream_first_byte_ms),
        ("request_ms", t.request_ms),
        ("write_idle_ms", t.write_idle_ms),
        ("write_stall_ms", t.write_stall_ms),
        ("first_request_ms", t.first_request_ms),
    ] {
        if v == 0 {
            report.add(
                raw.listen.span(),
                format!("[server.timeouts] {name} = 0 would fail every request; give it milliseconds, such as 10000"),
            );
        }
    }
    if raw.body_bytes_max > BODY_BYTES_LIMIT {
        report.add(
            raw.listen.span(),
            format!(
                "body_bytes_max {} is over the {BODY_BYTES_LIMIT}-byte limit; LLM requests are far smaller",
                raw.body_bytes_max
            ),
        );
    }
    let tls = raw.tls.as_ref().map(|t| {
        for (name, f) in [
            ("cert_file", Some(&t.cert_file)),
            ("key_file", Some(&t.key_file)),
            ("client_ca_file", t.client_ca_file.as_ref()),
        ] {
            if let Some(f) = f {
                if let Err(e) = env.read_file(f.get_ref()) {
                    report.add(f.span(), format!("cannot read [server.tls] {name} {:?}: {e}", f.get_ref()));
                }
            }
        }
        let required = match t.client_auth.as_ref().map(|a| (a.get_ref().as_str(), a.span())) {
            None | Some(("required", _)) => true,
            Some(("optional", _)) => false,
            Some((other, span)) => {
                report.add(span, format!("client_auth {other:?} must be \"required\" or \"optional\""));
                true
            }
        };
        if let (Some(a), None) = (&t.client_auth, &t.client_ca_file) {
            report.add(a.span(), "client_auth needs client_ca_file, the CAs that sign client certificates".to_string());
        }
        ListenerTls {
            cert_file: t.cert_file.get_ref().clone(),
            key_file: t.key_file.get_ref().clone(),
            client_ca_file: t.client_ca_file.as_ref().map(|c| c.get_ref().clone()),
            client_auth_required: required,
        }
    });
    let mut admin_tokens = Vec::new();
    for t in &raw.admin_tokens {
        match crate::keys::parse_hash(t.get_ref()) {
            Some(h) => admin_tokens.push(h),
            None => report.add(
                t.span(),
                "admin_tokens entries are 64 hex digits, the SHA-256 `tollgate keygen --admin` prints; never the token itself"
                    .to_string(),
            ),
        }
    }
    let mut viewers = Vec::new();
    // Viewer tokens close the listener's reads to callers without a token;
    // without an admin token, `/metrics` and reloads would have none.
    if let (Some(first), true) = (raw.viewer_tokens.first(), raw.admin_tokens.is_empty()) {
        report.add(
            first.span(),
            "viewer tokens need an admin token too (else nobody could read /metrics or reload): add [server] admin_tokens from `tollgate keygen --admin`".to_string(),
        );
    }
    for v in &raw.viewer_tokens {
        let Some(token) = crate::keys::parse_hash(v.get_ref().token.get_ref()) else {
            report.add(
                v.get_ref().token.span(),
                "a viewer token is 64 hex digits, the SHA-256 `tollgate keygen --viewer` prints; never the token itself"
                    .to_string(),
            );
            continue;
        };
        if admin_tokens.contains(&token) {
            report.add(
                v.get_ref().token.span(),
                "this digest is also an admin token's; a token is either an admin's or a viewer's: make another with `tollgate keygen --viewer`".to_string(),
            );
        }
        if v.get_ref().teams.is_empty() {
            report.add(v.span(), "a viewer token needs teams = [\"...\"], the teams whose figures it sees".to_string());
        }
        viewers.push(crate::config::Viewer {
            token,
            teams: v.get_ref().teams.iter().map(|t| t.get_ref().clone()).collect(),
            bodies: v.get_ref().bodies,
        });
    }
    let ms = Duration::from_millis;
    Some(Server {
        viewers,
        admin_tokens,
        tls,
        listen: listen?,
        admin_listen: admin_listen?,
        admin_hosts: raw.admin_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        workers: raw.workers,
        head_bytes_max: raw.head_bytes_max.max(1024),
        uri_bytes_max: raw.uri_bytes_max.max(256),
        body_bytes_max: raw.body_bytes_max,
        responses_turns_bytes_max: raw.responses_turns_bytes_max,
        responses_turns_ttl: std::time::Duration::from_secs(raw.responses_turns_ttl_s),
        connections_per_worker_max: raw.connections_per_worker_max.max(1),
        connections_per_client_max: raw.connections_per_client_max,
        ledger_file: raw.ledger_file.clone(),
        timeouts: Timeouts {
            head_read: ms(t.head_read_ms),
            body_read: ms(t.body_read_ms),
            idle_keepalive: ms(t.idle_keepalive_ms),
            upstream_connect: ms(t.upstream_connect_ms),
            upstream_first_byte: ms(t.upstream_first_byte_ms),
            request: ms(t.request_ms),
            drain: ms(t.drain_ms),
            write_idle: ms(t.write_idle_ms),
            write_stall: ms(t.write_stall_ms),
            first_request: ms(t.first_request_ms),
        },
    })
}

/// `[cache]`, and the `cache = true` of teams and models that need it.
fn validate_cache(raw: &RawConfig, routes: &Routes, report: &mut Report<'_>) -> Option<super::Cache> {
    let Some(c) = raw.cache.as_ref().filter(|c| c.enabled != Some(false)) else {
        let asked =
            raw.teams.iter().filter_map(|t| t.cache.as_ref()).chain(raw.models.iter().filter_map(|m| m.cache.as_ref()));
        for on in asked.filter(|c| *c.get_ref()) {
            report.add(
                on.span(),
                "cache = true needs the answer cache; add a [cache] section (or remove this line)".into(),
            );
        }
        return None;
    };
    let bytes_max = c.bytes_max.as_ref().map_or(64 << 20, |b| *b.get_ref());
    let entry_bytes_max = c.entry_bytes_max.as_ref().map_or((1 << 20).min(bytes_max), |b| *b.get_ref());
    if let Some(b) = c.bytes_max.as_ref().filter(|b| *b.get_ref() < 64 * 1024) {
        report.add(b.span(), format!("bytes_max {} is too small for a cache; give it 65536 or more", b.get_ref()));
    }
    if let Some(e) = c.entry_bytes_max.as_ref().filter(|e| *e.get_ref() == 0 || *e.get_ref() > bytes_max) {
        report.add(e.span(), format!("entry_bytes_max {} must be between 1 and bytes_max ({bytes_max})", e.get_ref()));
    }
    let ttl_s = c.ttl_s.as_ref().map_or(300, |t| *t.get_ref());
    if let Some(t) = c.ttl_s.as_ref().filter(|t| !(1..=30 * 86_400).contains(t.get_ref())) {
        report.add(t.span(), format!("ttl_s {} must be between 1 and 2592000 (30 days)", t.get_ref()));
    }
    let per_key = match c.scope.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "team")) => false,
        Some((_, "key")) => true,
        Some((s, other)) => {
            report.add(s.span(), format!("scope {other:?} is not a cache scope; write \"team\" or \"key\""));
            false
        }
    };
    let semantic = c.semantic_model.as_ref().and_then(|m| {
        let route = routes.all().iter().position(|r| &r.name == m.get_ref());
        if route.is_none() {
            let hint = did_you_mean(m.get_ref(), routes.all().iter().map(|r| r.name.as_str()))
                .unwrap_or_else(|| "; name a [[models]] entry whose provider serves embeddings".to_string());
            report.add(m.span(), format!("semantic_model {:?} is not a configured model{hint}", m.get_ref()));
        }
        let threshold = c.semantic_threshold.as_ref().map_or(0.95, |t| *t.get_ref());
        if let Some(t) = c.semantic_threshold.as_ref().filter(|t| !(0.5..=1.0).contains(t.get_ref())) {
            report.add(
                t.span(),
                format!("semantic_threshold {} must be a cosine similarity between 0.5 and 1.0", t.get_ref()),
            );
        }
        let entries_max = c.semantic_entries_max.as_ref().map_or(10_000, |n| *n.get_ref());
        if let Some(n) = c.semantic_entries_max.as_ref().filter(|n| *n.get_ref() == 0) {
            report.add(n.span(), format!("semantic_entries_max {} must be 1 or more", n.get_ref()));
        }
        let timeout_ms = c.semantic_timeout_ms.as_ref().map_or(1_000, |t| *t.get_ref()).clamp(1, 60_000);
        Some(super::SemanticCache {
            route: route?,
            threshold: threshold as f32,
            entries_max,
            timeout: Duration::from_millis(timeout_ms),
        })
    });
    for (field, set) in [
        ("semantic_threshold", c.semantic_threshold.as_ref().map(|t| t.span())),
        ("semantic_entries_max", c.semantic_entries_max.as_ref().map(|t| t.span())),
        ("semantic_timeout_ms", c.semantic_timeout_ms.as_ref().map(|t| t.span())),
    ] {
        if let Some(span) = set.filter(|_| c.semantic_model.is_none()) {
            report.add(
                span,
                format!(
                    "{field} applies to semantic lookups; add semantic_model = \"<a model that embeds>\" or remove it"
                ),
            );
        }
    }
    Some(super::Cache {
        bytes_max,
        entry_bytes_max,
        ttl: Duration::from_secs(ttl_s),
        per_key,
        sampled: c.sampled.unwrap_or(false),
        shared: c.shared.unwrap_or(true),
        semantic,
    })
}

fn validate_routing(raw: &RawRouting, report: &mut Report<'_>) -> Routing {
    for s in &raw.fallback_on_status {
        if !(400..600).contains(s.get_ref()) {
            report.add(
                s.span(),
                format!("fallback_on_status {} is not an error status; use 4xx or 5xx codes", s.get_ref()),
            );
        }
    }
    let budget = *raw.retry_budget.get_ref();
    if !(0.0..=1.0).contains(&budget) {
        report.add(
            raw.retry_budget.span(),
            format!("retry_budget {budget} must be a share of requests from 0.0 to 1.0, such as 0.2"),
        );
    }
    Routing {
        retry_budget_permille: (budget.clamp(0.0, 1.0) * 1000.0).round() as u32,
        retry_budget_min: raw.retry_budget_min,
        retry_after_max: Duration::from_secs(raw.retry_after_max_s),
        max_attempts: raw.max_attempts.clamp(1, 10),
        retry_backoff: Duration::from_millis(raw.retry_backoff_ms),
        fallback_on_status: raw.fallback_on_status.iter().map(|s| *s.get_ref()).collect(),
        breaker_failures: raw.breaker_failures.max(1),
        breaker_cooldown: Duration::from_millis(raw.breaker_cooldown_ms),
    }
}

/// Refuses a name with a control character (a line break, a tab): names
/// go into response headers (`x-tollgate-route`), records, metrics' labels
/// and logs, where a line break would split a header or forge a line.
fn control_free(name: &Spanned<String>, what: &str, report: &mut Report<'_>) {
    control_free_at(name.get_ref(), name.span(), what, report);
}

/// [`control_free`] for a name whose line is another's (a target's model,
/// at its provider's).
fn control_free_at(name: &str, span: std::ops::Range<usize>, what: &str, report: &mut Report<'_>) {
    if name.chars().any(char::is_control) {
        report.add(span, format!("{what} {name:?} holds a control character (a line break, a tab); remove it"));
    }
}

fn duplicate<'a, T>(items: &'a [T], i: usize, name: impl Fn(&'a T) -> &'a Spanned<String>) -> bool {
    items[..i].iter().any(|q| name(q).get_ref() == name(&items[i]).get_ref())
}

fn validate_providers(raw: &[RawProvider], env: &dyn Env, report: &mut Report<'_>) -> Vec<Provider> {
    let mut out = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        control_free(&p.name, "provider", report);
        if duplicate(raw, i, |p| &p.name) {
            report.add(
                p.name.span(),
                format!("provider {:?} is defined twice; give each provider its own name", p.name.get_ref()),
            );
        }
        let kind = match p.kind.get_ref().as_str() {
            "mock" => ProviderKind::Mock,
            "openai" => ProviderKind::OpenAi,
            "openai-compatible" => ProviderKind::OpenAiCompatible,
            "anthropic" => ProviderKind::Anthropic,
            "gemini" | "vertex" => ProviderKind::Gemini,
            "bedrock" => ProviderKind::Bedrock,
            other => {
                report.add(
                    p.kind.span(),
                    format!(
                        "unknown provider kind {other:?}; use one of \"mock\", \"openai\", \"openai-compatible\", \"anthropic\", \"gemini\", \"vertex\", \"bedrock\""
                    ),
                );
                continue;
            }
        };
        let aws = (kind == ProviderKind::Bedrock).then(|| aws_settings(p, env, report)).flatten();
        if kind != ProviderKind::Bedrock {
            for field in [&p.region, &p.aws_credentials, &p.aws_credentials_file, &p.aws_profile, &p.aws_imds_url]
                .into_iter()
                .flatten()
            {
                report.add(
                    field.span(),
                    format!(
                        "provider {:?}: region and aws_* settings are for bedrock providers; remove it",
                        p.name.get_ref()
                    ),
                );
            }
        }
        if let Some(key) = p.api_key_env.as_ref().or(p.api_key_file.as_ref()).filter(|_| kind == ProviderKind::Bedrock)
        {
            report.add(key.span(), format!("provider {:?}: Bedrock signs with AWS credentials, not an API key; use aws_credentials = \"env\", \"file\" or \"instance\"", p.name.get_ref()));
        }
        let bedrock_url = aws
            .as_ref()
            .filter(|_| p.base_url.is_none())
            .map(|a| format!("https://bedrock-runtime.{}.amazonaws.com", a.region));
        let base_url = p
            .base_url
            .as_ref()
            .map(|u| (u.get_ref().as_str(), u.span()))
            .or(bedrock_url.as_deref().map(|u| (u, p.kind.span())));
        let (host, host_header, base_path, query, tls) = match (base_url, kind) {
            (None, ProviderKind::Bedrock) => continue,
            (None, ProviderKind::Mock) => (None, "mock".to_string(), "/v1".to_string(), String::new(), None),
            (None, _) => {
                report.add(
                    p.kind.span(),
                    format!("provider {:?} needs a base_url, such as \"https://api.openai.com/v1\"", p.name.get_ref()),
                );
                continue;
            }
            (Some((url, url_span)), _) => match parse_url(url) {
                Ok(u) => {
                    let default_port = if u.tls { 443 } else { 80 };
                    let header = if u.port == default_port { u.host.clone() } else { format!("{}:{}", u.host, u.port) };
                    let tls = u.tls.then(|| TlsSettings {
                        server_name: u.host.trim_start_matches('[').trim_end_matches(']').to_string(),
                        ca_file: p.ca_file.as_ref().map(|c| c.get_ref().clone()),
                    });
                    (Some((u.host, u.port)), header, u.path, u.query, tls)
                }
                Err(why) => {
                    report.add(url_span, why);
                    continue;
                }
            },
        };
        if let (Some(ca), None) = (&p.ca_file, &tls) {
            report.add(ca.span(), "ca_file applies to https:// base URLs only; remove it or use https".to_string());
        }
        if let (Some(ca), Some(_)) = (&p.ca_file, &tls) {
            if let Err(e) = env.read_file(ca.get_ref()) {
                report.add(ca.span(), format!("cannot read ca_file {:?}: {e}", ca.get_ref()));
            }
        }
        let secret = read_secret(
            (p.api_key_env.as_ref(), p.api_key_file.as_ref()),
            ("api_key_env", "api_key_file", "the provider's API key"),
            env,
            report,
        );
        // A line break in a credential would inject headers upstream.
        let secret = secret.filter(|v| {
            let clean = !v.bytes().any(|b| b.is_ascii_control());
            if !clean {
                let span = p.api_key_env.as_ref().or(p.api_key_file.as_ref()).map_or(0..0, |s| s.span());
                report.add(
                    span,
                    format!("provider {:?}: the API key contains a line break or control character", p.name.get_ref()),
                );
            }
            clean
        });
        let api_key_header = p.api_key_header.as_ref().and_then(|h| {
            let name = h.get_ref().to_ascii_lowercase();
            let token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !token {
                report.add(
                    h.span(),
                    format!("api_key_header {:?} is not a header name; write it like \"api-key\"", h.get_ref()),
                );
            }
            token.then_some(name)
        });
        // Gemini's key has its own header; Vertex AI takes an OAuth access
        // token (from `api_key_file`, read again on reload) as a bearer.
        let api_key_header =
            api_key_header.or_else(|| (p.kind.get_ref() == "gemini").then(|| super::GEMINI_KEY_HEADER.to_string()));
        for h in &p.forward_headers {
            if let Some(problem) = crate::forward::ForwardHeaders::problem(h.get_ref()) {
                report.add(h.span(), format!("provider {:?}: {problem}", p.name.get_ref()));
            }
        }
        if let Some(r) = p.responses_api.as_ref().filter(|r| {
            *r.get_ref() && matches!(kind, ProviderKind::Anthropic | ProviderKind::Gemini | ProviderKind::Bedrock)
        }) {
            report.add(
                r.span(),
                format!(
                    "provider {:?}: {} serves no Responses API; remove responses_api (requests to /v1/responses are translated for it)",
                    p.name.get_ref(),
                    match kind {
                        ProviderKind::Anthropic => "Anthropic",
                        ProviderKind::Gemini => "Gemini",
                        _ => "Bedrock",
                    }
                ),
            );
        }
        let additions: Vec<String> = p.forward_headers.iter().map(|h| h.get_ref().clone()).collect();
        out.push(Provider {
            forward_headers: crate::forward::ForwardHeaders::new(kind, &additions),
            name: p.name.get_ref().clone(),
            kind,
            host,
            host_header,
            base_path,
            query,
            api_key_header,
            credential: secret.map(Credential),
            tls,
            stream_usage: p.stream_usage.unwrap_or(true) && !kind.translated(),
            responses_api: p
                .responses_api
                .as_ref()
                .map_or(matches!(kind, ProviderKind::OpenAi | ProviderKind::Mock), |r| *r.get_ref())
                && !kind.translated(),
            prompt_cache_marks: p.prompt_cache_marks.as_ref().is_some_and(|m| *m.get_ref()),
            mock: p.mock,
            aws,
        });
        if let Some(m) = p.prompt_cache_marks.as_ref().filter(|m| *m.get_ref() && kind != ProviderKind::Anthropic) {
            report.add(
                m.span(),
                format!(
                    "provider {:?}: prompt_cache_marks is for anthropic providers (OpenAI-style providers cache prompts without marks); remove it",
                    p.name.get_ref()
                ),
            );
        }
    }
    out
}

/// A Bedrock provider's region and credentials, or `None` after reporting
/// why they cannot be had.
fn aws_settings(p: &RawProvider, env: &dyn Env, report: &mut Report<'_>) -> Option<AwsSettings> {
    let name = p.name.get_ref();
    let region = match &p.region {
        Some(r) => r.get_ref().clone(),
        None => {
            match env.var("AWS_REGION").or_else(|| env.var("AWS_DEFAULT_REGION")).filter(|r| !r.trim().is_empty()) {
                Some(r) => r.trim().to_string(),
                None => {
                    report.add(
                        p.kind.span(),
                        format!(
                            "provider {name:?}: Bedrock needs a region; add region = \"us-east-1\" (or set AWS_REGION)"
                        ),
                    );
                    return None;
                }
            }
        }
    };
    if region.is_empty() || !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        let span = p.region.as_ref().map_or(p.kind.span(), |r| r.span());
        report.add(span, format!("region {region:?} is not an AWS region; write it like \"us-east-1\""));
        return None;
    }
    let source = p.aws_credentials.as_ref().map_or("env", |s| s.get_ref().as_str());
    let credentials = match source {
        "env" => {
            let keys = (env.var("AWS_ACCESS_KEY_ID"), env.var("AWS_SECRET_ACCESS_KEY"));
            match keys {
                (Some(id), Some(secret)) if !id.trim().is_empty() && !secret.trim().is_empty() => {
                    AwsCredentials::Static(AwsKeys {
                        access_key_id: id.trim().to_string(),
                        secret_access_key: secret.trim().to_string(),
                        session_token: env
                            .var("AWS_SESSION_TOKEN")
                            .map(|t| t.trim().to_string())
                            .filter(|t| !t.is_empty()),
                    })
                }
                _ => {
                    let span = p.aws_credentials.as_ref().map_or(p.kind.span(), |s| s.span());
                    report.add(span, format!("provider {name:?}: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set; export them, or use aws_credentials = \"file\" or \"instance\""));
                    return None;
                }
            }
        }
        "file" => {
            let path = match &p.aws_credentials_file {
                Some(f) => f.get_ref().clone(),
                None => format!("{}/.aws/credentials", env.var("HOME").unwrap_or_default()),
            };
            let profile = p
                .aws_profile
                .as_ref()
                .map(|s| s.get_ref().clone())
                .or_else(|| env.var("AWS_PROFILE"))
                .unwrap_or_else(|| "default".into());
            let span =
                p.aws_credentials_file.as_ref().or(p.aws_credentials.as_ref()).map_or(p.kind.span(), |s| s.span());
            let text = match env.read_file(&path) {
                Ok(t) => t,
                Err(e) => {
                    report.add(span, format!("cannot read aws_credentials_file {path:?}: {e}"));
                    return None;
                }
            };
            match profile_keys(&text, &profile) {
                Some(keys) => AwsCredentials::Static(keys),
                None => {
                    report.add(span, format!("{path:?} has no profile [{profile}] with aws_access_key_id and aws_secret_access_key; add them or set aws_profile"));
                    return None;
                }
            }
        }
        "instance" => AwsCredentials::Instance {
            imds_url: p.aws_imds_url.as_ref().map_or_else(
                || "http://169.254.169.254".to_string(),
                |u| u.get_ref().trim_end_matches('/').to_string(),
            ),
        },
        other => {
            let span = p.aws_credentials.as_ref().map_or(p.kind.span(), |s| s.span());
            report
                .add(span, format!("aws_credentials {other:?} is not a source; use \"env\", \"file\" or \"instance\""));
            return None;
        }
    };
    if let AwsCredentials::Static(k) = &credentials {
        // A line break in a credential would inject headers upstream.
        let clean = |v: &str| !v.bytes().any(|b| b.is_ascii_control() || b == b' ');
        if !clean(&k.access_key_id) || !clean(&k.secret_access_key) || !k.session_token.as_deref().is_none_or(clean) {
            report.add(
                p.kind.span(),
                format!("provider {name:?}: the AWS credentials contain a space or control character"),
            );
            return None;
        }
    }
    Some(AwsSettings { region, credentials })
}

/// A profile's keys in an AWS shared credentials file (INI: `[profile]`,
/// then `key = value` lines).
fn profile_keys(text: &str, profile: &str) -> Option<AwsKeys> {
    let (mut id, mut secret, mut token) = (None, None, None);
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') && line.ends_with(']') {
            inside = line[1..line.len() - 1].trim() == profile;
            continue;
        }
        let Some((k, v)) = line.split_once('=').filter(|_| inside) else { continue };
        let v = Some(v.trim().to_string()).filter(|v| !v.is_empty());
        match k.trim() {
            "aws_access_key_id" => id = v,
            "aws_secret_access_key" => secret = v,
            "aws_session_token" => token = v,
            _ => {}
        }
    }
    Some(AwsKeys { access_key_id: id?, secret_access_key: secret?, session_token: token })
}

struct Url {
    tls: bool,
    host: String,
    port: u16,
    path: String,
    /// `?...` or empty.
    query: String,
}

/// Splits `http(s)://host[:port]/path`.
fn parse_url(url: &str) -> Result<Url, String> {
    let shown = super::report::shown_url(url);
    let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return Err(format!("base_url {shown:?} must start with https:// or http://")),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    if query.bytes().any(|b| b <= b' ' || b == b'#' || b >= 0x7f) {
        return Err(format!("base_url {shown:?} has a query that is not URL-encoded"));
    }
    // Credentials in the URL would go in every message that names it (a
    // port error read `pass@host` as the port); a `/` in a password would
    // hide the `@` from the host's part, so the whole URL is looked at.
    if rest.contains('@') {
        return Err(format!(
            "base_url {shown:?} holds user@ (credentials); keep secrets out of the file: set api_key_env or api_key_file"
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port = p.parse::<u16>().map_err(|_| format!("base_url {shown:?} has a bad port {p:?}"))?;
            (h, port)
        }
        _ => (authority, if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(format!("base_url {shown:?} has no host"));
    }
    Ok(Url { tls, host: host.to_string(), port, path: path.trim_end_matches('/').to_string(), query })
}

fn validate_models(raw: &[RawModel], providers: &[RawProvider], report: &mut Report<'_>) -> Routes {
    let mut routes = Vec::new();
    for (i, m) in raw.iter().enumerate() {
        let name = m.name.get_ref();
        control_free(&m.name, "model", report);
        if duplicate(raw, i, |m| &m.name) {
            report.add(m.name.span(), format!("model {name:?} is defined twice; merge its targets into one entry"));
        }
        if name.contains('*') {
            report
                .add(m.name.span(), format!("model name {name:?} may not contain `*`, which teams use as a wildcard"));
        }
        if m.targets.len() > crate::route::TARGETS_PER_MODEL_MAX {
            report.add(
                m.name.span(),
                format!(
                    "model {name:?} has {} targets; at most {} are allowed",
                    m.targets.len(),
                    crate::route::TARGETS_PER_MODEL_MAX
                ),
            );
        }
        if m.targets.is_empty() {
            report
                .add(m.name.span(), format!("model {name:?} has no targets; add targets = [{{ provider = \"...\" }}]"));
        }
        let mut targets = Vec::new();
        for (position, t) in m.targets.iter().enumerate() {
            if let Some(w) = t.weight.as_ref().filter(|w| *w.get_ref() == 0) {
                report.add(
                    w.span(),
                    "weight 0 would never be chosen; remove the target or give it a weight of 1 or more".into(),
                );
            }
            let found = providers.iter().position(|p| p.name.get_ref() == t.provider.get_ref());
            let upstream = t.model.as_deref().unwrap_or(name);
            if let Some(m) = t.model.as_deref() {
                control_free_at(m, t.provider.span(), "target model", report);
            }
            // A Gemini model is a segment of the URL's path.
            let url_safe = |m: &str| {
                !m.is_empty()
                    && m.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b'@'))
            };
            if found.is_some_and(|i| matches!(providers[i].kind.get_ref().as_str(), "gemini" | "vertex"))
                && !url_safe(upstream)
            {
                report.add(
                    t.provider.span(),
                    format!(
                        "model {upstream:?} cannot go in a Gemini URL; Gemini models are named with letters, digits and . - _ / @ (such as \"gemini-2.5-flash\")"
                    ),
                );
            }
            match found {
                Some(provider) => {
                    let upstream_model = t.model.clone().unwrap_or_else(|| name.clone());
                    let occurrence = targets
                        .iter()
                        .filter(|t: &&Target| t.provider == provider && t.upstream_model == upstream_model)
                        .count() as u32;
                    targets.push(Target {
                        provider,
                        identity: Target::identity(providers[provider].name.get_ref(), &upstream_model, occurrence),
                        reasons: crate::route::reasons_unseen(m.reasoning, &upstream_model),
                        builtin_price: crate::prices::builtin(&upstream_model).map(|mut p| {
                            if !bills_flex_at_half(providers[provider].kind.get_ref()) {
                                p.flex_permille = 0;
                            }
                            p
                        }),
                        searches: crate::prices::always_searches(&upstream_model),
                        upstream_model,
                        priority: t.priority.unwrap_or(position as u32),
                        weight: t.weight.as_ref().map_or(1, |w| *w.get_ref()),
                    })
                }
                None => {
                    let hint = did_you_mean(t.provider.get_ref(), providers.iter().map(|p| p.name.get_ref().as_str()))
                        .unwrap_or_else(|| "; define it under [[providers]]".to_string());
                    report.add(
                        t.provider.span(),
                        format!("model {name:?} routes to unknown provider {:?}{hint}", t.provider.get_ref()),
                    );
                }
            }
        }
        let price = m.price.as_ref().map(|p| {
            let mut price = price(p, report);
            // Flex at half by default only where every target is OpenAI's
            // own API: another provider (or a proxy) that echoes a
            // request's `service_tier` would halve the bill of a tier it
            // does not discount (found by a review).
            let elsewhere = targets.iter().any(|t: &Target| !bills_flex_at_half(providers[t.provider].kind.get_ref()));
            if p.flex_factor.is_none() && elsewhere {
                price.flex_permille = 0;
            }
            price
        });
        routes.push(Route {
            name: name.clone(),
            targets,
            price,
            cache: m.cache.as_ref().is_none_or(|c| *c.get_ref()),
            affinity: m.affinity.unwrap_or(true),
            reasoning: m.reasoning,
            fallback_on_status: m.fallback_on_status.as_ref().map(|list| {
                for s in list.iter().filter(|s| !(400..600).contains(s.get_ref())) {
                    report.add(
                        s.span(),
                        format!("fallback_on_status {} is not an error status; use 4xx or 5xx codes", s.get_ref()),
                    );
                }
                list.iter().map(|s| *s.get_ref()).collect()
            }),
        });
    }
    Routes::new(routes)
}

/// Whether a provider of this kind bills its flex tier at half the
/// standard rates, as OpenAI does (the mock stands for it). Anthropic,
/// Gemini and Bedrock have no such tier, and an OpenAI-compatible server
/// may echo a request's `service_tier` without discounting it (Groq
/// prices its flex as on-demand): their answers' `flex` is billed at the
/// standard rates unless a model's price sets `flex_factor`.
fn bills_flex_at_half(kind: &str) -> bool {
    matches!(kind, "openai" | "mock")
}

/// A model's `price`. What it leaves out is billed high rather than low,
/// at the rates of the providers that bill it: cached input at the input
/// price; cache writes (which Anthropic and Claude's other hosts report)
/// at 1.25 times it and hour-long ones at twice it, as Anthropic bills
/// them; a long-context tier's the same way from its own input price;
/// audio at the text prices (no dearer default exists to take); a request
/// served at the provider's priority tier at twice the rates (OpenAI's
/// are 1.7 to 2 times), at its flex tier at half (where every target is
/// OpenAI's: [`bills_flex_at_half`]). A long-context rate
/// below the price's own is refused: providers charge long prompts more,
/// and the ceilings take the cost to grow with the prompt.
fn price(p: &RawPrice, report: &mut Report<'_>) -> Price {
    let or = |v: &Option<Spanned<f64>>, default: MicroUsd, report: &mut Report<'_>| {
        v.as_ref().map_or(default, |v| usd(v, report))
    };
    // (input, cached input, 5-minute writes, hour-long writes)
    let prompt_rates = |input: &Spanned<f64>,
                        cached: &Option<Spanned<f64>>,
                        write: &Option<Spanned<f64>>,
                        hour: &Option<Spanned<f64>>,
                        report: &mut Report<'_>| {
        let input = usd(input, report);
        let write = or(write, input.saturating_add(input / 4), report);
        (input, or(cached, input, report), write, or(hour, write.max(input.saturating_mul(2)), report))
    };
    let (input_per_mtok, cached_input_per_mtok, cache_write_per_mtok, cache_write_1h_per_mtok) = prompt_rates(
        &p.input_per_mtok,
        &p.cached_input_per_mtok,
        &p.cache_write_per_mtok,
        &p.cache_write_1h_per_mtok,
        report,
    );
    let output_per_mtok = usd(&p.output_per_mtok, report);
    let long_context = p.long_context.as_ref().map(|spanned| {
        let l = spanned.get_ref();
        let (input, cached, write, hour) = prompt_rates(
            &l.input_per_mtok,
            &l.cached_input_per_mtok,
            &l.cache_write_per_mtok,
            &l.cache_write_1h_per_mtok,
            report,
        );
        let output = usd(&l.output_per_mtok, report);
        if *l.above_tokens.get_ref() == 0 {
            report.add(
                l.above_tokens.span(),
                "above_tokens = 0 would bill every request at the long-context rates; write the prompt size past which they apply, such as 200000".to_string(),
            );
        }
        // The rates a request is priced at before its answer: cached input
        // is not among them (a base left to its default, the input price,
        // may well be dearer than a tier's cache reads).
        let pairs = [
            ("input_per_mtok", input, input_per_mtok),
            ("output_per_mtok", output, output_per_mtok),
            ("cache_write_per_mtok", write, cache_write_per_mtok),
            ("cache_write_1h_per_mtok", hour, cache_write_1h_per_mtok),
        ];
        for (name, tier, base) in pairs.into_iter().filter(|(_, tier, base)| tier < base) {
            report.add(
                spanned.span(),
                format!(
                    "long_context's {name} ({}) is below the price's own ({}): a long prompt must not cost less than a short one; write at least {}",
                    tier as f64 / 1e6,
                    base as f64 / 1e6,
                    base as f64 / 1e6
                ),
            );
        }
        LongContext {
            above_tokens: *l.above_tokens.get_ref(),
            input_per_mtok: input,
            output_per_mtok: output,
            cached_input_per_mtok: cached,
            cache_write_per_mtok: write,
            cache_write_1h_per_mtok: hour,
        }
    });
    Price {
        input_per_mtok,
        output_per_mtok,
        cached_input_per_mtok,
        cache_write_per_mtok,
        cache_write_1h_per_mtok,
        audio_input_per_mtok: or(&p.audio_input_per_mtok, input_per_mtok, report),
        audio_output_per_mtok: or(&p.audio_output_per_mtok, output_per_mtok, report),
        long_context,
        priority_permille: p.priority_factor.as_ref().map_or(2000, |f| factor(f, 1.0..=100.0, "1.7", report)),
        flex_permille: p.flex_factor.as_ref().map_or(500, |f| factor(f, 0.01..=1.0, "0.5", report)),
    }
}

/// A price's multiple for a service tier, in thousandths: priority's at
/// least 1 and flex's at most 1, as providers price them (a request is
/// priced before its answer as if flex were standard, and reports merged
/// take the dearer tier).
fn factor(v: &Spanned<f64>, range: std::ops::RangeInclusive<f64>, example: &str, report: &mut Report<'_>) -> u64 {
    let x = *v.get_ref();
    if !range.contains(&x) {
        report.add(
            v.span(),
            format!(
                "{x} is not this tier's price multiple; write a number from {} to {}, such as {example}",
                range.start(),
                range.end()
            ),
        );
        return 1000;
    }
    (x * 1000.0).round() as u64
}

/// USD as written to integer micro-dollars.
fn usd(v: &Spanned<f64>, report: &mut Report<'_>) -> MicroUsd {
    let x = *v.get_ref();
    if !(0.0..=1e12).contains(&x) {
        report.add(v.span(), format!("{x} is not an amount in USD; write a non-negative number such as 2.50"));
        return 0;
    }
    (x * 1e6).round() as MicroUsd
}

/// Captured bodies are redacted of every kind of personal data and secret,
/// whatever the team's own profile does.
fn logging_capture_guard(on: bool) -> Option<std::sync::Arc<crate::guard::Guard>> {
    use crate::guard::{Action, Category, Detector, Guard, ProfileSpec};
    if !on {
        return None;
    }
    let mut spec = ProfileSpec { name: "capture".into(), responses: true, ..ProfileSpec::default() };
    for d in Detector::ALL {
        if d.category() != Category::Injection {
            spec.actions[d as usize] = Some(Action::Redact);
        }
    }
    Guard::compile(&spec).ok().map(std::sync::Arc::new)
}

fn validate_profiles(
    raw: &[RawGuardrailProfile],
    providers: &[Provider],
    routes: &Routes,
    report: &mut Report<'_>,
) -> Vec<GuardrailProfile> {
    use crate::guard::{Action, Category, Detector, Guard, ProfileSpec};
    let action = |v: &Spanned<String>, report: &mut Report<'_>| match v.get_ref().as_str() {
        "off" => None,
        "flag" => Some(Action::Flag),
        "redact" => Some(Action::Redact),
        "block" => Some(Action::Block),
        other => {
            report.add(
                v.span(),
                format!("unknown guardrail action {other:?}; write \"block\", \"redact\", \"flag\" or \"off\""),
            );
            None
        }
    };
    let mut profiles = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let name = p.name.get_ref();
        if duplicate(raw, i, |p| &p.name) {
            report.add(p.name.span(), format!("guardrail profile {name:?} is defined twice"));
        }
        // Unset categories take the defaults a production gateway wants:
        // personal data masked, secrets and injection stopped.
        let pii = p.pii.as_ref().map_or(Some(Action::Redact), |v| action(v, report));
        let secrets = p.secrets.as_ref().map_or(Some(Action::Block), |v| action(v, report));
        let injection = p.injection.as_ref().map_or(Some(Action::Block), |v| action(v, report));
        let mut spec = ProfileSpec {
            name: name.clone(),
            injection_threshold: p
                .injection_threshold
                .as_ref()
                .map_or(crate::guard::injection::THRESHOLD, |t| *t.get_ref()),
            responses: p.responses.unwrap_or(true),
            ..ProfileSpec::default()
        };
        for d in Detector::ALL {
            spec.actions[d as usize] = match d.category() {
                Category::Pii => pii,
                Category::Secrets => secrets,
                Category::Injection => injection,
            };
        }
        for (detector, v) in &p.detectors {
            match Detector::from_name(detector) {
                Some(d) => spec.actions[d as usize] = action(v, report),
                None => {
                    let names: Vec<&str> = Detector::every().map(|d| d.name()).collect();
                    report.add(
                        v.span(),
                        format!(
                            "unknown detector {detector:?} in profile {name:?}; the detectors are {}",
                            names.join(", ")
                        ),
                    );
                }
            }
        }
        spec.deny_words = p.deny_words.iter().map(|w| w.get_ref().clone()).collect();
        for w in &p.deny_words {
            if w.get_ref().trim().is_empty() {
                report.add(w.span(), "an empty deny word would match everywhere; remove it".to_string());
            }
        }
        spec.deny_patterns = p.deny_patterns.iter().map(|w| w.get_ref().clone()).collect();
        let has_custom = !spec.deny_words.is_empty() || !spec.deny_patterns.is_empty();
        spec.custom_action = match &p.custom {
            Some(v) => action(v, report),
            None if has_custom => Some(Action::Block),
            None => None,
        };
        spec.fail_open = match &p.on_error {
            None => false,
            Some(v) if v.get_ref() == "block" => false,
            Some(v) if v.get_ref() == "allow" => true,
            Some(v) => {
                report.add(
                    v.span(),
                    format!("on_error is {:?}; write \"block\" (the default) or \"allow\"", v.get_ref()),
                );
                false
            }
        };
        let guard = match Guard::compile(&spec) {
            Ok(g) => g,
            Err(e) => {
                let span = p.deny_patterns.get(e.index).map_or(p.name.span(), |w| w.span());
                report.add(
                    span,
                    format!(
                        "deny pattern does not compile ({}); fix the expression or make it smaller",
                        e.message.trim().replace('\n', " ")
                    ),
                );
                spec.deny_patterns.clear();
                Guard::compile(&spec)
                    .unwrap_or_else(|_| Guard::compile(&ProfileSpec::default()).expect("empty profile"))
            }
        };
        let classifiers: Vec<Classifier> =
            p.classifiers.iter().filter_map(|c| validate_classifier(c, providers, routes, report)).collect();
        let rules = GuardrailProfile::rules_of(&spec, &classifiers);
        profiles.push(GuardrailProfile {
            name: name.clone(),
            spec,
            guard: std::sync::Arc::new(guard),
            classifiers,
            rules,
        });
    }
    profiles
}

/// The most a `builtin` classifier reads per ask: 64 KiB, about 0.1 ms
/// on the worker.
const BUILTIN_TEXT_MAX: usize = 64 * 1024;

/// A profile's external classifier: its provider (or, for `chat`, the
/// route whose first target it asks), path, labels and limits.
fn validate_classifier(
    c: &RawClassifier,
    providers: &[Provider],
    routes: &Routes,
    report: &mut Report<'_>,
) -> Option<Classifier> {
    use crate::guard::Action;
    let name = c.name.get_ref();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        report.add(c.name.span(), format!("classifier name {name:?} must be letters, digits, - and _"));
    }
    let kind = match c.kind.get_ref().as_str() {
        "tei" => ClassifierKind::Tei,
        "moderations" => ClassifierKind::Moderations,
        "chat" => ClassifierKind::Chat,
        "webhook" => ClassifierKind::Webhook,
        "presidio" => ClassifierKind::Presidio,
        "builtin" => ClassifierKind::Builtin,
        other => {
            report.add(
                c.kind.span(),
                format!(
                    "unknown classifier kind {other:?}; write \"tei\", \"moderations\", \"chat\", \"webhook\", \"presidio\" or \"builtin\""
                ),
            );
            return None;
        }
    };
    let by_name = |p: &Spanned<String>, report: &mut Report<'_>| {
        let found = providers.iter().position(|x| x.name == *p.get_ref());
        if found.is_none() {
            let hint = did_you_mean(p.get_ref(), providers.iter().map(|x| x.name.as_str()))
                .unwrap_or_else(|| "; define it under [[providers]]".to_string());
            report.add(p.span(), format!("classifier {name:?} names unknown provider {:?}{hint}", p.get_ref()));
        }
        found
    };
    let (provider, model) = match (kind, &c.provider, &c.route) {
        (ClassifierKind::Builtin, _, _) => {
            // Nothing to reach: a provider, route or path would be a
            // misunderstanding worth saying so.
            // (labels, timeout_ms and on_error neither: it has one score,
            // takes microseconds, and cannot fail to answer.)
            for (field, span) in [
                ("provider", c.provider.as_ref().map(|p| p.span())),
                ("route", c.route.as_ref().map(|r| r.span())),
                ("path", c.path.as_ref().map(|p| p.span())),
                ("labels", c.labels.as_ref().map(|_| c.kind.span())),
                ("timeout_ms", c.timeout_ms.as_ref().map(|t| t.span())),
                ("on_error", c.on_error.as_ref().map(|v| v.span())),
            ] {
                if let Some(span) = span {
                    report.add(
                        span,
                        format!("classifier {name:?} of kind \"builtin\" runs in the gateway; {field} does not apply: remove it"),
                    );
                }
            }
            match c.model.as_deref() {
                None | Some("injection") => {}
                Some(other) => report.add(
                    c.kind.span(),
                    format!("classifier {name:?}: the built-in model is \"injection\", not {other:?}; remove model or write model = \"injection\""),
                ),
            }
            (usize::MAX, Some("injection".to_string()))
        }
        (ClassifierKind::Chat, _, Some(r)) => {
            let Some((_, route)) = routes.find(r.get_ref().as_bytes()) else {
                let hint = did_you_mean(r.get_ref(), routes.all().iter().map(|x| x.name.as_str()))
                    .unwrap_or_else(|| "; add it under [[models]]".to_string());
                report.add(r.span(), format!("classifier {name:?} names unknown model {:?}{hint}", r.get_ref()));
                return None;
            };
            let target = route.targets.first()?;
            if providers
                .get(target.provider)
                .is_some_and(|p| matches!(p.kind, ProviderKind::Anthropic | ProviderKind::Gemini))
            {
                report.add(
                    r.span(),
                    format!("classifier {name:?}: model {:?} is served by an Anthropic or Gemini provider; a guard model must speak chat completions", r.get_ref()),
                );
            }
            (target.provider, Some(target.upstream_model.clone()))
        }
        (ClassifierKind::Chat, _, None) => {
            report.add(
                c.kind.span(),
                format!("classifier {name:?} of kind \"chat\" needs route = \"<a model of [[models]]>\""),
            );
            return None;
        }
        (_, Some(p), _) => (by_name(p, report)?, c.model.clone()),
        (_, None, _) => {
            report.add(c.name.span(), format!("classifier {name:?} needs provider = \"<a [[providers]] name>\""));
            return None;
        }
    };
    let path = match &c.path {
        Some(p) if !p.get_ref().starts_with('/') => {
            report.add(p.span(), format!("classifier path {:?} must start with /", p.get_ref()));
            return None;
        }
        Some(p) => p.get_ref().clone(),
        None => match kind {
            ClassifierKind::Tei => "/predict",
            ClassifierKind::Moderations => "/moderations",
            ClassifierKind::Chat => "/chat/completions",
            ClassifierKind::Webhook => "/check",
            ClassifierKind::Presidio => "/analyze",
            ClassifierKind::Builtin => "",
        }
        .to_string(),
    };
    let default = if kind == ClassifierKind::Builtin { f64::from(crate::guard::model::THRESHOLD) } else { 0.5 };
    let threshold = c.threshold.as_ref().map_or(default, |t| *t.get_ref());
    if let Some(t) = &c.threshold {
        if !(0.0..=1.0).contains(t.get_ref()) {
            report.add(t.span(), format!("threshold {} must be between 0 and 1", t.get_ref()));
        }
    }
    let action = match c.action.as_ref().map(|a| a.get_ref().as_str()) {
        None | Some("block") => Action::Block,
        Some("flag") => Action::Flag,
        // Only a webhook and Presidio say where: their spans.
        Some("redact") if matches!(kind, ClassifierKind::Webhook | ClassifierKind::Presidio) => Action::Redact,
        Some(other) => {
            report.add(
                c.action.as_ref().map_or(0..0, |a| a.span()),
                format!(
                    "classifier action {other:?}; write \"block\" (the default) or \"flag\" (\"redact\" for a webhook or Presidio, which return spans)"
                ),
            );
            Action::Block
        }
    };
    let timeout_ms = c.timeout_ms.as_ref().map_or(250, |t| *t.get_ref());
    if let Some(t) = &c.timeout_ms {
        if !(1..=60_000).contains(t.get_ref()) {
            report.add(t.span(), format!("timeout_ms {} must be between 1 and 60000", t.get_ref()));
        }
    }
    let fail_open = match c.on_error.as_ref().map(|v| v.get_ref().as_str()) {
        None | Some("allow") => true,
        Some("block") => false,
        Some(other) => {
            report.add(
                c.on_error.as_ref().map_or(0..0, |v| v.span()),
                format!("on_error is {other:?}; write \"allow\" (the default for a classifier) or \"block\""),
            );
            true
        }
    };
    let text_bytes_max = c.text_bytes_max.as_ref().map_or(8 * 1024, |t| *t.get_ref());
    if let Some(t) = &c.text_bytes_max {
        if !(64..=1 << 20).contains(t.get_ref()) {
            report.add(t.span(), format!("text_bytes_max {} must be between 64 and 1048576", t.get_ref()));
        }
    }
    let stream_window_bytes = c.stream_window_bytes.as_ref().map_or(1024, |t| *t.get_ref());
    if let Some(t) = &c.stream_window_bytes {
        if !(16..=65_536).contains(t.get_ref()) {
            report.add(t.span(), format!("stream_window_bytes {} must be between 16 and 65536", t.get_ref()));
        } else if c.answers != Some(true) {
            report.add(
                t.span(),
                "stream_window_bytes is read only with answers = true; add it or remove this line".into(),
            );
        }
    }
    if kind == ClassifierKind::Builtin {
        // Scored on the worker: its cost is bounded by what one request or
        // one stream window may make it read (about 12 us per 8 KiB).
        if text_bytes_max > BUILTIN_TEXT_MAX {
            report.add(
                c.text_bytes_max.as_ref().map_or(0..0, |t| t.span()),
                format!("a builtin classifier reads at most {BUILTIN_TEXT_MAX} bytes (it runs on the worker); lower text_bytes_max"),
            );
        } else if c.answers == Some(true) && stream_window_bytes * 16 < text_bytes_max {
            report.add(
                c.stream_window_bytes.as_ref().or(c.text_bytes_max.as_ref()).map_or(0..0, |t| t.span()),
                format!(
                    "a builtin classifier rereads text_bytes_max ({text_bytes_max}) every stream window; stream_window_bytes must be at least a sixteenth of it ({})",
                    text_bytes_max.div_ceil(16)
                ),
            );
        }
    }
    let labels = c
        .labels
        .clone()
        .unwrap_or_else(|| vec!["INJECTION".into(), "JAILBREAK".into(), "UNSAFE".into()])
        .into_iter()
        .map(|l| l.to_ascii_uppercase())
        .collect();
    Some(Classifier {
        name: name.clone(),
        kind,
        provider,
        path,
        model,
        labels,
        threshold,
        action,
        timeout: Duration::from_millis(timeout_ms),
        fail_open,
        text_bytes_max,
        answers: c.answers.unwrap_or(false),
        stream_window_bytes,
    })
}

/// Resolves model patterns into a set; a pattern that matches no model is
/// a problem (a typo would otherwise silently deny).
fn model_set(patterns: &[Spanned<String>], routes: &Routes, owner: &str, report: &mut Report<'_>) -> ModelSet {
    let mut set = ModelSet::empty(routes.all().len());
    for pattern in patterns {
        let mut matched = false;
        for (i, route) in routes.all().iter().enumerate() {
            if pattern_matches(pattern.get_ref(), &route.name) {
                set.insert(i);
                matched = true;
            }
        }
        if !matched {
            let p = pattern.get_ref();
            let message = if p.contains('*') {
                format!("{owner} allows {p:?}, which matches no configured model; check the pattern against [[models]]")
            } else {
                let hint = did_you_mean(p, routes.all().iter().map(|r| r.name.as_str()))
                    .unwrap_or_else(|| "; add it under [[models]] or remove it".to_string());
                format!("{owner} allows unknown model {p:?}{hint}")
            };
            report.add(pattern.span(), message);
        }
    }
    set
}

fn budget(raw: Option<&RawBudget>, report: &mut Report<'_>) -> Budget {
    let Some(b) = raw else { return Budget { soft_threshold_permille: 800, ..Budget::default() } };
    let soft = match &b.soft_threshold {
        None => 800,
        Some(s) if (0.0..=1.0).contains(s.get_ref()) => (s.get_ref() * 1000.0).round() as u16,
        Some(s) => {
            report.add(
                s.span(),
                format!("soft_threshold {} must be a fraction from 0.0 to 1.0, such as 0.8", s.get_ref()),
            );
            800
        }
    };
    Budget {
        daily: b.daily_usd.as_ref().map(|v| usd(v, report)),
        monthly: b.monthly_usd.as_ref().map(|v| usd(v, report)),
        soft_threshold_permille: soft,
        request: b.request_usd.as_ref().map(|v| usd(v, report)),
        request_output_tokens: b.request_output_tokens,
        strict: b.strict.as_ref().is_some_and(|s| *s.get_ref()),
        run: run_limits(b, report),
    }
}

/// A budget's run limits (`run_usd`, `run_tokens`, `run_requests`,
/// `run_wall_s`).
fn run_limits(b: &RawBudget, report: &mut Report<'_>) -> crate::run::RunLimits {
    crate::run::RunLimits {
        cost: b.run_usd.as_ref().map(|v| usd(v, report)),
        tokens: b.run_tokens,
        requests: b.run_requests,
        wall_ms: b.run_wall_s.map(|s| s.saturating_mul(1000)),
    }
}

fn rate_limit(raw: Option<&RawRateLimit>) -> RateLimit {
    raw.map_or_else(RateLimit::default, |r| RateLimit {
        requests_per_minute: r.requests_per_minute,
        tokens_per_minute: r.tokens_per_minute,
    })
}

fn validate_teams(
    raw: &[RawTeam],
    routes: &Routes,
    profiles: &[GuardrailProfile],
    capture_default: bool,
    report: &mut Report<'_>,
) -> Vec<Team> {
    let mut teams = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        let name = t.name.get_ref();
        control_free(&t.name, "team", report);
        if duplicate(raw, i, |t| &t.name) {
            report.add(t.name.span(), format!("team {name:?} is defined twice; merge the two entries"));
        }
        let models = model_set(&t.models, routes, &format!("team {name:?}"), report);
        let guardrail_profile = t.guardrails.as_ref().and_then(|g| {
            let found = profiles.iter().position(|p| &p.name == g.get_ref());
            if found.is_none() {
                let hint = did_you_mean(g.get_ref(), profiles.iter().map(|p| p.name.as_str()))
                    .unwrap_or_else(|| "; define it under [[guardrail_profiles]]".to_string());
                report.add(g.span(), format!("team {name:?} uses unknown guardrail profile {:?}{hint}", g.get_ref()));
            }
            found
        });
        for tool in &t.hosted_tools {
            if tool.get_ref().is_empty() {
                report.add(
                    tool.span(),
                    format!("team {name:?}: an empty hosted tool allows nothing; name a tool type such as \"web_search\", or \"*\" for any"),
                );
            }
        }
        teams.push(Team {
            name: name.clone(),
            models,
            budget: budget(t.budget.as_ref(), report),
            rate_limit: rate_limit(t.rate_limit.as_ref()),
            guardrail_profile,
            labels: t.labels.clone(),
            cache: t.cache.as_ref().is_none_or(|c| *c.get_ref()),
            capture: t.capture_bodies.unwrap_or(capture_default),
            hosted_tools: t.hosted_tools.iter().map(|t| t.get_ref().clone()).collect(),
            service_tiers: t.service_tiers.iter().map(|t| t.get_ref().clone()).collect(),
        });
    }
    teams
}

fn validate_keys(
    raw: &[RawKey],
    raw_teams: &[RawTeam],
    teams: &[Team],
    routes: &Routes,
    report: &mut Report<'_>,
) -> KeyTable {
    let mut keys = Vec::new();
    for (i, k) in raw.iter().enumerate() {
        let name = k.name.get_ref();
        control_free(&k.name, "key", report);
        if duplicate(raw, i, |k| &k.name) {
            report.add(k.name.span(), format!("key {name:?} is defined twice; key names must be unique"));
        }
        let Some(hash) = parse_hash(k.sha256.get_ref()) else {
            report.add(
                k.sha256.span(),
                format!("key {name:?}: sha256 must be 64 hex digits; paste the line `tollgate keygen` printed"),
            );
            continue;
        };
        if raw[..i].iter().any(|q| parse_hash(q.sha256.get_ref()) == Some(hash)) {
            report
                .add(k.sha256.span(), format!("key {name:?} has the same hash as an earlier key; generate a new key"));
        }
        let Some(team) = raw_teams.iter().position(|t| t.name.get_ref() == k.team.get_ref()) else {
            let hint = did_you_mean(k.team.get_ref(), raw_teams.iter().map(|t| t.name.get_ref().as_str()))
                .unwrap_or_else(|| "; define it under [[teams]]".to_string());
            report.add(k.team.span(), format!("key {name:?} belongs to unknown team {:?}{hint}", k.team.get_ref()));
            continue;
        };
        let Some(team_models) = teams.get(team).map(|t| &t.models) else { continue };
        let models = match &k.models {
            None => team_models.clone(),
            Some(patterns) => {
                let own = model_set(patterns, routes, &format!("key {name:?}"), report);
                for p in patterns {
                    let outside = routes
                        .all()
                        .iter()
                        .enumerate()
                        .any(|(m, r)| pattern_matches(p.get_ref(), &r.name) && !team_models.contains(m));
                    if outside && !p.get_ref().contains('*') {
                        report.add(
                            p.span(),
                            format!(
                                "key {name:?} allows {:?}, which its team {:?} does not; a key can only narrow its team's models",
                                p.get_ref(),
                                k.team.get_ref()
                            ),
                        );
                    }
                }
                own.intersect(team_models)
            }
        };
        let expires_at = k.expires.as_ref().and_then(|e| match unix_seconds(e.get_ref()) {
            Ok(t) => Some(t),
            Err(why) => {
                report.add(e.span(), format!("key {name:?}: {why}"));
                None
            }
        });
        keys.push(VirtualKey::new(
            name.clone(),
            team,
            hash,
            expires_at,
            k.revoked,
            models,
            budget(k.budget.as_ref(), report),
            rate_limit(k.rate_limit.as_ref()),
        ));
    }
    KeyTable::new(keys)
}

/// A TOML date or offset date-time as Unix seconds. A bare date means
/// midnight UTC; a date-time must say its offset, so that an expiry never
/// depends on the server's time zone.
fn unix_seconds(d: &Datetime) -> Result<u64, String> {
    let date = d.date.ok_or("expires needs a date, such as 2027-01-31 or 2027-01-31T00:00:00Z")?;
    let days = calendar::days_from_civil(i64::from(date.year), u32::from(date.month), u32::from(date.day));
    let (secs, offset_min) = match (d.time, d.offset) {
        (None, _) => (0, 0),
        (Some(_), None) => return Err("expires has a time but no offset; end it with Z or +01:00".to_string()),
        (Some(t), Some(o)) => {
            let off = match o {
                Offset::Z => 0,
                Offset::Custom { minutes } => minutes as i64,
            };
            (t.hour as i64 * 3600 + t.minute as i64 * 60 + t.second as i64, off)
        }
    };
    let t = days * 86_400 + secs - offset_min * 60;
    u64::try_from(t).map_err(|_| "expires is before 1970".to_string())
}

/// `; did you mean "x"?` for the candidate nearest to `word`, if it is
/// close enough to be a typo.
fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("; did you mean {c:?}?"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_dates_as_unix_seconds() {
        let at = |s: &str| unix_seconds(&s.parse::<Datetime>().unwrap());
        assert_eq!(at("1970-01-01"), Ok(0));
        assert_eq!(at("2026-11-23"), Ok(20_780 * 86_400));
        assert_eq!(at("2026-11-23T01:00:00+01:00"), Ok(20_780 * 86_400));
        assert_eq!(at("2026-11-23T00:00:30Z"), Ok(20_780 * 86_400 + 30));
        assert!(at("2026-11-23T00:00:00").is_err(), "a time without an offset");
        assert!(at("1969-12-31").is_err(), "before 1970");
    }
}
