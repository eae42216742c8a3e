//! Where key records live. Handlers and commands see only [`KeyStore`]; two backends implement
//! it, [`sqlite`] (embedded, the default) and [`postgres`] (several replicas on one database).
//!
//! They share everything but connection handling: the migrations in `migrations/` are portable
//! SQL (`TEXT`, `BIGINT` seconds), and so is every statement (`$n` placeholders, `RETURNING`,
//! `COALESCE`, `ON CONFLICT`), written once in [`shared_queries!`] and, for usage,
//! [`usage_queries!`](usage). Each write is one statement or one transaction, so a failure (a lost
//! connection, a database that went away) never leaves a half-written key behind.

// Shared by every statement so that all of them read the same columns.
macro_rules! key_columns {
    () => {
        "id, key_sha256, name, user_id, org_id, scopes, rate_limits, created_at, expires_at, revoked_at, last_used_at, hint"
    };
}

/// Appends one event to the feed inside `$tx` and returns its seq. The head row's lock is held
/// until `$tx` commits, so writers take seqs in commit order and a reader that sees seq N has
/// every smaller one too. `$notify` (Postgres: `pg_notify`) wakes the other replicas on commit.
macro_rules! append_feed_event {
    ($tx:ident, $map_error:path, $notify:expr, $key_sha256:expr, $event:expr) => {{
        let seq: i64 = sqlx::query_scalar(
            "UPDATE revocation_feed_head SET seq = seq + 1 WHERE id = 1 RETURNING seq",
        )
        .fetch_one(&mut *$tx)
        .await
        .map_err($map_error)?;
        sqlx::query(
            "INSERT INTO revocation_feed (seq, key_sha256, event, at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(seq)
        .bind($key_sha256)
        .bind($crate::store::FeedEvent::as_str($event))
        .bind($crate::time::now_ms())
        .execute(&mut *$tx)
        .await
        .map_err($map_error)?;
        let notify: &str = $notify;
        if !notify.is_empty() {
            sqlx::query(notify)
                .bind(seq.to_string())
                .execute(&mut *$tx)
                .await
                .map_err($map_error)?;
        }
        seq
    }};
}

/// The [`KeyStore`] methods that are the same SQL for both backends; `$pool` is the field that
/// holds the backend's pool and `$map_error` turns `sqlx::Error` into [`StoreError`].
macro_rules! shared_queries {
    ($map_error:path, $notify:expr) => {
        fn insert<'a>(&'a self, key: &'a $crate::store::KeyRecord) -> $crate::store::StoreFuture<'a, ()> {
            Box::pin(async move {
                sqlx::query(concat!(
                    "INSERT INTO api_keys (",
                    key_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                ))
                .bind(&key.id)
                .bind(&key.key_sha256)
                .bind(&key.name)
                .bind(&key.user_id)
                .bind(&key.org_id)
                .bind($crate::store::join_scopes(&key.scopes))
                .bind($crate::rate_limits::to_column(&key.rate_limits))
                .bind(key.created_at)
                .bind(key.expires_at)
                .bind(key.revoked_at)
                .bind(key.last_used_at)
                .bind(&key.hint)
                .execute(&self.pool)
                .await
                .map_err($crate::store::insert_error($map_error))?;
                Ok(())
            })
        }

        fn list<'a>(
            &'a self,
            filter: &'a $crate::store::KeyFilter<'a>,
            page: &'a $crate::store::Page,
        ) -> $crate::store::StoreFuture<'a, Vec<$crate::store::KeyRecord>> {
            Box::pin(async move {
                let (conditions, values) = filter.to_sql(1);
                let next = values.len() + 1;
                let after = match &page.after {
                    // Row values: the keys strictly after the cursor in (created_at, id) order.
                    Some(_) if conditions.is_empty() => {
                        format!(" WHERE (created_at, id) > (${next}, ${})", next + 1)
                    }
                    Some(_) => format!(" AND (created_at, id) > (${next}, ${})", next + 1),
                    None => String::new(),
                };
                let limit = if page.after.is_some() { next + 2 } else { next };
                let sql = format!(
                    concat!("SELECT ", key_columns!(), " FROM api_keys{}{} ORDER BY created_at, id LIMIT ${}"),
                    conditions, after, limit
                );
                let mut query = sqlx::query_as::<_, $crate::store::KeyRow>(sqlx::AssertSqlSafe(sql));
                for value in values {
                    query = query.bind(value);
                }
                if let Some(cursor) = &page.after {
                    query = query.bind(cursor.created_at).bind(cursor.id.as_str());
                }
                let rows = query
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($map_error)?;
                rows.into_iter().map($crate::store::KeyRow::into_record).collect()
            })
        }

        fn get<'a>(
            &'a self,
            id: &'a str,
        ) -> $crate::store::StoreFuture<'a, Option<$crate::store::KeyRecord>> {
            Box::pin(async move {
                let sql = concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1");
                let row = sqlx::query_as::<_, $crate::store::KeyRow>(sql)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($map_error)?;
                row.map($crate::store::KeyRow::into_record).transpose()
            })
        }

        fn find_by_hash<'a>(
            &'a self,
            key_sha256: &'a str,
        ) -> $crate::store::StoreFuture<'a, Option<$crate::store::KeyRecord>> {
            Box::pin(async move {
                let sql = concat!("SELECT ", key_columns!(), " FROM api_keys WHERE key_sha256 = $1");
                let row = sqlx::query_as::<_, $crate::store::KeyRow>(sql)
                    .bind(key_sha256)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($map_error)?;
                row.map($crate::store::KeyRow::into_record).transpose()
            })
        }

        fn revoke<'a>(
            &'a self,
            id: &'a str,
            filter: &'a $crate::store::KeyFilter<'a>,
            at: i64,
        ) -> $crate::store::StoreFuture<'a, Option<$crate::store::Revocation>> {
            Box::pin(async move {
                // The filter is part of each statement: a key outside it is never touched.
                let (conditions, values) = filter.to_sql(3);
                let conditions = conditions.replacen(" WHERE ", " AND ", 1);
                let sql = format!(
                    concat!(
                        "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL{} RETURNING ",
                        key_columns!()
                    ),
                    conditions
                );
                // One transaction: the key is revoked exactly when its feed entry exists.
                let mut tx = self.pool.begin().await.map_err($map_error)?;
                let mut query = sqlx::query_as::<_, $crate::store::KeyRow>(sqlx::AssertSqlSafe(sql))
                    .bind(at)
                    .bind(id);
                for value in &values {
                    query = query.bind(*value);
                }
                if let Some(row) = query.fetch_optional(&mut *tx).await.map_err($map_error)? {
                    let record = row.into_record()?;
                    let seq = append_feed_event!(
                        tx,
                        $map_error,
                        $notify,
                        &record.key_sha256,
                        $crate::store::FeedEvent::Revoked
                    );
                    tx.commit().await.map_err($map_error)?;
                    $crate::store::signal_feed(&self.feed, seq);
                    return Ok(Some($crate::store::Revocation { record, newly: true }));
                }
                tx.rollback().await.map_err($map_error)?;
                // Not revoked now: unknown, outside the filter, or revoked before (keys are
                // never un-revoked, so the two statements cannot disagree).
                let (conditions, values) = filter.to_sql(2);
                let conditions = conditions.replacen(" WHERE ", " AND ", 1);
                let sql = format!(
                    concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1{}"),
                    conditions
                );
                let mut query = sqlx::query_as::<_, $crate::store::KeyRow>(sqlx::AssertSqlSafe(sql)).bind(id);
                for value in values {
                    query = query.bind(value);
                }
                let row = query.fetch_optional(&self.pool).await.map_err($map_error)?;
                let record = row.map($crate::store::KeyRow::into_record).transpose()?;
                Ok(record.map(|record| $crate::store::Revocation { record, newly: false }))
            })
        }

        fn set_rate_limits<'a>(
            &'a self,
            id: &'a str,
            filter: &'a $crate::store::KeyFilter<'a>,
            limits: &'a [$crate::rate_limits::RateLimit],
        ) -> $crate::store::StoreFuture<'a, Option<$crate::store::LimitsChange>> {
            Box::pin(async move {
                let column = $crate::rate_limits::to_column(limits);
                // The filter is part of the statement, as for revocations. Only an active key
                // whose limits really change is updated (the stored text has one form per set of
                // limits), so an unchanged PATCH adds nothing to the feed.
                let (conditions, values) = filter.to_sql(4);
                let conditions = conditions.replacen(" WHERE ", " AND ", 1);
                let sql = format!(
                    concat!(
                        "UPDATE api_keys SET rate_limits = $1 WHERE id = $2 AND revoked_at IS NULL AND rate_limits <> $3{} RETURNING ",
                        key_columns!()
                    ),
                    conditions
                );
                // One transaction: the limits change exactly when their feed entry exists.
                let mut tx = self.pool.begin().await.map_err($map_error)?;
                let mut query = sqlx::query_as::<_, $crate::store::KeyRow>(sqlx::AssertSqlSafe(sql))
                    .bind(&column)
                    .bind(id)
                    .bind(&column);
                for value in &values {
                    query = query.bind(*value);
                }
                if let Some(row) = query.fetch_optional(&mut *tx).await.map_err($map_error)? {
                    let record = row.into_record()?;
                    let seq = append_feed_event!(
                        tx,
                        $map_error,
                        $notify,
                        &record.key_sha256,
                        $crate::store::FeedEvent::LimitsChanged
                    );
                    tx.commit().await.map_err($map_error)?;
                    $crate::store::signal_feed(&self.feed, seq);
                    return Ok(Some($crate::store::LimitsChange::Changed(record)));
                }
                tx.rollback().await.map_err($map_error)?;
                // Not changed: unknown, outside the filter, revoked, or already these limits.
                let (conditions, values) = filter.to_sql(2);
                let conditions = conditions.replacen(" WHERE ", " AND ", 1);
                let sql = format!(
                    concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1{}"),
                    conditions
                );
                let mut query = sqlx::query_as::<_, $crate::store::KeyRow>(sqlx::AssertSqlSafe(sql)).bind(id);
                for value in values {
                    query = query.bind(value);
                }
                let row = query.fetch_optional(&self.pool).await.map_err($map_error)?;
                let Some(record) = row.map($crate::store::KeyRow::into_record).transpose()? else {
                    return Ok(None);
                };
                Ok(Some(if record.revoked_at.is_some() {
                    $crate::store::LimitsChange::Revoked(record)
                } else {
                    $crate::store::LimitsChange::Unchanged(record)
                }))
            })
        }

        fn feed<'a>(
            &'a self,
            after: i64,
            limit: u32,
        ) -> $crate::store::StoreFuture<'a, $crate::store::FeedPage> {
            Box::pin(async move {
                // One snapshot for the bounds and the entries (a repeatable read on SQLite, whose
                // readers see one snapshot per transaction; on Postgres the entries are read
                // after the head, so they reach at least as far).
                let mut tx = self.pool.begin().await.map_err($map_error)?;
                let (head, pruned_through): (i64, i64) = sqlx::query_as(
                    "SELECT seq, pruned_through FROM revocation_feed_head WHERE id = 1",
                )
                .fetch_one(&mut *tx)
                .await
                .map_err($map_error)?;
                let entries = sqlx::query_as::<_, (i64, String, String, i64)>(
                    "SELECT seq, key_sha256, event, at_ms FROM revocation_feed WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
                )
                .bind(after)
                .bind(head)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await
                .map_err($map_error)?;
                tx.commit().await.map_err($map_error)?;
                let entries = entries
                    .into_iter()
                    .map(|(seq, key_sha256, event, at_ms)| {
                        Ok($crate::store::FeedEntry {
                            seq,
                            key_sha256,
                            event: $crate::store::FeedEvent::from_column(&event)?,
                            at_ms,
                        })
                    })
                    .collect::<Result<Vec<_>, $crate::store::StoreError>>()?;
                Ok($crate::store::FeedPage {
                    head,
                    pruned_through,
                    entries,
                })
            })
        }

        fn prune_feed(&self, before_ms: i64) -> $crate::store::StoreFuture<'_, u64> {
            Box::pin(async move {
                let mut tx = self.pool.begin().await.map_err($map_error)?;
                // Lock the head first, as revokers do, so a prune never interleaves with one.
                let (_, pruned): (i64, i64) = sqlx::query_as(
                    "UPDATE revocation_feed_head SET seq = seq WHERE id = 1 RETURNING seq, pruned_through",
                )
                .fetch_one(&mut *tx)
                .await
                .map_err($map_error)?;
                let through: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(seq) FROM revocation_feed WHERE at_ms < $1",
                )
                .bind(before_ms)
                .fetch_one(&mut *tx)
                .await
                .map_err($map_error)?;
                let Some(through) = through.filter(|through| *through > pruned) else {
                    tx.rollback().await.map_err($map_error)?;
                    return Ok(0);
                };
                let deleted = sqlx::query("DELETE FROM revocation_feed WHERE seq <= $1")
                    .bind(through)
                    .execute(&mut *tx)
                    .await
                    .map_err($map_error)?
                    .rows_affected();
                sqlx::query("UPDATE revocation_feed_head SET pruned_through = $1 WHERE id = 1")
                    .bind(through)
                    .execute(&mut *tx)
                    .await
                    .map_err($map_error)?;
                tx.commit().await.map_err($map_error)?;
                Ok(deleted)
            })
        }

        fn feed_signal(&self) -> tokio::sync::watch::Receiver<i64> {
            self.feed.subscribe()
        }

        fn ping(&self) -> $crate::store::StoreFuture<'_, ()> {
            Box::pin(async move {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err($map_error)?;
                Ok(())
            })
        }

        fn close(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
            Box::pin(self.pool.close())
        }
    };
}

