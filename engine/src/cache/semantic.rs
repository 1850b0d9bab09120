//! Semantic lookups (`[cache] semantic_model`): a request the exact cache
//! missed is looked up again by the meaning of its last user message,
//! among earlier answers to requests that match it in everything else.
//!
//! - **What is compared**: the text of the last `user` message (its
//!   string, or its text parts joined by newlines), embedded through the
//!   configured model of this gateway (a `POST /embeddings` to its first
//!   target that answers, on the core's pool: the worker's other
//!   connections go on meanwhile), billed to the team as a request of its
//!   own (a record for the embedding model, its tokens and cost).
//! - **Partitions**: everything else about the request must match
//!   exactly: the same key material as the exact cache (API, team or key,
//!   stream, forwarded headers) over the body with that one message's
//!   content taken out (model, system prompt, the rest of the
//!   conversation, parameters), and the question's numbers and negations
//!   (`must_match`: `15% of 80` is never answered as `15% of 90`, nor
//!   `is it safe` as `is it not safe`). A cached answer is only ever
//!   served for the same conversation up to its last question.
//! - **The index**: per core, unit vectors per partition, searched by dot
//!   product (cosine similarity): exactly while a partition is small; past
//!   4 MiB of floats, through 256-bit sketches first (the signs of random
//!   projections: SimHash), scoring exactly only the vectors whose sketch
//!   could pass the threshold (100,000 vectors in 0.7 ms; BENCHMARKS.md).
//!   Whatever is served was scored exactly: the sketches can only miss a
//!   saving, with odds under one in a billion per vector. At most
//!   `semantic_entries_max` vectors per node (split between workers), the
//!   oldest leaving first; a vector whose answer has left the exact store
//!   (evicted, expired) is dropped when found.

use std::collections::VecDeque;
use std::time::Instant;

use rustc_hash::FxHashMap;
use tollgate_policy::config::SemanticCache;

use super::Key;

/// The last user message's text, and the rest of the body in canonical
/// form (that message's content as `null`; `user` and `stream` left out),
/// or `None` when the body has no user message with text.
pub fn question(body: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = v.as_object_mut()?;
    object.remove("user");
    object.remove("stream");
    let messages = object.get_mut("messages")?.as_array_mut()?;
    let last = messages.iter_mut().rev().find(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))?;
    let content = last.get_mut("content")?;
    let text = match &*content {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => {
            // Text parts only: a message with an image is not "the same
            // question" as its text alone.
            if parts.iter().any(|p| p.get("type").and_then(|t| t.as_str()) != Some("text")) {
                return None;
            }
            let texts: Vec<&str> = parts.iter().filter_map(|p| p.get("text")?.as_str()).collect();
            texts.join("\n")
        }
        _ => return None,
    };
    if text.trim().is_empty() {
        return None;
    }
    *content = serde_json::Value::Null;
    let rest = serde_json::to_vec(&v).ok()?;
    let mut canonical = b"semantic:".to_vec();
    tollgate_protocol::canonical::canonical(&rest, &[], &mut canonical).ok()?;
    canonical.push(0);
    canonical.extend_from_slice(must_match(&text).as_bytes());
    Some((text, canonical))
}

/// Words that turn a question around, in the languages most asked in:
/// `is it safe` and `is it not safe` embed close together.
const NEGATIONS: &[&str] = &[
    "not", "no", "never", "none", "nor", "neither", "without", "cannot", "nothing", "nobody", "nicht", "kein", "keine",
    "keinen", "nie", "ohne", "ne", "pas", "jamais", "sans", "aucun", "aucune", "non", "nunca", "sin", "ningún",
    "ninguna", "nada", "senza", "mai", "não", "nem", "sem", "niet", "geen", "nooit", "нет", "не", "ни", "без",
];

/// Characters that negate in Chinese (which has no spaces), and the
/// endings that do in Japanese.
const NEGATING_CHARS: &[char] = &['不', '没', '沒', '无', '無', '非', '别', '別', '未', '勿', '否'];
const NEGATING_ENDINGS: &[&str] = &["ない", "なかった", "ません", "ず"];

