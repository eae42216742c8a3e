//! Health, readiness, metrics and request ids; catch-all routes; the database failing or in memory.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use keyservice::{AppState, app};
use serde_json::{Value, json};
use testkit::token::sha256_hex;
use tower::ServiceExt;

use crate::common::{ADMIN, Backend, Harness, SECRET, sample};

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
    // A broken schema: the query fails inside the database (usage rows refer to keys, so
    // their table goes first).
    on_raw!(&h.raw, pool => {
        sqlx::query("DROP TABLE key_usage").execute(pool).await.unwrap();
        sqlx::query("DROP TABLE api_keys").execute(pool).await.unwrap();
    });
    let r = h.get(&format!("/v1/revocations/{}", sha256_hex("x"))).await;
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
    let r = h.get(&format!("/v1/revocations/{}", sha256_hex("x"))).await;
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

async fn health_readiness_and_metrics(backend: Backend) {
    let h = Harness::new(backend).await;
    let r = h.get("/readyz").await;
    assert_eq!(
        (r.status, r.json),
        (StatusCode::OK, json!({"status": "ready"}))
    );

    let created = h.create(json!({"user_id": "u", "name": "n"})).await;
    let hash = sha256_hex(created.json["key"].as_str().unwrap());
    h.get(&format!("/v1/revocations/{hash}")).await;
    h.get(&format!("/v1/revocations/{}", sha256_hex("unknown")))
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

both_backends!(
    health_and_catch_alls_are_json,
    database_failures_are_json_errors_not_panics,
    health_readiness_and_metrics,
    request_ids_are_kept_or_made,
);
