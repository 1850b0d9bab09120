//! Everything that can stop a request, and the one function that turns it
//! into an HTTP status and an OpenAI-style error body.
//!
//! Each error says what happened, whose fault it was ([`Source`]), whether
//! trying another upstream could help ([`GatewayError::retryable`]), and
//! carries the context a user needs to fix it (which model, which
//! upstream). The OpenAI SDKs map the status to their exception types, so
//! the status is part of the API: change it only on purpose.

use std::fmt;
use std::io;

use bytes::BytesMut;
use tollgate_policy::AuthError;
use tollgate_protocol::http1::{RequestError, ResponseError};
use tollgate_protocol::openai::{write_error_body, BodyError};

/// Whose fault an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Client,
    Upstream,
    Gateway,
}

#[derive(Debug)]
pub enum GatewayError {
    /// The client's bytes broke HTTP/1.1 framing; the connection closes.
    Request(RequestError),
    /// The body is not a chat request the gateway can route.
    Body(BodyError),
    /// The body cannot be translated for the target's provider.
    Translate(&'static str),
    /// The head did not arrive within `head_read_ms`.
    HeadTimeout,
    /// The body did not arrive within `body_read_ms`.
    BodyTimeout,
    /// The client closed or reset before its request was complete.
    ClientClosed,
    /// No valid virtual key.
    Auth(AuthError),
    /// Under a request ceiling that leaves `cap` output tokens, an
    /// enabled thinking budget of `budget` cannot fit: Anthropic takes no
    /// budget under 1,024, and wants `max_tokens` above it.
    ThinkingOverCeiling { budget: u64, cap: u64 },
    /// Under a request ceiling of `cap` output tokens, a request for more
    /// answers (`n`, `best_of`) than the ceiling has tokens.
    ChoicesOverCeiling { choices: u64, cap: u64 },
    /// Under a request ceiling of `limit` micro-dollars, a prompt of
    /// `tokens` (the gateway's count) that costs more at the target's
    /// price before any answer.
    PromptOverCeiling { tokens: u64, limit: u64 },
    /// A team or key has reached a hard budget limit.
    OverBudget(tollgate_policy::budget::OverBudget),
    /// An agent run (`x-tollgate-run`) has reached one of its limits.
    RunLimit(Box<tollgate_policy::run::RunRefused>),
    /// No room for a new agent run: the node's table of active runs, or
    /// the team's share of it, is full.
    RunTableFull { team: String },
    /// `x-tollgate-run` or `x-tollgate-parent-run` is malformed.
    RunHeader(&'static str),
    /// A team or key has reached a per-minute limit.
    RateLimited(tollgate_policy::ratelimit::OverRate),
    /// The key's team (or the key itself) may not use this model.
    ModelNotAllowed { model: String },
    /// The body offers the provider a tool it runs and may bill per call
    /// (`tool`, its type as written), which the key's team does not allow
    /// (`hosted_tools`): the gateway prices tokens only.
    ToolNotAllowed { tool: String },
    /// The body asks for a service tier priced above standard (`tier`, as
    /// written), which the key's team does not allow (`service_tiers`).
    ServiceTierNotAllowed { tier: String },
    /// No route for this method and path.
    NoRoute,
    /// The model is not in the configuration.
    UnknownModel(String),
    /// `previous_response_id` names a response another team made (a
    /// provider that keeps responses keeps them for the gateway's one
    /// account): answered as an id that does not exist.
    ResponseNotFound { id: String },
    /// A guardrail rule with the `block` action matched the request.
    Guardrail { profile: String, rule: String },
    /// The guardrails could not read the request, and the profile fails
    /// closed.
    GuardrailUnavailable { profile: String, why: &'static str },
    /// Connecting to the upstream failed.
    UpstreamConnect { provider: String, cause: io::Error },
    /// The TLS handshake failed (certificate not trusted, name mismatch...).
    UpstreamTls { provider: String, cause: String },
    /// Connecting took longer than `upstream_connect_ms`.
    UpstreamConnectTimeout { provider: String },
    /// No answer within `upstream_first_byte_ms`, or the whole request ran
    /// past `request_ms`.
    /// `sent`: the whole request was written before the time ran out
    /// (the provider may have acted on it, and bill it).
    UpstreamTimeout { provider: String, sent: bool },
    /// The upstream closed or reset before a complete answer.
    /// `sent`: the whole request was written before the connection
    /// ended (the provider may have acted on it, and bill it).
    UpstreamClosed { provider: String, cause: Option<io::Error>, sent: bool },
    /// The upstream's answer is not HTTP/1.1 we can relay safely.
    UpstreamProtocol { provider: String, cause: ResponseError },
    /// The upstream answered with a status in `fallback_on_status`, and no
    /// other target could be tried.
    UpstreamStatus { provider: String, status: u16 },
    /// Every target of the model has an open circuit breaker.
    Unavailable { model: String },
    /// Every target the model could use asked (with `retry-after`) not to
    /// be called yet.
    UpstreamResting { model: String, retry_after_s: u64 },
    /// The worker is draining for shutdown.
    Draining,
    /// The gateway panicked while serving the request (a bug,
    /// [`crate::fault`]); `sent`: an attempt had gone to a provider.
    Fault { sent: bool },
    /// The key or its team is under a budget or rate limit, the cluster
    /// tier has not reached Redis for `stale_after`, and it fails closed.
    ClusterUnavailable,
}

impl GatewayError {
    pub fn source(&self) -> Source {
        use GatewayError::*;
        match self {
            Request(_)
            | Body(_)
            | Translate(_)
            | ThinkingOverCeiling { .. }
            | ChoicesOverCeiling { .. }
            | PromptOverCeiling { .. }
            | HeadTimeout
            | BodyTimeout
            | ClientClosed
            | Auth(_)
            | OverBudget(_)
            | RunLimit(_)
            | RunTableFull { .. }
            | RunHeader(_)
            | RateLimited(_)
            | ModelNotAllowed { .. }
            | ToolNotAllowed { .. }
            | ServiceTierNotAllowed { .. }
            | NoRoute
            | UnknownModel(_)
            | ResponseNotFound { .. }
            | Guardrail { .. }
            | GuardrailUnavailable { .. } => Source::Client,
            UpstreamConnect { .. }
            | UpstreamTls { .. }
            | UpstreamConnectTimeout { .. }
            | UpstreamTimeout { .. }
            | UpstreamClosed { .. }
            | UpstreamProtocol { .. }
            | UpstreamStatus { .. }
            | Unavailable { .. }
            | UpstreamResting { .. } => Source::Upstream,
            Draining | ClusterUnavailable | Fault { .. } => Source::Gateway,
        }
    }

    /// Whether another target could still serve the request: the upstream
    /// failed before any answer byte reached the client.
    pub fn falls_back(&self) -> bool {
        matches!(
            self,
            GatewayError::UpstreamConnect { .. }
                | GatewayError::UpstreamTls { .. }
                | GatewayError::UpstreamConnectTimeout { .. }
                | GatewayError::UpstreamTimeout { .. }
                | GatewayError::UpstreamClosed { .. }
                | GatewayError::UpstreamProtocol { .. }
        )
    }

    /// Whether the request reached the provider whole before the attempt
    /// failed: it timed out waiting for the answer, the connection ended
    /// after it, or the answer was broken. The provider may have done the
    /// work and bill it; an attempt that could not connect, or whose
    /// write failed, is taken as not acted on.
    pub fn sent_upstream(&self) -> bool {
        matches!(
            self,
            GatewayError::UpstreamTimeout { sent: true, .. }
                | GatewayError::UpstreamClosed { sent: true, .. }
                | GatewayError::UpstreamProtocol { .. }
        )
    }

    /// Whether the client connection must close after the answer, because
    /// its framing can no longer be trusted.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            GatewayError::Request(_)
                | GatewayError::HeadTimeout
                | GatewayError::BodyTimeout
                | GatewayError::ClientClosed
        )
    }

    /// The one mapping from error to HTTP status.
    pub fn status(&self) -> u16 {
        use GatewayError::*;
        match self {
            Request(e) => e.status(),
            Body(_)
            | Translate(_)
            | ThinkingOverCeiling { .. }
            | ChoicesOverCeiling { .. }
            | PromptOverCeiling { .. }
            | ClientClosed
            | Guardrail { .. }
            | GuardrailUnavailable { .. }
            | RunHeader(_) => 400,
            HeadTimeout | BodyTimeout => 408,
            Auth(_) => 401,
            OverBudget(_) | RunLimit(_) | RunTableFull { .. } | RateLimited(_) => 429,
            // The same answer as a model that does not exist: a tenant
            // must not learn which models other teams use.
            NoRoute | UnknownModel(_) | ModelNotAllowed { .. } | ResponseNotFound { .. } => 404,
            // Permission, not a malformed request: the same body is
            // served for a team that allows the tool.
            ToolNotAllowed { .. } | ServiceTierNotAllowed { .. } => 403,
            // A rate limit stays a rate limit, so that clients back off.
            UpstreamStatus { status: 429, .. } => 429,
            UpstreamConnect { .. }
            | UpstreamTls { .. }
            | UpstreamClosed { .. }
            | UpstreamProtocol { .. }
            | UpstreamStatus { .. } => 502,
            Unavailable { .. } => 503,
            // The providers' own rate limit, passed on: clients back off.
            UpstreamResting { .. } => 429,
            UpstreamConnectTimeout { .. } | UpstreamTimeout { .. } => 504,
            Draining | ClusterUnavailable => 503,
            Fault { .. } => 500,
        }
    }

    /// OpenAI's `error.type`: for a rate limit, which limit (`requests` or
    /// `tokens`), as OpenAI's own 429s say.
    fn kind(&self) -> &'static str {
        if let GatewayError::RateLimited(e) = self {
            return e.what;
        }
        match self.source() {
            Source::Client => "invalid_request_error",
            Source::Upstream | Source::Gateway => "server_error",
        }
    }

