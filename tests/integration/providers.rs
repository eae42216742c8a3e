//! Identity providers in a real Envoy: session tokens verified against a test identity provider's
//! JWKS (RS256, ES256, ES384, EdDSA), from a cookie, a header or a query parameter, beside HS256
//! API keys on the same listener; issuer and audience checks; algorithm confusion; several
//! different tokens in one request; OIDC discovery; and what happens before the first JWKS
//! arrives (`until_ready`, `failure_mode`). Key refetch and rotation are in `jwks`.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use testkit::http::Reply;
use testkit::idp::{DISCOVERY_PATH, Idp, JWKS_PATH, Mode};
use testkit::idp_keys::{IdpKey, sign_hmac_bytes};
use testkit::poll;
use testkit::token::{now, sign};

use crate::support::providers::{
    bearer, expect_identity, expect_rejected, poll_keygate_stat, remote_jwks, session_claims,
};
use crate::support::{
    Cases, Rig, SECRET, expect_echoed, expect_missing_credential, expect_status,
    expect_unavailable, providers_plugin_config,
};

const CLERK: &str = "https://clerk.test";
const CONFUSED: &str = "https://confused.test";
const OIDC: &str = "https://oidc.test";
/// Where the OIDC IdP's discovery document says its JWKS is.
const OIDC_JWKS_PATH: &str = "/oauth/v1/keys";
/// The path the `confused` provider fetches the (clerk) IdP's JWKS from, so its fetches can be
/// told apart from `clerk`'s.
const CONFUSED_JWKS_PATH: &str = "/jwks/confused";
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// The Clerk-style provider of the brief: session tokens from the `__session` cookie, the
/// Authorization header or a `token` query parameter, stripped before upstream.
fn clerk_provider() -> Value {
    json!({
        "name": "clerk",
        "issuer": CLERK,
        "audiences": ["dashboard"],
        "remote_jwks": remote_jwks("idp", JWKS_PATH, &json!({
            "discovery": false, "refresh_seconds": 600, "min_refetch_seconds": 30,
            "timeout_ms": 2000, "until_ready": "wait", "wait_ms": 5000, "failure_mode": "deny"
        })),
        "algorithms": ["RS256", "ES256", "EdDSA"],
        "sources": [
            {"cookie": "__session"},
            {"header": "authorization", "prefix": "Bearer "},
            {"query": "token"}
        ],
        "claims_to_headers": {"sub": "x-user-id", "org.id": "x-org-id", "roles": "x-roles"},
        "strip_source": true,
        "revocation": "none",
        "required_claims": ["sub"],
        "max_lifetime_seconds": 3600
    })
}

/// One request with these headers; `path` may carry a query.
fn get(rig: &Rig, path: &str, headers: &[(&str, &str)]) -> Reply {
    rig.get(path, headers)
}

/// The identity headers a client tries to forge.
const FORGED: [(&str, &str); 3] = [
    ("x-user-id", "mallory"),
    ("x-org-id", "evil-corp"),
    ("x-roles", "root"),
];

fn with_forged<'a>(headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = headers.to_vec();
    all.extend_from_slice(&FORGED);
    all
}

