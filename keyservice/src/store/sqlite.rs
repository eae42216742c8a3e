//! SQLite backend: connection options and pool sizing live here; the queries are shared with
//! Postgres (see `shared_queries!`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::{KeyStore, MIGRATOR, StoreError, StoreOptions, is_connection_error};

/// The CLI and the server may hold the same file at once; writers wait this long for the lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SqliteStore {
    pool: SqlitePool,
    /// The newest seq revoked through this process: wakes the feed's long polls. Revocations
    /// by another process on the same file (the CLI) are found by their periodic re-read.
    feed: tokio::sync::watch::Sender<i64>,
}

impl SqliteStore {
    /// Accepts `sqlite://PATH`, `sqlite::memory:` and a bare file path; creates the file if
    /// missing and applies migrations.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let in_memory = is_in_memory(url);
        let connect = connect_options(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // A locked file is waited for (busy timeout) inside the connection; give it that long.
        let pool_options =
            SqlitePoolOptions::new().acquire_timeout(options.acquire_timeout.max(BUSY_TIMEOUT));
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
        let pool = pool_options
            .connect_with(connect)
            .await
            .map_err(map_error)?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            feed: tokio::sync::watch::Sender::new(0),
        })
    }
}

fn connect_options(url: &str) -> Result<SqliteConnectOptions, StoreError> {
    if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url).map_err(|_| StoreError::UnsupportedUrl)
    } else if url.contains("://") || url.is_empty() {
        Err(StoreError::UnsupportedUrl)
    } else {
        Ok(SqliteConnectOptions::new().filename(url))
    }
}

fn is_in_memory(url: &str) -> bool {
    url == "sqlite::memory:" || url == "sqlite://:memory:" || url.contains("mode=memory")
}

/// Unreachable, or locked by another writer for longer than the busy timeout: retry later.
fn map_error(e: sqlx::Error) -> StoreError {
    let busy = e
        .as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| matches!(code.as_ref(), "5" | "6" | "261" | "517"));
    if busy || is_connection_error(&e) {
        StoreError::Unavailable(e)
    } else {
        StoreError::Database(e)
    }
}

impl KeyStore for SqliteStore {
    shared_queries!(map_error, "");
    usage_queries!(map_error);
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
            connect_options("mysql://db/keys"),
            Err(StoreError::UnsupportedUrl)
        ));
        assert!(matches!(
            connect_options(""),
            Err(StoreError::UnsupportedUrl)
        ));
    }
}
