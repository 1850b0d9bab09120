//! An instance's role credentials from its metadata service (IMDSv2), for
//! Bedrock providers with `aws_credentials = "instance"`: a session token
//! (`PUT /latest/api/token`), the role's name
//! (`GET /latest/meta-data/iam/security-credentials/`), then its
//! credentials and their expiry. Blocking, with short time-outs: it runs
//! on the thread that loads the configuration (start, reload, and the
//! refresher that reloads before the credentials expire), never on a
//! worker.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tollgate_protocol::sigv4::Credentials;

/// Each step's connect, write and read time-out (the service answers in
/// milliseconds on an instance; off one, it is not there at all).
const STEP_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer read.
const ANSWER_BYTES_MAX: usize = 64 * 1024;

/// Credentials and when they expire (Unix seconds; `None`: not said).
#[derive(Clone, Debug)]
pub struct RoleCredentials {
    pub credentials: Credentials,
    pub expires_unix: Option<u64>,
}

/// Fetches the role's credentials from the service at `base`
/// (`http://host[:port]`).
pub fn fetch(base: &str) -> Result<RoleCredentials, String> {
    let authority = base.strip_prefix("http://").ok_or_else(|| format!("aws_imds_url {base:?} must be http://"))?;
    let authority = authority.trim_end_matches('/');
    let token = request(authority, "PUT", "/latest/api/token", &[("x-aws-ec2-metadata-token-ttl-seconds", "21600")])?;
    let token = token.trim();
    let with = [("x-aws-ec2-metadata-token", token)];
    let roles = request(authority, "GET", "/latest/meta-data/iam/security-credentials/", &with)?;
    let role = roles.lines().map(str::trim).find(|l| !l.is_empty()).ok_or("the instance has no IAM role")?;
    let path = format!("/latest/meta-data/iam/security-credentials/{role}");
    let doc = request(authority, "GET", &path, &with)?;
    let v: serde_json::Value = serde_json::from_str(&doc).map_err(|e| format!("role credentials are not JSON: {e}"))?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let (Some(id), Some(secret)) = (field("AccessKeyId"), field("SecretAccessKey")) else {
        return Err("role credentials lack AccessKeyId or SecretAccessKey".into());
    };
    Ok(RoleCredentials {
        credentials: Credentials { access_key_id: id, secret_access_key: secret, session_token: field("Token") },
        expires_unix: field("Expiration").and_then(|e| parse_rfc3339(&e)),
    })
}

/// One HTTP/1.1 exchange; the body of a 200 answer.
fn request(authority: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("instance metadata service at {authority}: {e}");
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .map_err(fail)?
        .next()
        .ok_or_else(|| format!("instance metadata service {authority:?} does not resolve"))?;
    let mut s = TcpStream::connect_timeout(&addr, STEP_TIMEOUT).map_err(fail)?;
    s.set_read_timeout(Some(STEP_TIMEOUT)).map_err(fail)?;
    s.set_write_timeout(Some(STEP_TIMEOUT)).map_err(fail)?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\ncontent-length: 0\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(fail)?;
    let mut answer = Vec::new();
    s.take(ANSWER_BYTES_MAX as u64).read_to_end(&mut answer).map_err(fail)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("the metadata service's answer has no head")?;
    let status = head.split(' ').nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("instance metadata service answered {status} to {method} {path}"));
    }
    // The service answers with a length; a chunked answer is read plainly
    // only if it is not chunked.
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Err("the metadata service's chunked answer is not understood".into());
    }
    Ok(body.to_string())
}

/// `2026-12-03T14:00:00Z` as Unix seconds.
fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_times_read_as_unix_seconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2015-08-30T12:36:00Z"), Some(1_440_938_160));
        assert_eq!(parse_rfc3339("2000-02-29T23:59:59Z"), Some(951_868_799));
        assert_eq!(parse_rfc3339("soon"), None);
    }
}
