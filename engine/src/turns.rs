//! The Responses API's turns, kept by the gateway for providers that keep
//! none: a response a translated provider served (chat completions,
//! Anthropic) is stored with the conversation that led to it (its input
//! items and its output items), under its id and the key that made it;
//! a later request naming it in `previous_response_id` gets those items
//! put before its own `input`, as OpenAI does for the responses it stores.
//!
//! One store for the node, in 16 shards behind a mutex each: a turn may
//! continue on any core (an agent's next request comes on whichever
//! connection it has), and only Responses requests that store or continue
//! a turn touch it, each for one map operation. Bounded in bytes (the
//! oldest turns go first) and in time (`ttl`); a turn is found only with
//! the key that made it. With `[cluster]`, turns also go to Redis (see
//! `pipeline::turns`), so that a conversation continues on any node.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use tollgate_protocol::Span;

const SHARDS: usize = 16;

/// A new response's id for a translated provider (after `resp_`): 128
/// bits from the OS's random source, in hex. The provider's own id is not
/// used: a translation's may be the same for every answer (Bedrock's,
/// Gemini's), and a turn is found by its id under its key, so two users
/// of one key continued each other's conversations (found by a review);
/// random, it cannot be guessed either.
pub fn new_response_id() -> String {
    let mut random = [0u8; 16];
    if getrandom::fill(&mut random).is_err() {
        // The OS's source failed (it does not, in practice): the clock
        // and a counter keep ids apart, unguessable or not.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = crate::unix_now().as_nanos() as u64;
        random[..8].copy_from_slice(&now.to_le_bytes());
        random[8..].copy_from_slice(&n.to_le_bytes());
    }
    format!("tg{}", tollgate_policy::keys::hex(&random))
}

/// What an entry costs besides its items and names: the map's slot, the
/// two boxed names' allocations, the items' own, and the names again in
/// the eviction order. Counted against the bound, so that many small
/// entries (conversation sizes: 8 bytes of items) cannot take several
/// times the configured bytes.
const ENTRY_BYTES: usize = 192;

/// The node's turns.
pub struct Turns {
    shards: [Mutex<Shard>; SHARDS],
    /// Bytes per shard.
    shard_bytes: usize,
    ttl: Duration,
    /// The teams that made responses passed through ([`Turns::put_owner`]):
    /// a store of their own, each kept up to [`OWNER_TTL`] (OpenAI's 30
    /// days) while it is among the latest [`OWNER_BYTES`] of them (about
    /// 70,000: a busy node forgets sooner, and then the check lets the id
    /// through, as one it never saw), so that neither turns nor their time
    /// push an owner out.
    owners: [Mutex<Shard>; SHARDS],
}

