//! keyservice under hostile input, every test on SQLite and on PostgreSQL: what cannot be an id
//! or an identity never reaches the database (so both backends answer alike, and no input is a
//! 500), listings are bounded, a key sent where an id belongs is never echoed or logged, and no
//! two identities or names look alike.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyservice::store::KeyRecord;
use serde_json::{Value, json};
use testkit::http::client;
use testkit::poll;
use testkit::token::sha256_hex;

use crate::common::{self, ADMIN, Backend, Harness, record, sample, start_keyservice};

/// One of acme's keys.
fn acme_record(id: &str, created_at: i64) -> KeyRecord {
    KeyRecord {
        org_id: Some("acme".into()),
        ..record(id, "u", created_at)
    }
}

/// Every failure the database reported, by any kind.
async fn database_errors(h: &Harness) -> f64 {
    let metrics = h.metrics().await;
    ["query", "unavailable", "configuration", "migration"]
        .iter()
        .map(|kind| {
            sample(
                &metrics,
                &format!("keyservice_database_errors_total{{kind=\"{kind}\"}}"),
            )
        })
        .sum()
}

fn ids(reply: &common::Reply) -> Vec<String> {
    reply.json["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: {}", reply.status, reply.text))
        .iter()
        .map(|key| key["id"].as_str().unwrap().to_owned())
        .collect()
}

