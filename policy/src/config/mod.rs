//! The configuration file: TOML parsed into typed structures once, at start
//! and on reload, with every problem reported as `file:line:column: what,
//! and how to fix it`.
//!
//! Parse, don't validate: after [`Config::parse`] succeeds, the hot path
//! holds resolved indexes (a target names its provider by position, a key
//! its team, a team its models as a bitset), durations, and money as integer
//! micro-dollars, never raw strings to look up.

pub mod clickhouse;
pub mod cluster;
mod raw;
mod report;
pub mod telemetry;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::keys::KeyTable;
use crate::route::Routes;
use crate::team::Team;

/// A model's price lives with the built-in price table; re-exported here,
/// where `[[models]] price` is parsed into it, for the paths that name it so.
pub use crate::prices::{LongContext, Price};

/// The configuration every bundled example and the no-argument start use.
pub const BUNDLED_DEFAULT: &str = include_str!("../../../examples/tollgate.toml");

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: Server,
    pub providers: Vec<Provider>,
    pub routes: Routes,
    pub teams: Vec<Team>,
    pub keys: KeyTable,
    pub guardrail_profiles: Vec<GuardrailProfile>,
    pub logging: Logging,
    pub routing: Routing,
    /// `http://host:port/path` that budget soft-threshold alerts are
    /// POSTed to (read at start).
    pub alert_webhook: Option<String>,
    /// `[cluster]`: budgets and rate limits shared with other nodes through
    /// Redis (read at start). `None`: this node alone.
    pub cluster: Option<cluster::Cluster>,
    /// `[cache]`: answers kept and served again (read at start for the
    /// store's size; the rest on each request). `None`: no cache.
    pub cache: Option<Cache>,
    /// `[telemetry]`: OpenTelemetry traces over OTLP/HTTP (read at start).
    /// `None`: no spans.
    pub telemetry: Option<telemetry::Telemetry>,
    /// `[clickhouse]`: records also inserted into ClickHouse (read at
    /// start). `None`: local files only.
    pub clickhouse: Option<clickhouse::ClickHouse>,
    /// With `[logging] capture_bodies` or any team's: the guard that redacts personal
    /// data and secrets from captured prompts and answers.
    pub capture_guard: Option<std::sync::Arc<crate::guard::Guard>>,
    /// Where the text came from and its SHA-256, for the admin listener.
    pub source: Source,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub file: String,
    pub sha256: String,
}

/// A viewer token of the admin listener: the digest, and the teams (by
/// name, checked against `[[teams]]` at load) whose figures it sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewer {
    pub token: crate::keys::KeyHash,
    pub teams: Vec<String>,
    /// Sees its teams' captured prompts and answers.
    pub bodies: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    pub listen: SocketAddr,
    /// `None`: no admin listener.
    pub admin_listen: Option<SocketAddr>,
    /// Host names the admin listener answers to besides addresses and
    /// `localhost` (lower case).
    pub admin_hosts: Vec<String>,
    /// Digests of the tokens the admin listener accepts. Empty: reads are
    /// open (on loopback by default) and `POST /admin/reload` is refused.
    pub admin_tokens: Vec<crate::keys::KeyHash>,
    /// Tokens that see only some teams' figures on the admin listener, and
    /// change nothing.
    pub viewers: Vec<Viewer>,
    /// Worker threads; 0 means one per available core.
    pub workers: usize,
    pub head_bytes_max: usize,
    pub uri_bytes_max: usize,
    pub body_bytes_max: usize,
    /// The Responses API turns kept for providers that keep none: bytes on
    /// the node, and how long each.
    pub responses_turns_bytes_max: usize,
    pub responses_turns_ttl: std::time::Duration,
    pub connections_per_worker_max: usize,
    /// Connections one client address may hold on one worker; 0: no cap.
    pub connections_per_client_max: usize,
    /// Where spend is kept across restarts; `None`: in memory only.
    pub ledger_file: Option<String>,
    pub timeouts: Timeouts,
    /// TLS on the client listener; `None`: plain HTTP.
    pub tls: Option<ListenerTls>,
}

