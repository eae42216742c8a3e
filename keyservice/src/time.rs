//! Unix-second timestamps and their RFC 3339 form; UTC days (days since 1970-01-01), the unit
//! of usage counts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 9999-12-31T23:59:59Z: the last second RFC 3339 (and humantime) can write.
pub const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// Seconds since the Unix epoch; a clock before 1970 reads as 0.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(MAX_TIMESTAMP))
}

/// Milliseconds since the Unix epoch; a clock before 1970 reads as 0.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `2025-01-02T03:04:05Z`. Out-of-range values are clamped because humantime's formatter
/// fails (and `to_string` would panic) outside 1970..=9999.
pub fn rfc3339(secs: i64) -> String {
    let secs = u64::try_from(secs.clamp(0, MAX_TIMESTAMP)).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

pub const SECONDS_PER_DAY: i64 = 86_400;
pub const MS_PER_DAY: i64 = SECONDS_PER_DAY * 1000;

/// Today's UTC day, in days since 1970-01-01.
pub fn today() -> i64 {
    now() / SECONDS_PER_DAY
}

/// `2026-12-05`: the UTC date of a day number (clamped like [`rfc3339`]).
pub fn date(day: i64) -> String {
    let stamp = rfc3339(day.saturating_mul(SECONDS_PER_DAY));
    match stamp.split_once('T') {
        Some((date, _)) => date.to_owned(),
        None => stamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(20_792), "2026-12-05");
        assert_eq!(date(-1), "1970-01-01");
        assert_eq!(date(i64::MAX), "9999-12-31");
        assert_eq!(today(), now() / 86_400);
    }

    #[test]
    fn clamps_instead_of_panicking() {
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
    }
}
