//! Which target serves each attempt of a request: the route's targets in
//! priority order, load shared by weight among equal priorities, targets
//! with an open circuit breaker skipped, and at most `max_attempts`
//! attempts with jittered back-off before a target is tried again. A
//! retry (any attempt after a request's first) goes only where the
//! target's retry budget allows it, and a target resting at its
//! upstream's `retry-after` is skipped like an open breaker.
//!
//! Breakers are per target per core: a core learns on its own that a
//! provider is down, which costs each core `breaker_failures` failed
//! attempts and needs no coordination. An open breaker makes its target
//! cost nothing (no connect, no time-out) until `breaker_cooldown`, then
//! lets exactly one probe through; the probe's outcome closes or re-opens it.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::{next_random, splitmix};
use tollgate_policy::config::Routing;
use tollgate_policy::Route;

use tollgate_policy::route::TARGETS_PER_MODEL_MAX as TARGETS_MAX;

pub use crate::breaker::{Breaker, BreakerState};

/// The attempt order of one request.
pub struct Plan {
    order: [u8; TARGETS_MAX],
    len: usize,
    cursor: usize,
    attempts: u32,
    tried: u32,
    excluded: u32,
    /// Targets whose breaker this request has charged a failure to.
    charged: u32,
    /// Attempts that went to a target already tried (retries).
    retries: u32,
    /// A retry was refused by a target's retry budget.
    pub budget_denied: bool,
}

impl Plan {
    /// Orders `route`'s targets for one request: by priority, and within a
    /// priority by weighted random choice, or, for a request of a session
    /// ([`session_of`]), by weighted rendezvous hashing of the session:
    /// the same session meets the same order on every core and node, so
    /// its requests reach the provider deployment that holds its prompt
    /// cache, while sessions spread by weight.
    pub fn new(route: &Route, rng: &Cell<u64>) -> Plan {
        Plan::for_session(route, rng, None)
    }

