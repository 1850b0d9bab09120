//! A core's state for the requests it serves: the configuration snapshot
//! they run under, and the core's own mutable parts that outlive a reload
//! (upstream pools, circuit breakers, the listener's TLS, the load-sharing
//! random state).
//!
//! A request takes an `Rc` of the state current when it starts and keeps it
//! to its end, so a reload never changes the rules under a request in
//! flight. Reload builds the new state from the old one, in the worker's
//! own thread: upstreams whose address and head are unchanged keep their
//! pools (and warm connections), targets keep their breakers.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use tollgate_policy::Config;
use tollgate_protocol::http1::HeadLimits;

use crate::breaker::{Breaker, BreakerState};
use crate::upstream::{Resolved, Upstream};

/// What requests on one core read: a snapshot of the configuration, and
/// the core's own mutable parts that survive reloads (pools, breakers).
pub struct CoreState {
    pub config: Arc<Config>,
    pub limits: HeadLimits,
    /// By provider index.
    pub upstreams: Vec<Rc<Upstream>>,
    /// By route index, then target index.
    pub breakers: Vec<Vec<Rc<Breaker>>>,
    /// Load sharing and back-off jitter.
    pub rng: Cell<u64>,
    /// TLS on the client listener (`[server.tls]`): new connections
    /// handshake with the configuration current when they are accepted.
    pub tls: Option<monoio_rustls::TlsAcceptor>,
    /// Guardrail classifiers' verdicts by text (emptied by a reload).
    pub verdicts: crate::verdicts::VerdictCache,
    /// Request texts the profiles scanned and found nothing in (emptied by
    /// a reload): a conversation's history is not scanned again each turn.
    /// Keyed by each profile's `Guard` address, so it must never be carried
    /// over to the next config's state as the pools are: a freed profile's
    /// address may be another's after a reload.
    pub clean_texts: std::cell::RefCell<tollgate_policy::guard::CleanTexts>,
    /// The room whole-body guard scans write into, lent to each request
    /// and answer in turn (see [`crate::proxy::guard::ScanRoom`]).
    pub scan_room: std::cell::RefCell<crate::proxy::guard::ScanRoom>,
}

impl CoreState {
    /// Builds this core's state for `config`, taking over the pools of
    /// `old` for providers that did not change.
    pub fn build(
        config: Arc<Config>,
        resolved: &[Resolved],
        tls: Option<Arc<rustls::ServerConfig>>,
        old: Option<&CoreState>,
    ) -> CoreState {
        let upstreams = config
            .providers
            .iter()
            .zip(resolved)
            .map(|(p, r)| {
                let fresh = Upstream::new(p, r);
                old.and_then(|o| o.upstreams.iter().find(|u| u.same_as(&fresh)).cloned())
                    .unwrap_or_else(|| Rc::new(fresh))
            })
            .collect();
        // A target keeps its breaker across a reload if it still exists:
        // the same model's target with the same provider name, upstream
        // model and place among the model's targets with those two
        // (`Target::identity`). The model's name is part of the key because
        // each model's target has a breaker of its own (an alias and a
        // fallback chain through one deployment); keyed without it, every
        // such target got the last model's breaker after a reload, and an
        // open one of another model was dropped, its traffic sent back to
        // a provider that was down.
        let mut old_breakers = HashMap::new();
        if let Some(o) = old {
            for (route, breakers) in o.config.routes.all().iter().zip(&o.breakers) {
                for (t, b) in route.targets.iter().zip(breakers) {
                    old_breakers.insert((route.name.clone(), t.identity), b.clone());
                }
            }
        }
        let breakers = config
            .routes
            .all()
            .iter()
            .map(|route| {
                route
                    .targets
                    .iter()
                    .map(|t| old_breakers.get(&(route.name.clone(), t.identity)).cloned().unwrap_or_default())
                    .collect()
            })
            .collect();
        let s = &config.server;
        let limits = HeadLimits { head_bytes_max: s.head_bytes_max, uri_bytes_max: s.uri_bytes_max };
        let seed = old.map_or_else(seed, |o| o.rng.get());
        // Each core resumes sessions from its own cache: the default one
        // is a mutex every core's handshakes would share.
        let tls = tls.map(|shared| {
            let mut own = (*shared).clone();
            own.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSIONS_PER_CORE);
            monoio_rustls::TlsAcceptor::from(Arc::new(own))
        });
        CoreState {
            config,
            limits,
            upstreams,
            breakers,
            rng: Cell::new(seed),
            tls,
            verdicts: Default::default(),
            clean_texts: Default::default(),
            scan_room: Default::default(),
        }
    }

    /// Every breaker's state for the metrics: (model, provider, upstream
    /// model) and 0 closed, 1 open, 2 half-open.
    pub fn breaker_states(&self, now: std::time::Instant) -> Vec<((String, String, String), u8)> {
        let config = &self.config;
        let mut out = Vec::new();
        for (route, bs) in config.routes.all().iter().zip(&self.breakers) {
            for (t, b) in route.targets.iter().zip(bs) {
                let provider = config.providers.get(t.provider).map_or_else(String::new, |p| p.name.clone());
                let s = match b.state(now) {
                    BreakerState::Closed => 0,
                    BreakerState::Open => 1,
                    BreakerState::HalfOpen => 2,
                };
                out.push(((route.name.clone(), provider, t.upstream_model.clone()), s));
            }
        }
        out
    }
}

/// Client TLS sessions remembered per core for resumption.
const SESSIONS_PER_CORE: usize = 1024;

/// A non-zero seed that differs between cores and runs.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let thread = std::thread::current().id();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&thread, &mut h);
    (nanos ^ std::hash::Hasher::finish(&h)) | 1
}