// Before the backends: they expand its `usage_queries!`.
#[macro_use]
pub mod usage;
pub mod metered;
pub mod postgres;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::rate_limits::RateLimit;
pub use usage::{DayUsage, KeyUsage, UsageOutcome, UsagePruned};

/// One row of `api_keys`. Holds the key's hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub key_sha256: String,
    pub name: String,
    pub user_id: String,
    pub org_id: Option<String>,
    /// The key's `scopes` claim, in the order it was issued with.
    pub scopes: Vec<String>,
    /// In ascending `per_seconds`; empty without limits.
    pub rate_limits: Vec<RateLimit>,
    /// Unix seconds, like the other times.
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The latest use the edges reported.
    pub last_used_at: Option<i64>,
    /// The key's last 4 characters ([`crate::keys::hint`]); `None` for keys stored before hints.
    pub hint: Option<String>,
}

/// What happened to a key, as the feed tells the edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedEvent {
    Revoked,
    /// Its rate limits changed: an edge forgets the answer it kept and asks again.
    LimitsChanged,
}

impl FeedEvent {
    /// The word in the `event` column and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::LimitsChanged => "limits_changed",
        }
    }

    fn from_column(text: &str) -> Result<Self, StoreError> {
        match text {
            "revoked" => Ok(Self::Revoked),
            "limits_changed" => Ok(Self::LimitsChanged),
            other => Err(StoreError::Unreadable(format!(
                "revocation_feed.event holds \"{}\", not revoked or limits_changed",
                keygate::text::Escaped(other)
            ))),
        }
    }
}