/// PostgreSQL refused a NUL byte in a bound text value with a 500; SQLite found nothing. An id
/// or a query value that cannot be one is now answered before any query, alike on both.
async fn values_that_cannot_be_ids_or_identities_never_reach_the_database(backend: Backend) {
    let h = Harness::new(backend).await;
    let created = h
        .create(json!({"user_id": "u", "org_id": "acme", "name": "k"}))
        .await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    for path in [
        "/v1/keys/%00".to_owned(),
        format!("/v1/keys/{id}%00"),
        format!("/v1/keys/%00{id}"),
        "/v1/keys/a%0Ab".to_owned(),
        "/v1/keys/..%2F..%2Fetc".to_owned(),
        "/v1/keys/a.b.c".to_owned(),
        format!("/v1/keys/{}", "x".repeat(129)),
        "/v1/keys/%E2%80%AE".to_owned(),
    ] {
        let r = h.admin("DELETE", &path, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
        assert_eq!(r.json["message"], "no such key", "{path}");
        // The routes on a key's id added with rate limits and usage answer alike.
        let limits = json!({"rate_limits": []});
        let r = h.admin("PATCH", &path, Some(limits)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "PATCH {path}: {}", r.text);
        assert_eq!(r.json["message"], "no such key", "PATCH {path}");
        if !path.contains("%2F") {
            let usage = format!("{path}/usage");
            let r = h.admin("GET", &usage, None).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{usage}: {}", r.text);
            assert_eq!(r.json["message"], "no such key", "{usage}");
        }
    }
    for (query, field) in [
        ("user_id=x%00", "user_id"),
        ("org_id=%00", "org_id"),
        ("user_id=%E2%80%AEalice", "user_id"),
        ("org_id=acme%20", "org_id"),
        ("user_id=", "user_id"),
        (&format!("user_id={}", "x".repeat(257)), "user_id"),
    ] {
        let r = h.admin("GET", &format!("/v1/keys?{query}"), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.text);
        assert!(
            r.json["message"].as_str().unwrap().starts_with(field),
            "{query}: {}",
            r.text
        );
    }
    assert_eq!(database_errors(&h).await, 0.0);
    // The key is untouched, and its own id still revokes it.
    let listed = h.admin("GET", "/v1/keys?org_id=acme", None).await;
    assert_eq!(ids(&listed), [id.as_str()]);
    assert!(listed.json["keys"][0]["revoked_at"].is_null());
    let r = h.admin("DELETE", &format!("/v1/keys/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// 250 keys, pages of 100: every key once, in (created_at, id) order, a `next` on every page
/// but the last; keys issued between pages come after, on a later page, and a revocation
/// between pages changes no page boundary.
async fn listings_come_a_bounded_page_at_a_time(backend: Backend) {
    let h = Harness::new(backend).await;
    for n in 0..250 {
        // Ten keys per second, so that ties on created_at are broken by id.
        let key = acme_record(&format!("k{n:03}"), 1_700_000_000 + n / 10);
        h.store.insert(&key).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut uri = "/v1/keys?org_id=acme&limit=100".to_owned();
    let mut pages = 0;
    loop {
        let r = h.admin("GET", &uri, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let page = ids(&r);
        assert!(page.len() <= 100);
        seen.extend(page);
        pages += 1;
        if pages == 1 {
            // Between pages: one key revoked, one issued (it sorts last).
            h.admin("DELETE", "/v1/keys/k050", None).await;
            let late = acme_record("a-late", 1_800_000_000);
            h.store.insert(&late).await.unwrap();
        }
        match &r.json["next"] {
            Value::String(next) => uri = format!("/v1/keys?org_id=acme&limit=100&after={next}"),
            Value::Null => break,
            other => panic!("next is {other}"),
        }
    }
    let mut expected: Vec<String> = (0..250).map(|n| format!("k{n:03}")).collect();
    expected.push("a-late".into());
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);

    // The default page is 100 keys; the bounds and a cursor not made here are 400s.
    let r = h.admin("GET", "/v1/keys", None).await;
    assert_eq!(ids(&r).len(), 100);
    assert!(r.json["next"].is_string());
    for query in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=x",
        "after=%00",
        "after=not-a-cursor",
        &format!("after={}", URL_SAFE_NO_PAD.encode("1:a\u{0}b")),
    ] {
        let r = h.admin("GET", &format!("/v1/keys?{query}"), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.text);
        assert_eq!(r.json["error"], "invalid_query", "{query}");
    }
    let r = h.admin("GET", "/v1/keys?limit=1000", None).await;
    assert_eq!(ids(&r).len(), 251);
    assert!(r.json["next"].is_null());
    assert_eq!(database_errors(&h).await, 0.0);
}

/// A key sent where an id or a digest belongs is answered without being echoed.
async fn a_key_sent_where_an_id_belongs_is_never_echoed(backend: Backend) {
    let h = Harness::new(backend).await;
    let created = h.create(json!({"user_id": "u", "name": "k"})).await;
    let key = created.json["key"].as_str().unwrap().to_owned();
    let r = h.admin("DELETE", &format!("/v1/keys/{key}"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r2 = h.get(&format!("/v1/revocations/{key}")).await;
    assert_eq!(r2.status, StatusCode::BAD_REQUEST);
    let r3 = h.admin("DELETE", "/v1/keys/%FF%FE", None).await;
    assert_eq!(r3.status, StatusCode::BAD_REQUEST);
    for reply in [&r, &r2, &r3] {
        assert!(!reply.text.contains(&key), "{}", reply.text);
        assert!(!reply.text.contains("%FF"), "{}", reply.text);
        assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    }
    // The key still works: nothing was revoked.
    let r = h
        .get(&format!("/v1/revocations/{}", sha256_hex(&key)))
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

/// One identity alphabet (visible ASCII) for issue and the edge's headers; names may be any
/// Unicode but no invisible character; each refusal is a 400 (401 from the edge) naming the
/// field, and nothing is written.
async fn identities_and_names_that_look_alike_are_refused(backend: Backend) {
    let h = Harness::new(backend).await;
    let bad_identities = [
        "alice\u{202e}",
        "al\u{200b}ice",
        "\u{feff}alice",
        "a\u{2028}b",
        "  alice  ",
        "alicé",
        "al ice",
    ];
    for bad in bad_identities {
        for field in ["user_id", "org_id"] {
            let mut body = json!({"user_id": "u", "name": "k"});
            body[field] = json!(bad);
            let r = h.create(body).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field} {bad:?}");
            assert!(
                r.json["message"].as_str().unwrap().starts_with(field),
                "{field} {bad:?}: {}",
                r.text
            );
        }
    }
    for bad in [
        "deploy\u{202e}gnp.exe",
        "\u{200b}\u{200c}\u{200d}",
        "\u{feff}",
        "ci\u{2029}",
        "  ci  ",
        "\u{3000}",
    ] {
        let r = h.create(json!({"user_id": "u", "name": bad})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "name {bad:?}");
        assert!(r.json["message"].as_str().unwrap().starts_with("name"));
    }
    assert_eq!(h.row_count().await, 0);
    // What is allowed: visible ASCII identities, any visible name.
    let r = h
        .create(
            json!({"user_id": "user_2x@example.com", "org_id": "org:1", "name": "Clé de José 中"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

/// Two `Authorization` headers, a JSON body in another charset, and the error answers' cache
/// lifetime.
async fn small_ones(backend: Backend) {
    let h = Harness::new(backend).await;
    let admin = format!("Bearer {ADMIN}");
    let r = h
        .as_caller(
            "GET",
            "/v1/keys",
            &[("authorization", &admin), ("authorization", "Bearer x")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json["error"], "invalid_request");
    let r = h
        .as_caller(
            "GET",
            "/v1/keys",
            &[("authorization", "Bearer x"), ("authorization", &admin)],
            None,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "the last one does not win"
    );

    let post = |content_type: &str| {
        Request::post("/v1/keys")
            .header(header::AUTHORIZATION, &admin)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(r#"{"user_id":"u","name":"k"}"#))
            .unwrap()
    };
    for content_type in [
        "application/json; charset=utf-16",
        "application/json;charset=\"UTF-32\"",
        "application/json; charset=latin1",
    ] {
        let r = h.send(post(content_type)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{content_type}");
        assert_eq!(r.json["error"], "invalid_body");
    }
    assert_eq!(h.row_count().await, 0);
    for content_type in ["application/json; charset=UTF-8", "application/json"] {
        let r = h.send(post(content_type)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{content_type}");
    }

    let r = h.get("/v1/revocations/not-a-digest").await;
    assert_eq!(r.json["error"], "invalid_sha256");
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    let r = h.admin("GET", "/v1/keys?limit=0", None).await;
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
}

both_backends!(
    values_that_cannot_be_ids_or_identities_never_reach_the_database,
    listings_come_a_bounded_page_at_a_time,
    a_key_sent_where_an_id_belongs_is_never_echoed,
    identities_and_names_that_look_alike_are_refused,
    small_ones,
);

/// The real server's log: route templates, never the path, so a key sent in a path is not
/// written; a client's request id is written with its invisible characters (a tab here: header
/// values hold nothing else invisible) escaped.
#[test]
fn the_log_holds_route_templates_not_paths() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("keys.db").display());
    let server = start_keyservice(&database, dir.path(), "keyservice", &[]);
    let http = client();
    let created: Value = http
        .post(server.url("/v1/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"user_id": "u", "name": "k"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let key = created["key"].as_str().unwrap();
    let answers = [
        http.delete(server.url(&format!("/v1/keys/{key}")))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .status(),
        http.get(server.url(&format!("/v1/revocations/{key}")))
            .send()
            .unwrap()
            .status(),
        http.get(server.url(&format!("/{key}")))
            .send()
            .unwrap()
            .status(),
        http.get(server.url("/healthz"))
            .header("x-request-id", "req\tforged=1")
            .send()
            .unwrap()
            .status(),
    ];
    assert_eq!(answers.map(|s| s.as_u16()), [404, 400, 404, 200]);
    // Give the logger a moment, then stop the server so everything is flushed.
    drop(http);
    let log = poll(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(100),
        || {
            let log = server.proc.log_text();
            log.contains("/v1/revocations/{sha256}").then_some(log)
        },
    )
    .unwrap_or_else(|| {
        panic!(
            "no request line for the revocation route:\n{}",
            server.proc.log_text()
        )
    });
    assert!(!log.contains(key), "the key is in the log:\n{log}");
    assert!(
        !log.contains(&key[..40]),
        "part of the key is in the log:\n{log}"
    );
    assert!(log.contains("/v1/keys/{id}"), "{log}");
    assert!(log.contains("unmatched"), "{log}");
    assert!(log.contains("req\\u{9}forged=1"), "{log}");
}
