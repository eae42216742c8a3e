#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The HTTP API through `app(state).oneshot(..)`, every test run twice: on SQLite in a tempdir
//! and on a real PostgreSQL (a database of its own in a cluster the harness starts).

#[macro_use]
mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{ADMIN, Backend, Harness, SECRET, record, sample, sha256};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use keyservice::auth::EdgeHeaders;
use keyservice::authorize::Authorizer;
use keyservice::store::KeyFilter;
use keyservice::{AppState, app};
use serde_json::{Value, json};
use tower::ServiceExt;

const TEN_YEARS: i64 = 315_360_000;

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

fn post_keys(content_type: Option<&str>, body: String) -> Request<Body> {
    let mut builder =
        Request::post("/v1/keys").header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    builder.body(Body::from(body)).unwrap()
}

async fn issue_returns_a_key_that_verifies_with_the_contract_claims(backend: Backend) {
    let h = Harness::new(backend).await;
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
            "scopes",
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

    let (stored_hash, expires_at): (String, Option<i64>) = on_raw!(&h.raw, pool =>
        sqlx::query_as("SELECT key_sha256, expires_at FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap());
    assert_eq!(stored_hash, sha256(key));
    assert_eq!(expires_at, Some(iat + 3600));
}

async fn the_key_itself_is_never_stored(backend: Backend) {
    let h = Harness::new(backend).await;
    let r = h.create(json!({"user_id": "u", "name": "n"})).await;
    let key = r.json["key"].as_str().unwrap().to_owned();
    let signature = key.rsplit('.').next().unwrap().to_owned();

    let rows: Vec<(String, String, String, String, Option<String>)> = on_raw!(&h.raw, pool =>
        sqlx::query_as("SELECT id, key_sha256, name, user_id, org_id FROM api_keys")
            .fetch_all(pool)
            .await
            .unwrap());
    assert_eq!(rows.len(), 1);
    for (id, hash, name, user, org) in rows {
        for value in [id, hash, name, user, org.unwrap_or_default()] {
            assert!(!value.contains(&key) && !value.contains(&signature));
        }
    }
    // And not anywhere in the database files either (main file and WAL).
    let Some(dir) = &h.dir else { return };
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let haystack = String::from_utf8_lossy(&bytes);
        assert!(!haystack.contains(&signature));
    }
}

async fn issue_without_org_or_expiry_omits_those_claims(backend: Backend) {
    let h = Harness::new(backend).await;
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

async fn limits_are_inclusive(backend: Backend) {
    let h = Harness::new(backend).await;
    // Identities are ASCII (256 bytes); a name is 256 characters of any width.
    let (long, wide) = ("x".repeat(256), "é".repeat(256));
    let r = h
        .create(
            json!({"user_id": long, "org_id": long, "name": wide, "expires_in_seconds": TEN_YEARS}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .create(json!({"user_id": "u", "name": "n", "expires_in_seconds": 1}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(h.row_count().await, 2);
}

async fn bad_bodies_get_json_errors_and_write_nothing(backend: Backend) {
    let h = Harness::new(backend).await;
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
        ("unknown field", with("scope", json!("a")), BODY),
        ("scopes not a list", with("scopes", json!("a")), BODY),
        ("scope not a string", with("scopes", json!([1])), BODY),
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
        ("tab in user_id", with("user_id", json!("ali\tce")), VALUE),
        // HTTP drops a header value's edge whitespace: the edge would pass " bob" on as "bob".
        (
            "leading space in user_id",
            with("user_id", json!(" bob")),
            VALUE,
        ),
        (
            "trailing space in user_id",
            with("user_id", json!("bob ")),
            VALUE,
        ),
        (
            "trailing tab in org_id",
            with("org_id", json!("org\t")),
            VALUE,
        ),
        (
            "leading space in org_id",
            with("org_id", json!(" org")),
            VALUE,
        ),
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
        let message = r.json["message"].as_str().unwrap();
        assert!(!message.is_empty(), "{what}: {}", r.text);
        if code == VALUE {
            let fields = ["user_id", "org_id", "name", "expires_in_seconds"];
            assert!(
                fields.iter().any(|field| message.contains(field)),
                "{what}: the message names no field: {}",
                r.text
            );
        }
        assert_eq!(h.row_count().await, 0, "{what} wrote a row");
    }
}

async fn management_routes_need_the_admin_token(backend: Backend) {
    let h = Harness::new(backend).await;
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
    let revoked: Option<i64> = on_raw!(&h.raw, pool => sqlx::query_scalar("SELECT revoked_at FROM api_keys")
        .fetch_one(pool)
        .await
        .unwrap());
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

async fn list_shows_keys_without_material_oldest_first(backend: Backend) {
    let h = Harness::new(backend).await;
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
            "id": "a", "name": "key a", "user_id": "alice", "org_id": null, "scopes": [],
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
    assert_eq!(r.json, json!({"keys": [], "next": null}));

    let r = h.admin("GET", "/v1/keys?userid=alice", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "invalid_query");
}

async fn revoking_flips_the_revocation_answer_and_is_idempotent(backend: Backend) {
    let h = Harness::new(backend).await;
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

async fn revoking_again_keeps_the_first_time(backend: Backend) {
    let h = Harness::new(backend).await;
    h.store.insert(&record("old", "u", 10)).await.unwrap();
    h.store
        .revoke("old", &KeyFilter::all(), 1_000)
        .await
        .unwrap()
        .unwrap();
    let r = h.admin("DELETE", "/v1/keys/old", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json,
        json!({"id": "old", "revoked_at": "1970-01-01T00:16:40Z"})
    );
}

async fn revoking_a_key_with_expiry_carries_the_note(backend: Backend) {
    let h = Harness::new(backend).await;
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

async fn unknown_and_malformed_ids(backend: Backend) {
    let h = Harness::new(backend).await;
    let r = h.admin("DELETE", "/v1/keys/does-not-exist", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json["error"], "not_found");
    let r = h.admin("DELETE", "/v1/keys/%FF%FE", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json["error"], "invalid_path");
    assert_eq!(h.row_count().await, 0);
}

async fn revocation_endpoint_answers_by_hash_without_auth(backend: Backend) {
    let h = Harness::new(backend).await;
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

async fn health_and_catch_alls_are_json(backend: Backend) {
    let h = Harness::new(backend).await;
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

async fn database_failures_are_json_errors_not_panics(backend: Backend) {
    let h = Harness::new(backend).await;
    // A broken schema: the query fails inside the database.
    on_raw!(&h.raw, pool => {
        sqlx::query("DROP TABLE api_keys").execute(pool).await.unwrap();
    });
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
    let app = app(AppState::new(store, SECRET.as_bytes()).with_admin_token(ADMIN));
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

async fn revocation_answers_carry_the_configured_cache_lifetimes(backend: Backend) {
    let policy = keyservice::CachePolicy {
        active_seconds: 5,
        revoked_seconds: 600,
    };
    let h = Harness::with(backend, |state| state.with_cache_policy(policy)).await;
    let created = h.create(json!({"user_id": "u", "name": "n"})).await;
    let hash = sha256(created.json["key"].as_str().unwrap());
    let r = h.get(&format!("/v1/revocations/{hash}")).await;
    assert_eq!(r.headers[header::CACHE_CONTROL], "max-age=5");
    let id = created.json["id"].as_str().unwrap();
    h.admin("DELETE", &format!("/v1/keys/{id}"), None).await;
    let r = h.get(&format!("/v1/revocations/{hash}")).await;
    assert_eq!(r.headers[header::CACHE_CONTROL], "max-age=600");
}

async fn scopes_are_issued_listed_and_validated(backend: Backend) {
    let h = Harness::new(backend).await;
    let r = h
        .create(json!({"user_id": "u", "name": "n", "scopes": ["keys:write", "read", "read"]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["scopes"], json!(["keys:write", "read"]));
    assert_eq!(
        decode(r.json["key"].as_str().unwrap())["scopes"],
        json!(["keys:write", "read"])
    );
    let listed = h.admin("GET", "/v1/keys", None).await;
    assert_eq!(
        listed.json["keys"][0]["scopes"],
        json!(["keys:write", "read"])
    );

    let too_many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
    for (scopes, message) in [
        (json!(["ok", "not ok"]), "scopes[1] is not a scope"),
        (json!([""]), "scopes[0] is not a scope"),
        (json!(["a\"b"]), "scopes[0] is not a scope"),
        (json!(["é"]), "scopes[0] is not a scope"),
        (json!(["x".repeat(129)]), "scopes[0] is not a scope"),
        (json!(too_many), "at most 64 scopes"),
    ] {
        let r = h
            .create(json!({"user_id": "u", "name": "n", "scopes": scopes}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{scopes}: {}", r.text);
        assert_eq!(r.json["error"], "invalid_request");
        assert!(
            r.json["message"].as_str().unwrap().contains(message),
            "{}",
            r.text
        );
    }
    assert_eq!(h.row_count().await, 1);
}

fn payload(claims: Value) -> String {
    URL_SAFE_NO_PAD.encode(claims.to_string())
}

/// What keygate forwards for a verified key: the claim headers and the payload.
fn edge(user: &str, org: Option<&str>, scopes: &[&str]) -> Vec<(String, String)> {
    let mut headers = vec![("x-user-id".to_owned(), user.to_owned())];
    if let Some(org) = org {
        headers.push(("x-org-id".to_owned(), org.to_owned()));
    }
    headers.push((
        "x-jwt-payload".to_owned(),
        payload(json!({"user_id": user, "org_id": org, "scopes": scopes, "iat": 1})),
    ));
    // The key itself arrives too: it must not be mistaken for the admin token.
    headers.push((
        "authorization".to_owned(),
        "Bearer eyJ.not-the-admin.token".to_owned(),
    ));
    headers
}

async fn as_edge(
    h: &Harness,
    headers: &[(String, String)],
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> common::Reply {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    h.as_caller(method, uri, &headers, body).await
}

/// The names of the listed keys, sorted (keys made in the same second list in id order).
fn ids(reply: &common::Reply) -> Vec<String> {
    let mut names: Vec<String> = reply.json["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no key list: {}", reply.text))
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

async fn edge_callers_see_and_revoke_only_their_orgs_or_their_own_keys(backend: Backend) {
    let h = Harness::with(backend, |s| s.with_edge_identity(EdgeHeaders::default())).await;
    let mut id = std::collections::HashMap::new();
    for (name, user, org) in [
        ("alice-acme", "alice", Some("acme")),
        ("bob-acme", "bob", Some("acme")),
        ("carol-globex", "carol", Some("globex")),
        ("alice-personal", "alice", None),
        ("dave-personal", "dave", None),
    ] {
        let r = h
            .create(json!({"user_id": user, "org_id": org, "name": name}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
        id.insert(name, r.json["id"].as_str().unwrap().to_owned());
    }
    let alice_at_acme = edge("alice", Some("acme"), &["keys:write"]);
    let alice_alone = edge("alice", None, &["keys:write"]);

    let r = as_edge(&h, &alice_at_acme, "GET", "/v1/keys", None).await;
    assert_eq!(
        (r.status, ids(&r)),
        (
            StatusCode::OK,
            vec!["alice-acme".to_owned(), "bob-acme".to_owned()]
        )
    );
    let r = as_edge(&h, &alice_at_acme, "GET", "/v1/keys?user_id=bob", None).await;
    assert_eq!(ids(&r), ["bob-acme"]);
    let r = as_edge(&h, &alice_at_acme, "GET", "/v1/keys?org_id=globex", None).await;
    assert_eq!(
        ids(&r),
        Vec::<String>::new(),
        "a query cannot widen what the caller sees"
    );
    let r = as_edge(&h, &alice_alone, "GET", "/v1/keys", None).await;
    assert_eq!(ids(&r), ["alice-personal"]);

    // Someone else's key is "not found", exactly like a key that does not exist.
    for (caller, name) in [
        (&alice_at_acme, "carol-globex"),
        (&alice_at_acme, "alice-personal"),
        (&alice_at_acme, "dave-personal"),
        (&alice_alone, "alice-acme"),
        (&alice_alone, "dave-personal"),
    ] {
        let key_id = &id[name];
        let r = as_edge(&h, caller, "DELETE", &format!("/v1/keys/{key_id}"), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{name}");
        assert_eq!(
            r.json,
            json!({"error": "not_found", "message": format!("no key with id {key_id}")})
        );
    }
    let r = as_edge(&h, &alice_at_acme, "DELETE", "/v1/keys/no-such-id", None).await;
    assert_eq!(
        r.json,
        json!({"error": "not_found", "message": "no key with id no-such-id"})
    );
    let listed = h.admin("GET", "/v1/keys", None).await;
    assert!(
        listed.json["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["revoked_at"].is_null()),
        "nothing was revoked: {}",
        listed.text
    );

    // Within the org, any member revokes the org's keys (as in ComfyUI Deploy).
    let r = as_edge(
        &h,
        &alice_at_acme,
        "DELETE",
        &format!("/v1/keys/{}", id["bob-acme"]),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = as_edge(
        &h,
        &alice_alone,
        "DELETE",
        &format!("/v1/keys/{}", id["alice-personal"]),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let listed = h.admin("GET", "/v1/keys", None).await;
    let mut revoked: Vec<&str> = listed.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| !k["revoked_at"].is_null())
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    revoked.sort_unstable();
    assert_eq!(revoked, ["alice-personal", "bob-acme"]);
}

async fn edge_callers_issue_keys_for_themselves_with_scopes_they_hold(backend: Backend) {
    let h = Harness::with(backend, |s| s.with_edge_identity(EdgeHeaders::default())).await;
    let alice = edge("alice", Some("acme"), &["keys:write", "read"]);
    let r = as_edge(
        &h,
        &alice,
        "POST",
        "/v1/keys",
        Some(json!({"name": "mine", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        (&r.json["user_id"], &r.json["org_id"], &r.json["scopes"]),
        (&json!("alice"), &json!("acme"), &json!(["read"]))
    );
    let claims = decode(r.json["key"].as_str().unwrap());
    assert_eq!(
        (&claims["user_id"], &claims["org_id"]),
        (&json!("alice"), &json!("acme"))
    );
    // Naming itself is fine; naming anyone else is not.
    let r = as_edge(
        &h,
        &alice,
        "POST",
        "/v1/keys",
        Some(json!({"name": "same", "user_id": "alice", "org_id": "acme"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let cases = [
        (
            json!({"name": "x", "scopes": ["admin"]}),
            "insufficient_scope",
        ),
        (
            json!({"name": "x", "scopes": ["read", "keys:admin"]}),
            "insufficient_scope",
        ),
        (json!({"name": "x", "user_id": "bob"}), "forbidden"),
        (json!({"name": "x", "org_id": "globex"}), "forbidden"),
        (json!({"name": "x", "org_id": null}), "forbidden"),
    ];
    for (body, code) in cases {
        let r = as_edge(&h, &alice, "POST", "/v1/keys", Some(body.clone())).await;
        assert_eq!(
            (r.status, &r.json["error"]),
            (StatusCode::FORBIDDEN, &json!(code)),
            "{body}"
        );
    }
    let r = as_edge(
        &h,
        &alice,
        "POST",
        "/v1/keys",
        Some(json!({"name": "x", "scopes": ["admin"]})),
    )
    .await;
    assert_eq!(
        r.json["message"],
        "cannot grant scopes the caller does not hold: admin"
    );

    // Without the payload header the caller holds no scope, so it can grant none.
    let bare = vec![("x-user-id".to_owned(), "erin".to_owned())];
    let r = as_edge(
        &h,
        &bare,
        "POST",
        "/v1/keys",
        Some(json!({"name": "x", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = as_edge(
        &h,
        &bare,
        "POST",
        "/v1/keys",
        Some(json!({"name": "plain"})),
    )
    .await;
    assert_eq!(
        (r.status, &r.json["org_id"]),
        (StatusCode::CREATED, &Value::Null)
    );
    assert_eq!(h.row_count().await, 3);
}

async fn edge_identity_is_used_only_when_trusted_and_well_formed(backend: Backend) {
    let untrusted = Harness::new(backend).await;
    let alice = edge("alice", Some("acme"), &["keys:write"]);
    let r = as_edge(&untrusted, &alice, "GET", "/v1/keys", None).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "headers mean nothing without the flag"
    );

    let h = Harness::with(backend, |s| s.with_edge_identity(EdgeHeaders::default())).await;
    // The admin token still works beside the edge, and sees everything.
    h.create(json!({"user_id": "zed", "org_id": "other", "name": "z"}))
        .await;
    let r = h
        .as_caller(
            "GET",
            "/v1/keys",
            &[
                ("authorization", &format!("Bearer {ADMIN}")),
                ("x-user-id", "alice"),
            ],
            None,
        )
        .await;
    assert_eq!(ids(&r), ["z"]);
    let bad: [(&str, Vec<(&str, &str)>); 4] = [
        ("blank user", vec![("x-user-id", " ")]),
        ("two users", vec![("x-user-id", "a"), ("x-user-id", "b")]),
        (
            "payload not base64 JSON",
            vec![("x-user-id", "a"), ("x-jwt-payload", "%%%")],
        ),
        (
            "payload not an object",
            vec![("x-user-id", "a"), ("x-jwt-payload", "WzFd")],
        ),
    ];
    for (what, headers) in bad {
        let r = h.as_caller("GET", "/v1/keys", &headers, None).await;
        assert_eq!(
            (r.status, &r.json["error"]),
            (StatusCode::UNAUTHORIZED, &json!("unauthorized")),
            "{what}"
        );
    }
    let r = h.as_caller("GET", "/v1/keys", &[], None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Edge identity alone, no admin token configured: a would-be admin token opens nothing.
    let (url, _dir) = common::database(backend).await;
    let edge_only = {
        let store = keyservice::store::open(&url).await.unwrap();
        app(AppState::new(store, SECRET.as_bytes()).with_edge_identity(EdgeHeaders::default()))
    };
    let response = edge_only
        .oneshot(
            Request::get("/v1/keys")
                .header("authorization", format!("Bearer {ADMIN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

async fn health_readiness_and_metrics(backend: Backend) {
    let h = Harness::new(backend).await;
    let r = h.get("/readyz").await;
    assert_eq!(
        (r.status, r.json),
        (StatusCode::OK, json!({"status": "ready"}))
    );

    let created = h.create(json!({"user_id": "u", "name": "n"})).await;
    let hash = sha256(created.json["key"].as_str().unwrap());
    h.get(&format!("/v1/revocations/{hash}")).await;
    h.get(&format!("/v1/revocations/{}", sha256("unknown")))
        .await;
    let id = created.json["id"].as_str().unwrap();
    h.admin("DELETE", &format!("/v1/keys/{id}"), None).await;
    h.admin("DELETE", &format!("/v1/keys/{id}"), None).await;
    h.get(&format!("/v1/revocations/{hash}")).await;

    let reply = h
        .send_any(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let m = reply.text;
    assert_eq!(sample(&m, "keyservice_keys_issued_total"), 1.0, "{m}");
    assert_eq!(
        sample(&m, "keyservice_keys_revoked_total"),
        1.0,
        "revoking again is not counted: {m}"
    );
    for (result, n) in [("active", 1.0), ("revoked", 1.0), ("unknown", 1.0)] {
        let series = format!("keyservice_revocation_lookups_total{{result=\"{result}\"}}");
        assert_eq!(sample(&m, &series), n, "{series}: {m}");
    }
    let series = "keyservice_http_request_duration_seconds_count{method=\"DELETE\",route=\"/v1/keys/{id}\",status=\"200\"}";
    assert_eq!(sample(&m, series), 2.0, "{m}");
    assert!(!m.contains(id), "raw paths are never labels: {m}");
    assert_eq!(
        sample(&m, "keyservice_database_errors_total{kind=\"unavailable\"}"),
        0.0
    );

    h.store.close().await;
    let r = h.get("/readyz").await;
    assert_eq!(
        (r.status, &r.json["error"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("unavailable"))
    );
    let r = h.get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK, "alive even without a database");
    let m = h.metrics().await;
    assert!(
        sample(&m, "keyservice_database_errors_total{kind=\"unavailable\"}") >= 1.0,
        "{m}"
    );
}

async fn request_ids_are_kept_or_made(backend: Backend) {
    let h = Harness::new(backend).await;
    let r = h.get("/healthz").await;
    let made = r.headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(made).is_ok(), "{made}");
    let r = h
        .as_caller(
            "GET",
            "/v1/keys",
            &[("x-request-id", "from-envoy-123")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers["x-request-id"], "from-envoy-123");
}

async fn bad_input_on_every_route_is_a_json_4xx(backend: Backend) {
    let h = Harness::new(backend).await;
    let auth = format!("Bearer {ADMIN}");
    let cases: [(&str, &str, Option<&str>, StatusCode, &str); 12] = [
        (
            "GET",
            "/v1/keys?limit=5&offset=5",
            Some(&auth),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "GET",
            "/v1/keys?user_id=a&user_id=b",
            Some(&auth),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "DELETE",
            "/v1/keys/%FF",
            Some(&auth),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            "DELETE",
            "/v1/keys/unknown",
            Some(&auth),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "DELETE",
            "/v1/keys",
            Some(&auth),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "GET",
            "/v1/revocations/abc",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_sha256",
        ),
        (
            "GET",
            "/v1/revocations/%FF",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            "POST",
            "/v1/revocations/abc",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "POST",
            "/healthz",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "DELETE",
            "/readyz",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "GET",
            "/v1/authorize/x",
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        ("GET", "/v2/keys", None, StatusCode::NOT_FOUND, "not_found"),
    ];
    for (method, uri, auth, status, code) in cases {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(auth) = auth {
            builder = builder.header("authorization", auth);
        }
        let r = h.send(builder.body(Body::empty()).unwrap()).await;
        assert_eq!(
            (r.status, &r.json["error"]),
            (status, &json!(code)),
            "{method} {uri}: {}",
            r.text
        );
        assert!(!r.json["message"].as_str().unwrap().is_empty());
    }
}

fn authorize_config(extra: Value) -> Authorizer {
    let mut config = json!({
        "secret": {"inline": SECRET},
        "claims_to_headers": {"user_id": "x-user-id", "org_id": "x-org-id"},
        "revocation": {"cluster": "unused-here"},
        "rules": [
            {"match": {"path": "/public"}, "action": "allow"},
            {"match": {"glob": "/admin/**"}, "action": "require_scopes", "scopes": ["admin"]}
        ]
    });
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    Authorizer::from_json(config.to_string().as_bytes()).unwrap()
}

/// The header names Envoy is told to remove, sorted.
fn removed(r: &common::Reply) -> Vec<String> {
    let mut names: Vec<String> = r.headers["x-envoy-auth-headers-to-remove"]
        .to_str()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

async fn authorize(
    h: &Harness,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> common::Reply {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    h.send_any(builder.body(Body::empty()).unwrap()).await
}

async fn authorize_answers_like_the_filter(backend: Backend) {
    let h = Harness::with(backend, |s| s.with_authorizer(authorize_config(json!({})))).await;
    let issued = h
        .create(json!({"user_id": "alice", "org_id": "acme", "name": "n"}))
        .await;
    let key = issued.json["key"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {key}");
    let admin_key = h
        .create(json!({"user_id": "root", "name": "a", "scopes": ["admin"]}))
        .await
        .json["key"]
        .as_str()
        .unwrap()
        .to_owned();

    // Envoy ext_authz style: the original path after the prefix, the original method.
    for method in ["GET", "POST", "DELETE"] {
        let r = authorize(
            &h,
            method,
            "/v1/authorize/hello?x=1",
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{method}: {}", r.text);
        assert_eq!(r.headers["x-user-id"], "alice");
        assert_eq!(r.headers["x-org-id"], "acme");
        assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
        assert!(r.headers.get("x-envoy-auth-headers-to-remove").is_none());
        assert_eq!(r.text, "");
    }
    let personal = h.create(json!({"user_id": "bob", "name": "n"})).await.json["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = authorize(
        &h,
        "GET",
        "/v1/authorize/",
        &[("authorization", &format!("Bearer {personal}"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers["x-envoy-auth-headers-to-remove"], "x-org-id",
        "a client's own x-org-id must go"
    );

    let r = authorize(&h, "GET", "/v1/authorize/hello", &[]).await;
    assert_eq!(
        (r.status, r.text.as_str()),
        (StatusCode::UNAUTHORIZED, "Invalid or expired token")
    );
    assert_eq!(
        r.headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"keygate\""
    );
    assert_eq!(r.headers[header::CONTENT_TYPE], "text/plain");
    let r = authorize(
        &h,
        "GET",
        "/v1/authorize/hello",
        &[("authorization", "Bearer not.a.jwt")],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    // Rules see the original path: open routes, and routes that need a scope.
    let r = authorize(&h, "GET", "/v1/authorize/public", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(removed(&r), ["x-org-id", "x-user-id"]);
    let r = authorize(
        &h,
        "GET",
        "/v1/authorize/admin/panel",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(
        (r.status, r.text.as_str()),
        (StatusCode::FORBIDDEN, "Insufficient scope")
    );
    assert!(
        r.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("scope=\"admin\"")
    );
    let r = authorize(
        &h,
        "GET",
        "/v1/authorize/admin/panel",
        &[("authorization", &format!("Bearer {admin_key}"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    // nginx auth_request style: the exact path, the original request in headers...
    let r = authorize(
        &h,
        "GET",
        "/v1/authorize",
        &[
            ("authorization", &bearer),
            ("x-original-uri", "/admin/panel?x=1"),
            ("x-original-method", "POST"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = authorize(&h, "GET", "/v1/authorize", &[("x-original-uri", "/public")]).await;
    assert_eq!(r.status, StatusCode::OK);
    // ...which are ignored below the exact path, where the path itself says what is asked.
    let r = authorize(
        &h,
        "GET",
        "/v1/authorize/admin/panel",
        &[("authorization", &bearer), ("x-original-uri", "/public")],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Revoked, and a database that is gone.
    let id = issued.json["id"].as_str().unwrap();
    h.admin("DELETE", &format!("/v1/keys/{id}"), None).await;
    let r = authorize(
        &h,
        "GET",
        "/v1/authorize/hello",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(
        (r.status, r.text.as_str()),
        (StatusCode::UNAUTHORIZED, "Revoked token")
    );
    let m = h.metrics().await;
    assert!(
        sample(
            &m,
            "keyservice_authorize_decisions_total{decision=\"allow\"}"
        ) >= 5.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "keyservice_authorize_decisions_total{decision=\"revoked\"}"
        ),
        1.0,
        "{m}"
    );
    h.store.close().await;
    let r = authorize(
        &h,
        "GET",
        "/v1/authorize/hello",
        &[("authorization", &format!("Bearer {personal}"))],
    )
    .await;
    assert_eq!(
        (r.status, r.text.as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Authorization service unavailable"
        )
    );
}

async fn authorize_follows_the_configurations_options(backend: Backend) {
    let h = Harness::with(backend, |s| {
        s.with_authorizer(authorize_config(json!({
            "response_format": "json",
            "revocation": {"cluster": "k", "unknown_keys": "allow", "failure_mode": "allow"},
            "strip_authorization": true
        })))
    })
    .await;
    // A key keyservice never issued: allowed with unknown_keys=allow.
    let stranger = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &json!({"user_id": "legacy", "iat": 1}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let r = authorize(
        &h,
        "GET",
        "/v1/authorize/x",
        &[("authorization", &format!("Bearer {stranger}"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(removed(&r), ["authorization", "x-org-id"]);
    let r = authorize(&h, "GET", "/v1/authorize/x", &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    let body: Value = serde_json::from_str(&r.text).unwrap();
    assert_eq!(body["error"], "unauthorized");
    h.store.close().await;
    let r = authorize(
        &h,
        "GET",
        "/v1/authorize/x",
        &[("authorization", &format!("Bearer {stranger}"))],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "failure_mode=allow lets it through"
    );
}

both_backends!(
    issue_returns_a_key_that_verifies_with_the_contract_claims,
    the_key_itself_is_never_stored,
    issue_without_org_or_expiry_omits_those_claims,
    limits_are_inclusive,
    bad_bodies_get_json_errors_and_write_nothing,
    management_routes_need_the_admin_token,
    list_shows_keys_without_material_oldest_first,
    revoking_flips_the_revocation_answer_and_is_idempotent,
    revoking_again_keeps_the_first_time,
    revoking_a_key_with_expiry_carries_the_note,
    unknown_and_malformed_ids,
    revocation_endpoint_answers_by_hash_without_auth,
    health_and_catch_alls_are_json,
    database_failures_are_json_errors_not_panics,
    revocation_answers_carry_the_configured_cache_lifetimes,
    scopes_are_issued_listed_and_validated,
    edge_callers_see_and_revoke_only_their_orgs_or_their_own_keys,
    edge_callers_issue_keys_for_themselves_with_scopes_they_hold,
    edge_identity_is_used_only_when_trusted_and_well_formed,
    health_readiness_and_metrics,
    request_ids_are_kept_or_made,
    bad_input_on_every_route_is_a_json_4xx,
    authorize_answers_like_the_filter,
    authorize_follows_the_configurations_options,
);
