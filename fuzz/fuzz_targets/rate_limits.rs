//! keyservice's `keygate-rate-limit` header (`Limits::parse_header`), from the network, and the
//! encoding the revocation cache keeps limits in. Properties:
//! - never a panic; accepted limits are 1 to 4 windows of at least one request per 1 s to 31
//!   days, in ascending and distinct windows;
//! - written back as `requests/per_seconds` items joined by `, `, they read as the same limits;
//! - the cache encoding round-trips, and `decode` of any 33 bytes is either refused or limits that
//!   encode back to those bytes.
#![no_main]

use keygate::policy::rate_limits::{Limits, MAX_PER_SECONDS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(limits) = Limits::parse_header(data) {
        let windows = limits.as_slice();
        assert!((1..=4).contains(&windows.len()));
        for pair in windows.windows(2) {
            assert!(pair[0].per_seconds < pair[1].per_seconds);
        }
        for limit in windows {
            assert!(limit.requests >= 1);
            assert!((1..=MAX_PER_SECONDS).contains(&limit.per_seconds));
        }
        let written: Vec<String> = windows
            .iter()
            .map(|limit| format!("{}/{}", limit.requests, limit.per_seconds))
            .collect();
        assert_eq!(
            Limits::parse_header(written.join(", ").as_bytes()),
            Some(limits)
        );
        assert_eq!(Limits::decode(&limits.encode()), Some(limits));
    }
    if data.len() == Limits::ENCODED_LEN
        && let Some(limits) = Limits::decode(data)
    {
        assert_eq!(Limits::decode(&limits.encode()), Some(limits));
    }
});
