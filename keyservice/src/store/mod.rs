//! Where key records live. Handlers and commands see only [`KeyStore`]; the SQL is portable
//! (`$n` placeholders, `BIGINT` seconds, `RETURNING`) so a Postgres backend can share it, and
//! everything SQLite-specific stays in [`sqlite`].

// Shared by every backend so that they list, revoke and read the same columns.
macro_rules! key_columns {
    () => {
        "id, key_sha256, name, user_id, org_id, created_at, expires_at, revoked_at"
    };
}

pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use thiserror::Error;

/// One row of `api_keys`. Holds the key's hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyRecord {
    pub id: String,
    pub key_sha256: String,
    pub name: String,
    pub user_id: String,
    pub org_id: Option<String>,
    /// Unix seconds, like the other times.
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("a key with this id or hash already exists")]
    Duplicate,
    #[error("unsupported database URL (expected sqlite://PATH, sqlite::memory: or a file path)")]
    UnsupportedUrl,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// The database is there but busy or unreachable right now; worth retrying.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
            )
        )
    }
}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Boxed futures keep the trait object-safe, so the backend is chosen at run time from the URL.
pub trait KeyStore: Send + Sync {
    /// Inserts a new record; [`StoreError::Duplicate`] if its id or hash is taken.
    fn insert<'a>(&'a self, key: &'a KeyRecord) -> StoreFuture<'a, ()>;
    /// All keys, or one user's, oldest first (ties broken by id).
    fn list<'a>(&'a self, user_id: Option<&'a str>) -> StoreFuture<'a, Vec<KeyRecord>>;
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<KeyRecord>>;
    fn find_by_hash<'a>(&'a self, key_sha256: &'a str) -> StoreFuture<'a, Option<KeyRecord>>;
    /// Sets `revoked_at` unless already set, and returns the record; `None` for an unknown id.
    fn revoke<'a>(&'a self, id: &'a str, at: i64) -> StoreFuture<'a, Option<KeyRecord>>;
    /// Waits for open connections to finish (SQLite checkpoints its WAL here).
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Opens the store named by `--database` / `DATABASE_URL` and brings its schema up to date.
pub async fn open(url: &str) -> Result<Arc<dyn KeyStore>, StoreError> {
    Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
}
