//! A circuit breaker: one target's health as one core has seen it.
//!
//! Breakers are per target per core ([`crate::state::CoreState`] owns
//! them, carried across reloads): a core learns on its own that a provider
//! is down, which costs each core `breaker_failures` failed attempts and
//! needs no coordination. An open breaker makes its target cost nothing
//! (no connect, no time-out) until `breaker_cooldown`, then lets exactly
//! one probe through; the probe's outcome closes or re-opens it.
//! [`crate::proxy::fallback`] consults them when it plans each attempt.
//!
//! Beside its health, a target's breaker keeps two things the upstream and
//! the load decide: a rest the upstream asked for (`retry-after` on a 429
//! or 503: no attempt goes to it until then, on this core), and its retry
//! budget (retries, attempts after a request's first, at most a share of
//! the first attempts it received plus a few banked), so that when a
//! provider fails, retries cannot multiply the load on it.

use std::cell::Cell;
use std::time::{Duration, Instant};

use tollgate_policy::config::Routing;

/// A target's health, as this core has seen it.
#[derive(Debug, Default)]
pub struct Breaker {
    failures: Cell<u32>,
    open_until: Cell<Option<Instant>>,
    /// When the half-open probe was let through; a probe whose request
    /// vanished (client gone) is replaced after another cool-down.
    probe_since: Cell<Option<Instant>>,
    /// The upstream asked not to be called before then (`retry-after`).
    rest_until: Cell<Option<Instant>>,
    /// Retry tokens, in thousandths, past the banked minimum (negative
    /// when some of the minimum is spent): each first attempt adds the
    /// budget's share, each retry takes a whole token.
    retry_balance: Cell<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl Breaker {
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.open_until.get() {
            None => BreakerState::Closed,
            Some(t) if now < t => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether an attempt may go to this target now.
    pub(crate) fn admits(&self, now: Instant, cooldown: Duration) -> bool {
        if self.resting(now).is_some() {
            return false;
        }
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => match self.probe_since.get() {
                Some(t) if now < t + cooldown => false,
                _ => {
                    self.probe_since.set(Some(now));
                    true
                }
            },
        }
    }

    /// How long the upstream still asked to be left alone, if it did.
    pub fn resting(&self, now: Instant) -> Option<Duration> {
        self.rest_until.get().filter(|&t| now < t).map(|t| t - now)
    }

    /// The upstream answered with `retry-after`: no attempt goes to it on
    /// this core for `wait` (at most `retry_after_max`).
    pub fn rest(&self, now: Instant, wait: Duration, routing: &Routing) {
        let until = now + wait.min(routing.retry_after_max);
        if self.rest_until.get().is_none_or(|t| t < until) {
            self.rest_until.set(Some(until));
        }
    }

    /// A request's first attempt went to this target: its retry budget
    /// grows by the configured share (up to a hundred tokens banked).
    pub fn first_attempt(&self, routing: &Routing) {
        let cap = 100_000 - i64::from(routing.retry_budget_min) * 1000;
        let b = self.retry_balance.get() + i64::from(routing.retry_budget_permille);
        self.retry_balance.set(b.min(cap.max(0)));
    }

    /// Whether the budget has a retry left (taking none).
    pub fn retry_available(&self, routing: &Routing) -> bool {
        i64::from(routing.retry_budget_min) * 1000 + self.retry_balance.get() >= 1000
    }

    /// Takes one retry from the budget; false when it is spent (the retry
    /// does not go).
    pub fn take_retry(&self, routing: &Routing) -> bool {
        if !self.retry_available(routing) {
            return false;
        }
        self.retry_balance.set(self.retry_balance.get() - 1000);
        true
    }

    pub fn success(&self) {
        self.failures.set(0);
        self.open_until.set(None);
        self.probe_since.set(None);
    }

    pub fn failure(&self, now: Instant, routing: &Routing) {
        if self.probe_since.take().is_some() || self.failures.get() + 1 >= routing.breaker_failures {
            self.failures.set(0);
            self.open_until.set(Some(now + routing.breaker_cooldown));
        } else {
            self.failures.set(self.failures.get() + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(permille: u32, min: u32) -> Routing {
        Routing {
            max_attempts: 3,
            retry_backoff: Duration::from_millis(1),
            fallback_on_status: vec![],
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(10),
            retry_budget_permille: permille,
            retry_budget_min: min,
            retry_after_max: Duration::from_secs(60),
        }
    }

    #[test]
    fn retries_are_a_share_of_first_attempts_plus_a_few_banked() {
        let r = routing(200, 10);
        let b = Breaker::default();
        // A quiet target: the ten banked, then none.
        assert_eq!((0..20).filter(|_| b.take_retry(&r)).count(), 10);
        // Under an outage every request wants a retry: a thousand requests
        // get two hundred (and the ten banked), so retries add at most a
        // fifth to the load.
        let b = Breaker::default();
        let retried = (0..1000)
            .filter(|_| {
                b.first_attempt(&r);
                b.take_retry(&r)
            })
            .count();
        assert_eq!(retried, 210);
        // No budget: no retry at all once the minimum is spent.
        let none = routing(0, 0);
        let b = Breaker::default();
        b.first_attempt(&none);
        assert!(!b.take_retry(&none));
        // The bank is capped: a long quiet success does not buy a storm.
        let b = Breaker::default();
        for _ in 0..1_000_000 {
            b.first_attempt(&r);
        }
        assert_eq!((0..1000).filter(|_| b.take_retry(&r)).count(), 100);
    }

    #[test]
    fn retry_after_rests_the_target_up_to_the_cap() {
        let r = routing(200, 10);
        let b = Breaker::default();
        let now = Instant::now();
        b.rest(now, Duration::from_secs(2), &r);
        assert!(!b.admits(now + Duration::from_millis(1999), r.breaker_cooldown));
        assert!(b.admits(now + Duration::from_millis(2000), r.breaker_cooldown));
        // A shorter rest does not cut a longer one; a huge one is capped.
        b.rest(now, Duration::from_secs(3600), &r);
        b.rest(now, Duration::from_secs(1), &r);
        assert_eq!(b.resting(now), Some(Duration::from_secs(60)));
        assert_eq!(b.state(now), BreakerState::Closed, "a rest is not a failure");
    }
}