    /// [`Plan::new`] for a request of `session`, when it has one.
    pub fn for_session(route: &Route, rng: &Cell<u64>, session: Option<u64>) -> Plan {
        let len = route.targets.len().min(TARGETS_MAX);
        let mut order = [0u8; TARGETS_MAX];
        for (i, slot) in order[..len].iter_mut().enumerate() {
            *slot = i as u8;
        }
        order[..len].sort_by_key(|&i| route.targets[i as usize].priority);
        let mut start = 0;
        while start < len {
            let priority = route.targets[order[start] as usize].priority;
            let end = (start..len).find(|&j| route.targets[order[j] as usize].priority != priority).unwrap_or(len);
            if let Some(s) = session.filter(|_| end - start > 1) {
                // Weighted rendezvous: each target's score is -ln(u) / w for
                // a uniform u drawn from (session, target); lowest first.
                // A target's share of sessions is its share of the weights,
                // and removing one moves only its own sessions: the draw is
                // from the target's identity (provider and model), not its
                // place in the list, which a reload moves.
                let score = |i: u8| {
                    let id = route.targets[i as usize].identity;
                    let u = ((splitmix(s ^ splitmix(id)) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                    -u.ln() / f64::from(route.targets[i as usize].weight.max(1))
                };
                order[start..end].sort_by(|&a, &b| score(a).total_cmp(&score(b)));
                start = end;
                continue;
            }
            // Weighted shuffle of the tier: pick each place by weight among
            // those left.
            for place in start..end.saturating_sub(1) {
                let total: u64 = order[place..end].iter().map(|&i| route.targets[i as usize].weight as u64).sum();
                let mut pick = next_random(rng) % total.max(1);
                for j in place..end {
                    let w = route.targets[order[j] as usize].weight as u64;
                    if pick < w {
                        order.swap(place, j);
                        break;
                    }
                    pick -= w;
                }
            }
            start = end;
        }
        Plan { order, len, cursor: 0, attempts: 0, tried: 0, excluded: 0, charged: 0, retries: 0, budget_denied: false }
    }

    /// The next target to try, and the back-off to wait first (when it was
    /// tried already in this request). `None` when the attempt budget is
    /// spent or every target's breaker is open.
    pub fn next(
        &mut self,
        breakers: &[std::rc::Rc<Breaker>],
        routing: &Routing,
        now: Instant,
        rng: &Cell<u64>,
    ) -> Option<(usize, Duration)> {
        if self.attempts >= routing.max_attempts || self.len == 0 {
            return None;
        }
        for _ in 0..self.len {
            let target = self.order[self.cursor % self.len] as usize;
            self.cursor += 1;
            if self.excluded & (1 << target) != 0
                || !breakers.get(target).is_none_or(|b| b.admits(now, routing.breaker_cooldown))
            {
                continue;
            }
            // A retry spends the target's budget; a first attempt adds to it.
            if let Some(b) = breakers.get(target) {
                if self.attempts == 0 {
                    b.first_attempt(routing);
                } else if !b.take_retry(routing) {
                    self.budget_denied = true;
                    continue;
                }
            }
            self.attempts += 1;
            let again = self.tried & (1 << target) != 0;
            self.tried |= 1 << target;
            let backoff = if again {
                self.retries += 1;
                jittered(routing.retry_backoff, self.retries, rng)
            } else {
                Duration::ZERO
            };
            return Some((target, backoff));
        }
        None
    }

    /// Keeps `target` out of the rest of this request: a target that timed
    /// out is not waited on twice, and a request the upstream may have
    /// acted on is not sent to it again.
    pub fn exclude(&mut self, target: usize) {
        self.excluded |= 1 << target;
    }

    /// Whether a failure of `target` counts against its breaker: once per
    /// request, however many attempts it made there, so that one client's
    /// few requests cannot open a breaker for everyone on the core.
    pub fn charge(&mut self, target: usize) -> bool {
        let first = self.charged & (1 << target) == 0;
        self.charged |= 1 << target;
        first
    }

    /// Whether another attempt could follow this one: attempts are left,
    /// and some target could take it now (not excluded, its breaker not
    /// open, not resting at its upstream's request, its retry budget not
    /// spent). When none could, the answer in hand is the one to relay.
    pub fn has_more(&self, breakers: &[std::rc::Rc<Breaker>], routing: &Routing, now: Instant) -> bool {
        self.attempts < routing.max_attempts
            && (0..self.len).map(|i| self.order[i] as usize).any(|t| {
                self.excluded & (1 << t) == 0
                    && breakers.get(t).is_none_or(|b| {
                        b.state(now) != BreakerState::Open && b.resting(now).is_none() && b.retry_available(routing)
                    })
            })
    }
}

/// Exponential back-off with full jitter before the n-th retry (n from 1):
/// uniform in [0, base * 2^(n-1)), so the first retry waits less than
/// `retry_backoff_ms` itself; at most one second.
fn jittered(base: Duration, retry: u32, rng: &Cell<u64>) -> Duration {
    let cap = (base.as_micros() as u64).saturating_mul(1 << retry.saturating_sub(1).min(10)).min(1_000_000);
    Duration::from_micros(next_random(rng) % cap.max(1))
}

/// A request's session for target affinity: `x-tollgate-session` when the
/// client names one, else a hash of the body's first [`SESSION_PREFIX`]
/// bytes, where the system prompt, the tools and the conversation's first
/// turns sit: the prefix a provider's prompt cache keys on, the same for
/// every turn of one conversation. A fixed hash (not keyed): every core
/// and node must place a session alike, and a client can only choose
/// where its own requests go.
pub fn session_of(head: &tollgate_protocol::http1::RequestHead, body: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    match head.header(b"x-tollgate-session") {
        Some(s) => {
            h.write_u8(1);
            h.write(s.trim_ascii());
        }
        None => {
            h.write_u8(0);
            h.write(&body[..body.len().min(SESSION_PREFIX)]);
        }
    }
    splitmix(h.finish())
}

/// Bytes of a body that name its session when the client names none.
pub const SESSION_PREFIX: usize = 4096;

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use tollgate_policy::Target;

    fn routing() -> Routing {
        Routing {
            max_attempts: 3,
            retry_backoff: Duration::from_millis(10),
            fallback_on_status: vec![500],
            breaker_failures: 2,
            breaker_cooldown: Duration::from_secs(1),
            retry_budget_permille: 200,
            retry_budget_min: 10,
            retry_after_max: Duration::from_secs(60),
        }
    }

    fn route(targets: &[(u32, u32)]) -> Route {
        Route {
            name: "m".into(),
            targets: targets
                .iter()
                .enumerate()
                .map(|(i, &(priority, weight))| Target {
                    provider: i,
                    upstream_model: "m".into(),
                    priority,
                    weight,
                    reasons: false,
                    builtin_price: None,
                    searches: false,
                    identity: Target::identity(&format!("p{i}"), "m", 0),
                })
                .collect(),
            price: None,
            cache: true,
            affinity: true,
            fallback_on_status: None,
            reasoning: None,
        }
    }

    #[test]
    fn ordered_fallback_then_retry_with_backoff() {
        let rng = Cell::new(0x1234_5678);
        let r = route(&[(0, 1), (1, 1)]);
        let breakers: Vec<_> = (0..2).map(|_| Rc::new(Breaker::default())).collect();
        let mut plan = Plan::new(&r, &rng);
        let now = Instant::now();
        assert_eq!(plan.next(&breakers, &routing(), now, &rng), Some((0, Duration::ZERO)));
        assert_eq!(plan.next(&breakers, &routing(), now, &rng), Some((1, Duration::ZERO)));
        let (t, backoff) = plan.next(&breakers, &routing(), now, &rng).unwrap();
        assert_eq!(t, 0);
        assert!(backoff < Duration::from_millis(80));
        assert_eq!(plan.next(&breakers, &routing(), now, &rng), None, "attempt budget spent");
    }

    #[test]
    fn a_spent_retry_budget_ends_the_plan_and_a_resting_target_is_skipped() {
        let rng = Cell::new(0x1234_5678);
        let r = route(&[(0, 1), (1, 1)]);
        let breakers: Vec<_> = (0..2).map(|_| Rc::new(Breaker::default())).collect();
        let none = Routing { retry_budget_permille: 0, retry_budget_min: 0, ..routing() };
        let now = Instant::now();
        let mut plan = Plan::new(&r, &rng);
        assert_eq!(plan.next(&breakers, &none, now, &rng), Some((0, Duration::ZERO)));
        assert!(!plan.has_more(&breakers, &none, now), "no retry budget: the answer in hand is relayed");
        assert_eq!(plan.next(&breakers, &none, now, &rng), None);
        assert!(plan.budget_denied);
        // The first target rests at its upstream's request: the plan starts
        // with the second, and no retry goes back to the first.
        breakers[0].rest(now, Duration::from_secs(5), &routing());
        let mut plan = Plan::new(&r, &rng);
        assert_eq!(plan.next(&breakers, &routing(), now, &rng), Some((1, Duration::ZERO)));
        assert_eq!(plan.next(&breakers, &routing(), now, &rng).map(|(t, _)| t), Some(1));
    }

    #[test]
    fn a_session_keeps_its_target_and_sessions_spread_by_weight() {
        let rng = Cell::new(99);
        let r = route(&[(0, 3), (0, 1), (5, 1)]);
        let mut first = [0u32; 3];
        for session in 0..8000u64 {
            let s = splitmix(session);
            let plan = Plan::for_session(&r, &rng, Some(s));
            // The same session, the same order, whatever the generator.
            for _ in 0..3 {
                assert_eq!(Plan::for_session(&r, &rng, Some(s)).order, plan.order);
            }
            assert_eq!(plan.order[2], 2, "the lower priority stays last");
            first[plan.order[0] as usize] += 1;
        }
        assert!((5700..6300).contains(&first[0]), "3:1 weights gave {first:?}");
        // Taking a target away moves only its own sessions, wherever it
        // stood in the list (a reload that takes the first away moves
        // every other target's index down by one).
        let three = route(&[(0, 1), (0, 1), (0, 1)]);
        for gone in 0..3usize {
            let mut two = three.clone();
            two.targets.remove(gone);
            let mut moved = 0;
            for session in 0..2000u64 {
                let s = splitmix(session);
                let before = three.targets[Plan::for_session(&three, &rng, Some(s)).order[0] as usize].identity;
                let after = two.targets[Plan::for_session(&two, &rng, Some(s)).order[0] as usize].identity;
                if before != three.targets[gone].identity {
                    assert_eq!(after, before, "session {session}, target {gone} taken away");
                } else {
                    moved += 1;
                }
            }
            assert!((500..830).contains(&moved), "a third of the sessions were the gone target's: {moved}");
        }
    }

    #[test]
    fn the_session_is_the_header_or_the_bodys_head() {
        use tollgate_protocol::http1::{HeadLimits, RequestHead};
        let head = |extra: &str| {
            let raw = format!("POST /v1/messages HTTP/1.1\r\nhost: x\r\n{extra}content-length: 0\r\n\r\n");
            RequestHead::parse(bytes::Bytes::from(raw), &HeadLimits::default()).unwrap()
        };
        let system = "s".repeat(SESSION_PREFIX);
        let turn1 = format!("{{\"system\":\"{system}\",\"messages\":[1]}}");
        let turn2 = format!("{{\"system\":\"{system}\",\"messages\":[1,2,3]}}");
        assert_eq!(session_of(&head(""), turn1.as_bytes()), session_of(&head(""), turn2.as_bytes()));
        assert_ne!(session_of(&head(""), b"{\"a\":1}"), session_of(&head(""), b"{\"a\":2}"));
        let named = session_of(&head("x-tollgate-session: abc\r\n"), b"{\"a\":1}");
        assert_eq!(named, session_of(&head("X-Tollgate-Session:  abc \r\n"), b"{\"a\":2}"));
        assert_ne!(named, session_of(&head(""), b"abc"), "a header and a body never name the same session");
    }

    #[test]
    fn weights_share_load_among_equal_priorities() {
        let rng = Cell::new(42);
        let r = route(&[(0, 3), (0, 1), (5, 1)]);
        let mut first = [0u32; 3];
        for _ in 0..4000 {
            let plan = Plan::new(&r, &rng);
            first[plan.order[0] as usize] += 1;
            assert_eq!(plan.order[2], 2, "the lower priority stays last");
        }
        assert!((2800..3200).contains(&first[0]), "{first:?}");
        assert_eq!(first[2], 0);
    }

    #[test]
    fn breaker_opens_skips_probes_once_and_recovers() {
        let rt = routing();
        let b = Breaker::default();
        let t0 = Instant::now();
        b.failure(t0, &rt);
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.failure(t0, &rt);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.admits(t0, rt.breaker_cooldown));
        let later = t0 + Duration::from_millis(1001);
        assert!(b.admits(later, rt.breaker_cooldown), "one probe after the cool-down");
        assert!(!b.admits(later, rt.breaker_cooldown), "only one");
        b.failure(later, &rt);
        assert_eq!(b.state(later), BreakerState::Open, "a failed probe re-opens at once");
        let again = later + Duration::from_millis(1001);
        assert!(b.admits(again, rt.breaker_cooldown));
        b.success();
        assert_eq!(b.state(again), BreakerState::Closed);
    }

