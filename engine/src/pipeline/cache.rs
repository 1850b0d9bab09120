//! The answer cache's phases (`[cache]`; the store and its parts are
//! [`crate::cache`]): which requests may be answered from it, the key
//! that says two requests are the same, the lookup (exact, shared, then
//! semantic), the answer served from an entry, and the store of a new one.
//!
//! - **Key**: BLAKE3 of the API front, the scope (the team's name, or the
//!   team's and key's with `scope = "key"`, so that one team never
//!   receives another's answer), whether the answer streams, the request
//!   headers a target of the route would receive besides the harmless
//!   [`tollgate_policy::forward::ALWAYS`] ones (a beta flag changes the
//!   answer), and the body as it goes upstream (redacted) in its canonical
//!   form ([`tollgate_protocol::canonical`]) without `user` and `stream`:
//!   whitespace, member order and escapes do not split entries, any other
//!   difference does; with them, the team's guardrail profile and the
//!   route's targets (provider, upstream model, price), and the request
//!   ceilings of the team and key (the output limit the request goes with
//!   is written from them and the price), so that an alias pointed elsewhere, another
//!   profile or another ceiling starts afresh. A cryptographic hash, so that a member of a team
//!   cannot forge a request whose key is a popular one's and plant an
//!   answer under it; BLAKE3 rather than SHA-256 because every cacheable
//!   request hashes its whole prompt: at 100 KB 32 us against 70 us on
//!   the CPU's SHA instructions (about even at 8 KB), and a tenth of the
//!   instructions on CPUs without them, Intel's servers before Ice Lake
//!   among them (BENCHMARKS.md, The answer cache). Version 2 of the key
//!   (version 1 was SHA-256): a shared tier's old entries are never read
//!   again and expire.
//! - **Which requests**: chat completions, Anthropic messages, legacy
//!   completions and embeddings (the Responses API keeps state at the
//!   provider and is not cached); with a `temperature` of 0 or below
//!   unless `sampled = true` (no temperature means the provider's default,
//!   1); not when the team or the model says `cache = false`, nor when the
//!   request says `cache-control: no-store`, `x-tollgate-cache: off`
//!   (`no-cache` skips the lookup but stores the new answer;
//!   `x-tollgate-cache-ttl: N` shortens the entry's life, 0 not to store
//!   it), nor when its body repeats a key anywhere (parsers disagree on
//!   which one a provider reads).
//! - **What is stored**: the answer's body as the client received it
//!   (translated, redacted by the answer guardrails), only for a complete
//!   answer with status 200; one a guardrail or classifier withheld, a
//!   stream cut or capped or whose upstream body ended before its own last
//!   event, an empty one, an answer past `entry_bytes_max` are not. A JSON
//!   answer relayed as it came is kept from the relay's tap (no change to
//!   how it is relayed). A
//!   streamed answer is kept as its events and replayed as them; a JSON
//!   one as its body. The two forms are separate entries.
//! - **The store**: one per core (shared-nothing: no lock between cores),
//!   bounded in bytes (`bytes_max` split between the workers), evicting
//!   with SIEVE (Zhang et al., NSDI 2024: a FIFO queue with a visited bit
//!   and a hand that moves from the oldest entry, sparing visited ones
//!   once): a lookup only sets a bit, and one-hit entries leave first. The
//!   hit ratios that chose it over FIFO and LRU are in BENCHMARKS.md. An
//!   entry past its TTL is never served; it is dropped when looked up or
//!   when the hand reaches it.
//! - **The shared tier**: with `[cluster]`, a local miss asks Redis
//!   (`GET prefix:c:<key>`, within the cluster's `timeout_ms`) before
//!   going upstream, and a new answer is also written there (`SET ... PX`
//!   with its TTL, after the request's record, so the client never waits
//!   for it), so that every core and node serves what one of them stored.
//!   Values are bounded by `entry_bytes_max` and read defensively
//!   ([`decode`]); Redis failing or slow is a miss, never an error.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tollgate_policy::config::Cache as CacheConfig;

