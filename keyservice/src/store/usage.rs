//! Usage in the store: applying the edges' reports once each, reading a key's days, and
//! retention. The SQL is the same for both backends ([`usage_queries!`], expanded in each).
//!
//! Concurrent reports (several edges, several replicas) are correct because every write adds:
//! `last_used_at` only moves forward, and a day's counts are an upsert that adds to the row. A
//! report's transaction locks keys in digest order and day rows in (key, day) order, the same
//! order in every transaction, so two reports touching the same keys wait for each other instead
//! of deadlocking.

use crate::store::KeyRecord;
use crate::usage::Counts;

/// Day rows per upsert statement: 5 bound values each, far below either database's limit on
/// placeholders, and few round trips for a report of a thousand entries.
pub const UPSERT_ROWS: usize = 100;

/// What applying a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageOutcome {
    Applied {
        /// The counts added to stored keys.
        applied: Counts,
        /// Entries whose digest is no stored key (temporary keys are never stored): ignored.
        unknown_entries: u64,
    },
    /// The batch id was applied before: nothing changed.
    Duplicate,
}

/// One day of a key's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayUsage {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub counts: Counts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    pub record: KeyRecord,
    /// Oldest first; only days with counts.
    pub days: Vec<DayUsage>,
}

/// What retention deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsagePruned {
    pub days: u64,
    pub batches: u64,
}

/// `INSERT … VALUES (…), (…) ON CONFLICT (key_id, day) DO UPDATE` adding to the row, for `rows`
/// rows. Only placeholders go into the text; every value is bound.
pub fn upsert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let first = row * 5 + 1;
            format!(
                "(${}, ${}, ${}, ${}, ${})",
                first,
                first + 1,
                first + 2,
                first + 3,
                first + 4
            )
        })
        .collect();
    format!(
        "INSERT INTO key_usage (key_id, day, allowed, forbidden, rate_limited) VALUES {} \
         ON CONFLICT (key_id, day) DO UPDATE SET allowed = key_usage.allowed + excluded.allowed, \
         forbidden = key_usage.forbidden + excluded.forbidden, \
         rate_limited = key_usage.rate_limited + excluded.rate_limited",
        values.join(", ")
    )
}

