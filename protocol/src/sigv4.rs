//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`), as Bedrock requires on
//! every request: the canonical request (method, URI-encoded path, sorted
//! query, lower-case sorted headers with trimmed values, the payload's
//! SHA-256), the string to sign, the key derived from the secret by date,
//! region and service, and the `Authorization` header. HMAC and SHA-256
//! come from `ring` (already built for rustls). Checked against the cases
//! of AWS's published test suite (`aws-sig-v4-test-suite`).
//!
//! The path is signed as given, each byte outside the unreserved set
//! percent-encoded: a caller that sends `/model/a%3A0/converse` on the wire
//! passes that path, and its `%` is encoded again, as AWS expects of every
//! service but S3.

use ring::{digest, hmac};

/// A day's signing key ([`signing_key`]).
pub use ring::hmac::Key as SigningKey;

/// A key pair, and the session token of temporary credentials (a role's).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key id names the key; the secret and token never print.
        f.debug_struct("Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// The request to sign. `headers` are the ones signed besides `host`,
/// `x-amz-date` and `x-amz-security-token`, which [`sign`] adds.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    pub host: &'a str,
    /// The path as on the wire.
    pub path: &'a str,
    /// The query string without `?` (empty for none).
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

/// What goes on the request: `authorization` and `x-amz-date` headers
/// (and `x-amz-security-token`, the credentials' own, when they have one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    pub authorization: String,
    pub amz_date: String,
    /// For tests and debugging: what was signed.
    pub canonical_request: String,
}

/// Signs `req` for `region` and `service` at `unix_secs`.
pub fn sign(req: &Request<'_>, creds: &Credentials, region: &str, service: &str, unix_secs: u64) -> Signed {
    sign_at(req, creds, region, service, &amz_date(unix_secs))
}

/// Signs `req` at a time already written as `x-amz-date` (`YYYYMMDDTHHMMSSZ`):
/// what a server checking a signature does with the request's own date.
pub fn sign_at(req: &Request<'_>, creds: &Credentials, region: &str, service: &str, amz_date: &str) -> Signed {
    // A date that is not ASCII (a hostile client's, at a server checking
    // it) is signed whole rather than cut inside a character.
    let date = amz_date.get(..8).unwrap_or(amz_date);
    sign_with(req, creds, &signing_key(&creds.secret_access_key, date, region, service), region, service, amz_date)
}

/// The key a day's signatures are made with (`AWS4` + secret, HMAC'd with
/// the date, region, service and `aws4_request` in turn): four HMACs that
/// change only with the UTC date, so a signer keeps it for the day.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let mac = |key: &[u8], data: &[u8]| hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let k_date = mac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = mac(k_date.as_ref(), region.as_bytes());
    let k_service = mac(k_region.as_ref(), service.as_bytes());
    hmac::Key::new(hmac::HMAC_SHA256, mac(k_service.as_ref(), b"aws4_request").as_ref())
}

/// [`sign_at`] with the day's [`signing_key`] already made.
pub fn sign_with(
    req: &Request<'_>,
    creds: &Credentials,
    key: &hmac::Key,
    region: &str,
    service: &str,
    amz_date: &str,
) -> Signed {
    let amz_date = amz_date.to_string();
    // A date that is not ASCII (a hostile client's, at a server checking
    // it) is signed whole rather than cut inside a character.
    let date = amz_date.get(..8).unwrap_or(&amz_date);
    let mut headers: Vec<(String, String)> = Vec::with_capacity(req.headers.len() + 3);
    headers.push(("host".into(), req.host.into()));
    headers.push(("x-amz-date".into(), amz_date.clone()));
    if let Some(token) = &creds.session_token {
        headers.push(("x-amz-security-token".into(), token.clone()));
    }
    for (name, value) in req.headers {
        let name = name.to_ascii_lowercase();
        let value = collapse(value);
        // Repeated names are one line, their values joined in order.
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => headers.push((name, value)),
        }
    }
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let signed_headers = headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
    let mut creq = String::with_capacity(256);
    creq.push_str(req.method);
    creq.push('\n');
    encode_into(req.path.as_bytes(), true, &mut creq);
    creq.push('\n');
    creq.push_str(&canonical_query(req.query));
    creq.push('\n');
    for (n, v) in &headers {
        creq.push_str(n);
        creq.push(':');
        creq.push_str(v);
        creq.push('\n');
    }
    creq.push('\n');
    creq.push_str(&signed_headers);
    creq.push('\n');
    creq.push_str(&hex(digest::digest(&digest::SHA256, req.payload).as_ref()));
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, creq.as_bytes()).as_ref())
    );
    let signature = hex(hmac::sign(key, to_sign.as_bytes()).as_ref());
    Signed {
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            creds.access_key_id
        ),
        amz_date,
        canonical_request: creq,
    }
}