use super::{Core, Exchange};
use crate::cache::{decode, encode, semantic, Entry, Kept, Key, Outcome};
use crate::proxy::relay::RelayEnd;
use crate::proxy::Front;
use crate::record::End;
use crate::respond::Client;

/// What the request asked of the cache, read from its headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Asked {
    lookup: bool,
    store: bool,
    ttl: Option<Duration>,
}

fn asked(head: &tollgate_protocol::http1::RequestHead) -> Asked {
    let mut a = Asked { lookup: true, store: true, ttl: None };
    for (name, value) in head.headers() {
        if name.eq_ignore_ascii_case(b"cache-control") {
            for d in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if d.eq_ignore_ascii_case(b"no-store") {
                    a.lookup = false;
                    a.store = false;
                } else if d.eq_ignore_ascii_case(b"no-cache") {
                    a.lookup = false;
                }
            }
        } else if name.eq_ignore_ascii_case(b"x-tollgate-cache") {
            let v = value.trim_ascii();
            if [&b"off"[..], b"no", b"false", b"0", b"bypass"].iter().any(|o| v.eq_ignore_ascii_case(o)) {
                a.lookup = false;
                a.store = false;
            }
        } else if name.eq_ignore_ascii_case(b"x-tollgate-cache-ttl") {
            // Seconds; anything else is taken as "do not store" rather
            // than as the default (the client meant something).
            match std::str::from_utf8(value).ok().and_then(|v| v.trim().parse::<u64>().ok()) {
                Some(0) | None => a.store = false,
                Some(s) => a.ttl = Some(Duration::from_secs(s.min(30 * 86_400))),
            }
        }
    }
    a
}

/// A request's part in the cache once it is looked up and missed: the
/// key to store the answer under, for how long, and the answer's bytes as
/// they are written.
pub struct Pending {
    key: Key,
    ttl: Duration,
    pub kept: Kept,
    /// With semantic lookups: where the answer's vector goes.
    placed: Option<semantic::Placed>,
}

/// The top-level members that do not change the answer.
const NOT_KEYED: &[&[u8]] = &[b"user", b"stream"];

