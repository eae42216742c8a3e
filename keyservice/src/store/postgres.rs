//! PostgreSQL backend, for several keyservice replicas on one database: every replica reads and
//! writes the same rows, so a key issued or revoked through one is seen by all at once (no
//! replica caches anything). The queries are shared with SQLite (see `shared_queries!`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{KeyStore, MIGRATOR, StoreError, StoreOptions, is_connection_error};

/// How long a pooled connection may stay idle, and live at all: servers and proxies in between
/// drop old connections, so they are replaced before that happens.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_LIFETIME: Duration = Duration::from_secs(1800);

/// The channel revoking transactions notify on commit (`pg_notify`), with the new seq.
pub const FEED_CHANNEL: &str = "keyservice_revocations";

pub struct PostgresStore {
    pool: PgPool,
    /// The newest seq known to be revoked, through any replica: set by this process's
    /// revocations and by `LISTEN`, and wakes the feed's long polls.
    feed: tokio::sync::watch::Sender<i64>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PostgresStore {
    /// Connects to `postgres://…` (libpq-style URL), then applies the migrations. Concurrent
    /// replicas starting at once are safe: sqlx serialises migrations with an advisory lock.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url).map_err(|_| StoreError::UnsupportedUrl)?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .idle_timeout(IDLE_TIMEOUT)
            .max_lifetime(MAX_LIFETIME)
            // A connection that broke while idle (the server restarted) is found out and
            // replaced here, so the first request after an outage succeeds.
            .test_before_acquire(true)
            .connect_with(connect)
            .await
            .map_err(map_error)?;
        MIGRATOR.run(&pool).await?;
        let feed = tokio::sync::watch::Sender::new(0);
        let listener = tokio::spawn(listen(pool.clone(), feed.clone()));
        Ok(Self {
            pool,
            feed,
            listener,
        })
    }
}

/// Follows the other replicas' revocations: `LISTEN` on [`FEED_CHANNEL`], each notification's seq
/// into `feed`. sqlx reconnects a lost listener (notifications sent meanwhile are missed; the long
/// polls' periodic re-read covers them); a listener that cannot connect retries every few
/// seconds.
async fn listen(pool: PgPool, feed: tokio::sync::watch::Sender<i64>) {
    loop {
        match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if let Err(error) = listener.listen(FEED_CHANNEL).await {
                    tracing::warn!(%error, "cannot LISTEN for revocations; retrying");
                } else {
                    loop {
                        match listener.recv().await {
                            Ok(notification) => {
                                if let Ok(seq) = notification.payload().parse::<i64>() {
                                    feed.send_if_modified(|known| {
                                        let newer = seq > *known;
                                        if newer {
                                            *known = seq;
                                        }
                                        newer
                                    });
                                }
                            }
                            Err(error) => {
                                tracing::warn!(%error, "revocation notifications lost; reconnecting");
                                break;
                            }
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot connect to LISTEN for revocations; retrying")
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// SQLSTATE classes that mean "no database for now" rather than "this query is wrong":
/// 08 connection exception, 53 insufficient resources (too many connections, disk full),
/// 57P01–57P05 the server is shutting down, restarting, or not accepting connections yet.
fn is_unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
}

fn map_error(e: sqlx::Error) -> StoreError {
    let unavailable_db = e
        .as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| is_unavailable_sqlstate(&code));
    // A connection closed under us mid-protocol also surfaces as a protocol error.
    if unavailable_db || is_connection_error(&e) || matches!(e, sqlx::Error::Protocol(_)) {
        StoreError::Unavailable(e)
    } else {
        StoreError::Database(e)
    }
}

impl KeyStore for PostgresStore {
    shared_queries!(map_error, "SELECT pg_notify('keyservice_revocations', $1)");
    usage_queries!(map_error);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_that_mean_unavailable() {
        for code in ["08006", "08001", "57P01", "57P03", "53300"] {
            assert!(is_unavailable_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "42601", "22001"] {
            assert!(!is_unavailable_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn protocol_and_io_errors_are_unavailable() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(map_error(io).is_unavailable());
        assert!(map_error(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(!map_error(sqlx::Error::RowNotFound).is_unavailable());
    }
}