#[test]
fn session_tokens_and_api_keys_through_one_listener() {
    let clerk_idp = Idp::start(CLERK);
    let rsa = IdpKey::rsa("rsa-1");
    let ec = IdpKey::p256("ec-1");
    let ed = IdpKey::ed25519("ed-1");
    for key in [&rsa, &ec, &ed] {
        clerk_idp.publish(key);
    }
    let oidc_idp = Idp::start(OIDC);
    oidc_idp.set_discovered_jwks_path(OIDC_JWKS_PATH);
    let oidc_rsa = IdpKey::rsa("oidc-rsa");
    let oidc_ec384 = IdpKey::p384("oidc-ec384");
    oidc_idp.publish(&oidc_rsa);
    oidc_idp.publish(&oidc_ec384);

    let config = providers_plugin_config(&[
        json!({"name": "api-keys", "secret": {"env": "JWT_SECRET"}}),
        clerk_provider(),
        // Allows HS256 beside RS256, on the same JWKS: the key's type alone must stop an HS256
        // token that names the RSA key.
        json!({
            "name": "confused",
            "issuer": CONFUSED,
            "remote_jwks": remote_jwks("idp", CONFUSED_JWKS_PATH, &json!({"wait_ms": 5000})),
            "algorithms": ["RS256", "HS256"],
            "claims_to_headers": {"sub": "x-user-id"}
        }),
        json!({
            "name": "oidc",
            "issuer": OIDC,
            "audiences": ["my-api"],
            "remote_jwks": {"cluster": "oidc", "authority": "oidc.test", "discovery": true,
                            "wait_ms": 5000},
            "required_claims": ["sub"],
            "claims_to_headers": {"sub": "x-user-id", "email": "x-user-email"}
        }),
    ]);
    let rig = Rig::builder()
        .plugin_config(&config)
        .cluster("idp", clerk_idp.addr)
        .cluster("oidc", oidc_idp.addr)
        .start();
    let mut cases = Cases::new();

    // Fetched when Envoy starts, before any request.
    cases.check(
        "clerk's JWKS is fetched at start, with :authority idp.test",
        clerk_idp
            .wait_for_served(JWKS_PATH, 1, FETCH_TIMEOUT)
            .and_then(|_| {
                let hosts: Vec<String> = clerk_idp.requests().into_iter().map(|r| r.host).collect();
                if hosts.iter().all(|host| host == "idp.test") {
                    Ok(())
                } else {
                    Err(format!("the IdP saw hosts {hosts:?}"))
                }
            }),
    );
    cases.check(
        "confused's JWKS is fetched at start from its own path",
        clerk_idp
            .wait_for_served(CONFUSED_JWKS_PATH, 1, FETCH_TIMEOUT)
            .map(drop),
    );
    cases.check(
        "OIDC discovery: the discovery document, then the JWKS at its jwks_uri's path",
        oidc_idp
            .wait_for_served(OIDC_JWKS_PATH, 1, FETCH_TIMEOUT)
            .and_then(|_| {
                let requests = oidc_idp.requests();
                let first_jwks = requests.iter().position(|r| r.path == OIDC_JWKS_PATH);
                let first_discovery = requests.iter().position(|r| r.path == DISCOVERY_PATH);
                let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
                match (first_discovery, first_jwks) {
                    (Some(d), Some(j)) if d < j => {}
                    _ => return Err(format!("the IdP saw {paths:?}")),
                }
                if paths
                    .iter()
                    .any(|p| *p != DISCOVERY_PATH && *p != OIDC_JWKS_PATH)
                {
                    return Err(format!("the filter fetched other paths: {paths:?}"));
                }
                if requests.iter().any(|r| r.host != "oidc.test") {
                    return Err(format!("not all with :authority oidc.test: {requests:?}"));
                }
                Ok(())
            }),
    );

    // RS256, ES256 and EdDSA session tokens, from the cookie and from the header.
    for (key, user) in [(&rsa, "user-rs"), (&ec, "user-es"), (&ed, "user-ed")] {
        let alg = format!("{:?}", key.alg);
        let token = key.sign(&session_claims(CLERK, user, "org-7", "dashboard"));
        let cookie = format!("theme=dark; __session={token}; lang=en");
        let reply = get(&rig, "/dash", &with_forged(&[("cookie", &cookie)]));
        cases.check(
            &format!("{alg} session token in the __session cookie → 200 with its identity"),
            expect_identity(&reply, Some(user), Some("org-7"), Some("admin,member")),
        );
        cases.check(
            &format!("{alg} cookie: __session stripped, the other cookies kept"),
            expect_echoed(&reply, "cookie", Some("theme=dark; lang=en"))
                .and_then(|()| expect_echoed(&reply, "authorization", None)),
        );
        let authorization = bearer(&token);
        let reply = get(
            &rig,
            "/dash",
            &with_forged(&[("authorization", &authorization)]),
        );
        cases.check(
            &format!("{alg} session token in Authorization: Bearer → 200 with its identity"),
            expect_identity(&reply, Some(user), Some("org-7"), Some("admin,member")),
        );
        cases.check(
            &format!("{alg} header: Authorization stripped (strip_source)"),
            expect_echoed(&reply, "authorization", None),
        );
    }

    let token = rsa.sign(&session_claims(CLERK, "user-q", "org-q", "dashboard"));
    let reply = get(&rig, &format!("/list?page=2&token={token}&sort=asc"), &[]);
    cases.check(
        "session token in the token query parameter → 200, parameter stripped from the path",
        expect_identity(&reply, Some("user-q"), Some("org-q"), Some("admin,member")).and_then(
            |()| match reply.echo()?["path"].as_str() {
                Some("/list?page=2&sort=asc") => Ok(()),
                other => Err(format!("upstream saw path {other:?}")),
            },
        ),
    );

    let cookie = format!("__session={token}");
    let authorization = bearer(&token);
    let reply = get(
        &rig,
        "/",
        &[("cookie", &cookie), ("authorization", &authorization)],
    );
    cases.check(
        "the same session token in the cookie and the header → 200, both stripped",
        expect_identity(&reply, Some("user-q"), Some("org-q"), Some("admin,member"))
            .and_then(|()| expect_echoed(&reply, "cookie", None))
            .and_then(|()| expect_echoed(&reply, "authorization", None)),
    );

    // Several different tokens.
    let other = ec.sign(&session_claims(CLERK, "user-other", "org-q", "dashboard"));
    let other_authorization = bearer(&other);
    cases.check(
        "header and cookie carry different session tokens → 401",
        expect_rejected(
            &get(
                &rig,
                "/",
                &[("cookie", &cookie), ("authorization", &other_authorization)],
            ),
            "several different tokens were presented",
        ),
    );
    // One source spelled twice: readers take the first, the last or a list, so neither is taken.
    for (what, path, cookie) in [
        (
            "two __session cookies",
            "/".to_owned(),
            format!("__session={token}; __session={other}"),
        ),
        (
            "two token query parameters",
            format!("/?token={token}&token={other}"),
            String::new(),
        ),
        (
            "token and tok%65n query parameters",
            format!("/?token={token}&tok%65n={other}"),
            String::new(),
        ),
    ] {
        let headers: Vec<(&str, &str)> = if cookie.is_empty() {
            Vec::new()
        } else {
            vec![("cookie", cookie.as_str())]
        };
        cases.check(
            &format!("{what} with different session tokens → 401"),
            expect_rejected(
                &get(&rig, &path, &headers),
                "several different tokens were presented",
            ),
        );
    }
    let reply = get(&rig, &format!("/list?tok%65n={token}&sort=asc"), &[]);
    cases.check(
        "session token in tok%65n (the upstream reads it as token) → 200, stripped from the path",
        expect_identity(&reply, Some("user-q"), Some("org-q"), Some("admin,member")).and_then(
            |()| match reply.echo()?["path"].as_str() {
                Some("/list?sort=asc") => Ok(()),
                other => Err(format!("upstream saw path {other:?}")),
            },
        ),
    );
    let api_key = sign(
        &json!({"user_id": "api-user", "org_id": "api-org", "iat": now(), "exp": now() + 600}),
        SECRET,
    );
    let api_authorization = bearer(&api_key);
    cases.check(
        "an API key in the header and a session token in the cookie → 401",
        expect_rejected(
            &get(
                &rig,
                "/",
                &[("cookie", &cookie), ("authorization", &api_authorization)],
            ),
            "several different tokens were presented",
        ),
    );

    // An HS256 API key beside the session tokens, mapped by its own provider.
    let reply = get(
        &rig,
        "/api",
        &with_forged(&[("authorization", &api_authorization)]),
    );
    cases.check(
        "HS256 API key (JWT_SECRET, with exp) → 200 with user_id/org_id, no x-roles",
        expect_identity(&reply, Some("api-user"), Some("api-org"), None),
    );
    cases.check(
        "API key: Authorization kept (the api-keys provider does not strip it)",
        expect_echoed(&reply, "authorization", Some(&api_authorization)),
    );
    let api_cookie = format!("__session={api_key}");
    cases.check(
        "an API key in the __session cookie (no provider reads API keys there) → 401",
        expect_rejected(
            &get(&rig, "/", &[("cookie", &api_cookie)]),
            "no provider accepts this token",
        ),
    );
    let issued = rig.keyservice.issue("ks-user", Some("ks-org"), None);
    let ks_authorization = bearer(&issued.key);
    let callouts = rig.callouts();
    cases.check(
        "a non-expiring API key from keyservice → 200 after its revocation callout",
        expect_identity(
            &get(&rig, "/api", &[("authorization", &ks_authorization)]),
            Some("ks-user"),
            Some("ks-org"),
            None,
        )
        .and_then(|()| match rig.callouts() - callouts {
            1 => Ok(()),
            n => Err(format!("{n} callouts to keyservice, expected 1")),
        }),
    );
    cases.check(
        "no token at all → 401 with the bare challenge",
        expect_missing_credential(&get(&rig, "/", &[])),
    );

    // Issuer and audience.
    let invalid_claims_before = rig.keygate_stat("requests_denied_invalid_claims");
    let evil = rsa.sign(&session_claims(
        "https://evil.test",
        "user-x",
        "org-x",
        "dashboard",
    ));
    let evil_cookie = format!("__session={evil}");
    cases.check(
        "issuer mismatch (iss https://evil.test, clerk's key), in the cookie → 401",
        expect_rejected(
            &get(&rig, "/", &[("cookie", &evil_cookie)]),
            "token issuer is not accepted",
        ),
    );
    cases.check(
        "issuer mismatch (iss https://evil.test, clerk's key), in the header → 401",
        expect_rejected(
            &get(&rig, "/", &[("authorization", &bearer(&evil))]),
            "token issuer is not accepted",
        ),
    );
    let mut no_iss = session_claims(CLERK, "user-x", "org-x", "dashboard");
    no_iss.as_object_mut().unwrap().remove("iss");
    cases.check(
        "no iss at all (clerk's key), in the cookie → 401",
        expect_status(
            &get(
                &rig,
                "/",
                &[("cookie", &format!("__session={}", rsa.sign(&no_iss)))],
            ),
            401,
        ),
    );
    let wrong_aud = rsa.sign(&session_claims(CLERK, "user-x", "org-x", "billing"));
    cases.check(
        "audience mismatch (aud billing) → 401",
        expect_rejected(
            &get(&rig, "/", &[("authorization", &bearer(&wrong_aud))]),
            "token audience is not accepted",
        ),
    );
    let mut no_aud = session_claims(CLERK, "user-x", "org-x", "dashboard");
    no_aud.as_object_mut().unwrap().remove("aud");
    cases.check(
        "no aud while the provider requires one → 401",
        expect_rejected(
            &get(&rig, "/", &[("authorization", &bearer(&rsa.sign(&no_aud)))]),
            "token audience is not accepted",
        ),
    );
    let mut many_aud = session_claims(CLERK, "user-aud", "org-aud", "dashboard");
    many_aud["aud"] = json!(["billing", "dashboard"]);
    cases.check(
        "aud array containing dashboard → 200",
        expect_identity(
            &get(
                &rig,
                "/",
                &[("authorization", &bearer(&ec.sign(&many_aud)))],
            ),
            Some("user-aud"),
            Some("org-aud"),
            Some("admin,member"),
        ),
    );
    cases.check(
        "issuer and audience denials counted in requests_denied_invalid_claims",
        match rig.keygate_stat("requests_denied_invalid_claims") - invalid_claims_before {
            // Two issuer mismatches, two audience mismatches.
            4 => Ok(()),
            n => Err(format!(
                "requests_denied_invalid_claims went up by {n}, expected 4"
            )),
        },
    );

    // The other claim checks of the provider.
    let mut no_sub = session_claims(CLERK, "x", "org-x", "dashboard");
    no_sub.as_object_mut().unwrap().remove("sub");
    cases.check(
        "required claim sub missing → 401",
        expect_rejected(
            &get(&rig, "/", &[("authorization", &bearer(&rsa.sign(&no_sub)))]),
            "token lacks a required claim",
        ),
    );
    let mut long_lived = session_claims(CLERK, "user-x", "org-x", "dashboard");
    long_lived["exp"] = json!(now() + 7200);
    cases.check(
        "lifetime above max_lifetime_seconds 3600 → 401",
        expect_rejected(
            &get(
                &rig,
                "/",
                &[("authorization", &bearer(&ed.sign(&long_lived)))],
            ),
            "token lifetime is too long",
        ),
    );
    let mut expired = session_claims(CLERK, "user-x", "org-x", "dashboard");
    expired["iat"] = json!(now() - 1000);
    expired["exp"] = json!(now() - 400);
    cases.check(
        "expired session token → 401",
        expect_rejected(
            &get(&rig, "/", &[("authorization", &bearer(&ec.sign(&expired)))]),
            "token has expired",
        ),
    );
    let forged = rsa.sign_as(
        Some("ec-1"),
        &session_claims(CLERK, "user-x", "org-x", "dashboard"),
    );
    cases.check(
        "RS256 token naming the EC key (ec-1) → 401",
        expect_status(&get(&rig, "/", &[("authorization", &bearer(&forged))]), 401),
    );
    let other_rsa_signature = {
        let token = rsa.sign(&session_claims(CLERK, "user-x", "org-x", "dashboard"));
        let impostor = oidc_rsa.sign(&session_claims(CLERK, "user-x", "org-x", "dashboard"));
        let (head_payload, _) = token.rsplit_once('.').unwrap();
        let (_, signature) = impostor.rsplit_once('.').unwrap();
        format!("{head_payload}.{signature}")
    };
    cases.check(
        "rsa-1 token with another RSA key's signature → 401",
        expect_rejected(
            &get(
                &rig,
                "/",
                &[("authorization", &bearer(&other_rsa_signature))],
            ),
            "token signature is invalid",
        ),
    );

    // Algorithm confusion: HS256 "signed" with the RSA public key's bytes, naming the RSA key.
    let pem = rsa.public_pem.clone().expect("an RSA key has a PEM");
    let jwk_bytes = rsa.jwk().to_string();
    for (what, secret) in [("PEM", pem.as_bytes()), ("JWK JSON", jwk_bytes.as_bytes())] {
        let confused = sign_hmac_bytes(
            Algorithm::HS256,
            Some("rsa-1"),
            &session_claims(CLERK, "attacker", "org-x", "dashboard"),
            secret,
        );
        cases.check(
            &format!("algorithm confusion: HS256 with rsa-1's public {what}, iss clerk → 401"),
            expect_rejected(
                &get(&rig, "/", &[("authorization", &bearer(&confused))]),
                "token algorithm is not allowed",
            ),
        );
        let confused_cookie = format!("__session={confused}");
        cases.check(
            &format!("algorithm confusion ({what}) in the __session cookie → 401"),
            expect_rejected(
                &get(&rig, "/", &[("cookie", &confused_cookie)]),
                "token algorithm is not allowed",
            ),
        );
        for kid in [Some("rsa-1"), None] {
            let confused = sign_hmac_bytes(
                Algorithm::HS256,
                kid,
                &json!({"iss": CONFUSED, "sub": "attacker", "iat": now(), "exp": now() + 600}),
                secret,
            );
            cases.check(
                &format!(
                    "algorithm confusion ({what}, kid {kid:?}) against a provider allowing HS256 and RS256 → 401"
                ),
                expect_rejected(
                    &get(&rig, "/", &[("authorization", &bearer(&confused))]),
                    "token algorithm is not allowed",
                ),
            );
        }
    }
    let genuine = rsa.sign(&json!({"iss": CONFUSED, "sub": "confused-user", "exp": now() + 600}));
    cases.check(
        "…while the same provider accepts a genuine RS256 token from the same key",
        expect_identity(
            &get(&rig, "/", &[("authorization", &bearer(&genuine))]),
            Some("confused-user"),
            None,
            None,
        ),
    );

    // The OIDC provider, found through discovery.
    for key in [&oidc_rsa, &oidc_ec384] {
        let mut claims = session_claims(OIDC, "oidc-user", "unused", "my-api");
        claims["email"] = json!("oidc-user@example.com");
        let reply = get(
            &rig,
            "/",
            &with_forged(&[("authorization", &bearer(&key.sign(&claims)))]),
        );
        cases.check(
            &format!(
                "{:?} token of the OIDC provider (keys from discovery) → 200",
                key.alg
            ),
            expect_identity(&reply, Some("oidc-user"), None, None).and_then(|()| {
                expect_echoed(&reply, "x-user-email", Some("oidc-user@example.com"))
            }),
        );
    }
    let cross = rsa.sign(&session_claims(OIDC, "user-x", "org-x", "my-api"));
    cases.check(
        "a clerk key cannot sign for the OIDC provider → 401",
        expect_rejected(
            &get(&rig, "/", &[("authorization", &bearer(&cross))]),
            "token names an unknown key",
        ),
    );

    // docs/observability.md: jwks_fetch_ok counts "remote JWKS and discovery fetches"; every fetch
    // so far was answered 200 (the requests that caused any waited for them).
    let served = clerk_idp
        .requests()
        .iter()
        .chain(oidc_idp.requests().iter())
        .filter(|r| r.status == Some(200))
        .count() as u64;
    let mut ok = 0;
    cases.check(
        "jwks_fetch_ok equals the fetches the IdPs answered 200, discovery included",
        poll(Duration::from_secs(5), Duration::from_millis(50), || {
            ok = rig.keygate_stat("jwks_fetch_ok");
            (ok == served).then_some(())
        })
        .ok_or_else(|| {
            format!(
                "jwks_fetch_ok is {ok}, the IdPs answered {served} fetches with 200 ({} of them discovery)",
                oidc_idp.served(DISCOVERY_PATH)
            )
        }),
    );
    let counters = rig.keygate_counters();
    cases.check(
        "jwks_fetch_ok counted the fetches, jwks_fetch_error none",
        match (
            counters.get("jwks_fetch_ok"),
            counters.get("jwks_fetch_error"),
        ) {
            (Some(ok), Some(0)) if *ok >= 3 => Ok(()),
            other => Err(format!("jwks_fetch_ok/_error: {other:?}")),
        },
    );
    cases.finish(|| rig.envoy_log_tail(60));
}

