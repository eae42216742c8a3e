//! The question the edge filter asks for keys it has verified: is this one revoked?
//! Unauthenticated: it is asked by hash, and the answer reveals nothing without the key.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::AppError;
use crate::extract::PathParam;
use crate::keys::is_sha256_hex;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/revocations/{sha256}", get(status))
}

/// 200 active, 410 revoked, 404 unknown. Expiry is not considered: the filter checks `exp`.
/// `Cache-Control` tells the edge how long it may keep the answer; "unknown" is never kept, so a
/// key imported a moment later works at once.
async fn status(
    State(state): State<AppState>,
    PathParam(sha256): PathParam<String>,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<Value>), AppError> {
    if !is_sha256_hex(&sha256) {
        return Err(AppError::InvalidHash);
    }
    let policy = state.cache_policy;
    let (status, word, cache_control) = match state.store.find_by_hash(&sha256).await? {
        Some(record) if record.revoked_at.is_some() => (
            StatusCode::GONE,
            "revoked",
            format!("max-age={}", policy.revoked_seconds),
        ),
        Some(_) => (
            StatusCode::OK,
            "active",
            format!("max-age={}", policy.active_seconds),
        ),
        None => (StatusCode::NOT_FOUND, "unknown", "no-store".to_owned()),
    };
    Ok((
        status,
        [(header::CACHE_CONTROL, cache_control)],
        Json(json!({ "status": word })),
    ))
}