/// How long the team that made a response passed through is kept: as
/// long as OpenAI keeps a stored response (30 days).
pub const OWNER_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Bytes of owners kept on the node (about 70,000 responses, ids and team
/// names their usual length); the oldest go first.
const OWNER_BYTES: usize = 16 << 20;

#[derive(Default)]
struct Shard {
    map: HashMap<(Box<str>, Box<str>), (Bytes, Instant)>,
    /// Insertion order, for eviction: the oldest turns go first.
    order: VecDeque<(Box<str>, Box<str>)>,
    bytes: usize,
}

impl Turns {
    /// A store of at most `bytes_max` bytes of items, each kept `ttl`.
    pub fn new(bytes_max: usize, ttl: Duration) -> Turns {
        Turns { shards: Default::default(), shard_bytes: bytes_max / SHARDS, ttl, owners: Default::default() }
    }

    /// The items of response `id` made with key `key` (a JSON array), while
    /// it lasts.
    pub fn get(&self, key: &str, id: &str, now: Instant) -> Option<Bytes> {
        get(&self.shards, key, id, now)
    }

    /// Keeps `items` (a JSON array) as response `id`'s conversation, for
    /// key `key`; the oldest turns make room. Items larger than a shard
    /// are not kept: false then.
    pub fn put(&self, key: &str, id: &str, items: Bytes, now: Instant) -> bool {
        put(&self.shards, (self.shard_bytes, self.ttl), (key, id), items, now)
    }

    /// Notes that response `id`, made with key `key` by a provider that
    /// keeps its responses (OpenAI's), left a conversation of `tokens`
    /// (its input and its output) at the provider: a later request that
    /// continues it with `previous_response_id` has the provider read
    /// that much more than its body holds. Kept with the turns (the same
    /// bytes bound, the same time), under a name no turn has.
    pub fn put_context(&self, key: &str, id: &str, tokens: u64, now: Instant) {
        let name = context_name(key);
        self.put(&name, id, Bytes::copy_from_slice(&tokens.to_le_bytes()), now);
    }

    /// The tokens of the conversation response `id` (made with key `key`)
    /// left at its provider, as [`Turns::put_context`] noted them.
    pub fn context(&self, key: &str, id: &str, now: Instant) -> Option<u64> {
        let kept = self.get(&context_name(key), id, now)?;
        Some(u64::from_le_bytes(kept.as_ref().try_into().ok()?))
    }

    /// Notes that response `id`, passed through from a provider that keeps
    /// its responses, was made by team `team`: the provider keeps them for
    /// the gateway's one account, so another team that names it would
    /// read the conversation ([`Turns::owner`]). Kept [`OWNER_TTL`], in a
    /// store of [`OWNER_BYTES`] apart from the turns.
    pub fn put_owner(&self, id: &str, team: &str, now: Instant) {
        let bound = (OWNER_BYTES / SHARDS, OWNER_TTL);
        put(&self.owners, bound, (OWNERS, id), Bytes::copy_from_slice(team.as_bytes()), now);
    }

    /// The team that made response `id`, where [`Turns::put_owner`] noted
    /// one.
    pub fn owner(&self, id: &str, now: Instant) -> Option<Bytes> {
        get(&self.owners, OWNERS, id, now)
    }

    /// Bytes kept now (the tests read it).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).bytes).sum()
    }
}

fn shard<'s>(shards: &'s [Mutex<Shard>; SHARDS], key: &str, id: &str) -> std::sync::MutexGuard<'s, Shard> {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let h = BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one((key, id));
    // A panic elsewhere with the lock held leaves a map that is still
    // whole: keep using it.
    shards[(h >> 60) as usize % SHARDS].lock().unwrap_or_else(|e| e.into_inner())
}

/// What `(key, id)` holds in `shards`, while it lasts.
fn get(shards: &[Mutex<Shard>; SHARDS], key: &str, id: &str, now: Instant) -> Option<Bytes> {
    let shard = shard(shards, key, id);
    let (items, expires) = shard.map.get(&(Box::from(key), Box::from(id)))?;
    (now < *expires).then(|| items.clone())
}

/// Keeps `items` under `(key, id)` in `shards` (of `shard_bytes` each) for
/// `ttl`; the oldest entries make room. Larger than a shard: not kept,
/// false.
fn put(
    shards: &[Mutex<Shard>; SHARDS],
    (shard_bytes, ttl): (usize, Duration),
    (key, id): (&str, &str),
    items: Bytes,
    now: Instant,
) -> bool {
    let size = ENTRY_BYTES + items.len() + key.len() + id.len();
    if size > shard_bytes {
        return false;
    }
    let mut shard = shard(shards, key, id);
    let name = (Box::<str>::from(key), Box::<str>::from(id));
    if let Some((old, _)) = shard.map.remove(&name) {
        shard.bytes -= ENTRY_BYTES + old.len() + key.len() + id.len();
        shard.order.retain(|n| n != &name);
    }
    while shard.bytes + size > shard_bytes {
        let Some(oldest) = shard.order.pop_front() else { break };
        if let Some((old, _)) = shard.map.remove(&oldest) {
            shard.bytes -= ENTRY_BYTES + old.len() + oldest.0.len() + oldest.1.len();
        }
    }
    shard.bytes += size;
    shard.order.push_back(name.clone());
    shard.map.insert(name, (items, now + ttl));
    true
}

/// The name responses' owners are kept under, in their own store.
const OWNERS: &str = "owner";

/// The name a key's conversation sizes are kept under: the key's name
/// (which the operator chooses, never a tenant) followed by a control
/// character, so that the size is not taken for a turn of the key.
fn context_name(key: &str) -> String {
    let mut name = String::with_capacity(key.len() + 1);
    name.push_str(key);
    name.push('\u{1}');
    name
}

