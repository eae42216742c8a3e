//! dev-idp — DEVELOPMENT ONLY. A Clerk-shaped identity provider for keygate's `make run` rig:
//! a sign-in form that signs anyone in as any configured user (no password), an RS256 session
//! token in the `__session` cookie, and the JWKS that verifies it.
//!
//! [`app`] is the whole service, so tests drive it with `tower::ServiceExt::oneshot`.

pub mod args;
pub mod cookie;
pub mod origin;
pub mod pages;
pub mod redirect;
pub mod respond;
pub mod sign_in;
pub mod sign_out;
pub mod signing;
pub mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::signing::{SigningKey, TokenSettings};
use crate::users::Directory;

/// What the handlers share: who may sign in, what tokens say, and the key that signs them.
pub struct AppState {
    pub directory: Directory,
    pub tokens: TokenSettings,
    pub key: SigningKey,
}

/// The routes (see README.md).
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/sign-in", get(sign_in::page).post(sign_in::submit))
        .route("/sign-out", get(sign_out::page).post(sign_out::submit))
        .route("/.well-known/jwks.json", get(jwks))
        .route(pages::STYLESHEET_PATH, get(stylesheet))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .with_state(state)
}

/// The public key. `no-cache`: a restart brings a new key, so a verifier should revalidate.
async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    let mut response = axum::Json(state.key.jwks().clone()).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn stylesheet() -> Response {
    respond::stylesheet(pages::STYLESHEET)
}

async fn healthz() -> Response {
    respond::text(StatusCode::OK, "ok")
}

async fn not_found() -> Response {
    respond::text(StatusCode::NOT_FOUND, "not found")
}
