//! Agent runs: what one run of an agent (the requests a client marks with
//! the same `x-tollgate-run`, and those of its sub-runs) may use, and the
//! refusal that names the run and what it spent. Sans-IO: the figures come
//! in as integers (micro-dollars, tokens, requests, milliseconds); the
//! table that keeps them across cores is the engine's.

use std::fmt;

/// Limits on one run, set per team and per key (`run_usd`, `run_tokens`,
/// `run_requests`, `run_wall_s` in a `budget` table). A sub-run draws on
/// its parent's: the parent's figures include its children's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunLimits {
    /// Micro-dollars (the crate's `MicroUsd`; named as integers here, since
    /// `team` holds these limits).
    pub cost: Option<u64>,
    pub tokens: Option<u64>,
    pub requests: Option<u64>,
    /// From the run's first request.
    pub wall_ms: Option<u64>,
}

impl RunLimits {
    /// Whether any limit is set: a run of an owner without one is recorded
    /// but never counted.
    pub fn is_set(&self) -> bool {
        self.cost.is_some() || self.tokens.is_some() || self.requests.is_some() || self.wall_ms.is_some()
    }

    /// The tighter of two owners' limits, each limit apart: a run of a
    /// key is held to its team's limits and to the key's own.
    pub fn tighter(self, other: RunLimits) -> RunLimits {
        fn min(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        RunLimits {
            cost: min(self.cost, other.cost),
            tokens: min(self.tokens, other.tokens),
            requests: min(self.requests, other.requests),
            wall_ms: min(self.wall_ms, other.wall_ms),
        }
    }
}

/// Which limit a run reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunLimit {
    Cost,
    Tokens,
    Requests,
    WallTime,
}

impl RunLimit {
    /// As metric labels and error messages spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunLimit::Cost => "cost",
            RunLimit::Tokens => "tokens",
            RunLimit::Requests => "requests",
            RunLimit::WallTime => "wall_time",
        }
    }
}

/// What a run has used: spent and counted by requests that ended, plus
/// what requests in flight hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunUse {
    /// Micro-dollars.
    pub cost: u64,
    pub tokens: u64,
    pub requests: u64,
    /// Since its first request.
    pub age_ms: u64,
}

/// A run at one of its limits: the 429's message names the run, its team,
/// the limit and what the run spent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRefused {
    pub run: String,
    pub team: String,
    pub limit: RunLimit,
    /// The limit's value, in its unit (micro-dollars, tokens, requests,
    /// milliseconds).
    pub cap: u64,
    pub used: RunUse,
    /// What this request would have added, when that is what crossed (its
    /// estimated cost or tokens); 0 when the run was already at its limit.
    pub estimate: u64,
    /// Which run reached it: 0 the request's own (`run`), 1 its parent
    /// (`run` names the parent), 2 and up a run above the parent.
    pub level: u8,
    /// The request named no parent: a run above it was learned (from an
    /// earlier request, or from another node through the cluster), and
    /// `run` is the request's own.
    pub unnamed_above: bool,
}

impl fmt::Display for RunRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.level {
            0 => write!(f, "run {:?} of team {:?} ", self.run, self.team)?,
            n if self.unnamed_above => write!(
                f,
                "the run {n} level{} above run {:?} of team {:?} ",
                if n == 1 { "" } else { "s" },
                self.run,
                self.team
            )?,
            1 => write!(f, "parent run {:?} of team {:?} ", self.run, self.team)?,
            n => write!(f, "the run {} levels above parent run {:?} of team {:?} ", n - 1, self.run, self.team)?,
        }
        let used = self.used;
        match self.limit {
            RunLimit::WallTime => {
                write!(f, "has run for {} s, past its limit of {} s", used.age_ms / 1000, self.cap / 1000)?
            }
            RunLimit::Requests => write!(f, "has reached its limit of {} requests", self.cap)?,
            RunLimit::Cost if self.estimate > 0 && used.cost < self.cap => write!(
                f,
                "cannot afford this request (estimated at ${}) within its cost limit of ${}",
                usd(self.estimate),
                usd(self.cap)
            )?,
            RunLimit::Cost => write!(f, "has reached its cost limit of ${}", usd(self.cap))?,
            RunLimit::Tokens if self.estimate > 0 && used.tokens < self.cap => write!(
                f,
                "cannot fit this request ({} tokens reserved) within its limit of {} tokens",
                self.estimate, self.cap
            )?,
            RunLimit::Tokens => write!(f, "has reached its limit of {} tokens", self.cap)?,
        }
        write!(
            f,
            ": spent ${} over {} requests and {} tokens in {} s; start a new run or raise the team's or key's run limits",
            usd(used.cost),
            used.requests,
            used.tokens,
            used.age_ms / 1000
        )
    }
}

