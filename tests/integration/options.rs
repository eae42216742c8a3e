//! The plugin configuration's options other than the defaults take effect: secret rotation,
//! the algorithm list, clock skew, realm, claim mapping, and `revocation.check: all`.

use jsonwebtoken::Algorithm;
use serde_json::json;
use testkit::token::{now, sign, sign_alg};

use crate::support::{
    Cases, Rig, SECRET, default_plugin_config, expect_echoed, expect_invalid_token_in,
    expect_missing_credential_in, expect_revoked_in, expect_status, uncached_plugin_config,
};

const PREVIOUS_SECRET: &str = "previous-secret-being-rotated-out-0123456789";

#[test]
fn non_default_options_take_effect() {
    // The revocation cache off, so that check=all asks keyservice on every request and a
    // revocation shows at once.
    let mut config = uncached_plugin_config();
    config["secret"] = json!([{"env": "JWT_SECRET"}, {"inline": PREVIOUS_SECRET}]);
    config["algorithms"] = json!(["HS256"]);
    config["clock_skew_seconds"] = json!(0);
    config["realm"] = json!("api");
    config["claims_to_headers"] = json!({"user_id": "x-user-id", "sub": "x-subject"});
    config["revocation"]["check"] = json!("all");
    // Locally signed tokens are unknown to keyservice; let those through, revoked keys not.
    config["revocation"]["unknown_keys"] = json!("allow");
    let rig = Rig::builder().plugin_config(&config).start();
    let mut cases = Cases::new();
    let callouts = |f: &mut dyn FnMut()| {
        let before = rig.callouts();
        f();
        rig.callouts() - before
    };

    // check=all: even a key with exp is checked with keyservice, and refused once revoked.
    let issued = rig.keyservice.issue("grace", Some("acme"), Some(3600));
    let mut reply = None;
    let delta = callouts(&mut || reply = Some(rig.get_with_token(&issued.key, &[])));
    let reply = reply.unwrap();
    cases.check(
        "check=all: a key with exp is allowed after one callout",
        expect_status(&reply, 200).and(if delta == 1 {
            Ok(())
        } else {
            Err(format!("{delta} callouts"))
        }),
    );
    cases.check(
        "claims_to_headers replaced: x-org-id is no longer set",
        expect_echoed(&reply, "x-user-id", Some("grace"))
            .and(expect_echoed(&reply, "x-org-id", None)),
    );
    rig.keyservice.revoke(&issued.id);
    cases.check(
        "check=all: a revoked key with exp is refused",
        expect_revoked_in(&rig.get_with_token(&issued.key, &[]), "api"),
    );

    // Secret rotation: a token signed with the previous secret still verifies.
    let previous = sign(
        &json!({"user_id": "heidi", "sub": "svc-1", "exp": now() + 600}),
        PREVIOUS_SECRET,
    );
    let reply = rig.get_with_token(&previous, &[]);
    cases.check(
        "secret list: a token signed with the second secret is verified",
        expect_status(&reply, 200),
    );
    cases.check(
        "claims_to_headers: sub becomes x-subject",
        expect_echoed(&reply, "x-subject", Some("svc-1")),
    );

    let hs512 = sign_alg(
        Algorithm::HS512,
        &json!({"user_id": "ivan", "exp": now() + 600}),
        SECRET,
    );
    cases.check(
        "algorithms=[HS256]: an HS512 token is refused",
        expect_invalid_token_in(&rig.get_with_token(&hs512, &[]), "api"),
    );
    let just_expired = sign(&json!({"user_id": "judy", "exp": now() - 20}), SECRET);
    cases.check(
        "clock_skew_seconds=0: a token expired 20s ago is refused",
        expect_invalid_token_in(&rig.get_with_token(&just_expired, &[]), "api"),
    );
    let not_yet = sign(
        &json!({"user_id": "judy", "nbf": now() + 300, "exp": now() + 600}),
        SECRET,
    );
    cases.check(
        "a token whose nbf is 5 minutes ahead is refused",
        expect_invalid_token_in(&rig.get_with_token(&not_yet, &[]), "api"),
    );
    cases.check(
        "realm: the challenge names realm=\"api\"",
        expect_missing_credential_in(&rig.get("/", &[]), "api"),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

#[test]
fn max_token_bytes_is_configurable() {
    let mut config = default_plugin_config();
    config["max_token_bytes"] = json!(300);
    let rig = Rig::builder().plugin_config(&config).start();
    let mut cases = Cases::new();
    let claims = |pad: usize| json!({"user_id": "kim", "exp": now() + 600, "pad": "x".repeat(pad)});
    let small = sign(&claims(10), SECRET);
    let large = sign(&claims(300), SECRET);
    cases.check(
        &format!("a {}-byte token under max_token_bytes=300", small.len()),
        expect_status(&rig.get_with_token(&small, &[]), 200),
    );
    cases.check(
        &format!("a {}-byte token over max_token_bytes=300", large.len()),
        expect_invalid_token_in(&rig.get_with_token(&large, &[]), "keygate"),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}
