//! Who a request is counted as: its provider, the key when it is one keyservice stores (usage
//! is kept per key), and the counters its rate limits use. Built once when a token is verified
//! and kept with it in the verified-token cache, so a cached request hashes nothing.

use sha2::{Digest as _, Sha256};

use crate::metering::limiter::CounterId;
use crate::revocation::protocol::Digest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The provider's index in the configuration.
    pub provider: usize,
    /// The token's digest when keyservice stores it (its provider checks it for revocation):
    /// usage is counted per key, and keyservice's answer may carry the key's own limits.
    pub key: Option<Digest>,
    /// The counter of the token's own limits.
    pub key_counter: CounterId,
    /// Per limited claim the token carries: the index into the provider's
    /// `rate_limits.claims`, and the counter of that claim's value.
    pub claims: Vec<(usize, CounterId)>,
}

/// A counter's id: the first 16 bytes of the SHA-256 of the parts, each length-prefixed (so
/// `("ab", "c")` and `("a", "bc")` differ).
pub fn counter_id(parts: &[&[u8]]) -> CounterId {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

#[cfg(test)]
#[path = "subject_tests.rs"]
mod tests;
