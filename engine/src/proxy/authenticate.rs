//! Who is asking ([`crate::pipeline::authenticate`] runs it). The key is looked up by its SHA-256 (see
//! `tollgate_policy::keys`); the client's key never leaves the gateway (the
//! upstream request drops `authorization` and `x-api-key`).

use tollgate_policy::keys::presented_key;
use tollgate_policy::{AuthError, VirtualKey};
use tollgate_protocol::http1::RequestHead;

use crate::error::GatewayError;
use crate::state::CoreState;

/// `now`: Unix seconds, the request's start (expiry is judged then).
/// `memo`: the connection's last key and its digest.
pub fn authenticate<'s>(
    state: &'s CoreState,
    head: &RequestHead,
    now: u64,
    memo: &mut KeyMemo,
) -> Result<&'s VirtualKey, GatewayError> {
    let presented = presented_key(head.header(b"authorization"), head.header(b"x-api-key"))
        .ok_or(GatewayError::Auth(AuthError::Missing))?;
    state.config.keys.authenticate_digest(&memo.digest(presented), now).map_err(GatewayError::Auth)
}

/// The last key a connection presented and its SHA-256: a client sends the
/// same key with every request of a keep-alive connection, and hashing it
/// was 5% of a 100-byte request (3,400 instructions of 64,000). Only the
/// digest is remembered across a reload (the key table's lookup is made
/// every time), the key is compared in constant time (a connection a
/// proxy shares between tenants learns nothing of another's key), kept no
/// longer than its connection, and overwritten when it goes.
#[derive(Default)]
pub struct KeyMemo {
    key: Vec<u8>,
    digest: tollgate_policy::keys::KeyHash,
}

impl KeyMemo {
    /// Keys longer than this are hashed every time (a generated key is 43
    /// bytes).
    const KEY_BYTES_MAX: usize = 256;

    /// The digest of `presented`, remembered.
    pub fn digest(&mut self, presented: &[u8]) -> tollgate_policy::keys::KeyHash {
        if !self.key.is_empty() && tollgate_policy::keys::constant_time_eq_bytes(&self.key, presented) {
            return self.digest;
        }
        let digest = tollgate_policy::keys::hash_key(presented);
        self.forget();
        if presented.len() <= Self::KEY_BYTES_MAX {
            self.key.extend_from_slice(presented);
            self.digest = digest;
        }
        digest
    }

    /// Overwrites the key before its room is let go or reused.
    fn forget(&mut self) {
        // Volatile writes, so that the zeroing is not elided as dead.
        for b in self.key.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
        self.key.clear();
    }
}

impl Drop for KeyMemo {
    fn drop(&mut self) {
        self.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memo gives each key its own digest, whatever came before on the
    /// connection, and remembers only short keys.
    #[test]
    fn the_memo_gives_each_key_its_digest() {
        let mut memo = KeyMemo::default();
        let long = vec![b'k'; 300];
        for key in [&b"tg-a"[..], b"tg-a", b"tg-b", b"tg-a", b"", b"tg-a", &long, &long, b"tg-ab", b"tg-a"] {
            assert_eq!(memo.digest(key), tollgate_policy::keys::hash_key(key), "{:?}", String::from_utf8_lossy(key));
        }
        assert_eq!(memo.key, b"tg-a");
        memo.digest(&long);
        assert!(memo.key.is_empty(), "a long key is not kept");
        memo.digest(b"tg-a");
        memo.forget();
        assert!(memo.key.is_empty());
    }
}
