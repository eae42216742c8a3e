//! Route policy in a real Envoy: requirements selected by Envoy routes' metadata (the shipped
//! `deploy/envoy/requirements.yaml`, run as it is but on loopback), providers per route, optional
//! identity, claim conditions on a provider (Clerk's `azp`) and on a requirement, the identity as
//! filter state read by Envoy's access log and RBAC, `all` and `allow_missing_or_failed` with
//! keyservice's answers, and a route naming a requirement keygate does not have.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::bootstrap_edit::shipped_bootstrap;
use testkit::http::Reply;
use testkit::idp::{Idp, JWKS_PATH};
use testkit::idp_keys::IdpKey;
use testkit::poll;
use testkit::token::now;

use crate::support::providers::{expect_rejected, remote_jwks};
use crate::support::{
    Cases, Rig, expect_allowed, expect_body, expect_echoed, expect_missing_credential,
    expect_status, providers_plugin_config,
};

const CLERK: &str = "https://clerk.example.com";
const APP: &str = "https://app.example.com";
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// A Clerk session's claims (v1 organisation claims), issued for `azp`.
fn session(sub: &str, org_role: &str, azp: &str) -> Value {
    let now = now();
    json!({
        "iss": CLERK, "sub": sub, "azp": azp, "sid": "sess_1",
        "org_id": "org_7", "org_role": org_role,
        "iat": now, "nbf": now, "exp": now + 60,
    })
}

fn cookie(token: &str) -> String {
    format!("__session={token}")
}

/// The access log lines Envoy wrote, once it has written at least `count`.
fn access_lines(rig: &Rig, count: usize) -> Result<Vec<String>, String> {
    let read = || -> Vec<String> {
        rig.envoy
            .log_text()
            .lines()
            .filter(|line| line.starts_with("access "))
            .map(str::to_owned)
            .collect()
    };
    poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let lines = read();
        (lines.len() >= count).then_some(lines)
    })
    .ok_or_else(|| format!("fewer than {count} access log lines: {:?}", read()))
}

