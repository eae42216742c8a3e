//! A per-worker cache of recently verified tokens, so a repeated token skips signature
//! verification and claim parsing. Only successes are cached; an entry is dropped at the earlier
//! of the token's `exp` and the configured TTL, and all are dropped when a provider's keys change.
//!
//! Entries are found by a 128-bit SipHash-2-4 of the token under a key drawn at random for each
//! cache: a MAC, so no one without the key can make another token land on a cached entry, and
//! the raw token is not kept. SHA-256 would do too, but without hardware help in wasm it cost
//! more than the rest of a cached decision; the SHA-256 digest the revocation check needs is
//! computed once, on insertion, and kept with the entry.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use siphasher::sip128::SipHasher24;

use crate::config::TokenCacheConfig;
use crate::gate::claims::{HeaderWrite, Property};
use crate::revocation::protocol::Digest;
use crate::gate::verify::VerifiedToken;

/// A cached token: what verification found, the identity headers taken from it, the token's
/// SHA-256 digest, and its `alg` (a hit picks its provider again, as verification would).
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub verified: Rc<VerifiedToken>,
    pub identity: Arc<[HeaderWrite]>,
    pub properties: Arc<[Property]>,
    pub digest: Digest,
    pub alg: Algorithm,
    /// Who its requests are counted as, when something counts.
    pub subject: Option<std::sync::Arc<crate::metering::subject::Subject>>,
}

struct Entry {
    cached: CachedToken,
    valid_until: u64,
}

/// A token's tag: its keyed 128-bit SipHash, the key of its entry.
pub type Tag = u128;

/// Tags are already keyed hashes, so the map uses their low bits as they are rather than hash
/// them a second time (with the standard library's randomly keyed SipHash, ~170 instructions a
/// lookup).
#[derive(Default)]
struct TagHasher(u64);

impl Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used by `Tag`'s `Hash`; this folds anything else in all the same.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u128(&mut self, tag: u128) {
        // Truncation intended: the low 64 bits of a keyed hash are as unpredictable as all 128.
        self.0 ^= tag as u64;
    }
}

pub struct TokenCache {
    config: TokenCacheConfig,
    hasher: SipHasher24,
    entries: HashMap<Tag, Entry, BuildHasherDefault<TagHasher>>,
    /// Insertion order, for first-in-first-out eviction: cheap, and good enough for a cache
    /// whose entries all live about the same time.
    order: VecDeque<Tag>,
}

impl TokenCache {
    /// A cache whose tags are keyed with `key`, which must be secret and random (see
    /// `random_key`).
    pub fn new(config: TokenCacheConfig, key: &[u8; 16]) -> Self {
        Self {
            config,
            hasher: SipHasher24::new_with_key(key),
            entries: HashMap::with_capacity_and_hasher(
                config.max_entries.min(4096),
                BuildHasherDefault::default(),
            ),
            order: VecDeque::with_capacity(config.max_entries.min(4096)),
        }
    }

    /// A fresh key from the system's randomness (WASI `random_get` in Envoy).
    pub fn random_key() -> Result<[u8; 16], getrandom::Error> {
        let mut key = [0; 16];
        getrandom::getrandom(&mut key)?;
        Ok(key)
    }

    /// The tag `get` and `insert` take: computed once per request, as a miss goes on to insert.
    pub fn tag(&self, token: &str) -> Tag {
        self.hasher.hash(token.as_bytes()).as_u128()
    }

    /// The token tagged `tag` if it is cached and still valid at `now` (seconds).
    pub fn get(&mut self, tag: Tag, now: u64) -> Option<CachedToken> {
        let entry = self.entries.get(&tag)?;
        if now < entry.valid_until {
            return Some(entry.cached.clone());
        }
        self.entries.remove(&tag);
        None
    }

    /// Caches a token that passed verification at `now`. `expires_at` is its `exp` plus the
    /// clock skew, when it has one.
    pub fn insert(&mut self, tag: Tag, cached: CachedToken, expires_at: Option<u64>, now: u64) {
        if self.config.max_entries == 0 {
            return;
        }
        let mut valid_until = now.saturating_add(self.config.ttl_seconds);
        if let Some(expires_at) = expires_at {
            valid_until = valid_until.min(expires_at);
        }
        if valid_until <= now {
            return;
        }
        while self.entries.len() >= self.config.max_entries {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        let entry = Entry {
            cached,
            valid_until,
        };
        if self.entries.insert(tag, entry).is_none() {
            self.order.push_back(tag);
        }
        // Entries dropped on expiry leave their tag in `order`; trim it so it stays bounded.
        if self.order.len() > self.config.max_entries.saturating_mul(2) {
            let entries = &self.entries;
            self.order.retain(|tag| entries.contains_key(tag));
        }
    }

    /// Forgets every token: a provider's keys changed, and a token verified with a key that is
    /// gone must not outlive it here.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
#[path = "token_cache_tests.rs"]
mod tests;
