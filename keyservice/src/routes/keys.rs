//! Management API: issue, list and revoke keys, and change their rate limits. The caller is the
//! admin (bearer token) or a user keyservice verified itself (an API key with `keys:write`, or a
//! signed-in session; see `auth`); a user sees only the keys its org and role allow, and anything
//! else is "not found".

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::{Caller, UserCaller};
use crate::error::AppError;
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::keys::{KeyView, NewKey, check_identity, expiry_note, is_key_id, normalize_scopes};
use crate::pagination;
use crate::rate_limits::{self, RateLimit};
use crate::store::{Condition, LimitsChange};
use crate::time::{now, rfc3339};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/keys", post(create).get(list))
        .route("/v1/keys/{id}", delete(revoke).patch(set_limits))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    /// Required with the admin token; a user's keys are always its own.
    #[serde(default)]
    user_id: Option<String>,
    /// `Some(None)` is an explicit `null`.
    #[serde(default, deserialize_with = "explicit_null")]
    org_id: Option<Option<String>>,
    name: String,
    #[serde(default)]
    expires_in_seconds: Option<i64>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    rate_limits: Vec<RateLimit>,
}

/// Tells an absent field (`None`) from `null` (`Some(None)`).
fn explicit_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[derive(Serialize)]
struct CreatedKey {
    id: String,
    key: String,
    name: String,
    user_id: String,
    org_id: Option<String>,
    scopes: Vec<String>,
    rate_limits: Vec<RateLimit>,
    created_at: String,
    expires_at: Option<String>,
    /// Always `null` here: a key is used after it is issued. Kept so that every key object has
    /// the same fields.
    last_used_at: Option<String>,
    hint: Option<String>,
}

/// Whose key it is: the admin names anyone; a user gets a key for itself and its org,
/// and may repeat those in the body but not name others.
fn owner(
    caller: &Caller,
    user_id: Option<String>,
    org_id: Option<Option<String>>,
) -> Result<(String, Option<String>), AppError> {
    match caller {
        Caller::Admin => {
            let user_id = user_id.ok_or_else(|| {
                AppError::InvalidBody(
                    "missing field `user_id` (required with the admin token)".into(),
                )
            })?;
            Ok((user_id, org_id.flatten()))
        }
        Caller::User(UserCaller {
            user_id: me,
            org_id: my_org,
            ..
        }) => {
            if user_id.as_ref().is_some_and(|user| user != me) {
                return Err(AppError::Forbidden(
                    "user_id must be the caller's own: keys are issued to the calling user".into(),
                ));
            }
            if org_id.as_ref().is_some_and(|org| org != my_org) {
                return Err(AppError::Forbidden(
                    "org_id must be the caller's own org (or absent)".into(),
                ));
            }
            Ok((me.clone(), my_org.clone()))
        }
    }
}

/// A key's own rate limits replace the per-key default the edge applies (a provider's
/// `rate_limits.key`): a quota the operator grants, so only the admin token sets them. A user
/// caller could otherwise lift its own keys out of the operator's default.
fn operator_only(caller: &Caller) -> Result<(), AppError> {
    match caller {
        Caller::Admin => Ok(()),
        Caller::User(_) => Err(AppError::Forbidden(
            "rate limits are set with the admin token: a key's own limits replace the edge's per-key default".into(),
        )),
    }
}

