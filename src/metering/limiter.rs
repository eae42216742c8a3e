//! Fixed-window request counters shared by every worker of one Envoy through proxy-wasm shared
//! data: each take is a compare-and-swap, so no count is lost between workers.
//!
//! A window is `[k·per_seconds, (k+1)·per_seconds)` seconds since the Unix epoch: every worker
//! agrees on it without talking, and `RateLimit`'s reset is exact. Memory is bounded the way the
//! revocation cache is: a fixed number of buckets (shared-data keys, which cannot be deleted) of
//! at most four counters; a new counter takes an expired place, else the place of the counter
//! whose window ends first (an eviction, counted: that subject starts its window again).
//!
//! A shared-data update is two host calls, each a copy across the VM boundary: too much for every
//! request of a busy key. So a worker takes a few requests of the window at once (a sixteenth of
//! what is left, at most 64, one when little is left) and admits them locally until they are
//! spent: requests are still counted before they are admitted, and never twice, but near the end
//! of a window a worker may hold a few that another worker's request could have used (at most a
//! sixteenth of what was left when it took them).

use std::cell::RefCell;
use std::collections::HashMap;

use crate::policy::rate_limits::Limit;
use crate::revocation::shared::{SharedData, SharedSetError};

/// The first 16 bytes of a SHA-256 naming what is counted (a key, a claim's value); with the
/// window length it names one counter.
pub type CounterId = [u8; 16];

const WAYS: usize = 4;
const ENTRY_LEN: usize = 16 + 4 + 8 + 4;
/// Compare-and-swap attempts before a take gives up (`Take::Unavailable`).
const MAX_TRIES: usize = 8;
/// A worker takes at most this many requests of a window at once, and a sixteenth of what is
/// left.
const MAX_RESERVED: u32 = 64;
const RESERVE_SHARE: u32 = 16;
/// Counters a worker holds requests of; beyond it, its reservations are dropped (unused ones are
/// then lost for their window: a little under-admission, never over-admission).
const MAX_LOCAL: usize = 4096;
/// The `cas` to write a bucket that was absent when read. Envoy stores a value under a new key
/// whatever `cas` says, but refuses one under an existing key unless `cas` matches, and it hands
/// out `cas` values counting up from 1: so this writes only if the bucket is still absent, where
/// `None` would overwrite a bucket another worker created meanwhile and lose its counts.
const ABSENT_CAS: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Counted; `remaining` requests are left in the window, which ends in `reset_seconds`.
    Taken { remaining: u32, reset_seconds: u64 },
    /// The window is used up; it ends in `reset_seconds`.
    Exceeded { reset_seconds: u64 },
    /// Shared data could not be written (contention beyond `MAX_TRIES`, or a host failure).
    Unavailable,
}

/// What a take did to the bucket, for the eviction counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub take: Take,
    pub evicted: bool,
}

#[derive(Debug)]
pub struct RateLimiter {
    namespace: String,
    buckets: u32,
    /// This worker's reservations: requests of a window taken from the shared counter and not
    /// yet admitted.
    reserved: RefCell<HashMap<(CounterId, u32), Reserved>>,
}

#[derive(Debug, Clone, Copy)]
struct Reserved {
    window: u64,
    left: u32,
    /// What the shared counter had left after the reservation.
    remaining: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counter {
    id: CounterId,
    per_seconds: u32,
    window: u64,
    count: u32,
}

impl RateLimiter {
    /// Room for `max_counters` counters at once (rounded down to whole buckets of four).
    pub fn new(max_counters: u32) -> Self {
        Self {
            namespace: "keygate.ratelimit.".to_owned(),
            buckets: (max_counters / WAYS as u32).max(1),
            reserved: RefCell::new(HashMap::new()),
        }
    }

