//! Callers keyservice verifies itself: API keys with `keys:write` (`--api-key-callers`) and
//! signed-in sessions of the identity provider (`--session-issuer`, against a real JWKS served by
//! testkit's IdP). Each sees, issues and revokes only what its org, role or own identity allows;
//! identity headers a proxy would set mean nothing.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use keyservice::{AppState, app};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::decode;
use crate::common::{self, ADMIN, Backend, Harness, SECRET};

/// A key issued by the admin for `user` in `org` with `keys:write` and `scopes`: what a user
/// presents to manage keys.
async fn key_caller(
    h: &Harness,
    user: &str,
    org: Option<&str>,
    scopes: &[&str],
) -> Vec<(String, String)> {
    vec![(
        "authorization".to_owned(),
        common::key_caller(h, user, org, scopes).await,
    )]
}

fn with_key_callers(s: AppState) -> AppState {
    s.with_api_key_callers()
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
        .filter(|name| !name.ends_with("-manager"))
        .collect();
    names.sort();
    names
}

async fn key_callers_see_and_revoke_only_their_orgs_or_their_own_keys(backend: Backend) {
    let h = Harness::with(backend, with_key_callers).await;
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
    let alice_at_acme = key_caller(&h, "alice", Some("acme"), &[]).await;
    let alice_alone = key_caller(&h, "alice", None, &[]).await;

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
        .filter(|name| !name.ends_with("-manager"))
        .collect();
    revoked.sort_unstable();
    assert_eq!(revoked, ["alice-personal", "bob-acme"]);
}

async fn key_callers_issue_keys_for_themselves_with_scopes_they_hold(backend: Backend) {
    let h = Harness::with(backend, with_key_callers).await;
    let alice = key_caller(&h, "alice", Some("acme"), &["read"]).await;
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

    // A key with keys:write alone can grant no other scope.
    let bare = key_caller(&h, "erin", None, &[]).await;
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
    assert_eq!(h.row_count().await, 5, "two managers and three keys");
}

async fn identity_headers_mean_nothing_and_keys_are_verified_here(backend: Backend) {
    // Forged identity headers, straight to keyservice: what a proxy would set is never read.
    let forged = [
        ("x-user-id", "alice"),
        ("x-org-id", "acme"),
        ("x-jwt-payload", "eyJzY29wZXMiOlsia2V5czp3cml0ZSJdfQ"),
    ];
    for h in [
        Harness::new(backend).await,
        Harness::with(backend, with_key_callers).await,
    ] {
        let r = h.as_caller("GET", "/v1/keys", &forged, None).await;
        assert_eq!(
            (r.status, &r.json["error"]),
            (StatusCode::UNAUTHORIZED, &json!("unauthorized")),
            "{}",
            r.text
        );
        let r = h
            .as_caller("POST", "/v1/keys", &forged, Some(json!({"name": "x"})))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }

    let h = Harness::with(backend, with_key_callers).await;
    // The admin token still works beside users, and sees everything.
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

    // Keys that are not (or no longer) good enough.
    let plain = h
        .create(json!({"user_id": "alice", "name": "plain", "scopes": ["read"]}))
        .await;
    let plain_key = plain.json["key"].as_str().unwrap().to_owned();
    let manager = key_caller(&h, "alice", None, &[]).await;
    let manager_key = manager[0].1.trim_start_matches("Bearer ").to_owned();
    let temporary = h
        .create(json!({"user_id": "alice", "name": "t", "scopes": ["keys:write"], "expires_in_seconds": 1}))
        .await;
    let temporary_key = temporary.json["key"].as_str().unwrap().to_owned();
    let unknown = testkit::token::sign(
        &json!({"user_id": "alice", "scopes": ["keys:write"], "iat": 1}),
        SECRET,
    );
    let other_secret = testkit::token::sign(
        &json!({"user_id": "alice", "scopes": ["keys:write"], "iat": 1}),
        "another-secret-0123456789abcdef",
    );
    let bearer = |key: &str| format!("Bearer {key}");

    let r = h
        .as_caller(
            "GET",
            "/v1/keys",
            &[("authorization", &bearer(&plain_key))],
            None,
        )
        .await;
    assert_eq!(
        (r.status, &r.json["error"]),
        (StatusCode::FORBIDDEN, &json!("forbidden")),
        "{}",
        r.text
    );
    assert!(r.text.contains("keys:write"), "{}", r.text);
    for (what, key, message) in [
        (
            "unknown",
            unknown.as_str(),
            "unknown key: keyservice did not issue it",
        ),
        (
            "another secret",
            other_secret.as_str(),
            "invalid or expired token",
        ),
        ("not a JWT", "not-a-jwt", "invalid or expired token"),
    ] {
        let r = h
            .as_caller("GET", "/v1/keys", &[("authorization", &bearer(key))], None)
            .await;
        assert_eq!(
            (r.status, &r.json),
            (
                StatusCode::UNAUTHORIZED,
                &json!({"error": "unauthorized", "message": message})
            ),
            "{what}"
        );
    }
    let r = h
        .as_caller(
            "GET",
            "/v1/keys",
            &[("authorization", &bearer(&manager_key))],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let manager_id = r.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "alice-manager")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.admin("DELETE", &format!("/v1/keys/{manager_id}"), None)
        .await;
    let r = h
        .as_caller(
            "GET",
            "/v1/keys",
            &[("authorization", &bearer(&manager_key))],
            None,
        )
        .await;
    assert_eq!(
        (r.status, &r.json["message"]),
        (StatusCode::UNAUTHORIZED, &json!("revoked token"))
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = h
        .as_caller(
            "GET",
            "/v1/keys",
            &[("authorization", &bearer(&temporary_key))],
            None,
        )
        .await;
    assert_eq!(
        (r.status, &r.json["message"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid or expired token"))
    );

    // Users alone, no admin token configured: a would-be admin token opens nothing.
    let (url, _dir) = common::database(backend).await;
    let users_only = {
        let store = keyservice::store::open(&url).await.unwrap();
        app(AppState::new(store, SECRET.as_bytes()).with_api_key_callers())
    };
    let response = users_only
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

both_backends!(
    key_callers_see_and_revoke_only_their_orgs_or_their_own_keys,
    key_callers_issue_keys_for_themselves_with_scopes_they_hold,
    identity_headers_mean_nothing_and_keys_are_verified_here,
);
