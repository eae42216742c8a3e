//! `/v1/authorize` (any method, any subpath): the edge filter's decision as a service, for
//! proxies that cannot run wasm: Envoy's HTTP `ext_authz` and nginx's `auth_request`.
//!
//! - Envoy (`http_service.path_prefix: /v1/authorize`) sends the original method and
//!   `/v1/authorize<original path>`: the subpath is the path the rules see.
//! - nginx (`proxy_pass …/v1/authorize` in the `auth_request` location) calls the exact path
//!   and says what it authorizes in `X-Original-URI` and `X-Original-Method`. Those headers
//!   are read only on the exact path, so through Envoy a client cannot pick the path the rules
//!   see.
//!
//! 200 allows, with the identity headers to forward (and `x-envoy-auth-headers-to-remove` for
//! the ones the upstream must not carry); anything else is the filter's reply, status, headers
//! and body, for the proxy to pass on.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use crate::AppState;
use crate::authorizer::{AuthorizeRequest, Verdict};
use crate::error::AppError;
use crate::routes::revocations::lookup;

pub const PREFIX: &str = "/v1/authorize";
/// Envoy's HTTP ext_authz removes the headers named here from the upstream request.
pub const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(PREFIX, any(authorize))
        .route("/v1/authorize/", any(authorize))
        .route("/v1/authorize/{*rest}", any(authorize))
}

async fn authorize(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    let Some(authorizer) = state.authorizer.clone() else {
        return Err(AppError::NotFound(
            "/v1/authorize is not enabled: start keyservice with --authorize-config".into(),
        ));
    };
    let headers = request.headers();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or(PREFIX, |pq| pq.as_str());
    let rest = path_and_query.strip_prefix(PREFIX).unwrap_or_default();
    let (path, method) = if rest.is_empty() || rest.starts_with('?') {
        // nginx auth_request: the exact path, the original request in headers.
        let path = headers
            .get("x-original-uri")
            .map_or_else(|| "/".as_bytes().to_vec(), |v| v.as_bytes().to_vec());
        let method = headers.get("x-original-method").map_or_else(
            || request.method().as_str().as_bytes().to_vec(),
            |v| v.as_bytes().to_vec(),
        );
        (path, method)
    } else {
        (
            rest.as_bytes().to_vec(),
            request.method().as_str().as_bytes().to_vec(),
        )
    };
    let decision_request = AuthorizeRequest {
        headers,
        path: &path,
        method: &method,
    };
    let now = u64::try_from(crate::time::now()).unwrap_or_default();
    let store_state = state.clone();
    let verdict = authorizer
        .authorize(&decision_request, now, |sha256| async move {
            lookup(&store_state, &sha256).await
        })
        .await;
    state.metrics.authorize_decision(verdict.outcome);
    if verdict.status != 200 {
        tracing::info!(
            outcome = verdict.outcome,
            status = verdict.status,
            "authorize: denied"
        );
    }
    Ok(respond(verdict))
}

fn respond(verdict: Verdict) -> Response {
    let status = StatusCode::from_u16(verdict.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Body::from(verdict.body)).into_response();
    let out = response.headers_mut();
    let mut remove = verdict.remove;
    for (name, value) in verdict.headers {
        // The filter validated names and values (a claim a header cannot carry exactly makes the
        // token invalid), so every one fits in practice. One that does not is removed rather
        // than left out, so that a client's own copy cannot take its place.
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            (Ok(name), Ok(value)) => {
                out.insert(name, value);
            }
            _ => {
                tracing::error!(header = %name, "identity header value cannot be sent; removing it");
                remove.push(name);
            }
        }
    }
    if !remove.is_empty()
        && let Ok(value) = HeaderValue::from_str(&remove.join(","))
    {
        out.insert(HEADERS_TO_REMOVE, value);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
