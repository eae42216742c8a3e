//! Route rules: ordered, first match wins, matched against the path as the upstream receives it
//! (query dropped, escapes of ordinary characters decoded); a path that upstreams read in
//! different ways (an encoded `/`, `\`, `;`, `?`, `#` or `%`, a `\`, a `.` or `..` segment, a
//! bad escape, `;` parameters or `//` that would select another rule) is 400 `Bad request`. The
//! rig's Envoy here does no path normalisation of its own, so keygate's reading is what is tested;
//! `path_differential` sends the same spellings through the shipped Envoy configurations.
//! `allow` needs no token but still drops client-sent identity headers; `deny` is 403
//! `Forbidden`; `require_scopes` needs a token granting every listed scope (`scopes` array or
//! space-delimited `scope`).
//!
//! Requests go out raw (`Rig::raw_request`), so that paths reach Envoy exactly as written.

use serde_json::{Value, json};
use testkit::http::Reply;
use testkit::token::{now, sign};

use crate::support::{
    Cases, Rig, SECRET, default_plugin_config, expect_allowed, expect_body, expect_invalid_token,
    expect_missing_credential, expect_status,
};

const INSUFFICIENT_SCOPE: &str = "Insufficient scope";

fn rules_config() -> Value {
    let mut config = default_plugin_config();
    config["rules"] = json!([
        {"match": {"path": "/healthz"}, "action": "allow"},
        {"match": {"prefix": "/public/", "methods": ["GET", "HEAD"]}, "action": "allow"},
        {"match": {"glob": "/admin/**"}, "action": "deny"},
        {"match": {"glob": "/billing/**", "methods": ["GET", "HEAD"]},
         "action": "require_scopes", "scopes": ["billing:read"]},
        {"match": {"glob": "/billing/**"},
         "action": "require_scopes", "scopes": ["billing:read", "billing:write"]},
        {"match": {"prefix": "/files/", "methods": ["DELETE"]}, "action": "deny"},
        {"match": {"prefix": "/"}, "action": "authenticate"}
    ]);
    config
}

fn token(claims: Value) -> String {
    let mut claims = claims;
    claims["user_id"] = json!("alice");
    claims["exp"] = json!(now() + 600);
    sign(&claims, SECRET)
}

/// 403 `Forbidden` (a `deny` rule): text/plain, no challenge.
fn expect_forbidden(reply: &Reply) -> Result<(), String> {
    expect_status(reply, 403)?;
    expect_body(reply, "Forbidden")?;
    expect_no_challenge(reply)
}

/// 400 `Bad request` (a path that upstreams read in different ways).
fn expect_bad_request(reply: &Reply) -> Result<(), String> {
    expect_status(reply, 400)?;
    expect_body(reply, "Bad request")?;
    expect_no_challenge(reply)
}

fn expect_no_challenge(reply: &Reply) -> Result<(), String> {
    match reply.headers.get("www-authenticate") {
        None => Ok(()),
        Some(values) => Err(format!("unexpected www-authenticate {values:?}")),
    }
}

/// 403 `Insufficient scope` with the RFC 6750 challenge naming every required scope.
fn expect_insufficient_scope(reply: &Reply, required: &str) -> Result<(), String> {
    expect_status(reply, 403)?;
    expect_body(reply, INSUFFICIENT_SCOPE)?;
    let expected = format!(
        r#"Bearer realm="keygate", error="insufficient_scope", error_description="token lacks a scope this route requires", scope="{required}""#
    );
    let challenge = reply.header("www-authenticate")?;
    if challenge == expected {
        Ok(())
    } else {
        Err(format!(
            "www-authenticate {challenge:?}, expected {expected:?}"
        ))
    }
}

/// Tallies the denials a test expects, to compare with the stats at the end.
#[derive(Default)]
struct Denials {
    forbidden_rule: u64,
    forbidden_scope: u64,
    bad_path: u64,
}