/// Before the first JWKS arrives (the IdP answers 503 at start): `until_ready: "wait"` holds
/// requests up to `wait_ms` then answers 503; `"fail"` answers 503 without waiting;
/// `failure_mode: "allow"` lets them through without identity. Once the IdP is up, all three
/// verify tokens.
#[test]
fn before_the_first_jwks() {
    let mut idp = Idp::start_in("https://idp.test", Mode::Status(503));
    let key = IdpKey::p256("ec-1");
    idp.publish(&key);
    let provider = |name: &str, extra: Value| {
        json!({
            "name": name,
            "issuer": format!("https://{name}.test"),
            "remote_jwks": remote_jwks("idp", &format!("/jwks/{name}"), &extra),
            "claims_to_headers": {"sub": "x-user-id"},
            "sources": [{"cookie": "__session"}, {"header": "authorization", "prefix": "Bearer "}],
            "strip_source": true
        })
    };
    let config = providers_plugin_config(&[
        provider(
            "waiting",
            json!({"until_ready": "wait", "wait_ms": 500, "min_refetch_seconds": 1}),
        ),
        provider("failing", json!({"until_ready": "fail"})),
        provider(
            "open",
            json!({"until_ready": "wait", "wait_ms": 300, "failure_mode": "allow",
                   "min_refetch_seconds": 1}),
        ),
    ]);
    let rig = Rig::builder()
        .plugin_config(&config)
        .cluster("idp", idp.addr)
        .start();
    let mut cases = Cases::new();
    let token = |name: &str, sub: &str| {
        key.sign(&json!({"iss": format!("https://{name}.test"), "sub": sub,
                         "iat": now(), "exp": now() + 600}))
    };

    for name in ["waiting", "failing", "open"] {
        cases.check(
            &format!("{name}: the JWKS fetch at start reached the IdP (answered 503)"),
            idp.wait_for_count(&format!("/jwks/{name}"), 1, FETCH_TIMEOUT)
                .map(drop),
        );
    }
    let errors = poll_keygate_stat(&rig, "jwks_fetch_error", 3, FETCH_TIMEOUT);
    cases.check(
        "the failed fetches are counted in jwks_fetch_error",
        errors.map(drop),
    );

    cases.check(
        "until_ready wait (wait_ms 500), IdP down → 503",
        expect_unavailable(&rig.get("/", &[("authorization", &bearer(&token("waiting", "w")))])),
    );
    cases.check(
        "until_ready fail, IdP down → 503",
        expect_unavailable(&rig.get("/", &[("authorization", &bearer(&token("failing", "f")))])),
    );
    let allowed_on_failure = rig.keygate_stat("requests_allowed_on_failure");
    let open_cookie = format!("theme=dark; __session={}", token("open", "o"));
    let reply = rig.get("/", &[("cookie", &open_cookie), ("x-user-id", "mallory")]);
    cases.check(
        "failure_mode allow, IdP down → 200 without identity (forged x-user-id removed)",
        expect_status(&reply, 200)
            .and_then(|()| expect_echoed(&reply, "x-user-id", None))
            .and_then(|()| expect_echoed(&reply, "cookie", Some("theme=dark"))),
    );
    cases.check(
        "…counted in requests_allowed_on_failure",
        match rig.keygate_stat("requests_allowed_on_failure") - allowed_on_failure {
            1 => Ok(()),
            n => Err(format!("went up by {n}, expected 1")),
        },
    );
    cases.check(
        "no token at all while the IdP is down → 401",
        expect_missing_credential(&rig.get("/", &[])),
    );
    cases.check(
        "denials while the IdP is down counted in requests_denied_unavailable",
        match rig.keygate_stat("requests_denied_unavailable") {
            n if n >= 2 => Ok(()),
            n => Err(format!("requests_denied_unavailable is {n}, expected ≥ 2")),
        },
    );
    // "fail" answers without holding the request: the filter's decision log shows requests of
    // "waiting" and "open" parked for keys, never one of "failing".
    // (Envoy flushes its log file every 100 ms: wait for the line of the "waiting" request.)
    let log = poll(Duration::from_secs(5), Duration::from_millis(50), || {
        let log = rig.envoy.log_text();
        log.contains("provider=waiting outcome=await_keys")
            .then_some(log)
    });
    cases.check(
        "until_ready fail never holds a request (no await_keys for it in the log)",
        match log {
            None => Err("the log shows no request of provider waiting held for keys".to_owned()),
            Some(log) if log.contains("provider=failing outcome=await_keys") => {
                Err("the log shows a request of provider failing held for keys".to_owned())
            }
            Some(_) => Ok(()),
        },
    );

    // The IdP comes up: the retries (with backoff) fetch the keys and tokens verify.
    idp.set_mode(Mode::Up);
    for name in ["waiting", "failing", "open"] {
        let mut last = None;
        let ok = poll(Duration::from_secs(60), Duration::from_millis(200), || {
            let reply = rig.get(
                "/",
                &[
                    ("authorization", &bearer(&token(name, name))),
                    ("x-user-id", "mallory"),
                ],
            );
            let ok = expect_identity(&reply, Some(name), None, None).is_ok();
            last = Some(reply.describe());
            ok.then_some(())
        });
        cases.check(
            &format!("{name}: once the IdP is up, a token verifies → 200 with its identity"),
            ok.ok_or_else(|| format!("still not 200 after 60 s; last reply {last:?}")),
        );
    }
    let mut bad = token("open", "o").into_bytes();
    let last = bad.len() - 2;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    cases.check(
        "failure_mode allow with keys: a bad signature → 401",
        expect_status(&rig.get("/", &[("authorization", &bearer(&bad))]), 401),
    );

    // The IdP goes down again (its port closed): the keys in hand keep working.
    idp.close();
    for name in ["waiting", "failing", "open"] {
        cases.check(
            &format!("{name}: IdP down again, keys kept → 200"),
            expect_identity(
                &rig.get("/", &[("authorization", &bearer(&token(name, name)))]),
                Some(name),
                None,
                None,
            ),
        );
    }
    // A token naming an unknown key while the IdP is down: the refetch fails, the keys in hand do
    // not have the kid, so the token is invalid (401) — not "no keys" (503), and never let through
    // by failure_mode allow, which is for a provider with no keys at all.
    let stranger = IdpKey::p256("stranger");
    for name in ["waiting", "open"] {
        // The refetch window (min_refetch_seconds 1, on a clock of whole seconds) since the last
        // fetch must have passed for the unknown kid to trigger a refetch at all.
        idp.wait_out_refetch_window(&format!("/jwks/{name}"), 1);
        let forged = stranger.sign(
            &json!({"iss": format!("https://{name}.test"), "sub": "mallory",
                                           "iat": now(), "exp": now() + 600}),
        );
        let reply = rig.get(
            "/",
            &[
                ("authorization", &bearer(&forged)),
                ("x-user-id", "mallory"),
            ],
        );
        cases.check(
            &format!("{name}: unknown kid while the IdP is down → 401 unknown key"),
            expect_rejected(&reply, "token names an unknown key"),
        );
    }
    cases.finish(|| rig.envoy_log_tail(60));
}
