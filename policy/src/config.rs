//! The configuration file: TOML parsed into typed structures once, at start
//! and on reload, with every problem reported as `file:line:column: what,
//! and how to fix it`.
//!
//! Parse, don't validate: after [`Config::parse`] succeeds, the hot path
//! holds resolved indexes (a target names its provider by position, not by
//! string) and durations, never raw strings to look up.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::route::{Route, Routes, Target};

/// The configuration every bundled example and the no-argument start use.
pub const BUNDLED_DEFAULT: &str = include_str!("../../examples/tollgate.toml");

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: Server,
    pub providers: Vec<Provider>,
    pub routes: Routes,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    pub listen: SocketAddr,
    /// Worker threads; 0 means one per available core.
    pub workers: usize,
    pub head_bytes_max: usize,
    pub uri_bytes_max: usize,
    pub body_bytes_max: usize,
    pub connections_per_worker_max: usize,
    pub timeouts: Timeouts,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// The bundled mock upstream, served by the gateway process itself.
    Mock,
    OpenAi,
    OpenAiCompatible,
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
    /// The `Authorization` value sent upstream, if any. Never logged.
    pub credential: Option<Credential>,
    pub mock: MockSettings,
}

/// A provider credential. `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(pub String);

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(..)")
    }
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

// ---- The file as written -------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    providers: Vec<RawProvider>,
    #[serde(default)]
    models: Vec<RawModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: Spanned<String>,
    workers: usize,
    head_bytes_max: usize,
    uri_bytes_max: usize,
    body_bytes_max: usize,
    connections_per_worker_max: usize,
    timeouts: RawTimeouts,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: Spanned::new(0..0, "127.0.0.1:8080".to_string()),
            workers: 0,
            head_bytes_max: 16 * 1024,
            uri_bytes_max: 8 * 1024,
            body_bytes_max: 8 * 1024 * 1024,
            connections_per_worker_max: 16 * 1024,
            timeouts: RawTimeouts::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTimeouts {
    head_read_ms: u64,
    body_read_ms: u64,
    idle_keepalive_ms: u64,
    upstream_connect_ms: u64,
    upstream_first_byte_ms: u64,
    request_ms: u64,
    drain_ms: u64,
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
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: Spanned<String>,
    kind: Spanned<String>,
    base_url: Option<Spanned<String>>,
    api_key_env: Option<Spanned<String>>,
    #[serde(default)]
    mock: MockSettings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: Spanned<String>,
    targets: Vec<RawTarget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    provider: Spanned<String>,
    model: Option<String>,
}

// ---- Validation ----------------------------------------------------------

struct Report<'a> {
    file: &'a str,
    text: &'a str,
    problems: Vec<Problem>,
}

impl Report<'_> {
    fn add(&mut self, span: std::ops::Range<usize>, message: String) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem { file: self.file.to_string(), line, column, message });
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

/// The environment, passed in so that validation stays free of process state.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
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
        let mut report = Report { file, text, problems: Vec::new() };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                report.add(e.span().unwrap_or(0..0), e.message().trim_end().replace('\n', " "));
                return Err(ConfigError { problems: report.problems });
            }
        };
        let server = validate_server(&raw.server, &mut report);
        let providers = validate_providers(&raw.providers, env, &mut report);
        let routes = validate_models(&raw.models, &raw.providers, &mut report);
        if report.problems.is_empty() {
            Ok(Config { server: server.expect("no problems"), providers, routes })
        } else {
            Err(ConfigError { problems: report.problems })
        }
    }
}

