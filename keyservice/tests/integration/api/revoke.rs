//! Revoking keys, and the filter's question: is this key (by its hash) still good, and for how long
//! may the answer be cached.

use axum::http::{StatusCode, header};
use keyservice::store::KeyFilter;
use serde_json::json;
use testkit::token::sha256_hex;

use crate::common::{Backend, Harness, record};

async fn revoking_flips_the_revocation_answer_and_is_idempotent(backend: Backend) {
    let h = Harness::new(backend).await;
    let created = h.create(json!({"user_id": "u", "name": "n"})).await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    let hash = sha256_hex(created.json["key"].as_str().unwrap());

    let r = h.get(&format!("/v1/revocations/{hash}")).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (StatusCode::OK, json!({"status": "active"}))
    );
    assert_eq!(r.headers[header::CACHE_CONTROL], "max-age=86400");

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
        .get(&format!("/v1/revocations/{}", sha256_hex("never issued")))
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

    let good = sha256_hex("x");
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

async fn revocation_answers_carry_the_configured_cache_lifetimes(backend: Backend) {
    let policy = keyservice::CachePolicy {
        active_seconds: 5,
        revoked_seconds: 600,
    };
    let h = Harness::with(backend, |state| state.with_cache_policy(policy)).await;
    let created = h.create(json!({"user_id": "u", "name": "n"})).await;
    let hash = sha256_hex(created.json["key"].as_str().unwrap());
    let r = h.get(&format!("/v1/revocations/{hash}")).await;
    assert_eq!(r.headers[header::CACHE_CONTROL], "max-age=5");
    let id = created.json["id"].as_str().unwrap();
    h.admin("DELETE", &format!("/v1/keys/{id}"), None).await;
    let r = h.get(&format!("/v1/revocations/{hash}")).await;
    assert_eq!(r.headers[header::CACHE_CONTROL], "max-age=600");
}

both_backends!(
    revoking_flips_the_revocation_answer_and_is_idempotent,
    revoking_again_keeps_the_first_time,
    revoking_a_key_with_expiry_carries_the_note,
    unknown_and_malformed_ids,
    revocation_endpoint_answers_by_hash_without_auth,
    revocation_answers_carry_the_configured_cache_lifetimes,
);
