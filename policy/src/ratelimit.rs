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

/// Output tokens reserved for a request that does not say how many it
/// may generate (`max_tokens`).
pub const DEFAULT_OUTPUT_RESERVE: u64 = 1024;

/// Seconds until the current UTC minute ends; `now_ms` is Unix ms.
pub fn minute_reset_secs(now_ms: u64) -> u64 {
    (60_000 - now_ms % 60_000).div_ceil(1000)
}

/// Checks a minute's use against `limit`; `now_ms` is Unix milliseconds.
/// `reserve` is the tokens a request is about to use (its prompt and the
/// most it may generate): it is refused if they would cross the limit, so
/// the request that would cross it is the one that waits.
pub fn check(
    owner: impl FnOnce() -> String,
    limit: &RateLimit,
    requests: u64,
    tokens: u64,
    reserve: u64,
    now_ms: u64,
) -> Result<(), OverRate> {
    let retry_after = minute_reset_secs(now_ms);
    let over = match (limit.requests_per_minute, limit.tokens_per_minute) {
        (Some(rpm), _) if requests >= rpm => Some(("requests", rpm)),
        (_, Some(tpm)) if tokens.saturating_add(reserve.max(1)) > tpm => Some(("tokens", tpm)),
        _ => None,
    };
    match over {
        Some((what, limit)) => Err(OverRate { owner: owner(), what, limit, retry_after }),
        None => Ok(()),
    }
}

/// What a client is told about its limits, as OpenAI's `x-ratelimit-*`
/// headers: for requests and for tokens, the tightest of the team's and
/// the key's limits, and what is left of it this minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Headroom {
    /// (limit, remaining)
    pub requests: Option<(u64, u64)>,
    pub tokens: Option<(u64, u64)>,
    pub reset_secs: u64,
}

impl Headroom {
    /// Takes `limit` into account, with this minute's use so far.
    pub fn tighten(&mut self, limit: &RateLimit, requests: u64, tokens: u64) {
        let tight = |cur: Option<(u64, u64)>, lim: Option<u64>, used: u64| match (cur, lim) {
            (Some((l, r)), Some(n)) if n.saturating_sub(used) >= r => Some((l, r)),
            (_, Some(n)) => Some((n, n.saturating_sub(used))),
            (cur, None) => cur,
        };
        self.requests = tight(self.requests, limit.requests_per_minute, requests);
        self.tokens = tight(self.tokens, limit.tokens_per_minute, tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_then_tokens() {
        let l = RateLimit { requests_per_minute: Some(2), tokens_per_minute: Some(100) };
        let now = 1_795_435_215_500; // 15.5 s into a minute
        assert_eq!(check(|| "t".into(), &l, 1, 99, 0, now), Ok(()));
        let e = check(|| "team \"a\"".into(), &l, 2, 0, 0, now).unwrap_err();
        assert_eq!((e.what, e.retry_after), ("requests", 45));
        assert_eq!(e.to_string(), "team \"a\" has reached its rate limit of 2 requests per minute; retry in 45 s");
        assert_eq!(check(|| "t".into(), &l, 0, 100, 0, now).unwrap_err().what, "tokens");
        assert_eq!(check(|| "t".into(), &RateLimit::default(), u64::MAX, u64::MAX, 5, now), Ok(()));
        // A reservation that would cross the limit is refused; one that
        // reaches it exactly is not.
        assert_eq!(check(|| "t".into(), &l, 0, 40, 61, now).unwrap_err().what, "tokens");
        assert_eq!(check(|| "t".into(), &l, 0, 40, 60, now), Ok(()));
    }

    #[test]
    fn headroom_is_the_tightest_limit() {
        let mut h = Headroom::default();
        h.tighten(&RateLimit { requests_per_minute: Some(100), tokens_per_minute: None }, 10, 0);
        h.tighten(&RateLimit { requests_per_minute: Some(20), tokens_per_minute: Some(1000) }, 15, 300);
        assert_eq!(h.requests, Some((20, 5)));
        assert_eq!(h.tokens, Some((1000, 700)));
        h.tighten(&RateLimit { requests_per_minute: Some(500), tokens_per_minute: None }, 0, 0);
        assert_eq!(h.requests, Some((20, 5)));
    }
}
