//! Where configuration problems are gathered: each with its file, line,
//! column and a fix, all of them reported at once. Shared by every
//! section's validation, with the one way secrets are read (an
//! environment variable or a file, never the configuration itself).

use std::ops::Range;

use toml::Spanned;

use super::{Env, Problem};

pub(super) struct Report<'a> {
    file: &'a str,
    text: &'a str,
    pub(super) problems: Vec<Problem>,
}

impl<'a> Report<'a> {
    pub(super) fn new(file: &'a str, text: &'a str) -> Report<'a> {
        Report { file, text, problems: Vec::new() }
    }

    pub(super) fn add(&mut self, span: Range<usize>, message: String) {
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

/// Why a URL is not `http://host:port[/path]` as the gateway's own
/// blocking HTTP clients (alerts, spans, ClickHouse) take it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum HttpUrlProblem {
    /// Not `http://` (TLS is a local proxy's or collector's job).
    NotHttp,
    /// Spaces, control characters or `user@`: it goes into the request
    /// line and `host` as written.
    Unclean,
    /// No host, or no port.
    NoHostPort,
}

/// A URL as a configuration error shows it: its scheme and host (and
/// port), with what could hold a secret (a `user:password@`, a path such
/// as a webhook's token, a query) left out as `***`. The error already
/// names the file and line; a message copied to the journal must not
/// carry the secret it is about (found by a review: "holds a password"
/// quoted the password).
pub fn shown_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => return "***".to_string(),
    };
    // Everything before the last `@` is a user and a password, whatever
    // they hold (a `/` in a password must not end the host early).
    let (user, rest) = match rest.rsplit_once('@') {
        Some((_, r)) => ("***@", r),
        None => ("", rest),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, more) = rest.split_at(end);
    let more = if more.is_empty() || more == "/" { more } else { "/***" };
    format!("{scheme}://{user}{host}{more}")
}

/// `http://host:port[/path]`: the authority, and the path with its
/// leading `/` (empty when there is none).
pub(super) fn plain_http_url(url: &str) -> Result<(&str, &str), HttpUrlProblem> {
    let rest = url.strip_prefix("http://").ok_or(HttpUrlProblem::NotHttp)?;
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    if !url.bytes().all(|b| b.is_ascii_graphic()) || authority.contains('@') {
        return Err(HttpUrlProblem::Unclean);
    }
    let ok = authority.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if ok {
        Ok((authority, path))
    } else {
        Err(HttpUrlProblem::NoHostPort)
    }
}

/// A `timeout_ms` field: its default, or a value from 1 to 60,000.
pub(super) fn timeout_ms(field: Option<&Spanned<u64>>, default: u64, report: &mut Report<'_>) -> std::time::Duration {
    let ms = field.map_or(default, |t| {
        let v = *t.get_ref();
        if v == 0 || v > 60_000 {
            report.add(t.span(), format!("timeout_ms {v} must be between 1 and 60000"));
        }
        v
    });
    std::time::Duration::from_millis(ms)
}

/// A secret named by an environment variable or a file (never written in
/// the configuration itself). `names`: the two fields' names and what the
/// secret is, for the messages.
pub(super) fn read_secret(
    (var, file): (Option<&Spanned<String>>, Option<&Spanned<String>>),
    (var_field, file_field, what): (&str, &str, &str),
    env: &dyn Env,
    report: &mut Report<'_>,
) -> Option<String> {
    match (var, file) {
        (Some(var), Some(_)) => {
            report.add(var.span(), format!("give {var_field} or {file_field}, not both"));
            None
        }
        (Some(var), None) => match env.var(var.get_ref()) {
            Some(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
            // Not a variable's name: a secret pasted where its variable's
            // name goes, never repeated in the message.
            _ if !is_env_name(var.get_ref()) => {
                report.add(
                    var.span(),
                    format!("{var_field} is not an environment variable's name (a key pasted here?); name the variable that holds it, and export it with {what}"),
                );
                None
            }
            _ => {
                report.add(
                    var.span(),
                    format!("environment variable {} is not set; export it with {what}", var.get_ref()),
                );
                None
            }
        },
        (None, Some(path)) => match env.read_file(path.get_ref()) {
            Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
            Ok(_) => {
                report.add(path.span(), format!("{file_field} {:?} is empty; put {what} in it", path.get_ref()));
                None
            }
            Err(e) => {
                report.add(path.span(), format!("cannot read {file_field} {:?}: {e}", path.get_ref()));
                None
            }
        },
        (None, None) => None,
    }
}

/// Whether `name` can be an environment variable's name as a shell
/// exports one: a letter or `_`, then letters, digits and `_`.
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