/// Signs that change what numbers say (`12 + 7`, `-5`, `15%`, `0.5 <
/// 0.25`, `1.5`): kept where a digit is the nearest other character on
/// either side, so that `well-known` changes nothing.
const NUMBER_SIGNS: &[char] = &['+', '-', '−', '*', '×', '/', '÷', '%', '^', '<', '>', '=', '.', ','];

/// What two questions must share, beyond their embeddings' similarity, to
/// be one: their numbers (each run of digits, in order) and their
/// negations. An embedding hardly tells `15% of 80` from `15% of 90`, or a
/// question from its negation, and the answer to one is wrong for the
/// other; so each is made part of the partition, and only questions that
/// agree on them are ever compared. Questions apart only by them lose a
/// saving, never get a wrong answer.
fn must_match(text: &str) -> String {
    let lower = text.to_lowercase().replace("n't", " not ").replace("n\u{2019}t", " not ");
    // Whether the nearest character that is not a space before or after
    // the one at `i` (`len` bytes) is a digit.
    let near_digit = |i: usize, len: usize| {
        let before = lower[..i].chars().rev().find(|c| !c.is_whitespace());
        let after = lower[i + len..].chars().find(|c| !c.is_whitespace());
        before.is_some_and(|c| c.is_numeric()) || after.is_some_and(|c| c.is_numeric())
    };
    let mut out = String::new();
    let mut number = false;
    for (i, c) in lower.char_indices() {
        if c.is_numeric() {
            if !number {
                out.push(' ');
            }
            out.push(c);
        } else if NEGATING_CHARS.contains(&c) || (NUMBER_SIGNS.contains(&c) && near_digit(i, c.len_utf8())) {
            out.push(' ');
            out.push(c);
        }
        number = c.is_numeric();
    }
    for word in lower.split(|c: char| !c.is_alphanumeric()) {
        if NEGATIONS.contains(&word) {
            out.push(' ');
            out.push_str(word);
        }
    }
    for ending in NEGATING_ENDINGS {
        for _ in lower.matches(ending) {
            out.push(' ');
            out.push_str(ending);
        }
    }
    out
}

/// Unit length, so that a dot product is the cosine similarity; `None`
/// for a vector with no direction or with a value that is not finite.
pub fn normalized(mut v: Vec<f32>) -> Option<Box<[f32]>> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return None;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Some(v.into_boxed_slice())
}

/// The dot product in sixteen independent lanes, which the compiler turns
/// into SIMD (a plain `sum()` must add in order, one at a time: four
/// times slower here, BENCHMARKS.md).
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    let mut lanes = [0f32; 16];
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// [`dot_lanes`] compiled for AVX2: two 8-wide registers per step instead
/// of four 4-wide SSE ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

/// The dot product this machine computes fastest, chosen once per scan.
fn dot_fn() -> fn(&[f32], &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected on this CPU at run time.
        return |a, b| unsafe { dot_avx2(a, b) };
    }
    dot_lanes
}

#[cfg(test)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_fn()(a, b)
}

struct Vector {
    unit: Box<[f32]>,
    answer: Key,
    expires: Instant,
    /// When it was inserted: its place in `Index::order`.
    seq: u64,
}

/// Bits in a vector's sketch: the signs of its projections on this many
/// random hyperplanes (SimHash: two vectors at angle θ differ in each bit
/// with probability θ/π, whatever their dimensions).
const SKETCH_BITS: usize = 256;
type Sketch = [u64; SKETCH_BITS / 64];

/// Partitions up to this many floats (4 MiB: 4,096 vectors of 256
/// dimensions, 682 of 1,536) are scanned exactly; larger ones compare
/// sketches first and score exactly only the vectors whose sketch is close
/// enough to pass the threshold (BENCHMARKS.md).
#[cfg(not(test))]
const EXACT_FLOATS: usize = 1 << 20;
/// Small in unit tests, so that they reach the sketch pass with a few
/// thousand vectors.
#[cfg(test)]
const EXACT_FLOATS: usize = 64 * 1000;