/// TLS terminated on the client listener. The files are read when the
/// configuration is applied (at start and on every reload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// PEM CAs that sign client certificates (mTLS).
    pub client_ca_file: Option<String>,
    /// With a client CA: refuse clients without a certificate (`required`,
    /// the default) or let them in (`optional`).
    pub client_auth_required: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From the first byte of a request to the end of its head.
    pub head_read: Duration,
    /// For the whole request body once the head has arrived.
    pub body_read: Duration,
    /// An idle keep-alive connection is closed after this.
    pub idle_keepalive: Duration,
    pub upstream_connect: Duration,
    /// From the request sent upstream to the first byte of its answer.
    pub upstream_first_byte: Duration,
    /// From the head's arrival to the last byte of the answer, streams included.
    pub request: Duration,
    /// How long in-flight requests may finish after SIGTERM.
    pub drain: Duration,
    /// A write to a client that takes no byte for this long ends its
    /// connection (a slow reader cannot hold a stream for `request`).
    pub write_idle: Duration,
    /// The most the writes of one relayed stream may wait for its client,
    /// in all: a client that reads a trickle (a byte now and then, never
    /// `write_idle` without one) is let go as one that left, so that it
    /// cannot hold its upstream waiting until `request`.
    pub write_stall: Duration,
    /// A new connection's wait for its first request (shorter than
    /// `idle_keepalive`: one that never sends holds a descriptor for
    /// nothing).
    pub first_request: Duration,
}

impl Config {
    /// Each model target that no price covers (neither the model's `price`
    /// nor a built-in one), as `(model, provider, upstream model)`: its
    /// tokens are recorded at no cost, so the operator is told at start and
    /// on every reload. The bundled mock's targets are left out.
    pub fn unpriced_targets(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for route in self.routes.all() {
            for t in &route.targets {
                let provider = &self.providers[t.provider];
                if provider.kind != ProviderKind::Mock && route.price_of(Some(t)).is_none() {
                    out.push((route.name.clone(), provider.name.clone(), t.upstream_model.clone()));
                }
            }
        }
        out
    }
}

/// The header a `gemini` provider's key goes in.
pub const GEMINI_KEY_HEADER: &str = "x-goog-api-key";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// The bundled mock upstream, served by the gateway process itself.
    Mock,
    OpenAi,
    OpenAiCompatible,
    /// Anthropic's Messages API: requests and answers are translated.
    Anthropic,
    /// Google's Gemini API (`kind = "gemini"`, the key in
    /// `x-goog-api-key`) or Vertex AI (`kind = "vertex"`, a bearer token):
    /// the same `generateContent` wire format, translated through chat
    /// completions, the model in the URL.
    Gemini,
    /// Amazon Bedrock's Converse API: translated through chat completions,
    /// every request signed (SigV4), streams in AWS's binary event framing.
    Bedrock,
}

impl ProviderKind {
    /// A kind whose API is not OpenAI's: requests and answers are
    /// translated (no usage chunk to ask for, no Responses API, no guard
    /// model).
    pub fn translated(self) -> bool {
        matches!(self, ProviderKind::Anthropic | ProviderKind::Gemini | ProviderKind::Bedrock)
    }
}

/// How a Bedrock provider signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsSettings {
    pub region: String,
    pub credentials: AwsCredentials,
}

/// Where a Bedrock provider's credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AwsCredentials {
    /// Read at load (from the environment or a shared credentials file),
    /// read again on every reload.
    Static(AwsKeys),
    /// The instance's role, from its metadata service (IMDSv2) at this
    /// base URL: fetched by the engine at load and before they expire.
    Instance { imds_url: String },
}

/// A key pair and, for temporary credentials, its session token. `Debug`
/// prints the key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for AwsKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKeys").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// Settings of the in-process mock provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockSettings {
    pub latency_ms: Option<u64>,
    pub reply_words: Option<usize>,
    pub stream_chunks: Option<usize>,
    pub chunk_delay_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// Host and port to connect to; `None` for the in-process mock, whose
    /// address is known only once it has bound.
    pub host: Option<(String, u16)>,
    /// The value of the Host header sent upstream.
    pub host_header: String,
    /// Path prefix the API lives under, without a trailing slash (`/v1`).
    pub base_path: String,
    /// A query string from the base URL, `?` included (Azure's
    /// `?api-version=...`), appended to every request path.
    pub query: String,
    /// The header the credential goes in, lower-case, instead of the kind's
    /// default.
    pub api_key_header: Option<String>,
    /// The provider's API key, if any: sent as `Authorization: Bearer`
    /// (OpenAI kinds) or `x-api-key` (Anthropic). Never logged.
    pub credential: Option<Credential>,
    /// Set for `https://` base URLs.
    pub tls: Option<TlsSettings>,
    /// Streamed requests to this OpenAI-style provider ask for the usage
    /// chunk (`stream_options.include_usage`) even when the client did
    /// not, so that every stream is billed from the provider's own counts;
    /// the gateway keeps that chunk from clients that did not ask.
    pub stream_usage: bool,
    /// The provider serves OpenAI's Responses API (`POST /responses`): a
    /// `/v1/responses` request goes to it as it came. Otherwise it is
    /// translated to chat completions (to Anthropic messages through chat).
    pub responses_api: bool,
    /// An Anthropic provider: requests translated from other APIs mark a
    /// long system prompt and a long tool list with `cache_control`, so
    /// that the provider caches them (`prompt_cache_marks = true`).
    pub prompt_cache_marks: bool,
    /// Which client headers reach this provider.
    pub forward_headers: crate::forward::ForwardHeaders,
    pub mock: MockSettings,
    /// Bedrock providers: region and credentials.
    pub aws: Option<AwsSettings>,
}