/// Looks the request up: `Some` with the entry to serve on a hit; on a
/// miss the exchange keeps what [`store`] will need. Nothing when the
/// request is not cacheable. Runs after the request's guardrails (a
/// blocked prompt never reaches it) and before anything it could spend.
pub async fn lookup(ex: &mut Exchange<'_>, core: &Core<'_>) -> Option<Rc<Entry>> {
    let config = &core.state.config;
    let cache = config.cache.as_ref()?;
    let key = ex.key().ok()?;
    let routed = ex.routed.as_ref()?;
    let cacheable_front = matches!(ex.front, Front::OpenAi | Front::Anthropic | Front::Completions | Front::Embeddings);
    let team = config.teams.get(key.team)?;
    if !cacheable_front || !team.cache || !routed.route.cache {
        return None;
    }
    let asked = asked(&ex.head);
    if !asked.lookup && !asked.store {
        return None;
    }
    // Without sampling, the same request gets the same answer; with it,
    // only where the operator said that one answer may stand for all.
    // (Decided on the route's scan, before the body is walked again.)
    let samples = ex.front != Front::Embeddings && routed.fields.sampled;
    if samples && !cache.sampled {
        return None;
    }
    let mut canonical = Vec::with_capacity(ex.body.len());
    if tollgate_protocol::canonical::canonical(&ex.body, NOT_KEYED, &mut canonical).is_err() {
        return None;
    }
    let digest = digest(ex, core, cache, &canonical);
    let now = Instant::now();
    let per_core = per_core_bytes(cache, core.cache_share);
    let mut found = {
        let mut store = core.cache.borrow_mut();
        // The size is the configuration's now: a request that started
        // before a reload that changed it would set the old one again
        // (until the next request under the new one).
        if core.accounts.reloaded_since(&core.state.config, |now| now.is_none()) {
            store.set_bytes_max(per_core);
        }
        if asked.lookup {
            store.get(&digest, now)
        } else {
            None
        }
    };
    if let Some(redis) = core.strict.filter(|_| found.is_none() && asked.lookup && cache.shared) {
        let max = (cache.entry_bytes_max as usize).min(per_core);
        found = crate::boxed::boxed(|| shared_get(redis, &digest, max)).await.map(|entry| {
            // Kept here too: the next one on this core is local.
            let entry = Rc::new(entry);
            core.cache.borrow_mut().insert_rc(digest, entry.clone(), Instant::now());
            entry
        });
    }
    match found {
        Some(entry) if entry.stream == routed.fields.stream => {
            ex.reply.cache = Some(Outcome::Hit);
            return Some(entry);
        }
        _ => {}
    }
    let mut placed = None;
    // Only for a key that may use the embedding model itself: the call is
    // billed to it.
    let may_embed = |sem: &&tollgate_policy::config::SemanticCache| key.models.contains(sem.route);
    if let Some(sem) = cache.semantic.as_ref().filter(may_embed).filter(|_| asked.lookup && applies(ex.front)) {
        if let Some((text, mut rest)) = semantic::question(&ex.body) {
            if let Some((unit, by)) = crate::boxed::boxed(|| embed(ex, core, sem, &text)).await {
                // Vectors of two embedding models (a route's fallback
                // answered) are never compared: each model's are a
                // partition of their own.
                rest.push(0);
                rest.extend_from_slice(by.as_bytes());
                let partition = self::digest(ex, core, cache, &rest);
                let now = Instant::now();
                let mut store = core.cache.borrow_mut();
                if let Some((answer, similarity)) = store.semantic.nearest(&partition, &unit, sem.threshold, now) {
                    match store.get(&answer, now) {
                        Some(entry) if entry.stream == routed.fields.stream => {
                            ex.reply.cache = Some(Outcome::SemanticHit(similarity));
                            return Some(entry);
                        }
                        // Its answer has left the store: so does it.
                        _ => store.semantic.remove(&partition, &answer),
                    }
                }
                placed = Some(semantic::Placed { partition, unit });
            }
        }
    }
    ex.reply.cache = Some(Outcome::Miss);
    if asked.store {
        let max = (cache.entry_bytes_max as usize).min(per_core);
        // A client may shorten its answer's life, never lengthen it past
        // the operator's `ttl_s`.
        let ttl = asked.ttl.map_or(cache.ttl, |t| t.min(cache.ttl));
        ex.cache = Some(Box::new(Pending { key: digest, ttl, kept: Kept::new(max), placed }));
    }
    None
}

/// A core's part of the node's store.
fn per_core_bytes(cache: &CacheConfig, share: usize) -> usize {
    (cache.bytes_max / share.max(1) as u64) as usize
}