/// A request's `input` as items, without the brackets: an array's
/// contents, or a string as one user message. `None` for anything else.
pub fn input_items(body: &[u8], input: Span) -> Option<&[u8]> {
    let raw = input.get(body).trim_ascii();
    match raw.first()? {
        b'[' => Some(raw[1..raw.len().checked_sub(1)?].trim_ascii()),
        b'"' => Some(raw),
        _ => None,
    }
}

/// The body continuing a stored conversation: the request's `input`
/// replaced by the stored `items` followed by its own, and its
/// `previous_response_id` by `null` (the provider is not to look for it).
/// A string input becomes a user message.
pub fn continued(body: &[u8], input: Span, previous: Span, items: &[u8]) -> Option<Bytes> {
    let mine = input_items(body, input)?;
    let stored = items.trim_ascii().strip_prefix(b"[")?.strip_suffix(b"]")?.trim_ascii();
    // The id's span is the string's contents: its quotes go too.
    let (p_start, p_end) = (previous.start as usize - 1, previous.end as usize + 1);
    let (i_start, i_end) = (input.start as usize, input.end as usize);
    let mut out = BytesMut::with_capacity(body.len() + items.len() + 64);
    let mut merged = BytesMut::with_capacity(items.len() + mine.len() + 64);
    merged.put_u8(b'[');
    merged.extend_from_slice(stored);
    if !stored.is_empty() && !mine.is_empty() {
        merged.put_u8(b',');
    }
    write_items(&mut merged, mine);
    merged.put_u8(b']');
    // The two spans in body order.
    let mut edits = [(i_start, i_end, &merged[..]), (p_start, p_end, &b"null"[..])];
    edits.sort_by_key(|e| e.0);
    let mut at = 0;
    for (start, end, with) in edits {
        out.extend_from_slice(body.get(at..start)?);
        out.extend_from_slice(with);
        at = end;
    }
    out.extend_from_slice(body.get(at..)?);
    Some(out.freeze())
}

/// Input items (an array's contents, or a string) as array contents.
fn write_items(out: &mut BytesMut, items: &[u8]) {
    if items.first() == Some(&b'"') {
        out.extend_from_slice(b"{\"role\":\"user\",\"content\":");
        out.extend_from_slice(items);
        out.put_u8(b'}');
    } else {
        out.extend_from_slice(items);
    }
}

/// The conversation to keep after an answer: the request's input items
/// (as sent, the stored ones included) and the response's output items,
/// without their ids and statuses (a later provider must not take them
/// for items it stored), as a JSON array; with the response's id. `answer`
/// is the response as the client got it: a JSON `response`, or its event
/// stream, whose `response.completed` carries the whole output.
pub fn conversation(body: &[u8], input: Span, answer: &[u8], stream: bool) -> Option<(String, Bytes)> {
    let response = if stream { completed_response(answer)? } else { serde_json::from_slice(answer).ok()? };
    let id = response.get("id")?.as_str()?.to_string();
    let output = response.get("output")?.as_array()?;
    let mine = input_items(body, input)?;
    let mut out = BytesMut::with_capacity(mine.len() + 256);
    out.put_u8(b'[');
    write_items(&mut out, mine);
    for item in output {
        let mut item = item.clone();
        if let Some(o) = item.as_object_mut() {
            o.remove("id");
            o.remove("status");
        }
        if out.len() > 1 {
            out.put_u8(b',');
        }
        out.extend_from_slice(serde_json::to_string(&item).ok()?.as_bytes());
    }
    out.put_u8(b']');
    Some((id, out.freeze()))
}

/// The `response` of a Responses event stream's `response.completed`.
fn completed_response(stream: &[u8]) -> Option<serde_json::Value> {
    let mut parser = tollgate_protocol::sse::SseParser::new(usize::MAX);
    parser.push(Bytes::copy_from_slice(stream));
    while let Ok(Some(ev)) = parser.next_event() {
        let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&ev.data) else { continue };
        if v.get("type").and_then(|t| t.as_str()) == Some("response.completed") {
            return Some(v.get_mut("response")?.take());
        }
    }
    None
}

#[cfg(test)]
mod tests;
