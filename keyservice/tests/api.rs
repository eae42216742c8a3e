#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The HTTP API through `app(state).oneshot(..)` against a real SQLite file in a tempdir.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use keyservice::store::{KeyRecord, KeyStore};
use keyservice::{AppState, app};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use tempfile::TempDir;
use tower::ServiceExt;

const SECRET: &str = "api-test-secret";
const ADMIN: &str = "admin-test-token";
const TEN_YEARS: i64 = 315_360_000;

struct Harness {
    dir: TempDir,
    app: Router,
    store: Arc<dyn KeyStore>,
    /// A second, independent connection for looking at what was really written.
    db: SqlitePool,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    let store = keyservice::store::open(&url).await.unwrap();
    let app = app(AppState::new(store.clone(), SECRET.as_bytes(), ADMIN));
    let db = SqlitePool::connect(&url).await.unwrap();
    Harness {
        dir,
        app,
        store,
        db,
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
    text: String,
}

impl Harness {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text:?}"));
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "application/json",
            "{status} {text}"
        );
        Reply {
            status,
            headers,
            json,
            text,
        }
    }

    async fn admin(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
        let body = match body {
            Some(v) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(builder.body(body).unwrap()).await
    }

    async fn create(&self, body: Value) -> Reply {
        self.admin("POST", "/v1/keys", Some(body)).await
    }

    async fn get(&self, uri: &str) -> Reply {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        self.send(request).await
    }

    async fn row_count(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.db)
            .await
            .unwrap()
    }
}

fn sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode(key: &str) -> Value {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(
        key,
        &DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims
}

fn record(id: &str, user_id: &str, created_at: i64) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        key_sha256: sha256(id),
        name: format!("key {id}"),
        user_id: user_id.into(),
        org_id: None,
        created_at,
        expires_at: None,
        revoked_at: None,
    }
}

#[tokio::test]
async fn issue_returns_a_key_that_verifies_with_the_contract_claims() {
    let h = harness().await;
    let r = h
        .create(json!({"user_id": "user_1", "org_id": "org_1", "name": "ci", "expires_in_seconds": 3600}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    let body = r.json.as_object().unwrap();
    let mut fields: Vec<&str> = body.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "created_at",
            "expires_at",
            "id",
            "key",
            "name",
            "org_id",
            "user_id"
        ]
    );
    let key = body["key"].as_str().unwrap();
    let id = body["id"].as_str().unwrap();
    let claims = decode(key);
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(
        claims,
        json!({"user_id": "user_1", "org_id": "org_1", "iat": iat, "jti": id, "exp": iat + 3600})
    );
    assert_eq!(body["name"], "ci");
    assert_eq!(body["user_id"], "user_1");
    assert_eq!(body["org_id"], "org_1");
    assert_eq!(body["created_at"], keyservice::time::rfc3339(iat));
    assert_eq!(body["expires_at"], keyservice::time::rfc3339(iat + 3600));
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));

    // Wrong secret must not verify: the signature really is HS256 over JWT_SECRET.
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    assert!(
        jsonwebtoken::decode::<Value>(key, &DecodingKey::from_secret(b"other"), &validation)
            .is_err()
    );

    let (stored_hash, expires_at): (String, Option<i64>) =
        sqlx::query_as("SELECT key_sha256, expires_at FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_one(&h.db)
            .await
            .unwrap();
    assert_eq!(stored_hash, sha256(key));
    assert_eq!(expires_at, Some(iat + 3600));
}

#[tokio::test]
async fn the_key_itself_is_never_stored() {
    let h = harness().await;
    let r = h.create(json!({"user_id": "u", "name": "n"})).await;
    let key = r.json["key"].as_str().unwrap().to_owned();
    let signature = key.rsplit('.').next().unwrap().to_owned();

    let rows: Vec<(String, String, String, String, Option<String>)> =
        sqlx::query_as("SELECT id, key_sha256, name, user_id, org_id FROM api_keys")
            .fetch_all(&h.db)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1);
    for (id, hash, name, user, org) in rows {
        for value in [id, hash, name, user, org.unwrap_or_default()] {
            assert!(!value.contains(&key) && !value.contains(&signature));
        }
    }
    // And not anywhere in the database files either (main file and WAL).
    for entry in std::fs::read_dir(h.dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let haystack = String::from_utf8_lossy(&bytes);
        assert!(!haystack.contains(&signature));
    }
}

