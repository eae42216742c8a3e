//! The report body keyservice reads, and its size per key (stated in docs/usage-and-limits.md).

use serde_json::{Value, json};

use super::*;
use crate::metering::usage::Counts;

fn entry(byte: u8) -> DayCounts {
    DayCounts {
        key: [byte; 32],
        day: 20_427,
        counts: Counts {
            allowed: 12_345,
            forbidden: 6,
            rate_limited: 78,
            last_used_ms: 1_764_912_345_678,
        },
    }
}

#[test]
fn the_body_is_keyservices_shape() {
    let body: Value = serde_json::from_slice(&report_body("ab", 4, &[entry(0xab)])).unwrap();
    assert_eq!(
        body,
        json!({"batch": "ab", "dropped": 4, "keys": [{
            "sha256": "ab".repeat(32), "day": 20_427, "last_used_ms": 1_764_912_345_678_u64,
            "allowed": 12_345, "forbidden": 6, "rate_limited": 78
        }]})
    );
}

#[test]
fn a_full_report_stays_within_keyservices_body_limit() {
    let entries: Vec<DayCounts> = (0..MAX_REPORT_KEYS).map(|i| entry(i as u8)).collect();
    let body = report_body(&"0".repeat(32), 0, &entries);
    let per_key = body.len() / MAX_REPORT_KEYS;
    // ~150 bytes per key with busy counters: 1000 keys fit well inside keyservice's 256 KiB.
    assert!((130..=170).contains(&per_key), "{per_key} bytes per key");
    assert!(body.len() < 256 * 1024);
}

#[test]
fn batch_ids_are_32_lowercase_hex_digits() {
    let id = batch_id([0xa5; 16]);
    assert_eq!(id, "a5".repeat(16));
}
