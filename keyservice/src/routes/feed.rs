//! The revocation feed the edges follow: `GET /v1/revocations?after=SEQ&wait_seconds=S`. The
//! events after a cursor, in commit order (the store makes sure a cursor never passes one that
//! commits later), each as the key's SHA-256, what happened (`revoked`, or `limits_changed`: the
//! key's rate limits changed, so an edge must ask about it again) and when; with none yet, the
//! request waits up to `wait_seconds` for one (a long poll), woken when an event commits (in
//! this process, or on Postgres in any replica through `LISTEN`), and re-reading the database
//! every few seconds in case a wake-up was missed (an event written by another process on
//! SQLite).
//!
//! Unauthenticated, like the question by digest: it names keys by hash only, a revoked key is
//! useless, and a change of limits says nothing about what they are.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::AppError;
use crate::extract::QueryParams;
use crate::store::FeedPage;

/// How many events one answer holds at most, and by default.
const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 500;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/revocations", get(feed))
}

/// The feed's settings (`keyservice serve` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedPolicy {
    /// The longest `wait_seconds` a request may ask for.
    pub max_wait: Duration,
    /// Entries older than this are deleted; a cursor before them must resync.
    pub retention: Duration,
    /// While a long poll waits, the database is read again this often: a wake-up can be missed
    /// (an event written by another process on the SQLite file; a reconnecting Postgres
    /// listener).
    pub recheck: Duration,
}

impl Default for FeedPolicy {
    fn default() -> Self {
        Self {
            max_wait: Duration::from_secs(30),
            retention: Duration::from_secs(7 * 86_400),
            recheck: Duration::from_secs(2),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    after: Option<String>,
    wait_seconds: Option<String>,
    limit: Option<String>,
}

#[derive(Debug, Serialize)]
struct FeedAnswer {
    events: Vec<FeedItem>,
    /// The cursor to ask after next time.
    next: i64,
    /// More events are waiting: ask again at once.
    more: bool,
    /// The cursor is not one this feed can continue from (older than its retention, or from
    /// another database): forget every "active" answer kept, and follow from `next`.
    resync: bool,
}

#[derive(Debug, Serialize)]
struct FeedItem {
    seq: i64,
    sha256: String,
    /// `revoked` or `limits_changed`.
    event: &'static str,
    at_ms: i64,
}

/// Digits only, as the cursor and the counts are written; anything else is 400, before the
/// database is asked.
fn digits(name: &str, value: Option<&str>, max: u64) -> Result<Option<u64>, AppError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value.parse::<u64>() {
        Ok(number)
            if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) && number <= max =>
        {
            Ok(Some(number))
        }
        _ => Err(AppError::InvalidQuery(format!(
            "`{name}` must be a whole number from 0 to {max}"
        ))),
    }
}

async fn feed(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<FeedQuery>,
) -> Result<([(header::HeaderName, &'static str); 1], Json<FeedAnswer>), AppError> {
    let policy = state.feed_policy;
    let after = digits("after", query.after.as_deref(), i64::MAX as u64)?;
    let wait = digits(
        "wait_seconds",
        query.wait_seconds.as_deref(),
        policy.max_wait.as_secs(),
    )?
    .map_or(Duration::ZERO, Duration::from_secs);
    let limit = match digits("limit", query.limit.as_deref(), u64::from(MAX_LIMIT))? {
        Some(0) => {
            return Err(AppError::InvalidQuery(format!(
                "`limit` must be from 1 to {MAX_LIMIT}"
            )));
        }
        Some(limit) => u32::try_from(limit).unwrap_or(MAX_LIMIT),
        None => DEFAULT_LIMIT,
    };
    let no_store = [(header::CACHE_CONTROL, "no-store")];
    // Subscribed before the first read, so an event committing in between still wakes us.
    let mut signal = state.store.feed_signal();
    let Some(after) = after.map(|after| after as i64) else {
        // A new follower starts at the head: what came before is what its callouts ask about.
        let page = state.store.feed(i64::MAX, 1).await?;
        state.metrics.feed_read("start");
        return Ok((no_store, Json(answer(&page, page.head, 0, false))));
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let page = state.store.feed(after, limit).await?;
        if after > page.head || after < page.pruned_through {
            state.metrics.feed_read("resync");
            return Ok((no_store, Json(answer(&page, page.head, limit, true))));
        }
        let now = tokio::time::Instant::now();
        if !page.entries.is_empty() || now >= deadline {
            state.metrics.feed_read(if page.entries.is_empty() {
                "empty"
            } else {
                "events"
            });
            return Ok((no_store, Json(answer(&page, after, limit, false))));
        }
        let pause = (deadline - now).min(policy.recheck);
        let mut stopping = state.stopping.clone();
        if *stopping.borrow() {
            state.metrics.feed_read("empty");
            return Ok((no_store, Json(answer(&page, after, limit, false))));
        }
        // Woken by a commit, the server stopping, or the re-read being due; a closed channel
        // (store gone) just re-reads.
        tokio::select! {
            _ = tokio::time::timeout(pause, signal.changed()) => {}
            _ = stopping.changed() => {}
        }
    }
}

fn answer(page: &FeedPage, after: i64, limit: u32, resync: bool) -> FeedAnswer {
    let events: Vec<FeedItem> = if resync {
        Vec::new()
    } else {
        page.entries
            .iter()
            .map(|entry| FeedItem {
                seq: entry.seq,
                sha256: entry.key_sha256.clone(),
                event: entry.event.as_str(),
                at_ms: entry.at_ms,
            })
            .collect()
    };
    let next = events.last().map_or(after, |last| last.seq);
    FeedAnswer {
        more: !resync && events.len() as u64 >= u64::from(limit) && next < page.head,
        events,
        next: if resync { page.head } else { next },
        resync,
    }
}