fn digest(ex: &Exchange<'_>, core: &Core<'_>, cache: &CacheConfig, canonical: &[u8]) -> Key {
    let config = &core.state.config;
    let mut h = blake3::Hasher::new();
    // Each part is length-prefixed, so no two splits of the same bytes
    // make the same key.
    let mut part = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part(b"tollgate answer cache 2");
    part(&[ex.front as u8, u8::from(ex.routed.as_ref().is_some_and(|r| r.fields.stream))]);
    if let Some(key) = ex.trace.key {
        let team = config.teams.get(key.team);
        part(team.map_or("", |t| t.name.as_str()).as_bytes());
        part(if cache.per_key { key.name.as_bytes() } else { b"" });
        // The guardrail profile that shaped the answer, by its rules: a
        // reload that changes them (answers scanned, an action, a deny
        // word), or gives the team another profile, makes new entries,
        // here and in the shared tier.
        let profile = config.team_profile(key.team);
        part(profile.map_or("", |p| p.name.as_str()).as_bytes());
        part(profile.map_or(&[0; 32], |p| &p.rules));
        // The ceilings the request goes with (its output limit is written
        // from them: `forward::output_cap`): a key capped shorter than its
        // team makes entries of its own, so that an answer its limit cut
        // is never served to a key without it, nor a whole one to it.
        let (output, cost) = config.request_ceilings(key);
        part(&output.unwrap_or(u64::MAX).to_le_bytes());
        part(&cost.unwrap_or(u64::MAX).to_le_bytes());
        // Under a cost ceiling the output limit also depends on whether
        // the body, as written, may be billed cache writes
        // (`media::marks_cache`: a `cache_control` anywhere, or a `\u00XX`
        // escape, which the canonical form decodes; members it leaves out,
        // `user`, count too): two bodies of one key went with different
        // limits, and the one cut shorter must not be served for the other
        // (found by a review). Searched once for the exchange, and only
        // where a cost ceiling and a target whose provider bills writes by
        // what the body marks make it count.
        let marks_count = || {
            ex.routed.as_ref().is_some_and(|r| {
                r.route.targets.iter().any(|t| {
                    let writes = crate::proxy::stream::CacheWrites::of(config.providers.get(t.provider));
                    writes.if_marked && !writes.always
                })
            })
        };
        if cost.is_some() && marks_count() {
            part(&[u8::from(ex.prompt.marks_cache(&ex.body))]);
        }
    }
    // What the model name stands for now: its targets (provider and
    // upstream model). An alias pointed elsewhere makes new entries.
    if let Some(route) = ex.routed.as_ref().map(|r| r.route) {
        for t in &route.targets {
            part(config.providers.get(t.provider).map_or("", |p| p.name.as_str()).as_bytes());
            part(t.upstream_model.as_bytes());
            // Its price: a cost ceiling's limit is written from it.
            let p = route.price_of(Some(t)).unwrap_or_default();
            for n in p.numbers() {
                part(&n.to_le_bytes());
            }
        }
    }
    // The headers a target would receive that can change its answer, in
    // name order (lower case), each name with its value.
    if let Some(routed) = ex.routed.as_ref() {
        let mut headers: Vec<(Vec<u8>, &[u8])> = ex
            .head
            .headers()
            .filter(|(n, _)| !tollgate_policy::forward::ALWAYS.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(n)))
            .filter(|(n, _)| routed.route.targets.iter().any(|t| core.state.upstreams[t.provider].forward.allows(n)))
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect();
        headers.sort();
        part(&(headers.len() as u64).to_le_bytes());
        for (n, v) in headers {
            part(&n);
            part(v);
        }
    }
    // The body's form hashed on its own, in one call from a chunk's
    // start: BLAKE3 hashes up to eight 1 KiB chunks at once when it is
    // given them together, and pieces fed one by one go through one lane
    // at a time (the 8 KB prompt's key: 12.4 us fed as the canonical
    // walk's pieces, 10.0 us as one form).
    part(blake3::hash(canonical).as_bytes());
    h.finalize().into()
}

/// Answers the request from `entry`: its body as it was first written,
/// with `x-tollgate-cache: hit`. The record says what the hit saved; it
/// bills nothing.
pub async fn serve(ex: &mut Exchange<'_>, client: &mut Client, entry: Rc<Entry>) -> RelayEnd {
    let close = !ex.keep_alive;
    let http10 = ex.head.minor_version == 0;
    let content_type = if entry.stream { "text/event-stream" } else { "application/json" };
    let chunked = entry.stream && !http10;
    // A stream to an HTTP/1.0 client ends with the connection.
    let close = close || (entry.stream && http10);
    let delimit = match (entry.stream, chunked) {
        (false, _) => crate::respond::Delimit::Length(entry.body.len()),
        (true, true) => crate::respond::Delimit::Chunked,
        (true, false) => crate::respond::Delimit::Close,
    };
    let route = [entry.route.as_bytes()];
    crate::respond::write_answer_head(client, 200, content_type, delimit, close, &ex.reply, &route, None);
    if chunked && !entry.body.is_empty() {
        let mut hdr = [0u8; 18];
        let n = tollgate_protocol::http1::chunk_header(entry.body.len(), &mut hdr);
        client.out.push(Bytes::copy_from_slice(&hdr[..n]));
        client.out.push(entry.body.clone());
        client.out.push(Bytes::from_static(tollgate_protocol::http1::CHUNK_END));
        client.out.push(Bytes::from_static(tollgate_protocol::http1::LAST_CHUNK));
    } else if chunked {
        client.out.push(Bytes::from_static(tollgate_protocol::http1::LAST_CHUNK));
    } else {
        client.out.push(entry.body.clone());
    }
    let sent = client.write(ex.reply.deadline).await.is_ok();
    let mut end = RelayEnd::new(200);
    end.first_write = sent.then(Instant::now);
    end.body_bytes = entry.body.len() as u64;
    end.finish = entry.finish;
    end.end = if sent { End::Completed } else { End::ClientGone };
    end.client_reusable = sent && !close;
    let similarity = match ex.reply.cache {
        Some(Outcome::SemanticHit(s)) => Some(s),
        _ => None,
    };
    ex.trace.cache = Some(crate::record::Cached {
        hit: true,
        similarity,
        saved_micro_usd: entry.cost_micro_usd,
        saved_tokens: entry.usage.map_or(0, |u| u.prompt.saturating_add(u.completion)),
    });
    end
}

