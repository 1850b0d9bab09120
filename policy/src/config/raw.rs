//! The configuration file as written: serde structures with spans, so that
//! every problem can point at its line and column. Validation
//! ([`super::validate`]) turns these into the typed [`super::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::value::Datetime;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub teams: Vec<RawTeam>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    #[serde(default)]
    pub guardrail_profiles: Vec<RawGuardrailProfile>,
    #[serde(default)]
    pub logging: RawLogging,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub alerts: RawAlerts,
    pub cluster: Option<super::cluster::RawCluster>,
    pub cache: Option<RawCache>,
    pub telemetry: Option<super::telemetry::RawTelemetry>,
    pub clickhouse: Option<super::clickhouse::RawClickHouse>,
}

/// The answer cache (`[cache]`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub enabled: Option<bool>,
    pub bytes_max: Option<Spanned<u64>>,
    pub entry_bytes_max: Option<Spanned<u64>>,
    pub ttl_s: Option<Spanned<u64>>,
    pub scope: Option<Spanned<String>>,
    pub sampled: Option<bool>,
    /// With `[cluster]`: whether answers are kept in its Redis too.
    pub shared: Option<bool>,
    /// A model of this gateway that serves embeddings: turns on semantic
    /// lookups.
    pub semantic_model: Option<Spanned<String>>,
    pub semantic_threshold: Option<Spanned<f64>>,
    pub semantic_entries_max: Option<Spanned<usize>>,
    pub semantic_timeout_ms: Option<Spanned<u64>>,
}

/// Where alerts for people go.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub webhook_url: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRouting {
    pub max_attempts: u32,
    pub retry_backoff_ms: u64,
    pub fallback_on_status: Vec<Spanned<u16>>,
    pub breaker_failures: u32,
    pub breaker_cooldown_ms: u64,
    pub retry_budget: Spanned<f64>,
    pub retry_budget_min: u32,
    pub retry_after_max_s: u64,
}