    /// A stable `error.code`.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            Request(e) => e.code(),
            Body(_) => "invalid_body",
            Translate(_) => "untranslatable_body",
            ThinkingOverCeiling { .. } => "thinking_over_ceiling",
            ChoicesOverCeiling { .. } => "choices_over_ceiling",
            PromptOverCeiling { .. } => "prompt_over_ceiling",
            HeadTimeout => "head_timeout",
            BodyTimeout => "body_timeout",
            ClientClosed => "client_closed",
            Auth(AuthError::Missing) => "missing_api_key",
            Auth(AuthError::Unknown) => "invalid_api_key",
            Auth(AuthError::Expired { .. }) => "expired_api_key",
            Auth(AuthError::Revoked { .. }) => "revoked_api_key",
            ModelNotAllowed { .. } => "model_not_found",
            ToolNotAllowed { .. } => "tool_not_allowed",
            ServiceTierNotAllowed { .. } => "service_tier_not_allowed",
            OverBudget(_) => "budget_exceeded",
            RunLimit(_) => "run_limit_exceeded",
            RunTableFull { .. } => "run_table_full",
            RunHeader(_) => "invalid_run_header",
            RateLimited(_) => "rate_limit_exceeded",
            NoRoute => "unknown_url",
            UnknownModel(_) => "model_not_found",
            ResponseNotFound { .. } => "previous_response_not_found",
            Guardrail { .. } => "guardrail_blocked",
            GuardrailUnavailable { .. } => "guardrail_unavailable",
            UpstreamConnect { .. } => "upstream_unreachable",
            UpstreamTls { .. } => "upstream_tls_error",
            UpstreamConnectTimeout { .. } => "upstream_connect_timeout",
            UpstreamTimeout { .. } => "upstream_timeout",
            UpstreamClosed { .. } => "upstream_closed",
            UpstreamProtocol { .. } => "upstream_protocol_error",
            UpstreamStatus { .. } => "upstream_error_status",
            Unavailable { .. } => "upstream_unavailable",
            UpstreamResting { .. } => "upstream_rate_limited",
            Draining => "shutting_down",
            Fault { .. } => "gateway_fault",
            ClusterUnavailable => "cluster_unavailable",
        }
    }

    /// The error's OpenAI-style JSON body.
    pub fn write_body(&self, out: &mut BytesMut) {
        write_error_body(out, &self.to_string(), self.kind(), self.code());
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use GatewayError::*;
        match self {
            Request(e) => write!(f, "{e}"),
            Body(e) => write!(f, "{e}"),
            Translate(why) => write!(f, "cannot translate the request for this model's provider: {why}"),
            ChoicesOverCeiling { choices, cap } => write!(
                f,
                "{choices} answers (`n`, `best_of`) do not fit under this request's ceiling of {cap} output tokens (its team's or key's `request_output_tokens` or `request_usd`): ask for fewer"
            ),
            PromptOverCeiling { tokens, limit } => write!(
                f,
                "the prompt ({tokens} tokens) costs more than this request's ceiling of ${} at the model's price before any answer (its team's or key's `request_usd`): send a shorter prompt",
                format!("{}.{:06}", limit / 1_000_000, limit % 1_000_000).trim_end_matches('0').trim_end_matches('.')
            ),
            ThinkingOverCeiling { budget, cap } => write!(
                f,
                "`thinking.budget_tokens` ({budget}) does not fit under this request's ceiling of {cap} output tokens (its team's or key's `request_output_tokens` or `request_usd`): the provider takes a thinking budget of at least 1024, under `max_tokens`; ask without thinking, or for a smaller answer"
            ),
            HeadTimeout => f.write_str("the request head did not arrive in time"),
            BodyTimeout => f.write_str("the request body did not arrive in time"),
            ClientClosed => f.write_str("the client closed the connection before the request was complete"),
            Auth(e) => write!(f, "{e}"),
            OverBudget(e) => write!(f, "{e}"),
            RunLimit(e) => write!(f, "{e}"),
            RunTableFull { team } => write!(
                f,
                "team {team:?} has too many agent runs active on this gateway (runs with a request in the last hour); reuse a run id or retry later"
            ),
            RunHeader(why) => f.write_str(why),
            RateLimited(e) => write!(f, "{e}"),
            // Who may not use it stays in the record and the log, not in
            // the answer.
            ModelNotAllowed { model, .. } => {
                write!(f, "the model `{model}` does not exist or is not served by this gateway")
            }
            ToolNotAllowed { tool } => write!(
                f,
                "the tool `{tool}` is run and billed per call by the provider, which this gateway does not price; your team may not use it (an administrator can allow it with the team's `hosted_tools`)"
            ),
            ServiceTierNotAllowed { tier } => write!(
                f,
                "the service tier `{tier}` is priced above standard, which this gateway bills; your team may not ask for it (ask for `auto`, `default` or `flex`, or an administrator can allow it with the team's `service_tiers`)"
            ),
            NoRoute => f.write_str(
                "unknown path; this gateway serves POST /v1/chat/completions, POST /v1/responses, POST /v1/messages, POST /v1/messages/count_tokens, POST /v1/completions, POST /v1/embeddings, GET /v1/models, GET /healthz and GET /readyz",
            ),
            UnknownModel(m) => write!(f, "the model `{m}` does not exist or is not served by this gateway"),
            ResponseNotFound { id } => write!(f, "previous response with id `{id}` not found"),
            Guardrail { profile, rule } => {
                write!(f, "the request was blocked by guardrail rule `{rule}` (profile `{profile}`) and was not sent")
            }
            GuardrailUnavailable { profile, why } => write!(
                f,
                "the request could not be checked by guardrail profile `{profile}` ({why}), which blocks what it cannot check"
            ),
            UpstreamConnect { provider, cause } => write!(f, "cannot connect to upstream `{provider}`: {cause}"),
            UpstreamTls { provider, cause } => write!(f, "upstream `{provider}`: {cause}"),
            UpstreamConnectTimeout { provider } => write!(f, "connecting to upstream `{provider}` timed out"),
            UpstreamTimeout { provider, .. } => write!(f, "upstream `{provider}` did not answer in time"),
            UpstreamClosed { provider, cause: Some(cause), .. } => {
                write!(f, "upstream `{provider}` closed the connection: {cause}")
            }
            UpstreamClosed { provider, cause: None, .. } => write!(f, "upstream `{provider}` closed the connection early"),
            UpstreamProtocol { provider, cause } => write!(f, "upstream `{provider}`: {cause}"),
            UpstreamStatus { provider, status } => write!(f, "upstream `{provider}` answered {status}"),
            Unavailable { model } => {
                write!(f, "every upstream of model `{model}` is failing (circuit breakers open); retry shortly")
            }
            UpstreamResting { model, retry_after_s } => write!(
                f,
                "every upstream of model `{model}` is rate limited and asked for a pause (retry-after); retry in {retry_after_s} s"
            ),
            Draining => f.write_str("the gateway is shutting down; retry on another instance"),
            Fault { .. } => f.write_str(
                "the gateway failed while serving this request (a bug, logged with its request id); it was recorded, and billed only for what a provider had already done; retry",
            ),
            ClusterUnavailable => f.write_str(
                "budgets and rate limits cannot be checked: this gateway has lost its cluster store (Redis) and is set to refuse rather than guess; retry shortly or on another instance",
            ),
        }
    }
}

