//! Signed-in users (`--session-issuer`): the identity provider's session cookie, verified by
//! keyservice against the provider's JWKS (testkit's IdP, a real HTTP server); roles decide what
//! a user sees; writes with the cookie must come from our own origin.

use axum::http::StatusCode;
use keyservice::AppState;
use keyservice::auth::session::Sessions;
use keyservice::offered_scopes::OfferedScopes;
use serde_json::{Value, json};
use testkit::idp::{Idp, JWKS_PATH, Mode};
use testkit::idp_keys::IdpKey;
use testkit::token::now;

use crate::common::{self, Backend, Harness};

const ISSUER: &str = "https://clerk.keys.test";
const APP: &str = "https://app.keys.test";
const HOST: &str = "keys.test";
const ORIGIN: &str = "http://keys.test";

struct Signed {
    idp: Idp,
    key: IdpKey,
}

impl Signed {
    fn start() -> Self {
        let idp = Idp::start(ISSUER);
        let key = IdpKey::rsa("session-key");
        idp.publish(&key);
        Self { idp, key }
    }

    fn sessions(&self) -> Sessions {
        Sessions::new(
            ISSUER.into(),
            format!("http://{}{JWKS_PATH}", self.idp.addr),
            vec![APP.into()],
            "__session".into(),
        )
        .unwrap()
    }

    /// A Clerk-shaped session token (v1 claims) for `user`, valid for a minute.
    fn token(&self, user: &str, org: Option<(&str, &str)>) -> String {
        let now = now();
        let mut claims = json!({
            "azp": APP, "iss": ISSUER, "sub": user, "sid": "sess_1",
            "iat": now, "nbf": now - 5, "exp": now + 60,
        });
        if let Some((org, role)) = org {
            claims["org_id"] = json!(org);
            claims["org_role"] = json!(role);
        }
        self.key.sign(&claims)
    }
}

fn configure(signed: &Signed) -> impl FnOnce(AppState) -> AppState {
    let sessions = signed.sessions();
    move |s| {
        s.with_sessions(sessions).with_offered_scopes(
            OfferedScopes::from_json(
                br#"[{"name":"runs:read","description":"Read runs"},{"name":"runs:write","description":"Start runs"}]"#,
            )
            .unwrap(),
        )
    }
}

