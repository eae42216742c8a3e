//! A per-worker cache of recently verified tokens, by digest, so a repeated token skips
//! signature verification and claim parsing. Only successes are cached; an entry is dropped at
//! the earlier of the token's `exp` and the configured TTL, and all are dropped when a provider's
//! keys change.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::revocation::Digest;
use crate::verify::VerifiedToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCacheConfig {
    pub max_entries: usize,
    pub ttl_seconds: u64,
}

struct Entry {
    token: Rc<VerifiedToken>,
    valid_until: u64,
}

pub struct TokenCache {
    config: TokenCacheConfig,
    entries: HashMap<Digest, Entry>,
    /// Insertion order, for first-in-first-out eviction: cheap, and good enough for a cache
    /// whose entries all live about the same time.
    order: VecDeque<Digest>,
}

impl TokenCache {
    pub fn new(config: TokenCacheConfig) -> Self {
        Self {
            config,
            entries: HashMap::with_capacity(config.max_entries.min(4096)),
            order: VecDeque::with_capacity(config.max_entries.min(4096)),
        }
    }

    /// The verified token for `digest` if it is cached and still valid at `now` (seconds).
    pub fn get(&mut self, digest: &Digest, now: u64) -> Option<Rc<VerifiedToken>> {
        let entry = self.entries.get(digest)?;
        if now < entry.valid_until {
            return Some(Rc::clone(&entry.token));
        }
        self.entries.remove(digest);
        None
    }

    /// Caches a token that passed verification at `now`. `expires_at` is its `exp` plus the
    /// clock skew, when it has one.
    pub fn insert(
        &mut self,
        digest: Digest,
        token: Rc<VerifiedToken>,
        expires_at: Option<u64>,
        now: u64,
    ) {
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
        if self
            .entries
            .insert(digest, Entry { token, valid_until })
            .is_none()
        {
            self.order.push_back(digest);
        }
        // Entries dropped on expiry leave their digest in `order`; trim it so it stays bounded.
        if self.order.len() > self.config.max_entries.saturating_mul(2) {
            let entries = &self.entries;
            self.order.retain(|digest| entries.contains_key(digest));
        }
    }

    /// Forgets every token: a provider's keys changed, and a token verified with a key that is
    /// gone must not outlive it here.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn token(user: &str) -> Rc<VerifiedToken> {
        let mut claims = Map::new();
        claims.insert("user_id".into(), user.into());
        Rc::new(VerifiedToken {
            provider: 0,
            claims,
            expires_at: None,
        })
    }

    fn cache(max_entries: usize) -> TokenCache {
        TokenCache::new(TokenCacheConfig {
            max_entries,
            ttl_seconds: 60,
        })
    }

    #[test]
    fn a_cached_token_lives_until_the_earlier_of_ttl_and_exp() {
        let mut c = cache(4);
        c.insert([1; 32], token("a"), None, 1000);
        assert!(c.get(&[1; 32], 1059).is_some());
        assert!(c.get(&[1; 32], 1060).is_none(), "TTL");
        c.insert([2; 32], token("b"), Some(1010), 1000);
        assert!(c.get(&[2; 32], 1009).is_some());
        assert!(c.get(&[2; 32], 1010).is_none(), "exp");
        c.insert([3; 32], token("c"), Some(999), 1000);
        assert!(
            c.get(&[3; 32], 1000).is_none(),
            "already expired: not cached"
        );
    }

    #[test]
    fn the_oldest_entry_makes_room() {
        let mut c = cache(2);
        c.insert([1; 32], token("a"), None, 0);
        c.insert([2; 32], token("b"), None, 0);
        c.insert([3; 32], token("c"), None, 0);
        assert_eq!(c.len(), 2);
        assert!(c.get(&[1; 32], 1).is_none());
        assert!(c.get(&[3; 32], 1).is_some());
    }

    #[test]
    fn clear_forgets_everything() {
        let mut c = cache(4);
        c.insert([1; 32], token("a"), None, 0);
        c.clear();
        assert!(c.is_empty());
        assert!(c.get(&[1; 32], 1).is_none());
    }

    #[test]
    fn size_zero_caches_nothing_and_order_stays_bounded() {
        let mut off = cache(0);
        off.insert([1; 32], token("a"), None, 0);
        assert!(off.is_empty());

        let mut c = cache(2);
        for n in 0..100u8 {
            c.insert([n; 32], token("x"), Some(u64::from(n) + 1), u64::from(n));
            let _ = c.get(&[n; 32], u64::from(n) + 5);
        }
        assert!(c.order.len() <= 4, "{}", c.order.len());
    }
}
