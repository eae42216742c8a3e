//! `/v1/authorize`: keygate's decision made by keyservice, for a proxy that cannot run the filter.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use jsonwebtoken::Algorithm;
use keyservice::authorizer::Authorizer;
use serde_json::{Value, json};

use crate::common::{self, Backend, Harness, SECRET, sample};

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
    authorize_answers_like_the_filter,
    authorize_follows_the_configurations_options,
);
