//! HTTP routes, one module per area; the catch-alls here keep every answer JSON.

pub mod authorize;
pub mod dashboard;
pub mod feed;
pub mod keys;
pub mod me;
pub mod revocations;
pub mod usage;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::AppError;

/// Liveness: the process answers. Never touches the database.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers a trivial query; 503 otherwise.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    // Whatever went wrong, the database cannot serve us: not ready.
    state.store.ping().await.map_err(AppError::Unavailable)?;
    Ok(Json(json!({ "status": "ready" })))
}

pub async fn not_found() -> AppError {
    AppError::NotFound("no such route".into())
}

pub async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}
