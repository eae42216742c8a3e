//! Unit tests of `cache`.

use super::*;
use std::cell::RefCell;
use std::collections::HashMap;

/// Shared data as Envoy keeps it: values with a CAS number bumped on every write.
#[derive(Default)]
struct FakeShared {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    /// Simulates another worker writing between our read and our write.
    interfere: RefCell<u32>,
    gets: RefCell<u32>,
}

impl SharedData for FakeShared {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        *self.gets.borrow_mut() += 1;
        match self.map.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn shared_set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedSetError> {
        let mut map = self.map.borrow_mut();
        if *self.interfere.borrow() > 0 {
            *self.interfere.borrow_mut() -= 1;
            let entry = map.entry(key.to_owned()).or_insert((vec![], 0));
            entry.1 += 1;
            return Err(SharedSetError::CasMismatch);
        }
        let current = map.get(key).map(|(_, c)| *c);
        if let Some(cas) = cas
            && current != Some(cas)
        {
            return Err(SharedSetError::CasMismatch);
        }
        map.insert(key.to_owned(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
}

fn cache(max_entries: u32) -> RevocationCache {
    RevocationCache::new(
        "keyservice",
        CacheConfig {
            max_entries,
            max_active_seconds: 30,
            max_revoked_seconds: 86_400,
        },
    )
}

fn digest(n: u32) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[..4].copy_from_slice(&n.to_le_bytes());
    d[31] = 0xaa;
    d
}

const NOW: u64 = 1_700_000_000_000;

#[test]
fn a_stored_answer_is_found_until_its_ttl_ends() {
    let shared = FakeShared::default();
    let c = cache(16);
    assert_eq!(c.lookup(&shared, &digest(1), NOW), None);
    assert_eq!(
        c.store(&shared, &digest(1), Verdict::Active, 10, NOW),
        StoreOutcome::Stored
    );
    assert_eq!(c.lookup(&shared, &digest(1), NOW), Some(Verdict::Active));
    assert_eq!(
        c.lookup(&shared, &digest(1), NOW + 9_999),
        Some(Verdict::Active)
    );
    assert_eq!(c.lookup(&shared, &digest(1), NOW + 10_000), None);
}

#[test]
fn ttls_are_clamped_per_verdict_and_zero_is_not_stored() {
    let shared = FakeShared::default();
    let c = cache(16);
    c.store(&shared, &digest(1), Verdict::Active, 3_600, NOW);
    assert_eq!(
        c.lookup(&shared, &digest(1), NOW + 30_000),
        None,
        "clamped to 30 s"
    );
    c.store(&shared, &digest(2), Verdict::Revoked, 3_600, NOW);
    assert_eq!(
        c.lookup(&shared, &digest(2), NOW + 3_599_000),
        Some(Verdict::Revoked)
    );
    assert_eq!(
        c.store(&shared, &digest(3), Verdict::Active, 0, NOW),
        StoreOutcome::Skipped
    );
    assert_eq!(c.lookup(&shared, &digest(3), NOW), None);
}

#[test]
fn the_bucket_count_bounds_the_number_of_keys() {
    let shared = FakeShared::default();
    let c = cache(8);
    let mut evictions = 0;
    for n in 0..1_000 {
        if c.store(&shared, &digest(n), Verdict::Active, 30, NOW) == StoreOutcome::Evicted {
            evictions += 1;
        }
    }
    // 8 entries: 2 buckets of 4.
    assert_eq!(shared.map.borrow().len(), 2);
    assert_eq!(evictions, 1_000 - 8);
    let reader = other_worker(8);
    let found = (0..1_000)
        .filter(|&n| reader.lookup(&shared, &digest(n), NOW).is_some())
        .count();
    assert_eq!(found, 8);
    assert_eq!(
        reader.lookup(&shared, &digest(999), NOW),
        Some(Verdict::Active)
    );
}

#[test]
fn keys_sharing_a_bucket_do_not_evict_each_other_while_it_has_room() {
    let shared = FakeShared::default();
    let c = cache(16); // 4 buckets of 4; digest(n) lands in bucket n % 4
    for (n, ttl) in [(0, 10), (4, 20), (8, 30), (12, 40)] {
        assert_eq!(
            c.store(&shared, &digest(n), Verdict::Active, ttl, NOW),
            StoreOutcome::Stored,
            "{n}"
        );
    }
    let reader = other_worker(16);
    for n in [0, 4, 8, 12] {
        assert_eq!(
            reader.lookup(&shared, &digest(n), NOW),
            Some(Verdict::Active)
        );
    }
    // A fifth takes the place of the entry closest to expiry.
    assert_eq!(
        c.store(&shared, &digest(16), Verdict::Active, 30, NOW),
        StoreOutcome::Evicted
    );
    let reader = other_worker(16);
    assert_eq!(reader.lookup(&shared, &digest(0), NOW), None);
    for n in [4, 8, 12, 16] {
        assert_eq!(
            reader.lookup(&shared, &digest(n), NOW),
            Some(Verdict::Active)
        );
    }
    // An expired entry's place is free: no eviction.
    assert_eq!(
        c.store(&shared, &digest(20), Verdict::Active, 30, NOW + 20_000),
        StoreOutcome::Stored
    );
    // Answering again for a cached key replaces its entry, without eviction either.
    assert_eq!(
        c.store(&shared, &digest(8), Verdict::Revoked, 60, NOW + 20_000),
        StoreOutcome::Stored
    );
    assert_eq!(
        other_worker(16).lookup(&shared, &digest(8), NOW + 20_000),
        Some(Verdict::Revoked)
    );
    assert_eq!(shared.map.borrow().len(), 1);
}

#[test]
fn the_table_never_holds_more_than_max_entries() {
    for (max_entries, buckets, ways) in [
        (1, 1, 1),
        (2, 1, 2),
        (4, 1, 4),
        (6, 1, 4),
        (9, 2, 4),
        (16_384, 4_096, 4),
    ] {
        let c = cache(max_entries);
        assert_eq!((c.buckets, c.ways), (buckets, ways), "{max_entries}");
        assert!(c.buckets * c.ways as u32 <= max_entries);
    }
}

#[test]
fn a_colliding_digest_is_never_mistaken_for_the_cached_one() {
    let shared = FakeShared::default();
    let c = cache(1);
    c.store(&shared, &digest(1), Verdict::Revoked, 60, NOW);
    assert_eq!(c.lookup(&shared, &digest(2), NOW), None);
}

/// Another worker's view: its own local table over the same shared data.
fn other_worker(max_entries: u32) -> RevocationCache {
    cache(max_entries)
}

#[test]
fn a_worker_answers_a_key_it_has_seen_without_a_host_call_until_the_entry_expires() {
    let shared = FakeShared::default();
    let writer = cache(16);
    writer.store(&shared, &digest(1), Verdict::Active, 10, NOW);
    let reader = other_worker(16);
    let gets = || *shared.gets.borrow();
    let before = gets();
    assert_eq!(
        reader.lookup(&shared, &digest(1), NOW),
        Some(Verdict::Active)
    );
    assert_eq!(gets(), before + 1, "the first lookup reads shared data");
    assert_eq!(
        reader.lookup(&shared, &digest(1), NOW + 5_000),
        Some(Verdict::Active)
    );
    assert_eq!(
        writer.lookup(&shared, &digest(1), NOW + 5_000),
        Some(Verdict::Active)
    );
    assert_eq!(gets(), before + 1, "later ones do not");
    assert_eq!(reader.lookup(&shared, &digest(1), NOW + 10_000), None);
    assert_eq!(gets(), before + 2, "an expired local entry is no answer");
}

#[test]
fn a_local_entry_lives_no_longer_than_the_shared_one_and_the_table_is_bounded() {
    let shared = FakeShared::default();
    let c = cache(1);
    c.store(&shared, &digest(1), Verdict::Active, 10, NOW);
    // digest(2) takes the only shared slot; this worker still holds digest(1)'s answer for
    // the rest of its TTL (a revocation is no later than it would have been anyway).
    let mut other = digest(2);
    other[4] = 1;
    assert_eq!(
        other_worker(1).store(&shared, &other, Verdict::Revoked, 60, NOW),
        StoreOutcome::Evicted
    );
    assert_eq!(c.local.borrow().len(), 1);
    assert_eq!(
        c.lookup(&shared, &digest(1), NOW + 1),
        Some(Verdict::Active)
    );
    assert_eq!(other_worker(1).lookup(&shared, &digest(1), NOW + 1), None);
    assert_eq!(c.lookup(&shared, &digest(1), NOW + 10_000), None);
    assert_eq!(cache(1_000_000).local.borrow().len(), LOCAL_SLOTS as usize);
}

#[test]
fn a_late_active_answer_does_not_overwrite_a_revoked_one() {
    let shared = FakeShared::default();
    let c = cache(16);
    c.store(&shared, &digest(1), Verdict::Revoked, 60, NOW);
    assert_eq!(
        c.store(&shared, &digest(1), Verdict::Active, 30, NOW + 1),
        StoreOutcome::Skipped
    );
    assert_eq!(
        c.lookup(&shared, &digest(1), NOW + 2),
        Some(Verdict::Revoked)
    );
    // ...but a revocation replaces an active entry at once.
    c.store(&shared, &digest(2), Verdict::Active, 30, NOW);
    c.store(&shared, &digest(2), Verdict::Revoked, 60, NOW);
    assert_eq!(c.lookup(&shared, &digest(2), NOW), Some(Verdict::Revoked));
}

#[test]
fn a_lost_race_is_retried_once_then_given_up() {
    let shared = FakeShared::default();
    let c = cache(16);
    *shared.interfere.borrow_mut() = 1;
    assert_eq!(
        c.store(&shared, &digest(1), Verdict::Active, 30, NOW),
        StoreOutcome::Stored
    );
    *shared.interfere.borrow_mut() = 2;
    assert_eq!(
        c.store(&shared, &digest(2), Verdict::Active, 30, NOW),
        StoreOutcome::Skipped
    );
}

#[test]
fn garbage_in_a_bucket_is_a_miss() {
    let shared = FakeShared::default();
    let c = cache(1);
    shared
        .shared_set("keygate.revocation.keyservice.0", b"junk", None)
        .unwrap();
    assert_eq!(c.lookup(&shared, &digest(1), NOW), None);
    assert_eq!(
        c.store(&shared, &digest(1), Verdict::Active, 30, NOW),
        StoreOutcome::Stored
    );
}

#[test]
fn cache_control_max_age() {
    let cases = [
        (None, None),
        (Some("max-age=30"), Some(30)),
        (Some("public, max-age=86400"), Some(86_400)),
        (Some("Max-Age=\"15\""), Some(15)),
        (Some("max-age=-1"), None),
        (Some("max-age=abc"), None),
        // Found by fuzz/fuzz_targets/revocation.rs.
        (Some("max-age=+30"), None),
        (Some("max-age="), None),
        (Some("no-store"), None),
        (Some("max-age=30, no-cache"), None),
        (Some("private, max-age=30"), None),
        (Some("public"), None),
    ];
    for (header, expected) in cases {
        assert_eq!(max_age(header), expected, "{header:?}");
    }
}

fn healthy_until(until_ms: u64) -> FeedView {
    FeedView {
        healthy_until_ms: until_ms,
        resync_at_ms: 0,
        cursor: Some(1),
        max_active_seconds: 86_400,
        race_window_ms: 1_500,
    }
}

const T: u64 = 1_700_000_000_000;

#[test]
fn with_a_healthy_feed_active_answers_are_kept_to_its_bound_and_only_while_it_stays_healthy() {
    let shared = FakeShared::default();
    let cache = cache(64);
    cache.observe_feed(healthy_until(T + 60_000));
    assert_eq!(cache.store(&shared, &digest(1), Verdict::Active, 86_400, T), StoreOutcome::Stored);
    // Kept past max_active_seconds (30 s) while the feed is healthy.
    assert_eq!(cache.lookup(&shared, &digest(1), T + 50_000), Some(Verdict::Active));
    // The feed goes stale: the entry is older than 30 s, so it is not used any more.
    assert_eq!(cache.lookup(&shared, &digest(1), T + 60_000), None);
    // It answers again: usable again, up to its own expiry.
    cache.observe_feed(healthy_until(T + 3_600_000));
    assert_eq!(cache.lookup(&shared, &digest(1), T + 70_000), Some(Verdict::Active));
    // Stored while stale: the short bound.
    cache.observe_feed(healthy_until(0));
    cache.store(&shared, &digest(2), Verdict::Active, 86_400, T);
    cache.observe_feed(healthy_until(T + 3_600_000));
    assert_eq!(cache.lookup(&shared, &digest(2), T + 29_000), Some(Verdict::Active));
    assert_eq!(cache.lookup(&shared, &digest(2), T + 31_000), None);
}

#[test]
fn a_resync_makes_older_active_answers_unusable_and_moving_the_feed_drops_the_local_table() {
    let shared = FakeShared::default();
    let cache = cache(64);
    cache.observe_feed(healthy_until(T + 3_600_000));
    cache.store(&shared, &digest(1), Verdict::Active, 86_400, T);
    cache.store(&shared, &digest(2), Verdict::Revoked, 86_400, T);
    assert_eq!(cache.lookup(&shared, &digest(1), T + 1), Some(Verdict::Active));
    // A revocation marked by the follower (through shared data, not this worker's table).
    let other = RevocationCache::new("keyservice", cache.config.clone());
    other.store(&shared, &digest(1), Verdict::Revoked, u64::MAX, T + 2);
    // Until this worker sees the feed move, its local table still says active.
    assert_eq!(cache.lookup(&shared, &digest(1), T + 3), Some(Verdict::Active));
    cache.observe_feed(FeedView { cursor: Some(2), ..healthy_until(T + 3_600_000) });
    assert_eq!(cache.lookup(&shared, &digest(1), T + 4), Some(Verdict::Revoked));
    // A resync: active entries stored before it are gone; revoked ones stay.
    cache.store(&shared, &digest(3), Verdict::Active, 86_400, T + 5);
    cache.observe_feed(FeedView { resync_at_ms: T + 6, cursor: Some(2), ..healthy_until(T + 3_600_000) });
    assert_eq!(cache.lookup(&shared, &digest(3), T + 7), None);
    assert_eq!(cache.lookup(&shared, &digest(2), T + 7), Some(Verdict::Revoked));
}

#[test]
fn an_active_answer_right_after_revocations_were_applied_gets_the_short_bound() {
    let shared = FakeShared::default();
    let cache = cache(64);
    cache.observe_feed(healthy_until(T + 3_600_000));
    let state = crate::revocation::feed_state::FeedState {
        cursor: Some(1),
        last_ok_ms: T,
        resync_at_ms: 0,
        applied_at_ms: T,
    };
    shared.shared_set(&cache.feed_state_key(), &state.encode(), None).unwrap();
    // Within the race window (1.5 s): it may predate one of them.
    cache.store(&shared, &digest(1), Verdict::Active, 86_400, T + 1_000);
    assert_eq!(cache.lookup(&shared, &digest(1), T + 30_000), Some(Verdict::Active));
    assert_eq!(cache.lookup(&shared, &digest(1), T + 31_001), None);
    // After it: the feed's bound.
    cache.store(&shared, &digest(2), Verdict::Active, 86_400, T + 2_000);
    assert_eq!(cache.lookup(&shared, &digest(2), T + 3_000_000), Some(Verdict::Active));
    // A revoked mark is never replaced by an active answer.
    cache.store(&shared, &digest(3), Verdict::Revoked, u64::MAX, T + 2_000);
    assert_eq!(cache.store(&shared, &digest(3), Verdict::Active, 86_400, T + 2_001), StoreOutcome::Skipped);
}