#[test]
fn the_shipped_route_policy_example() {
    let idp = Idp::start(CLERK);
    let rsa = IdpKey::rsa("clerk-1");
    idp.publish(&rsa);
    let rig = Rig::builder()
        .bootstrap(shipped_bootstrap("deploy/envoy/requirements.yaml"))
        .cluster("clerk", idp.addr)
        .start();
    let mut cases = Cases::new();
    cases.check(
        "clerk's JWKS is fetched at start",
        idp.wait_for_served(JWKS_PATH, 1, FETCH_TIMEOUT).map(|_| ()),
    );
    let key = rig.keyservice.issue("user_api", Some("org_api"), None);
    let member = rsa.sign(&session("user_2", "org:member", APP));
    let admin = rsa.sign(&session("user_3", "org:admin", APP));
    let elsewhere = rsa.sign(&session("user_2", "org:admin", "https://evil.example"));
    let bearer = format!("Bearer {}", key.key);
    let forged = [("x-user-id", "mallory"), ("x-org-id", "evil")];
    let get = |path: &str, headers: &[(&str, &str)]| -> Reply {
        let mut all = headers.to_vec();
        all.extend_from_slice(&forged);
        rig.get(path, &all)
    };

    // /api: API keys only.
    cases.check(
        "/api with an API key: its identity, not the forged one",
        expect_allowed(
            &get("/api/jobs", &[("authorization", &bearer)]),
            Some("user_api"),
            Some("org_api"),
        ),
    );
    cases.check(
        "/api with only a session cookie: no credential",
        expect_missing_credential(&get("/api/jobs", &[("cookie", &cookie(&member))])),
    );
    // /dashboard: Clerk sessions only, for the app's origin.
    cases.check(
        "/dashboard with a session: the session's identity",
        expect_allowed(
            &get("/dashboard/keys", &[("cookie", &cookie(&member))]),
            Some("user_2"),
            Some("org_7"),
        ),
    );
    cases.check(
        "/dashboard with only an API key: no credential",
        expect_missing_credential(&get("/dashboard/keys", &[("authorization", &bearer)])),
    );
    cases.check(
        "/dashboard with a session issued for another origin (azp): invalid",
        expect_rejected(
            &get("/dashboard/keys", &[("cookie", &cookie(&elsewhere))]),
            "token claims are not accepted",
        ),
    );
    // /public: either, or none.
    cases.check(
        "/public without a token: on, without identity (forged headers dropped)",
        expect_allowed(&get("/public/docs", &[]), None, None),
    );
    cases.check(
        "/public with a session: its identity",
        expect_allowed(
            &get("/public/docs", &[("cookie", &cookie(&member))]),
            Some("user_2"),
            Some("org_7"),
        ),
    );
    cases.check(
        "/public with an API key: its identity",
        expect_allowed(
            &get("/public/docs", &[("authorization", &bearer)]),
            Some("user_api"),
            Some("org_api"),
        ),
    );
    cases.check(
        "/public with a forged token: still refused",
        expect_rejected(
            &get(
                "/public/docs",
                &[("authorization", &format!("Bearer {}", forged_key()))],
            ),
            "token signature is invalid",
        ),
    );
    // /admin: keygate verifies the session, RBAC reads the role from filter state.
    cases.check(
        "/admin as an organisation admin",
        expect_allowed(
            &get("/admin/users", &[("cookie", &cookie(&admin))]),
            Some("user_3"),
            Some("org_7"),
        ),
    );
    cases.check(
        "/admin as a member: RBAC refuses",
        expect_status(&get("/admin/users", &[("cookie", &cookie(&member))]), 403).and_then(|()| {
            expect_body(
                &get("/admin/users", &[("cookie", &cookie(&member))]),
                "RBAC: access denied",
            )
        }),
    );
    cases.check(
        "/admin with a role header of its own: the client cannot set filter state",
        expect_status(
            &get(
                "/admin/users",
                &[
                    ("cookie", &cookie(&member)),
                    ("org_role", "org:admin"),
                    ("x-org-role", "org:admin"),
                ],
            ),
            403,
        ),
    );
    cases.check(
        "/admin without a token: keygate's 401",
        expect_missing_credential(&get("/admin/users", &[])),
    );
    // The default requirement: API keys.
    cases.check(
        "another route with an API key",
        expect_allowed(
            &get("/other", &[("authorization", &bearer)]),
            Some("user_api"),
            Some("org_api"),
        ),
    );
    cases.check(
        "another route with a session: no credential",
        expect_missing_credential(&get("/other", &[("cookie", &cookie(&member))])),
    );
    // The access log reads the identity keygate published.
    cases.check(
        "the access log shows provider, user and org from filter state",
        access_lines(&rig, 14).and_then(|lines| {
            let expected = [
                "access GET /api/jobs 200 provider=api-keys user=user_api org=org_api",
                "access GET /dashboard/keys 200 provider=clerk user=user_2 org=org_7",
                "access GET /public/docs 200 provider=- user=- org=-",
                "access GET /admin/users 403 provider=clerk user=user_2 org=org_7",
                "access GET /api/jobs 401 provider=- user=- org=-",
            ];
            match expected
                .iter()
                .find(|line| !lines.iter().any(|l| l == *line))
            {
                None => Ok(()),
                Some(missing) => Err(format!("no line {missing:?} in {lines:#?}")),
            }
        }),
    );
    cases.check(
        "requests let on without identity are counted",
        poll_stat(&rig, "requests_allowed_anonymous", 1),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

fn forged_key() -> String {
    testkit::token::sign(&json!({"user_id": "admin", "iat": now()}), "not-the-secret")
}

fn poll_stat(rig: &Rig, name: &str, at_least: u64) -> Result<(), String> {
    crate::support::providers::poll_keygate_stat(rig, name, at_least, Duration::from_secs(10))
        .map(|_| ())
}

/// Routes of the rig's Envoy, each naming a requirement in its metadata.
fn routes(named: &[(&str, &str)]) -> Value {
    let mut routes: Vec<Value> = named
        .iter()
        .map(|(prefix, requirement)| {
            json!({
                "match": {"prefix": prefix},
                "route": {"cluster": "echo"},
                "metadata": {"filter_metadata": {"keygate": {"requirement": requirement}}}
            })
        })
        .collect();
    routes.push(json!({"match": {"prefix": "/"}, "route": {"cluster": "echo"}}));
    json!(routes)
}

#[test]
fn all_lenient_and_unknown_requirements_with_keyservice() {
    let idp = Idp::start(CLERK);
    let rsa = IdpKey::rsa("clerk-1");
    idp.publish(&rsa);
    let mut config = providers_plugin_config(&[
        json!({"name": "api-keys", "secret": {"env": "JWT_SECRET"}}),
        json!({
            "name": "clerk", "issuer": CLERK,
            "remote_jwks": remote_jwks("idp", JWKS_PATH, &json!({"wait_ms": 5000})),
            "algorithms": ["RS256"], "sources": [{"cookie": "__session"}],
            "claims_to_headers": {"sub": "x-session-user"}
        }),
    ]);
    config["requirements"] = json!({
        "both": {"all": ["api-keys", "clerk"]},
        "lenient": {"provider": "api-keys", "allow_missing_or_failed": true},
        "admins": {"provider": "clerk", "claims": [{"claim": "org_role", "in": ["org:admin"]}]}
    });
    config["filter_state"] = json!({"claims": {"user_id": "user_id"}});
    let rig = Rig::builder()
        .plugin_config(&config)
        .cluster("idp", idp.addr)
        .routes(routes(&[
            ("/both/", "both"),
            ("/lenient/", "lenient"),
            ("/admins/", "admins"),
            ("/typo/", "nope"),
        ]))
        // keyservice's "active" answers are kept a second, so the revocation shows soon.
        .keyservice_args(&["--cache-active-seconds", "1"])
        .start();
    let mut cases = Cases::new();
    cases.check(
        "the JWKS is fetched at start",
        idp.wait_for_served(JWKS_PATH, 1, FETCH_TIMEOUT).map(|_| ()),
    );
    let key = rig.keyservice.issue("user_api", Some("org_api"), None);
    let bearer = format!("Bearer {}", key.key);
    let member = cookie(&rsa.sign(&session("user_2", "org:member", APP)));
    let admin = cookie(&rsa.sign(&session("user_3", "org:admin", APP)));

    cases.check(
        "all: the key and the session, each provider's headers",
        rig.get(
            "/both/x",
            &[("authorization", &bearer), ("cookie", &member)],
        )
        .pipe(|reply| {
            expect_allowed(reply, Some("user_api"), Some("org_api"))
                .and_then(|()| expect_echoed(reply, "x-session-user", Some("user_2")))
        }),
    );
    cases.check(
        "all: the key alone is not enough",
        expect_missing_credential(&rig.get("/both/x", &[("authorization", &bearer)])),
    );
    cases.check(
        "all: the session alone is not enough",
        expect_missing_credential(&rig.get("/both/x", &[("cookie", &member)])),
    );
    cases.check(
        "a requirement's claim condition: 403 insufficient_scope",
        rig.get("/admins/x", &[("cookie", &member)]).pipe(|reply| {
            expect_status(reply, 403)?;
            let challenge = reply.header("www-authenticate")?;
            if challenge.contains(r#"error="insufficient_scope""#) {
                Ok(())
            } else {
                Err(format!("www-authenticate {challenge:?}"))
            }
        }),
    );
    cases.check(
        "the condition met",
        expect_status(&rig.get("/admins/x", &[("cookie", &admin)]), 200),
    );
    cases.check(
        "lenient, valid key: identity",
        expect_allowed(
            &rig.get("/lenient/x", &[("authorization", &bearer)]),
            Some("user_api"),
            Some("org_api"),
        ),
    );
    cases.check(
        "lenient, forged key: on without identity",
        expect_allowed(
            &rig.get(
                "/lenient/x",
                &[
                    ("authorization", &format!("Bearer {}", forged_key())),
                    ("x-user-id", "mallory"),
                ],
            ),
            None,
            None,
        ),
    );
    rig.keyservice.revoke(&key.id);
    cases.check(
        "lenient, revoked key: on without identity once keyservice says so",
        poll(Duration::from_secs(15), Duration::from_millis(200), || {
            let reply = rig.get("/lenient/x", &[("authorization", &bearer)]);
            expect_allowed(&reply, None, None).ok()
        })
        .ok_or_else(|| "the revoked key kept its identity".to_owned()),
    );
    cases.check(
        "the revoked key on a strict route: 401",
        expect_status(&rig.get("/other", &[("authorization", &bearer)]), 401),
    );
    cases.check(
        "a route naming an unknown requirement: 500, fail closed",
        rig.get("/typo/x", &[("authorization", &bearer)])
            .pipe(|reply| {
                expect_status(reply, 500)?;
                expect_body(reply, "Route requirement is not configured")
            }),
    );
    cases.check(
        "unknown requirements are counted",
        poll_stat(&rig, "requests_denied_unknown_requirement", 1),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

/// `value.pipe(f)`: applies `f` to a reply inline.
trait Pipe: Sized {
    fn pipe<T>(&self, f: impl FnOnce(&Self) -> T) -> T {
        f(self)
    }
}

impl Pipe for Reply {}
