//! CORS: a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) goes upstream
//! without a token (`preflight: "pass"`, the default) unless a `deny` rule closes the route, and
//! keygate's denials carry the CORS headers a page needs to read them, for allowed origins only.

use serde_json::json;
use testkit::http::Reply;
use testkit::ports::closed_port;
use testkit::token::{now, sign};

use crate::support::{
    Cases, Rig, SECRET, default_plugin_config, expect_allowed, expect_invalid_token,
    expect_missing_credential, expect_status, expect_unavailable,
};

const APP: &str = "https://app.example.com";
const CORS_HEADERS: [&str; 4] = [
    "access-control-allow-origin",
    "vary",
    "access-control-expose-headers",
    "access-control-allow-credentials",
];

/// The CORS headers of a denial: exactly these (name, value) pairs among the four.
fn expect_cors(reply: &Reply, expected: &[(&str, &str)]) -> Result<(), String> {
    for name in CORS_HEADERS {
        let want = expected.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        match (reply.headers.get(name).map(Vec::as_slice), want) {
            (None, None) => {}
            (Some([value]), Some(want)) if value == want => {}
            (seen, want) => {
                return Err(format!(
                    "{name}: {seen:?}, expected {want:?} (status {})",
                    reply.status
                ));
            }
        }
    }
    Ok(())
}

/// The headers of a denial for an allowed `origin`, with `allow_credentials: true`.
fn allowed(origin: &str) -> Vec<(&str, &str)> {
    vec![
        ("access-control-allow-origin", origin),
        ("vary", "origin"),
        ("access-control-expose-headers", "www-authenticate"),
        ("access-control-allow-credentials", "true"),
    ]
}

/// What reached the upstream: a request with this method and no identity headers.
fn expect_passed_upstream(reply: &Reply, method: &str) -> Result<(), String> {
    expect_allowed(reply, None, None)?;
    match reply.echo()?["method"].as_str() {
        Some(seen) if seen == method => Ok(()),
        other => Err(format!("upstream saw method {other:?}, expected {method}")),
    }
}

