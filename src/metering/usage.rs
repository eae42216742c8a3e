//! Usage counts per key and per UTC day, in bounded memory: what each worker counts on the
//! request path (a table lookup, no host call), hands to the Envoy's reporter through a shared
//! queue on its tick, and what the reporter keeps until keyservice has it. Keys are named by
//! their SHA-256 digest, never by the key.

use std::collections::HashMap;

use crate::revocation::protocol::Digest;

const DAY_MS: u64 = 86_400_000;
/// A queue message: a tag, the dropped count, then entries.
const MESSAGE_TAG: &[u8; 4] = b"KGU1";
const ENTRY_LEN: usize = 32 + 4 + 8 * 4;

/// How a counted request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    /// 403: the key lacks a scope or a claim the route requires.
    Forbidden,
    /// 429: over one of its rate limits.
    RateLimited,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub allowed: u64,
    pub forbidden: u64,
    pub rate_limited: u64,
    /// The last request's time, in ms since the Unix epoch.
    pub last_used_ms: u64,
}

impl Counts {
    fn add(&mut self, other: &Self) {
        self.allowed = self.allowed.saturating_add(other.allowed);
        self.forbidden = self.forbidden.saturating_add(other.forbidden);
        self.rate_limited = self.rate_limited.saturating_add(other.rate_limited);
        self.last_used_ms = self.last_used_ms.max(other.last_used_ms);
    }

    pub fn requests(&self) -> u64 {
        self.allowed
            .saturating_add(self.forbidden)
            .saturating_add(self.rate_limited)
    }
}

/// One key's counts on one day (days since 1970-01-01, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayCounts {
    pub key: Digest,
    pub day: u32,
    pub counts: Counts,
}

/// Counts for at most `max_keys` (key, day) pairs; what does not fit is dropped and counted.
#[derive(Debug)]
pub struct UsageTable {
    entries: HashMap<(Digest, u32), Counts>,
    max_keys: usize,
    /// Requests whose counts were dropped because the table was full.
    dropped: u64,
}

impl UsageTable {
    pub fn new(max_keys: usize) -> Self {
        Self {
            entries: HashMap::new(),
            max_keys,
            dropped: 0,
        }
    }

    /// Counts one request of `key` at `now_ms`.
    pub fn count(&mut self, key: &Digest, outcome: Outcome, now_ms: u64) {
        let mut counts = Counts {
            last_used_ms: now_ms,
            ..Counts::default()
        };
        match outcome {
            Outcome::Allowed => counts.allowed = 1,
            Outcome::Forbidden => counts.forbidden = 1,
            Outcome::RateLimited => counts.rate_limited = 1,
        }
        let day = u32::try_from(now_ms / DAY_MS).unwrap_or(u32::MAX);
        self.add(DayCounts {
            key: *key,
            day,
            counts,
        });
    }

    fn add(&mut self, entry: DayCounts) {
        let room = self.entries.len() < self.max_keys;
        match self.entries.get_mut(&(entry.key, entry.day)) {
            Some(counts) => counts.add(&entry.counts),
            None if room => {
                self.entries.insert((entry.key, entry.day), entry.counts);
            }
            None => self.dropped = self.dropped.saturating_add(entry.counts.requests()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.dropped == 0
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Requests dropped since the last `take`/`drain`.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Everything, as one queue message, and the table emptied; `None` when there is nothing.
    pub fn drain(&mut self) -> Option<Vec<u8>> {
        if self.is_empty() {
            return None;
        }
        let mut message = Vec::with_capacity(12 + self.entries.len() * ENTRY_LEN);
        message.extend_from_slice(MESSAGE_TAG);
        message.extend_from_slice(&std::mem::take(&mut self.dropped).to_le_bytes());
        for ((key, day), counts) in self.entries.drain() {
            message.extend_from_slice(&key);
            message.extend_from_slice(&day.to_le_bytes());
            for value in [counts.allowed, counts.forbidden, counts.rate_limited, counts.last_used_ms] {
                message.extend_from_slice(&value.to_le_bytes());
            }
        }
        Some(message)
    }

    /// Adds a queue message's counts (another worker's `drain`). A message that is not one is
    /// ignored whole: `false`.
    pub fn absorb(&mut self, message: &[u8]) -> bool {
        let Some(rest) = message.strip_prefix(MESSAGE_TAG) else {
            return false;
        };
        if rest.len() < 8 || !(rest.len() - 8).is_multiple_of(ENTRY_LEN) {
            return false;
        }
        let word = |bytes: &[u8], at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        self.dropped = self.dropped.saturating_add(word(rest, 0));
        for chunk in rest[8..].chunks_exact(ENTRY_LEN) {
            let mut key = [0u8; 32];
            key.copy_from_slice(&chunk[..32]);
            let day = u32::from_le_bytes([chunk[32], chunk[33], chunk[34], chunk[35]]);
            self.add(DayCounts {
                key,
                day,
                counts: Counts {
                    allowed: word(chunk, 36),
                    forbidden: word(chunk, 44),
                    rate_limited: word(chunk, 52),
                    last_used_ms: word(chunk, 60),
                },
            });
        }
        true
    }

    /// Takes up to `max` entries (and the dropped count) out, for one report.
    pub fn take(&mut self, max: usize) -> (Vec<DayCounts>, u64) {
        let keys: Vec<(Digest, u32)> = self.entries.keys().take(max).copied().collect();
        let taken = keys
            .into_iter()
            .filter_map(|(key, day)| {
                let counts = self.entries.remove(&(key, day))?;
                Some(DayCounts { key, day, counts })
            })
            .collect();
        (taken, std::mem::take(&mut self.dropped))
    }

    /// Puts a report's entries back (its answer never came and it is not retried as is).
    pub fn restore(&mut self, entries: &[DayCounts], dropped: u64) {
        self.dropped = self.dropped.saturating_add(dropped);
        for entry in entries {
            self.add(*entry);
        }
    }
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
