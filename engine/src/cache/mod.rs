//! The answer cache's parts that need no request (`[cache]`; the phases
//! that use them are [`crate::pipeline::cache`]): the store each core
//! keeps, an entry, the bytes of an answer kept as it is written, the
//! `x-tollgate-cache` outcome, the shared tier's value format, and the
//! semantic index ([`semantic`]).
//!
//! - **The store**: one per core (shared-nothing: no lock between cores),
//!   bounded in bytes (`bytes_max` split between the workers), evicting
//!   with SIEVE (Zhang et al., NSDI 2024: a FIFO queue with a visited bit
//!   and a hand that moves from the oldest entry, sparing visited ones
//!   once): a lookup only sets a bit, and one-hit entries leave first. The
//!   hit ratios that chose it over FIFO and LRU are in BENCHMARKS.md. An
//!   entry past its TTL is never served; it is dropped when looked up or
//!   when the hand reaches it. An entry's body is an allocation of its own
//!   size ([`Kept`]), so the bound holds in the process's memory too.
//! - **The shared tier's values** ([`encode`], [`decode`]): read
//!   defensively, since Redis is outside the process.

pub mod semantic;

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rustc_hash::FxHashMap;

use crate::record::TokenUsage;

/// An entry's identity: see the module's documentation.
pub type Key = [u8; 32];

/// One answer kept.
pub struct Entry {
    /// The answer is an event stream (else a JSON body).
    pub stream: bool,
    pub body: Bytes,
    /// `provider/model` that made the answer (`x-tollgate-route`).
    pub route: Box<str>,
    /// What the answer cost to make: saved by each hit.
    pub usage: Option<TokenUsage>,
    /// Why its generations ended, as the client first read it: each hit's
    /// record says the same.
    pub finish: tollgate_protocol::openai::Finish,
    pub cost_micro_usd: u64,
    pub expires: Instant,
}

/// Bytes an entry takes besides its body and route label: the entry in
/// its `Rc` (two counts), its node, and its map slot (key, index and
/// control byte) twice over, for the slack of a table that grows by
/// doubling; so that many tiny answers cannot outgrow the bound. Computed
/// from the types: a fixed 160 was half of what an entry took (found by a
/// review), so a store of small answers held up to twice its `bytes_max`.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>()
    + 2 * std::mem::size_of::<usize>()
    + std::mem::size_of::<Node>()
    + 2 * (std::mem::size_of::<Key>() + std::mem::size_of::<u32>() + 1);

impl Entry {
    fn weight(&self) -> usize {
        self.body.len() + self.route.len() + ENTRY_OVERHEAD
    }
}

const NIL: u32 = u32::MAX;

struct Node {
    key: Key,
    /// `None` in a free slot: a removed answer's bytes go at once.
    entry: Option<Rc<Entry>>,
    visited: bool,
    /// Toward the newest entry.
    newer: u32,
    /// Toward the oldest.
    older: u32,
}

/// Counts since start, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub inserted: u64,
    pub evicted: u64,
    pub expired: u64,
    pub entries: u64,
    pub bytes: u64,
}

/// One core's answers, bounded in bytes, evicted with SIEVE.
pub struct Store {
    /// Semantic lookups' vectors, pointing at entries of this store.
    pub semantic: semantic::Index,
    map: FxHashMap<Key, u32>,
    nodes: Vec<Node>,
    free: Vec<u32>,
    newest: u32,
    oldest: u32,
    hand: u32,
    bytes: usize,
    bytes_max: usize,
    counts: StoreCounts,
}

impl Store {
    pub fn new(bytes_max: usize) -> Store {
        Store {
            semantic: semantic::Index::default(),
            map: FxHashMap::default(),
            nodes: Vec::new(),
            free: Vec::new(),
            newest: NIL,
            oldest: NIL,
            hand: NIL,
            bytes: 0,
            bytes_max,
            counts: StoreCounts::default(),
        }
    }