/// One event in the feed: the key's hash, what happened and when (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub seq: i64,
    pub key_sha256: String,
    pub event: FeedEvent,
    pub at_ms: i64,
}

/// Tells this process's long polls that `seq` committed (unless a newer one already did).
#[doc(hidden)]
pub fn signal_feed(feed: &tokio::sync::watch::Sender<i64>, seq: i64) {
    feed.send_if_modified(|known| {
        let newer = seq > *known;
        if newer {
            *known = seq;
        }
        newer
    });
}

/// A page of the feed, with its bounds when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    /// The newest seq.
    pub head: i64,
    /// Entries up to this seq are gone (retention); a cursor below it must resync.
    pub pruned_through: i64,
    pub entries: Vec<FeedEntry>,
}

/// The outcome of setting a key's rate limits (for a key the caller may see).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsChange {
    /// Set, with a `limits_changed` entry in the feed.
    Changed(KeyRecord),
    /// The key already had exactly these limits: nothing was written.
    Unchanged(KeyRecord),
    /// A revoked key's limits do not change.
    Revoked(KeyRecord),
}

/// The outcome of a revocation: the record as it now is, and whether this call revoked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub record: KeyRecord,
    pub newly: bool,
}

/// A row as stored: scopes are one space-separated `TEXT` column (scope tokens never contain a
/// space), and rate limits one JSON `TEXT` column, which both databases store and compare alike.
#[doc(hidden)]
#[derive(sqlx::FromRow)]
pub struct KeyRow {
    id: String,
    key_sha256: String,
    name: String,
    user_id: String,
    org_id: Option<String>,
    scopes: String,
    rate_limits: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
    hint: Option<String>,
}

