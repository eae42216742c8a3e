//! keyservice's answers, shared by every worker's VM through proxy-wasm shared data, so a busy
//! key costs one callout per TTL rather than one per request.
//!
//! Memory is bounded by construction: the cache is a fixed number of buckets of (at most) four
//! entries, and a token's digest picks its bucket. Envoy's shared data cannot delete keys, so the
//! bucket count *is* the bound. A new answer takes an empty or expired place in its bucket, else
//! the place of the entry closest to expiry (an eviction): four ways rather than one, so keys
//! whose digests land together do not push each other out while the cache has room.
//!
//! In front of it, each worker keeps a small table of the entries it read or wrote (the same
//! digest, verdict and expiry), so a busy key is answered without a host call. An entry there
//! lives no longer than in the shared cache, so a revocation still reaches every worker within
//! the TTL it was cached with (`max_active_seconds` at most).

use std::cell::RefCell;
use std::fmt;

/// What keyservice said about a token. Only definite answers are cached: "unknown" and failures
/// are asked again next time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Active,
    Revoked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedSetError {
    /// Another worker wrote the bucket since we read it.
    CasMismatch,
    Failed,
}

/// Proxy-wasm shared data: a key-value store common to all VMs of one `vm_id`, with
/// compare-and-swap.
pub trait SharedData {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub max_entries: u32,
    pub max_active_seconds: u64,
    pub max_revoked_seconds: u64,
}

/// What `store` did, for the eviction counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored,
    /// Stored over another token's live entry.
    Evicted,
    /// Not stored: a zero TTL, a revoked entry that must not be downgraded, or lost races.
    Skipped,
}

const DIGEST_LEN: usize = 32;
/// Entries per bucket (one shared-data key): enough that collisions rarely evict while the table
/// has room, few enough that a bucket is one small read (4 × 41 bytes).
const WAYS: u32 = 4;
/// Slots of each worker's local table (at most `max_entries`): 1024 × 48 bytes.
const LOCAL_SLOTS: u32 = 1024;
const ENTRY_LEN: usize = DIGEST_LEN + 1 + 8;
const ACTIVE: u8 = 1;
const REVOKED: u8 = 2;

pub struct RevocationCache {
    /// Bucket keys are `<namespace><bucket>`; the namespace keeps plugins with different
    /// revocation services apart inside one VM id.
    namespace: String,
    config: CacheConfig,
    buckets: u32,
    ways: usize,
    local: RefCell<Vec<Option<Entry>>>,
}

#[derive(Clone, Copy)]
struct Entry {
    digest: [u8; DIGEST_LEN],
    verdict: Verdict,
    expires_at_ms: u64,
}

impl RevocationCache {
    pub fn new(namespace: &str, config: CacheConfig) -> Self {
        let local_slots = config.max_entries.clamp(1, LOCAL_SLOTS) as usize;
        // At most `max_entries` entries in all: whole buckets of WAYS, or one smaller bucket.
        let ways = WAYS.min(config.max_entries.max(1));
        let buckets = (config.max_entries / ways).max(1);
        Self {
            namespace: format!("keygate.revocation.{namespace}."),
            config,
            buckets,
            ways: ways as usize,
            local: RefCell::new(vec![None; local_slots]),
        }
    }

    /// The cached verdict for `digest`, if one is live at `now_ms`.
    pub fn lookup(
        &self,
        shared: &dyn SharedData,
        digest: &[u8; DIGEST_LEN],
        now_ms: u64,
    ) -> Option<Verdict> {
        let live = |entry: &Entry| entry.digest == *digest && entry.expires_at_ms > now_ms;
        let local = self.local_slot(digest);
        if let Some(entry) = self.local.borrow().get(local).copied().flatten()
            && live(&entry)
        {
            return Some(entry.verdict);
        }
        let (value, _) = shared.shared_get(&self.bucket_key(digest));
        let entry = decode_bucket(&value?).into_iter().find(live)?;
        self.remember(local, entry);
        Some(entry.verdict)
    }