async fn create(
    caller: Caller,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<impl IntoResponse, AppError> {
    let (user_id, org_id) = owner(&caller, body.user_id, body.org_id)?;
    if !body.rate_limits.is_empty() {
        operator_only(&caller)?;
    }
    let scopes = normalize_scopes(body.scopes)?;
    let missing: Vec<&str> = scopes
        .iter()
        .filter(|scope| !caller.holds(scope))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(AppError::InsufficientScope(missing.join(" ")));
    }
    let new = NewKey {
        user_id,
        org_id,
        name: body.name,
        expires_in_seconds: body.expires_in_seconds,
        scopes,
        rate_limits: body.rate_limits,
    };
    let (record, key) = state.signer.issue(new, now())?;
    state.store.insert(&record).await?;
    state.metrics.keys_issued.inc();
    tracing::info!(id = %record.id, user_id = %record.user_id, by = %caller.describe(), "issued key");
    let created = CreatedKey {
        id: record.id,
        key,
        name: record.name,
        user_id: record.user_id,
        org_id: record.org_id,
        scopes: record.scopes,
        rate_limits: record.rate_limits,
        created_at: rfc3339(record.created_at),
        expires_at: record.expires_at.map(rfc3339),
        last_used_at: record.last_used_at.map(rfc3339),
        hint: record.hint,
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
    org_id: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

#[derive(Serialize)]
struct KeyList {
    keys: Vec<KeyView>,
    /// The `after` of the next page; `null` on the last one.
    next: Option<String>,
}

/// The caller's visible keys, narrowed by the query (for a user, a query naming another
/// org or user just finds nothing), a page at a time. Query values are checked before any of
/// them reaches the database, so both backends answer alike.
async fn list(
    caller: Caller,
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<KeyList>, AppError> {
    let mut filter = caller.visible_keys();
    if let Some(user_id) = &query.user_id {
        check_identity("user_id", user_id)?;
        filter = filter.and(Condition::UserIs(user_id));
    }
    if let Some(org_id) = &query.org_id {
        check_identity("org_id", org_id)?;
        filter = filter.and(Condition::OrgIs(org_id));
    }
    let mut page = pagination::page(query.limit, query.after.as_deref())
        .map_err(|e| AppError::InvalidQuery(e.to_string()))?;
    let limit = page.limit;
    // One more than asked: whether it comes back says if another page follows.
    page.limit = limit.saturating_add(1);
    let mut records = state.store.list(&filter, &page).await?;
    let next = pagination::next_cursor(&mut records, limit);
    Ok(Json(KeyList {
        keys: records.iter().map(KeyView::from).collect(),
        next,
    }))
}

#[derive(Serialize)]
struct Revoked {
    id: String,
    revoked_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// Revokes one of the caller's visible keys; any other id, existing or not, is the same 404.
async fn revoke(
    caller: Caller,
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
) -> Result<Json<Revoked>, AppError> {
    // What cannot be an id is not looked for, and not echoed: it may be a key.
    if !is_key_id(&id) {
        return Err(AppError::NotFound("no such key".into()));
    }
    let at = now();
    let filter = caller.visible_keys();
    let revocation = state
        .store
        .revoke(&id, &filter, at)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no key with id {id}")))?;
    if revocation.newly {
        state.metrics.keys_revoked.inc();
    }
    let record = revocation.record;
    // A revoked record always has the time; the fallback only satisfies the type.
    let revoked_at = record.revoked_at.unwrap_or(at);
    tracing::info!(id = %record.id, by = %caller.describe(), "revoked key");
    Ok(Json(Revoked {
        id: record.id,
        revoked_at: rfc3339(revoked_at),
        note: record.expires_at.map(expiry_note),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetLimits {
    /// Required: `[]` clears the limits, so a body that forgot the field changes nothing.
    rate_limits: Vec<RateLimit>,
}

/// Replaces the rate limits of one of the caller's visible keys (`PATCH /v1/keys/{id}`). Any
/// other id, existing or not, is the same 404 as for a revocation; a revoked key is 409, its
/// limits no longer matter. A real change is a `limits_changed` event in the feed, in the same
/// transaction, so edges that follow the feed drop the answer they kept.
async fn set_limits(
    caller: Caller,
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<SetLimits>,
) -> Result<Json<KeyView>, AppError> {
    operator_only(&caller)?;
    if !is_key_id(&id) {
        return Err(AppError::NotFound("no such key".into()));
    }
    let limits = rate_limits::normalize(body.rate_limits)?;
    let filter = caller.visible_keys();
    let change = state
        .store
        .set_rate_limits(&id, &filter, &limits)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no key with id {id}")))?;
    let record = match change {
        LimitsChange::Changed(record) => {
            tracing::info!(
                id = %record.id,
                limits = %rate_limits::summary(&record.rate_limits),
                by = %caller.describe(),
                "rate limits changed"
            );
            record
        }
        LimitsChange::Unchanged(record) => record,
        LimitsChange::Revoked(record) => {
            return Err(AppError::Conflict(format!(
                "key {} is revoked: its rate limits can no longer change",
                record.id
            )));
        }
    };
    Ok(Json(KeyView::from(&record)))
}
