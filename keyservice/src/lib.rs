//! keyservice: issues keygate API keys and answers the edge filter's revocation questions.
//!
//! [`app`] builds the whole HTTP API from an [`AppState`], so tests drive it with `oneshot`
//! and no socket; `main.rs` only parses the command line and dispatches.

pub mod args;
pub mod auth;
pub mod authorizer;
pub mod commands;
pub mod connections;
pub mod error;
pub mod extract;
pub mod keys;
pub mod metrics;
pub mod observe;
pub mod offered_scopes;
pub mod pagination;
pub mod rate_limits;
pub mod routes;
pub mod serve;
pub mod store;
pub mod time;
pub mod usage;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::get;

use crate::auth::AdminToken;
use crate::auth::csrf::AllowedOrigins;
use crate::auth::session::Sessions;
use crate::authorizer::Authorizer;
use crate::keys::Signer;
use crate::metrics::Metrics;
use crate::offered_scopes::OfferedScopes;
pub use crate::routes::dashboard::DashboardLinks;
pub use crate::routes::feed::FeedPolicy;
use crate::store::KeyStore;
use crate::store::metered::MeteredStore;

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Shared by all handlers; cheap to clone. Holds no secret in plain form except inside the
/// signing key, and has no `Debug` so it cannot end up in a log line.
#[derive(Clone)]
pub struct AppState {
    store: Arc<dyn KeyStore>,
    signer: Arc<Signer>,
    /// `None`: the management routes take only users.
    admin_token: Option<Arc<AdminToken>>,
    /// `--api-key-callers`: an API key with `keys:write` manages its user's (org's) keys.
    api_key_callers: bool,
    /// `Some` with `--session-issuer`: signed-in users of the identity provider.
    sessions: Option<Arc<Sessions>>,
    /// What signed-in users may grant, and the page offers.
    offered_scopes: Arc<OfferedScopes>,
    /// Origins besides the request's own that may make cookie-authenticated writes.
    allowed_origins: Arc<AllowedOrigins>,
    /// `Some` with `--authorize-config`.
    authorizer: Option<Arc<Authorizer>>,
    /// Where the keys page sends users to sign in and out.
    dashboard_links: Arc<DashboardLinks>,
    cache_policy: CachePolicy,
    feed_policy: FeedPolicy,
    /// Becomes `true` when the server stops: long polls answer at once.
    stopping: tokio::sync::watch::Receiver<bool>,
    metrics: Arc<Metrics>,
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
            active_seconds: 86_400,
            revoked_seconds: 86_400,
        }
    }
}

impl AppState {
    /// A state with no way into the management routes yet: add the admin token
    /// ([`Self::with_admin_token`]) and/or the edge's identity ([`Self::with_edge_identity`]).
    pub fn new(store: Arc<dyn KeyStore>, jwt_secret: &[u8]) -> Self {
        let metrics = Arc::new(Metrics::new());
        Self {
            store: Arc::new(MeteredStore::new(store, metrics.clone())),
            signer: Arc::new(Signer::new(jwt_secret)),
            admin_token: None,
            api_key_callers: false,
            sessions: None,
            offered_scopes: Arc::new(OfferedScopes::default()),
            allowed_origins: Arc::new(AllowedOrigins::default()),
            authorizer: None,
            dashboard_links: Arc::new(DashboardLinks::default()),
            cache_policy: CachePolicy::default(),
            feed_policy: FeedPolicy::default(),
            stopping: tokio::sync::watch::Sender::new(false).subscribe(),
            metrics,
        }
    }

    pub fn with_admin_token(mut self, admin_token: &str) -> Self {
        self.admin_token = Some(Arc::new(AdminToken::new(admin_token)));
        self
    }

    /// API keys holding `keys:write` manage their own (org's) keys, verified here.
    pub fn with_api_key_callers(mut self) -> Self {
        self.api_key_callers = true;
        self
    }

    /// Signed-in users of the identity provider, verified here against its JWKS.
    pub fn with_sessions(mut self, sessions: Sessions) -> Self {
        self.sessions = Some(Arc::new(sessions));
        self
    }

    pub fn with_offered_scopes(mut self, scopes: OfferedScopes) -> Self {
        self.offered_scopes = Arc::new(scopes);
        self
    }

    pub fn offered_scopes(&self) -> &OfferedScopes {
        &self.offered_scopes
    }

    pub fn with_allowed_origins(mut self, origins: AllowedOrigins) -> Self {
        self.allowed_origins = Arc::new(origins);
        self
    }

    pub fn with_authorizer(mut self, authorizer: Authorizer) -> Self {
        self.authorizer = Some(Arc::new(authorizer));
        self
    }

    pub fn with_dashboard_links(mut self, links: DashboardLinks) -> Self {
        self.dashboard_links = Arc::new(links);
        self
    }

    pub fn dashboard_links(&self) -> &DashboardLinks {
        &self.dashboard_links
    }

    pub fn with_cache_policy(mut self, cache_policy: CachePolicy) -> Self {
        self.cache_policy = cache_policy;
        self
    }

    pub fn with_feed_policy(mut self, feed_policy: FeedPolicy) -> Self {
        self.feed_policy = feed_policy;
        self
    }

    /// Long polls end when `stopping` becomes `true`.
    pub fn with_stopping(mut self, stopping: tokio::sync::watch::Receiver<bool>) -> Self {
        self.stopping = stopping;
        self
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

pub fn app(state: AppState) -> Router {
    let router = Router::new()
        .merge(routes::keys::router())
        .merge(routes::me::router())
        .merge(routes::revocations::router())
        .merge(routes::feed::router())
        .merge(routes::usage::router())
        .merge(routes::authorize::router())
        .merge(routes::dashboard::router())
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(metrics::render))
        .fallback(routes::not_found)
        // Must follow the routes: it applies to those registered before it.
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Per route, so it sees the matched route template for its label.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            observe::record_latency,
        ));
    observe::with_request_ids(router).with_state(state)
}
