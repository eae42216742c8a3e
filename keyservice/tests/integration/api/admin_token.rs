//! The management routes answer only the admin token.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;

use crate::common::{ADMIN, Backend, Harness};

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

both_backends!(management_routes_need_the_admin_token,);
