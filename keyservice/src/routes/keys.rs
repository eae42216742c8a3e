//! Management API: issue, list and revoke keys. Behind the admin token (see `auth`).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, post};
use axum::{Json, Router, middleware};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::require_admin;
use crate::error::AppError;
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::keys::{KeyView, NewKey, expiry_note};
use crate::time::{now, rfc3339};

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/keys", post(create).get(list))
        .route("/v1/keys/{id}", delete(revoke))
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    user_id: String,
    #[serde(default)]
    org_id: Option<String>,
    name: String,
    #[serde(default)]
    expires_in_seconds: Option<i64>,
}

#[derive(Serialize)]
struct CreatedKey {
    id: String,
    key: String,
    name: String,
    user_id: String,
    org_id: Option<String>,
    created_at: String,
    expires_at: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<impl IntoResponse, AppError> {
    let new = NewKey {
        user_id: body.user_id,
        org_id: body.org_id,
        name: body.name,
        expires_in_seconds: body.expires_in_seconds,
    };
    let (record, key) = state.signer.issue(new, now())?;
    state.store.insert(&record).await?;
    tracing::info!(id = %record.id, user_id = %record.user_id, "issued key");
    let created = CreatedKey {
        id: record.id,
        key,
        name: record.name,
        user_id: record.user_id,
        org_id: record.org_id,
        created_at: rfc3339(record.created_at),
        expires_at: record.expires_at.map(rfc3339),
    };
    // The only response that ever carries a key: keep it out of caches.
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(created),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    user_id: Option<String>,
}

#[derive(Serialize)]
struct KeyList {
    keys: Vec<KeyView>,
}

async fn list(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<KeyList>, AppError> {
    let records = state.store.list(query.user_id.as_deref()).await?;
    Ok(Json(KeyList {
        keys: records.iter().map(KeyView::from).collect(),
    }))
}

#[derive(Serialize)]
struct Revoked {
    id: String,
    revoked_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

async fn revoke(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
) -> Result<Json<Revoked>, AppError> {
    let record = state
        .store
        .revoke(&id, now())
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no key with id {id}")))?;
    // RETURNING always yields the stored time; the fallback only satisfies the type.
    let revoked_at = record.revoked_at.unwrap_or_default();
    tracing::info!(id = %record.id, "revoked key");
    Ok(Json(Revoked {
        id: record.id,
        revoked_at: rfc3339(revoked_at),
        note: record.expires_at.map(expiry_note),
    }))
}