    /// A new bound (after a reload); entries past it leave as the next
    /// ones arrive.
    pub fn set_bytes_max(&mut self, bytes_max: usize) {
        self.bytes_max = bytes_max;
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn counts(&self) -> StoreCounts {
        StoreCounts { entries: self.map.len() as u64, bytes: self.bytes as u64, ..self.counts }
    }

    /// The entry for `key`, if it is still fresh at `now`.
    pub fn get(&mut self, key: &Key, now: Instant) -> Option<Rc<Entry>> {
        let i = *self.map.get(key)?;
        let node = &mut self.nodes[i as usize];
        let entry = node.entry.clone()?;
        if entry.expires <= now {
            self.remove(i);
            self.counts.expired += 1;
            return None;
        }
        node.visited = true;
        Some(entry)
    }

    /// Keeps `entry` under `key` (replacing one there), evicting until it
    /// fits; false when it is larger than the whole store.
    pub fn insert(&mut self, key: Key, entry: Entry, now: Instant) -> bool {
        self.insert_rc(key, Rc::new(entry), now)
    }

    /// [`Store::insert`] for an entry already shared.
    pub fn insert_rc(&mut self, key: Key, entry: Rc<Entry>, now: Instant) -> bool {
        let weight = entry.weight();
        if weight > self.bytes_max {
            return false;
        }
        if let Some(&i) = self.map.get(&key) {
            self.remove(i);
        }
        while self.bytes + weight > self.bytes_max && !self.map.is_empty() {
            self.evict(now);
        }
        let node = Node { key, entry: Some(entry), visited: false, newer: NIL, older: self.newest };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        if self.newest != NIL {
            self.nodes[self.newest as usize].newer = i;
        }
        self.newest = i;
        if self.oldest == NIL {
            self.oldest = i;
        }
        self.map.insert(key, i);
        self.bytes += weight;
        self.counts.inserted += 1;
        true
    }

    /// SIEVE's eviction: from the hand (else the oldest entry) toward the
    /// newest, visited entries lose their bit and stay; the first that is
    /// unvisited or expired leaves, and the hand stays where it was.
    fn evict(&mut self, now: Instant) {
        let mut at = if self.hand == NIL { self.oldest } else { self.hand };
        loop {
            let node = &mut self.nodes[at as usize];
            let expired = node.entry.as_ref().is_none_or(|e| e.expires <= now);
            if node.visited && !expired {
                node.visited = false;
                at = if node.newer == NIL { self.oldest } else { node.newer };
                continue;
            }
            self.hand = node.newer;
            self.remove(at);
            if expired {
                self.counts.expired += 1;
            } else {
                self.counts.evicted += 1;
            }
            return;
        }
    }

    fn remove(&mut self, i: u32) {
        let (newer, older, key, weight) = {
            let n = &self.nodes[i as usize];
            (n.newer, n.older, n.key, n.entry.as_ref().map_or(0, |e| e.weight()))
        };
        if self.hand == i {
            self.hand = newer;
        }
        match newer {
            NIL => self.newest = older,
            n => self.nodes[n as usize].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.nodes[o as usize].newer = newer,
        }
        self.map.remove(&key);
        // The answer's bytes go now, not when the slot is reused.
        self.nodes[i as usize].entry = None;
        self.free.push(i);
        self.bytes -= weight;
    }
}

/// An answer's bytes as the client receives them, up to a bound.
#[derive(Default)]
pub struct Kept {
    parts: Vec<Bytes>,
    len: usize,
    max: usize,
    /// Past the bound, or a body that is not kept whole: not stored.
    spoiled: bool,
}

impl Kept {
    /// Keeps up to `max` bytes.
    pub fn new(max: usize) -> Kept {
        Kept { max, ..Kept::default() }
    }

    /// Keeps a piece of the body (a clone of the bytes the client gets).
    pub fn push(&mut self, data: &Bytes) {
        if self.spoiled || data.is_empty() {
            return;
        }
        self.len += data.len();
        if self.len > self.max {
            self.spoiled = true;
            self.parts = Vec::new();
            return;
        }
        self.parts.push(data.clone());
    }

    /// The answer went another way (relayed as it came): not stored.
    pub fn spoil(&mut self) {
        self.spoiled = true;
        self.parts = Vec::new();
    }

    pub fn take(&mut self) -> Option<Bytes> {
        // An empty body is no answer to serve (and would frame as the
        // end of a chunked one).
        if self.spoiled || self.len == 0 {
            return None;
        }
        // Copied into one allocation of its own size, always: a piece is
        // a slice of the buffer it was read into, and keeping the slice
        // would keep that whole buffer (16 KiB and more) alive for the
        // entry's life, past the store's byte bound (measured: 574 MB of
        // RSS for a 16 MB store before this copy; BENCHMARKS.md).
        let mut all = BytesMut::with_capacity(self.len);
        for p in self.parts.drain(..) {
            all.extend_from_slice(&p);
        }
        Some(all.freeze())
    }
}

/// The `x-tollgate-cache` header of an answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    Hit,
    /// Served for an earlier request this close in meaning (cosine
    /// similarity of the last user messages).
    SemanticHit(f32),
    Miss,
}

