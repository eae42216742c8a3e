//! Usage reports from the edges (`POST /v1/usage`): the wire form, its checks, and the batch the
//! store applies (entries summed per key and day). No I/O here.
//!
//! An edge counts requests per key digest and UTC day and reports them in batches; each batch has
//! an id so that a retry (the edge did not get the answer) is applied once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::keys::is_sha256_hex;
use crate::store::KeyUsage;
use crate::time::{MS_PER_DAY, date, rfc3339};

/// Most entries one report may hold.
pub const MAX_ENTRIES: usize = 1000;
/// Largest count (and `dropped`) a report may carry: 2^53, exact in any JSON reader's number.
pub const MAX_COUNT: u64 = 1 << 53;
/// How far from the server's today an entry's day may be, either way (clocks disagree, reports
/// are retried, a day ends while a batch is in flight).
pub const DAY_WINDOW: i64 = 2;
/// Largest report body: a thousand entries fit with room to spare.
pub const MAX_REPORT_BYTES: usize = 256 * 1024;

/// The body of `POST /v1/usage`, as the edge sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    /// 32 lowercase hex characters, chosen by the edge; the same for every retry.
    pub batch: String,
    /// Counts the edge had to drop while keyservice was unreachable (its memory is bounded).
    pub dropped: u64,
    pub keys: Vec<UsageEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageEntry {
    pub sha256: String,
    /// Days since 1970-01-01 (UTC).
    pub day: u32,
    /// Milliseconds since the epoch; inside `day`.
    pub last_used_ms: u64,
    pub allowed: u64,
    pub forbidden: u64,
    pub rate_limited: u64,
}

/// Requests by outcome at the edge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub allowed: u64,
    pub forbidden: u64,
    pub rate_limited: u64,
}

impl Counts {
    /// Saturating: sums of reports cannot overflow, however many are added.
    pub fn add(&mut self, other: Counts) {
        self.allowed = self.allowed.saturating_add(other.allowed);
        self.forbidden = self.forbidden.saturating_add(other.forbidden);
        self.rate_limited = self.rate_limited.saturating_add(other.rate_limited);
    }

    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

/// A checked report, ready for the store: one entry per key, its days summed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageBatch {
    pub batch: String,
    /// The latest day in the report (today when it has no entry): the batch id is kept until no
    /// entry of it could be accepted again.
    pub newest_day: i64,
    pub dropped: u64,
    /// In ascending digest order: every transaction locks keys in the same order, so concurrent
    /// reports never deadlock.
    pub keys: Vec<KeyReport>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    pub sha256: String,
    /// The latest use reported, in Unix seconds (as every stored time).
    pub last_used_at: i64,
    /// How many entries of the report were for this digest.
    pub entries: u64,
    /// Per day, ascending; days whose counts are all zero are left out.
    pub days: Vec<(i64, Counts)>,
}

/// What is wrong with a report; each names the field, as the client wrote it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("batch must be exactly 32 lowercase hex characters")]
    Batch,
    #[error("keys holds {0} entries; a report may hold at most 1000")]
    TooManyEntries(usize),
    #[error("dropped must be at most 9007199254740992 (2^53)")]
    Dropped,
    #[error("keys[{0}].sha256 must be exactly 64 lowercase hex characters")]
    Sha256(usize),
    #[error(
        "keys[{index}].day must be within 2 days of the server's today (day {today}, {today_date}); \
         it is {day}"
    )]
    Day {
        index: usize,
        day: u32,
        today: i64,
        today_date: String,
    },
    #[error("keys[{index}].last_used_ms must fall within its day ({from} to {to})")]
    LastUsed { index: usize, from: i64, to: i64 },
    #[error("keys[{0}].{1} must be at most 9007199254740992 (2^53)")]
    Count(usize, &'static str),
}

/// How a key's usage is shown (`GET /v1/keys/{id}/usage`, `keyservice usage --json`).
#[derive(Debug, Serialize)]
pub struct UsageView {
    pub id: String,
    pub last_used_at: Option<String>,
    /// Oldest first; only days with counts.
    pub days: Vec<DayView>,
    /// The sum of `days`.
    pub totals: Counts,
}

#[derive(Debug, Serialize)]
pub struct DayView {
    /// The UTC date, `2026-12-05`.
    pub day: String,
    #[serde(flatten)]
    pub counts: Counts,
}

