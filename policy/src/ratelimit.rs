//! Rate limits: requests and tokens per UTC minute, per team and per key.
//! Sans-IO: the minute's use and the time come in as integers.
//!
//! Windows are fixed calendar minutes: simple to merge across cores (a
//! count per owner per minute), at the price of letting up to twice a limit
//! through around a minute's boundary.

use std::fmt;

use crate::team::RateLimit;

/// A limit reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverRate {
    pub owner: String,
    /// `requests` or `tokens`.
    pub what: &'static str,
    pub limit: u64,
    /// Seconds until the minute ends.
    pub retry_after: u64,
}

impl fmt::Display for OverRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has reached its rate limit of {} {} per minute; retry in {} s",
            self.owner, self.limit, self.what, self.retry_after
        )
    }
}

/// Checks a minute's use against `limit`; `now_ms` is Unix milliseconds.
pub fn check(
    owner: impl FnOnce() -> String,
    limit: &RateLimit,
    requests: u64,
    tokens: u64,
    now_ms: u64,
) -> Result<(), OverRate> {
    let retry_after = (60_000 - now_ms % 60_000).div_ceil(1000);
    let over = match (limit.requests_per_minute, limit.tokens_per_minute) {
        (Some(rpm), _) if requests >= rpm => Some(("requests", rpm)),
        (_, Some(tpm)) if tokens >= tpm => Some(("tokens", tpm)),
        _ => None,
    };
    match over {
        Some((what, limit)) => Err(OverRate { owner: owner(), what, limit, retry_after }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_then_tokens() {
        let l = RateLimit { requests_per_minute: Some(2), tokens_per_minute: Some(100) };
        let now = 1_795_435_215_500; // 15.5 s into a minute
        assert_eq!(check(|| "t".into(), &l, 1, 99, now), Ok(()));
        let e = check(|| "team \"a\"".into(), &l, 2, 0, now).unwrap_err();
        assert_eq!((e.what, e.retry_after), ("requests", 45));
        assert_eq!(e.to_string(), "team \"a\" has reached its rate limit of 2 requests per minute; retry in 45 s");
        assert_eq!(check(|| "t".into(), &l, 0, 100, now).unwrap_err().what, "tokens");
        assert_eq!(check(|| "t".into(), &RateLimit::default(), u64::MAX, u64::MAX, now), Ok(()));
    }
}
