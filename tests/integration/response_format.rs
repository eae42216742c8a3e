//! `response_format: "json"`: every denial's body is `{"error": …, "error_description": …}` with
//! `content-type: application/json`, and the status and `WWW-Authenticate` stay as in text form.

use serde_json::{Value, json};
use testkit::fault::{Fault, FaultServer};
use testkit::http::Reply;
use testkit::token::{now, sign};

use crate::support::{
    Cases, Rig, SECRET, comfyui_deploy_key, default_plugin_config, expect_allowed, expect_status,
};

/// The JSON denial: status, exact body object, content type, and the challenge (`None`: none).
fn expect_json(
    reply: &Reply,
    status: u16,
    error: &str,
    description: &str,
    challenge: Option<&str>,
) -> Result<(), String> {
    expect_status(reply, status)?;
    let content_type = reply.header("content-type")?;
    if content_type != "application/json" {
        return Err(format!("content-type {content_type:?}"));
    }
    let body: Value = serde_json::from_str(&reply.body)
        .map_err(|err| format!("body {:?} is not JSON: {err}", reply.body))?;
    let expected = json!({"error": error, "error_description": description});
    if body != expected {
        return Err(format!("body {body}, expected {expected}"));
    }
    match (reply.headers.get("www-authenticate"), challenge) {
        (None, None) => Ok(()),
        (Some(values), Some(challenge)) if values == &[challenge.to_owned()] => Ok(()),
        (seen, _) => Err(format!("www-authenticate {seen:?}, expected {challenge:?}")),
    }
}

fn invalid_token(description: &str) -> String {
    format!(r#"Bearer realm="keygate", error="invalid_token", error_description="{description}""#)
}

#[test]
fn json_denials() {
    let mut config = default_plugin_config();
    config["response_format"] = json!("json");
    config["rules"] = json!([
        {"match": {"glob": "/admin/**"}, "action": "deny"},
        {"match": {"glob": "/billing/**"}, "action": "require_scopes", "scopes": ["billing:read"]}
    ]);
    let fault = FaultServer::start(Fault::Status(410));
    let rig = Rig::builder()
        .plugin_config(&config)
        .revocation_at(fault.addr)
        .start();
    let mut cases = Cases::new();
    let valid = sign(&json!({"user_id": "alice", "exp": now() + 600}), SECRET);
    let bearer = |token: &str| format!("Bearer {token}");

    cases.check(
        "no token: 401 unauthorized",
        expect_json(
            &rig.get("/", &[]),
            401,
            "unauthorized",
            "a bearer token is required",
            Some(r#"Bearer realm="keygate""#),
        ),
    );
    let other_secret = sign(
        &json!({"user_id": "alice", "exp": now() + 600}),
        "another-secret-0123456789abcdef0123",
    );
    let expired = sign(&json!({"user_id": "alice", "exp": now() - 3600}), SECRET);
    for (what, token, description) in [
        (
            "bad signature",
            other_secret.as_str(),
            "token signature is invalid",
        ),
        ("expired", expired.as_str(), "token has expired"),
        ("malformed", "not-a-jwt", "token is malformed"),
    ] {
        cases.check(
            &format!("{what}: 401 invalid_token"),
            expect_json(
                &rig.get_with_token(token, &[]),
                401,
                "invalid_token",
                description,
                Some(&invalid_token(description)),
            ),
        );
    }

    // Revocation answers, from the stand-in service (410, 404, 500).
    cases.check(
        "revoked (410): 401 invalid_token",
        expect_json(
            &rig.get_with_token(&comfyui_deploy_key("u1", "o1", SECRET), &[]),
            401,
            "invalid_token",
            "token has been revoked",
            Some(&invalid_token("token has been revoked")),
        ),
    );
    fault.set(Fault::Status(404));
    cases.check(
        "unknown (404): 401 invalid_token",
        expect_json(
            &rig.get_with_token(&comfyui_deploy_key("u2", "o2", SECRET), &[]),
            401,
            "invalid_token",
            "token is not registered",
            Some(&invalid_token("token is not registered")),
        ),
    );
    fault.set(Fault::Status(500));
    cases.check(
        "revocation service failing (500): 503 temporarily_unavailable, no challenge",
        expect_json(
            &rig.get_with_token(&comfyui_deploy_key("u3", "o3", SECRET), &[]),
            503,
            "temporarily_unavailable",
            "the revocation service did not answer",
            None,
        ),
    );

    // Rules.
    cases.check(
        "deny rule: 403 access_denied, no challenge",
        expect_json(
            &rig.get("/admin", &[("authorization", &bearer(&valid))]),
            403,
            "access_denied",
            "this route is closed",
            None,
        ),
    );
    cases.check(
        "require_scopes without the scope: 403 insufficient_scope",
        expect_json(
            &rig.get("/billing/x", &[("authorization", &bearer(&valid))]),
            403,
            "insufficient_scope",
            "token lacks a scope this route requires",
            Some(
                r#"Bearer realm="keygate", error="insufficient_scope", error_description="token lacks a scope this route requires", scope="billing:read""#,
            ),
        ),
    );
    cases.check(
        "a path encoded twice: 400 invalid_request, no challenge",
        expect_json(
            &rig.raw_request("GET", "/%2561dmin", &[]),
            400,
            "invalid_request",
            "request path has an encoded '%' (%25)",
            None,
        ),
    );
    cases.check(
        "an encoded slash: 400 invalid_request naming it",
        expect_json(
            &rig.raw_request("GET", "/atk/..%2Fhealthz", &[]),
            400,
            "invalid_request",
            "request path has an encoded '/', '\\', ';', '?' or '#' (%2F, %5C, %3B, %3F, %23)",
            None,
        ),
    );

    cases.check(
        "allowed: the upstream's own response, untouched",
        expect_allowed(&rig.get_with_token(&valid, &[]), Some("alice"), None),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}
