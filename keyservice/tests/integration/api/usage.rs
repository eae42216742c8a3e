//! Usage: the edges' reports (`POST /v1/usage`) applied once each, digests that are no stored key,
//! reports refused whole, retention, a database that is away; and a key's usage as its owner
//! sees it (`last_used_at` in the key objects, `GET /v1/keys/{id}/usage`).

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use keyservice::time::{MS_PER_DAY, date, rfc3339, today};
use serde_json::{Value, json};
use testkit::token::sha256_hex;

use crate::common::{self, Backend, Harness, sample};

/// A batch id: 32 lowercase hex characters.
pub fn batch_id(n: u64) -> String {
    format!("{n:032x}")
}

/// One entry of a report; `at_ms` is the offset of the last use into the day.
pub fn entry(sha256: &str, day: i64, at_ms: i64, counts: [u64; 3]) -> Value {
    json!({
        "sha256": sha256, "day": day, "last_used_ms": day * MS_PER_DAY + at_ms,
        "allowed": counts[0], "forbidden": counts[1], "rate_limited": counts[2]
    })
}

/// `POST /v1/usage` as the edge sends it: no credentials.
async fn report(h: &Harness, body: Value) -> common::Reply {
    post_report(h, Some("application/json"), body.to_string()).await
}

async fn post_report(h: &Harness, content_type: Option<&str>, body: String) -> common::Reply {
    let mut builder = Request::post("/v1/usage");
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    h.send_any(builder.body(Body::from(body)).unwrap()).await
}

/// Issues a key; its id and digest.
async fn issue(h: &Harness, user: &str, org: Option<&str>, name: &str) -> (String, String) {
    let created = h
        .create(json!({"user_id": user, "org_id": org, "name": name}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    (
        created.json["id"].as_str().unwrap().to_owned(),
        sha256_hex(created.json["key"].as_str().unwrap()),
    )
}

/// Every (key, day, allowed, forbidden, rate_limited) row, as stored.
async fn usage_rows(h: &Harness) -> Vec<(String, i64, i64, i64, i64)> {
    on_raw!(&h.raw, pool => sqlx::query_as(
        "SELECT key_id, day, allowed, forbidden, rate_limited FROM key_usage ORDER BY key_id, day",
    )
    .fetch_all(pool)
    .await
    .unwrap())
}

async fn batch_count(h: &Harness) -> i64 {
    on_raw!(&h.raw, pool => sqlx::query_scalar("SELECT COUNT(*) FROM usage_batches")
        .fetch_one(pool)
        .await
        .unwrap())
}

fn listed<'a>(list: &'a common::Reply, id: &str) -> &'a Value {
    list.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {}", list.text))
}