/// Whether a JSON answer is one whole object: one framed by the
/// connection's close ends where the connection did, which may be inside
/// it (a lost connection, an upstream that stopped), and a cut answer is
/// not kept to be served for the entry's life.
fn whole_json(body: &[u8]) -> bool {
    let Some(start) = body.iter().position(|b| !b.is_ascii_whitespace()) else { return false };
    body[start] == b'{'
        && tollgate_protocol::json::skip_nested(body, start, 128)
            .is_ok_and(|s| body[s.end..].iter().all(|b| b.is_ascii_whitespace()))
}

/// Whether an answer says it failed, though it came with status 200: an
/// upstream's error in the middle of a stream (an OpenAI chunk or an
/// Anthropic event of `error`, a Responses `error` or `response.failed`,
/// or what a translator made of Gemini's, Bedrock's or Anthropic's, which
/// end the stream as finished after it), or a JSON answer that is an
/// error object. Kept, the failure would be every later asker's answer
/// for the entry's life, on every node with a shared tier (found by a
/// review: an `overloaded_error` part way through Claude's answer).
/// Read by structure (a top-level `error` that is not `null`), and only
/// where the word is written at all.
fn says_failed(body: &Bytes, stream: bool) -> bool {
    let is_error = |doc: &[u8]| {
        if memchr::memmem::find(doc, b"error").is_none() {
            return false;
        }
        let mut top = tollgate_protocol::openai::TopMembers::new(&[b"error"]);
        top.feed(doc);
        top.document()
            .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
            .is_some_and(|v| v.get("error").is_some_and(|e| !e.is_null()))
    };
    if !stream {
        return is_error(body);
    }
    // A stream that never says `error` carries none (its events are not
    // read apart).
    if memchr::memmem::find(body, b"error").is_none() {
        return false;
    }
    let mut events = tollgate_protocol::sse::SseParser::new(body.len().max(1));
    events.push(body.clone());
    while let Ok(Some(ev)) = events.next_event() {
        if matches!(ev.event.as_deref(), Some(b"error" | b"response.failed")) || is_error(&ev.data) {
            return true;
        }
    }
    false
}

