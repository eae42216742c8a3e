//! HTTP routes, one module per area; the catch-alls here keep every answer JSON.

pub mod keys;
pub mod revocations;

use axum::Json;
use serde_json::{Value, json};

use crate::error::AppError;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn not_found() -> AppError {
    AppError::NotFound("no such route".into())
}

pub async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}