impl From<&KeyUsage> for UsageView {
    fn from(usage: &KeyUsage) -> Self {
        let mut totals = Counts::default();
        let days = usage
            .days
            .iter()
            .map(|day| {
                totals.add(day.counts);
                DayView {
                    day: date(day.day),
                    counts: day.counts,
                }
            })
            .collect();
        Self {
            id: usage.record.id.clone(),
            last_used_at: usage.record.last_used_at.map(rfc3339),
            days,
            totals,
        }
    }
}

fn is_batch_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl UsageReport {
    /// Checks every field against `today` (the server's UTC day) and sums entries that repeat a
    /// (digest, day). Nothing of a report with one bad entry is applied.
    pub fn check(self, today: i64) -> Result<UsageBatch, ReportError> {
        if !is_batch_id(&self.batch) {
            return Err(ReportError::Batch);
        }
        if self.keys.len() > MAX_ENTRIES {
            return Err(ReportError::TooManyEntries(self.keys.len()));
        }
        if self.dropped > MAX_COUNT {
            return Err(ReportError::Dropped);
        }
        struct Summed {
            last_used_ms: u64,
            entries: u64,
            days: BTreeMap<i64, Counts>,
        }
        let mut keys: BTreeMap<String, Summed> = BTreeMap::new();
        let mut newest_day = None;
        for (index, entry) in self.keys.into_iter().enumerate() {
            check_entry(index, &entry, today)?;
            let day = i64::from(entry.day);
            newest_day = newest_day.max(Some(day));
            let summed = keys.entry(entry.sha256).or_insert_with(|| Summed {
                last_used_ms: 0,
                entries: 0,
                days: BTreeMap::new(),
            });
            summed.last_used_ms = summed.last_used_ms.max(entry.last_used_ms);
            summed.entries += 1;
            summed.days.entry(day).or_default().add(Counts {
                allowed: entry.allowed,
                forbidden: entry.forbidden,
                rate_limited: entry.rate_limited,
            });
        }
        let keys = keys
            .into_iter()
            .map(|(sha256, summed)| KeyReport {
                sha256,
                // Checked to lie within a day near today, so it fits.
                last_used_at: i64::try_from(summed.last_used_ms / 1000).unwrap_or(i64::MAX),
                entries: summed.entries,
                days: summed
                    .days
                    .into_iter()
                    .filter(|(_, counts)| !counts.is_zero())
                    .collect(),
            })
            .collect();
        Ok(UsageBatch {
            batch: self.batch,
            newest_day: newest_day.unwrap_or(today),
            dropped: self.dropped,
            keys,
        })
    }
}