/// Keeps the answer just relayed, if it may be: complete, status 200, not
/// withheld or cut, kept whole within the bound. With a shared tier, what
/// to write there once the request is recorded ([`share`]).
pub fn store(ex: &mut Exchange<'_>, core: &Core<'_>, end: &RelayEnd) -> Option<Shared> {
    let mut pending = ex.cache.take()?;
    ex.trace.cache = Some(crate::record::Cached::default());
    if end.status != 200 || end.end != End::Completed || end.usage_rejected {
        return None;
    }
    let body = pending.kept.take()?;
    let stream = ex.routed.as_ref().is_some_and(|r| r.fields.stream);
    if says_failed(&body, stream) || (!stream && !whole_json(&body)) {
        return None;
    }
    // A classifier that gave no verdict and let the exchange through
    // (`on_error = "allow"`): an answer it did not check is not kept, or
    // every hit would pass unchecked for the entry's life, the classifier
    // never asked again (found by a review; a tenant can slow a classifier
    // down with traffic of its own).
    if ex.trace.classified.iter().any(|c| c.outcome.is_err()) {
        return None;
    }
    // An answer cut by an output limit of the moment (`Trace::cap_varies`),
    // which the key does not hold, is not the answer to the body.
    if ex.trace.cap_varies && end.finish.iter().any(|f| matches!(f, "length" | "max_tokens" | "max_output_tokens")) {
        return None;
    }
    let config = &core.state.config;
    let route = ex.trace.route.and_then(|r| config.routes.all().get(r));
    let target = ex.trace.served_by.and_then(|t| route?.targets.get(t as usize));
    let label = target.map_or(String::new(), |t| {
        format!("{}/{}", config.providers.get(t.provider).map_or("", |p| p.name.as_str()), t.upstream_model)
    });
    let cost = route.and_then(|r| r.price_of(target)).zip(end.usage).map_or(0, |(p, u)| u.cost_at(p));
    let now = Instant::now();
    let entry = Entry {
        stream,
        body,
        route: label.into_boxed_str(),
        usage: end.usage,
        finish: end.finish,
        cost_micro_usd: cost,
        expires: now + pending.ttl,
    };
    let shared = core.strict.filter(|_| config.cache.as_ref().is_some_and(|c| c.shared)).map(|_| Shared {
        key: pending.key,
        value: encode(&entry, crate::unix_now().as_millis() as u64 + pending.ttl.as_millis() as u64),
        ttl: pending.ttl,
    });
    let expires = entry.expires;
    let mut store = core.cache.borrow_mut();
    if store.insert(pending.key, entry, now) {
        let sem = config.cache.as_ref().and_then(|c| c.semantic.as_ref());
        if let Some((placed, sem)) = pending.placed.take().zip(sem) {
            let max = semantic::per_core(sem, core.cache_share);
            store.semantic.insert(placed.partition, placed.unit, pending.key, expires, max);
        }
    }
    shared
}

/// An answer to write to the shared tier.
pub struct Shared {
    key: Key,
    value: Vec<u8>,
    ttl: Duration,
}

/// The shared tier's name for `key`: `prefix:c:<hex>`, without the
/// braces of the budgets' keys, so that entries spread over a Redis
/// Cluster's slots instead of all landing on one node.
fn shared_key(prefix: &str, key: &Key) -> String {
    use std::fmt::Write as _;
    let mut k = String::with_capacity(prefix.len() + 3 + 64);
    k.push_str(prefix);
    k.push_str(":c:");
    for b in key {
        let _ = write!(k, "{b:02x}");
    }
    k
}

/// Writes an answer to the shared tier, with its TTL; a failure is only
/// logged (the next request is a miss there).
pub async fn share(core: &Core<'_>, shared: Shared) {
    let Some(redis) = core.strict else { return };
    let name = shared_key(redis.key_prefix(), &shared.key);
    let ms = shared.ttl.as_millis().max(1).to_string();
    let args: [&[u8]; 5] = [b"SET", name.as_bytes(), &shared.value, b"PX", ms.as_bytes()];
    match redis.call(&args).await {
        Ok(tollgate_protocol::resp::Reply::Simple(_)) => {}
        Ok(other) => tracing::debug!(reply = ?other, "the shared cache refused an answer"),
        Err(e) => tracing::debug!(error = %e, "the shared cache is unavailable"),
    }
}

