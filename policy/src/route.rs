//! The routing table: the model name a client sends, resolved to the
//! targets that can serve it. Built once per configuration; a lookup is one
//! hash probe on the raw bytes of the `model` field, with no string made.

// Looked up once a request with the client's model name, in a table the
// configuration fills: Fx hashing, not SipHash (a client cannot add
// entries, so no name makes a lookup walk more than the table).
use rustc_hash::FxHashMap as HashMap;

use crate::prices::Price;

/// Targets one model may have: enough for any real fallback chain, and a
/// bound the engine's per-request attempt plan relies on.
pub const TARGETS_PER_MODEL_MAX: usize = 16;

/// One upstream that can serve a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Index into [`crate::Config::providers`].
    pub provider: usize,
    /// The model name the provider expects.
    pub upstream_model: String,
    /// Lower is tried first; targets of equal priority share load by weight.
    /// Defaults to the target's position, which makes the list an ordered
    /// fallback chain.
    pub priority: u32,
    pub weight: u32,
    /// The model's answers may bill reasoning the gateway does not see
    /// ([`reasons_unseen`] of the route's `reasoning` and this model),
    /// found once, when the configuration is read.
    pub reasons: bool,
    /// The built-in price of `upstream_model`, found once, when the
    /// configuration is read ([`crate::prices::builtin`]).
    pub builtin_price: Option<Price>,
    /// `upstream_model` searches the web on every request
    /// ([`crate::prices::always_searches`]), found once.
    pub searches: bool,
    /// Who the target is for session affinity ([`Target::identity`]): the
    /// same on every core and node, and across reloads that add, remove or
    /// reorder other targets.
    pub identity: u64,
}

impl Target {
    /// A hash of the provider's name, the upstream model and which of the
    /// model's targets with those two this is (`occurrence`, from 0: a
    /// model may list one deployment twice), FNV-1a (fixed, not seeded per
    /// process: every node must place a session alike). A session's place
    /// among equal targets is drawn from it; drawn from the target's
    /// position, removing a target moved the sessions of every target
    /// after it (their provider-side prompt caches lost).
    pub fn identity(provider: &str, upstream_model: &str, occurrence: u32) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        // The 0xff between the parts cannot occur in UTF-8: ("ab", "c")
        // and ("a", "bc") differ. The first listing hashes no occurrence,
        // so that a second listing added leaves the first's sessions where
        // they are.
        eat(provider.as_bytes());
        eat(&[0xff]);
        eat(upstream_model.as_bytes());
        if occurrence > 0 {
            eat(&[0xff]);
            eat(&occurrence.to_le_bytes());
        }
        h
    }
}

/// A public model name and its targets in order of preference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub targets: Vec<Target>,
    /// From the configuration; `None` falls back to the built-in table
    /// (the budgets stage).
    pub price: Option<Price>,
    /// Answers of this model may be cached (`cache = false` on the model
    /// turns the cache off for it).
    pub cache: bool,
    /// Requests of one session keep to one target among equal priorities
    /// (`affinity = false` shares them at random).
    pub affinity: bool,
    /// This model's own `fallback_on_status`, in place of `[routing]`'s.
    pub fallback_on_status: Option<Vec<u16>>,
    /// `reasoning` from the configuration: whether this model reasons by
    /// default without streaming it; `None` asks the built-in list
    /// ([`crate::prices::reasons_unseen`]) of the target's model.
    pub reasoning: Option<bool>,
}

impl Route {
    /// The price requests to this model pay when `target` serves them: the
    /// configured one, else the built-in one of the target's upstream model.
    pub fn price_of(&self, target: Option<&Target>) -> Option<Price> {
        self.price.or_else(|| target?.builtin_price)
    }
}

/// Whether answers of the upstream model that serves a request may bill
/// reasoning the gateway does not see (a client that leaves then has the
/// answer read to its end, for the provider's usage): the model's
/// configured `reasoning`, else the built-in list's word for the upstream
/// model. Asked once per target, when the configuration is read
/// ([`Target::reasons`]).
pub fn reasons_unseen(reasoning: Option<bool>, upstream_model: &str) -> bool {
    reasoning.unwrap_or_else(|| crate::prices::reasons_unseen(upstream_model))
}

#[derive(Clone, Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
    by_name: HashMap<Box<[u8]>, usize>,
}

impl Routes {
    pub fn new(routes: Vec<Route>) -> Routes {
        let by_name = routes.iter().enumerate().map(|(i, r)| (r.name.as_bytes().into(), i)).collect();
        Routes { routes, by_name }
    }

    /// The route for a model name exactly as the client wrote it, with its
    /// index (the bit that access sets test).
    pub fn find(&self, model: &[u8]) -> Option<(usize, &Route)> {
        self.by_name.get(model).map(|&i| (i, &self.routes[i]))
    }

    /// Every route, in configuration order (for `GET /v1/models`).
    pub fn all(&self) -> &[Route] {
        &self.routes
    }
}
