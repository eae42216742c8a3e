//! Shared by keyservice's integration tests: the in-process harness on either backend
//! ([`harness`]), `keyservice serve` as a process ([`serve`]), and temporary PostgreSQL clusters
//! ([`pg`]). Envoy, processes, polling and HTTP come from `testkit`.

// The macros first: `harness` uses `on_raw!`, and a macro is visible after its definition.
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

mod harness;
pub mod pg;
mod serve;

pub use harness::{Backend, Harness, Raw, Reply, database, sample};
pub use serve::start_keyservice;

/// The `Authorization` value of a key the admin issues for `user` in `org` with `keys:write`
/// (and `scopes`): how a user calls the management routes (`--api-key-callers`).
pub async fn key_caller(h: &Harness, user: &str, org: Option<&str>, scopes: &[&str]) -> String {
    let mut all = vec!["keys:write"];
    all.extend_from_slice(scopes);
    let r = h
        .create(serde_json::json!({"user_id": user, "org_id": org, "name": format!("{user}-manager"), "scopes": all}))
        .await;
    assert_eq!(r.status, axum::http::StatusCode::CREATED, "{}", r.text);
    format!("Bearer {}", r.json["key"].as_str().unwrap())
}

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use keyservice::store::KeyRecord;
use serde_json::Value;
use testkit::token::sha256_hex;

pub const SECRET: &str = "api-test-secret-0123456789abcdef";
pub const ADMIN: &str = "admin-test-token";

/// The claims of a key keyservice issued, its HS256 signature checked with `secret` (and no
/// claim required).
pub fn verified_claims(key: &str, secret: &str) -> Value {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(
        key,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims
}

/// A record as the store holds it, written straight in (by an older version, another tool, or a
/// test that needs many): named `key ID`, hashed from its id, personal, no scopes.
pub fn record(id: &str, user_id: &str, created_at: i64) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        key_sha256: sha256_hex(id),
        name: format!("key {id}"),
        user_id: user_id.into(),
        org_id: None,
        scopes: Vec::new(),
        rate_limits: Vec::new(),
        created_at,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        hint: None,
    }
}
