//! Rate limits: `requests` per `per_seconds`, up to four windows for one subject. A key's own
//! limits travel in keyservice's revocation answer (`keygate-rate-limit: 100/60, 1000/86400`),
//! so they are read from untrusted bytes and must be exactly that shape.

use std::fmt;

/// At most this many windows per subject (keyservice refuses more at issue).
pub const MAX_WINDOWS: usize = 4;
/// The longest window: 31 days.
pub const MAX_PER_SECONDS: u32 = 2_678_400;
/// The response header of keyservice's "active" answer that carries a key's limits.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub const KEY_LIMITS_HEADER: &str = "keygate-rate-limit";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limit {
    pub requests: u32,
    pub per_seconds: u32,
}

/// One subject's windows, in ascending `per_seconds`, each length once. `Copy` and fixed-size,
/// so it fits in a revocation cache entry.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    len: u8,
    items: [Limit; MAX_WINDOWS],
}

/// Why a list of limits is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitsError {
    Empty,
    TooMany,
    /// `requests` is 0.
    NoRequests(usize),
    /// `per_seconds` is 0 or over [`MAX_PER_SECONDS`].
    Window(usize),
    /// Two limits have the same `per_seconds`.
    SameWindow(usize),
}

impl fmt::Display for LimitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "list at least one limit, or leave the field out"),
            Self::TooMany => write!(f, "at most {MAX_WINDOWS} limits"),
            Self::NoRequests(i) => write!(f, "[{i}].requests must be at least 1"),
            Self::Window(i) => {
                write!(f, "[{i}].per_seconds must be 1 to {MAX_PER_SECONDS} (31 days)")
            }
            Self::SameWindow(i) => {
                write!(f, "[{i}].per_seconds repeats another limit's window: one limit per window")
            }
        }
    }
}

impl Limits {
    /// Validates a list: 1 to 4 limits, each at least one request per 1 s to 31 days, distinct
    /// windows.
    pub fn new(list: &[Limit]) -> Result<Self, LimitsError> {
        if list.is_empty() {
            return Err(LimitsError::Empty);
        }
        if list.len() > MAX_WINDOWS {
            return Err(LimitsError::TooMany);
        }
        let mut limits = Self::default();
        for (index, limit) in list.iter().enumerate() {
            if limit.requests == 0 {
                return Err(LimitsError::NoRequests(index));
            }
            if limit.per_seconds == 0 || limit.per_seconds > MAX_PER_SECONDS {
                return Err(LimitsError::Window(index));
            }
            if list[..index].iter().any(|l| l.per_seconds == limit.per_seconds) {
                return Err(LimitsError::SameWindow(index));
            }
            limits.items[index] = *limit;
        }
        limits.len = list.len() as u8;
        limits.items[..list.len()].sort_by_key(|limit| limit.per_seconds);
        Ok(limits)
    }

    pub fn as_slice(&self) -> &[Limit] {
        &self.items[..usize::from(self.len)]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads keyservice's header: `<requests>/<per_seconds>` items joined by `,` with optional
    /// spaces; digits only. Anything else is `None` (the key then has the provider's defaults).
    pub fn parse_header(value: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(value).ok()?;
        let mut list = Vec::with_capacity(MAX_WINDOWS);
        for item in text.split(',') {
            if list.len() == MAX_WINDOWS {
                return None;
            }
            let (requests, per_seconds) = item.trim_matches(' ').split_once('/')?;
            list.push(Limit {
                requests: digits(requests)?,
                per_seconds: digits(per_seconds)?,
            });
        }
        Self::new(&list).ok()
    }

    /// 1 + 8 per window bytes, for the revocation cache.
    pub const ENCODED_LEN: usize = 1 + 8 * MAX_WINDOWS;

    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut bytes = [0u8; Self::ENCODED_LEN];
        bytes[0] = self.len;
        for (index, limit) in self.items.iter().enumerate() {
            let at = 1 + 8 * index;
            bytes[at..at + 4].copy_from_slice(&limit.requests.to_le_bytes());
            bytes[at + 4..at + 8].copy_from_slice(&limit.per_seconds.to_le_bytes());
        }
        bytes
    }

    /// The inverse of `encode`; `None` for bytes `encode` would not write.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::ENCODED_LEN || usize::from(bytes[0]) > MAX_WINDOWS {
            return None;
        }
        let word = |at: usize| bytes.get(at..at + 4)?.try_into().ok().map(u32::from_le_bytes);
        let mut list = Vec::with_capacity(MAX_WINDOWS);
        for index in 0..usize::from(bytes[0]) {
            let at = 1 + 8 * index;
            list.push(Limit {
                requests: word(at)?,
                per_seconds: word(at + 4)?,
            });
        }
        if list.is_empty() {
            return Some(Self::default());
        }
        Self::new(&list).ok()
    }
}

/// A limit a request found used up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// What is limited: `key`, or the claim's path (`org_id`).
    pub policy: String,
    pub limit: Limit,
    /// Seconds until the window ends.
    pub reset_seconds: u64,
}

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// 1 to 10 ASCII digits that fit a `u32`; no sign, no spaces.
fn digits(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
#[path = "rate_limits_tests.rs"]
mod tests;