async fn a_report_is_applied_and_shown(backend: Backend) {
    let h = Harness::new(backend).await;
    let (alice, alice_sha) = issue(&h, "alice", Some("acme"), "a").await;
    let (bob, bob_sha) = issue(&h, "bob", None, "b").await;
    let (idle, _) = issue(&h, "carol", None, "idle").await;
    let today = today();
    // Entries may repeat a (digest, day): they add up; the latest use wins.
    let first = report(
        &h,
        json!({"batch": batch_id(1), "dropped": 3, "keys": [
            entry(&alice_sha, today, 5_000, [10, 1, 2]),
            entry(&alice_sha, today - 1, 80_000_000, [7, 0, 0]),
            entry(&bob_sha, today, 1_000, [1, 0, 0]),
            entry(&alice_sha, today, 9_000, [5, 0, 1]),
        ]}),
    )
    .await;
    assert_eq!(first.status, StatusCode::NO_CONTENT, "{}", first.text);
    assert_eq!(first.text, "");
    // A later report adds to the same day; an older last use does not move last_used_at back.
    let second = report(
        &h,
        json!({"batch": batch_id(2), "dropped": 0, "keys": [
            entry(&alice_sha, today, 2_000, [100, 0, 0]),
        ]}),
    )
    .await;
    assert_eq!(second.status, StatusCode::NO_CONTENT, "{}", second.text);

    let alice_last = rfc3339((today * MS_PER_DAY + 9_000) / 1000);
    let list = h.admin("GET", "/v1/keys", None).await;
    assert_eq!(listed(&list, &alice)["last_used_at"], alice_last.as_str());
    assert_eq!(
        listed(&list, &bob)["last_used_at"],
        rfc3339((today * MS_PER_DAY + 1_000) / 1000).as_str()
    );
    assert_eq!(listed(&list, &idle)["last_used_at"], Value::Null);

    let usage = h
        .admin("GET", &format!("/v1/keys/{alice}/usage"), None)
        .await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.text);
    assert_eq!(
        usage.json,
        json!({
            "id": alice, "last_used_at": alice_last,
            "days": [
                {"day": date(today - 1), "allowed": 7, "forbidden": 0, "rate_limited": 0},
                {"day": date(today), "allowed": 115, "forbidden": 1, "rate_limited": 3},
            ],
            "totals": {"allowed": 122, "forbidden": 1, "rate_limited": 3}
        })
    );
    let one_day = h
        .admin("GET", &format!("/v1/keys/{alice}/usage?days=1"), None)
        .await;
    assert_eq!(one_day.json["days"].as_array().unwrap().len(), 1);
    assert_eq!(one_day.json["totals"]["allowed"], 115);
    let none = h
        .admin("GET", &format!("/v1/keys/{idle}/usage"), None)
        .await;
    assert_eq!(
        none.json,
        json!({"id": idle, "last_used_at": null, "days": [],
               "totals": {"allowed": 0, "forbidden": 0, "rate_limited": 0}})
    );

    let mut expected = vec![
        (alice.clone(), today - 1, 7, 0, 0),
        (alice.clone(), today, 115, 1, 3),
        (bob.clone(), today, 1, 0, 0),
    ];
    expected.sort();
    assert_eq!(usage_rows(&h).await, expected);
    let m = h.metrics().await;
    for (series, value) in [
        ("keyservice_usage_reports_total{result=\"applied\"}", 2.0),
        ("keyservice_usage_reports_total{result=\"duplicate\"}", 0.0),
        (
            "keyservice_usage_requests_total{outcome=\"allowed\"}",
            123.0,
        ),
        (
            "keyservice_usage_requests_total{outcome=\"forbidden\"}",
            1.0,
        ),
        (
            "keyservice_usage_requests_total{outcome=\"rate_limited\"}",
            3.0,
        ),
        ("keyservice_usage_dropped_total", 3.0),
        ("keyservice_usage_unknown_keys_total", 0.0),
    ] {
        assert_eq!(sample(&m, series), value, "{series}: {m}");
    }
    assert!(
        m.contains("keyservice_usage_reports_total{result=\"error\"} 0"),
        "{m}"
    );
}

async fn a_retried_batch_is_applied_once(backend: Backend) {
    let h = Harness::new(backend).await;
    let (id, sha) = issue(&h, "u", None, "k").await;
    let today = today();
    let body = json!({"batch": batch_id(7), "dropped": 4, "keys": [
        entry(&sha, today, 1_000, [5, 1, 0]),
    ]});
    for _ in 0..3 {
        let r = report(&h, body.clone()).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    }
    // The batch id is what identifies a report: the same id with other counts is a retry too.
    let other = json!({"batch": batch_id(7), "dropped": 0, "keys": [
        entry(&sha, today, 2_000, [50, 0, 0]),
    ]});
    assert_eq!(report(&h, other).await.status, StatusCode::NO_CONTENT);
    assert_eq!(usage_rows(&h).await, [(id.clone(), today, 5, 1, 0)]);
    assert_eq!(batch_count(&h).await, 1);
    let usage = h.admin("GET", &format!("/v1/keys/{id}/usage"), None).await;
    assert_eq!(usage.json["totals"]["allowed"], 5);
    assert_eq!(
        usage.json["last_used_at"],
        rfc3339((today * MS_PER_DAY + 1_000) / 1000).as_str(),
        "a duplicate does not move last_used_at either"
    );
    let m = h.metrics().await;
    assert_eq!(
        sample(&m, "keyservice_usage_reports_total{result=\"applied\"}"),
        1.0
    );
    assert_eq!(
        sample(&m, "keyservice_usage_reports_total{result=\"duplicate\"}"),
        3.0
    );
    assert_eq!(sample(&m, "keyservice_usage_dropped_total"), 4.0);
    assert_eq!(
        sample(&m, "keyservice_usage_requests_total{outcome=\"allowed\"}"),
        5.0
    );
}

