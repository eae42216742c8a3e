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
use crate::store::StoreError;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/revocations/{sha256}", get(status))
}

/// What the store says about a digest, as the revocation protocol names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Active,
    Revoked,
    Unknown,
}

impl Lookup {
    pub fn word(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Unknown => "unknown",
        }
    }
}

/// Looks a digest up and counts the result in `keyservice_revocation_lookups_total`.
/// Expiry is not considered: the filter checks `exp`.
pub async fn lookup(state: &AppState, sha256: &str) -> Result<Lookup, StoreError> {
    let result = state
        .store
        .find_by_hash(sha256)
        .await
        .map(|record| match record {
            Some(record) if record.revoked_at.is_some() => Lookup::Revoked,
            Some(_) => Lookup::Active,
            None => Lookup::Unknown,
        });
    state
        .metrics
        .lookup(result.as_ref().map_or("error", |lookup| lookup.word()));
    result
}

/// 200 active, 410 revoked, 404 unknown; 503 when the database is unavailable (the filter then
/// applies its failure mode). `Cache-Control` tells the edge how long it may keep the answer;
/// "unknown" is never kept, so a key imported a moment later works at once.
async fn status(
    State(state): State<AppState>,
    PathParam(sha256): PathParam<String>,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<Value>), AppError> {
    if !is_sha256_hex(&sha256) {
        return Err(AppError::InvalidHash);
    }
    let policy = state.cache_policy;
    let lookup = lookup(&state, &sha256).await?;
    let (status, cache_control) = match lookup {
        Lookup::Revoked => (
            StatusCode::GONE,
            format!("max-age={}", policy.revoked_seconds),
        ),
        Lookup::Active => (StatusCode::OK, format!("max-age={}", policy.active_seconds)),
        Lookup::Unknown => (StatusCode::NOT_FOUND, "no-store".to_owned()),
    };
    Ok((
        status,
        [(header::CACHE_CONTROL, cache_control)],
        Json(json!({ "status": lookup.word() })),
    ))
}