/// One partition's vectors, and their sketches in the same order (kept
/// apart, so that the sketch pass reads 32 bytes a vector).
#[derive(Default)]
struct Partition {
    vectors: Vec<Vector>,
    sketches: Vec<Sketch>,
}

impl Partition {
    fn swap_remove(&mut self, at: usize) {
        self.vectors.swap_remove(at);
        self.sketches.swap_remove(at);
    }

    /// Drops the expired vectors; how many.
    fn drop_expired(&mut self, now: Instant) -> usize {
        let before = self.vectors.len();
        let mut i = 0;
        while i < self.vectors.len() {
            if self.vectors[i].expires <= now {
                self.swap_remove(i);
            } else {
                i += 1;
            }
        }
        before - self.vectors.len()
    }
}

/// The random hyperplanes for vectors of `dims` dimensions: ±1 entries
/// from a fixed seed (every core and every run the same), row by row.
struct Planes {
    dims: usize,
    rows: Vec<f32>,
}

impl Planes {
    fn new(dims: usize) -> Planes {
        let seed = std::cell::Cell::new(0x2545_F491_4F6C_DD1D_u64);
        let rows =
            (0..SKETCH_BITS * dims).map(|_| if crate::next_random(&seed) & 1 == 0 { 1.0 } else { -1.0 }).collect();
        Planes { dims, rows }
    }

    fn sketch(&self, unit: &[f32]) -> Sketch {
        let dot = dot_fn();
        let mut sketch = [0u64; SKETCH_BITS / 64];
        for (k, row) in self.rows.chunks_exact(self.dims).enumerate() {
            if dot(row, unit) > 0.0 {
                sketch[k / 64] |= 1 << (k % 64);
            }
        }
        sketch
    }
}

/// The most sketch bits two vectors at cosine similarity `threshold` or
/// above differ in, but for odds below one in a billion: the binomial's
/// mean plus six standard deviations. A vector past it is not scored (a
/// missed saving at worst: whatever is served was scored exactly).
fn sketch_bound(threshold: f32) -> u32 {
    let n = SKETCH_BITS as f64;
    let p = (threshold.clamp(-1.0, 1.0) as f64).acos() / std::f64::consts::PI;
    (n * p + 6.0 * (n * p * (1.0 - p)).sqrt() + 2.0).ceil() as u32
}

/// The positions of the sketches within `bound` bits of `query`.
#[inline(always)]
fn close_sketches(sketches: &[Sketch], query: &Sketch, bound: u32, out: &mut Vec<usize>) {
    for (i, s) in sketches.iter().enumerate() {
        let differing: u32 = s.iter().zip(query).map(|(x, y)| (x ^ y).count_ones()).sum();
        if differing <= bound {
            out.push(i);
        }
    }
}

/// [`close_sketches`] with the CPU's `popcnt` (the baseline x86-64 target
/// counts bits with shifts and masks, several times slower).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn close_sketches_popcnt(sketches: &[Sketch], query: &Sketch, bound: u32, out: &mut Vec<usize>) {
    close_sketches(sketches, query, bound, out)
}

fn candidates(sketches: &[Sketch], query: &Sketch, bound: u32) -> Vec<usize> {
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: popcnt was detected on this CPU at run time.
        unsafe { close_sketches_popcnt(sketches, query, bound, &mut out) };
        return out;
    }
    close_sketches(sketches, query, bound, &mut out);
    out
}

/// One core's vectors, by partition, bounded in count.
#[derive(Default)]
pub struct Index {
    partitions: FxHashMap<Key, Partition>,
    /// Insertion order, for eviction: (partition, answer, seq). A pair
    /// whose vector was replaced or dropped since is skipped.
    order: VecDeque<(Key, Key, u64)>,
    len: usize,
    next_seq: u64,
    /// The hyperplanes for the dimensions last seen (one embedding model
    /// at a time; another rebuilds them).
    planes: Option<Planes>,
}