async fn digests_that_are_no_stored_key_are_ignored_and_counted(backend: Backend) {
    let h = Harness::new(backend).await;
    let (id, sha) = issue(&h, "u", None, "k").await;
    let today = today();
    // Temporary keys (with `exp`) are never stored: the edge reports them like any other.
    let temporary = sha256_hex("a temporary key");
    let r = report(
        &h,
        json!({"batch": batch_id(1), "dropped": 0, "keys": [
            entry(&temporary, today, 1, [9, 9, 9]),
            entry(&sha, today, 1, [2, 0, 0]),
            entry(&temporary, today - 1, 1, [1, 0, 0]),
            entry(&sha256_hex("another"), today, 1, [1, 0, 0]),
        ]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(usage_rows(&h).await, [(id, today, 2, 0, 0)]);
    let m = h.metrics().await;
    assert_eq!(
        sample(&m, "keyservice_usage_unknown_keys_total"),
        3.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "keyservice_usage_requests_total{outcome=\"allowed\"}"),
        2.0,
        "only what was applied: {m}"
    );
    // A report of unknown digests only is still applied, once.
    let only_unknown = json!({"batch": batch_id(2), "dropped": 0, "keys": [entry(&temporary, today, 1, [1, 0, 0])]});
    assert_eq!(
        report(&h, only_unknown.clone()).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        report(&h, only_unknown).await.status,
        StatusCode::NO_CONTENT
    );
    let m = h.metrics().await;
    assert_eq!(
        sample(&m, "keyservice_usage_unknown_keys_total"),
        4.0,
        "{m}"
    );
}

async fn a_bad_report_is_400_naming_the_field_and_writes_nothing(backend: Backend) {
    let h = Harness::new(backend).await;
    let (_, sha) = issue(&h, "u", None, "k").await;
    let today = today();
    let good = entry(&sha, today, 1_000, [1, 0, 0]);
    let with = |keys: Vec<Value>| json!({"batch": batch_id(0xab9), "dropped": 0, "keys": keys});
    let mut unknown_field = good.clone();
    unknown_field["denied"] = json!(1);
    let mut late = good.clone();
    late["last_used_ms"] = json!((today + 1) * MS_PER_DAY);
    let mut early = good.clone();
    early["last_used_ms"] = json!(today * MS_PER_DAY - 1);
    let mut huge = good.clone();
    huge["rate_limited"] = json!(9_007_199_254_740_993_u64);
    let mut negative = good.clone();
    negative["allowed"] = json!(-1);
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("forbidden");
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"batch": batch_id(0xab9).to_uppercase(), "dropped": 0, "keys": []}),
            "invalid_request",
            "batch must be exactly 32 lowercase hex characters",
        ),
        (
            json!({"batch": "abc", "dropped": 0, "keys": []}),
            "invalid_request",
            "batch must be",
        ),
        (
            json!({"batch": batch_id(0xab9), "dropped": 9_007_199_254_740_993_u64, "keys": []}),
            "invalid_request",
            "dropped must be at most",
        ),
        (
            with(vec![good.clone(), entry(&sha, today - 3, 0, [1, 0, 0])]),
            "invalid_request",
            "keys[1].day must be within 2 days",
        ),
        (
            with(vec![entry(&sha, today + 3, 0, [1, 0, 0]), good.clone()]),
            "invalid_request",
            "keys[0].day must be within 2 days",
        ),
        (
            with(vec![good.clone(), late]),
            "invalid_request",
            "keys[1].last_used_ms must fall within its day",
        ),
        (
            with(vec![early]),
            "invalid_request",
            "keys[0].last_used_ms must fall within its day",
        ),
        (
            with(vec![good.clone(), good.clone(), huge]),
            "invalid_request",
            "keys[2].rate_limited must be at most 9007199254740992",
        ),
        (
            with(vec![
                good.clone(),
                entry(&sha.to_uppercase(), today, 0, [1, 0, 0]),
            ]),
            "invalid_request",
            "keys[1].sha256 must be exactly 64 lowercase hex characters",
        ),
        (
            with(vec![good.clone(); 1001]),
            "invalid_request",
            "keys holds 1001 entries; a report may hold at most 1000",
        ),
        (
            with(vec![good.clone(), unknown_field]),
            "invalid_body",
            "keys[1].denied",
        ),
        (with(vec![negative]), "invalid_body", "keys[0].allowed"),
        (with(vec![missing]), "invalid_body", "keys[0]"),
        (
            json!({"batch": batch_id(0xab9), "keys": [good.clone()]}),
            "invalid_body",
            "dropped",
        ),
        (
            json!({"batch": batch_id(0xab9), "dropped": 0, "keys": [], "edge": "x"}),
            "invalid_body",
            "edge",
        ),
        (json!([good.clone()]), "invalid_body", "invalid JSON body"),
    ];
    let count = cases.len();
    for (body, code, message) in cases {
        let r = report(&h, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.json["error"], code, "{body}: {}", r.text);
        let text = r.json["message"].as_str().unwrap();
        assert!(
            text.starts_with(message) || text.contains(message),
            "{message:?} in {text:?}"
        );
        assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    }
    let body = with(vec![good.clone()]).to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/json; charset=latin1"),
    ] {
        let r = post_report(&h, content_type, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{content_type:?}");
        assert_eq!(r.json["error"], "invalid_body");
    }
    // Nothing of any of them was written: no counts, no last use, no batch id (so the good
    // report under the same id is applied afterwards).
    assert!(usage_rows(&h).await.is_empty());
    assert_eq!(batch_count(&h).await, 0);
    let list = h.admin("GET", "/v1/keys", None).await;
    assert_eq!(list.json["keys"][0]["last_used_at"], Value::Null);
    let m = h.metrics().await;
    assert_eq!(
        sample(&m, "keyservice_usage_reports_total{result=\"rejected\"}"),
        (count + 3) as f64,
        "{m}"
    );
    assert_eq!(
        sample(&m, "keyservice_usage_reports_total{result=\"applied\"}"),
        0.0
    );
    assert_eq!(
        report(&h, with(vec![good])).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(usage_rows(&h).await.len(), 1);
}

/// The route takes reports larger than the other routes' 64 KiB (a thousand entries), and
/// refuses more than 256 KiB with 413.
async fn reports_up_to_256_kib_are_taken(backend: Backend) {
    let h = Harness::new(backend).await;
    let (id, sha) = issue(&h, "u", None, "k").await;
    let today = today();
    let mut keys: Vec<Value> = (0..999_u32)
        .map(|n| entry(&sha256_hex(&n.to_string()), today, 1, [1, 0, 0]))
        .collect();
    keys.push(entry(&sha, today, 1, [1, 0, 0]));
    let body = json!({"batch": batch_id(1), "dropped": 0, "keys": keys});
    let size = body.to_string().len();
    assert!(size > 64 * 1024 && size < 256 * 1024, "{size}");
    let r = report(&h, body).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(usage_rows(&h).await, [(id, today, 1, 0, 0)]);

    let padding = " ".repeat(256 * 1024);
    let too_large = format!(
        r#"{{"batch": "{}", "dropped": 0, "keys": []{padding}}}"#,
        batch_id(2)
    );
    let r = post_report(&h, Some("application/json"), too_large).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"error": "payload_too_large", "message": "request body is larger than 256 KiB"})
    );
    assert_eq!(batch_count(&h).await, 1);
    // The other routes keep their 64 KiB.
    let name = "n".repeat(70 * 1024);
    let r = h.create(json!({"user_id": "u", "name": name})).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json["message"], "request body is larger than 64 KiB");
}

