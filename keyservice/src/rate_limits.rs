//! A key's rate limits: chosen when the key is issued, changed with `PATCH /v1/keys/{id}`, and
//! handed to the edge in the revocation answer's `keygate-rate-limit` header. No I/O here.
//!
//! A key has at most [`MAX_RATE_LIMITS`] windows, each with its own length; they are kept in
//! ascending `per_seconds`, so the stored text, the answers and the header have one form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::keys::ValidationError;

/// Most windows one key may have.
pub const MAX_RATE_LIMITS: usize = 4;
/// The longest window: 31 days, so a monthly quota fits.
pub const MAX_PER_SECONDS: u32 = 31 * 86_400;
/// The revocation answer's header that carries a key's limits to the edge.
pub const HEADER: &str = "keygate-rate-limit";

/// At most `requests` requests in any `per_seconds` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub requests: u32,
    pub per_seconds: u32,
}

/// `<requests>/<per_seconds>`, as in the header and on the command line.
impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.requests, self.per_seconds)
    }
}

/// `100/60`: a hundred requests a minute. Only the range of each number is checked here; the
/// bounds are [`normalize`]'s.
impl FromStr for RateLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || {
            format!("{text:?} is not REQUESTS/SECONDS, e.g. 100/60 (a hundred requests a minute)")
        };
        let (requests, per_seconds) = text.split_once('/').ok_or_else(usage)?;
        let number = |part: &str| -> Result<u32, String> {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(usage());
            }
            part.parse().map_err(|_| usage())
        };
        Ok(Self {
            requests: number(requests)?,
            per_seconds: number(per_seconds)?,
        })
    }
}

/// Checks `limits` (in the order given, so the error names the entry the client wrote) and
/// sorts them by window.
pub fn normalize(mut limits: Vec<RateLimit>) -> Result<Vec<RateLimit>, ValidationError> {
    if limits.len() > MAX_RATE_LIMITS {
        return Err(ValidationError::TooManyRateLimits);
    }
    for (index, limit) in limits.iter().enumerate() {
        if limit.requests == 0 {
            return Err(ValidationError::RateLimitRequests(index));
        }
        if !(1..=MAX_PER_SECONDS).contains(&limit.per_seconds) {
            return Err(ValidationError::RateLimitWindow(index));
        }
        if let Some(first) = limits[..index]
            .iter()
            .position(|earlier| earlier.per_seconds == limit.per_seconds)
        {
            return Err(ValidationError::RateLimitRepeated(index, first));
        }
    }
    limits.sort_by_key(|limit| limit.per_seconds);
    Ok(limits)
}

/// The header's value, `100/60, 1000/86400`; `None` without limits (no header is sent).
pub fn header_value(limits: &[RateLimit]) -> Option<String> {
    (!limits.is_empty()).then(|| {
        limits
            .iter()
            .map(RateLimit::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// The stored form: JSON written by hand, so it cannot fail and is always the same text for the
/// same limits (a change is found by comparing it).
pub fn to_column(limits: &[RateLimit]) -> String {
    let entries: Vec<String> = limits
        .iter()
        .map(|l| {
            format!(
                r#"{{"requests":{},"per_seconds":{}}}"#,
                l.requests, l.per_seconds
            )
        })
        .collect();
    format!("[{}]", entries.join(","))
}

/// The stored form read back, checked again: a value another tool wrote must not become a
/// limit the API could never have set.
pub fn from_column(text: &str) -> Result<Vec<RateLimit>, String> {
    let limits: Vec<RateLimit> =
        serde_json::from_str(text).map_err(|e| format!("rate_limits is not readable: {e}"))?;
    normalize(limits).map_err(|e| format!("rate_limits holds an invalid entry: {e}"))
}

/// For listings: `100/60,1000/86400`, or `-`.
pub fn summary(limits: &[RateLimit]) -> String {
    if limits.is_empty() {
        "-".to_owned()
    } else {
        limits
            .iter()
            .map(RateLimit::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests: u32, per_seconds: u32) -> RateLimit {
        RateLimit {
            requests,
            per_seconds,
        }
    }

    #[test]
    fn limits_are_sorted_by_window_and_checked_in_the_order_given() {
        assert_eq!(
            normalize(vec![limit(1000, 86_400), limit(100, 60)]),
            Ok(vec![limit(100, 60), limit(1000, 86_400)])
        );
        assert_eq!(normalize(vec![]), Ok(vec![]));
        assert_eq!(
            normalize(vec![limit(1, MAX_PER_SECONDS)]),
            Ok(vec![limit(1, MAX_PER_SECONDS)])
        );
        let cases = [
            (
                vec![limit(1, 60), limit(0, 1)],
                ValidationError::RateLimitRequests(1),
            ),
            (vec![limit(1, 0)], ValidationError::RateLimitWindow(0)),
            (
                vec![limit(1, 1), limit(1, MAX_PER_SECONDS + 1)],
                ValidationError::RateLimitWindow(1),
            ),
            (
                vec![limit(1, 60), limit(5, 3600), limit(2, 60)],
                ValidationError::RateLimitRepeated(2, 0),
            ),
            (
                (1..=5).map(|n| limit(n, n)).collect(),
                ValidationError::TooManyRateLimits,
            ),
        ];
        for (limits, expected) in cases {
            assert_eq!(normalize(limits.clone()), Err(expected), "{limits:?}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            ValidationError::RateLimitRequests(1).to_string(),
            "rate_limits[1].requests must be at least 1"
        );
        assert!(
            ValidationError::RateLimitWindow(0)
                .to_string()
                .starts_with("rate_limits[0].per_seconds must be from 1 to 2678400")
        );
        assert!(
            ValidationError::RateLimitRepeated(2, 0)
                .to_string()
                .starts_with("rate_limits[2].per_seconds is the same as rate_limits[0]")
        );
    }

    #[test]
    fn the_header_lists_windows_in_ascending_order() {
        assert_eq!(header_value(&[]), None);
        let limits = normalize(vec![limit(1000, 86_400), limit(100, 60)]).unwrap();
        assert_eq!(header_value(&limits).as_deref(), Some("100/60, 1000/86400"));
        assert_eq!(summary(&limits), "100/60,1000/86400");
        assert_eq!(summary(&[]), "-");
    }

    #[test]
    fn the_column_round_trips_in_one_form() {
        let limits = vec![limit(100, 60), limit(1000, 86_400)];
        let text = to_column(&limits);
        assert_eq!(
            text,
            r#"[{"requests":100,"per_seconds":60},{"requests":1000,"per_seconds":86400}]"#
        );
        assert_eq!(from_column(&text), Ok(limits));
        assert_eq!(to_column(&[]), "[]");
        assert_eq!(from_column("[]"), Ok(vec![]));
        assert!(from_column("").is_err());
        assert!(from_column(r#"[{"requests":0,"per_seconds":1}]"#).is_err());
        assert!(from_column(r#"[{"requests":1,"per_seconds":1,"burst":2}]"#).is_err());
    }

    #[test]
    fn the_command_line_form_is_requests_slash_seconds() {
        assert_eq!("100/60".parse(), Ok(limit(100, 60)));
        assert_eq!("0/60".parse(), Ok(limit(0, 60)), "bounds are normalize's");
        for bad in [
            "", "100", "100/", "/60", "1e3/60", "-1/60", "100/60/2", " 100/60", "100/6O",
        ] {
            let error = bad.parse::<RateLimit>().unwrap_err();
            assert!(error.contains("REQUESTS/SECONDS"), "{bad:?}: {error}");
        }
        assert!("4294967296/60".parse::<RateLimit>().is_err());
    }
}
