//! SQLite backend: connection options and pool sizing live here; the queries are portable.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::{KeyRecord, KeyStore, StoreError, StoreFuture};

/// The CLI and the server may hold the same file at once; writers wait this long for the lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Accepts `sqlite://PATH`, `sqlite::memory:` and a bare file path; creates the file if
    /// missing and applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let in_memory = is_in_memory(url);
        let options = connect_options(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool_options = SqlitePoolOptions::new().acquire_timeout(BUSY_TIMEOUT);
        // An in-memory database lives only while a connection to it is open: keep exactly one.
        let pool_options = if in_memory {
            pool_options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            pool_options.max_connections(4)
        };
        let pool = pool_options.connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }
}

fn connect_options(url: &str) -> Result<SqliteConnectOptions, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(SqliteConnectOptions::from_str(url)?)
    } else if url.contains("://") || url.is_empty() {
        Err(StoreError::UnsupportedUrl)
    } else {
        Ok(SqliteConnectOptions::new().filename(url))
    }
}

fn is_in_memory(url: &str) -> bool {
    url == "sqlite::memory:" || url == "sqlite://:memory:" || url.contains("mode=memory")
}

fn map_insert_error(e: sqlx::Error) -> StoreError {
    match e.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::Duplicate,
        _ => StoreError::Database(e),
    }
}

impl KeyStore for SqliteStore {
    fn insert<'a>(&'a self, key: &'a KeyRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO api_keys \
                 (id, key_sha256, name, user_id, org_id, created_at, expires_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&key.id)
            .bind(&key.key_sha256)
            .bind(&key.name)
            .bind(&key.user_id)
            .bind(&key.org_id)
            .bind(key.created_at)
            .bind(key.expires_at)
            .bind(key.revoked_at)
            .execute(&self.pool)
            .await
            .map_err(map_insert_error)?;
            Ok(())
        })
    }

    fn list<'a>(&'a self, user_id: Option<&'a str>) -> StoreFuture<'a, Vec<KeyRecord>> {
        Box::pin(async move {
            // Two statements rather than `$1 IS NULL OR ...`, which Postgres cannot type.
            let query = match user_id {
                Some(user_id) => sqlx::query_as(concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM api_keys WHERE user_id = $1 ORDER BY created_at, id"
                ))
                .bind(user_id),
                None => sqlx::query_as(concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM api_keys ORDER BY created_at, id"
                )),
            };
            Ok(query.fetch_all(&self.pool).await?)
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(async move {
            let sql = concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1");
            Ok(sqlx::query_as(sql)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
        })
    }

    fn find_by_hash<'a>(&'a self, key_sha256: &'a str) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(async move {
            let sql = concat!(
                "SELECT ",
                key_columns!(),
                " FROM api_keys WHERE key_sha256 = $1"
            );
            Ok(sqlx::query_as(sql)
                .bind(key_sha256)
                .fetch_optional(&self.pool)
                .await?)
        })
    }

    fn revoke<'a>(&'a self, id: &'a str, at: i64) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(async move {
            // COALESCE keeps the first revocation time, so revoking again is a no-op.
            let sql = concat!(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING ",
                key_columns!()
            );
            Ok(sqlx::query_as(sql)
                .bind(at)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
        })
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.pool.close())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_url_forms() {
        let file = connect_options("sqlite://keys.db").unwrap();
        assert_eq!(file.get_filename(), std::path::Path::new("keys.db"));
        assert!(connect_options("sqlite::memory:").is_ok());
        assert!(is_in_memory("sqlite::memory:"));
        assert!(!is_in_memory("sqlite://memory.db"));
        let bare = connect_options("/tmp/k.db").unwrap();
        assert_eq!(bare.get_filename(), std::path::Path::new("/tmp/k.db"));
        assert!(matches!(
            connect_options("postgres://db/keys"),
            Err(StoreError::UnsupportedUrl)
        ));
    }
}
