//! Per-key rate limits: chosen at issue, changed with `PATCH /v1/keys/{id}` by whoever may
//! revoke the key, refused with a 400 naming the entry, and handed to the edge in the revocation
//! answer's `keygate-rate-limit` header.

use axum::http::{StatusCode, header};
use serde_json::{Value, json};
use testkit::token::sha256_hex;

use crate::common::{Backend, Harness};

const HEADER: &str = "keygate-rate-limit";

async fn issue(h: &Harness, body: Value) -> (String, String) {
    let created = h.create(body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    (
        created.json["id"].as_str().unwrap().to_owned(),
        sha256_hex(created.json["key"].as_str().unwrap()),
    )
}

/// The revocation answer for a digest: status and the limits header, if any.
async fn answer(h: &Harness, sha256: &str) -> (StatusCode, Option<String>) {
    let r = h.get(&format!("/v1/revocations/{sha256}")).await;
    (
        r.status,
        r.headers
            .get(HEADER)
            .map(|value| value.to_str().unwrap().to_owned()),
    )
}

async fn stored_limits(h: &Harness, id: &str) -> String {
    on_raw!(&h.raw, pool => sqlx::query_scalar("SELECT rate_limits FROM api_keys WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap())
}

async fn feed_events(h: &Harness) -> Vec<(String, String)> {
    let feed = h.get("/v1/revocations?after=0").await;
    feed.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn keys_carry_their_limits_sorted_and_the_revocation_answer_names_them(backend: Backend) {
    let h = Harness::new(backend).await;
    let created = h
        .create(json!({"user_id": "u", "name": "metered", "rate_limits": [
            {"requests": 1000, "per_seconds": 86400},
            {"requests": 100, "per_seconds": 60},
        ]}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let sorted = json!([
        {"requests": 100, "per_seconds": 60},
        {"requests": 1000, "per_seconds": 86400},
    ]);
    assert_eq!(created.json["rate_limits"], sorted);
    let id = created.json["id"].as_str().unwrap().to_owned();
    let sha = sha256_hex(created.json["key"].as_str().unwrap());
    assert!(
        super::decode(created.json["key"].as_str().unwrap())
            .get("rate_limits")
            .is_none(),
        "limits can change, so they are not in the key"
    );
    assert_eq!(
        stored_limits(&h, &id).await,
        r#"[{"requests":100,"per_seconds":60},{"requests":1000,"per_seconds":86400}]"#
    );
    let (plain_id, plain) = issue(&h, json!({"user_id": "u", "name": "plain"})).await;

    let list = h.admin("GET", "/v1/keys", None).await;
    let listed = |id: &str| {
        list.json["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .unwrap()["rate_limits"]
            .clone()
    };
    assert_eq!(listed(&id), sorted);
    assert_eq!(listed(&plain_id), json!([]));

    let r = h.get(&format!("/v1/revocations/{sha}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[HEADER], "100/60, 1000/86400");
    assert_eq!(r.headers[header::CACHE_CONTROL], "max-age=86400");
    assert_eq!(r.json, json!({"status": "active"}), "the body is unchanged");
    assert_eq!(
        answer(&h, &plain).await,
        (StatusCode::OK, None),
        "no header without limits"
    );
    assert_eq!(
        answer(&h, &sha256_hex("unknown")).await,
        (StatusCode::NOT_FOUND, None)
    );
    let r = h.admin("DELETE", &format!("/v1/keys/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        answer(&h, &sha).await,
        (StatusCode::GONE, None),
        "a revoked key's limits do not matter"
    );
}

async fn bad_limits_are_400_naming_the_entry_and_change_nothing(backend: Backend) {
    let h = Harness::new(backend).await;
    let (id, _) = issue(
        &h,
        json!({"user_id": "u", "name": "k", "rate_limits": [{"requests": 5, "per_seconds": 1}]}),
    )
    .await;
    let limit =
        |requests: i64, per_seconds: i64| json!({"requests": requests, "per_seconds": per_seconds});
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!([limit(1, 60), limit(0, 3600)]),
            "invalid_request",
            "rate_limits[1].requests must be at least 1",
        ),
        (
            json!([limit(1, 0)]),
            "invalid_request",
            "rate_limits[0].per_seconds must be from 1 to 2678400 (31 days)",
        ),
        (
            json!([limit(1, 60), limit(1, 2_678_401)]),
            "invalid_request",
            "rate_limits[1].per_seconds must be from 1 to 2678400",
        ),
        (
            json!([limit(1, 60), limit(2, 3600), limit(3, 60)]),
            "invalid_request",
            "rate_limits[2].per_seconds is the same as rate_limits[0]'s",
        ),
        (
            json!([
                limit(1, 1),
                limit(1, 2),
                limit(1, 3),
                limit(1, 4),
                limit(1, 5)
            ]),
            "invalid_request",
            "rate_limits may hold at most 4 entries",
        ),
        (
            json!([limit(-1, 60)]),
            "invalid_body",
            "rate_limits[0].requests",
        ),
        (
            json!([limit(4_294_967_296, 60)]),
            "invalid_body",
            "rate_limits[0].requests",
        ),
        (
            json!([{"requests": 1, "per_seconds": 60, "burst": 2}]),
            "invalid_body",
            "rate_limits[0].burst",
        ),
        (json!([{"requests": 1}]), "invalid_body", "rate_limits[0]"),
        (
            json!({"requests": 1, "per_seconds": 1}),
            "invalid_body",
            "rate_limits",
        ),
    ];
    for (limits, code, message) in &cases {
        let r = h
            .create(json!({"user_id": "u", "name": "new", "rate_limits": limits}))
            .await;
        let patched = h
            .admin(
                "PATCH",
                &format!("/v1/keys/{id}"),
                Some(json!({"rate_limits": limits})),
            )
            .await;
        for r in [r, patched] {
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{limits}: {}", r.text);
            assert_eq!(r.json["error"], *code, "{limits}: {}", r.text);
            let text = r.json["message"].as_str().unwrap();
            assert!(text.contains(message), "{message:?} in {text:?}");
        }
    }
    assert_eq!(h.row_count().await, 1, "no key was issued");
    assert_eq!(
        stored_limits(&h, &id).await,
        r#"[{"requests":5,"per_seconds":1}]"#
    );
    assert!(feed_events(&h).await.is_empty(), "no change was announced");
    // The body of a PATCH is exactly `{"rate_limits": [...]}`.
    for body in [
        json!({}),
        json!({"rate_limits": [], "name": "x"}),
        json!([]),
    ] {
        let r = h
            .admin("PATCH", &format!("/v1/keys/{id}"), Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.json["error"], "invalid_body", "{body}");
    }
}

async fn a_patch_changes_the_limits_the_edge_is_told_and_announces_it(backend: Backend) {
    let h = Harness::new(backend).await;
    let (id, sha) = issue(&h, json!({"user_id": "u", "name": "k"})).await;
    assert_eq!(answer(&h, &sha).await, (StatusCode::OK, None));

    let r = h
        .admin(
            "PATCH",
            &format!("/v1/keys/{id}"),
            Some(json!({"rate_limits": [
                {"requests": 50000, "per_seconds": 2678400},
                {"requests": 10, "per_seconds": 1},
            ]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let listed = h.admin("GET", "/v1/keys", None).await;
    assert_eq!(r.json, listed.json["keys"][0], "the key object, as listed");
    assert_eq!(
        r.json["rate_limits"],
        json!([{"requests": 10, "per_seconds": 1}, {"requests": 50000, "per_seconds": 2678400}])
    );
    assert_eq!(
        answer(&h, &sha).await,
        (StatusCode::OK, Some("10/1, 50000/2678400".to_owned()))
    );
    // The same limits again: 200, and nothing to announce.
    let again = h
        .admin(
            "PATCH",
            &format!("/v1/keys/{id}"),
            Some(json!({"rate_limits": [
                {"requests": 10, "per_seconds": 1},
                {"requests": 50000, "per_seconds": 2678400},
            ]})),
        )
        .await;
    assert_eq!((again.status, &again.json), (StatusCode::OK, &r.json));
    // `[]` clears them.
    let cleared = h
        .admin(
            "PATCH",
            &format!("/v1/keys/{id}"),
            Some(json!({"rate_limits": []})),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    assert_eq!(cleared.json["rate_limits"], json!([]));
    assert_eq!(answer(&h, &sha).await, (StatusCode::OK, None));
    assert_eq!(
        feed_events(&h).await,
        [
            ("limits_changed".to_owned(), sha.clone()),
            ("limits_changed".to_owned(), sha.clone())
        ]
    );

    // Unknown ids and ids that cannot be one are 404s as for a revocation; a revoked key's
    // limits no longer change (409), and nothing is announced.
    let r = h
        .admin(
            "PATCH",
            "/v1/keys/no-such-key",
            Some(json!({"rate_limits": []})),
        )
        .await;
    assert_eq!(
        (r.status, r.json.clone()),
        (
            StatusCode::NOT_FOUND,
            json!({"error": "not_found", "message": "no key with id no-such-key"})
        )
    );
    let r = h
        .admin("PATCH", "/v1/keys/a.b.c", Some(json!({"rate_limits": []})))
        .await;
    assert_eq!(
        (r.status, r.json["message"].clone()),
        (StatusCode::NOT_FOUND, json!("no such key"))
    );
    h.admin("DELETE", &format!("/v1/keys/{id}"), None).await;
    let r = h
        .admin(
            "PATCH",
            &format!("/v1/keys/{id}"),
            Some(json!({"rate_limits": [{"requests": 1, "per_seconds": 1}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"error": "conflict", "message": format!("key {id} is revoked: its rate limits can no longer change")})
    );
    assert_eq!(stored_limits(&h, &id).await, "[]");
    let events: Vec<String> = feed_events(&h).await.into_iter().map(|e| e.0).collect();
    assert_eq!(events, ["limits_changed", "limits_changed", "revoked"]);
}

/// A key's own limits replace the edge's per-key default, so a user cannot choose them:
/// only the admin token issues keys with limits or changes them.
async fn only_the_admin_token_sets_limits_since_they_replace_the_edges_default(backend: Backend) {
    let h = Harness::with(backend, |s| s.with_api_key_callers()).await;
    let (bob_acme, _) = issue(&h, json!({"user_id": "bob", "org_id": "acme", "name": "b"})).await;
    let alice = crate::common::key_caller(&h, "alice", Some("acme"), &[]).await;
    let alice_at_acme = [("authorization", alice.as_str())];
    let forbidden = json!({
        "error": "forbidden",
        "message": "rate limits are set with the admin token: a key's own limits replace the edge's per-key default"
    });
    // A user issuing a key with limits of its own choosing: refused, nothing written.
    let r = h
        .as_caller(
            "POST",
            "/v1/keys",
            &alice_at_acme,
            Some(json!({"name": "mine", "rate_limits": [{"requests": 1000000, "per_seconds": 1}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.json, forbidden);
    // Without limits (or an empty list) it issues as before.
    let r = h
        .as_caller(
            "POST",
            "/v1/keys",
            &alice_at_acme,
            Some(json!({"name": "mine", "rate_limits": []})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["rate_limits"], json!([]));
    // Changing a visible key's limits, even clearing them: refused.
    for body in [
        json!({"rate_limits": [{"requests": 7, "per_seconds": 60}]}),
        json!({"rate_limits": []}),
    ] {
        let r = h
            .as_caller(
                "PATCH",
                &format!("/v1/keys/{bob_acme}"),
                &alice_at_acme,
                Some(body),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert_eq!(r.json, forbidden);
    }
    let r = h
        .as_caller(
            "PATCH",
            &format!("/v1/keys/{bob_acme}"),
            &[],
            Some(json!({"rate_limits": []})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(stored_limits(&h, &bob_acme).await, "[]");
}

both_backends!(
    keys_carry_their_limits_sorted_and_the_revocation_answer_names_them,
    bad_limits_are_400_naming_the_entry_and_change_nothing,
    a_patch_changes_the_limits_the_edge_is_told_and_announces_it,
    only_the_admin_token_sets_limits_since_they_replace_the_edges_default,
);
