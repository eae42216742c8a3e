//! Callers identified by the edge (keygate's identity headers and payload scopes): each sees,
//! issues and revokes only what its org or its own identity allows.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyservice::auth::EdgeHeaders;
use keyservice::{AppState, app};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::decode;
use crate::common::{self, ADMIN, Backend, Harness, SECRET};

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

both_backends!(
    edge_callers_see_and_revoke_only_their_orgs_or_their_own_keys,
    edge_callers_issue_keys_for_themselves_with_scopes_they_hold,
    edge_identity_is_used_only_when_trusted_and_well_formed,
);