/// A count as stored (`BIGINT`): reports carry at most 2^53 per entry and a thousand entries,
/// so a report's sums fit; the cap only keeps the conversion total.
pub fn to_column(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// A stored count read back; never negative, as only sums of unsigned counts are written.
pub fn from_column(count: i64) -> u64 {
    u64::try_from(count).unwrap_or(0)
}

/// The [`KeyStore`](super::KeyStore) methods for usage; `$map_error` as in `shared_queries!`.
macro_rules! usage_queries {
    ($map_error:path) => {
        fn record_usage<'a>(
            &'a self,
            batch: &'a $crate::usage::UsageBatch,
            received_ms: i64,
        ) -> $crate::store::StoreFuture<'a, $crate::store::UsageOutcome> {
            Box::pin(async move {
                let mut tx = self.pool.begin().await.map_err($map_error)?;
                // First, so that a retry racing the original waits on the id's row and then finds
                // it; and so that the id commits exactly with the counts.
                let inserted = sqlx::query(
                    "INSERT INTO usage_batches (batch, newest_day, received_ms) VALUES ($1, $2, $3) ON CONFLICT (batch) DO NOTHING",
                )
                .bind(&batch.batch)
                .bind(batch.newest_day)
                .bind(received_ms)
                .execute(&mut *tx)
                .await
                .map_err($map_error)?
                .rows_affected();
                if inserted == 0 {
                    tx.rollback().await.map_err($map_error)?;
                    return Ok($crate::store::UsageOutcome::Duplicate);
                }
                let mut applied = $crate::usage::Counts::default();
                let mut unknown_entries = 0_u64;
                let mut rows: Vec<(String, i64, $crate::usage::Counts)> = Vec::new();
                // `batch.keys` is in digest order: the lock order of every report.
                for key in &batch.keys {
                    let id: Option<String> = sqlx::query_scalar(
                        "UPDATE api_keys SET last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $1 THEN $2 ELSE last_used_at END WHERE key_sha256 = $3 RETURNING id",
                    )
                    .bind(key.last_used_at)
                    .bind(key.last_used_at)
                    .bind(&key.sha256)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err($map_error)?;
                    match id {
                        Some(id) => {
                            for (day, counts) in &key.days {
                                applied.add(*counts);
                                rows.push((id.clone(), *day, *counts));
                            }
                        }
                        None => unknown_entries = unknown_entries.saturating_add(key.entries),
                    }
                }
                rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                for chunk in rows.chunks($crate::store::usage::UPSERT_ROWS) {
                    let sql = $crate::store::usage::upsert_sql(chunk.len());
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for (id, day, counts) in chunk {
                        query = query
                            .bind(id.as_str())
                            .bind(*day)
                            .bind($crate::store::usage::to_column(counts.allowed))
                            .bind($crate::store::usage::to_column(counts.forbidden))
                            .bind($crate::store::usage::to_column(counts.rate_limited));
                    }
                    query.execute(&mut *tx).await.map_err($map_error)?;
                }
                tx.commit().await.map_err($map_error)?;
                Ok($crate::store::UsageOutcome::Applied {
                    applied,
                    unknown_entries,
                })
            })
        }

        fn usage<'a>(
            &'a self,
            id: &'a str,
            filter: &'a $crate::store::KeyFilter<'a>,
            since_day: i64,
        ) -> $crate::store::StoreFuture<'a, Option<$crate::store::KeyUsage>> {
            Box::pin(async move {
                // The filter is part of the statement: a key outside it is not found.
                let (conditions, values) = filter.to_sql(2);
                let conditions = conditions.replacen(" WHERE ", " AND ", 1);
                let sql = format!(
                    concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1{}"),
                    conditions
                );
                let mut query =
                    sqlx::query_as::<_, $crate::store::KeyRow>(sqlx::AssertSqlSafe(sql)).bind(id);
                for value in values {
                    query = query.bind(value);
                }
                let row = query.fetch_optional(&self.pool).await.map_err($map_error)?;
                let Some(record) = row.map($crate::store::KeyRow::into_record).transpose()? else {
                    return Ok(None);
                };
                let days = sqlx::query_as::<_, (i64, i64, i64, i64)>(
                    "SELECT day, allowed, forbidden, rate_limited FROM key_usage WHERE key_id = $1 AND day >= $2 AND (allowed > 0 OR forbidden > 0 OR rate_limited > 0) ORDER BY day",
                )
                .bind(&record.id)
                .bind(since_day)
                .fetch_all(&self.pool)
                .await
                .map_err($map_error)?;
                let days = days
                    .into_iter()
                    .map(|(day, allowed, forbidden, rate_limited)| $crate::store::DayUsage {
                        day,
                        counts: $crate::usage::Counts {
                            allowed: $crate::store::usage::from_column(allowed),
                            forbidden: $crate::store::usage::from_column(forbidden),
                            rate_limited: $crate::store::usage::from_column(rate_limited),
                        },
                    })
                    .collect();
                Ok(Some($crate::store::KeyUsage { record, days }))
            })
        }

        fn prune_usage(
            &self,
            days_before: i64,
            batches_before: i64,
        ) -> $crate::store::StoreFuture<'_, $crate::store::UsagePruned> {
            Box::pin(async move {
                let days = sqlx::query("DELETE FROM key_usage WHERE day < $1")
                    .bind(days_before)
                    .execute(&self.pool)
                    .await
                    .map_err($map_error)?
                    .rows_affected();
                let batches = sqlx::query("DELETE FROM usage_batches WHERE newest_day < $1")
                    .bind(batches_before)
                    .execute(&self.pool)
                    .await
                    .map_err($map_error)?
                    .rows_affected();
                Ok($crate::store::UsagePruned { days, batches })
            })
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upsert_numbers_five_placeholders_a_row_and_adds() {
        assert_eq!(
            upsert_sql(2),
            "INSERT INTO key_usage (key_id, day, allowed, forbidden, rate_limited) VALUES \
             ($1, $2, $3, $4, $5), ($6, $7, $8, $9, $10) ON CONFLICT (key_id, day) DO UPDATE SET \
             allowed = key_usage.allowed + excluded.allowed, forbidden = key_usage.forbidden + \
             excluded.forbidden, rate_limited = key_usage.rate_limited + excluded.rate_limited"
        );
        assert!(upsert_sql(UPSERT_ROWS).contains("$500)"));
    }

    #[test]
    fn counts_convert_without_panicking() {
        assert_eq!(to_column(7), 7);
        assert_eq!(to_column(u64::MAX), i64::MAX);
        assert_eq!(from_column(7), 7);
        assert_eq!(from_column(-1), 0);
    }
}