#[test]
fn rules_allow_deny_and_require_scopes_on_the_path_as_forwarded() {
    let rig = Rig::builder().plugin_config(&rules_config()).start();
    let mut cases = Cases::new();
    let mut denials = Denials::default();
    let plain = token(json!({}));
    let auth = |token: &str| format!("Bearer {token}");
    let plain_auth = auth(&plain);
    let forged = [("x-user-id", "mallory"), ("x-org-id", "evil-corp")];

    // allow: no token needed, and client-sent identity headers are still dropped.
    for (method, path) in [
        ("GET", "/healthz"),
        ("POST", "/healthz"),
        ("GET", "/healthz?verbose=1"),
        ("GET", "/public/app.css"),
        ("GET", "/public/app.css;v=2"),
        ("GET", "/public//app.css"),
        ("GET", "/%70ublic/app.css"),
    ] {
        cases.check(
            &format!("allow: {method} {path} without a token, forged identity dropped"),
            expect_allowed(&rig.raw_request(method, path, &forged), None, None),
        );
    }
    cases.check(
        "allow: HEAD /public/app.css without a token",
        expect_status(&rig.raw_request("HEAD", "/public/app.css", &[]), 200),
    );
    let with_token = [
        ("authorization", plain_auth.as_str()),
        ("x-user-id", "mallory"),
    ];
    cases.check(
        "allow: GET /healthz with a token and a forged x-user-id: neither identity goes upstream",
        expect_allowed(&rig.raw_request("GET", "/healthz", &with_token), None, None),
    );
    for (method, path, why) in [
        ("GET", "/healthz/", "a path rule matches that path only"),
        ("GET", "/healthzz", "a path rule matches that path only"),
        ("POST", "/public/form", "the allow rule is for GET and HEAD"),
        ("GET", "/public", "the prefix is /public/"),
    ] {
        cases.check(
            &format!("authenticate: {method} {path} without a token ({why})"),
            expect_missing_credential(&rig.raw_request(method, path, &forged)),
        );
    }

    // deny: 403 Forbidden with or without a token, however the path is spelled.
    let deny_paths = [
        "/admin",
        "/admin/",
        "/admin/users/7",
        "/admin//users",
        "/admin/users;x=1",
        "/admin?x=1",
        "/admin/?next=/healthz",
        "/admin?x=/../healthz",
        "/%61dmin",
        "/%61%64%6d%69%6e/users",
        "/ad%6Din",
        // Absolute form: Envoy hands the filter the path alone.
        "http://127.0.0.1/admin",
    ];
    for path in deny_paths {
        cases.check(
            &format!("deny: GET {path} without a token"),
            expect_forbidden(&rig.raw_request("GET", path, &[])),
        );
        cases.check(
            &format!("deny: GET {path} with a valid token"),
            expect_forbidden(&rig.raw_request("GET", path, &[("authorization", &plain_auth)])),
        );
        denials.forbidden_rule += 2;
    }
    cases.check(
        "deny: DELETE /admin (any method)",
        expect_forbidden(&rig.raw_request("DELETE", "/admin", &[("authorization", &plain_auth)])),
    );
    denials.forbidden_rule += 1;

    // Matching is case-sensitive, as documented: /ADMIN is another path, authenticated.
    cases.check(
        "case-sensitive: GET /ADMIN without a token is 401, not the deny rule",
        expect_missing_credential(&rig.raw_request("GET", "/ADMIN", &[])),
    );

    // Paths that upstreams read in different ways: 400, never matched.
    for path in [
        "//admin",
        "///admin//users",
        "/admin;x",
        "/admin;x=1/users",
        "/a/../admin",
        "/a/b/../../admin/users",
        "/../admin",
        "/./admin",
        "/admin/.",
        "/admin/./",
        "/healthz/../admin",
        "/x/../public/app.css",
        "/x/..;/admin",
        "/public/..%2Fadmin",
        "/public/..%2fadmin",
        "/public/%2e%2e/admin",
        "/public/.%2E/admin",
        "/public%2F..%2Fadmin",
        "/public/..%5Cadmin",
        "/public/..%3B/admin",
        "/public/..\\admin",
        "/%2Fadmin",
        "/healthz%3F/../admin",
        "/healthz%23/../admin",
        "/%2561dmin",
        "/%252e%252e/admin",
        "/public/%252F../admin",
        "/%25",
        "/%zz",
        "/admin%",
        "/%61dmin%0a",
        "/a%00",
        "/%ff",
        "/%c2%85",
    ] {
        cases.check(
            &format!("bad path: GET {path} is 400 Bad request"),
            expect_bad_request(&rig.raw_request("GET", path, &[("authorization", &plain_auth)])),
        );
        denials.bad_path += 1;
    }

    // require_scopes: the token must grant every listed scope.
    let read = token(json!({"scopes": ["billing:read"]}));
    let read_string = token(json!({"scope": "openid billing:read profile"}));
    let both_mixed = token(json!({"scopes": ["billing:write"], "scope": "billing:read"}));
    let lookalike = token(json!({"scopes": ["billing:reader", "billing"], "scope": "billing:rea"}));
    let wrong_type = token(json!({"scopes": "billing:read"}));
    let expired = sign(
        &json!({"user_id": "alice", "scopes": ["billing:read"], "exp": now() - 3600}),
        SECRET,
    );
    let granted = [
        ("GET", "/billing/invoices", &read, "scopes array"),
        (
            "GET",
            "/billing/invoices",
            &read_string,
            "space-delimited scope",
        ),
        ("HEAD", "/billing", &read, "scopes array, HEAD"),
        (
            "POST",
            "/billing/invoices",
            &both_mixed,
            "both claims together",
        ),
        (
            "DELETE",
            "/billing/invoices/7",
            &both_mixed,
            "both claims together",
        ),
    ];
    for (method, path, token, how) in granted {
        let reply = rig.raw_request(method, path, &[("authorization", &auth(token))]);
        let outcome = if method == "HEAD" {
            expect_status(&reply, 200)
        } else {
            expect_allowed(&reply, Some("alice"), None)
        };
        cases.check(
            &format!("require_scopes: {method} {path} with the scope ({how}): allowed"),
            outcome,
        );
    }
    let refused = [
        (
            "GET",
            "/billing/invoices",
            &plain,
            "billing:read",
            "no scopes",
        ),
        (
            "GET",
            "/billing/invoices",
            &lookalike,
            "billing:read",
            "look-alike scopes",
        ),
        (
            "GET",
            "/billing/invoices",
            &wrong_type,
            "billing:read",
            "scopes as a string",
        ),
        (
            "POST",
            "/billing/invoices",
            &read,
            "billing:read billing:write",
            "read only",
        ),
        ("GET", "/billing//invoices", &plain, "billing:read", "//"),
        ("GET", "/%62illing/invoices", &plain, "billing:read", "%62"),
        ("GET", "/billing?x=1", &plain, "billing:read", "query"),
        (
            "PUT",
            "/billing/x;y",
            &read_string,
            "billing:read billing:write",
            ";",
        ),
    ];
    for (method, path, token, required, how) in refused {
        cases.check(
            &format!("require_scopes: {method} {path} ({how}): 403 insufficient_scope"),
            expect_insufficient_scope(
                &rig.raw_request(method, path, &[("authorization", &auth(token))]),
                required,
            ),
        );
        denials.forbidden_scope += 1;
    }
    cases.check(
        "require_scopes: no token is 401 with the bare challenge, not 403",
        expect_missing_credential(&rig.raw_request("GET", "/billing/invoices", &[])),
    );
    cases.check(
        "require_scopes: an expired token with the scope is 401 invalid_token",
        expect_invalid_token(&rig.raw_request(
            "GET",
            "/billing/invoices",
            &[("authorization", &auth(&expired))],
        )),
    );

    // Methods: a deny for DELETE only.
    cases.check(
        "methods: DELETE /files/a.txt with a valid token is 403 Forbidden",
        expect_forbidden(&rig.raw_request(
            "DELETE",
            "/files/a.txt",
            &[("authorization", &plain_auth)],
        )),
    );
    denials.forbidden_rule += 1;
    cases.check(
        "methods: DELETE /files//a.txt is 403 Forbidden too",
        expect_forbidden(&rig.raw_request(
            "DELETE",
            "/files//a.txt",
            &[("authorization", &plain_auth)],
        )),
    );
    denials.forbidden_rule += 1;
    cases.check(
        "methods: GET /files/a.txt with a valid token is allowed",
        expect_allowed(
            &rig.raw_request("GET", "/files/a.txt", &[("authorization", &plain_auth)]),
            Some("alice"),
            None,
        ),
    );
    cases.check(
        "methods: GET /files/a.txt without a token is 401",
        expect_missing_credential(&rig.raw_request("GET", "/files/a.txt", &[])),
    );

    // The catch-all authenticates, and the upstream sees the path as the client sent it.
    let reply = rig.raw_request("GET", "/v1/things?x=1", &[("authorization", &plain_auth)]);
    cases.check(
        "authenticate: GET /v1/things?x=1 with a token, upstream path unchanged",
        expect_allowed(&reply, Some("alice"), None).and_then(|()| {
            match reply.echo()?["path"].as_str() {
                Some("/v1/things?x=1") => Ok(()),
                other => Err(format!("upstream saw path {other:?}")),
            }
        }),
    );

    let counters = rig.keygate_counters();
    for (name, expected) in [
        ("requests_denied_forbidden_rule", denials.forbidden_rule),
        ("requests_denied_forbidden_scope", denials.forbidden_scope),
        ("requests_denied_bad_path", denials.bad_path),
    ] {
        cases.check(
            &format!("stats: keygate.{name} is {expected}"),
            match counters.get(name) {
                Some(value) if *value == expected => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }
    cases.finish(|| rig.envoy_log_tail(40));
}

/// `strip_authorization: true` means the upstream never sees `Authorization`. Requests let
/// through without authentication (an `allow` rule, a CORS preflight) keep it: the filter's
/// pass-through grant removes the identity headers only, so a client's token reaches an
/// upstream the operator chose not to trust with tokens.
#[test]
fn strip_authorization_holds_on_routes_that_need_no_token() {
    let mut config = rules_config();
    config["strip_authorization"] = json!(true);
    config["cors"] = json!({"allowed_origins": ["https://app.example.com"]});
    let rig = Rig::builder().plugin_config(&config).start();
    let mut cases = Cases::new();
    let authorization = format!("Bearer {}", token(json!({})));
    let stripped = |reply: &Reply| {
        expect_status(reply, 200)?;
        match reply.echoed_header("authorization")? {
            None => Ok(()),
            Some(value) => Err(format!("the upstream saw authorization {value:?}")),
        }
    };
    cases.check(
        "authenticated route: Authorization stripped",
        stripped(&rig.get("/", &[("authorization", &authorization)])),
    );
    cases.check(
        "allow rule: Authorization stripped",
        stripped(&rig.get("/healthz", &[("authorization", &authorization)])),
    );
    cases.check(
        "passed preflight: Authorization stripped",
        stripped(&rig.request(
            "OPTIONS",
            "/v1/things",
            &[
                ("authorization", &authorization),
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "GET"),
            ],
            None,
        )),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}
