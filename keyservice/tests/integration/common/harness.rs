//! The in-process harness: keyservice's `app(state)` on a fresh database of either backend,
//! called with `oneshot`, and a second connection to look at what was really written.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use keyservice::store::{KeyStore, StoreOptions};
use keyservice::{AppState, app};
use serde_json::Value;
use sqlx::{PgPool, SqlitePool};
use tempfile::TempDir;
use tower::ServiceExt;

use super::{ADMIN, SECRET, pg};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A second, independent connection for looking at what was really written.
pub enum Raw {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

pub struct Harness {
    pub backend: Backend,
    pub app: Router,
    pub store: Arc<dyn KeyStore>,
    pub raw: Raw,
    /// The SQLite file's directory.
    pub dir: Option<TempDir>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

/// A fresh database on `backend`: a SQLite file in a tempdir, or a new database in the shared
/// PostgreSQL cluster.
pub async fn database(backend: Backend) -> (String, Option<TempDir>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("keys.db").display());
            (url, Some(dir))
        }
        Backend::Postgres => (pg::shared().create_database().await, None),
    }
}

impl Harness {
    /// The admin token only, default cache policy.
    pub async fn new(backend: Backend) -> Harness {
        Self::with(backend, |state| state).await
    }

    /// `configure` adds to the state (edge identity, authorizer, …) after the admin token.
    pub async fn with(backend: Backend, configure: impl FnOnce(AppState) -> AppState) -> Harness {
        let (url, dir) = database(backend).await;
        let mut h = Self::on(&url, StoreOptions::default(), configure).await;
        h.backend = backend;
        h.dir = dir;
        h
    }

    /// On a database that already exists (or a SQLite file to create).
    pub async fn on(
        url: &str,
        options: StoreOptions,
        configure: impl FnOnce(AppState) -> AppState,
    ) -> Harness {
        let store = keyservice::store::open_with(url, options).await.unwrap();
        let state =
            configure(AppState::new(store.clone(), SECRET.as_bytes()).with_admin_token(ADMIN));
        let (backend, raw) = if keyservice::store::is_postgres_url(url) {
            (
                Backend::Postgres,
                Raw::Postgres(PgPool::connect(url).await.unwrap()),
            )
        } else {
            (
                Backend::Sqlite,
                Raw::Sqlite(SqlitePool::connect(url).await.unwrap()),
            )
        };
        Harness {
            backend,
            app: app(state),
            store,
            raw,
            dir: None,
        }
    }

    /// Every answer with a body is JSON (a 204 has none).
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let reply = self.send_any(request).await;
        if reply.status == StatusCode::NO_CONTENT {
            assert_eq!(reply.text, "", "a 204 with a body");
            return reply;
        }
        assert_eq!(
            reply.headers[header::CONTENT_TYPE],
            "application/json",
            "{} {}",
            reply.status,
            reply.text
        );
        reply
    }

    /// Like [`Self::send`], for answers that need not be JSON (`/metrics`, `/v1/authorize`).
    pub async fn send_any(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let json = if headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v == "application/json")
        {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text:?}"))
        } else {
            Value::Null
        };
        Reply {
            status,
            headers,
            json,
            text,
        }
    }

    pub async fn admin(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        self.as_caller(
            method,
            uri,
            &[("authorization", &format!("Bearer {ADMIN}"))],
            body,
        )
        .await
    }

    /// A request with these headers (and a JSON body if any).
    pub async fn as_caller(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let body = match body {
            Some(v) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(builder.body(body).unwrap()).await
    }

    pub async fn create(&self, body: Value) -> Reply {
        self.admin("POST", "/v1/keys", Some(body)).await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        self.send(request).await
    }

    pub async fn row_count(&self) -> i64 {
        on_raw!(&self.raw, pool => sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(pool)
            .await
            .unwrap())
    }

    pub async fn metrics(&self) -> String {
        self.send_any(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .text
    }
}

/// The value of one sample in Prometheus text, 0 when absent.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}
