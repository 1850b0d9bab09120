//! The `[clickhouse]` section: request records also inserted into a
//! ClickHouse table over its HTTP interface, for fleets of nodes that
//! query one store. No section: records stay in the local files only.

use serde::Deserialize;
use toml::Spanned;

use super::report::{plain_http_url, read_secret, timeout_ms, HttpUrlProblem, Report};
use super::{Credential, Env};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClickHouse {
    pub url: Spanned<String>,
    pub database: Option<Spanned<String>>,
    pub table: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub create_table: Option<bool>,
    pub bodies: Option<bool>,
    pub queue_bytes_max: Option<Spanned<u64>>,
    pub timeout_ms: Option<Spanned<u64>>,
}

/// A validated `[clickhouse]` (read at start).
#[derive(Clone, Debug, PartialEq)]
pub struct ClickHouse {
    /// `host:port` of the HTTP interface.
    pub authority: String,
    pub database: String,
    pub table: String,
    pub user: Option<String>,
    pub password: Option<Credential>,
    /// `CREATE TABLE IF NOT EXISTS` before the first insert (the gateway's
    /// schema).
    pub create_table: bool,
    /// Captured bodies go to `<table>_bodies` (false: they stay in the
    /// node's files only, and the explorer's detail over ClickHouse shows
    /// none).
    pub bodies: bool,
    /// Records waiting for the insert thread, at most: past it, a batch is
    /// dropped (and counted), never waited for.
    pub queue_bytes_max: usize,
    pub timeout: std::time::Duration,
}

/// A database or table name as ClickHouse takes it unquoted.
fn identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

pub(super) fn validate(raw: &RawClickHouse, logging_dir: bool, env: &dyn Env, report: &mut Report<'_>) -> ClickHouse {
    let url = raw.url.get_ref();
    let shown = super::report::shown_url(url);
    let authority = match plain_http_url(url) {
        Ok((authority, "" | "/")) => authority.to_string(),
        Err(HttpUrlProblem::NotHttp) => {
            report.add(
                raw.url.span(),
                format!("url {shown:?} must be http://host:port: plain HTTP to a ClickHouse on the same network (or a local proxy that adds TLS)"),
            );
            String::new()
        }
        // A path, user@, spaces, no port.
        _ => {
            report.add(
                raw.url.span(),
                format!("url {shown:?} must be http://host:port (ClickHouse's HTTP interface, 8123 by default)"),
            );
            String::new()
        }
    };
    if !logging_dir {
        report.add(
            raw.url.span(),
            "[clickhouse] sends the request records; set [logging] dir so that there are records".to_string(),
        );
    }
    let mut name = |field: &Option<Spanned<String>>, default: &str, what: &str| match field {
        Some(v) => {
            if !identifier(v.get_ref()) {
                report.add(
                    v.span(),
                    format!("{what} {:?} must be letters, digits and _ (not starting with a digit)", v.get_ref()),
                );
            }
            v.get_ref().clone()
        }
        None => default.to_string(),
    };
    let database = name(&raw.database, "default", "database");
    let table = name(&raw.table, "tollgate_requests", "table");
    let password = read_secret(
        (raw.password_env.as_ref(), raw.password_file.as_ref()),
        ("password_env", "password_file", "the ClickHouse user's password"),
        env,
        report,
    )
    .inspect(|p| {
        // It goes into a header line as it is.
        if p.bytes().any(|b| b.is_ascii_control()) {
            let span = raw.password_env.as_ref().or(raw.password_file.as_ref()).map_or(0..0, |s| s.span());
            report.add(
                span,
                "the ClickHouse password holds a control character (a line break?); keep it to one line".to_string(),
            );
        }
    })
    .map(Credential);
    let queue_bytes_max = raw.queue_bytes_max.as_ref().map_or(64 << 20, |q| {
        let v = *q.get_ref();
        if v < 1 << 20 {
            report.add(q.span(), format!("queue_bytes_max {v} is below 1048576; raise it"));
        }
        v as usize
    });
    let timeout = timeout_ms(raw.timeout_ms.as_ref(), 10_000, report);
    ClickHouse {
        authority,
        database,
        table,
        user: raw.user.as_ref().map(|u| {
            if u.get_ref().is_empty() || !u.get_ref().bytes().all(|b| b.is_ascii_graphic()) {
                report.add(u.span(), format!("user {:?} must be a ClickHouse user name (no spaces)", u.get_ref()));
            }
            u.get_ref().clone()
        }),
        password,
        create_table: raw.create_table.unwrap_or(true),
        bodies: raw.bodies.unwrap_or(true),
        queue_bytes_max,
        timeout,
    }
}