    #[test]
    fn an_excluded_target_is_not_tried_again() {
        let rng = Cell::new(9);
        let r = route(&[(0, 1), (1, 1)]);
        let breakers: Vec<_> = (0..2).map(|_| Rc::new(Breaker::default())).collect();
        let now = Instant::now();
        let mut plan = Plan::new(&r, &rng);
        assert_eq!(plan.next(&breakers, &routing(), now, &rng).map(|t| t.0), Some(0));
        plan.exclude(0);
        assert_eq!(plan.next(&breakers, &routing(), now, &rng).map(|t| t.0), Some(1));
        assert_eq!(
            plan.next(&breakers, &routing(), now, &rng).map(|t| t.0),
            Some(1),
            "only the other target is retried"
        );
    }

    #[test]
    fn open_breakers_are_skipped_without_spending_attempts() {
        let rng = Cell::new(7);
        let r = route(&[(0, 1), (1, 1)]);
        let breakers: Vec<_> = (0..2).map(|_| Rc::new(Breaker::default())).collect();
        let now = Instant::now();
        breakers[0].failure(now, &routing());
        breakers[0].failure(now, &routing());
        let mut plan = Plan::new(&r, &rng);
        assert_eq!(plan.next(&breakers, &routing(), now, &rng).map(|t| t.0), Some(1));
        breakers[1].failure(now, &routing());
        breakers[1].failure(now, &routing());
        assert_eq!(plan.next(&breakers, &routing(), now, &rng), None, "all open");
    }

    #[test]
    fn the_first_retry_waits_under_the_base_and_each_next_at_most_twice_longer() {
        let rng = Cell::new(0x9E37_79B9_7F4A_7C15);
        let base = Duration::from_millis(25);
        for _ in 0..1000 {
            assert!(jittered(base, 1, &rng) < base);
            assert!(jittered(base, 2, &rng) < base * 2);
            assert!(jittered(base, 3, &rng) < base * 4);
            assert!(jittered(base, 30, &rng) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn a_request_charges_each_target_once() {
        let r = route(&[(0, 1), (1, 1)]);
        let mut plan = Plan::new(&r, &Cell::new(7));
        assert!(plan.charge(0));
        assert!(!plan.charge(0), "a second failed attempt at the same target");
        assert!(plan.charge(1));
    }
}
