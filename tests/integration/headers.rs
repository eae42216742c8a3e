//! Identity headers the upstream trusts: a client can never set them itself. The upstream sees
//! exactly the verified claim, or nothing.

use serde_json::{Value, json};
use testkit::token::{b64url_decode, now, sign};

use crate::support::{
    Cases, Rig, SECRET, default_plugin_config, expect_allowed, expect_echoed, expect_invalid_token,
    expect_status, uncached_plugin_config,
};

const FORGED: [(&str, &str); 3] = [
    ("x-user-id", "mallory"),
    ("x-org-id", "evil-corp"),
    ("x-jwt-payload", "eyJ1c2VyX2lkIjoibWFsbG9yeSJ9"),
];

#[test]
fn client_sent_identity_headers_never_reach_the_upstream() {
    // The revocation cache off: the non-expiring key below costs exactly one callout.
    let rig = Rig::builder()
        .plugin_config(&uncached_plugin_config())
        .start();
    let mut cases = Cases::new();

    let with_org = sign(
        &json!({"user_id": "alice", "org_id": "acme", "exp": now() + 600}),
        SECRET,
    );
    cases.check(
        "forged x-user-id and x-org-id, token with both claims: the claims win",
        expect_allowed(
            &rig.get_with_token(&with_org, &FORGED),
            Some("alice"),
            Some("acme"),
        ),
    );

    let without_org = sign(&json!({"user_id": "bob", "exp": now() + 600}), SECRET);
    cases.check(
        "forged x-org-id, token without org_id: no x-org-id at all",
        expect_allowed(
            &rig.get_with_token(&without_org, &FORGED),
            Some("bob"),
            None,
        ),
    );

    let no_identity = sign(&json!({"sub": "service", "exp": now() + 600}), SECRET);
    cases.check(
        "forged headers, token with neither claim: neither header",
        expect_allowed(&rig.get_with_token(&no_identity, &FORGED), None, None),
    );

    let issued = rig.keyservice.issue("carol", None, None);
    let before = rig.callouts();
    cases.check(
        "forged headers, non-expiring key issued by keyservice (after the callout)",
        expect_allowed(
            &rig.get_with_token(&issued.key, &FORGED),
            Some("carol"),
            None,
        ),
    );
    let after = rig.callouts();
    cases.check(
        "that key cost exactly one callout",
        if after == before + 1 {
            Ok(())
        } else {
            Err(format!("upstream_rq_total {before} -> {after}"))
        },
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

#[test]
fn payload_header_and_strip_authorization() {
    let mut config = default_plugin_config();
    config["payload_header"] = json!("x-jwt-payload");
    config["strip_authorization"] = json!(true);
    let rig = Rig::builder().plugin_config(&config).start();
    let mut cases = Cases::new();

    let claims = json!({"user_id": "dave", "org_id": "acme", "exp": now() + 600, "role": "admin"});
    let token = sign(&claims, SECRET);
    let reply = rig.get_with_token(&token, &FORGED);
    cases.check(
        "claim headers set, forged copies gone",
        expect_allowed(&reply, Some("dave"), Some("acme")),
    );
    cases.check(
        "strip_authorization: the upstream sees no Authorization",
        expect_echoed(&reply, "authorization", None),
    );
    cases.check(
        "x-jwt-payload is the base64url of the verified payload, not the forged one",
        reply.echoed_header("x-jwt-payload").and_then(|value| {
            let value = value.ok_or("no x-jwt-payload at the upstream")?;
            let decoded = b64url_decode(&value)
                .ok_or_else(|| format!("x-jwt-payload {value:?} is not base64url"))?;
            let payload: Value = serde_json::from_slice(&decoded)
                .map_err(|err| format!("x-jwt-payload does not decode to JSON: {err}"))?;
            if payload == claims {
                Ok(())
            } else {
                Err(format!(
                    "x-jwt-payload decodes to {payload}, expected {claims}"
                ))
            }
        }),
    );

    let refused = rig.get("/", &FORGED);
    cases.check("no token at all: refused", expect_status(&refused, 401));
    cases.finish(|| rig.envoy_log_tail(40));
}

/// Two `Authorization` headers are ambiguous: Envoy hands the filter their values joined, which
/// is no bearer token, so the request is refused rather than decided on either one.
#[test]
fn two_authorization_headers_are_refused() {
    let rig = Rig::start();
    let mut cases = Cases::new();
    let alice = sign(&json!({"user_id": "alice", "exp": now() + 600}), SECRET);
    let mallory = sign(
        &json!({"user_id": "mallory", "exp": now() + 600}),
        "not-the-secret",
    );
    let (valid, forged) = (format!("Bearer {alice}"), format!("Bearer {mallory}"));
    for (case, first, second) in [
        ("valid then forged", &valid, &forged),
        ("forged then valid", &forged, &valid),
        ("the valid one twice", &valid, &valid),
    ] {
        let reply = rig.get("/", &[("authorization", first), ("authorization", second)]);
        cases.check(
            &format!("two Authorization headers, {case}: 401 invalid_token"),
            expect_invalid_token(&reply),
        );
    }
    cases.finish(|| rig.envoy_log_tail(40));
}