impl Index {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn sketch(&mut self, unit: &[f32]) -> Sketch {
        let planes = match self.planes.take() {
            Some(p) if p.dims == unit.len() => p,
            _ => Planes::new(unit.len()),
        };
        let sketch = planes.sketch(unit);
        self.planes = Some(planes);
        sketch
    }

    /// The closest earlier answer in `partition` at `threshold` or above:
    /// its key and the similarity. Expired vectors met on the way leave.
    pub fn nearest(&mut self, partition: &Key, unit: &[f32], threshold: f32, now: Instant) -> Option<(Key, f32)> {
        let p = self.partitions.get_mut(partition)?;
        self.len -= p.drop_expired(now);
        if p.vectors.is_empty() {
            self.partitions.remove(partition);
            return None;
        }
        let large = p.vectors.len() * unit.len() > EXACT_FLOATS;
        let query = if large { Some(self.sketch(unit)) } else { None };
        let p = self.partitions.get(partition)?;
        let dot = dot_fn();
        let score = |v: &Vector| (v.unit.len() == unit.len()).then(|| (v.answer, dot(&v.unit, unit)));
        let best = match query {
            Some(q) => candidates(&p.sketches, &q, sketch_bound(threshold))
                .into_iter()
                .filter_map(|i| score(&p.vectors[i]))
                .max_by(|a, b| a.1.total_cmp(&b.1))?,
            None => p.vectors.iter().filter_map(score).max_by(|a, b| a.1.total_cmp(&b.1))?,
        };
        (best.1 >= threshold).then_some(best)
    }

