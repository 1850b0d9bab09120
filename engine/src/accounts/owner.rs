//! Who spends, and the figures about them that cross threads: owners by
//! index (on a core) and by name (across reloads, in the ledger, in
//! Redis), a minute's use, the merger's spend snapshot, and a strict
//! reservation's release.

use std::collections::HashMap;

/// Who spends: a team or a key, by index into the core's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    Team(usize),
    Key(usize),
}

/// Requests and tokens in one UTC minute (minutes since 1970).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MinuteUse {
    pub minute: u64,
    pub requests: u64,
    pub tokens: u64,
}

impl MinuteUse {
    /// Adds `other`, starting over when it is for a later minute.
    pub fn add(&mut self, other: MinuteUse) {
        if other.minute > self.minute {
            *self = other;
        } else if other.minute == self.minute {
            self.requests = self.requests.saturating_add(other.requests);
            self.tokens = self.tokens.saturating_add(other.tokens);
        }
    }

    /// The use in `minute` (zero if this is for another one).
    pub fn at(self, minute: u64) -> MinuteUse {
        if self.minute == minute {
            self
        } else {
            MinuteUse { minute, ..MinuteUse::default() }
        }
    }
}

/// An owner by name, stable across reloads.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OwnerName {
    Team(String),
    Key(String),
}

impl OwnerName {
    /// Its kind and name: (`team` or `key`, the name), as metric labels,
    /// ledger lines and cluster keys spell them.
    pub fn label(&self) -> (&'static str, &str) {
        match self {
            OwnerName::Team(t) => ("team", t),
            OwnerName::Key(k) => ("key", k),
        }
    }
}

/// Spend by owner in the current UTC day and month, as the merger sends it
/// to every core.
#[derive(Debug, Default)]
pub struct SpendSnapshot {
    /// Day number (days since 1970-01-01) the day figures are for.
    pub day: u64,
    /// (year, month) the month figures are for.
    pub month: (i64, u32),
    pub by_owner: HashMap<OwnerName, (u64, u64)>,
    /// Requests and tokens in the latest minute seen, by owner.
    pub minute: HashMap<OwnerName, MinuteUse>,
    /// The cluster tier is degraded and fails closed: requests under a
    /// budget or rate limit are refused.
    pub cluster_refusing: bool,
    /// The cluster tier is degraded (its totals are older than `stale_after`).
    pub cluster_degraded: bool,
    /// By worker: the number of the last hand-off folded into these
    /// figures, so that a core knows which of its own counts they include.
    pub merged: Vec<u64>,
}

/// A strict reservation that ended: it leaves its owner's hash in the same
/// push as the request's actual spend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Released {
    pub owner: OwnerName,
    pub id: String,
    /// When Redis drops the reservation by itself (Unix seconds): a release
    /// still waiting then is no longer needed.
    pub expires: u64,
}