impl KeyRow {
    /// The record, or an error naming the key when its stored rate limits cannot be read (a
    /// key whose limits are unknown is refused rather than served without them).
    pub fn into_record(self) -> Result<KeyRecord, StoreError> {
        let rate_limits = crate::rate_limits::from_column(&self.rate_limits)
            .map_err(|e| StoreError::Unreadable(format!("key {}: {e}", self.id)))?;
        Ok(KeyRecord {
            id: self.id,
            key_sha256: self.key_sha256,
            name: self.name,
            user_id: self.user_id,
            org_id: self.org_id,
            scopes: self.scopes.split_whitespace().map(str::to_owned).collect(),
            rate_limits,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            last_used_at: self.last_used_at,
            hint: self.hint,
        })
    }
}

#[doc(hidden)]
pub fn join_scopes(scopes: &[String]) -> String {
    scopes.join(" ")
}

/// One condition on a key's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition<'a> {
    UserIs(&'a str),
    OrgIs(&'a str),
    /// A personal key: one without an org.
    NoOrg,
}

/// Which keys a listing or a revocation may see: all of its conditions hold (none: every key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFilter<'a>(pub Vec<Condition<'a>>);

impl<'a> KeyFilter<'a> {
    pub fn all() -> Self {
        Self(Vec::new())
    }

    pub fn and(mut self, condition: Condition<'a>) -> Self {
        self.0.push(condition);
        self
    }

    /// ` WHERE …` (empty without conditions) with placeholders from `$first`, and the values
    /// to bind in order. Only fixed fragments go into the text; values are always bound.
    pub fn to_sql(&self, first: usize) -> (String, Vec<&'a str>) {
        let mut clauses = Vec::with_capacity(self.0.len());
        let mut values = Vec::new();
        for condition in &self.0 {
            match condition {
                Condition::UserIs(user) => {
                    values.push(*user);
                    clauses.push(format!("user_id = ${}", first + values.len() - 1));
                }
                Condition::OrgIs(org) => {
                    values.push(*org);
                    clauses.push(format!("org_id = ${}", first + values.len() - 1));
                }
                Condition::NoOrg => clauses.push("org_id IS NULL".to_owned()),
            }
        }
        if clauses.is_empty() {
            (String::new(), values)
        } else {
            (format!(" WHERE {}", clauses.join(" AND ")), values)
        }
    }
}

/// Where a listing starts: the key it follows, in (`created_at`, `id`) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub id: String,
}