/// A header value trimmed, its runs of spaces one space.
fn collapse(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Percent-encodes every byte outside `A-Z a-z 0-9 - . _ ~` (and `/` when
/// `keep_slash`), upper-case hex.
fn encode_into(bytes: &[u8], keep_slash: bool, out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX_UPPER[(b >> 4) as usize] as char);
            out.push(HEX_UPPER[(b & 15) as usize] as char);
        }
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The query's pairs, each name and value decoded and encoded again,
/// sorted by name then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let (mut ek, mut ev) = (String::new(), String::new());
            encode_into(&percent_decode(k), false, &mut ek);
            encode_into(&percent_decode(v), false, &mut ev);
            (ek, ev)
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// `%XX` sequences decoded (a `%` not followed by two hex digits stays).
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex_at = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex_at(i + 1), hex_at(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, ..) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time (UTC; days to a civil date by
/// Howard Hinnant's algorithm).
pub fn amz_date(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2015-08-30T12:36:00Z, the suite's time.
    const SUITE_TIME: u64 = 1_440_938_160;
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const STS_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

    fn creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_string),
        }
    }

    /// Cases of AWS's Signature Version 4 test suite (aws-sig-v4-test-suite,
    /// as botocore keeps it): (name, method, path, query, headers, body,
    /// session token, the canonical request's query line, signature).
    #[allow(clippy::type_complexity)]
    const SUITE: &[(&str, &str, &str, &str, &[(&str, &str)], &str, Option<&str>, &str, &str)] = &[
        (
            "get-vanilla",
            "GET",
            "/",
            "",
            &[],
            "",
            None,
            "",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        (
            "get-vanilla-empty-query-key",
            "GET",
            "/",
            "Param1=value1",
            &[],
            "",
            None,
            "Param1=value1",
            "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
        ),
        (
            "get-vanilla-query-order-key-case",
            "GET",
            "/",
            "Param2=value2&Param1=value1",
            &[],
            "",
            None,
            "Param1=value1&Param2=value2",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        (
            "get-vanilla-query-order-key",
            "GET",
            "/",
            "Param1=value2&Param1=Value1",
            &[],
            "",
            None,
            "Param1=Value1&Param1=value2",
            "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
        ),
        (
            "get-vanilla-query-order-encoded",
            "GET",
            "/",
            "Param-3=Value3&Param=Value2&%E1%88%B4=Value1",
            &[],
            "",
            None,
            "%E1%88%B4=Value1&Param=Value2&Param-3=Value3",
            "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac",
        ),
        (
            "get-vanilla-utf8-query",
            "GET",
            "/",
            "ሴ=bar",
            &[],
            "",
            None,
            "%E1%88%B4=bar",
            "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
        ),
        (
            "get-vanilla-with-session-token",
            "GET",
            "/",
            "",
            &[],
            "",
            Some("6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"),
            "",
            "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
        ),
        (
            "get-unreserved",
            "GET",
            "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            "",
            &[],
            "",
            None,
            "",
            "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        ),
        (
            "get-utf8",
            "GET",
            "/ሴ",
            "",
            &[],
            "",
            None,
            "",
            "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
        ),
        (
            "get-space",
            "GET",
            "/example space/",
            "",
            &[],
            "",
            None,
            "",
            "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
        ),
        (
            "get-special-character",
            "GET",
            "/example/$delete",
            "",
            &[],
            "",
            None,
            "",
            "a853c9b21b528b19643d00910d35b83a10c366a10833ceefb45edd6c80e40f27",
        ),
        (
            "get-header-key-duplicate",
            "GET",
            "/",
            "",
            &[("My-Header1", "value2"), ("My-Header1", "value2"), ("My-Header1", "value1")],
            "",
            None,
            "",
            "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        ),
        (
            "get-header-value-multiline",
            "GET",
            "/",
            "",
            &[("My-Header1", "value1   value2      value3")],
            "",
            None,
            "",
            "cfd34249e4b1c8d6b91ef74165d41a32e5fab3306300901bb65a51a73575eefd",
        ),
        (
            "get-header-value-trim",
            "GET",
            "/",
            "",
            &[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
            "",
            None,
            "",
            "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        ),
        (
            "post-vanilla",
            "POST",
            "/",
            "",
            &[],
            "",
            None,
            "",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        ),
        (
            "post-vanilla-query",
            "POST",
            "/",
            "Param1=value1",
            &[],
            "",
            None,
            "Param1=value1",
            "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
        ),
        (
            "post-header-value-case",
            "POST",
            "/",
            "",
            &[("My-Header1", "VALUE1")],
            "",
            None,
            "",
            "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
        ),
        (
            "post-x-www-form-urlencoded",
            "POST",
            "/",
            "",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            "Param1=value1",
            None,
            "",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        ),
        (
            "post-x-www-form-urlencoded-parameters",
            "POST",
            "/",
            "",
            &[("Content-Type", "application/x-www-form-urlencoded; charset=utf8")],
            "Param1=value1",
            None,
            "",
            "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe",
        ),
        (
            "post-sts-header-before",
            "POST",
            "/",
            "",
            &[],
            "",
            Some(STS_TOKEN),
            "",
            "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
        ),
    ];

    #[test]
    fn the_published_suite_signs_alike() {
        for &(name, method, path, query, headers, body, token, creq_query, signature) in SUITE {
            let req = Request { method, host: "example.amazonaws.com", path, query, headers, payload: body.as_bytes() };
            let signed = sign(&req, &creds(token), "us-east-1", "service", SUITE_TIME);
            assert_eq!(signed.amz_date, "20150830T123600Z");
            let query_line = signed.canonical_request.lines().nth(2).unwrap_or_default();
            assert_eq!(query_line, creq_query, "{name}: {}", signed.canonical_request);
            if body.is_empty() {
                assert!(signed.canonical_request.ends_with(EMPTY), "{name}");
            }
            assert!(
                signed.authorization.starts_with(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders="
                ),
                "{name}"
            );
            assert!(
                signed.authorization.ends_with(&format!(", Signature={signature}")),
                "{name}: {}\n{}",
                signed.authorization,
                signed.canonical_request
            );
        }
    }

    #[test]
    fn an_encoded_path_is_encoded_again_as_aws_expects_outside_s3() {
        let req = Request {
            method: "POST",
            host: "bedrock-runtime.us-east-1.amazonaws.com",
            path: "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
            query: "",
            headers: &[],
            payload: b"{}",
        };
        let signed = sign(&req, &creds(None), "us-east-1", "bedrock", SUITE_TIME);
        assert_eq!(
            signed.canonical_request.lines().nth(1),
            Some("/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse")
        );
        assert!(signed.authorization.contains("/us-east-1/bedrock/aws4_request"));
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(4_102_444_799), "20991231T235959Z");
        assert_eq!(amz_date(4_107_542_399), "21000228T235959Z");
        assert_eq!(format!("{:?}", creds(Some("t"))), "Credentials { access_key_id: \"AKIDEXAMPLE\", .. }");
    }
}
