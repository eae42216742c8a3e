//! The usage report keyservice reads (`POST /v1/usage`, keyservice/docs/api.md): a batch id,
//! so a retried report is applied once, the dropped count, and per key and day the counts.

use serde::Serialize;

use crate::metering::usage::DayCounts;
use crate::revocation::protocol::hex_digest;

/// At most this many entries per report (keyservice takes up to 1000).
pub const MAX_REPORT_KEYS: usize = 1000;

#[derive(Serialize)]
struct Body<'a> {
    batch: &'a str,
    dropped: u64,
    keys: Vec<Entry>,
}

#[derive(Serialize)]
struct Entry {
    sha256: String,
    day: u32,
    last_used_ms: u64,
    allowed: u64,
    forbidden: u64,
    rate_limited: u64,
}

/// The report's JSON body.
pub fn report_body(batch: &str, dropped: u64, entries: &[DayCounts]) -> Vec<u8> {
    let body = Body {
        batch,
        dropped,
        keys: entries
            .iter()
            .map(|entry| Entry {
                sha256: hex_digest(&entry.key),
                day: entry.day,
                last_used_ms: entry.counts.last_used_ms,
                allowed: entry.counts.allowed,
                forbidden: entry.counts.forbidden,
                rate_limited: entry.counts.rate_limited,
            })
            .collect(),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A batch id: 32 lowercase hex digits from 16 random bytes.
pub fn batch_id(random: [u8; 16]) -> String {
    let mut id = String::with_capacity(32);
    for byte in random {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