fn validate_server(raw: &RawServer, report: &mut Report<'_>) -> Option<Server> {
    let listen = match raw.listen.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            report.add(
                raw.listen.span(),
                format!("listen address {:?} is not IP:port; write it like \"127.0.0.1:8080\"", raw.listen.get_ref()),
            );
            None
        }
    };
    let t = &raw.timeouts;
    let ms = Duration::from_millis;
    Some(Server {
        listen: listen?,
        workers: raw.workers,
        head_bytes_max: raw.head_bytes_max.max(1024),
        uri_bytes_max: raw.uri_bytes_max.max(256),
        body_bytes_max: raw.body_bytes_max,
        connections_per_worker_max: raw.connections_per_worker_max.max(1),
        timeouts: Timeouts {
            head_read: ms(t.head_read_ms),
            body_read: ms(t.body_read_ms),
            idle_keepalive: ms(t.idle_keepalive_ms),
            upstream_connect: ms(t.upstream_connect_ms),
            upstream_first_byte: ms(t.upstream_first_byte_ms),
            request: ms(t.request_ms),
            drain: ms(t.drain_ms),
        },
    })
}

fn validate_providers(raw: &[RawProvider], env: &dyn Env, report: &mut Report<'_>) -> Vec<Provider> {
    let mut out = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        if raw[..i].iter().any(|q| q.name.get_ref() == p.name.get_ref()) {
            report.add(
                p.name.span(),
                format!("provider {:?} is defined twice; give each provider its own name", p.name.get_ref()),
            );
        }
        let kind = match p.kind.get_ref().as_str() {
            "mock" => ProviderKind::Mock,
            "openai" => ProviderKind::OpenAi,
            "openai-compatible" => ProviderKind::OpenAiCompatible,
            other => {
                report.add(
                    p.kind.span(),
                    format!("unknown provider kind {other:?}; use one of \"mock\", \"openai\", \"openai-compatible\""),
                );
                continue;
            }
        };
        let (host, host_header, base_path) = match (&p.base_url, kind) {
            (None, ProviderKind::Mock) => (None, "mock".to_string(), "/v1".to_string()),
            (None, _) => {
                report.add(
                    p.kind.span(),
                    format!("provider {:?} needs a base_url, such as \"http://127.0.0.1:9000/v1\"", p.name.get_ref()),
                );
                continue;
            }
            (Some(url), _) => match parse_http_url(url.get_ref()) {
                Ok((h, port, path)) => {
                    let header = if port == 80 { h.clone() } else { format!("{h}:{port}") };
                    (Some((h, port)), header, path)
                }
                Err(why) => {
                    report.add(url.span(), why);
                    continue;
                }
            },
        };
        let credential = match &p.api_key_env {
            None => None,
            Some(var) => match env.var(var.get_ref()) {
                Some(v) if !v.is_empty() => Some(Credential(format!("Bearer {v}"))),
                _ => {
                    report.add(
                        var.span(),
                        format!(
                            "environment variable {} is not set; export it with the provider's API key",
                            var.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        out.push(Provider {
            name: p.name.get_ref().clone(),
            kind,
            host,
            host_header,
            base_path,
            credential,
            mock: p.mock,
        });
    }
    out
}

/// Splits `http://host:port/path`. HTTPS upstreams need the TLS client,
/// which is not built yet, so they are refused with that reason.
fn parse_http_url(url: &str) -> Result<(String, u16, String), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(if url.starts_with("https://") {
            format!("base_url {url:?}: https upstreams are not supported yet; use an http:// URL on a trusted network")
        } else {
            format!("base_url {url:?} must start with http://")
        });
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port = p.parse::<u16>().map_err(|_| format!("base_url {url:?} has a bad port {p:?}"))?;
            (h, port)
        }
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("base_url {url:?} has no host"));
    }
    Ok((host.to_string(), port, path.trim_end_matches('/').to_string()))
}

