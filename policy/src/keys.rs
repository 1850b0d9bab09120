//! Virtual keys: the gateway keys that teams and apps hold instead of
//! provider credentials.
//!
//! Keys are configured only as SHA-256 hashes; the key itself exists once,
//! in the output of `tollgate keygen`. A request's key is hashed and the
//! digest looked up in a hash map, then compared with the stored digest in
//! constant time. Timing can at most reveal something about the digest of a
//! guess, never about a stored key, because SHA-256 is preimage resistant.

// Looked up once a request with a SHA-256 digest, in a table the
// configuration fills: Fx hashing, not SipHash (a client cannot add
// entries, so no choice of keys makes a lookup walk more than the table).
use rustc_hash::FxHashMap as HashMap;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::access::ModelSet;
use crate::team::{Budget, RateLimit};

/// The prefix every generated key starts with, so that a leaked key is
/// recognisable in logs and by secret scanners.
pub const KEY_PREFIX: &str = "tg-";

/// Random bytes in a generated key (160 bits).
pub const KEY_RANDOM_BYTES: usize = 20;

pub type KeyHash = [u8; 32];

/// A configured key. `Debug` shows its name, never its hash.
#[derive(Clone, PartialEq, Eq)]
pub struct VirtualKey {
    pub name: String,
    /// Position in the [`KeyTable`].
    pub index: usize,
    /// Index into [`crate::Config::teams`].
    pub team: usize,
    hash: KeyHash,
    /// Unix seconds after which the key is refused.
    pub expires_at: Option<u64>,
    pub revoked: bool,
    /// The team's models, narrowed by the key's own list if it has one.
    pub models: ModelSet,
    pub budget: Budget,
    pub rate_limit: RateLimit,
}

impl fmt::Debug for VirtualKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualKey").field("name", &self.name).field("team", &self.team).finish_non_exhaustive()
    }
}

impl VirtualKey {
    #[allow(clippy::too_many_arguments)] // a plain record built in one place, the validator
    pub fn new(
        name: String,
        team: usize,
        hash: KeyHash,
        expires_at: Option<u64>,
        revoked: bool,
        models: ModelSet,
        budget: Budget,
        rate_limit: RateLimit,
    ) -> VirtualKey {
        VirtualKey { name, index: 0, team, hash, expires_at, revoked, models, budget, rate_limit }
    }
}

/// Why a request was not authenticated. Each maps to 401.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` and no `x-api-key`.
    Missing,
    /// Not a key this gateway knows.
    Unknown,
    Expired {
        key: String,
    },
    Revoked {
        key: String,
    },
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => {
                f.write_str("missing API key: send it as `Authorization: Bearer tg-...` or in `x-api-key`")
            }
            AuthError::Unknown => f.write_str("invalid API key"),
            AuthError::Expired { key } => write!(f, "API key `{key}` has expired"),
            AuthError::Revoked { key } => write!(f, "API key `{key}` has been revoked"),
        }
    }
}

/// All configured keys, by hash. `Debug` shows names, never hashes.
#[derive(Clone, Default)]
pub struct KeyTable {
    keys: Vec<VirtualKey>,
    by_hash: HashMap<KeyHash, usize>,
}

impl fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|k| &k.name)).finish()
    }
}

impl KeyTable {
    pub fn new(mut keys: Vec<VirtualKey>) -> KeyTable {
        for (i, k) in keys.iter_mut().enumerate() {
            k.index = i;
        }
        let by_hash = keys.iter().enumerate().map(|(i, k)| (k.hash, i)).collect();
        KeyTable { keys, by_hash }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn all(&self) -> &[VirtualKey] {
        &self.keys
    }

    /// Finds the key a client presented. `now` is Unix seconds.
    pub fn authenticate(&self, presented: &[u8], now: u64) -> Result<&VirtualKey, AuthError> {
        self.authenticate_digest(&hash_key(presented), now)
    }

    /// [`KeyTable::authenticate`] for a key already hashed ([`hash_key`]).
    pub fn authenticate_digest(&self, digest: &KeyHash, now: u64) -> Result<&VirtualKey, AuthError> {
        let digest = *digest;
        let key = self.by_hash.get(&digest).map(|&i| &self.keys[i]).ok_or(AuthError::Unknown)?;
        if !constant_time_eq_bytes(&key.hash, &digest) {
            return Err(AuthError::Unknown);
        }
        if key.revoked {
            return Err(AuthError::Revoked { key: key.name.clone() });
        }
        if key.expires_at.is_some_and(|t| now >= t) {
            return Err(AuthError::Expired { key: key.name.clone() });
        }
        Ok(key)
    }
}

/// The key a request presents: `Authorization: Bearer KEY` (OpenAI SDKs) or
/// `x-api-key: KEY` (Anthropic SDKs).
pub fn presented_key<'a>(authorization: Option<&'a [u8]>, x_api_key: Option<&'a [u8]>) -> Option<&'a [u8]> {
    if let Some(v) = authorization {
        let v = trim(v);
        if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
            let key = trim(&v[7..]);
            if !key.is_empty() {
                return Some(key);
            }
        }
    }
    x_api_key.map(trim).filter(|k| !k.is_empty())
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &v[start..end]
}

