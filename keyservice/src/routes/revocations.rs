//! The question the edge filter asks for keys it has verified: is this one revoked? And, for an
//! active key with rate limits, what they are (`keygate-rate-limit: 100/60, 1000/86400`).
//! Unauthenticated: it is asked by hash, and the answer reveals nothing without the key.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::AppError;
use crate::extract::PathParam;
use crate::keys::is_sha256_hex;
use crate::rate_limits::{self, RateLimit};
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
    lookup_with_limits(state, sha256)
        .await
        .map(|(lookup, _)| lookup)
}

/// [`lookup`], with the rate limits of an active key.
async fn lookup_with_limits(
    state: &AppState,
    sha256: &str,
) -> Result<(Lookup, Vec<RateLimit>), StoreError> {
    let result = state
        .store
        .find_by_hash(sha256)
        .await
        .map(|record| match record {
            Some(record) if record.revoked_at.is_some() => (Lookup::Revoked, Vec::new()),
            Some(record) => (Lookup::Active, record.rate_limits),
            None => (Lookup::Unknown, Vec::new()),
        });
    state
        .metrics
        .lookup(result.as_ref().map_or("error", |(lookup, _)| lookup.word()));
    result
}

/// 200 active, 410 revoked, 404 unknown; 503 when the database is unavailable (the filter then
/// applies its failure mode). `Cache-Control` tells the edge how long it may keep the answer;
/// "unknown" is never kept, so a key imported a moment later works at once. An active key's
/// rate limits ride along in `keygate-rate-limit`, kept as long as the answer (a change of
/// limits reaches edges that follow the feed as a `limits_changed` event).
async fn status(
    State(state): State<AppState>,
    PathParam(sha256): PathParam<String>,
) -> Result<(StatusCode, HeaderMap, Json<Value>), AppError> {
    if !is_sha256_hex(&sha256) {
        return Err(AppError::InvalidHash);
    }
    let policy = state.cache_policy;
    let (lookup, limits) = lookup_with_limits(&state, &sha256).await?;
    let (status, cache_control) = match lookup {
        Lookup::Revoked => (
            StatusCode::GONE,
            format!("max-age={}", policy.revoked_seconds),
        ),
        Lookup::Active => (StatusCode::OK, format!("max-age={}", policy.active_seconds)),
        Lookup::Unknown => (StatusCode::NOT_FOUND, "no-store".to_owned()),
    };
    let mut headers = HeaderMap::new();
    // Digits and punctuation only: both always make a header value.
    if let Ok(value) = HeaderValue::from_str(&cache_control) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    if let Some(value) =
        rate_limits::header_value(&limits).and_then(|value| HeaderValue::from_str(&value).ok())
    {
        headers.insert(HeaderName::from_static(rate_limits::HEADER), value);
    }
    Ok((status, headers, Json(json!({ "status": lookup.word() }))))
}