    /// Keeps a vector for `answer`, the oldest vectors leaving past `max`.
    pub fn insert(&mut self, partition: Key, unit: Box<[f32]>, answer: Key, expires: Instant, max: usize) {
        let sketch = self.sketch(&unit);
        let p = self.partitions.entry(partition).or_default();
        // Most partitions hold one vector (each conversation is its own):
        // room for one, not the four a first push makes.
        if p.vectors.capacity() == 0 {
            p.vectors.reserve_exact(1);
            p.sketches.reserve_exact(1);
        }
        // One vector per answer: a fresher one replaces it.
        if let Some(at) = p.vectors.iter().position(|v| v.answer == answer) {
            p.swap_remove(at);
            self.len -= 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        p.vectors.push(Vector { unit, answer, expires, seq });
        p.sketches.push(sketch);
        self.len += 1;
        self.order.push_back((partition, answer, seq));
        while self.len > max.max(1) {
            let Some((p, a, s)) = self.order.pop_front() else { break };
            self.remove_if(&p, &a, Some(s));
        }
        // The order list holds stale entries of replaced or expired
        // vectors: kept within a bound by compacting when it doubles.
        if self.order.len() > 2 * max.max(1) + 64 {
            let live: std::collections::HashSet<u64> =
                self.partitions.values().flat_map(|p| p.vectors.iter().map(|v| v.seq)).collect();
            self.order.retain(|(_, _, s)| live.contains(s));
        }
    }

    /// Drops the vector for `answer` (its answer has left the store).
    pub fn remove(&mut self, partition: &Key, answer: &Key) {
        self.remove_if(partition, answer, None);
    }

    /// [`Index::remove`], only if the vector is still the one inserted as
    /// `seq` (an older entry of the order list must not drop a newer
    /// vector for the same answer).
    fn remove_if(&mut self, partition: &Key, answer: &Key, seq: Option<u64>) {
        if let Some(p) = self.partitions.get_mut(partition) {
            let found = p.vectors.iter().position(|v| &v.answer == answer && seq.is_none_or(|s| s == v.seq));
            if let Some(at) = found {
                p.swap_remove(at);
                self.len -= 1;
            }
            if p.vectors.is_empty() {
                self.partitions.remove(partition);
            }
        }
    }
}

/// A request's place in the semantic index: its partition and vector.
pub struct Placed {
    pub partition: Key,
    pub unit: Box<[f32]>,
}

/// Vectors longer than this are not indexed (the lookup is a miss).
pub const DIMENSIONS_MAX: usize = 4096;

/// The first vector of an embeddings answer and its prompt tokens, where
/// reported and believable: a whole number above 0 (no text is empty) and
/// at most `USAGE_TOKENS_MAX`, as every answer's count is held to. Else
/// `None`, and the caller bills its own count: once a missing count was
/// 0 (every lookup free) and an absurd one was billed as 2^32 tokens
/// (found by a review).
pub fn read_embedding(answer: &[u8]) -> Option<(Vec<f32>, Option<u64>)> {
    let v: serde_json::Value = serde_json::from_slice(answer).ok()?;
    let floats = v.get("data")?.get(0)?.get("embedding")?.as_array()?;
    let vector: Option<Vec<f32>> = floats.iter().map(|x| x.as_f64().map(|f| f as f32)).collect();
    // OpenAI's largest model has 3,072 dimensions; the bound keeps a
    // vector at most 16 KiB, so the index's memory is bounded by its count.
    let vector = vector.filter(|v| !v.is_empty() && v.len() <= DIMENSIONS_MAX)?;
    let tokens = v.get("usage").and_then(|u| u.get("prompt_tokens")).and_then(|t| t.as_u64());
    Some((vector, tokens.filter(|&n| (1..=tollgate_protocol::openai::USAGE_TOKENS_MAX).contains(&n))))
}

/// Vectors a core may keep.
pub fn per_core(sem: &SemanticCache, share: usize) -> usize {
    (sem.entries_max / share.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_question_is_the_last_user_message_and_the_rest_is_the_partition() {
        let a = br#"{"model":"m","temperature":0,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is the capital of France?"}]}"#;
        let b = br#"{"messages":[{"role":"system","content":"Be brief."},{"content":"capital of France, please","role":"user"}],"temperature":0,"model":"m","user":"u"}"#;
        let (qa, pa) = question(a).expect("a question");
        let (qb, pb) = question(b).expect("a question");
        assert_eq!(qa, "What is the capital of France?");
        assert_eq!(qb, "capital of France, please");
        assert_eq!(pa, pb, "the same partition");
        let other_system = String::from_utf8_lossy(a).replace("Be brief.", "Be verbose.");
        assert_ne!(question(other_system.as_bytes()).unwrap().1, pa);
        let parts = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"one"},{"type":"text","text":"two"}]}]}"#;
        assert_eq!(question(parts).unwrap().0, "one\ntwo");
        let image = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"this?"},{"type":"image_url","image_url":{"url":"http://x/y.png"}}]}]}"#;
        assert!(question(image).is_none(), "an image is part of the question");
        assert!(question(br#"{"model":"m","messages":[{"role":"assistant","content":"hi"}]}"#).is_none());
        assert!(question(br#"{"model":"m","messages":[{"role":"user","content":"  "}]}"#).is_none());
        assert!(question(b"not json").is_none());
    }

    /// Questions apart by a number or a negation are in partitions of
    /// their own, however close their embeddings; apart by wording alone,
    /// they share one.
    #[test]
    fn numbers_and_negations_part_questions() {
        let partition = |q: &str| {
            let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": q}]});
            question(body.to_string().as_bytes()).expect("a question").1
        };
        assert_ne!(partition("What is 15% of 80?"), partition("What is 15% of 90?"));
        assert_ne!(partition("What is 1.5 + 2?"), partition("What is 1.6 + 2?"));
        assert_ne!(partition("Is it safe to eat raw eggs?"), partition("Is it not safe to eat raw eggs?"));
        assert_ne!(partition("Why does it work?"), partition("Why doesn't it work?"));
        assert_ne!(partition("Pourquoi ça marche ?"), partition("Pourquoi ça ne marche pas ?"));
        assert_ne!(partition("这个安全吗"), partition("这个不安全吗"));
        assert_ne!(partition("Price in 2024?"), partition("Price in ٢٠٢٥?"));
        assert_ne!(partition("What is 12 + 7?"), partition("What is 12 - 7?"));
        assert_ne!(partition("Is -5 prime?"), partition("Is 5 prime?"));
        assert_ne!(partition("Is 0.5 > 0.25?"), partition("Is 0.5 < 0.25?"));
        assert_ne!(partition("15% of 80"), partition("15 of 80"));
        assert_ne!(partition("これは安全ですか"), partition("これは安全ではないですか"));
        assert_eq!(partition("A well-known fact about 3 cats"), partition("a wellknown fact about 3 cats"));
        assert_eq!(partition("What is 2+2?"), partition("whats 2 + 2"));
        assert_eq!(partition("What is the capital of France?"), partition("capital of France, please"));
    }

    fn key(i: u8) -> Key {
        [i; 32]
    }

    /// The bytes the index holds besides the vectors' floats: its map,
    /// its partitions' vectors and sketches, its order list, by capacity.
    fn bookkeeping_bytes(index: &Index) -> usize {
        let slot = std::mem::size_of::<(Key, Partition)>() + 1;
        index.partitions.capacity() * slot
            + index
                .partitions
                .values()
                .map(|p| {
                    p.vectors.capacity() * std::mem::size_of::<Vector>()
                        + p.sketches.capacity() * std::mem::size_of::<Sketch>()
                })
                .sum::<usize>()
            + index.order.capacity() * std::mem::size_of::<(Key, Key, u64)>()
    }

    /// The documented memory (docs/configuration.md, `semantic_entries_max`:
    /// 4 bytes a dimension and at most 500 bytes more a vector; about 320
    /// measured here), held: every vector a partition of its own (each
    /// conversation its own), or all in one, at the bound and churning past
    /// it. Partitions made room for four vectors at their first: 634
    /// bytes a vector, where the documentation said about 100 (found by a
    /// review).
    #[test]
    fn bookkeeping_stays_within_the_documented_bytes_a_vector() {
        let later = Instant::now() + Duration::from_secs(60);
        let max = 2000;
        for shape in ["one each", "all in one"] {
            let mut index = Index::default();
            for i in 0..3 * max {
                let mut p = [0u8; 32];
                if shape == "one each" {
                    p[..8].copy_from_slice(&(i as u64).to_le_bytes());
                }
                let mut a = [1u8; 32];
                a[..8].copy_from_slice(&(i as u64).to_le_bytes());
                index.insert(p, normalized(vec![1.0, i as f32]).unwrap(), a, later, max);
                if i >= max {
                    let per = bookkeeping_bytes(&index) / index.len();
                    assert!(per <= 500, "{shape}: {per} bytes a vector at {i}");
                }
            }
        }
    }

    #[test]
    fn the_index_finds_the_nearest_above_the_threshold_and_stays_bounded() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut index = Index::default();
        let unit = |v: &[f32]| normalized(v.to_vec()).unwrap();
        index.insert(key(0), unit(&[1.0, 0.0]), key(10), later, 3);
        index.insert(key(0), unit(&[0.0, 1.0]), key(11), later, 3);
        let (answer, sim) = index.nearest(&key(0), &unit(&[0.9, 0.1]), 0.9, now).expect("near");
        assert_eq!(answer, key(10));
        assert!(sim > 0.99, "{sim}");
        assert!(index.nearest(&key(0), &unit(&[1.0, 1.0]), 0.9, now).is_none(), "0.707 is below 0.9");
        assert!(index.nearest(&key(1), &unit(&[1.0, 0.0]), 0.5, now).is_none(), "another partition");
        // A vector of another length (another embedding model) never matches.
        assert!(index.nearest(&key(0), &unit(&[1.0, 0.0, 0.0]), 0.5, now).is_none());
        for i in 0..10 {
            index.insert(key(2), unit(&[1.0, i as f32]), key(20 + i), later, 3);
            assert!(index.len() <= 3);
        }
        assert!(index.order.len() <= 2 * 3 + 64);
        // A vector inserted again for the same answer is not dropped when
        // its first insertion's turn to leave comes.
        let mut index = Index::default();
        index.insert(key(5), unit(&[1.0, 0.0]), key(50), later, 2);
        index.insert(key(5), unit(&[0.0, 1.0]), key(51), later, 2);
        index.insert(key(5), unit(&[1.0, 0.1]), key(50), later, 2);
        index.insert(key(6), unit(&[1.0, 0.0]), key(60), later, 2);
        assert!(index.nearest(&key(5), &unit(&[1.0, 0.1]), 0.99, now).is_some(), "the newer vector of 50 stayed");
        assert_eq!(index.len(), 2);
        // Expired vectors are not served, and leave.
        index.insert(key(3), unit(&[1.0, 0.0]), key(30), now + Duration::from_millis(1), 3);
        assert!(index.nearest(&key(3), &unit(&[1.0, 0.0]), 0.5, now + Duration::from_millis(1)).is_none());
        assert!(normalized(vec![0.0, 0.0]).is_none() && normalized(vec![f32::NAN, 1.0]).is_none());
    }

    /// A partition past the exact scan's size still finds a close
    /// question among thousands of others: the sketch pass lets it
    /// through and the exact score serves it; one below the threshold is
    /// not served whatever its sketch.
    #[test]
    fn large_partitions_find_close_questions_through_sketches() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut seed = 7u64;
        let mut random = |dims: usize| {
            let v: Vec<f32> = (0..dims)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                })
                .collect();
            v
        };
        let mut index = Index::default();
        let n = EXACT_FLOATS / 64 + 2000;
        for i in 0..n {
            let mut answer = [0u8; 32];
            answer[..8].copy_from_slice(&(i as u64).to_le_bytes());
            index.insert(key(1), normalized(random(64)).unwrap(), answer, later, n + 10);
        }
        let target = random(64);
        index.insert(key(1), normalized(target.clone()).unwrap(), key(99), later, n + 10);
        for (noise, served) in [(0.15f32, true), (0.3, true), (2.0, false)] {
            let near: Vec<f32> = target.iter().zip(random(64)).map(|(t, r)| t + noise * r).collect();
            let near = normalized(near).unwrap();
            let exact = dot_lanes(&near, &normalized(target.clone()).unwrap());
            let found = index.nearest(&key(1), &near, 0.9, now);
            assert_eq!(found.map(|f| f.0), (exact >= 0.9).then_some(key(99)), "noise {noise}: cosine {exact}");
            assert_eq!(exact >= 0.9, served, "the case is what it says: cosine {exact}");
        }
        assert!(sketch_bound(0.99) < sketch_bound(0.9) && sketch_bound(0.9) < SKETCH_BITS as u32 / 2);
    }

    /// The lanes add up to the plain sum, for any length.
    #[test]
    fn the_dot_product_matches_the_plain_sum() {
        for n in 0..80 {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "{n}");
            assert!((dot_lanes(&a, &b) - plain).abs() < 1e-4, "{n}");
        }
    }

    #[test]
    fn embeddings_answers_are_read_by_structure() {
        let a = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-0.25,1e-3]}],"usage":{"prompt_tokens":7,"total_tokens":7}}"#;
        assert_eq!(read_embedding(a), Some((vec![0.5, -0.25, 0.001], Some(7))));
        assert!(read_embedding(br#"{"data":[{"embedding":[]}]}"#).is_none());
        assert!(read_embedding(br#"{"data":[{"embedding":["x"]}]}"#).is_none());
        assert!(read_embedding(br#"{"data":[]}"#).is_none());
        // Counts not to believe: the caller counts.
        for usage in [r#""prompt_tokens":99999999999999"#, r#""prompt_tokens":0"#, r#""prompt_tokens":7.5"#, ""] {
            let doc = format!(r#"{{"data":[{{"embedding":[1]}}],"usage":{{{usage}}}}}"#);
            assert_eq!(read_embedding(doc.as_bytes()).map(|(_, t)| t), Some(None), "{usage}");
        }
    }
}