impl Cursor {
    pub fn of(record: &KeyRecord) -> Self {
        Self {
            created_at: record.created_at,
            id: record.id.clone(),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub after: Option<Cursor>,
    pub limit: u32,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("a key with this id or hash already exists")]
    Duplicate,
    #[error(
        "unsupported database URL (expected sqlite://PATH, sqlite::memory:, a file path, or \
         postgres://USER:PASSWORD@HOST:PORT/DATABASE)"
    )]
    UnsupportedUrl,
    /// The database cannot be reached, or refuses work for now; worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value this version cannot read (written by another tool, or damaged).
    #[error("stored value unreadable: {0}")]
    Unreadable(String),
}

impl StoreError {
    /// The database is there but busy or unreachable right now; worth retrying.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Migrate(sqlx::migrate::MigrateError::Execute(e)) => is_connection_error(e),
            _ => false,
        }
    }

    /// A short, stable name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::UnsupportedUrl => "configuration",
            Self::Unavailable(_) => "unavailable",
            Self::Database(_) | Self::Unreadable(_) => "query",
            Self::Migrate(_) => "migration",
        }
    }
}

/// Errors every backend treats as "no database right now": no connection could be had, or the
/// one we had broke.
pub fn is_connection_error(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
    )
}

/// For inserts: a unique violation is a duplicate id or hash, anything else as `map`.
#[doc(hidden)]
pub fn insert_error(map: fn(sqlx::Error) -> StoreError) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| match e.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::Duplicate,
        _ => map(e),
    }
}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Boxed futures keep the trait object-safe, so the backend is chosen at run time from the URL.
pub trait KeyStore: Send + Sync {
    /// Inserts a new record; [`StoreError::Duplicate`] if its id or hash is taken.
    fn insert<'a>(&'a self, key: &'a KeyRecord) -> StoreFuture<'a, ()>;
    /// The keys that `filter` lets through, oldest first (ties broken by id): at most
    /// `page.limit` of them, after `page.after`.
    fn list<'a>(
        &'a self,
        filter: &'a KeyFilter<'a>,
        page: &'a Page,
    ) -> StoreFuture<'a, Vec<KeyRecord>>;
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<KeyRecord>>;
    fn find_by_hash<'a>(&'a self, key_sha256: &'a str) -> StoreFuture<'a, Option<KeyRecord>>;
    /// Sets `revoked_at` to `at` unless already set (the first time stays), and returns the
    /// record; `None` for an id that is unknown or outside `filter` (the two are
    /// indistinguishable on purpose).
    fn revoke<'a>(
        &'a self,
        id: &'a str,
        filter: &'a KeyFilter<'a>,
        at: i64,
    ) -> StoreFuture<'a, Option<Revocation>>;
    /// Sets the rate limits of an active key that `filter` lets through, with a
    /// `limits_changed` entry in the feed in the same transaction (when they really change);
    /// `None` for an id that is unknown or outside `filter`.
    fn set_rate_limits<'a>(
        &'a self,
        id: &'a str,
        filter: &'a KeyFilter<'a>,
        limits: &'a [RateLimit],
    ) -> StoreFuture<'a, Option<LimitsChange>>;
    /// Applies a usage report once: a batch id seen before changes nothing
    /// ([`UsageOutcome::Duplicate`]).
    fn record_usage<'a>(
        &'a self,
        batch: &'a crate::usage::UsageBatch,
        received_ms: i64,
    ) -> StoreFuture<'a, UsageOutcome>;
    /// A key that `filter` lets through and its usage from `since_day` on (days with counts
    /// only, oldest first); `None` for an id that is unknown or outside `filter`.
    fn usage<'a>(
        &'a self,
        id: &'a str,
        filter: &'a KeyFilter<'a>,
        since_day: i64,
    ) -> StoreFuture<'a, Option<KeyUsage>>;
    /// Deletes usage rows of days before `days_before` (retention), and the ids of batches whose
    /// newest day is before `batches_before` (they can no longer be retried).
    fn prune_usage(&self, days_before: i64, batches_before: i64) -> StoreFuture<'_, UsagePruned>;
    /// The feed after seq `after`: at most `limit` entries, oldest first, and the feed's bounds.
    fn feed<'a>(&'a self, after: i64, limit: u32) -> StoreFuture<'a, FeedPage>;
    /// Deletes the feed entries made before `before_ms` (retention); returns how many.
    fn prune_feed(&self, before_ms: i64) -> StoreFuture<'_, u64>;
    /// Changes when a revocation may have committed (the newest seq this process knows of): a
    /// revocation made here, or on Postgres anywhere (`LISTEN`).
    fn feed_signal(&self) -> tokio::sync::watch::Receiver<i64>;
    /// A trivial query: succeeds when the database answers.
    fn ping(&self) -> StoreFuture<'_, ()>;
    /// Waits for open connections to finish (SQLite checkpoints its WAL here).
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// How long a request waits for a database connection before it is answered 503.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// Connection settings common to both backends.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    pub acquire_timeout: Duration,
    /// Postgres only (SQLite uses a few connections to one file).
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            max_connections: 8,
        }
    }
}