/// How to reach a provider over TLS. Certificate verification is always
/// on: the system's roots, plus `ca_file` if given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The name sent as SNI and checked against the certificate.
    pub server_name: String,
    pub ca_file: Option<String>,
}

/// A provider credential. `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(pub String);

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(..)")
    }
}

/// Fallback, retry and circuit-breaker settings, for every route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routing {
    /// Attempts per request across all targets (the first included).
    pub max_attempts: u32,
    /// Base of the exponential back-off, with full jitter, before a target
    /// is tried again in the same request.
    pub retry_backoff: Duration,
    /// Upstream statuses that move a request to the next target.
    pub fallback_on_status: Vec<u16>,
    /// Consecutive failures that open a target's breaker.
    pub breaker_failures: u32,
    /// How long an open breaker skips its target before one probe.
    pub breaker_cooldown: Duration,
    /// Retries (attempts after a request's first) a target takes, per core:
    /// at most this share, per mille, of the first attempts it received…
    pub retry_budget_permille: u32,
    /// …plus this many banked, so that a quiet target can still be retried.
    pub retry_budget_min: u32,
    /// The longest an upstream's `retry-after` keeps a target out of the
    /// plans.
    pub retry_after_max: Duration,
}

/// A guardrail profile, as written and compiled.
#[derive(Clone, Debug)]
pub struct GuardrailProfile {
    pub name: String,
    pub spec: crate::guard::ProfileSpec,
    pub guard: std::sync::Arc<crate::guard::Guard>,
    /// External classifiers, called in order before a request is sent.
    pub classifiers: Vec<Classifier>,
    /// A digest of every rule above ([`GuardrailProfile::rules_of`]): the
    /// answer cache keys entries by it, not by the profile's name, so that
    /// a reload that changes a profile's rules (answers scanned, an action,
    /// a deny word) never serves an answer shaped under the old ones.
    pub rules: [u8; 32],
}

impl GuardrailProfile {
    /// The digest of a profile's rules and classifiers: SHA-256 of their
    /// `Debug` forms (plain data, no maps: the same on every node and run,
    /// which the cache's shared tier needs), and of the guard's version
    /// (its detectors change with the binary).
    pub fn rules_of(spec: &crate::guard::ProfileSpec, classifiers: &[Classifier]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(crate::guard::injection::VERSION.as_bytes());
        h.update(format!("{spec:?}\n{classifiers:?}").as_bytes());
        h.finalize().into()
    }
}

impl PartialEq for GuardrailProfile {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec && self.classifiers == other.classifiers
    }
}

/// Which API a classifier speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassifierKind {
    /// Hugging Face text-embeddings-inference, `POST /predict`: a list of
    /// labels with scores (ProtectAI's deberta-v3 prompt-injection model,
    /// Meta's Prompt Guard).
    Tei,
    /// An OpenAI-compatible `POST /v1/moderations`.
    Moderations,
    /// A guard model answering a chat completion with `safe` or `unsafe`
    /// (Llama Guard), reached through one of the gateway's routes.
    Chat,
    /// An organisation's own check: the texts out, a verdict back.
    Webhook,
    /// A Microsoft Presidio analyzer server, `POST /analyze`: one text
    /// per call, entities back with scores and offsets in characters.
    Presidio,
    /// The injection model the binary carries ([`crate::guard::model`]):
    /// scored on the worker, no provider, no round trip.
    Builtin,
}

impl ClassifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClassifierKind::Tei => "tei",
            ClassifierKind::Moderations => "moderations",
            ClassifierKind::Chat => "chat",
            ClassifierKind::Webhook => "webhook",
            ClassifierKind::Presidio => "presidio",
            ClassifierKind::Builtin => "builtin",
        }
    }
}