fn check_entry(index: usize, entry: &UsageEntry, today: i64) -> Result<(), ReportError> {
    if !is_sha256_hex(&entry.sha256) {
        return Err(ReportError::Sha256(index));
    }
    let day = i64::from(entry.day);
    if (day - today).abs() > DAY_WINDOW {
        return Err(ReportError::Day {
            index,
            day: entry.day,
            today,
            today_date: date(today),
        });
    }
    let from = day * MS_PER_DAY;
    let to = from + MS_PER_DAY - 1;
    let inside = i64::try_from(entry.last_used_ms).is_ok_and(|ms| (from..=to).contains(&ms));
    if !inside {
        return Err(ReportError::LastUsed { index, from, to });
    }
    for (field, count) in [
        ("allowed", entry.allowed),
        ("forbidden", entry.forbidden),
        ("rate_limited", entry.rate_limited),
    ] {
        if count > MAX_COUNT {
            return Err(ReportError::Count(index, field));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: i64 = 20_792;
    const BATCH: &str = "0123456789abcdef0123456789abcdef";

    fn digest(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn entry(sha256: &str, day: i64, allowed: u64) -> UsageEntry {
        UsageEntry {
            sha256: sha256.to_owned(),
            day: u32::try_from(day).unwrap(),
            last_used_ms: u64::try_from(day * MS_PER_DAY + 1_000).unwrap(),
            allowed,
            forbidden: 0,
            rate_limited: 0,
        }
    }

    fn report(keys: Vec<UsageEntry>) -> UsageReport {
        UsageReport {
            batch: BATCH.to_owned(),
            dropped: 0,
            keys,
        }
    }

    #[test]
    fn repeated_digests_and_days_are_summed_and_keys_sorted() {
        let mut late = entry(&digest(1), TODAY, 2);
        late.last_used_ms += 5_000;
        late.rate_limited = 3;
        let batch = report(vec![
            entry(&digest(2), TODAY - 1, 7),
            entry(&digest(1), TODAY, 1),
            late,
            entry(&digest(1), TODAY - 2, 4),
            entry(&digest(3), TODAY, 0),
        ])
        .check(TODAY)
        .unwrap();
        assert_eq!(batch.newest_day, TODAY);
        let digests: Vec<&str> = batch.keys.iter().map(|k| k.sha256.as_str()).collect();
        assert_eq!(digests, [digest(1), digest(2), digest(3)]);
        let first = &batch.keys[0];
        assert_eq!(first.entries, 3);
        assert_eq!(first.last_used_at, (TODAY * MS_PER_DAY + 6_000) / 1000);
        assert_eq!(
            first.days,
            [
                (
                    TODAY - 2,
                    Counts {
                        allowed: 4,
                        ..Counts::default()
                    }
                ),
                (
                    TODAY,
                    Counts {
                        allowed: 3,
                        forbidden: 0,
                        rate_limited: 3
                    }
                ),
            ]
        );
        // A digest with nothing counted still reports its last use, and no day row.
        assert_eq!(batch.keys[2].days, []);
        assert_eq!(batch.keys[2].entries, 1);
    }

    #[test]
    fn an_empty_report_is_valid_and_dated_today() {
        let batch = UsageReport {
            dropped: 12,
            ..report(vec![])
        }
        .check(TODAY)
        .unwrap();
        assert_eq!((batch.newest_day, batch.dropped), (TODAY, 12));
        assert!(batch.keys.is_empty());
        let future = report(vec![entry(&digest(1), TODAY + 2, 1)])
            .check(TODAY)
            .unwrap();
        assert_eq!(future.newest_day, TODAY + 2);
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut out_of_day = entry(&digest(1), TODAY, 1);
        out_of_day.last_used_ms = u64::try_from((TODAY + 1) * MS_PER_DAY).unwrap();
        let mut before_day = entry(&digest(1), TODAY, 1);
        before_day.last_used_ms = u64::try_from(TODAY * MS_PER_DAY - 1).unwrap();
        let mut huge = entry(&digest(1), TODAY, 1);
        huge.forbidden = MAX_COUNT + 1;
        let cases: Vec<(UsageReport, &str)> = vec![
            (
                UsageReport {
                    batch: BATCH.to_uppercase(),
                    ..report(vec![])
                },
                "batch must be",
            ),
            (
                UsageReport {
                    batch: BATCH[1..].to_owned(),
                    ..report(vec![])
                },
                "batch must be",
            ),
            (
                UsageReport {
                    dropped: MAX_COUNT + 1,
                    ..report(vec![])
                },
                "dropped must be",
            ),
            (
                report(
                    (0..=MAX_ENTRIES)
                        .map(|_| entry(&digest(1), TODAY, 1))
                        .collect(),
                ),
                "keys holds 1001 entries",
            ),
            (
                report(vec![entry(&digest(1), TODAY, 1), entry("abc", TODAY, 1)]),
                "keys[1].sha256 must be",
            ),
            (
                report(vec![entry(&digest(0xab).to_uppercase(), TODAY, 1)]),
                "keys[0].sha256 must be",
            ),
            (
                report(vec![entry(&digest(1), TODAY - 3, 1)]),
                "keys[0].day must be within 2 days",
            ),
            (
                report(vec![entry(&digest(1), TODAY + 3, 1)]),
                "keys[0].day must be within 2 days",
            ),
            (report(vec![out_of_day]), "keys[0].last_used_ms must fall"),
            (report(vec![before_day]), "keys[0].last_used_ms must fall"),
            (report(vec![huge]), "keys[0].forbidden must be at most"),
        ];
        for (report, expected) in cases {
            let error = report.check(TODAY).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{expected:?}: {error}");
        }
        let mut at_most = entry(&digest(1), TODAY, MAX_COUNT);
        at_most.last_used_ms = u64::try_from((TODAY + 1) * MS_PER_DAY - 1).unwrap();
        assert!(report(vec![at_most]).check(TODAY).is_ok());
    }

    #[test]
    fn the_day_error_says_what_today_is() {
        let error = report(vec![entry(&digest(1), TODAY - 3, 1)])
            .check(TODAY)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "keys[0].day must be within 2 days of the server's today (day 20792, 2026-12-05); it is 20789"
        );
    }

    #[test]
    fn sums_saturate() {
        let mut counts = Counts {
            allowed: u64::MAX - 1,
            ..Counts::default()
        };
        counts.add(Counts {
            allowed: 5,
            forbidden: 1,
            rate_limited: 0,
        });
        assert_eq!(counts.allowed, u64::MAX);
        assert!(!counts.is_zero() && Counts::default().is_zero());
    }
}
