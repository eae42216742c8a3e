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
//!
//! With the revocation feed ([`FeedView`]), the follower marks each revoked key here as it
//! arrives, and every worker drops its local table when the feed moves; "active" answers are
//! then kept up to the feed's longer bound, but only while the feed is healthy: once it is
//! stale, an "active" entry older than `max_active_seconds` is no longer used, and a resync
//! makes every older "active" entry unusable.

use std::cell::{Cell, RefCell};

use crate::policy::rate_limits::Limits;
use crate::revocation::feed_state::{FeedState, FeedView};
pub use crate::revocation::shared::{SharedData, SharedSetError};
use std::fmt;

/// What keyservice said about a token. Only definite answers are cached: "unknown" and failures
/// are asked again next time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Active,
    Revoked,
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
/// has room, few enough that a bucket is one small read (4 × 49 bytes).
const WAYS: u32 = 4;
/// Slots of each worker's local table (at most `max_entries`): 1024 × 84 bytes.
const LOCAL_SLOTS: u32 = 1024;
/// Digest, verdict, expiry, storing time, the key's own rate limits.
const ENTRY_LEN: usize = DIGEST_LEN + 1 + 8 + 8 + Limits::ENCODED_LEN;
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
    /// What this worker last learnt of the feed; the default (no feed) is never healthy.
    feed: Cell<FeedView>,
}

#[derive(Clone, Copy)]
struct Entry {
    digest: [u8; DIGEST_LEN],
    verdict: Verdict,
    expires_at_ms: u64,
    stored_at_ms: u64,
    limits: Limits,
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
            feed: Cell::new(FeedView::default()),
        }
    }

    /// What the worker learnt of the feed (on its tick). When the feed moved, this worker's
    /// local table is dropped: its "active" entries may have been revoked since.
    pub fn observe_feed(&self, view: FeedView) {
        let before = self.feed.replace(view);
        if before.cursor != view.cursor || before.resync_at_ms != view.resync_at_ms {
            self.local.borrow_mut().fill(None);
        }
    }

    pub fn feed_view(&self) -> FeedView {
        self.feed.get()
    }

    /// The shared-data key of the feed's state (cursor, health), beside the buckets.
    pub fn feed_state_key(&self) -> String {
        format!("{}feed.state", self.namespace)
    }

    /// The shared-data key of the feed follower's lease.
    pub fn feed_lease_key(&self) -> String {
        format!("{}feed.lease", self.namespace)
    }

    /// Whether the follower applied revocations within the feed's race window: an "active"
    /// answer arriving now may predate one of them (its "revoked" mark may even have been
    /// evicted by a flood), so it is kept only as long as without the feed.
    fn applied_lately(&self, shared: &dyn SharedData, now_ms: u64) -> bool {
        let (value, _) = shared.shared_get(&self.feed_state_key());
        let window = self.feed.get().race_window_ms;
        value
            .as_deref()
            .and_then(FeedState::decode)
            .is_some_and(|state| state.applied_at_ms.saturating_add(window) > now_ms)
    }

    /// Whether an entry may be used at `now_ms`: live, and for "active" not older than the
    /// bound that holds now (the feed's while it is healthy, else `max_active_seconds`) nor than
    /// the last resync.
    fn usable(&self, entry: &Entry, now_ms: u64) -> bool {
        if entry.expires_at_ms <= now_ms {
            return false;
        }
        if entry.verdict == Verdict::Revoked {
            return true;
        }
        let feed = self.feed.get();
        if entry.stored_at_ms < feed.resync_at_ms {
            return false;
        }
        feed.healthy(now_ms)
            || entry
                .stored_at_ms
                .saturating_add(self.config.max_active_seconds.saturating_mul(1000))
                > now_ms
    }

    /// The cached verdict for `digest`, if one is live at `now_ms`.
    pub fn lookup(
        &self,
        shared: &dyn SharedData,
        digest: &[u8; DIGEST_LEN],
        now_ms: u64,
    ) -> Option<Verdict> {
        self.lookup_with_limits(shared, digest, now_ms)
            .map(|(verdict, _)| verdict)
    }

    /// The cached verdict for `digest` and the key's own rate limits (empty: none given).
    pub fn lookup_with_limits(
        &self,
        shared: &dyn SharedData,
        digest: &[u8; DIGEST_LEN],
        now_ms: u64,
    ) -> Option<(Verdict, Limits)> {
        let live = |entry: &Entry| entry.digest == *digest && self.usable(entry, now_ms);
        let local = self.local_slot(digest);
        if let Some(entry) = self.local.borrow().get(local).copied().flatten()
            && live(&entry)
        {
            return Some((entry.verdict, entry.limits));
        }
        let (value, _) = shared.shared_get(&self.bucket_key(digest));
        let entry = decode_bucket(&value?).into_iter().find(live)?;
        self.remember(local, entry);
        Some((entry.verdict, entry.limits))
    }

    /// Forgets what is cached for `digest` (its limits changed): the next request asks
    /// keyservice again. Every worker's local table is dropped when the feed moves.
    pub fn forget(&self, shared: &dyn SharedData, digest: &[u8; DIGEST_LEN]) {
        let key = self.bucket_key(digest);
        for _ in 0..4 {
            let (current, cas) = shared.shared_get(&key);
            let Some(current) = current else {
                return;
            };
            let mut entries = decode_bucket(&current);
            if !entries.iter().any(|e| e.digest == *digest && e.verdict == Verdict::Active) {
                return;
            }
            entries.retain(|e| e.digest != *digest || e.verdict == Verdict::Revoked);
            match shared.shared_set(&key, &encode_bucket(&entries), cas) {
                Err(SharedSetError::CasMismatch) => continue,
                Ok(()) | Err(SharedSetError::Failed) => return,
            }
        }
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
        self.store_with_limits(shared, digest, verdict, Limits::default(), max_age_seconds, now_ms)
    }

    /// [`Self::store`], with the key's own rate limits from the same answer.
    pub fn store_with_limits(
        &self,
        shared: &dyn SharedData,
        digest: &[u8; DIGEST_LEN],
        verdict: Verdict,
        limits: Limits,
        max_age_seconds: u64,
        now_ms: u64,
    ) -> StoreOutcome {
        let feed = self.feed.get();
        let limit = match verdict {
            Verdict::Active if feed.healthy(now_ms) && !self.applied_lately(shared, now_ms) => {
                feed.max_active_seconds
            }
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
            stored_at_ms: now_ms,
            limits,
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
        bytes[DIGEST_LEN + 1..DIGEST_LEN + 9].copy_from_slice(&self.expires_at_ms.to_le_bytes());
        bytes[DIGEST_LEN + 9..DIGEST_LEN + 17].copy_from_slice(&self.stored_at_ms.to_le_bytes());
        bytes[DIGEST_LEN + 17..].copy_from_slice(&self.limits.encode());
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
        let expires_at_ms = u64::from_le_bytes(bytes[DIGEST_LEN + 1..DIGEST_LEN + 9].try_into().ok()?);
        let stored_at_ms = u64::from_le_bytes(bytes[DIGEST_LEN + 9..DIGEST_LEN + 17].try_into().ok()?);
        let limits = Limits::decode(&bytes[DIGEST_LEN + 17..])?;
        Some(Self {
            digest,
            verdict,
            expires_at_ms,
            stored_at_ms,
            limits,
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
#[path = "cache_tests.rs"]
mod tests;