pub fn hash_key(key: &[u8]) -> KeyHash {
    Sha256::digest(key).into()
}

/// Whether two byte strings are equal, in a time that depends on their
/// lengths only.
pub fn constant_time_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A key made from `random` bytes (which the caller takes from the OS).
pub fn key_from_random(random: &[u8; KEY_RANDOM_BYTES]) -> String {
    format!("{KEY_PREFIX}{}", hex(random))
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; 2 * bytes.len()];
    hex_into(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Lowercase hex of `bytes` into `out` (twice as long), with no allocation
/// (a `traceparent` is written this way per request).
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[(b >> 4) as usize];
        pair[1] = DIGITS[(b & 0xf) as usize];
    }
}

/// Parses 64 hex digits.
pub fn parse_hash(s: &str) -> Option<KeyHash> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        let d = |c: u8| (c as char).to_digit(16);
        out[i] = (d(pair[0])? * 16 + d(pair[1])?) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> KeyTable {
        let key = |name: &str, secret: &str, expires_at, revoked| {
            VirtualKey::new(
                name.into(),
                0,
                hash_key(secret.as_bytes()),
                expires_at,
                revoked,
                ModelSet::empty(1),
                Budget::default(),
                RateLimit::default(),
            )
        };
        KeyTable::new(vec![
            key("live", "tg-live", None, false),
            key("old", "tg-old", Some(1000), false),
            key("gone", "tg-gone", None, true),
        ])
    }

    #[test]
    fn authenticate_table() {
        let t = table();
        assert_eq!(t.authenticate(b"tg-live", 5000).map(|k| k.name.as_str()), Ok("live"));
        assert_eq!(t.authenticate(b"tg-old", 999).map(|k| k.name.as_str()), Ok("old"));
        assert_eq!(t.authenticate(b"tg-old", 1000).unwrap_err(), AuthError::Expired { key: "old".into() });
        assert_eq!(t.authenticate(b"tg-gone", 0).unwrap_err(), AuthError::Revoked { key: "gone".into() });
        assert_eq!(t.authenticate(b"tg-nope", 0).unwrap_err(), AuthError::Unknown);
        assert_eq!(t.authenticate(b"", 0).unwrap_err(), AuthError::Unknown);
    }

    #[test]
    fn presented_key_forms() {
        assert_eq!(presented_key(Some(b"Bearer tg-a"), None), Some(&b"tg-a"[..]));
        assert_eq!(presented_key(Some(b"bearer   tg-a  "), None), Some(&b"tg-a"[..]));
        assert_eq!(presented_key(None, Some(b"tg-b")), Some(&b"tg-b"[..]));
        assert_eq!(presented_key(Some(b"Basic abc"), Some(b"tg-b")), Some(&b"tg-b"[..]));
        assert_eq!(presented_key(Some(b"Bearer "), None), None);
        assert_eq!(presented_key(None, None), None);
    }

    #[test]
    fn hex_round_trip_and_debug_hides_hash() {
        let h = hash_key(b"tg-x");
        assert_eq!(parse_hash(&hex(&h)), Some(h));
        assert_eq!(parse_hash("zz"), None);
        let t = table();
        let k = &t.keys[0];
        for dbg in [format!("{k:?}"), format!("{t:?}")] {
            assert!(!dbg.contains(&hex(&k.hash)[..8]), "{dbg}");
            assert!(dbg.contains("live"), "{dbg}");
        }
        assert!(key_from_random(&[0xab; KEY_RANDOM_BYTES]).starts_with("tg-abab"));
    }
}
