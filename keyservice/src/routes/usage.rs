//! Usage: the edges' reports (`POST /v1/usage`, unauthenticated like the revocation routes, for
//! the internal network only) and a key's usage per day (`GET /v1/keys/{id}/usage`, for whoever
//! may act on the key).

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::AppState;
use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::keys::is_key_id;
use crate::store::UsageOutcome;
use crate::time::{now_ms, today};
use crate::usage::{MAX_REPORT_BYTES, UsageReport, UsageView};

/// Days of usage shown by default, and at most.
const DEFAULT_DAYS: u32 = 30;
const MAX_DAYS: u32 = 366;

pub fn router() -> Router<AppState> {
    Router::new()
        // A report of a thousand entries is larger than the other routes' bodies may be.
        .route(
            "/v1/usage",
            post(report).layer(DefaultBodyLimit::max(MAX_REPORT_BYTES)),
        )
        .route("/v1/keys/{id}/usage", get(show))
}

/// 204 once the report is applied, or when its batch was applied before (a retry); 400 and
/// nothing written when any part of it is wrong; 503 when the database is unavailable (the edge
/// keeps the batch and sends it again).
async fn report(
    State(state): State<AppState>,
    body: Result<JsonBody<UsageReport>, AppError>,
) -> Result<StatusCode, AppError> {
    let result = apply(&state, body).await;
    let counted = match &result {
        Ok(UsageOutcome::Applied { .. }) => "applied",
        Ok(UsageOutcome::Duplicate) => "duplicate",
        Err(e) if e.status().is_client_error() => "rejected",
        Err(_) => "error",
    };
    state.metrics.usage_report(counted);
    result.map(|_| StatusCode::NO_CONTENT)
}

async fn apply(
    state: &AppState,
    body: Result<JsonBody<UsageReport>, AppError>,
) -> Result<UsageOutcome, AppError> {
    let JsonBody(report) = body.map_err(|e| match e {
        AppError::PayloadTooLarge(_) => AppError::PayloadTooLarge(MAX_REPORT_BYTES / 1024),
        e => e,
    })?;
    let batch = report.check(today())?;
    let outcome = state.store.record_usage(&batch, now_ms()).await?;
    match outcome {
        UsageOutcome::Applied {
            applied,
            unknown_entries,
        } => {
            state.metrics.usage_requests(applied);
            state.metrics.usage_unknown_keys.inc_by(unknown_entries);
            state.metrics.usage_dropped.inc_by(batch.dropped);
            tracing::debug!(
                batch = %batch.batch,
                keys = batch.keys.len(),
                unknown_entries,
                dropped = batch.dropped,
                "usage report applied"
            );
        }
        UsageOutcome::Duplicate => {
            tracing::debug!(batch = %batch.batch, "usage report applied before; ignored");
        }
    }
    Ok(outcome)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    days: Option<u32>,
}

/// The last `days` days (today included) of one of the caller's visible keys; any other id,
/// existing or not, is the same 404 as for a revocation.
async fn show(
    caller: Caller,
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
    QueryParams(query): QueryParams<UsageQuery>,
) -> Result<Json<UsageView>, AppError> {
    if !is_key_id(&id) {
        return Err(AppError::NotFound("no such key".into()));
    }
    let days = query.days.unwrap_or(DEFAULT_DAYS);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(AppError::InvalidQuery(format!(
            "days must be from 1 to {MAX_DAYS}"
        )));
    }
    let since = today() - i64::from(days - 1);
    let filter = caller.visible_keys();
    let usage = state
        .store
        .usage(&id, &filter, since)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no key with id {id}")))?;
    Ok(Json(UsageView::from(&usage)))
}