/// The shared tier's entry for `key`: `None` when it has none, when Redis
/// fails or is slow, or when what it holds cannot be read.
async fn shared_get(redis: &crate::cluster::strict::Strict, key: &Key, max: usize) -> Option<Entry> {
    let name = shared_key(redis.key_prefix(), key);
    match redis.call(&[b"GET", name.as_bytes()]).await {
        // Past this node's bound: not an entry this node would have kept.
        Ok(tollgate_protocol::resp::Reply::Bulk(Some(value))) if value.len() > max + 256 => None,
        Ok(tollgate_protocol::resp::Reply::Bulk(Some(value))) => {
            let entry = decode(&value, crate::unix_now().as_millis() as u64, Instant::now());
            if entry.is_none() {
                tracing::debug!("the shared cache holds an entry that cannot be read; taken as a miss");
            }
            entry
        }
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(error = %e, "the shared cache is unavailable; taken as a miss");
            None
        }
    }
}

/// Embeds `text` through the semantic model's targets in order (the
/// first that answers), billing the call to the request's key as a
/// request of its own; with the target that answered (`provider/model`).
/// `None` when none answers in time.
async fn embed(
    ex: &Exchange<'_>,
    core: &Core<'_>,
    sem: &tollgate_policy::config::SemanticCache,
    text: &str,
) -> Option<(Box<[f32]>, String)> {
    let config = &core.state.config;
    let route = config.routes.all().get(sem.route)?;
    let until = ex.deadline.min(Instant::now() + sem.timeout);
    for (t, target) in route.targets.iter().enumerate() {
        let body = serde_json::json!({ "model": target.upstream_model, "input": text, "encoding_format": "float" });
        let body = serde_json::to_vec(&body).ok()?;
        let started = Instant::now();
        let answer =
            crate::proxy::classify::post_whole(core.state, target.provider, "/embeddings", body, until, core.cut);
        let answer = Box::pin(answer).await;
        let mut trace = crate::record::Trace::new(core.recorder.next_id());
        // It began when the call did, not now that it is answered.
        let took = started.elapsed();
        trace.started = started;
        trace.started_unix_ms = trace.started_unix_ms.saturating_sub(took.as_millis() as u64);
        trace.key = ex.trace.key;
        trace.route = Some(sem.route);
        trace.operation = crate::otel::spans::operation(crate::proxy::Front::Embeddings);
        // Its span hangs under the request's cache lookup.
        trace.otel =
            ex.trace.otel.map(|c| c.nested(c.child(crate::otel::SALT_CACHE), crate::otel::SALT_CACHE + 1 + t as u64));
        let outcome = answer.as_ref().map(|_| 200).map_err(|f| f.why());
        trace.attempt(t, started, outcome);
        let Ok(answer) = answer else {
            // Recorded as a failed attempt of its own; the next target.
            trace.status = 502;
            trace.end = crate::record::End::UpstreamFailed;
            crate::pipeline::settle(core, &trace);
            continue;
        };
        trace.served_by = Some(t as u8);
        trace.upstream_micros = crate::record::micros(started.elapsed());
        // The question's tokens as the gateway counts them: billed where
        // the answer's count is missing or not to be believed.
        let counted =
            || crate::pipeline::Prompt::new(tollgate_protocol::tokens::Encoding::O200kBase).tokens(text.as_bytes());
        let Some((vector, tokens)) = semantic::read_embedding(&answer) else {
            // Answered, but not with a vector this index can hold: billed
            // as an answer without usage would be, then the next target.
            trace.status = 200;
            trace.usage_estimated = true;
            trace.usage = Some(crate::record::TokenUsage { prompt: counted(), ..Default::default() });
            crate::pipeline::settle(core, &trace);
            continue;
        };
        trace.status = 200;
        trace.usage_estimated = tokens.is_none();
        let tokens = tokens.unwrap_or_else(counted);
        trace.usage = Some(crate::record::TokenUsage { prompt: tokens, ..Default::default() });
        trace.bytes_in = text.len() as u64;
        crate::pipeline::settle(core, &trace);
        let by = format!(
            "{}/{}",
            config.providers.get(target.provider).map_or("", |p| p.name.as_str()),
            target.upstream_model
        );
        return semantic::normalized(vector).map(|v| (v, by));
    }
    None
}

/// Whether `front` carries a conversation the semantic lookup reads.
fn applies(front: Front) -> bool {
    matches!(front, Front::OpenAi | Front::Anthropic)
}