impl Default for RawRouting {
    fn default() -> Self {
        RawRouting {
            max_attempts: 3,
            retry_backoff_ms: 25,
            fallback_on_status: [429, 500, 502, 503, 504].into_iter().map(|s| Spanned::new(0..0, s)).collect(),
            breaker_failures: 5,
            breaker_cooldown_ms: 10_000,
            retry_budget: Spanned::new(0..0, 0.2),
            retry_budget_min: 10,
            retry_after_max_s: 60,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: Spanned<String>,
    pub admin_listen: Spanned<String>,
    /// Names the admin listener answers to besides IP addresses and
    /// `localhost` (a Prometheus that scrapes it by name, say).
    pub admin_hosts: Vec<String>,
    /// SHA-256 digests of the admin tokens (`tollgate keygen --admin`).
    pub admin_tokens: Vec<Spanned<String>>,
    /// Tokens that see the figures of some teams only
    /// (`tollgate keygen --viewer`).
    pub viewer_tokens: Vec<Spanned<RawViewer>>,
    pub workers: usize,
    pub head_bytes_max: usize,
    pub uri_bytes_max: usize,
    pub body_bytes_max: usize,
    /// The Responses API turns the gateway keeps for providers that keep
    /// none: bytes on the node, and seconds each.
    pub responses_turns_bytes_max: usize,
    pub responses_turns_ttl_s: u64,
    pub connections_per_worker_max: usize,
    pub connections_per_client_max: usize,
    pub ledger_file: Option<String>,
    pub timeouts: RawTimeouts,
    pub tls: Option<RawListenerTls>,
}

/// A viewer token: its digest and the teams whose figures it sees.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawViewer {
    pub token: Spanned<String>,
    pub teams: Vec<Spanned<String>>,
    /// Whether it sees the captured prompts and answers in its teams'
    /// records (the explorer's detail); unset, it does not.
    #[serde(default)]
    pub bodies: bool,
}

/// TLS on the client listener.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    pub cert_file: Spanned<String>,
    pub key_file: Spanned<String>,
    pub client_ca_file: Option<Spanned<String>>,
    pub client_auth: Option<Spanned<String>>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: Spanned::new(0..0, "127.0.0.1:8080".to_string()),
            admin_listen: Spanned::new(0..0, "127.0.0.1:9090".to_string()),
            admin_hosts: Vec::new(),
            admin_tokens: Vec::new(),
            viewer_tokens: Vec::new(),
            workers: 0,
            head_bytes_max: 16 * 1024,
            uri_bytes_max: 8 * 1024,
            body_bytes_max: 8 * 1024 * 1024,
            responses_turns_bytes_max: 64 * 1024 * 1024,
            responses_turns_ttl_s: 3600,
            connections_per_worker_max: 16 * 1024,
            connections_per_client_max: 1024,
            ledger_file: None,
            timeouts: RawTimeouts::default(),
            tls: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTimeouts {
    pub head_read_ms: u64,
    pub body_read_ms: u64,
    pub idle_keepalive_ms: u64,
    pub upstream_connect_ms: u64,
    pub upstream_first_byte_ms: u64,
    pub request_ms: u64,
    pub drain_ms: u64,
    pub write_idle_ms: u64,
    pub write_stall_ms: u64,
    pub first_request_ms: u64,
}

impl Default for RawTimeouts {
    fn default() -> Self {
        RawTimeouts {
            head_read_ms: 10_000,
            body_read_ms: 30_000,
            idle_keepalive_ms: 75_000,
            upstream_connect_ms: 3_000,
            // Reasoning models can think for minutes before the first token.
            upstream_first_byte_ms: 300_000,
            request_ms: 900_000,
            drain_ms: 30_000,
            write_idle_ms: 30_000,
            write_stall_ms: 60_000,
            first_request_ms: 10_000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: Spanned<String>,
    pub kind: Spanned<String>,
    pub base_url: Option<Spanned<String>>,
    pub api_key_env: Option<Spanned<String>>,
    pub api_key_file: Option<Spanned<String>>,
    /// The header the API key goes in (`api-key` for Azure OpenAI); the
    /// default is `Authorization: Bearer` (`x-api-key` for Anthropic).
    pub api_key_header: Option<Spanned<String>>,
    /// PEM file of extra CA certificates trusted for this provider.
    pub ca_file: Option<Spanned<String>>,
    /// Ask OpenAI-style upstreams for a stream's usage chunk (default on).
    pub stream_usage: Option<bool>,
    /// The provider serves OpenAI's Responses API itself (default: for
    /// `openai` and `mock`); otherwise `/v1/responses` is translated to
    /// chat completions for it.
    pub responses_api: Option<Spanned<bool>>,
    /// Mark long system prompts and tool lists of translated requests with
    /// Anthropic's `cache_control` (Anthropic providers).
    pub prompt_cache_marks: Option<Spanned<bool>>,
    /// Client headers this provider receives besides the built-in
    /// allow-list (names, or `prefix*`).
    #[serde(default)]
    pub forward_headers: Vec<Spanned<String>>,
    #[serde(default)]
    pub mock: super::MockSettings,
    /// Bedrock: the AWS region (default `AWS_REGION`, then
    /// `AWS_DEFAULT_REGION`).
    pub region: Option<Spanned<String>>,
    /// Bedrock: where the AWS credentials come from: `env` (default),
    /// `file` or `instance`.
    pub aws_credentials: Option<Spanned<String>>,
    /// With `aws_credentials = "file"`: the shared credentials file
    /// (default `$HOME/.aws/credentials`) and its profile (default
    /// `AWS_PROFILE`, then `default`).
    pub aws_credentials_file: Option<Spanned<String>>,
    pub aws_profile: Option<Spanned<String>>,
    /// With `aws_credentials = "instance"`: the instance metadata service
    /// (default `http://169.254.169.254`).
    pub aws_imds_url: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: Spanned<String>,
    pub targets: Vec<RawTarget>,
    pub price: Option<RawPrice>,
    /// Whether answers of this model are cached (with `[cache]`).
    pub cache: Option<Spanned<bool>>,
    /// Whether a session's requests keep to one target among equals.
    pub affinity: Option<bool>,
    /// Whether the model reasons by default without streaming it (the
    /// built-in list of reasoning models when absent).
    pub reasoning: Option<bool>,
    /// Statuses that move this model's requests on, in place of
    /// `[routing]`'s.
    pub fallback_on_status: Option<Vec<Spanned<u16>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub provider: Spanned<String>,
    pub model: Option<String>,
    pub priority: Option<u32>,
    pub weight: Option<Spanned<u32>>,
}

/// USD per million tokens, as providers publish them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input_per_mtok: Spanned<f64>,
    pub output_per_mtok: Spanned<f64>,
    pub cached_input_per_mtok: Option<Spanned<f64>>,
    /// Prompt tokens written to the provider's cache (Anthropic charges
    /// them above the input price); 1.25 times the input price when
    /// absent.
    pub cache_write_per_mtok: Option<Spanned<f64>>,
    /// Anthropic's one-hour cache writes; twice the input price (at least
    /// the write price) when absent.
    pub cache_write_1h_per_mtok: Option<Spanned<f64>>,
    /// Audio tokens in and out; the text prices when absent.
    pub audio_input_per_mtok: Option<Spanned<f64>>,
    pub audio_output_per_mtok: Option<Spanned<f64>>,
    /// Every rate's multiple for a request served at the provider's
    /// priority tier (2 when absent) and its flex tier (0.5 when absent
    /// and every target is of kind `openai`, else 1).
    pub priority_factor: Option<Spanned<f64>>,
    pub flex_factor: Option<Spanned<f64>>,
    /// The rates of a request whose prompt passes `above_tokens`.
    pub long_context: Option<Spanned<RawLongContext>>,
}

/// A price's long-context tier, in the same units.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLongContext {
    pub above_tokens: Spanned<u64>,
    pub input_per_mtok: Spanned<f64>,
    pub output_per_mtok: Spanned<f64>,
    pub cached_input_per_mtok: Option<Spanned<f64>>,
    pub cache_write_per_mtok: Option<Spanned<f64>>,
    pub cache_write_1h_per_mtok: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTeam {
    pub name: Spanned<String>,
    #[serde(default)]
    pub models: Vec<Spanned<String>>,
    #[serde(default)]
    pub budget: Option<RawBudget>,
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
    pub guardrails: Option<Spanned<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Whether this team's answers are cached (with `[cache]`).
    pub cache: Option<Spanned<bool>>,
    /// Whether this team's prompts and answers are captured in its
    /// records; unset, `[logging] capture_bodies` says.
    pub capture_bodies: Option<bool>,
    /// Tools the provider runs and bills per call that this team may offer
    /// it (type names or their prefixes; `"*"` for any).
    #[serde(default)]
    pub hosted_tools: Vec<Spanned<String>>,
    /// Service tiers priced above standard (`priority`, `scale`) that this
    /// team's requests may ask for; `"*"` for any.
    #[serde(default)]
    pub service_tiers: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    pub daily_usd: Option<Spanned<f64>>,
    pub monthly_usd: Option<Spanned<f64>>,
    pub soft_threshold: Option<Spanned<f64>>,
    /// Ceilings on one request: its cost and its output tokens.
    pub request_usd: Option<Spanned<f64>>,
    pub request_output_tokens: Option<u64>,
    pub strict: Option<Spanned<bool>>,
    /// Limits on each agent run (`x-tollgate-run`): its cost, tokens,
    /// requests and wall time.
    pub run_usd: Option<Spanned<f64>>,
    pub run_tokens: Option<u64>,
    pub run_requests: Option<u64>,
    pub run_wall_s: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub name: Spanned<String>,
    pub team: Spanned<String>,
    pub sha256: Spanned<String>,
    pub expires: Option<Spanned<Datetime>>,
    #[serde(default)]
    pub revoked: bool,
    pub models: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub budget: Option<RawBudget>,
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
}

/// A guardrail profile: an action per category, overrides per detector,
/// and the profile's own deny rules.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardrailProfile {
    pub name: Spanned<String>,
    pub pii: Option<Spanned<String>>,
    pub secrets: Option<Spanned<String>>,
    pub injection: Option<Spanned<String>>,
    pub custom: Option<Spanned<String>>,
    #[serde(default)]
    pub detectors: BTreeMap<String, Spanned<String>>,
    pub injection_threshold: Option<Spanned<u32>>,
    #[serde(default)]
    pub deny_words: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny_patterns: Vec<Spanned<String>>,
    pub responses: Option<bool>,
    pub on_error: Option<Spanned<String>>,
    #[serde(default)]
    pub classifiers: Vec<RawClassifier>,
}

/// An external classifier a profile calls before a request is sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassifier {
    pub name: Spanned<String>,
    pub kind: Spanned<String>,
    pub provider: Option<Spanned<String>>,
    pub route: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub model: Option<String>,
    pub labels: Option<Vec<String>>,
    pub threshold: Option<Spanned<f64>>,
    pub action: Option<Spanned<String>>,
    pub timeout_ms: Option<Spanned<u64>>,
    pub on_error: Option<Spanned<String>>,
    pub text_bytes_max: Option<Spanned<usize>>,
    pub answers: Option<bool>,
    pub stream_window_bytes: Option<Spanned<usize>>,
}

/// The request log.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    pub dir: Option<String>,
    pub file_bytes_max: Option<u64>,
    #[serde(default)]
    pub capture_bodies: bool,
    /// Days after a record's UTC day ends that its captured bodies are
    /// removed from it.
    pub capture_retention_days: Option<Spanned<u32>>,
}