impl Outcome {
    /// The header's value: `hit`, `miss`, `semantic-hit; similarity=0.973`.
    pub fn write(self, out: &mut BytesMut) {
        match self {
            Outcome::Hit => out.extend_from_slice(b"hit"),
            Outcome::Miss => out.extend_from_slice(b"miss"),
            Outcome::SemanticHit(s) => out.extend_from_slice(format!("semantic-hit; similarity={s:.3}").as_bytes()),
        }
    }
}

/// The shared tier's bytes for an entry that expires at `expires_unix_ms`:
/// a version, the stream flag, the expiry, the usage and cost, the finish
/// reasons (a count, then each one's code), the route label
/// (length-prefixed) and the body. (Version 1, before finish reasons, is
/// still read.)
pub fn encode(entry: &Entry, expires_unix_ms: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(64 + entry.route.len() + entry.body.len());
    v.extend_from_slice(b"TGC2");
    v.push(u8::from(entry.stream) | (u8::from(entry.usage.is_some()) << 1));
    let u = entry.usage.unwrap_or_default();
    for n in [expires_unix_ms, u.prompt, u.completion, u.cached, u.cache_write, entry.cost_micro_usd] {
        v.extend_from_slice(&n.to_le_bytes());
    }
    let at = v.len();
    v.push(0);
    v.extend(entry.finish.codes());
    v[at] = (v.len() - at - 1) as u8;
    v.extend_from_slice(&(entry.route.len() as u32).to_le_bytes());
    v.extend_from_slice(entry.route.as_bytes());
    v.extend_from_slice(&entry.body);
    v
}

