//! The service end to end, without a socket: requests through `app(..).oneshot(..)`.

// Tests fail by panicking: helpers outside #[test] functions too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use dev_idp::signing::{SigningKey, TokenSettings};
use dev_idp::users::Directory;
use dev_idp::{AppState, app};
use http_body_util::BodyExt;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tower::ServiceExt;

const ISSUER: &str = "http://127.0.0.1:8082";
const AUTHORIZED_PARTY: &str = "http://127.0.0.1:10000";
const SESSION_SECONDS: u64 = 1234;
const HOST: &str = "127.0.0.1:10000";

/// One key for every test: RSA 2048 generation is the slow part.
static KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::generate().unwrap());

fn state() -> Arc<AppState> {
    Arc::new(AppState {
        directory: Directory::built_in(),
        tokens: TokenSettings {
            issuer: ISSUER.to_owned(),
            authorized_party: AUTHORIZED_PARTY.to_owned(),
            session_seconds: SESSION_SECONDS,
        },
        key: KEY.clone(),
    })
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn session_token(&self) -> String {
        let cookie = self.header("set-cookie").expect("a Set-Cookie");
        let value = cookie.strip_prefix("__session=").unwrap();
        value.split(';').next().unwrap().to_owned()
    }
}

async fn send(request: Request<Body>) -> Answer {
    let response = app(state()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(path: &str) -> Answer {
    send(
        Request::get(path)
            .header("host", HOST)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

/// A form POST with `extra` headers (the browser's Origin, Sec-Fetch-Site...).
async fn post_form(path: &str, form: &str, extra: &[(&str, &str)]) -> Answer {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("host", HOST)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    send(request.body(Body::from(form.to_owned())).unwrap()).await
}

async fn jwks() -> JwkSet {
    let answer = get("/.well-known/jwks.json").await;
    assert_eq!(answer.status, StatusCode::OK);
    serde_json::from_str(&answer.body).unwrap()
}

/// Verifies `token` against the served JWKS as a relying party would, returning the claims.
async fn verify(token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let kid = header.kid.expect("a kid");
    let set = jwks().await;
    let jwk = set.find(&kid).expect("the token's kid is in the JWKS");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[ISSUER]);
    validation.validate_aud = false;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "sub"]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims
}

#[tokio::test]
async fn a_minted_token_verifies_against_the_jwks() {
    let answer = post_form(
        "/sign-in",
        "user_id=user_alice&org_id=org_acme&org_role=org%3Aadmin&redirect_url=%2Fkeys",
        &[
            ("origin", "http://127.0.0.1:10000"),
            ("sec-fetch-site", "same-origin"),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.header("location"), Some("/keys"));
    let claims = verify(&answer.session_token()).await;
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["azp"], AUTHORIZED_PARTY);
    assert_eq!(claims["sub"], "user_alice");
    assert_eq!(claims["org_id"], "org_acme");
    assert_eq!(claims["org_role"], "org:admin");
    assert_eq!(claims["org_slug"], "acme");
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + SESSION_SECONDS);
    assert!(claims["nbf"].as_u64().unwrap() <= iat);
    assert!(claims["sid"].as_str().unwrap().starts_with("sess_"));
    assert!(claims.get("v").is_none());
}

#[tokio::test]
async fn no_organisation_means_no_org_claims() {
    // The role is ignored without an organisation.
    let answer = post_form(
        "/sign-in",
        "user_id=user_bob&org_id=&org_role=org%3Aadmin",
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let claims = verify(&answer.session_token()).await;
    assert_eq!(claims["sub"], "user_bob");
    for claim in ["org_id", "org_role", "org_slug"] {
        assert!(claims.get(claim).is_none(), "{claim}: {claims}");
    }
}

#[tokio::test]
async fn the_jwks_has_one_rs256_signing_key() {
    let answer = get("/.well-known/jwks.json").await;
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let jwks: Value = serde_json::from_str(&answer.body).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["e"], "AQAB");
    let kid = key["kid"].as_str().unwrap();
    let digits = kid.strip_prefix("dev-").unwrap();
    assert_eq!(digits.len(), 8);
    assert!(
        digits
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{kid}"
    );
    assert!(key.get("d").is_none(), "no private part");
}

#[tokio::test]
async fn the_session_cookie_has_its_attributes() {
    let answer = post_form("/sign-in", "user_id=user_carol&org_id=&org_role=", &[]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let cookie = answer.header("set-cookie").unwrap();
    let attributes: Vec<&str> = cookie.split("; ").skip(1).collect();
    assert_eq!(
        attributes,
        [
            "Path=/",
            "HttpOnly",
            "SameSite=Lax",
            &format!("Max-Age={SESSION_SECONDS}")
        ]
    );
    assert!(cookie.starts_with("__session=ey"), "{cookie}");
    assert_eq!(answer.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn a_cross_site_post_is_refused_and_sets_no_cookie() {
    let form = "user_id=user_alice&org_id=org_acme&org_role=org%3Aadmin";
    let cross_site: &[&[(&str, &str)]] = &[
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[("origin", "http://evil.example")],
        &[("origin", "http://127.0.0.1:8080")],
        &[("origin", "null")],
        &[
            ("origin", "http://127.0.0.1:10000"),
            ("sec-fetch-site", "cross-site"),
        ],
    ];
    for headers in cross_site {
        for path in ["/sign-in", "/sign-out"] {
            let answer = post_form(path, form, headers).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path} {headers:?}");
            assert!(
                answer.headers.get(SET_COOKIE).is_none(),
                "{path} {headers:?}"
            );
            assert!(answer.headers.get(LOCATION).is_none(), "{path} {headers:?}");
            assert!(answer.body.contains("another site"), "{}", answer.body);
        }
    }
}

#[tokio::test]
async fn redirect_url_is_kept_only_when_it_is_a_local_path() {
    let cases = [
        ("%2Fkeys%3Ftab%3Drevoked", "/keys?tab=revoked"),
        ("%2Fhello", "/hello"),
        ("", "/keys"),
        ("%2F%2Fevil.example", "/keys"),
        ("%2F%5Cevil.example", "/keys"),
        ("https%3A%2F%2Fevil.example%2F", "/keys"),
        ("%2F%09%2Fevil.example", "/keys"),
    ];
    for (encoded, expected) in cases {
        let form = format!("user_id=user_carol&redirect_url={encoded}");
        let answer = post_form("/sign-in", &form, &[]).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{encoded}");
        assert_eq!(answer.header("location"), Some(expected), "{encoded}");
    }
    // Without the field at all.
    let answer = post_form("/sign-in", "user_id=user_carol", &[]).await;
    assert_eq!(answer.header("location"), Some("/keys"));
}

#[tokio::test]
async fn unknown_users_orgs_and_roles_are_refused_with_a_message() {
    let cases = [
        (
            "user_id=user_mallory",
            "no user \u{201c}user_mallory\u{201d}",
        ),
        ("user_id=", "no user"),
        ("org_id=org_acme", "no user"),
        (
            "user_id=user_alice&org_id=org_evil&org_role=org%3Aadmin",
            "no organisation \u{201c}org_evil\u{201d}",
        ),
        (
            "user_id=user_alice&org_id=org_acme&org_role=org%3Aowner",
            "\u{201c}org:owner\u{201d} is not a role",
        ),
        ("user_id=user_alice&org_id=org_acme", "is not a role"),
        (
            "user_id=%3Cscript%3E",
            "no user \u{201c}&lt;script&gt;\u{201d}",
        ),
    ];
    for (form, message) in cases {
        let answer = post_form("/sign-in", form, &[]).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{form}");
        assert!(answer.headers.get(SET_COOKIE).is_none(), "{form}");
        assert!(answer.body.contains(message), "{form}: {}", answer.body);
        assert!(!answer.body.contains("<script"), "{form}");
    }
}

#[tokio::test]
async fn a_post_that_is_not_a_form_is_refused() {
    let request = Request::post("/sign-in")
        .header("host", HOST)
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"user_id":"user_alice"}"#))
        .unwrap();
    let answer = send(request).await;
    assert!(answer.status.is_client_error(), "{}", answer.status);
    assert!(answer.headers.get(SET_COOKIE).is_none());
}

#[tokio::test]
async fn sign_out_clears_the_cookie() {
    let answer = post_form("/sign-out", "", &[("origin", "http://127.0.0.1:10000")]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.header("location"), Some("/sign-in"));
    assert_eq!(
        answer.header("set-cookie"),
        Some("__session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
    );
    // Without Origin or Sec-Fetch-Site (curl) too.
    let answer = send(Request::post("/sign-out").body(Body::empty()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn get_sign_out_changes_nothing() {
    let answer = get("/sign-out").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.headers.get(SET_COOKIE).is_none());
    assert!(
        answer
            .body
            .contains(r#"<form method="post" action="/sign-out">"#),
        "{}",
        answer.body
    );
    assert!(
        answer
            .body
            .contains(r#"<button type="submit" id="sign-out-submit">"#)
    );
    assert!(!answer.body.contains("<script"));
}

#[tokio::test]
async fn the_form_has_labelled_controls_and_no_script() {
    let answer = get("/sign-in?redirect_url=%2Fkeys%3Fa%3D1").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        answer.header("content-security-policy"),
        Some(
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
    );
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(answer.header("x-frame-options"), Some("DENY"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let page = &answer.body;
    for (id, name) in [
        ("user-id", "user_id"),
        ("org-id", "org_id"),
        ("org-role", "org_role"),
    ] {
        assert!(
            page.contains(&format!(r#"<label for="{id}">"#)),
            "label for {id}"
        );
        assert!(
            page.contains(&format!(r#"<select id="{id}" name="{name}""#)),
            "select {id}"
        );
    }
    assert!(page.contains(r#"<form method="post" action="/sign-in">"#));
    assert!(
        page.contains(r#"<input type="hidden" name="redirect_url" value="/keys?a=1">"#),
        "{page}"
    );
    assert!(page.contains(r#"<button type="submit" id="sign-in-submit">"#));
    assert!(page.contains("DEVELOPMENT ONLY"));
    assert!(
        page.contains(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#)
    );
    assert!(page.contains(r#"<link rel="stylesheet" href="/dev-idp/style.css">"#));
    for user in ["user_alice", "user_bob", "user_carol"] {
        assert!(
            page.contains(&format!(r#"<option value="{user}">"#)),
            "{user}"
        );
    }
    assert!(page.contains(r#"<option value="">No organisation</option>"#));
    for role in ["org:admin", "org:member"] {
        assert!(
            page.contains(&format!(r#"<option value="{role}""#)),
            "{role}"
        );
    }
    let lower = page.to_ascii_lowercase();
    for inline in ["<script", "<style", " style="] {
        assert!(!lower.contains(inline), "{inline} in the page");
    }
    assert!(
        !has_event_handler_attribute(&lower),
        "an on...= attribute in the page"
    );
}

/// Whether `html` has an attribute like ` onclick=` (inline script by another name).
fn has_event_handler_attribute(html: &str) -> bool {
    html.match_indices(" on").any(|(i, _)| {
        let rest = &html[i + 3..];
        let name_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
        name_len > 0 && rest[name_len..].starts_with('=')
    })
}

#[test]
fn the_event_handler_check_finds_one() {
    assert!(has_event_handler_attribute(r#"<body onload="x()">"#));
    assert!(!has_event_handler_attribute("<p>sign in on the form=</p>"));
}

#[tokio::test]
async fn the_form_escapes_and_sanitises_redirect_url() {
    // A local path with markup in it is kept, and escaped.
    let answer = get("/sign-in?redirect_url=%2F%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    assert!(!answer.body.contains("<script"), "{}", answer.body);
    assert!(
        answer
            .body
            .contains(r#"value="/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;""#)
    );
    // Another site is replaced.
    let answer = get("/sign-in?redirect_url=%2F%2Fevil.example").await;
    assert!(answer.body.contains(r#"name="redirect_url" value="/keys""#));
    assert!(!answer.body.contains("evil.example"));
}

#[tokio::test]
async fn the_stylesheet_and_health_check_are_served() {
    let answer = get("/dev-idp/style.css").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.header("content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    assert!(answer.body.contains(".banner"));

    let answer = get("/healthz").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "ok")
    );

    let answer = get("/nothing-here").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}