    /// Counts one request against `limit` for `id` at `now_ms`, unless the window is used up.
    pub fn take(&self, shared: &dyn SharedData, id: &CounterId, limit: Limit, now_ms: u64) -> Taken {
        let per_seconds = u64::from(limit.per_seconds.max(1));
        let now_s = now_ms / 1000;
        let window = now_s / per_seconds;
        let reset_seconds = (window + 1) * per_seconds - now_s;
        let slot = (*id, limit.per_seconds);
        if let Some(reserved) = self.reserved.borrow_mut().get_mut(&slot)
            && reserved.window == window
            && reserved.left > 0
        {
            reserved.left -= 1;
            return Taken {
                take: Take::Taken {
                    remaining: reserved.remaining.saturating_add(reserved.left),
                    reset_seconds,
                },
                evicted: false,
            };
        }
        let key = self.bucket_key(id, limit.per_seconds);
        for _ in 0..MAX_TRIES {
            let (value, cas) = shared.shared_get(&key);
            let mut counters = value.as_deref().map(decode).unwrap_or_default();
            let mut evicted = false;
            let taking;
            let count = match counters
                .iter_mut()
                .find(|c| c.id == *id && c.per_seconds == limit.per_seconds)
            {
                Some(counter) if counter.window == window => {
                    if counter.count >= limit.requests {
                        return Taken {
                            take: Take::Exceeded { reset_seconds },
                            evicted: false,
                        };
                    }
                    taking = reservation(limit.requests - counter.count);
                    counter.count += taking;
                    counter.count
                }
                Some(counter) => {
                    taking = reservation(limit.requests);
                    counter.window = window;
                    counter.count = taking;
                    taking
                }
                None => {
                    counters.retain(|c| c.ends_s() > now_s);
                    if counters.len() >= WAYS
                        && let Some(first) = (0..counters.len()).min_by_key(|&i| counters[i].ends_s())
                    {
                        counters.remove(first);
                        evicted = true;
                    }
                    taking = reservation(limit.requests);
                    counters.push(Counter {
                        id: *id,
                        per_seconds: limit.per_seconds,
                        window,
                        count: taking,
                    });
                    taking
                }
            };
            match shared.shared_set(&key, &encode(&counters), Some(cas.unwrap_or(ABSENT_CAS))) {
                Ok(()) => {
                    let remaining = limit.requests.saturating_sub(count);
                    self.reserve(slot, window, taking - 1, remaining);
                    return Taken {
                        take: Take::Taken {
                            remaining: remaining + taking - 1,
                            reset_seconds,
                        },
                        evicted,
                    };
                }
                Err(SharedSetError::CasMismatch) => continue,
                Err(SharedSetError::Failed) => break,
            }
        }
        Taken {
            take: Take::Unavailable,
            evicted: false,
        }
    }

    /// Keeps `left` requests of `window` for this worker's next takes.
    fn reserve(&self, slot: (CounterId, u32), window: u64, left: u32, remaining: u32) {
        let mut reserved = self.reserved.borrow_mut();
        if reserved.len() >= MAX_LOCAL && !reserved.contains_key(&slot) {
            reserved.clear();
        }
        if left > 0 || reserved.contains_key(&slot) {
            reserved.insert(
                slot,
                Reserved {
                    window,
                    left,
                    remaining,
                },
            );
        }
    }

    fn bucket_key(&self, id: &CounterId, per_seconds: u32) -> String {
        let index = u32::from_le_bytes([id[0], id[1], id[2], id[3]]) ^ per_seconds;
        let mut key = String::with_capacity(self.namespace.len() + 10);
        key.push_str(&self.namespace);
        key.push_str(&(index % self.buckets).to_string());
        key
    }
}

/// How many requests a worker takes at once when `left` remain in the window (at least 1).
fn reservation(left: u32) -> u32 {
    (left / RESERVE_SHARE).clamp(1, MAX_RESERVED)
}

impl Counter {
    /// When its window ends, in seconds since the epoch.
    fn ends_s(&self) -> u64 {
        (self.window + 1).saturating_mul(u64::from(self.per_seconds))
    }
}

/// A bucket's counters; anything else reads as an empty bucket (overwritten by the next take).
fn decode(bytes: &[u8]) -> Vec<Counter> {
    if !bytes.len().is_multiple_of(ENTRY_LEN) || bytes.len() > WAYS * ENTRY_LEN {
        return Vec::new();
    }
    bytes
        .chunks_exact(ENTRY_LEN)
        .map(|chunk| {
            let mut id = [0u8; 16];
            id.copy_from_slice(&chunk[..16]);
            let word = |at: usize| u32::from_le_bytes([chunk[at], chunk[at + 1], chunk[at + 2], chunk[at + 3]]);
            let mut window = [0u8; 8];
            window.copy_from_slice(&chunk[20..28]);
            Counter {
                id,
                per_seconds: word(16),
                window: u64::from_le_bytes(window),
                count: word(28),
            }
        })
        .collect()
}

fn encode(counters: &[Counter]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(counters.len() * ENTRY_LEN);
    for counter in counters {
        bytes.extend_from_slice(&counter.id);
        bytes.extend_from_slice(&counter.per_seconds.to_le_bytes());
        bytes.extend_from_slice(&counter.window.to_le_bytes());
        bytes.extend_from_slice(&counter.count.to_le_bytes());
    }
    bytes
}

#[cfg(test)]
#[path = "limiter_tests.rs"]
mod tests;
