//! Issuing keys: what a key holds and what is stored, limits, scopes, and bodies that are refused.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use testkit::token::sha256_hex;

use super::decode;
use crate::common::{ADMIN, Backend, Harness};

const TEN_YEARS: i64 = 315_360_000;

fn post_keys(content_type: Option<&str>, body: String) -> Request<Body> {
    let mut builder =
        Request::post("/v1/keys").header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    builder.body(Body::from(body)).unwrap()
}

async fn issue_returns_a_key_that_verifies_with_the_contract_claims(backend: Backend) {
    let h = Harness::new(backend).await;
    let r = h
        .create(json!({"user_id": "user_1", "org_id": "org_1", "name": "ci", "expires_in_seconds": 3600}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    let body = r.json.as_object().unwrap();
    let mut fields: Vec<&str> = body.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "created_at",
            "expires_at",
            "hint",
            "id",
            "key",
            "last_used_at",
            "name",
            "org_id",
            "rate_limits",
            "scopes",
            "user_id"
        ]
    );
    let key = body["key"].as_str().unwrap();
    let id = body["id"].as_str().unwrap();
    // The hint is the key's last four characters: the end of its signature.
    assert_eq!(body["hint"], key[key.len() - 4..]);
    let claims = decode(key);
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(
        claims,
        json!({"user_id": "user_1", "org_id": "org_1", "iat": iat, "jti": id, "exp": iat + 3600})
    );
    assert_eq!(body["name"], "ci");
    assert_eq!(body["user_id"], "user_1");
    assert_eq!(body["org_id"], "org_1");
    assert_eq!(body["created_at"], keyservice::time::rfc3339(iat));
    assert_eq!(body["expires_at"], keyservice::time::rfc3339(iat + 3600));
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["rate_limits"], json!([]));
    assert_eq!(body["last_used_at"], Value::Null);

    // Wrong secret must not verify: the signature really is HS256 over JWT_SECRET.
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    assert!(
        jsonwebtoken::decode::<Value>(key, &DecodingKey::from_secret(b"other"), &validation)
            .is_err()
    );

    let (stored_hash, expires_at): (String, Option<i64>) = on_raw!(&h.raw, pool =>
        sqlx::query_as("SELECT key_sha256, expires_at FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap());
    assert_eq!(stored_hash, sha256_hex(key));
    assert_eq!(expires_at, Some(iat + 3600));
}

async fn the_key_itself_is_never_stored(backend: Backend) {
    let h = Harness::new(backend).await;
    let r = h.create(json!({"user_id": "u", "name": "n"})).await;
    let key = r.json["key"].as_str().unwrap().to_owned();
    let signature = key.rsplit('.').next().unwrap().to_owned();

    let rows: Vec<(String, String, String, String, Option<String>)> = on_raw!(&h.raw, pool =>
        sqlx::query_as("SELECT id, key_sha256, name, user_id, org_id FROM api_keys")
            .fetch_all(pool)
            .await
            .unwrap());
    assert_eq!(rows.len(), 1);
    for (id, hash, name, user, org) in rows {
        for value in [id, hash, name, user, org.unwrap_or_default()] {
            assert!(!value.contains(&key) && !value.contains(&signature));
        }
    }
    // And not anywhere in the database files either (main file and WAL).
    let Some(dir) = &h.dir else { return };
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let haystack = String::from_utf8_lossy(&bytes);
        assert!(!haystack.contains(&signature));
    }
}