impl std::error::Error for GatewayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GatewayError::UpstreamConnect { cause, .. } => Some(cause),
            GatewayError::UpstreamClosed { cause: Some(cause), .. } => Some(cause),
            GatewayError::UpstreamProtocol { cause, .. } => Some(cause),
            GatewayError::Request(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_one_status_and_an_openai_body() {
        let p = || "p".to_string();
        let cases = [
            (GatewayError::Request(RequestError::LengthAndTransferEncoding), 400),
            (GatewayError::Request(RequestError::HeadTooLarge), 431),
            (GatewayError::Body(BodyError::MissingModel), 400),
            (GatewayError::HeadTimeout, 408),
            (GatewayError::NoRoute, 404),
            (GatewayError::Auth(AuthError::Missing), 401),
            (GatewayError::Auth(AuthError::Expired { key: "k".into() }), 401),
            (GatewayError::ModelNotAllowed { model: "m".into() }, 404),
            (GatewayError::UnknownModel("x".into()), 404),
            (GatewayError::ResponseNotFound { id: "resp_1".into() }, 404),
            (GatewayError::ToolNotAllowed { tool: "web_search".into() }, 403),
            (GatewayError::ServiceTierNotAllowed { tier: "priority".into() }, 403),
            (GatewayError::UpstreamConnect { provider: p(), cause: io::ErrorKind::ConnectionRefused.into() }, 502),
            (GatewayError::UpstreamTimeout { provider: p(), sent: true }, 504),
            (GatewayError::UpstreamClosed { provider: p(), cause: None, sent: true }, 502),
            (GatewayError::Draining, 503),
            (GatewayError::Fault { sent: true }, 500),
            (GatewayError::ClusterUnavailable, 503),
            (GatewayError::Guardrail { profile: p(), rule: "pii.email".into() }, 400),
            (GatewayError::GuardrailUnavailable { profile: p(), why: "x" }, 400),
            (GatewayError::Unavailable { model: "m".into() }, 503),
            (GatewayError::UpstreamStatus { provider: p(), status: 500 }, 502),
            (GatewayError::UpstreamStatus { provider: p(), status: 429 }, 429),
        ];
        for (e, status) in cases {
            assert_eq!(e.status(), status, "{e:?}");
            let mut body = BytesMut::new();
            e.write_body(&mut body);
            let s = std::str::from_utf8(&body).unwrap();
            assert!(s.starts_with("{\"error\":{\"message\":\""), "{s}");
            assert!(s.contains(e.code()));
        }
    }
}