#[tokio::test]
async fn issue_without_org_or_expiry_omits_those_claims() {
    let h = harness().await;
    let r = h
        .create(json!({"user_id": "u", "org_id": null, "name": "n"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["org_id"], Value::Null);
    assert_eq!(r.json["expires_at"], Value::Null);
    let claims = decode(r.json["key"].as_str().unwrap());
    let claims = claims.as_object().unwrap();
    let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["iat", "jti", "user_id"]);
}

#[tokio::test]
async fn limits_are_inclusive() {
    let h = harness().await;
    let long = "é".repeat(256);
    let r = h
        .create(
            json!({"user_id": long, "org_id": long, "name": long, "expires_in_seconds": TEN_YEARS}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .create(json!({"user_id": "u", "name": "n", "expires_in_seconds": 1}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(h.row_count().await, 2);
}

#[tokio::test]
async fn bad_bodies_get_json_errors_and_write_nothing() {
    let h = harness().await;
    let long = "x".repeat(257);
    let valid = || json!({"user_id": "u", "name": "n"});
    let with = |field: &str, value: Value| {
        let mut body = valid();
        body[field] = value;
        body.to_string()
    };
    // Problems with the body as JSON, then with its values; both are 400s with their own code.
    const BODY: &str = "invalid_body";
    const VALUE: &str = "invalid_request";
    let huge = "99999999999999999999";
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed JSON", "{".into(), BODY),
        ("not an object", "[]".into(), BODY),
        ("missing name", json!({"user_id": "u"}).to_string(), BODY),
        ("missing user_id", json!({"name": "n"}).to_string(), BODY),
        ("unknown field", with("scopes", json!(["a"])), BODY),
        ("user_id not a string", with("user_id", json!(5)), BODY),
        (
            "org_id not a string",
            with("org_id", json!({"id": 1})),
            BODY,
        ),
        (
            "expires as string",
            with("expires_in_seconds", json!("60")),
            BODY,
        ),
        (
            "expires fractional",
            with("expires_in_seconds", json!(1.5)),
            BODY,
        ),
        (
            "expires beyond i64",
            format!(r#"{{"user_id":"u","name":"n","expires_in_seconds":{huge}}}"#),
            BODY,
        ),
        ("empty user_id", with("user_id", json!("")), VALUE),
        ("blank user_id", with("user_id", json!(" \t ")), VALUE),
        ("empty name", with("name", json!("")), VALUE),
        ("blank name", with("name", json!("   ")), VALUE),
        ("empty org_id", with("org_id", json!("")), VALUE),
        ("long user_id", with("user_id", json!(long)), VALUE),
        ("long name", with("name", json!(long)), VALUE),
        ("long org_id", with("org_id", json!(long)), VALUE),
        ("control character", with("user_id", json!("a\r\nb")), VALUE),
        ("expires zero", with("expires_in_seconds", json!(0)), VALUE),
        (
            "expires negative",
            with("expires_in_seconds", json!(-5)),
            VALUE,
        ),
        (
            "expires over ten years",
            with("expires_in_seconds", json!(TEN_YEARS + 1)),
            VALUE,
        ),
    ];
    let mut requests: Vec<(&str, Request<Body>, StatusCode, &str)> = cases
        .into_iter()
        .map(|(what, body, code)| {
            let request = post_keys(Some("application/json"), body);
            (what, request, StatusCode::BAD_REQUEST, code)
        })
        .collect();
    requests.push((
        "missing content type",
        post_keys(None, valid().to_string()),
        StatusCode::BAD_REQUEST,
        BODY,
    ));
    requests.push((
        "wrong content type",
        post_keys(Some("text/plain"), valid().to_string()),
        StatusCode::BAD_REQUEST,
        BODY,
    ));
    requests.push((
        "body over 64 KiB",
        post_keys(
            Some("application/json"),
            with("name", json!("x".repeat(70 * 1024))),
        ),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    ));
    for (what, request, status, code) in requests {
        let r = h.send(request).await;
        assert_eq!(r.status, status, "{what}: {}", r.text);
        assert_eq!(r.json["error"], code, "{what}: {}", r.text);
        assert!(
            !r.json["message"].as_str().unwrap().is_empty(),
            "{what}: {}",
            r.text
        );
        assert_eq!(h.row_count().await, 0, "{what} wrote a row");
    }
}

fn post_keys(content_type: Option<&str>, body: String) -> Request<Body> {
    let mut builder =
        Request::post("/v1/keys").header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    builder.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn management_routes_need_the_admin_token() {
    let h = harness().await;
    let created = h.create(json!({"user_id": "u", "name": "n"})).await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    let body = json!({"user_id": "u", "name": "other"}).to_string();
    let auths = [
        None,
        Some("Bearer wrong".to_owned()),
        Some(format!("Bearer {ADMIN}x")),
        Some(format!("Basic {ADMIN}")),
        Some(ADMIN.to_owned()),
        Some("Bearer ".to_owned()),
    ];
    for auth in auths {
        for (method, uri) in [
            ("POST", "/v1/keys".to_owned()),
            ("GET", "/v1/keys".to_owned()),
            ("DELETE", format!("/v1/keys/{id}")),
        ] {
            let mut builder = Request::builder()
                .method(method)
                .uri(&uri)
                .header(header::CONTENT_TYPE, "application/json");
            if let Some(auth) = &auth {
                builder = builder.header(header::AUTHORIZATION, auth);
            }
            let r = h
                .send(builder.body(Body::from(body.clone())).unwrap())
                .await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} {auth:?}"
            );
            assert_eq!(
                r.headers[header::WWW_AUTHENTICATE],
                r#"Bearer realm="keyservice""#
            );
            assert_eq!(r.json["error"], "unauthorized");
            assert!(!r.text.contains(ADMIN));
        }
    }
    assert_eq!(h.row_count().await, 1);
    let revoked: Option<i64> = sqlx::query_scalar("SELECT revoked_at FROM api_keys")
        .fetch_one(&h.db)
        .await
        .unwrap();
    assert_eq!(revoked, None);
    // The scheme is case-insensitive.
    let r = h
        .send(
            Request::get("/v1/keys")
                .header(header::AUTHORIZATION, format!("bearer {ADMIN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn list_shows_keys_without_material_oldest_first() {
    let h = harness().await;
    // Inserted out of order with fixed times, so only ORDER BY can put them right.
    for (id, user, at) in [("c", "alice", 300), ("a", "alice", 100), ("b", "bob", 200)] {
        h.store.insert(&record(id, user, at)).await.unwrap();
    }
    let issued = h.create(json!({"user_id": "alice", "name": "fresh"})).await;
    let key = issued.json["key"].as_str().unwrap();

    let r = h.admin("GET", "/v1/keys", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.text.contains(key));
    assert!(!r.text.contains(&sha256(key)));
    let keys = r.json["keys"].as_array().unwrap();
    let ids: Vec<&str> = keys.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(&ids[..3], ["a", "b", "c"]);
    assert_eq!(ids.len(), 4);
    assert_eq!(
        keys[0],
        json!({
            "id": "a", "name": "key a", "user_id": "alice", "org_id": null,
            "created_at": "1970-01-01T00:01:40Z", "expires_at": null, "revoked_at": null
        })
    );

    let r = h.admin("GET", "/v1/keys?user_id=alice", None).await;
    let ids: Vec<&str> = r.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(&ids[..2], ["a", "c"]);

    let r = h.admin("GET", "/v1/keys?user_id=nobody", None).await;
    assert_eq!(r.json, json!({"keys": []}));

    let r = h.admin("GET", "/v1/keys?userid=alice", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "invalid_query");
}

#[tokio::test]
async fn revoking_flips_the_revocation_answer_and_is_idempotent() {
    let h = harness().await;
    let created = h.create(json!({"user_id": "u", "name": "n"})).await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    let hash = sha256(created.json["key"].as_str().unwrap());

    let r = h.get(&format!("/v1/revocations/{hash}")).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (StatusCode::OK, json!({"status": "active"}))
    );
    assert_eq!(r.headers[header::CACHE_CONTROL], "max-age=30");

    let r = h.admin("DELETE", &format!("/v1/keys/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let revoked_at = r.json["revoked_at"].as_str().unwrap().to_owned();
    assert_eq!(
        r.json,
        json!({"id": id, "revoked_at": revoked_at}),
        "no note without expiry"
    );

    let r = h.get(&format!("/v1/revocations/{hash}")).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (StatusCode::GONE, json!({"status": "revoked"}))
    );
    assert_eq!(r.headers[header::CACHE_CONTROL], "max-age=86400");

    let r = h.admin("DELETE", &format!("/v1/keys/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["revoked_at"], revoked_at.as_str());

    let listed = h.admin("GET", "/v1/keys", None).await;
    assert_eq!(listed.json["keys"][0]["revoked_at"], revoked_at.as_str());
}

#[tokio::test]
async fn revoking_again_keeps_the_first_time() {
    let h = harness().await;
    h.store.insert(&record("old", "u", 10)).await.unwrap();
    h.store.revoke("old", 1_000).await.unwrap().unwrap();
    let r = h.admin("DELETE", "/v1/keys/old", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json,
        json!({"id": "old", "revoked_at": "1970-01-01T00:16:40Z"})
    );
}

#[tokio::test]
async fn revoking_a_key_with_expiry_carries_the_note() {
    let h = harness().await;
    let created = h
        .create(json!({"user_id": "u", "name": "n", "expires_in_seconds": 60}))
        .await;
    let id = created.json["id"].as_str().unwrap();
    let expires_at = created.json["expires_at"].as_str().unwrap();
    let r = h.admin("DELETE", &format!("/v1/keys/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json["note"],
        format!(
            "this key has an expiry; edges that check revocation only for non-expiring keys \
             (check: non_expiring) accept it until {expires_at}"
        )
    );
}

#[tokio::test]
async fn unknown_and_malformed_ids() {
    let h = harness().await;
    let r = h.admin("DELETE", "/v1/keys/does-not-exist", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json["error"], "not_found");
    let r = h.admin("DELETE", "/v1/keys/%FF%FE", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json["error"], "invalid_path");
    assert_eq!(h.row_count().await, 0);
}

#[tokio::test]
async fn revocation_endpoint_answers_by_hash_without_auth() {
    let h = harness().await;
    let r = h
        .get(&format!("/v1/revocations/{}", sha256("never issued")))
        .await;
    assert_eq!(
        (r.status, r.json.clone()),
        (StatusCode::NOT_FOUND, json!({"status": "unknown"}))
    );
    assert_eq!(
        r.headers[header::CACHE_CONTROL],
        "no-store",
        "an unknown key may be imported any moment"
    );

    let good = sha256("x");
    let bad = [
        good.to_uppercase(),
        good[..63].to_owned(),
        format!("{good}0"),
        format!("{}z", &good[..63]),
        "not-a-hash".to_owned(),
    ];
    for hash in bad {
        let r = h.get(&format!("/v1/revocations/{hash}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{hash}");
        assert_eq!(r.json["error"], "invalid_sha256");
    }
}

#[tokio::test]
async fn health_and_catch_alls_are_json() {
    let h = harness().await;
    let r = h.get("/healthz").await;
    assert_eq!(
        (r.status, r.json),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let r = h.get("/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json["error"], "not_found");
    let r = h.get("/v1/revocations/").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h.admin("PUT", "/v1/keys", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json["error"], "method_not_allowed");
}

#[tokio::test]
async fn database_failures_are_json_errors_not_panics() {
    let h = harness().await;
    // A broken schema: the query fails inside SQLite.
    sqlx::query("DROP TABLE api_keys")
        .execute(&h.db)
        .await
        .unwrap();
    let r = h.get(&format!("/v1/revocations/{}", sha256("x"))).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        r.json,
        json!({"error": "internal", "message": "internal error"})
    );
    let r = h.create(json!({"user_id": "u", "name": "n"})).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        !r.text.contains("api_keys"),
        "causes are not leaked: {}",
        r.text
    );

    // A closed pool: the database is unavailable.
    h.store.close().await;
    let r = h.get(&format!("/v1/revocations/{}", sha256("x"))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json["error"], "unavailable");
}

#[tokio::test]
async fn in_memory_database_keeps_its_data_across_requests() {
    let store = keyservice::store::open("sqlite::memory:").await.unwrap();
    let app = app(AppState::new(store, SECRET.as_bytes(), ADMIN));
    let request = || {
        Request::post("/v1/keys")
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"user_id": "u", "name": "n"}).to_string()))
            .unwrap()
    };
    for _ in 0..2 {
        let response = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let response = app
        .oneshot(
            Request::get("/v1/keys")
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["keys"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn revocation_answers_carry_the_configured_cache_lifetimes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    let store = keyservice::store::open(&url).await.unwrap();
    let policy = keyservice::CachePolicy {
        active_seconds: 5,
        revoked_seconds: 600,
    };
    let h = Harness {
        app: app(AppState::new(store.clone(), SECRET.as_bytes(), ADMIN).with_cache_policy(policy)),
        db: SqlitePool::connect(&url).await.unwrap(),
        store,
        dir,
    };
    let created = h.create(json!({"user_id": "u", "name": "n"})).await;
    let hash = sha256(created.json["key"].as_str().unwrap());
    let r = h.get(&format!("/v1/revocations/{hash}")).await;
    assert_eq!(r.headers[header::CACHE_CONTROL], "max-age=5");
    let id = created.json["id"].as_str().unwrap();
    h.admin("DELETE", &format!("/v1/keys/{id}"), None).await;
    let r = h.get(&format!("/v1/revocations/{hash}")).await;
    assert_eq!(r.headers[header::CACHE_CONTROL], "max-age=600");
}
