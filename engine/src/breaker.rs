//! A circuit breaker: one target's health as one core has seen it.
//!
//! Breakers are per target per core ([`crate::state::CoreState`] owns
//! them, carried across reloads): a core learns on its own that a provider
//! is down, which costs each core `breaker_failures` failed attempts and
//! needs no coordination. An open breaker makes its target cost nothing
//! (no connect, no time-out) until `breaker_cooldown`, then lets exactly
//! one probe through; the probe's outcome closes or re-opens it.
//! [`crate::proxy::fallback`] consults them when it plans each attempt.

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