async fn issue_without_org_or_expiry_omits_those_claims(backend: Backend) {
    let h = Harness::new(backend).await;
    let r = h
        .create(json!({"user_id": "u", "org_id": null, "name": "n"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["org_id"], Value::Null);
    assert_eq!(r.json["expires_at"], Value::Null);
    let claims = decode(r.json["key"].as_str().unwrap());
    let claims = claims.as_object().unwrap();
    let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["iat", "jti", "user_id"]);
}

async fn limits_are_inclusive(backend: Backend) {
    let h = Harness::new(backend).await;
    // Identities are ASCII (256 bytes); a name is 256 characters of any width.
    let (long, wide) = ("x".repeat(256), "é".repeat(256));
    let r = h
        .create(
            json!({"user_id": long, "org_id": long, "name": wide, "expires_in_seconds": TEN_YEARS}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .create(json!({"user_id": "u", "name": "n", "expires_in_seconds": 1}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(h.row_count().await, 2);
}

async fn bad_bodies_get_json_errors_and_write_nothing(backend: Backend) {
    let h = Harness::new(backend).await;
    let long = "x".repeat(257);
    let valid = || json!({"user_id": "u", "name": "n"});
    let with = |field: &str, value: Value| {
        let mut body = valid();
        body[field] = value;
        body.to_string()
    };
    // Problems with the body as JSON, then with its values; both are 400s with their own code.
    const BODY: &str = "invalid_body";
    const VALUE: &str = "invalid_request";
    let huge = "99999999999999999999";
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed JSON", "{".into(), BODY),
        ("not an object", "[]".into(), BODY),
        ("missing name", json!({"user_id": "u"}).to_string(), BODY),
        ("missing user_id", json!({"name": "n"}).to_string(), BODY),
        ("unknown field", with("scope", json!("a")), BODY),
        ("scopes not a list", with("scopes", json!("a")), BODY),
        ("scope not a string", with("scopes", json!([1])), BODY),
        ("user_id not a string", with("user_id", json!(5)), BODY),
        (
            "org_id not a string",
            with("org_id", json!({"id": 1})),
            BODY,
        ),
        (
            "expires as string",
            with("expires_in_seconds", json!("60")),
            BODY,
        ),
        (
            "expires fractional",
            with("expires_in_seconds", json!(1.5)),
            BODY,
        ),
        (
            "expires beyond i64",
            format!(r#"{{"user_id":"u","name":"n","expires_in_seconds":{huge}}}"#),
            BODY,
        ),
        ("empty user_id", with("user_id", json!("")), VALUE),
        ("blank user_id", with("user_id", json!(" \t ")), VALUE),
        ("empty name", with("name", json!("")), VALUE),
        ("blank name", with("name", json!("   ")), VALUE),
        ("empty org_id", with("org_id", json!("")), VALUE),
        ("long user_id", with("user_id", json!(long)), VALUE),
        ("long name", with("name", json!(long)), VALUE),
        ("long org_id", with("org_id", json!(long)), VALUE),
        ("control character", with("user_id", json!("a\r\nb")), VALUE),
        ("tab in user_id", with("user_id", json!("ali\tce")), VALUE),
        // HTTP drops a header value's edge whitespace: the edge would pass " bob" on as "bob".
        (
            "leading space in user_id",
            with("user_id", json!(" bob")),
            VALUE,
        ),
        (
            "trailing space in user_id",
            with("user_id", json!("bob ")),
            VALUE,
        ),
        (
            "trailing tab in org_id",
            with("org_id", json!("org\t")),
            VALUE,
        ),
        (
            "leading space in org_id",
            with("org_id", json!(" org")),
            VALUE,
        ),
        ("expires zero", with("expires_in_seconds", json!(0)), VALUE),
        (
            "expires negative",
            with("expires_in_seconds", json!(-5)),
            VALUE,
        ),
        (
            "expires over ten years",
            with("expires_in_seconds", json!(TEN_YEARS + 1)),
            VALUE,
        ),
    ];
    let mut requests: Vec<(&str, Request<Body>, StatusCode, &str)> = cases
        .into_iter()
        .map(|(what, body, code)| {
            let request = post_keys(Some("application/json"), body);
            (what, request, StatusCode::BAD_REQUEST, code)
        })
        .collect();
    requests.push((
        "missing content type",
        post_keys(None, valid().to_string()),
        StatusCode::BAD_REQUEST,
        BODY,
    ));
    requests.push((
        "wrong content type",
        post_keys(Some("text/plain"), valid().to_string()),
        StatusCode::BAD_REQUEST,
        BODY,
    ));
    requests.push((
        "body over 64 KiB",
        post_keys(
            Some("application/json"),
            with("name", json!("x".repeat(70 * 1024))),
        ),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    ));
    for (what, request, status, code) in requests {
        let r = h.send(request).await;
        assert_eq!(r.status, status, "{what}: {}", r.text);
        assert_eq!(r.json["error"], code, "{what}: {}", r.text);
        let message = r.json["message"].as_str().unwrap();
        assert!(!message.is_empty(), "{what}: {}", r.text);
        if code == VALUE {
            let fields = ["user_id", "org_id", "name", "expires_in_seconds"];
            assert!(
                fields.iter().any(|field| message.contains(field)),
                "{what}: the message names no field: {}",
                r.text
            );
        }
        assert_eq!(h.row_count().await, 0, "{what} wrote a row");
    }
}

async fn scopes_are_issued_listed_and_validated(backend: Backend) {
    let h = Harness::new(backend).await;
    let r = h
        .create(json!({"user_id": "u", "name": "n", "scopes": ["keys:write", "read", "read"]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["scopes"], json!(["keys:write", "read"]));
    assert_eq!(
        decode(r.json["key"].as_str().unwrap())["scopes"],
        json!(["keys:write", "read"])
    );
    let listed = h.admin("GET", "/v1/keys", None).await;
    assert_eq!(
        listed.json["keys"][0]["scopes"],
        json!(["keys:write", "read"])
    );

    let too_many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
    for (scopes, message) in [
        (json!(["ok", "not ok"]), "scopes[1] is not a scope"),
        (json!([""]), "scopes[0] is not a scope"),
        (json!(["a\"b"]), "scopes[0] is not a scope"),
        (json!(["é"]), "scopes[0] is not a scope"),
        (json!(["x".repeat(129)]), "scopes[0] is not a scope"),
        (json!(too_many), "at most 64 scopes"),
    ] {
        let r = h
            .create(json!({"user_id": "u", "name": "n", "scopes": scopes}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{scopes}: {}", r.text);
        assert_eq!(r.json["error"], "invalid_request");
        assert!(
            r.json["message"].as_str().unwrap().contains(message),
            "{}",
            r.text
        );
    }
    assert_eq!(h.row_count().await, 1);
}

both_backends!(
    issue_returns_a_key_that_verifies_with_the_contract_claims,
    the_key_itself_is_never_stored,
    issue_without_org_or_expiry_omits_those_claims,
    limits_are_inclusive,
    bad_bodies_get_json_errors_and_write_nothing,
    scopes_are_issued_listed_and_validated,
);
