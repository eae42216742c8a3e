//! Shared by keyservice's test binaries: the in-process harness on either backend, real
//! keyservice processes, and temporary PostgreSQL clusters ([`pg`]).
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod envoy;
pub mod pg;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use keyservice::store::{KeyRecord, KeyStore, StoreOptions};
use keyservice::{AppState, app};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, SqlitePool};
use tempfile::TempDir;
use tower::ServiceExt;

pub const SECRET: &str = "api-test-secret-0123456789abcdef";
pub const ADMIN: &str = "admin-test-token";

pub fn sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A record as the store holds it, written straight in (by an older version, another tool, or a
/// test that needs many): named `key ID`, hashed from its id, personal, no scopes.
pub fn record(id: &str, user_id: &str, created_at: i64) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        key_sha256: sha256(id),
        name: format!("key {id}"),
        user_id: user_id.into(),
        org_id: None,
        scopes: Vec::new(),
        created_at,
        expires_at: None,
        revoked_at: None,
    }
}

// ---------------------------------------------------------------------------------------------
// In-process harness

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

/// Defines each listed `async fn NAME(backend: Backend)` as two tests, `sqlite::NAME` and
/// `postgres::NAME`: one suite, both backends.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

/// Runs the same sqlx expression on whichever pool `raw` holds.
#[macro_export]
macro_rules! on_raw {
    ($raw:expr, $pool:ident => $body:expr) => {
        match $raw {
            $crate::common::Raw::Sqlite($pool) => $body,
            $crate::common::Raw::Postgres($pool) => $body,
        }
    };
}

pub struct Harness {
    pub backend: Backend,
    pub app: Router,
    pub state: AppState,
    pub store: Arc<dyn KeyStore>,
    pub raw: Raw,
    pub url: String,
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
            app: app(state.clone()),
            state,
            store,
            raw,
            url: url.to_owned(),
            dir: None,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let reply = self.send_any(request).await;
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

// ---------------------------------------------------------------------------------------------
// Real processes

/// `target/debug/<name>`, or `$VAR`; missing fails the test (never skips it).
pub fn bin(var: &str, name: &str) -> PathBuf {
    let path = match std::env::var_os(var) {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => repo_root().join("target/debug").join(name),
    };
    assert!(
        path.is_file(),
        "{} does not exist (set {var}, or run `make test`, which builds it; `make tools build` \
         builds everything the keyservice tests need)",
        path.display()
    );
    path
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("keyservice/ is inside the repository")
        .to_owned()
}

/// A child process that is killed on drop, with its stderr in a file.
pub struct Proc {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server that prints `listening on http://ADDR` first on stdout.
pub fn spawn_listening(mut command: Command, log: PathBuf) -> Proc {
    let stderr = fs::File::create(&log).unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    let mut proc = Proc {
        child,
        addr: String::new(),
        log,
    };
    let line = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => line,
        Err(e) => panic!(
            "{command:?} printed no `listening on` line ({e}); exit {:?}\n{}",
            proc.child.try_wait(),
            proc.log_text()
        ),
    };
    proc.addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    proc
}

/// `keyservice serve` on a free port with `database`, the test secret and admin token, and
/// `extra` arguments.
pub fn start_keyservice(database: &str, dir: &Path, name: &str, extra: &[&str]) -> Proc {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyservice"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("JWT_SECRET", SECRET)
        .env("KEYSERVICE_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "info");
    spawn_listening(command, dir.join(format!("{name}.log")))
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Polls `f` until it returns `Some`, at most `timeout`.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