/// An external classifier of a guardrail profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Classifier {
    /// Its rule id is `classifier.<name>`.
    pub name: String,
    pub kind: ClassifierKind,
    /// The provider (by index) whose address, TLS and credential it is
    /// reached with; unused by `builtin`, which is not reached.
    pub provider: usize,
    /// The path asked, under the provider's base path.
    pub path: String,
    /// The model named in the request (moderations; the route's upstream
    /// model for `chat`).
    pub model: Option<String>,
    /// TEI labels that are a hit (upper-cased).
    pub labels: Vec<String>,
    /// The score at which a label or category is a hit.
    pub threshold: f64,
    /// `Block` or `Flag`.
    pub action: crate::guard::Action,
    /// The most a request waits for the verdict.
    pub timeout: Duration,
    /// A classifier that cannot answer in time lets the request through.
    pub fail_open: bool,
    /// The most of a request's text sent (its last bytes: the newest
    /// message is what an injection rides in).
    pub text_bytes_max: usize,
    /// Answers are asked about too: a JSON answer whole, a stream every
    /// `stream_window_bytes` of its text.
    pub answers: bool,
    /// A streamed answer's text is held back from the client until a
    /// classifier has passed it, this many bytes at a time (the smallest
    /// of a profile's answering classifiers decides); each window asks
    /// about the answer so far, its last `text_bytes_max` bytes.
    pub stream_window_bytes: usize,
}

/// The answer cache: complete, successful answers kept on each core and
/// served again to the same request from the same team (or key).
#[derive(Clone, Debug, PartialEq)]
pub struct Cache {
    /// The node's store, split evenly between its workers.
    pub bytes_max: u64,
    /// An answer larger than this is not kept.
    pub entry_bytes_max: u64,
    /// How long an entry is served, unless a request sets
    /// `x-tollgate-cache-ttl`.
    pub ttl: Duration,
    /// Entries are shared by a team's keys (`team`) or kept per key.
    pub per_key: bool,
    /// Requests that sample (a `temperature` above 0, or none, which
    /// providers take as 1) are cached too.
    pub sampled: bool,
    /// With `[cluster]`, answers are kept in its Redis too (the shared
    /// tier); `false` keeps them on each core only, so that what tenants
    /// cache never competes with the cluster's counters for Redis memory.
    pub shared: bool,
    /// Semantic lookups, when a model for embeddings is named.
    pub semantic: Option<SemanticCache>,
}

/// `[cache] semantic_*`: a miss is looked up again by the meaning of its
/// last user message, among earlier requests that match it in everything
/// else.
#[derive(Clone, Debug, PartialEq)]
pub struct SemanticCache {
    /// The route (index into `Config::routes`) whose targets embed.
    pub route: usize,
    /// Cosine similarity from which an earlier answer is served.
    pub threshold: f32,
    /// Vectors kept by the node, split evenly between the workers.
    pub entries_max: usize,
    /// The embedding call's time limit (then: a plain miss).
    pub timeout: Duration,
}

/// The request log: one JSON line per request under `dir`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Logging {
    /// `None`: no request records.
    pub dir: Option<String>,
    /// A file past this size is continued in the next part.
    pub file_bytes_max: u64,
    /// Records carry the prompt and answer, redacted, for teams that do
    /// not say otherwise (`[[teams]] capture_bodies`).
    pub capture_bodies: bool,
    /// Captured bodies are removed from records this many days after the
    /// record's UTC day ends; `None`: kept as long as the records.
    pub capture_retention_days: Option<u32>,
}

/// Every problem found in a configuration file.
#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The environment and files a configuration refers to (credentials), and
/// the machine's name (the cluster tier's default node id), passed in so
/// that validation stays free of process state and tests can stand in.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
    fn read_file(&self, path: &str) -> std::io::Result<String>;
    /// The host name, or `None` when it cannot be known.
    fn hostname(&self) -> Option<String>;
}

/// The process environment and file system.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    /// Linux's `/proc/sys/kernel/hostname`: this crate has no libc, and
    /// `HOSTNAME` is a shell variable that is not always exported.
    fn hostname(&self) -> Option<String> {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![Problem {
                file: file.clone(),
                line: 0,
                column: 0,
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Config::parse(&file, &text, env)
    }

    /// Validates configuration text; `file` names it in messages.
    pub fn parse(file: &str, text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        validate::parse(file, text, env)
    }

    /// The index of a team by name.
    pub fn team(&self, name: &str) -> Option<usize> {
        self.teams.iter().position(|t| t.name == name)
    }

    /// The ceilings on one request of `key`: the tighter of its team's and
    /// its own, as (output tokens, cost in micro-dollars).
    pub fn request_ceilings(&self, key: &crate::VirtualKey) -> (Option<u64>, Option<crate::team::MicroUsd>) {
        let team = self.teams.get(key.team).map(|t| &t.budget);
        let min = |a: Option<u64>, b: Option<u64>| a.into_iter().chain(b).min();
        (
            min(team.and_then(|b| b.request_output_tokens), key.budget.request_output_tokens),
            min(team.and_then(|b| b.request), key.budget.request),
        )
    }

    /// The guardrail profile of the team at `team`, if it has one.
    pub fn team_profile(&self, team: usize) -> Option<&GuardrailProfile> {
        self.teams.get(team)?.guardrail_profile.and_then(|p| self.guardrail_profiles.get(p))
    }
}

#[cfg(test)]
mod tests;
