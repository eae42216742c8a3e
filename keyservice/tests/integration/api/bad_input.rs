//! Bad input on every route is a JSON 4xx.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::common::{ADMIN, Backend, Harness};

async fn bad_input_on_every_route_is_a_json_4xx(backend: Backend) {
    let h = Harness::new(backend).await;
    let auth = format!("Bearer {ADMIN}");
    let cases: [(&str, &str, Option<&str>, StatusCode, &str); 16] = [
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
        (
            "GET",
            "/v1/usage",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "POST",
            "/v1/usage",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "PATCH",
            "/v1/keys/unknown",
            Some(&auth),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "GET",
            "/v1/keys/%FF/usage",
            Some(&auth),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
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

both_backends!(bad_input_on_every_route_is_a_json_4xx,);
