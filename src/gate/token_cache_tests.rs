//! Unit tests of `token_cache`.

use super::*;
use serde_json::Map;

fn token(user: &str) -> CachedToken {
    let mut claims = Map::new();
    claims.insert("user_id".into(), user.into());
    CachedToken {
        verified: Rc::new(VerifiedToken {
            provider: 0,
            claims,
            expires_at: None,
        }),
        identity: Arc::from([HeaderWrite::new("x-user-id", Some(user.to_owned()))]),
        properties: Arc::from([]),
        digest: [7; 32],
        alg: Algorithm::HS256,
        subject: None,
    }
}

fn cache(max_entries: usize) -> TokenCache {
    let config = TokenCacheConfig {
        max_entries,
        ttl_seconds: 60,
    };
    TokenCache::new(config, &TokenCache::random_key().unwrap())
}

#[test]
fn a_cached_token_lives_until_the_earlier_of_ttl_and_exp() {
    let mut c = cache(4);
    c.insert(c.tag("t1"), token("a"), None, 1000);
    assert!(c.get(c.tag("t1"), 1059).is_some());
    assert!(c.get(c.tag("t1"), 1060).is_none(), "TTL");
    c.insert(c.tag("t2"), token("b"), Some(1010), 1000);
    assert!(c.get(c.tag("t2"), 1009).is_some());
    assert!(c.get(c.tag("t2"), 1010).is_none(), "exp");
    c.insert(c.tag("t3"), token("c"), Some(999), 1000);
    assert!(
        c.get(c.tag("t3"), 1000).is_none(),
        "already expired: not cached"
    );
}

#[test]
fn only_the_same_token_hits_and_it_brings_its_digest() {
    let mut c = cache(4);
    let mut cached = token("a");
    cached.digest = [9; 32];
    c.insert(c.tag("aaa.bbb.ccc"), cached, None, 0);
    for other in ["aaa.bbb.cc", "aaa.bbb.ccd", "aaa.bbb.ccc ", ""] {
        assert!(c.get(c.tag(other), 1).is_none(), "{other:?}");
    }
    let hit = c.get(c.tag("aaa.bbb.ccc"), 1).unwrap();
    assert_eq!(hit.digest, [9; 32]);
    assert_eq!(hit.verified.claims["user_id"], "a");
}

#[test]
fn tags_depend_on_the_key() {
    let config = TokenCacheConfig {
        max_entries: 1,
        ttl_seconds: 60,
    };
    let one = TokenCache::new(config, &[1; 16]);
    let other = TokenCache::new(config, &[2; 16]);
    assert_eq!(one.tag("aaa.bbb.ccc"), one.tag("aaa.bbb.ccc"));
    assert_ne!(one.tag("aaa.bbb.ccc"), other.tag("aaa.bbb.ccc"));
    assert_ne!(
        TokenCache::random_key().unwrap(),
        TokenCache::random_key().unwrap()
    );
}

#[test]
fn the_oldest_entry_makes_room() {
    let mut c = cache(2);
    c.insert(c.tag("t1"), token("a"), None, 0);
    c.insert(c.tag("t2"), token("b"), None, 0);
    c.insert(c.tag("t3"), token("c"), None, 0);
    assert_eq!(c.len(), 2);
    assert!(c.get(c.tag("t1"), 1).is_none());
    assert!(c.get(c.tag("t3"), 1).is_some());
}

#[test]
fn clear_forgets_everything() {
    let mut c = cache(4);
    c.insert(c.tag("t1"), token("a"), None, 0);
    c.clear();
    assert!(c.is_empty());
    assert!(c.get(c.tag("t1"), 1).is_none());
}

#[test]
fn size_zero_caches_nothing_and_order_stays_bounded() {
    let mut off = cache(0);
    off.insert(off.tag("t1"), token("a"), None, 0);
    assert!(off.is_empty());

    let mut c = cache(2);
    for n in 0..100u8 {
        let key = format!("t{n}");
        c.insert(
            c.tag(&key),
            token("x"),
            Some(u64::from(n) + 1),
            u64::from(n),
        );
        let _ = c.get(c.tag(&key), u64::from(n) + 5);
    }
    assert!(c.order.len() <= 4, "{}", c.order.len());
}