#[test]
fn preflights_pass_and_denials_carry_cors_headers_for_allowed_origins() {
    let mut config = default_plugin_config();
    config["cors"] = json!({
        "allowed_origins": [APP, "https://*.example.org"],
        "allow_credentials": true
    });
    config["rules"] = json!([
        {"match": {"glob": "/admin/**"}, "action": "deny"},
        {"match": {"glob": "/reports/**"}, "action": "require_scopes", "scopes": ["reports"]}
    ]);
    // Callouts go nowhere: a key without exp gets 503, for the CORS headers of that denial.
    let rig = Rig::builder()
        .plugin_config(&config)
        .revocation_at(closed_port())
        .start();
    let mut cases = Cases::new();
    let valid = sign(&json!({"user_id": "alice", "exp": now() + 600}), SECRET);
    let valid_auth = format!("Bearer {valid}");

    // Preflights: no token needed, and no identity reaches the upstream.
    for (origin, path) in [
        (APP, "/api/things"),
        ("https://a.b.example.org", "/api/things"),
        (APP, "/reports/q1"),
    ] {
        let reply = rig.request(
            "OPTIONS",
            path,
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "authorization"),
                ("x-user-id", "mallory"),
            ],
            None,
        );
        cases.check(
            &format!("preflight OPTIONS {path} from {origin}: passed upstream without a token"),
            expect_passed_upstream(&reply, "OPTIONS"),
        );
    }
    // A preflight from an origin not allowed needs a token like any request.
    let reply = rig.request(
        "OPTIONS",
        "/api/things",
        &[
            ("origin", "https://evil.example.net"),
            ("access-control-request-method", "POST"),
        ],
        None,
    );
    cases.check(
        "preflight from an origin not allowed: 401, without CORS headers",
        expect_status(&reply, 401).and_then(|()| {
            if reply
                .headers
                .keys()
                .any(|name| name.starts_with("access-control"))
            {
                Err(format!(
                    "CORS headers on a denial to a foreign origin: {:?}",
                    reply.headers
                ))
            } else {
                Ok(())
            }
        }),
    );
    let reply = rig.request(
        "OPTIONS",
        "/admin/users",
        &[("origin", APP), ("access-control-request-method", "DELETE")],
        None,
    );
    cases.check(
        "preflight to a deny route: 403 Forbidden, with the CORS headers",
        expect_status(&reply, 403).and(expect_cors(&reply, &allowed(APP))),
    );

    // Not preflights: authenticated like any request.
    for (what, headers) in [
        (
            "OPTIONS with Origin, no Access-Control-Request-Method",
            vec![("origin", APP)],
        ),
        (
            "OPTIONS with an empty Access-Control-Request-Method",
            vec![("origin", APP), ("access-control-request-method", "")],
        ),
        (
            "OPTIONS with Access-Control-Request-Method, no Origin",
            vec![("access-control-request-method", "POST")],
        ),
    ] {
        let reply = rig.request("OPTIONS", "/api/things", &headers, None);
        let origin = if headers.iter().any(|(name, _)| *name == "origin") {
            allowed(APP)
        } else {
            Vec::new()
        };
        cases.check(
            &format!("{what}: 401, CORS headers only with an allowed Origin"),
            expect_missing_credential(&reply).and(expect_cors(&reply, &origin)),
        );
    }
    let reply = rig.request(
        "GET",
        "/api/things",
        &[("origin", APP), ("access-control-request-method", "GET")],
        None,
    );
    cases.check(
        "GET with the preflight headers is no preflight: 401",
        expect_missing_credential(&reply).and(expect_cors(&reply, &allowed(APP))),
    );

    // Denials: CORS headers for allowed origins, exactly.
    let reply = rig.get("/", &[("origin", APP)]);
    cases.check(
        "401 missing token, allowed Origin: allow-origin, vary, expose-headers, credentials",
        expect_missing_credential(&reply).and(expect_cors(&reply, &allowed(APP))),
    );
    let wildcard = "https://eu.api.example.org";
    let reply = rig.get(
        "/",
        &[
            ("origin", wildcard),
            ("authorization", "Bearer not.a.token"),
        ],
    );
    cases.check(
        "401 invalid token, Origin allowed by *.example.org: its own origin echoed",
        expect_invalid_token(&reply).and(expect_cors(&reply, &allowed(wildcard))),
    );
    for origin in [
        "https://evil.example.net",
        "https://example.org",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://app.example.com.evil.net",
        "null",
    ] {
        let reply = rig.get("/", &[("origin", origin)]);
        cases.check(
            &format!("401 for Origin {origin} (not allowed): no CORS headers"),
            expect_missing_credential(&reply).and(expect_cors(&reply, &[])),
        );
    }
    let reply = rig.get("/", &[]);
    cases.check(
        "401 without Origin: no CORS headers",
        expect_missing_credential(&reply).and(expect_cors(&reply, &[])),
    );
    let reply = rig.get(
        "/reports/q1",
        &[("origin", APP), ("authorization", &valid_auth)],
    );
    cases.check(
        "403 insufficient scope, allowed Origin: the CORS headers",
        expect_status(&reply, 403).and(expect_cors(&reply, &allowed(APP))),
    );
    let non_expiring = sign(&json!({"user_id": "bob", "iat": now()}), SECRET);
    let reply = rig.get(
        "/",
        &[
            ("origin", APP),
            ("authorization", &format!("Bearer {non_expiring}")),
        ],
    );
    cases.check(
        "503 (revocation service down), allowed Origin: the CORS headers",
        expect_unavailable(&reply).and(expect_cors(&reply, &allowed(APP))),
    );

    // Allowed requests: the upstream's response as it is; keygate adds nothing.
    let reply = rig.get("/", &[("origin", APP), ("authorization", &valid_auth)]);
    cases.check(
        "200 with an allowed Origin: no CORS headers added by keygate",
        expect_allowed(&reply, Some("alice"), None).and(expect_cors(&reply, &[])),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

/// `preflight: "authenticate"`, every origin (`"*"`), default expose_headers and no credentials.
#[test]
fn authenticated_preflights_and_any_origin() {
    let mut config = default_plugin_config();
    config["cors"] = json!({"allowed_origins": ["*"], "preflight": "authenticate"});
    let rig = Rig::builder().plugin_config(&config).start();
    let mut cases = Cases::new();
    let any = [
        ("access-control-allow-origin", "*"),
        ("vary", "origin"),
        ("access-control-expose-headers", "www-authenticate"),
    ];
    let preflight = [
        ("origin", "https://anywhere.example"),
        ("access-control-request-method", "PUT"),
    ];

    let reply = rig.request("OPTIONS", "/api/things", &preflight, None);
    cases.check(
        "preflight without a token: 401, allow-origin *, no allow-credentials",
        expect_missing_credential(&reply).and(expect_cors(&reply, &any)),
    );
    let valid = sign(&json!({"user_id": "carol", "exp": now() + 600}), SECRET);
    let authorization = format!("Bearer {valid}");
    let mut with_token = preflight.to_vec();
    with_token.push(("authorization", &authorization));
    let reply = rig.request("OPTIONS", "/api/things", &with_token, None);
    cases.check(
        "preflight with a valid token: allowed, with its identity",
        expect_allowed(&reply, Some("carol"), None),
    );
    let reply = rig.get("/", &[("origin", "http://localhost:3000")]);
    cases.check(
        "401 for any Origin: allow-origin *",
        expect_missing_credential(&reply).and(expect_cors(&reply, &any)),
    );
    let reply = rig.get("/", &[]);
    cases.check(
        "401 without Origin: no CORS headers, even with \"*\"",
        expect_missing_credential(&reply).and(expect_cors(&reply, &[])),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}
