//! keyservice: issues keygate API keys and answers the edge filter's revocation questions.
//!
//! [`app`] builds the whole HTTP API from an [`AppState`], so tests drive it with `oneshot`
//! and no socket; `main.rs` only parses the command line and dispatches.

pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod extract;
pub mod keys;
pub mod routes;
pub mod server;
pub mod store;
pub mod time;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::AdminToken;
use crate::keys::Signer;
use crate::store::KeyStore;

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Shared by all handlers; cheap to clone. Holds no secret in plain form except inside the
/// signing key, and has no `Debug` so it cannot end up in a log line.
#[derive(Clone)]
pub struct AppState {
    store: Arc<dyn KeyStore>,
    signer: Arc<Signer>,
    admin_token: Arc<AdminToken>,
    cache_policy: CachePolicy,
}

/// How long the edge may cache revocation answers (`Cache-Control: max-age`). A revoked key stays
/// revoked, so that answer can be kept much longer than "active".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    pub active_seconds: u64,
    pub revoked_seconds: u64,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            active_seconds: 30,
            revoked_seconds: 86_400,
        }
    }
}

impl AppState {
    pub fn new(store: Arc<dyn KeyStore>, jwt_secret: &[u8], admin_token: &str) -> Self {
        Self {
            store,
            signer: Arc::new(Signer::new(jwt_secret)),
            admin_token: Arc::new(AdminToken::new(admin_token)),
            cache_policy: CachePolicy::default(),
        }
    }

    pub fn with_cache_policy(mut self, cache_policy: CachePolicy) -> Self {
        self.cache_policy = cache_policy;
        self
    }
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(routes::keys::router(state.clone()))
        .merge(routes::revocations::router())
        .route("/healthz", get(routes::healthz))
        .fallback(routes::not_found)
        // Must follow the routes: it applies to those registered before it.
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Method, path and status only: no headers, so no Authorization value, reach the log.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(state)
}
