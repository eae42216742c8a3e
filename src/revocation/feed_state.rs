//! The revocation feed's state shared by every worker of one Envoy (proxy-wasm shared data):
//! the follower's lease, which makes exactly one worker follow the feed and lets another take
//! over when it goes, and the follower's progress, which every worker reads on its tick.

use crate::revocation::shared::{SharedData, SharedSetError};

/// A follower that has not renewed its lease for this long is gone: another worker takes over.
pub const LEASE_MS: u64 = 3_000;
const NO_CURSOR: u64 = u64::MAX;

/// The feed as the cache sees it: until when it counts as healthy, the time of the last resync
/// (older "active" entries are unusable), and the window in which a just-applied revocation may
/// race an "active" answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedView {
    pub healthy_until_ms: u64,
    pub resync_at_ms: u64,
    /// The feed's cursor: when it moves, revocations were applied.
    pub cursor: Option<u64>,
    /// The longest an "active" answer is kept while the feed is healthy.
    pub max_active_seconds: u64,
    /// How long after a revocation was applied an "active" answer is still suspect: a callout's
    /// timeout and a tick.
    pub race_window_ms: u64,
}

impl FeedView {
    pub fn healthy(&self, now_ms: u64) -> bool {
        now_ms < self.healthy_until_ms
    }
}

/// The follower's progress, as stored in shared data (32 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedState {
    /// The seq to ask after; `None` until the feed first answered.
    pub cursor: Option<u64>,
    /// When the feed last answered (milliseconds since the epoch).
    pub last_ok_ms: u64,
    pub resync_at_ms: u64,
    /// When revocations were last applied.
    pub applied_at_ms: u64,
}

impl FeedState {
    pub fn encode(&self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&self.cursor.unwrap_or(NO_CURSOR).to_le_bytes());
        bytes[8..16].copy_from_slice(&self.last_ok_ms.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.resync_at_ms.to_le_bytes());
        bytes[24..].copy_from_slice(&self.applied_at_ms.to_le_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let word = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        if bytes.len() != 32 {
            return None;
        }
        let cursor = word(0)?;
        Some(Self {
            cursor: (cursor != NO_CURSOR).then_some(cursor),
            last_ok_ms: word(8)?,
            resync_at_ms: word(16)?,
            applied_at_ms: word(24)?,
        })
    }

    /// The state in shared data at `key` (the default when there is none or it is unreadable),
    /// with its CAS.
    pub fn read(shared: &dyn SharedData, key: &str) -> (Self, Option<u32>) {
        let (value, cas) = shared.shared_get(key);
        let state = value.as_deref().and_then(Self::decode).unwrap_or_default();
        (state, cas)
    }
}

/// Claims or renews the follower's lease for `owner` at `now_ms`: true when `owner` holds it
/// now. A lease held by another owner and renewed within [`LEASE_MS`] is left alone; a lost
/// compare-and-swap means another worker claimed it first.
pub fn hold_lease(shared: &dyn SharedData, key: &str, owner: u64, now_ms: u64) -> bool {
    let (value, cas) = shared.shared_get(key);
    if let Some(bytes) = value.as_deref().filter(|bytes| bytes.len() == 16) {
        let word = |at: usize| {
            bytes
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        let (holder, renewed_ms) = (word(0), word(8));
        if holder != owner && renewed_ms.saturating_add(LEASE_MS) > now_ms {
            return false;
        }
    }
    let mut lease = [0u8; 16];
    lease[..8].copy_from_slice(&owner.to_le_bytes());
    lease[8..].copy_from_slice(&now_ms.to_le_bytes());
    match shared.shared_set(key, &lease, cas) {
        Ok(()) => true,
        Err(SharedSetError::CasMismatch | SharedSetError::Failed) => false,
    }
}

#[cfg(test)]
#[path = "feed_state_tests.rs"]
mod tests;