    /// Caches `verdict` for `max_age_seconds` (keyservice's `Cache-Control: max-age`), clamped
    /// by the configured maximum for that verdict.
    pub fn store(
        &self,
        shared: &dyn SharedData,
        digest: &[u8; DIGEST_LEN],
        verdict: Verdict,
        max_age_seconds: u64,
        now_ms: u64,
    ) -> StoreOutcome {
        let limit = match verdict {
            Verdict::Active => self.config.max_active_seconds,
            Verdict::Revoked => self.config.max_revoked_seconds,
        };
        let ttl_ms = max_age_seconds.min(limit).saturating_mul(1000);
        if ttl_ms == 0 {
            return StoreOutcome::Skipped;
        }
        let entry = Entry {
            digest: *digest,
            verdict,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        };
        let key = self.bucket_key(digest);
        // Two tries: a lost race means another worker just wrote this bucket; try again with
        // what it wrote.
        for _ in 0..2 {
            let (current, cas) = shared.shared_get(&key);
            let mut entries: Vec<Entry> = current
                .as_deref()
                .map(decode_bucket)
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e.expires_at_ms > now_ms)
                .collect();
            if verdict == Verdict::Active
                && entries
                    .iter()
                    .any(|e| e.digest == *digest && e.verdict == Verdict::Revoked)
            {
                // An "active" answer may have been sent before the revocation: never let it
                // replace a newer "revoked".
                return StoreOutcome::Skipped;
            }
            entries.retain(|e| e.digest != *digest);
            let mut evicted = false;
            while entries.len() >= self.ways {
                // The first of equals is the oldest: entries keep the order they were stored in.
                let Some(soonest) = (0..entries.len()).min_by_key(|&i| entries[i].expires_at_ms)
                else {
                    break;
                };
                entries.remove(soonest);
                evicted = true;
            }
            entries.push(entry);
            match shared.shared_set(&key, &encode_bucket(&entries), cas) {
                Ok(()) => {
                    self.remember(self.local_slot(digest), entry);
                    return if evicted {
                        StoreOutcome::Evicted
                    } else {
                        StoreOutcome::Stored
                    };
                }
                Err(SharedSetError::CasMismatch) => continue,
                Err(SharedSetError::Failed) => return StoreOutcome::Skipped,
            }
        }
        StoreOutcome::Skipped
    }

    fn local_slot(&self, digest: &[u8; DIGEST_LEN]) -> usize {
        let index = u32::from_le_bytes([digest[4], digest[5], digest[6], digest[7]]);
        (index as usize) % self.local.borrow().len().max(1)
    }

    fn remember(&self, slot: usize, entry: Entry) {
        if let Some(place) = self.local.borrow_mut().get_mut(slot) {
            *place = Some(entry);
        }
    }

    fn bucket_key(&self, digest: &[u8; DIGEST_LEN]) -> String {
        let index = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
        let bucket = index % self.buckets;
        let mut key = String::with_capacity(self.namespace.len() + 10);
        key.push_str(&self.namespace);
        key.push_str(&bucket.to_string());
        key
    }
}

/// A bucket's entries; anything that is not a whole number of well-formed entries reads as an
/// empty bucket (and is overwritten by the next store).
fn decode_bucket(bytes: &[u8]) -> Vec<Entry> {
    if !bytes.len().is_multiple_of(ENTRY_LEN) {
        return Vec::new();
    }
    let entries: Option<Vec<Entry>> = bytes.chunks_exact(ENTRY_LEN).map(Entry::decode).collect();
    entries.unwrap_or_default()
}

fn encode_bucket(entries: &[Entry]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.encode()).collect()
}

impl Entry {
    fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut bytes = [0u8; ENTRY_LEN];
        bytes[..DIGEST_LEN].copy_from_slice(&self.digest);
        bytes[DIGEST_LEN] = match self.verdict {
            Verdict::Active => ACTIVE,
            Verdict::Revoked => REVOKED,
        };
        bytes[DIGEST_LEN + 1..].copy_from_slice(&self.expires_at_ms.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != ENTRY_LEN {
            return None;
        }
        let digest = bytes[..DIGEST_LEN].try_into().ok()?;
        let verdict = match bytes[DIGEST_LEN] {
            ACTIVE => Verdict::Active,
            REVOKED => Verdict::Revoked,
            _ => return None,
        };
        let expires_at_ms = u64::from_le_bytes(bytes[DIGEST_LEN + 1..].try_into().ok()?);
        Some(Self {
            digest,
            verdict,
            expires_at_ms,
        })
    }
}

impl fmt::Debug for RevocationCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationCache")
            .field("namespace", &self.namespace)
            .field("config", &self.config)
            .finish()
    }
}

/// `max-age` of a `Cache-Control` value; `None` when absent or when the answer must not be
/// stored (`no-store`, `no-cache`, `private`).
pub fn max_age(cache_control: Option<&str>) -> Option<u64> {
    let mut max_age = None;
    for directive in cache_control?.split(',') {
        let directive = directive.trim();
        let (name, value) = match directive.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-store")
            || name.eq_ignore_ascii_case("no-cache")
            || name.eq_ignore_ascii_case("private")
        {
            return None;
        }
        if name.eq_ignore_ascii_case("max-age") {
            // RFC 9111 §1.2.2: delta-seconds are digits; `str::parse` would also take `+30`.
            max_age = value
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
        }
    }
    max_age
}

#[cfg(test)]
mod tests {
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
}