/// Reads [`encode`]'s bytes: `None` for anything else (another version, a
/// truncated or padded value, a route label that is not UTF-8) or for an
/// entry already past its expiry at `now_unix_ms`.
pub fn decode(v: &[u8], now_unix_ms: u64, now: Instant) -> Option<Entry> {
    let (version, rest) = match (v.strip_prefix(b"TGC2"), v.strip_prefix(b"TGC1")) {
        (Some(rest), _) => (2, rest),
        (None, Some(rest)) => (1, rest),
        (None, None) => return None,
    };
    let (&flags, rest) = rest.split_first()?;
    if flags > 3 {
        return None;
    }
    let mut numbers = [0u64; 6];
    let mut rest = rest;
    for n in &mut numbers {
        let (word, tail) = rest.split_first_chunk::<8>()?;
        *n = u64::from_le_bytes(*word);
        rest = tail;
    }
    let [expires_unix_ms, prompt, completion, cached, cache_write, cost] = numbers;
    let (finish, rest) = match version {
        1 => (tollgate_protocol::openai::Finish::default(), rest),
        _ => {
            let (&n, rest) = rest.split_first()?;
            let n = usize::from(n);
            if rest.len() < n || n > tollgate_protocol::openai::Finish::MAX {
                return None;
            }
            let finish = tollgate_protocol::openai::Finish::from_codes(&rest[..n])?;
            (finish, &rest[n..])
        }
    };
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return None;
    }
    let (route, body) = rest.split_at(len);
    let route = std::str::from_utf8(route).ok()?;
    let left = expires_unix_ms.checked_sub(now_unix_ms).filter(|&ms| ms > 0)?;
    // The hour-long writes and the audio are not kept: the entry's cost is.
    let usage =
        (flags & 2 != 0).then_some(TokenUsage { prompt, completion, cached, cache_write, ..TokenUsage::default() });
    Some(Entry {
        stream: flags & 1 != 0,
        body: Bytes::copy_from_slice(body),
        route: route.into(),
        usage,
        finish,
        cost_micro_usd: cost,
        // Never longer than the longest TTL, whatever the value says.
        expires: now + Duration::from_millis(left.min(30 * 86_400_000)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(bytes: usize, expires: Instant) -> Entry {
        Entry {
            stream: false,
            body: Bytes::from(vec![b'x'; bytes]),
            route: Box::from(""),
            usage: None,
            finish: Default::default(),
            cost_micro_usd: 0,
            expires,
        }
    }

    fn key(i: u64) -> Key {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&i.to_le_bytes());
        k
    }

    /// What the overhead counts is at least what an entry's parts take
    /// (the node's and the entry's own sizes are the compiler's).
    #[test]
    fn an_entrys_overhead_covers_its_parts() {
        // Checked as the tests compile: the entry and its node alone are
        // past what the old fixed figure (160) counted.
        const { assert!(std::mem::size_of::<Entry>() + std::mem::size_of::<Node>() > 160) };
        const { assert!(ENTRY_OVERHEAD >= 300, "an entry is a few hundred bytes besides its body") };
    }

    #[test]
    fn the_store_stays_within_its_bound() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut s = Store::new(10 * (1000 + ENTRY_OVERHEAD));
        for i in 0..100 {
            assert!(s.insert(key(i), entry(1000, later), now));
            assert!(s.bytes() <= 10 * (1000 + ENTRY_OVERHEAD), "{}", s.bytes());
        }
        assert_eq!(s.len(), 10);
        // The newest ten are there.
        for i in 90..100 {
            assert!(s.get(&key(i), now).is_some(), "{i}");
        }
        // Larger than the whole store: refused, nothing evicted for it.
        assert!(!s.insert(key(1000), entry(20_000, later), now));
        assert_eq!(s.len(), 10);
        // Replacing an entry does not count it twice.
        assert!(s.insert(key(95), entry(10, later), now));
        assert_eq!(s.len(), 10);
        assert_eq!(s.bytes(), 9 * (1000 + ENTRY_OVERHEAD) + 10 + ENTRY_OVERHEAD);
    }

    #[test]
    fn expired_entries_are_never_served() {
        let now = Instant::now();
        let mut s = Store::new(1 << 20);
        s.insert(key(1), entry(10, now + Duration::from_millis(5)), now);
        assert!(s.get(&key(1), now).is_some());
        assert!(s.get(&key(1), now + Duration::from_millis(5)).is_none());
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
    }

    /// SIEVE keeps an entry that was looked up over newer ones that were
    /// not, once: the hand clears its bit and moves on.
    #[test]
    fn visited_entries_survive_one_pass() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let w = 100 + ENTRY_OVERHEAD;
        let mut s = Store::new(3 * w);
        for i in 0..3 {
            s.insert(key(i), entry(100, later), now);
        }
        assert!(s.get(&key(0), now).is_some());
        s.insert(key(3), entry(100, later), now);
        // 0 was visited: 1 (the oldest unvisited) left instead.
        assert!(s.get(&key(1), now).is_none());
        assert!(s.get(&key(0), now).is_some());
        assert!(s.get(&key(2), now).is_some());
        assert!(s.get(&key(3), now).is_some());
    }

    /// The shared tier's values: a round trip keeps every field; anything
    /// else Redis could hold (another writer's value, a cut one, one with
    /// bytes added, an expired one) is a miss, never a panic.
    #[test]
    fn shared_values_round_trip_and_refuse_anything_else() {
        let now = Instant::now();
        let usage = TokenUsage { prompt: 12, completion: 34, cached: 5, cache_write: 1, ..TokenUsage::default() };
        let e = Entry {
            stream: true,
            body: Bytes::from_static(b"data: {}\n\ndata: [DONE]\n\n"),
            route: Box::from("up/gpt-4o-mini"),
            usage: Some(usage),
            finish: tollgate_protocol::openai::Finish::from_codes(&[1, 2]).unwrap(),
            cost_micro_usd: 789,
            expires: now,
        };
        let v = encode(&e, 10_000);
        let d = decode(&v, 4_000, now).expect("decoded");
        assert_eq!(
            (d.stream, &d.body, &*d.route, d.usage, d.cost_micro_usd),
            (true, &e.body, "up/gpt-4o-mini", Some(usage), 789)
        );
        assert_eq!(d.finish.iter().collect::<Vec<_>>(), ["length", "tool_calls"]);
        // A version-1 value (no reasons): read, with none.
        let mut v1 = b"TGC1".to_vec();
        v1.extend_from_slice(&v[4..5 + 6 * 8]);
        v1.extend_from_slice(&v[5 + 6 * 8 + 3..]);
        let d1 = decode(&v1, 4_000, now).expect("a version-1 value");
        assert!(d1.finish.is_empty() && d1.body == e.body && d1.usage == Some(usage));
        // A reason code past the names: refused.
        let mut bad = v.clone();
        bad[5 + 6 * 8 + 1] = 200;
        assert!(decode(&bad, 0, now).is_none());
        assert_eq!(d.expires, now + Duration::from_millis(6_000));
        assert!(decode(&v, 10_000, now).is_none(), "expired");
        // Cut anywhere before the body ends its header: refused.
        let header = v.len() - e.body.len();
        for cut in 0..header {
            assert!(decode(&v[..cut], 0, now).is_none(), "cut at {cut}");
        }
        let mut other = v.clone();
        other[3] = b'9';
        assert!(decode(&other, 0, now).is_none(), "another version");
        let mut flags = v.clone();
        flags[4] = 9;
        assert!(decode(&flags, 0, now).is_none());
        // A route length past the value's end.
        let mut long = v.clone();
        let at = 5 + 6 * 8 + 3;
        long[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&long, 0, now).is_none());
        // No usage: none comes back.
        let bare = Entry { usage: None, ..e };
        assert_eq!(decode(&encode(&bare, 10), 0, now).map(|d| d.usage), Some(None));
        // A far expiry is held to the longest TTL.
        let far = decode(&encode(&bare, u64::MAX), 0, now).expect("decoded");
        assert_eq!(far.expires, now + Duration::from_secs(30 * 86_400));
    }

    /// A zipfian workload: hit ratios of SIEVE, FIFO and LRU on the same
    /// trace (the figures quoted in BENCHMARKS.md). SIEVE must beat FIFO;
    /// were eviction broken (evicting the visited, say), it would not.
    #[test]
    fn sieve_beats_fifo_on_a_skewed_workload() {
        let ratios = hit_ratios(1.0, 10_000, 500, 200_000);
        eprintln!("zipf 1.0, 10k keys, 500 slots: sieve {:.3} fifo {:.3} lru {:.3}", ratios.0, ratios.1, ratios.2);
        assert!(ratios.0 > ratios.1 + 0.02, "{ratios:?}");
        assert!(ratios.0 >= ratios.2 - 0.01, "{ratios:?}");
    }

    /// The table in BENCHMARKS.md: `cargo test -p tollgate-engine --lib
    /// cache::tests::hit_ratio_table -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, printed for BENCHMARKS.md"]
    fn hit_ratio_table() {
        for s in [0.8, 1.0, 1.2] {
            for slots in [100, 1_000, 5_000] {
                let (sieve, fifo, lru) = hit_ratios(s, 50_000, slots, 1_000_000);
                eprintln!("| {s} | {slots} | {sieve:.3} | {lru:.3} | {fifo:.3} |");
            }
        }
    }

    /// (SIEVE, FIFO, LRU) hit ratios for a zipf(`s`) trace over `keys`
    /// keys, `slots` entries of one size.
    pub(crate) fn hit_ratios(s: f64, keys: usize, slots: usize, requests: usize) -> (f64, f64, f64) {
        // Inverse-CDF sampling from the zipf weights, with a fixed LCG.
        let weights: Vec<f64> = (1..=keys).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut cdf = Vec::with_capacity(keys);
        let mut acc = 0.0;
        for w in &weights {
            acc += w / total;
            cdf.push(acc);
        }
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let trace: Vec<u64> = (0..requests)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (seed >> 11) as f64 / (1u64 << 53) as f64;
                cdf.partition_point(|&c| c < u) as u64
            })
            .collect();
        let now = Instant::now();
        let later = now + Duration::from_secs(3600);
        let mut sieve = Store::new(slots * (10 + ENTRY_OVERHEAD));
        let mut sieve_hits = 0;
        for &k in &trace {
            if sieve.get(&key(k), now).is_some() {
                sieve_hits += 1;
            } else {
                sieve.insert(key(k), entry(10, later), now);
            }
        }
        let (mut fifo, mut fifo_hits) = (std::collections::VecDeque::new(), 0);
        let mut in_fifo = std::collections::HashSet::new();
        let (mut lru, mut lru_hits, mut tick) = (std::collections::BTreeMap::new(), 0, 0u64);
        let mut lru_at = std::collections::HashMap::new();
        for &k in &trace {
            if in_fifo.contains(&k) {
                fifo_hits += 1;
            } else {
                if fifo.len() == slots {
                    in_fifo.remove(&fifo.pop_front().unwrap_or_default());
                }
                fifo.push_back(k);
                in_fifo.insert(k);
            }
            tick += 1;
            if let Some(old) = lru_at.insert(k, tick) {
                lru_hits += 1;
                lru.remove(&old);
            } else if lru.len() == slots {
                if let Some((_, gone)) = lru.pop_first() {
                    lru_at.remove(&gone);
                }
            }
            lru.insert(tick, k);
        }
        let n = requests as f64;
        (sieve_hits as f64 / n, fifo_hits as f64 / n, lru_hits as f64 / n)
    }
}