async fn usage_and_batch_ids_past_retention_are_pruned(backend: Backend) {
    let h = Harness::new(backend).await;
    let (id, sha) = issue(&h, "u", None, "k").await;
    let today = today();
    let r = report(
        &h,
        json!({"batch": batch_id(1), "dropped": 0, "keys": [entry(&sha, today, 1, [3, 0, 0])]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // Days older than any report could carry, as if kept from long ago.
    on_raw!(&h.raw, pool => {
        for (day, batch) in [(today - 100, batch_id(100)), (today - 91, batch_id(91)), (today - 90, batch_id(90))] {
            sqlx::query("INSERT INTO key_usage (key_id, day, allowed, forbidden, rate_limited) VALUES ($1, $2, 1, 0, 0)")
                .bind(&id)
                .bind(day)
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("INSERT INTO usage_batches (batch, newest_day, received_ms) VALUES ($1, $2, 0)")
                .bind(batch)
                .bind(day)
                .execute(pool)
                .await
                .unwrap();
        }
    });
    let year = h
        .admin("GET", &format!("/v1/keys/{id}/usage?days=366"), None)
        .await;
    assert_eq!(year.json["days"].as_array().unwrap().len(), 4);
    assert_eq!(year.json["totals"]["allowed"], 6);
    // What `serve` does every minute with the default 90 days.
    let pruned = h.store.prune_usage(today - 90, today - 3).await.unwrap();
    assert_eq!((pruned.days, pruned.batches), (2, 3));
    let days: Vec<i64> = usage_rows(&h).await.iter().map(|row| row.1).collect();
    assert_eq!(days, [today - 90, today]);
    assert_eq!(batch_count(&h).await, 1, "today's batch id is kept");
    let again = h.store.prune_usage(today - 90, today - 3).await.unwrap();
    assert_eq!((again.days, again.batches), (0, 0));
    // Its batch id kept, a retry of today's report is still a duplicate.
    let r = report(
        &h,
        json!({"batch": batch_id(1), "dropped": 0, "keys": [entry(&sha, today, 1, [3, 0, 0])]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let year = h
        .admin("GET", &format!("/v1/keys/{id}/usage?days=366"), None)
        .await;
    assert_eq!(year.json["totals"]["allowed"], 4);
}

async fn a_database_that_is_away_is_503_and_counted_as_an_error(backend: Backend) {
    let h = Harness::new(backend).await;
    let (id, sha) = issue(&h, "u", None, "k").await;
    h.store.close().await;
    let r = report(
        &h,
        json!({"batch": batch_id(1), "dropped": 0, "keys": [entry(&sha, today(), 1, [1, 0, 0])]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"error": "unavailable", "message": "the database is unavailable"})
    );
    let r = h.admin("GET", &format!("/v1/keys/{id}/usage"), None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    let m = h.metrics().await;
    assert_eq!(
        sample(&m, "keyservice_usage_reports_total{result=\"error\"}"),
        1.0,
        "{m}"
    );
}

/// The usage of a key is shown to whoever may act on it: the admin, or a user of its
/// org (or its owner, for a personal key). Any other key is the 404 of a key that does not exist.
async fn usage_is_shown_only_to_callers_who_may_act_on_the_key(backend: Backend) {
    let h = Harness::with(backend, |s| s.with_api_key_callers()).await;
    let (acme_key, _) = issue(&h, "bob", Some("acme"), "bob-acme").await;
    let (globex_key, _) = issue(&h, "carol", Some("globex"), "carol-globex").await;
    let (alice_personal, _) = issue(&h, "alice", None, "alice-personal").await;
    let at_acme = crate::common::key_caller(&h, "alice", Some("acme"), &[]).await;
    let alone = crate::common::key_caller(&h, "alice", None, &[]).await;
    let alice_at_acme = [("authorization", at_acme.as_str())];
    let alice_alone = [("authorization", alone.as_str())];

    let r = h
        .as_caller(
            "GET",
            &format!("/v1/keys/{acme_key}/usage"),
            &alice_at_acme,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["id"], acme_key.as_str());
    let r = h
        .as_caller(
            "GET",
            &format!("/v1/keys/{alice_personal}/usage"),
            &alice_alone,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for (caller, key) in [
        (&alice_at_acme[..], &globex_key),
        (&alice_at_acme[..], &alice_personal),
        (&alice_alone[..], &acme_key),
    ] {
        let usage = h
            .as_caller("GET", &format!("/v1/keys/{key}/usage"), caller, None)
            .await;
        let revoke = h
            .as_caller("DELETE", &format!("/v1/keys/{key}"), caller, None)
            .await;
        assert_eq!(usage.status, StatusCode::NOT_FOUND, "{}", usage.text);
        assert_eq!(
            usage.json,
            json!({"error": "not_found", "message": format!("no key with id {key}")})
        );
        assert_eq!(usage.json, revoke.json, "the same refusal as a revocation");
    }
    let r = h
        .as_caller("GET", "/v1/keys/no-such-key/usage", &alice_at_acme, None)
        .await;
    assert_eq!(r.json["message"], "no key with id no-such-key");
    let r = h
        .as_caller("GET", "/v1/keys/a.b.c/usage", &alice_at_acme, None)
        .await;
    assert_eq!(
        (r.status, r.json["message"].clone()),
        (StatusCode::NOT_FOUND, json!("no such key"))
    );
    let r = h.get(&format!("/v1/keys/{acme_key}/usage")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    for query in ["days=0", "days=367", "days=abc", "days=-1", "day=3"] {
        let r = h
            .admin("GET", &format!("/v1/keys/{acme_key}/usage?{query}"), None)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.text);
        assert_eq!(r.json["error"], "invalid_query", "{query}");
    }
    let r = h
        .admin("GET", &format!("/v1/keys/{acme_key}/usage?days=366"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Nothing was revoked by the refused attempts above.
    let list = h.admin("GET", "/v1/keys", None).await;
    assert!(
        list.json["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["revoked_at"].is_null())
    );
}

both_backends!(
    a_report_is_applied_and_shown,
    a_retried_batch_is_applied_once,
    digests_that_are_no_stored_key_are_ignored_and_counted,
    a_bad_report_is_400_naming_the_field_and_writes_nothing,
    reports_up_to_256_kib_are_taken,
    usage_and_batch_ids_past_retention_are_pruned,
    a_database_that_is_away_is_503_and_counted_as_an_error,
    usage_is_shown_only_to_callers_who_may_act_on_the_key,
);