/// A request from the page: the cookie, our own origin.
async fn from_page(
    h: &Harness,
    token: &str,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> common::Reply {
    let cookie = format!("theme=dark; __session={token}");
    let headers = [
        ("cookie", cookie.as_str()),
        ("host", HOST),
        ("origin", ORIGIN),
        ("sec-fetch-site", "same-origin"),
    ];
    h.as_caller(method, uri, &headers, body).await
}

fn names(reply: &common::Reply) -> Vec<String> {
    let mut names: Vec<String> = reply.json["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no key list: {}", reply.text))
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

async fn signed_in_users_see_what_their_role_allows(backend: Backend) {
    let signed = Signed::start();
    let h = Harness::with(backend, configure(&signed)).await;
    let mut ids = std::collections::HashMap::new();
    for (name, user, org) in [
        ("alice-acme", "user_alice", Some("org_acme")),
        ("bob-acme", "user_bob", Some("org_acme")),
        ("carol-personal", "user_carol", None),
        ("alice-personal", "user_alice", None),
        ("dave-globex", "user_dave", Some("org_globex")),
    ] {
        let r = h
            .create(json!({"user_id": user, "org_id": org, "name": name}))
            .await;
        ids.insert(name, r.json["id"].as_str().unwrap().to_owned());
    }
    let alice_admin = signed.token("user_alice", Some(("org_acme", "org:admin")));
    let bob_member = signed.token("user_bob", Some(("org_acme", "org:member")));
    let carol = signed.token("user_carol", None);

    let r = from_page(&h, &alice_admin, "GET", "/v1/keys", None).await;
    assert_eq!(
        names(&r),
        ["alice-acme", "bob-acme"],
        "an org admin sees the org's keys"
    );
    let r = from_page(&h, &bob_member, "GET", "/v1/keys", None).await;
    assert_eq!(names(&r), ["bob-acme"], "a member sees their own");
    let r = from_page(&h, &carol, "GET", "/v1/keys", None).await;
    assert_eq!(names(&r), ["carol-personal"]);

    let me = from_page(&h, &bob_member, "GET", "/v1/me", None).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(
        me.json,
        json!({
            "user_id": "user_bob", "org_id": "org_acme", "org_role": "org:member",
            "via": "session", "sees": "own", "sign_out_url": null,
            "scopes": [{"name": "runs:read", "description": "Read runs"}, {"name": "runs:write", "description": "Start runs"}],
        })
    );
    assert_eq!(
        from_page(&h, &alice_admin, "GET", "/v1/me", None)
            .await
            .json["sees"],
        "org"
    );

    // A member cannot revoke another member's key (not found, as if it did not exist); the
    // org's admin can.
    let alice_key = format!("/v1/keys/{}", ids["alice-acme"]);
    let r = from_page(&h, &bob_member, "DELETE", &alice_key, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = from_page(&h, &carol, "DELETE", &alice_key, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = from_page(
        &h,
        &alice_admin,
        "DELETE",
        &format!("/v1/keys/{}", ids["bob-acme"]),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // Issuing: for oneself in the active org, with offered scopes only, never own rate limits.
    let r = from_page(
        &h,
        &bob_member,
        "POST",
        "/v1/keys",
        Some(json!({"name": "ci", "scopes": ["runs:read"], "expires_in_seconds": 86400})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        (&r.json["user_id"], &r.json["org_id"]),
        (&json!("user_bob"), &json!("org_acme"))
    );
    let key = r.json["key"].as_str().unwrap();
    assert_eq!(r.json["hint"], json!(&key[key.len() - 4..]));
    for (body, code) in [
        (
            json!({"name": "x", "scopes": ["keys:write"]}),
            "insufficient_scope",
        ),
        (json!({"name": "x", "user_id": "user_alice"}), "forbidden"),
        (json!({"name": "x", "org_id": "org_globex"}), "forbidden"),
        (
            json!({"name": "x", "rate_limits": [{"requests": 1, "per_seconds": 1}]}),
            "forbidden",
        ),
    ] {
        let r = from_page(&h, &bob_member, "POST", "/v1/keys", Some(body.clone())).await;
        assert_eq!(
            (r.status, &r.json["error"]),
            (StatusCode::FORBIDDEN, &json!(code)),
            "{body}"
        );
    }
}

async fn cookie_writes_from_another_site_are_refused(backend: Backend) {
    let signed = Signed::start();
    let h = Harness::with(backend, configure(&signed)).await;
    let token = signed.token("user_alice", Some(("org_acme", "org:admin")));
    let cookie = format!("__session={token}");
    let body = json!({"name": "forged"});
    let cross: [(&str, Vec<(&str, &str)>); 5] = [
        (
            "a form post from another site",
            vec![
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        ),
        (
            "a sibling subdomain",
            vec![
                ("origin", "http://evil.keys.test"),
                ("sec-fetch-site", "same-site"),
            ],
        ),
        ("an opaque origin", vec![("origin", "null")]),
        ("no origin at all", vec![]),
        (
            "another origin, no fetch metadata",
            vec![("origin", "https://evil.example")],
        ),
    ];
    for (what, extra) in cross {
        let mut headers = vec![("cookie", cookie.as_str()), ("host", HOST)];
        headers.extend(extra);
        let r = h
            .as_caller("POST", "/v1/keys", &headers, Some(body.clone()))
            .await;
        assert_eq!(
            (r.status, &r.json["error"]),
            (StatusCode::FORBIDDEN, &json!("csrf")),
            "{what}: {}",
            r.text
        );
        let r = h
            .as_caller(
                "DELETE",
                "/v1/keys/00000000-0000-4000-8000-000000000000",
                &headers,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}");
        // Reading is not a forgery risk: the other site cannot see the answer (no CORS).
        let r = h.as_caller("GET", "/v1/keys", &headers, None).await;
        assert_eq!(r.status, StatusCode::OK, "{what}");
    }
    assert_eq!(h.row_count().await, 0, "nothing was issued");
    // A form post cannot send JSON's content type: refused before anything else.
    let r = h
        .send(
            axum::http::Request::post("/v1/keys")
                .header("cookie", &cookie)
                .header("host", HOST)
                .header("origin", ORIGIN)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(axum::body::Body::from("name=forged"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(h.row_count().await, 0);
}

async fn sessions_are_verified_against_the_providers_keys(backend: Backend) {
    let signed = Signed::start();
    let h = Harness::with(backend, configure(&signed)).await;
    let now = now();
    let base = json!({"azp": APP, "iss": ISSUER, "sub": "user_alice", "iat": now, "exp": now + 60});
    let with = |patch: Value| {
        let mut claims = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    };
    let stranger = IdpKey::rsa("session-key");
    let hs256 = testkit::idp_keys::sign_hmac_bytes(
        jsonwebtoken::Algorithm::HS256,
        Some("session-key"),
        &base,
        signed.key.public_pem.as_deref().unwrap().as_bytes(),
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            signed.key.sign(&with(json!({"exp": now - 30}))),
            "session_expired",
        ),
        (
            "another app",
            signed
                .key
                .sign(&with(json!({"azp": "https://other.example"}))),
            "unauthorized",
        ),
        (
            "no azp",
            signed.key.sign(&with(json!({"azp": null}))),
            "unauthorized",
        ),
        (
            "another issuer",
            signed
                .key
                .sign(&with(json!({"iss": "https://evil.example"}))),
            "unauthorized",
        ),
        (
            "no exp",
            signed.key.sign(&with(json!({"exp": null}))),
            "unauthorized",
        ),
        (
            "not yet valid",
            signed.key.sign(&with(json!({"nbf": now + 600}))),
            "unauthorized",
        ),
        (
            "same kid, another key",
            stranger.sign(&base),
            "unauthorized",
        ),
        (
            "unknown kid",
            stranger.sign_as(Some("nope"), &base),
            "unauthorized",
        ),
        ("HS256 with the public key", hs256, "unauthorized"),
        ("not a JWT", "garbage".into(), "unauthorized"),
    ];
    for (what, token, code) in cases {
        let r = from_page(&h, &token, "GET", "/v1/keys", None).await;
        assert_eq!(
            (r.status, &r.json["error"]),
            (StatusCode::UNAUTHORIZED, &json!(code)),
            "{what}: {}",
            r.text
        );
    }
    let good = signed.token("user_alice", None);
    assert_eq!(
        from_page(&h, &good, "GET", "/v1/keys", None).await.status,
        StatusCode::OK
    );
    // One credential at a time.
    let r = h
        .as_caller(
            "GET",
            "/v1/keys",
            &[("cookie", &format!("__session={good}; __session={good}"))],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    // Forged identity headers beside no credential: nothing.
    let r = h
        .as_caller(
            "GET",
            "/v1/keys",
            &[("x-user-id", "user_alice"), ("host", HOST)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

async fn an_unreachable_provider_is_503_not_a_pass(backend: Backend) {
    let idp = Idp::start_in(ISSUER, Mode::Status(503));
    let key = IdpKey::rsa("session-key");
    idp.publish(&key);
    let sessions = Sessions::new(
        ISSUER.into(),
        format!("http://{}{JWKS_PATH}", idp.addr),
        vec![APP.into()],
        "__session".into(),
    )
    .unwrap();
    let h = Harness::with(backend, |s| s.with_sessions(sessions)).await;
    let now = now();
    let token =
        key.sign(&json!({"azp": APP, "iss": ISSUER, "sub": "u", "iat": now, "exp": now + 60}));
    let r = from_page(&h, &token, "GET", "/v1/keys", None).await;
    assert_eq!(
        (r.status, &r.json["error"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("unavailable")),
        "{}",
        r.text
    );
    assert!(!r.text.contains(&token));
}

both_backends!(
    signed_in_users_see_what_their_role_allows,
    cookie_writes_from_another_site_are_refused,
    sessions_are_verified_against_the_providers_keys,
    an_unreachable_provider_is_503_not_a_pass,
);