/// Whether a `--database` value names a PostgreSQL server.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Opens the store named by `--database` / `DATABASE_URL` and brings its schema up to date.
pub async fn open(url: &str) -> Result<Arc<dyn KeyStore>, StoreError> {
    open_with(url, StoreOptions::default()).await
}

pub async fn open_with(url: &str, options: StoreOptions) -> Result<Arc<dyn KeyStore>, StoreError> {
    if is_postgres_url(url) {
        Ok(Arc::new(postgres::PostgresStore::open(url, options).await?))
    } else {
        Ok(Arc::new(sqlite::SqliteStore::open(url, options).await?))
    }
}

/// The migrations in `migrations/`, for both backends.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_render_bound_placeholders() {
        assert_eq!(KeyFilter::all().to_sql(1), (String::new(), vec![]));
        let filter = KeyFilter::all()
            .and(Condition::UserIs("u"))
            .and(Condition::NoOrg);
        assert_eq!(
            filter.to_sql(1),
            (
                " WHERE user_id = $1 AND org_id IS NULL".to_owned(),
                vec!["u"]
            )
        );
        let filter = KeyFilter::all()
            .and(Condition::OrgIs("o"))
            .and(Condition::UserIs("u"));
        assert_eq!(
            filter.to_sql(3),
            (
                " WHERE org_id = $3 AND user_id = $4".to_owned(),
                vec!["o", "u"]
            )
        );
    }

    #[test]
    fn scopes_round_trip_through_the_column() {
        let scopes = vec!["keys:write".to_owned(), "read".to_owned()];
        let row = KeyRow {
            id: "i".into(),
            key_sha256: "h".into(),
            name: "n".into(),
            user_id: "u".into(),
            org_id: None,
            scopes: join_scopes(&scopes),
            rate_limits: "[]".into(),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            hint: None,
        };
        assert_eq!(row.into_record().unwrap().scopes, scopes);
        assert_eq!(join_scopes(&[]), "");
    }

    #[test]
    fn unreadable_rate_limits_fail_the_read_naming_the_key() {
        let row = KeyRow {
            id: "k1".into(),
            key_sha256: "h".into(),
            name: "n".into(),
            user_id: "u".into(),
            org_id: None,
            scopes: String::new(),
            rate_limits: r#"[{"requests":0,"per_seconds":60}]"#.into(),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            hint: None,
        };
        let error = row.into_record().unwrap_err();
        assert_eq!(error.kind(), "query");
        assert!(error.to_string().contains("key k1: rate_limits"), "{error}");
        assert!(FeedEvent::from_column("limits_changed").is_ok());
        assert!(FeedEvent::from_column("deleted").is_err());
    }

    #[test]
    fn postgres_urls_are_recognised() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://u@h/db"));
        assert!(!is_postgres_url("sqlite://k.db"));
        assert!(!is_postgres_url("k.db"));
    }
}
