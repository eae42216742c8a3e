//! The revocation protocol: with the shared revocation cache off (`revocation.cache.max_entries:
//! 0`), keys without `exp` are checked with keyservice on every request: one callout each,
//! refused once revoked, and refused while keyservice does not know them (unless `unknown_keys:
//! allow`). `revocation_cache` covers the cache, which is on by default.

use serde_json::json;

use crate::support::{
    Cases, Rig, SECRET, comfyui_deploy_key, expect_allowed, expect_callouts, expect_revoked,
    uncached_plugin_config,
};

/// A rig whose filter asks keyservice on every request.
fn uncached_rig() -> Rig {
    Rig::builder()
        .plugin_config(&uncached_plugin_config())
        .start()
}

#[test]
fn non_expiring_key_costs_one_callout_and_is_refused_once_revoked() {
    let rig = uncached_rig();
    let mut cases = Cases::new();
    let issued = rig.keyservice.issue("erin", Some("acme"), None);

    let (reply, delta) = rig.get_counting_callouts(&issued.key);
    cases.check(
        "non-expiring key issued by keyservice: allowed",
        expect_allowed(&reply, Some("erin"), Some("acme")),
    );
    cases.check(
        "non-expiring key: exactly one callout",
        expect_callouts(delta, 1),
    );

    let (reply, delta) = rig.get_counting_callouts(&issued.key);
    cases.check(
        "the same key again: allowed, one more callout",
        expect_allowed(&reply, Some("erin"), Some("acme")).and(expect_callouts(delta, 1)),
    );

    rig.keyservice.revoke(&issued.id);
    cases.check(
        "keyservice answers 410 for the revoked key",
        match rig.keyservice.revocation_status(&issued.key) {
            410 => Ok(()),
            other => Err(format!("GET /v1/revocations answered {other}")),
        },
    );
    let (reply, delta) = rig.get_counting_callouts(&issued.key);
    cases.check("after DELETE: 401 Revoked token", expect_revoked(&reply));
    cases.check("after DELETE: one callout", expect_callouts(delta, 1));
    cases.finish(|| rig.envoy_log_tail(40));
}

/// A request body arrives while the headers wait for keyservice: the whole request waits for
/// the answer, and a revoked key's upload never reaches the upstream.
#[test]
fn a_request_body_waits_for_the_revocation_answer() {
    let rig = uncached_rig();
    let mut cases = Cases::new();
    let issued = rig.keyservice.issue("frank", None, None);
    let authorization = format!("Bearer {}", issued.key);
    let post = |rig: &Rig| {
        rig.request(
            "POST",
            "/upload",
            &[
                ("authorization", authorization.as_str()),
                ("content-type", "application/octet-stream"),
            ],
            Some(vec![b'k'; 256 * 1024]),
        )
    };

    let reply = post(&rig);
    cases.check(
        "POST with a 256 KiB body and an active non-expiring key: allowed",
        expect_allowed(&reply, Some("frank"), None),
    );
    cases.check(
        "the whole body reached the upstream",
        match reply.echo().map(|echo| echo["body_bytes"].clone()) {
            Ok(size) if size == 256 * 1024 => Ok(()),
            other => Err(format!("echoed body size {other:?}")),
        },
    );
    rig.keyservice.revoke(&issued.id);
    cases.check(
        "the same POST once the key is revoked: 401 Revoked token, never upstream",
        expect_revoked(&post(&rig)),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

#[test]
fn comfyui_deploy_key_is_refused_until_imported() {
    let rig = uncached_rig();
    let mut cases = Cases::new();
    let token = comfyui_deploy_key("user_2abc", "org_2xyz", SECRET);

    let (reply, delta) = rig.get_counting_callouts(&token);
    cases.check(
        "ComfyUI Deploy key unknown to keyservice: 401 Revoked token",
        expect_revoked(&reply).and(expect_callouts(delta, 1)),
    );

    rig.keyservice.import(&token, "comfyui-deploy legacy key");
    cases.check(
        "keyservice answers 200 once imported",
        match rig.keyservice.revocation_status(&token) {
            200 => Ok(()),
            other => Err(format!("GET /v1/revocations answered {other}")),
        },
    );
    let (reply, delta) = rig.get_counting_callouts(&token);
    cases.check(
        "ComfyUI Deploy key after `keyservice import`: allowed",
        expect_allowed(&reply, Some("user_2abc"), Some("org_2xyz")).and(expect_callouts(delta, 1)),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

#[test]
fn comfyui_deploy_key_is_allowed_with_unknown_keys_allow() {
    let mut config = uncached_plugin_config();
    config["revocation"]["unknown_keys"] = json!("allow");
    let rig = Rig::builder().plugin_config(&config).start();
    let mut cases = Cases::new();
    let token = comfyui_deploy_key("user_3def", "org_3uvw", SECRET);

    let (reply, delta) = rig.get_counting_callouts(&token);
    cases.check(
        "unknown ComfyUI Deploy key with unknown_keys=allow: allowed without import",
        expect_allowed(&reply, Some("user_3def"), Some("org_3uvw")).and(expect_callouts(delta, 1)),
    );

    // unknown_keys=allow is about keys keyservice has never seen; revoked ones stay refused.
    let issued = rig.keyservice.issue("frank", None, None);
    rig.keyservice.revoke(&issued.id);
    cases.check(
        "a revoked key is still refused with unknown_keys=allow",
        expect_revoked(&rig.get_with_token(&issued.key, &[])),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}
