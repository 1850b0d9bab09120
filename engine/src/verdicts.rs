//! Guardrail classifiers' verdicts and failures (what a request's record
//! keeps of them), and the per-core cache that keeps verdicts by text
//! (`proxy::classify` asks; `state::CoreState` owns the cache).

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use tollgate_policy::config::Classifier;

/// What a classifier said about a text.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// Over the threshold, with the score that decided it.
    Hit(f32),
    Pass(f32),
}

impl Verdict {
    pub fn score(self) -> f32 {
        match self {
            Verdict::Hit(s) | Verdict::Pass(s) => s,
        }
    }
}

/// Verdicts kept on a core: at most this many; the map is emptied when
/// full (a burst of distinct texts then costs calls, never memory).
pub const CACHE_ENTRIES: usize = 4096;

/// A verdict is kept this long: a classifier's model may be updated.
pub const CACHE_TTL: Duration = Duration::from_secs(600);

/// Verdicts by text, on one core.
pub struct VerdictCache {
    keys: RandomState,
    map: RefCell<FxHashMap<u64, (Verdict, Instant)>>,
}

impl Default for VerdictCache {
    fn default() -> Self {
        VerdictCache { keys: RandomState::new(), map: RefCell::new(FxHashMap::default()) }
    }
}

impl VerdictCache {
    /// The key of a text for one classifier of one profile, asked about
    /// in one direction for one team: a classifier is asked a request's
    /// text otherwise than an answer's (a guard model reads it as the
    /// user's or the assistant's; a webhook is told which), so that an
    /// answer's pass must not pass the same text sent as a prompt; and a
    /// verdict kept for one team must not answer another's text faster
    /// than a call would, telling it that someone sent that text (found by
    /// a review).
    pub fn key(
        &self,
        (profile, classifier): (&str, &Classifier),
        (direction, team): (tollgate_policy::guard::Direction, usize),
        text: &[u8],
    ) -> u64 {
        let request = direction == tollgate_policy::guard::Direction::Request;
        self.keys.hash_one((profile, &classifier.name, classifier.kind.as_str(), request, team, text))
    }

    pub fn get(&self, key: u64, now: Instant) -> Option<Verdict> {
        self.map.borrow().get(&key).filter(|(_, until)| now < *until).map(|(v, _)| *v)
    }

    /// Verdicts kept now.
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }

    pub fn put(&self, key: u64, verdict: Verdict, now: Instant) {
        let mut map = self.map.borrow_mut();
        if map.len() >= CACHE_ENTRIES {
            map.clear();
        }
        map.insert(key, (verdict, now + CACHE_TTL));
    }
}

/// Why a classifier gave no verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Unreachable,
    /// An answer that is not the kind's shape, or not a success.
    Unreadable,
    /// Text past what a classifier's calls carry (`proxy::classify`'s
    /// `CALLS_MAX` of `text_bytes_max`): a request's, to a redacting
    /// classifier, or an answer's.
    TooLarge,
}

impl Failure {
    pub fn why(self) -> &'static str {
        match self {
            Failure::Timeout => "a classifier did not answer in time",
            Failure::Unreachable => "a classifier could not be reached",
            Failure::Unreadable => "a classifier's answer could not be read",
            Failure::TooLarge => "more text than a classifier's 16 calls of its text_bytes_max carry",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Unreachable => "unreachable",
            Failure::Unreadable => "unreadable",
            Failure::TooLarge => "too_large",
        }
    }
}

/// One classifier's part in a request, for the record.
#[derive(Clone, Debug)]
pub struct Classified {
    /// The classifier's position in its profile.
    pub index: u16,
    pub outcome: Result<Verdict, Failure>,
    pub cached: bool,
    pub micros: u32,
    /// The asks this entry stands for: a stream's windows are one entry.
    pub windows: u32,
}

impl Classified {
    /// Folds a later ask of the same classifier into this entry: the
    /// worst outcome stays (a hit, then a failure, then the highest
    /// passing score), times add up.
    pub fn merge(&mut self, later: Classified) {
        let rank = |o: &Result<Verdict, Failure>| match o {
            Ok(Verdict::Hit(s)) => (2, *s),
            Err(_) => (1, 0.0),
            Ok(Verdict::Pass(s)) => (0, *s),
        };
        let (a, b) = (rank(&self.outcome), rank(&later.outcome));
        if b.0 > a.0 || (b.0 == a.0 && b.1 > a.1) {
            self.outcome = later.outcome;
        }
        self.cached &= later.cached;
        self.micros = self.micros.saturating_add(later.micros);
        self.windows = self.windows.saturating_add(later.windows);
    }
}
