//! The `[cluster]` section: where several gateway nodes keep their shared
//! budget and rate-limit totals (Redis or Valkey), and what a node does
//! when that store cannot be reached. No section: a single node.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::report::{read_secret, Report};
use super::{Credential, Env};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub redis_urls: Spanned<Vec<Spanned<String>>>,
    pub password_env: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub node_id: Option<Spanned<String>>,
    pub interval_ms: Option<Spanned<u64>>,
    pub timeout_ms: Option<Spanned<u64>>,
    pub stale_after_ms: Option<Spanned<u64>>,
    pub on_stale: Option<Spanned<String>>,
    pub key_prefix: Option<Spanned<String>>,
}

/// One Redis server to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisServer {
    pub host: String,
    pub port: u16,
    /// `rediss://`: TLS, verified against the system's roots and `ca_file`.
    pub tls: bool,
    /// An ACL user (`redis://user@host`); `None`: the default user.
    pub username: Option<String>,
    pub db: u32,
}

/// A validated `[cluster]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    /// Tried in order; the first that answers is used until it fails.
    pub servers: Vec<RedisServer>,
    /// Sent with `AUTH` when set.
    pub password: Option<Credential>,
    pub ca_file: Option<String>,
    /// Unique per node: pushes are made idempotent per node id.
    pub node_id: String,
    /// How often the node pushes its counts and reads the totals back.
    pub interval: Duration,
    /// Connect, read and write time-out for one exchange with Redis.
    pub timeout: Duration,
    /// With no good exchange for this long, the node is degraded.
    pub stale_after: Duration,
    /// Degraded and fail-closed: requests under a budget or rate limit are
    /// refused instead of enforced against the last known totals.
    pub fail_closed: bool,
    /// Every key starts with `{prefix}:`; the braces keep all of them in
    /// one Redis Cluster hash slot, as the push script needs.
    pub key_prefix: String,
}

/// Parses `redis://[user@]host[:port][/db]` or `rediss://...`.
pub fn parse_url(url: &str) -> Result<RedisServer, String> {
    let shown = super::report::shown_url(url);
    let (tls, rest) = if let Some(r) = url.strip_prefix("rediss://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("redis://") {
        (false, r)
    } else {
        return Err(format!("{shown:?} must start with redis:// or rediss:// (TLS)"));
    };
    // A user and password end at the last `@`, whatever they hold (a `/`
    // in a password must not be read as the database's path).
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, rest),
    };
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    if userinfo.is_some_and(|u| u.contains(':')) {
        return Err(format!(
            "{shown:?} holds a password; keep secrets out of the file: remove it from the URL and set password_env or password_file"
        ));
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|_| format!("{shown:?}: port {p:?} is not a number from 1 to 65535"))?)
        }
        _ => (hostport, 6379),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{shown:?} names no host; write it like \"redis://127.0.0.1:6379/0\""));
    }
    let db = if path.is_empty() {
        0
    } else {
        path.parse::<u32>().map_err(|_| format!("{shown:?}: database {path:?} is not a number"))?
    };
    let username = userinfo.filter(|u| !u.is_empty()).map(str::to_string);
    Ok(RedisServer { host: host.to_string(), port, tls, username, db })
}

pub(super) fn validate(raw: &RawCluster, listen_port: u16, env: &dyn Env, report: &mut Report<'_>) -> Cluster {
    let mut servers = Vec::new();
    for u in raw.redis_urls.get_ref() {
        match parse_url(u.get_ref()) {
            Ok(s) => servers.push(s),
            Err(e) => report.add(u.span(), e),
        }
    }
    if raw.redis_urls.get_ref().is_empty() {
        report.add(
            raw.redis_urls.span(),
            "redis_urls is empty; list at least one, like [\"redis://127.0.0.1:6379/0\"]".to_string(),
        );
    }
    let password = read_secret(
        (raw.password_env.as_ref(), raw.password_file.as_ref()),
        ("password_env", "password_file", "the Redis password"),
        env,
        report,
    );
    if let Some(ca) = &raw.ca_file {
        if !servers.iter().any(|s| s.tls) {
            report.add(ca.span(), "ca_file applies to rediss:// URLs only; remove it or use rediss://".to_string());
        } else if let Err(e) = env.read_file(ca.get_ref()) {
            report.add(ca.span(), format!("cannot read ca_file {:?}: {e}", ca.get_ref()));
        }
    }
    let node_id = match &raw.node_id {
        Some(n) => {
            let ok = !n.get_ref().is_empty()
                && n.get_ref().bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
            if !ok {
                report.add(
                    n.span(),
                    format!("node_id {:?} must be letters, digits and - _ . : only, like \"gw-1\"", n.get_ref()),
                );
            }
            n.get_ref().clone()
        }
        // Unique per host and port, which is what a node is. With no host
        // name known, "localhost" stands in: unique only among nodes on
        // distinct ports, so such hosts should set node_id.
        None => format!("{}:{listen_port}", env.hostname().unwrap_or_else(|| "localhost".to_string())),
    };
    let ms = |v: &Option<Spanned<u64>>, default: u64, min: u64, name: &str, report: &mut Report<'_>| match v {
        Some(v) if *v.get_ref() < min => {
            report.add(v.span(), format!("{name} must be at least {min}"));
            Duration::from_millis(default)
        }
        Some(v) => Duration::from_millis(*v.get_ref()),
        None => Duration::from_millis(default),
    };
    let interval = ms(&raw.interval_ms, 100, 10, "interval_ms", report);
    let timeout = ms(&raw.timeout_ms, 250, 1, "timeout_ms", report);
    let stale_after = ms(&raw.stale_after_ms, 5_000, 1, "stale_after_ms", report);
    if stale_after < interval * 2 {
        let span = raw.stale_after_ms.as_ref().map_or(0..0, |s| s.span());
        report
            .add(span, format!("stale_after_ms must be at least twice interval_ms ({} ms)", interval.as_millis() * 2));
    }
    let fail_closed = match raw.on_stale.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
        None | Some(("open", _)) => false,
        Some(("closed", _)) => true,
        Some((other, span)) => {
            report.add(span, format!("on_stale {other:?} must be \"open\" (keep serving) or \"closed\" (refuse)"));
            false
        }
    };
    let key_prefix = raw.key_prefix.as_ref().map_or_else(|| "tollgate".to_string(), |p| p.get_ref().clone());
    if key_prefix.is_empty() || key_prefix.contains(['{', '}']) {
        let span = raw.key_prefix.as_ref().map_or(0..0, |s| s.span());
        report.add(span, format!("key_prefix {key_prefix:?} must be non-empty and without braces"));
    }
    Cluster {
        servers,
        password: password.map(Credential),
        ca_file: raw.ca_file.as_ref().map(|c| c.get_ref().clone()),
        node_id,
        interval,
        timeout,
        stale_after,
        fail_closed,
        key_prefix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s = parse_url("rediss://gw@redis.internal:6380/2").unwrap();
        assert_eq!(
            s,
            RedisServer { host: "redis.internal".into(), port: 6380, tls: true, username: Some("gw".into()), db: 2 }
        );
        let s = parse_url("redis://127.0.0.1").unwrap();
        assert_eq!((s.port, s.db, s.tls, s.username), (6379, 0, false, None));
        assert_eq!(parse_url("redis://[::1]:7000").unwrap().host, "::1");
        assert!(parse_url("redis://:secret@h").unwrap_err().contains("password_env"));
        assert!(parse_url("http://h").is_err());
        assert!(parse_url("redis://h:x").is_err());
        assert!(parse_url("redis:///0").is_err());
    }
}