fn usd(micro: u64) -> String {
    format!("{}.{:02}", micro / 1_000_000, micro % 1_000_000 / 10_000)
}

/// The longest run id accepted, in bytes.
pub const RUN_ID_MAX: usize = 128;

/// Whether `id` may name a run: 1 to [`RUN_ID_MAX`] bytes of letters,
/// digits and `-_.:/@` (a UUID, a session id, `ticket-42/sub-3`), so that
/// it goes into records, reports and messages as it came, with nothing to
/// escape or to confuse a reader.
pub fn valid_run_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= RUN_ID_MAX
        && id.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tighter_takes_each_limit_apart() {
        let team = RunLimits { cost: Some(20_000_000), tokens: None, requests: Some(100), wall_ms: None };
        let key = RunLimits { cost: Some(5_000_000), tokens: Some(1_000), requests: None, wall_ms: None };
        assert_eq!(
            team.tighter(key),
            RunLimits { cost: Some(5_000_000), tokens: Some(1_000), requests: Some(100), wall_ms: None }
        );
        assert!(!RunLimits::default().is_set());
        assert!(RunLimits { wall_ms: Some(1), ..RunLimits::default() }.is_set());
    }

    #[test]
    fn refusals_name_the_run_the_limit_and_the_spend() {
        let used = RunUse { cost: 18_200_000, tokens: 9_100_000, requests: 312, age_ms: 95_000 };
        let r = RunRefused {
            run: "42".into(),
            team: "team-a".into(),
            limit: RunLimit::Cost,
            cap: 20_000_000,
            used,
            estimate: 2_500_000,
            level: 0,
            unnamed_above: false,
        };
        assert_eq!(
            r.to_string(),
            "run \"42\" of team \"team-a\" cannot afford this request (estimated at $2.50) within its cost limit of $20.00: spent $18.20 over 312 requests and 9100000 tokens in 95 s; start a new run or raise the team's or key's run limits"
        );
        let r = RunRefused { limit: RunLimit::Requests, cap: 312, estimate: 0, level: 1, ..r };
        assert!(r
            .to_string()
            .starts_with("parent run \"42\" of team \"team-a\" has reached its limit of 312 requests"));
        let r = RunRefused { limit: RunLimit::WallTime, cap: 60_000, ..r };
        assert!(r.to_string().contains("has run for 95 s, past its limit of 60 s"), "{r}");
        let r = RunRefused { level: 2, unnamed_above: true, ..r };
        assert!(r.to_string().starts_with("the run 2 levels above run \"42\" of team \"team-a\" has run"), "{r}");
    }

    #[test]
    fn run_ids_are_plain() {
        assert!(valid_run_id(b"42"));
        assert!(valid_run_id(b"3f1c2a9e-0b7d-4c55-9b8e-2d1f6a7c8e90"));
        assert!(valid_run_id(b"ticket-42/sub.3:a@b_c"));
        assert!(valid_run_id(&[b'a'; RUN_ID_MAX]));
        assert!(!valid_run_id(&[b'a'; RUN_ID_MAX + 1]));
        for bad in [&b""[..], b"a b", b"a\"b", b"a\\b", b"\xc3\xa9", b"a\x00", b"a,b"] {
            assert!(!valid_run_id(bad), "{bad:?}");
        }
    }
}