fn validate_models(raw: &[RawModel], providers: &[RawProvider], report: &mut Report<'_>) -> Routes {
    let mut routes = Vec::new();
    for (i, m) in raw.iter().enumerate() {
        if raw[..i].iter().any(|q| q.name.get_ref() == m.name.get_ref()) {
            report.add(
                m.name.span(),
                format!("model {:?} is defined twice; merge its targets into one entry", m.name.get_ref()),
            );
        }
        if m.targets.is_empty() {
            report.add(
                m.name.span(),
                format!("model {:?} has no targets; add targets = [{{ provider = \"...\" }}]", m.name.get_ref()),
            );
        }
        let mut targets = Vec::new();
        for t in &m.targets {
            match providers.iter().position(|p| p.name.get_ref() == t.provider.get_ref()) {
                Some(provider) => targets.push(Target {
                    provider,
                    upstream_model: t.model.clone().unwrap_or_else(|| m.name.get_ref().clone()),
                }),
                None => {
                    let hint = closest(t.provider.get_ref(), providers.iter().map(|p| p.name.get_ref().as_str()))
                        .map(|c| format!("; did you mean {c:?}?"))
                        .unwrap_or_else(|| "; define it under [[providers]]".to_string());
                    report.add(
                        t.provider.span(),
                        format!(
                            "model {:?} routes to unknown provider {:?}{hint}",
                            m.name.get_ref(),
                            t.provider.get_ref()
                        ),
                    );
                }
            }
        }
        routes.push(Route { name: m.name.get_ref().clone(), targets });
    }
    Routes::new(routes)
}

/// The candidate nearest to `word` by edit distance, if it is close enough
/// to be a typo.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
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

    struct NoEnv;
    impl Env for NoEnv {
        fn var(&self, name: &str) -> Option<String> {
            (name == "SET").then(|| "secret".to_string())
        }
    }

    fn problems(text: &str) -> Vec<String> {
        match Config::parse("gw.toml", text, &NoEnv) {
            Ok(_) => vec![],
            Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn bundled_default_is_valid() {
        let c = Config::parse("bundled", BUNDLED_DEFAULT, &NoEnv).unwrap();
        assert!(c.routes.find(b"gpt-4o-mini").is_some());
        assert_eq!(c.providers[0].kind, ProviderKind::Mock);
    }

    #[test]
    fn problems_name_line_column_and_fix() {
        let text = "[[providers]]\nname = \"local\"\nkind = \"mock\"\n\n[[models]]\nname = \"m\"\ntargets = [{ provider = \"locl\" }]\n";
        assert_eq!(
            problems(text),
            vec!["gw.toml:7:25: model \"m\" routes to unknown provider \"locl\"; did you mean \"local\"?"]
        );
        let text = "[server]\nlisten = \"nope\"\n";
        assert_eq!(
            problems(text),
            vec!["gw.toml:2:10: listen address \"nope\" is not IP:port; write it like \"127.0.0.1:8080\""]
        );
        let text = "[[providers]]\nname = \"p\"\nkind = \"opnai\"\n";
        assert!(problems(text)[0].starts_with("gw.toml:3:8: unknown provider kind \"opnai\""));
        let text = "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"https://api.openai.com/v1\"\napi_key_env = \"UNSET\"\n";
        assert!(problems(text)[0].contains("https upstreams are not supported yet"));
        let text = text.replace("https://api.openai.com", "http://127.0.0.1:9");
        assert_eq!(
            problems(&text),
            vec!["gw.toml:5:15: environment variable UNSET is not set; export it with the provider's API key"]
        );
        let text = "[server]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n";
        assert!(problems(text)[0].starts_with("gw.toml:3:1: unknown field `bogus`"));
    }

    #[test]
    fn provider_urls_and_credentials() {
        let text = "[[providers]]\nname = \"p\"\nkind = \"openai-compatible\"\nbase_url = \"http://10.0.0.1:8000/v1/\"\napi_key_env = \"SET\"\n";
        let c = Config::parse("gw.toml", text, &NoEnv).unwrap();
        let p = &c.providers[0];
        assert_eq!(p.host, Some(("10.0.0.1".to_string(), 8000)));
        assert_eq!(p.host_header, "10.0.0.1:8000");
        assert_eq!(p.base_path, "/v1");
        assert_eq!(p.credential, Some(Credential("Bearer secret".into())));
        assert_eq!(format!("{:?}", p.credential), "Some(Credential(..))");
    }
}
